"""Wall-clock of one sweep on each engine, and the Ray engine's overhead per trial.

    python benchmarks/sweep_engines.py --epochs 1 --out runs/bench/sweep_engines

Runs the same 4 points (SR 0.25, 0.5, 0.75, 1.0 of the base with the given options, one
epoch each on Fashion-MNIST) three ways, in one run: the local engine with all cores per
point (the default), the local engine with 1 thread per point, and Ray with 1 CPU per
point (this machine's cores in parallel). Then 8 trials that return at once on Ray:
their wall-clock per trial is the engine's own overhead (Ray start-up included, reported
apart). Writes a JSON and prints a Markdown table naming the CPU.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from squeezenet.deploy.bench import cpu_line as cpu  # noqa: E402

from squeezenet.files import atomic_write_text  # noqa: E402
from squeezenet.sweep import sweep  # noqa: E402


def no_op_trial(config, report=None):
    return {"trained_model": config["model"], "top1": 0.0, "top5": 0.0, "train_time_s": 0.0, "trained_params": 0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="squeezenet1_1")
    ap.add_argument("--options", default="small,bn,w0.5")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--out", default="runs/bench/sweep_engines")
    a = ap.parse_args()
    out = Path(a.out)
    common = dict(sr=[0.25, 0.5, 0.75, 1.0], pct3x3=[], train_epochs=a.epochs, data="fashion-mnist",
                  batch_size=a.batch_size, base=a.base, train_model_options=a.options)
    res = {"cpu": cpu(), "points": 4, "epochs": a.epochs}
    runs = [("local, all cores per point", dict(engine="local")),
            ("local, 1 thread per point", dict(engine="local", cpus_per_trial=1)),
            ("ray, 1 CPU per point", dict(engine="ray", cpus_per_trial=1))]
    rows = []
    for label, kw in runs:
        t0 = time.perf_counter()
        r = sweep(out=str(out / label.split(",")[0] / label.split(" ")[-3]), **common, **kw)
        wall = time.perf_counter() - t0
        rows.append({"run": label, "wall_s": wall, "top1": [row["top1"] for row in r["rows"]],
                     "train_s": sum(row["train_time_s"] for row in r["rows"])})
        print(json.dumps(rows[-1]), flush=True)
    import ray

    t0 = time.perf_counter()
    sweep(sr=[0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0], pct3x3=[], train_epochs=1, engine="ray",
          cpus_per_trial=1, out=str(out / "overhead"), trial_fn=no_op_trial, base=a.base)
    res["ray_no_op_8_trials_s"] = time.perf_counter() - t0
    res["ray_overhead_per_trial_s"] = res["ray_no_op_8_trials_s"] / 8
    ray.shutdown()
    res["runs"] = rows
    base = rows[0]["wall_s"]
    table = "| run | wall-clock s | vs local default | sum of training s | top-1 per point |\n|---|---|---|---|---|\n"
    table += "".join(f"| {r['run']} | {r['wall_s']:.0f} | {base / r['wall_s']:.2f}x | {r['train_s']:.0f} | "
                     f"{', '.join(f'{t:.2f}' for t in r['top1'])} |\n" for r in rows)
    text = (f"4-point sweep, {a.epochs} epoch(s) each, {a.base} + {a.options}, on {res['cpu']}\n\n{table}\n"
            f"Ray, 8 trials that return at once: {res['ray_no_op_8_trials_s']:.1f} s "
            f"({res['ray_overhead_per_trial_s']:.2f} s per trial, Ray already started)\n")
    atomic_write_text(out / "sweep_engines.json", json.dumps(res, indent=2))
    atomic_write_text(out / "sweep_engines.md", text)
    print(text)


if __name__ == "__main__":
    main()
