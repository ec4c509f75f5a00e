"""``squeezenet sweep``: the paper's design-space exploration (section 5, Fig. 3).

Over the squeeze ratio SR (pct3x3 = 0.5) and the fraction of 3x3 filters pct3x3
(SR = 0.5), tabulate parameters, model size (MiB of fp32 weights, the paper's "MB")
and MACs at 224 px for 1000 classes; with ``train_epochs`` also train every point on
real data (small-input stem + BN by default) and plot accuracy against size. Each
finished point is saved as JSON, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import SqueezeNetError
from .progress import progress
from .profiler import profile
from .factory import create_model
from .render import markdown_table, pyplot, save_figure

SR_GRID = [0.125, 0.25, 0.5, 0.75, 1.0]  # Fig. 3a
PCT_GRID = [0.01, 0.125, 0.25, 0.5, 0.75, 0.99]  # Fig. 3b, at SR 0.5


def sweep_points(sr=None, pct3x3=None) -> list[dict]:
    pts = [{"axis": "SR", "sr": s, "pct3x3": 0.5} for s in (SR_GRID if sr is None else sr)]
    pts += [{"axis": "pct3x3", "sr": 0.5, "pct3x3": p} for p in (PCT_GRID if pct3x3 is None else pct3x3)]
    for p in pts:
        if not (0 < p["sr"] <= 1 and 0 <= p["pct3x3"] <= 1):
            raise SqueezeNetError(f"SR must be in (0, 1] and pct3x3 in [0, 1]; got {p['sr']}, {p['pct3x3']}")
    return pts


def _decimal(x: float) -> str:
    """A number as a model-name modifier accepts it: plain decimals, never 1e-05."""
    return f"{x:.10f}".rstrip("0").rstrip(".") or "0"


def point_settings(base, train_epochs, data, batch_size, train_model_options, seed) -> dict:
    """Every setting that shapes a point's row; a finished point is reused only when they
    all match (style rule 16: never reuse in silence)."""
    return {"base": base, "train_epochs": train_epochs, "format": 2,
            **({"data": data, "batch_size": batch_size, "train_model_options": train_model_options, "seed": seed}
               if train_epochs > 0 else {})}


def _reuse(done: Path, settings: dict, outd: Path) -> dict | None:
    """The finished row in ``done`` if it was made with ``settings``; refuses otherwise."""
    if not done.exists():
        return None
    try:
        row = json.loads(done.read_text())
    except (OSError, ValueError):
        return None  # a damaged point is recomputed
    had = row.get("settings") if isinstance(row, dict) else None
    if had != settings:
        had = had or {}
        diff = "; ".join(f"{k} {had.get(k)!r} -> {settings.get(k)!r}" for k in sorted(set(had) | set(settings))
                         if had.get(k) != settings.get(k)) or "made by an older squeezenet"
        raise SqueezeNetError(f"'{outd}' holds sweep points made with other settings ({diff}); use another --out "
                              "(nothing was overwritten)")
    return row


def sweep(base: str = "squeezenet1_0", sr=None, pct3x3=None, train_epochs: int = 0, data: str = "fashion-mnist",
          data_dir: str | None = None, download: bool = True, out: str = "runs/sweep", batch_size: int = 256,
          train_model_options: str = "small,bn", seed: int = 0) -> dict:
    from .files import RunLock, ensure_writable_dir

    outd = Path(out)
    pts = sweep_points(sr, pct3x3)
    ensure_writable_dir(outd)
    with RunLock(outd):
        return _sweep(outd, pts, base, train_epochs, data, data_dir, download, batch_size, train_model_options, seed)


def _sweep(outd, pts, base, train_epochs, data, data_dir, download, batch_size, train_model_options, seed) -> dict:
    (outd / "points").mkdir(parents=True, exist_ok=True)
    settings = point_settings(base, train_epochs, data, batch_size, train_model_options, seed)
    rows = []
    for p in progress(pts, "sweep"):
        name = f"{base}_sr{_decimal(p['sr'])}_pct{_decimal(p['pct3x3'])}"
        done = outd / "points" / f"{p['axis']}_{name}.json"
        row = _reuse(done, settings, outd)
        if row is not None:
            rows.append(row)
            continue
        prof = profile(create_model(name), (3, 224, 224))
        row = {**p, "model": name, "params": prof.params, "size_mib": prof.params * 4 / 2**20, "macs": prof.macs,
               "settings": settings}
        if train_epochs > 0:
            row.update(_train_point(name, train_model_options, train_epochs, data, data_dir, download,
                                    outd / "runs" / f"{p['axis']}_{name}", batch_size, seed))
        from .files import atomic_write_text

        atomic_write_text(done, json.dumps(row, indent=2))
        rows.append(row)
    table = _table(rows, train_epochs > 0)
    plots = _plot(rows, outd, train_epochs > 0)
    report = outd / "sweep.md"
    from .files import atomic_write_text

    atomic_write_text(report, "# Design-space sweep (paper section 5, Fig. 3)\n\n"
                      f"Base {base}; sizes are MiB of fp32 weights for 1000 classes (the paper's \"MB\"); MACs = "
                      "multiply-accumulates at 224 px." + (f" Accuracy: test top-1 after {train_epochs} epochs on "
                                                         f"{data} ({train_model_options})." if train_epochs else "")
                      + f"\n\n{table}\n\n" + "".join(f"![{p.stem}]({p.name})\n\n" for p in plots))
    atomic_write_text(outd / "sweep.json", json.dumps(rows, indent=2))
    return {"rows": rows, "table": table, "report": str(report), "plots": [str(p) for p in plots]}


def _train_point(name, options, epochs, data, data_dir, download, out: Path, batch_size, seed) -> dict:
    from .train import Trainer, TrainConfig

    mods = "".join(f"_{m.strip()}" for m in options.split(",") if m.strip())
    cfg = TrainConfig(model=name + mods, data=data, data_dir=data_dir, download=download, out=str(out),
                      epochs=epochs, batch_size=batch_size, seed=seed, progress=True,
                      resume=(out / "last.pt").exists(), head_relu=False)
    tr = Trainer(cfg)
    res = tr.run()
    return {"trained_model": name + mods, "top1": res["final"].get("test_top1"), "top5": res["final"].get("test_top5"),
            "train_time_s": res["train_time_s"], "trained_params": sum(p.numel() for p in tr.model.parameters())}


def _table(rows, trained: bool) -> str:
    cols = [("axis", "axis"), ("SR", "sr"), ("pct3x3", "pct3x3"), ("params", lambda r: f"{r['params']:,}"),
            ("size (MiB fp32)", lambda r: f"{r['size_mib']:.2f}"), ("GMACs @224", lambda r: f"{r['macs'] / 1e9:.3f}")]
    if trained:
        cols += [("top-1 %", lambda r: f"{r['top1']:.2f}" if r.get("top1") is not None else "-"),
                 ("train s", lambda r: f"{r.get('train_time_s', 0):.0f}")]
    return markdown_table(rows, cols)


def _plot(rows, outd: Path, trained: bool) -> list[Path]:
    plt = pyplot()
    paths = []
    for axis, key in (("SR", "sr"), ("pct3x3", "pct3x3")):
        pts = [r for r in rows if r["axis"] == axis]
        if not pts:
            continue
        fig, ax1 = plt.subplots(figsize=(6, 4))
        xs = [r[key] for r in pts]
        ax1.plot(xs, [r["size_mib"] for r in pts], "o-", label="size (MiB fp32)")
        ax1.plot(xs, [r["macs"] / 1e8 for r in pts], "s--", label="MACs (x1e8) @224")
        ax1.set_xlabel(axis)
        ax1.set_ylabel("MiB / 1e8 MACs")
        if trained and all(r.get("top1") is not None for r in pts):
            ax2 = ax1.twinx()
            ax2.plot(xs, [r["top1"] for r in pts], "^-", color="C3", label="test top-1 (%)")
            ax2.set_ylabel("test top-1 (%)", color="C3")
        ax1.legend(loc="upper left", fontsize=8)
        ax1.grid(alpha=0.3)
        ax1.set_title(f"design space: {axis} sweep")
        paths.append(save_figure(fig, outd / f"sweep_{axis}.png"))
    if trained:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in rows:
            if r.get("top1") is not None:
                ax.scatter(r["size_mib"], r["top1"], c="C0" if r["axis"] == "SR" else "C1")
                ax.annotate(f"{r['axis']}={r['sr'] if r['axis'] == 'SR' else r['pct3x3']}", (r["size_mib"], r["top1"]),
                            fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("model size (MiB fp32, 1000 classes)")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title("accuracy vs size")
        ax.grid(alpha=0.3)
        paths.append(save_figure(fig, outd / "sweep_accuracy_vs_size.png"))
    return paths
