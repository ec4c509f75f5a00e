"""One sweep point, as a pure function every engine calls.

``run_trial(config, report=None) -> metrics`` builds the point's model, trains it and
evaluates it. Everything it needs is in ``config`` (a plain, picklable dict, so a Ray
worker on another machine gets all of it); it touches no global state besides torch's
thread count, which ``config["threads"]`` sets. ``report(metrics)`` is called after every
epoch (the Ray engine forwards it to ``ray.tune.report``, so ASHA can stop a weak point).
A run folder that holds a checkpoint is resumed, so a killed sweep loses at most the
epoch in flight.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

# The keys of a trial's config (the sweep's settings for the point; see driver.trial_config).
CONFIG_KEYS = ("model", "epochs", "data", "data_dir", "download", "batch_size", "seed", "out", "threads", "device")


def run_trial(config: dict, report: Callable[[dict], None] | None = None) -> dict:
    """Train and evaluate the point ``config["model"]``; returns its top-1/top-5, training
    time and the trained model's parameter count."""
    from ..config import TrainConfig
    from ..train import Trainer

    missing = [k for k in CONFIG_KEYS if k not in config]
    if missing:
        raise ValueError(f"trial config lacks {', '.join(missing)}")
    out = Path(config["out"])

    def on_epoch(row: dict) -> None:
        if report is not None:
            report({"epoch": row["epoch"], "top1": row.get("test_top1"), "top5": row.get("test_top5"),
                    "train_time_s": row.get("train_time_s")})

    cfg = TrainConfig(model=config["model"], data=config["data"], data_dir=config["data_dir"],
                      download=config["download"], out=str(out), epochs=config["epochs"],
                      batch_size=config["batch_size"], seed=config["seed"], threads=config["threads"],
                      device=config["device"], progress=False, resume=(out / "last.pt").exists(), head_relu=False)
    tr = Trainer(cfg, on_epoch=on_epoch)
    res = tr.run()
    return {"trained_model": config["model"], "top1": res["final"].get("test_top1"),
            "top5": res["final"].get("test_top5"), "train_time_s": res["train_time_s"],
            "trained_params": sum(p.numel() for p in tr.model.parameters())}
