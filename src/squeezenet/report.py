"""Run reports: PNG curves, a confusion matrix and report.md linking them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .render import markdown_table, pyplot, save_figure


def plot_curves(history: list[dict], path: Path):
    plt = pyplot()
    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(ep, [h["train_loss"] for h in history], "o-", label="train")
    a.plot(ep, [h.get("test_loss") for h in history], "s-", label="test")
    a.set_xlabel("epoch"), a.set_ylabel("cross-entropy loss (log)"), a.legend(), a.grid(alpha=0.3)
    a.set_yscale("log")
    b.plot(ep, [h["train_top1"] for h in history], "o-", label="train top-1 (augmented)")
    b.plot(ep, [h.get("test_top1") for h in history], "s-", label="test top-1")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy (%)"), b.legend(), b.grid(alpha=0.3)
    save_figure(fig, path)


def plot_confusion(conf: list[list[int]], classes: list[str], path: Path):
    import numpy as np

    plt = pyplot()
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
    save_figure(fig, path)


@dataclass
class RunSummary:
    """What a finished (or stopped) run reports; built by the Trainer."""

    model_name: str
    cfg: object  # TrainConfig
    spec: object  # DataSpec
    device: str
    precision: str
    world: int
    train_time: float
    history: list
    best_top1: float | None  # None: no epoch finished
    final: dict  # the last evaluation (test_top1, test_top5, test_loss)
    global_step: int
    stopped_early: bool
    peak_rss_mib: float
    confusion: list
    files: list = field(default_factory=list)
    budget: dict | None = None  # --time-budget: budget_s, spent, plans
    final_at_stop: bool = False  # ``final`` evaluates the weights where --max-steps stopped, not an epoch's end
    erasing: dict | None = None  # what `--random-erasing auto` chose (Trainer.erasing_at)
    total_steps: int = 0  # the schedule's length (a time budget's last plan)


def augmentation_lines(cfg, erasing: dict | None) -> list[str]:
    """Random erasing and CutMix, when the run asked for either; for ``auto``, what it chose and why."""
    from .config import AUTO_ERASING

    p = cfg.random_erasing
    if p == "auto":
        n = AUTO_ERASING["min_epochs"]
        if erasing is None:
            p = "auto, not decided (the run stopped before its schedule's length was known): none applied"
        elif erasing["streamed"]:
            p = "auto: off (images streamed from files are not erased)"
        elif erasing["p"] > 0:
            p = (f"auto: {erasing['p']} from epoch {erasing['from_epoch'] + 1} (when it was decided the schedule "
                 f"spanned {erasing['epochs']} epochs, at least {n})")
        else:
            p = f"auto: off (when it was decided the schedule spanned {erasing['epochs']} epochs, fewer than {n})"
    if not p and not cfg.cutmix:
        return []
    return [f"- per-batch augmentation: random erasing {p}, CutMix {cfg.cutmix}"]


def resizing_lines(cfg, full: int, total: int, budget: dict | None) -> list[str]:
    """--progressive-resizing: the step each size started at, and what each size cost."""
    from .resizing import full_size_steps, start_px, starts

    low = start_px(cfg.progressive_resizing, full)
    if not low:
        return []
    until = cfg.progressive_resizing_until
    sizes = starts(total, low, full, until)
    at = ", ".join(f"{px} px from step {first:,}" for first, px in sizes)
    px_cost = (budget or {}).get("px_cost") or {}
    cost = sorted((int(px), float(c)) for px, c in px_cost.items())
    work = full_size_steps(total, until, px_cost)
    priced = (f"; a step's cost against a {full} px step, as the budget measured it: "
              + ", ".join(f"{px} px {c:.2f}" for px, c in cost)
              + f"; the schedule's work at those costs: {work:,.0f} {full} px steps") if cost else ""
    return [f"- progressive resizing over the {total:,}-step schedule: {at} (evaluation and the recorded size: "
            f"{full} px){priced}"]


def budget_lines(budget: dict | None) -> list[str]:
    """The time budget: planned against actual, and every plan made."""
    if not budget or not budget.get("plans"):
        return []
    from .budget import format_duration

    plans = budget["plans"]
    last = plans[-1]
    lines = [f"- time budget {format_duration(budget['budget_s'])}: planned {format_duration(last['planned_s'])}, "
             f"actual {format_duration(budget['spent'])} (training, evaluation and checkpoints; "
             f"{100 * budget['spent'] / budget['budget_s']:.1f}% of the budget); schedule of {last['total_steps']:,} "
             f"steps, planned {len(plans)} time(s):"]
    lines += [f"  - at step {p['at_step']:,}: {p['step_s'] * 1000:.1f} ms/step, evaluation {p['eval_s']:.1f} s, "
              f"{p['total_steps']:,} steps, {p['evals']} evaluation(s), planned {format_duration(p['planned_s'])}"
              for p in plans]
    return lines


EPOCH_COLUMNS = [
    ("epoch", "epoch"), ("train loss", lambda h: f"{h['train_loss']:.4f}"), ("train top-1", lambda h: f"{h['train_top1']:.2f}"),
    ("test loss", lambda h: f"{h['test_loss']:.4f}"), ("test top-1", lambda h: f"{h['test_top1']:.2f}"),
    ("test top-5", lambda h: f"{h['test_top5']:.2f}"), ("lr (end)", lambda h: f"{h['lr']:.4g}"),
    ("img/s", lambda h: f"{h['img_per_s']:.0f}"),
]


def _pct(v) -> str:
    return f"{v:.2f}%" if isinstance(v, (int, float)) and v == v else "not evaluated"


def tta_lines(last: dict, out) -> list[str]:
    """The flip-TTA row of the result table, when the run measured it."""
    tta = last.get("test_tta_top1")
    if tta is None:
        return []
    gain = tta - last["test_top1"]
    how = (f"ship it with `squeezenet export {Path(out) / 'last.pt'} --tta flip`, at about twice the inference time"
           if gain > 0 else "no gain: ship the plain model")
    return [f"| final test top-1 with flip TTA | {_pct(tta)} ({gain:+.2f} pt; {how}) |"]


def write_report(out: Path, run: RunSummary, model) -> Path:
    """Write curves.png, confusion.png, confusion.json and report.md into ``out``."""
    from .files import atomic_write_text
    from .profiler import profile

    hist, cfg, spec = run.history, run.cfg, run.spec
    files = set(run.files)
    if hist:
        plot_curves(hist, out / "curves.png")
        files.add("curves.png")
    plot_confusion(run.confusion, spec.classes, out / "confusion.png")
    atomic_write_text(out / "confusion.json", json.dumps({"classes": spec.classes, "matrix": run.confusion}))
    files |= {"confusion.png", "confusion.json", "report.md"}
    cpu_model = model.float().to("cpu") if run.device != "cpu" else model
    prof = profile(cpu_model, (spec.channels, spec.input_size, spec.input_size), run.model_name)
    if run.device != "cpu":
        model.to(run.device)
    last = run.final or {}
    where = "the first epoch" if not hist else "an epoch of this resumed run"
    stop = (f"stopped by --max-steps after {run.global_step} steps" + (
        f", before {where} ended: the figures below evaluate the weights at that point" if run.final_at_stop else "")
        if run.stopped_early else "")
    lines = [
        f"# Training report: {run.model_name} on {spec.name}",
        "",
        f"- device: {run.device}, precision: {run.precision}, channels_last: {cfg.channels_last}, "
        f"processes: {run.world}",
        f"- recipe: {cfg.recipe} (lr {cfg.lr}, {cfg.schedule}, warm-up {cfg.warmup_epochs} epochs, momentum "
        f"{cfg.momentum}, nesterov {cfg.nesterov}, weight decay {cfg.weight_decay}, label smoothing "
        f"{cfg.label_smoothing}), batch {cfg.batch_size}, epochs {len(hist)} of "
        f"{'the time budget' if run.budget else cfg.epochs}, seed {cfg.seed}",
        f"- input: {spec.channels} x {spec.input_size} x {spec.input_size} px, mean {spec.mean}, std {spec.std}",
        f"- training time (set-up and evaluation excluded): {run.train_time:.1f} s; peak RSS {run.peak_rss_mib:.0f} MiB",
    ] + augmentation_lines(cfg, run.erasing) + resizing_lines(cfg, spec.input_size, run.total_steps, run.budget) + (
        [f"- {stop}"] if stop else []) + budget_lines(run.budget) + [
        "",
        "## Result",
        "",
        "| metric | value |",
        "|---|---|",
        f"| final test top-1 | {_pct(last.get('test_top1'))} |",
        f"| final test top-5 | {_pct(last.get('test_top5'))} |",
        f"| best test top-1 (per epoch) | {_pct(run.best_top1) if run.best_top1 is not None else 'no epoch finished'} |",
        f"| final test loss | {last.get('test_loss', float('nan')):.4f} |",
    ] + tta_lines(last, out) + [
        "",
    ] + (["![curves](curves.png)", ""] if hist else []) + [
        "![confusion matrix](confusion.png)",
        "",
    ]
    if hist:
        lines += ["## Per epoch", "", markdown_table(hist, EPOCH_COLUMNS), ""]
    links = [f"[{f}]({f})" if f.endswith((".json", ".csv", ".jsonl", ".png")) else f"`{f}`" for f in sorted(files)
             if f != "report.md"]
    lines += ["Files: " + ", ".join(links) + ".", "", "## Model summary", "", prof.format("markdown"), ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path
