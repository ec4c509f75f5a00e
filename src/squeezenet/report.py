"""Run reports: PNG curves, a confusion matrix and report.md linking them."""

from __future__ import annotations

import json
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], path: Path):
    plt = _plt()
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot(ep, [h.get("test_loss") for h in history], "s-", label="test")
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy loss (log)"), a.legend(), a.grid(alpha=0.3)
    a.set_yscale("log")
    b.plot(ep, [h["train_top1"] for h in history], "o-", label="train top-1 (augmented)")
    b.plot(ep, [h.get("test_top1") for h in history], "s-", label="test top-1")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy (%)"), b.legend(), b.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(conf: list[list[int]], classes: list[str], path: Path):
    import numpy as np

    plt = _plt()
    c = np.asarray(conf, dtype=float)
    norm = c / np.maximum(c.sum(1, keepdims=True), 1)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted"), ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{100 * norm[i, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    ax.set_title("confusion matrix (%, rows = true class)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out: Path, trainer, confusion) -> Path:
    """Write curves.png, confusion.png, confusion.json and report.md into ``out``."""
    from .profiler import profile

    hist, cfg, spec = trainer.history, trainer.cfg, trainer.spec
    if hist:
        plot_curves(hist, out / "curves.png")
    plot_confusion(confusion, spec.classes, out / "confusion.png")
    (out / "confusion.json").write_text(json.dumps({"classes": spec.classes, "matrix": confusion}))
    prof = profile(trainer.model.float().to("cpu") if trainer.device.type != "cpu" else trainer.model,
                   (spec.channels, spec.input_size, spec.input_size), trainer.model_name)
    if trainer.device.type != "cpu":
        trainer.model.to(trainer.device)
    last = hist[-1] if hist else {}
    lines = [
        f"# Training report: {trainer.model_name} on {spec.name}",
        "",
        f"- device: {trainer.device}, precision: {trainer.precision}, channels_last: {cfg.channels_last}, "
        f"processes: {trainer.dist.world}",
        f"- recipe: {cfg.recipe} (lr {cfg.lr}, {cfg.schedule}, warm-up {cfg.warmup_epochs} epochs, momentum "
        f"{cfg.momentum}, nesterov {cfg.nesterov}, weight decay {cfg.weight_decay}, label smoothing "
        f"{cfg.label_smoothing}), batch {cfg.batch_size}, epochs {cfg.epochs}, seed {cfg.seed}",
        f"- training time (set-up and evaluation excluded): {trainer.train_time:.1f} s; peak RSS "
        f"{last.get('peak_rss_mib', 0):.0f} MiB",
        "",
        "## Result",
        "",
        "| metric | value |",
        "|---|---|",
        f"| final test top-1 | {last.get('test_top1', float('nan')):.2f}% |",
        f"| final test top-5 | {last.get('test_top5', float('nan')):.2f}% |",
        f"| best test top-1 | {trainer.best_top1:.2f}% |",
        f"| final test loss | {last.get('test_loss', float('nan')):.4f} |",
        "",
        "![curves](curves.png)",
        "",
        "![confusion matrix](confusion.png)",
        "",
        "## Per epoch",
        "",
        "| epoch | train loss | train top-1 | test loss | test top-1 | test top-5 | lr (end) | img/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for h in hist:
        lines.append(f"| {h['epoch']} | {h['train_loss']:.4f} | {h['train_top1']:.2f} | {h.get('test_loss', 0):.4f} | "
                     f"{h.get('test_top1', 0):.2f} | {h.get('test_top5', 0):.2f} | {h['lr']:.4g} | {h['img_per_s']:.0f} |")
    lines += ["", "Files: [config.json](config.json), [metrics.csv](metrics.csv), [metrics.jsonl](metrics.jsonl), "
              "`last.pt`, `best.pt`.", "", "## Model summary", "", prof.format("markdown"), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
