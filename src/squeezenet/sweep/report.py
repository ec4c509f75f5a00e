"""A sweep's record: ``sweep.md`` (table, best point, plots), ``sweep.json`` and the
figures (Fig. 3's two axes, and accuracy against size with the Pareto front)."""

from __future__ import annotations

import json
from pathlib import Path

from ..files import atomic_write_text
from ..render import markdown_table, pyplot, save_figure


def pareto_front(rows: list[dict]) -> list[dict]:
    """The finished points no other finished point beats on both size and top-1, smallest first."""
    done = sorted((r for r in rows if r.get("status", "done") == "done" and r.get("top1") is not None),
                  key=lambda r: (r["size_mib"], -r["top1"]))
    front, best = [], float("-inf")
    for r in done:
        if r["top1"] > best:
            front.append(r)
            best = r["top1"]
    return front


def best_point(rows: list[dict]) -> dict | None:
    done = [r for r in rows if r.get("status", "done") == "done" and r.get("top1") is not None]
    return max(done, key=lambda r: (r["top1"], -r["params"])) if done else None


def write_report(outd: Path, rows: list[dict], s, rejected: int = 0) -> dict:
    trained = s.train_epochs > 0
    table = _table(rows, trained, s.search != "grid")
    plots = _plot(rows, outd, trained)
    what = "grid of Fig. 3" if s.search == "grid" else f"{s.search} search over base_e, incr_e, pct3x3, freq and SR"
    text = (f"# Design-space sweep (paper section 5): {what}\n\n"
            f"Base {s.base}; engine {s.engine}; sizes are MiB of fp32 weights for 1000 classes (the paper's \"MB\"); "
            "MACs = multiply-accumulates at 224 px.")
    if trained:
        text += (f" Accuracy: test top-1 after {s.train_epochs} epochs on {rows[0]['settings'].get('data') if rows else '?'}"
                 f" ({s.train_model_options}), seed {s.seed}.")
    budget = [f"<= {s.max_params:,} parameters" if s.max_params else "", f"<= {s.max_macs:,} MACs" if s.max_macs else ""]
    budget = " and ".join(b for b in budget if b)
    if budget:
        text += f" Objective: top-1 among points with {budget}" + (f" ({rejected} draws over it not trained)."
                                                                  if rejected else ".")
    best = best_point(rows) if trained else None
    if best:
        text += (f"\n\nBest: **{best['model']}**, {best['top1']:.2f}% top-1, {best['params']:,} parameters. It was "
                 "chosen on the split it is scored on, so its top-1 is the best of the points measured there and "
                 "an optimistic estimate for new images; to quote it, train it again and score it on images no "
                 "point was chosen on.")
    failed = [r for r in rows if r.get("status") == "failed"]
    text += f"\n\n{table}\n\n"
    if failed:
        text += "Failed points (retried by the next run):\n\n" + "".join(f"- {r['model']}: {r['error']}\n"
                                                                       for r in failed) + "\n"
    text += "".join(f"![{p.stem}]({p.name})\n\n" for p in plots)
    report = outd / "sweep.md"
    atomic_write_text(report, text)
    atomic_write_text(outd / "sweep.json", json.dumps(rows, indent=2))
    return {"rows": rows, "table": table, "report": str(report), "plots": [str(p) for p in plots], "best": best,
            "failed": len(failed)}


def _table(rows, trained: bool, searched: bool) -> str:
    cols = [("axis", "axis")]
    if searched:
        cols += [("base_e", "base_e"), ("incr_e", "incr_e"), ("freq", "freq")]
    cols += [("SR", "sr"), ("pct3x3", "pct3x3"), ("params", lambda r: f"{r['params']:,}"),
             ("size (MiB fp32)", lambda r: f"{r['size_mib']:.2f}"), ("GMACs @224", lambda r: f"{r['macs'] / 1e9:.3f}")]
    if trained:
        cols += [("top-1 %", lambda r: f"{r['top1']:.2f}" if r.get("top1") is not None else "-"),
                 ("train s", lambda r: f"{r['train_time_s']:.0f}" if r.get("train_time_s") is not None else "-"),
                 ("status", _status)]
    return markdown_table(rows, cols)


def _status(r: dict) -> str:
    st = r.get("status", "done")
    return f"stopped after epoch {r.get('epochs_run')}" if st == "stopped" else st


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
        paths.append(_pareto_plot(plt, rows, outd))
    return paths


def _label(r: dict) -> str:
    if r["axis"] == "search":
        return f"be{r['base_e']} ie{r['incr_e']} f{r['freq']} sr{r['sr']:g} pct{r['pct3x3']:g}"
    return f"{r['axis']}={r['sr'] if r['axis'] == 'SR' else r['pct3x3']}"


def _pareto_plot(plt, rows, outd: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {"SR": "C0", "pct3x3": "C1", "search": "C2"}
    for r in rows:
        if r.get("status", "done") == "done" and r.get("top1") is not None:
            ax.scatter(r["size_mib"], r["top1"], c=colours[r["axis"]], s=18)
            ax.annotate(_label(r), (r["size_mib"], r["top1"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = pareto_front(rows)
    if front:
        ax.step([r["size_mib"] for r in front], [r["top1"] for r in front], "k--", where="post", lw=1,
                label="Pareto front")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xlabel("model size (MiB fp32, 1000 classes)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("accuracy vs size, every finished point")
    ax.grid(alpha=0.3)
    return save_figure(fig, outd / "sweep_accuracy_vs_size.png")
