"""Accuracy against minutes: one `squeezenet train --time-budget B` run per budget.

    python benchmarks/time_to_accuracy.py --data fashion-mnist --budgets 5m,10m,20m,60m --out runs/tta
    python benchmarks/time_to_accuracy.py --data DIR --budgets 10m,30m --out runs/tta_cifar   # an ImageFolder
    python benchmarks/time_to_accuracy.py --data DIR --config natural --set ema=0.999 --tta flip,flip-shift --budgets 30m

Each budget trains the named config (default: the demo's recipe) from scratch with the
schedule fitted to that budget, and records the final top-1 on the held-out split, the
planned and the used time, and the schedule's work in full-size steps (with
``--set progressive_resizing=PX`` a smaller step counts as the share of a full-size one the
budget priced it at; it tells how much a run on a faster or slower host trained). Writes
`<out>/time_to_accuracy.{csv,md,png}` naming the CPU and its flags (AVX2 / AVX-512 / VNNI /
bf16 / AMX). The baseline in the same run is the shortest budget. ``--set KEY=VALUE``
(repeatable) overrides one setting of the config, as a TOML value (``--set ema=0.999``,
``--set random_erasing=0.25``); ``--tta flip,flip-shift`` adds the final model's top-1 with
each test-time augmentation named (``squeezenet eval --tta``).
"""

import argparse
import csv
import io
import json
import sys
import tomllib
from pathlib import Path

from squeezenet.budget import format_duration, parse_duration
from squeezenet.config import TrainConfig, layered, load_config_file
from squeezenet.deploy.bench import cpu_line
from squeezenet.errors import SqueezeNetError
from squeezenet.evaluate import evaluate_checkpoint
from squeezenet.files import atomic_write_text
from squeezenet.spec import check_tta
from squeezenet.render import markdown_table, pyplot, save_figure
from squeezenet.resizing import full_size_steps
from squeezenet.train import Trainer
from squeezenet.tta import TTA_MODES

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--data-dir")
    ap.add_argument("--budgets", default="5m,10m,20m,60m")
    ap.add_argument("--config", default="demo", help="a named config or TOML/JSON file (default: demo)")
    ap.add_argument("--model", help="override the config's model")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one setting of the config (a TOML value); repeatable")
    ap.add_argument("--tta", default="", help=f"also score the final model with these test-time augmentations "
                                              f"(comma-separated: {', '.join(TTA_MODES)})")
    ap.add_argument("--out", default="runs/time_to_accuracy")
    a = ap.parse_args()
    budgets = [b.strip() for b in a.budgets.split(",") if b.strip()]
    for b in budgets:
        parse_duration(b)  # every budget checked before the first run
    a.tta = [t.strip() for t in a.tta.split(",") if t.strip()]
    for t in a.tta:
        check_tta(t)
    overrides = dict(parse_setting(kv) for kv in a.set)
    rows = []
    cfgs = [TrainConfig.from_dict(budget_settings(a, overrides, b)) for b in budgets]  # every one checked first
    for b, cfg in zip(budgets, cfgs):
        res = Trainer(cfg).run()
        plan = res["budget"]["plans"][-1]
        rows.append({"budget": b, "budget_s": parse_duration(b), "used_s": res["budget"]["spent"],
                     "planned_s": plan["planned_s"], "steps": plan["total_steps"],
                     "full_size_steps": round(full_size_steps(plan["total_steps"], cfg.progressive_resizing_until,
                                                              res["budget"].get("px_cost")), 1),
                     "epochs": res["epochs_done"], "top1": res["final"]["test_top1"], "best_top1": res["best_top1"]})
        for t in a.tta:
            rows[-1][f"{t}_tta_top1"] = evaluate_checkpoint(str(Path(cfg.out) / "last.pt"), a.data, a.data_dir,
                                                            cfg.download, tta=t)["top1"]
        print(json.dumps(rows[-1]))
    write(Path(a.out), rows, a, cpu_line())


def budget_settings(a, overrides: dict, budget: str) -> dict:
    """One budget's run: the config, ``--set`` over it as a flag would be
    (:func:`squeezenet.config.layered`: ``--set progressive_resizing=0`` turns a config's
    resizing off), then the data, the budget and the output folder."""
    settings = {**layered(load_config_file(a.config), overrides), "data": a.data, "data_dir": a.data_dir,
                "time_budget": budget, "out": str(Path(a.out) / f"budget_{budget}"), "progress": False}
    if a.model:
        settings["model"] = a.model
    return settings


def parse_setting(kv: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as TOML (``0.999``, ``true``, ``"x"``), else as a string."""
    key, sep, value = kv.partition("=")
    if not sep or not key.strip():
        raise SqueezeNetError(f"--set takes KEY=VALUE, got '{kv}'")
    try:
        return key.strip(), tomllib.loads(f"v = {value}")["v"]
    except tomllib.TOMLDecodeError:
        return key.strip(), value


def write(out: Path, rows: list[dict], a, machine: str) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out / "time_to_accuracy.csv", buf.getvalue())
    table = markdown_table(rows, [
        ("budget", "budget"), ("used", lambda r: format_duration(r["used_s"])),
        ("used / budget", lambda r: f"{100 * r['used_s'] / r['budget_s']:.1f}%"), ("steps", lambda r: f"{r['steps']:,}"),
        ("work (full-size steps, as priced)", lambda r: f"{r['full_size_steps']:,.0f}"),
        ("epochs", "epochs"), ("final top-1 %", lambda r: f"{r['top1']:.2f}"),
        ("vs shortest budget (pt)", lambda r: f"{r['top1'] - rows[0]['top1']:+.2f}")]
        + [(f"{t} TTA top-1 %", lambda r, t=t: f"{r[f'{t}_tta_top1']:.2f}") for t in a.tta])
    changed = "".join(f", {kv}" for kv in a.set)
    atomic_write_text(out / "time_to_accuracy.md", f"# Top-1 against the time budget: {a.data}\n\n{machine}; config "
                      f"{a.config}{', model ' + a.model if a.model else ''}{changed}\n\n{table}\n")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["budget_s"] / 60 for r in rows], [r["top1"] for r in rows], "o-")
    ax.set_xscale("log")
    ax.set_xlabel("time budget (min)")
    ax.set_ylabel("final test top-1 (%)")
    ax.set_title(f"{a.data} on {machine}", fontsize=8)
    ax.grid(alpha=0.3)
    save_figure(fig, out / "time_to_accuracy.png")
    print(table)


if __name__ == "__main__":
    try:
        main()
    except SqueezeNetError as e:  # a bad budget, --set or setting: one line before any run
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
