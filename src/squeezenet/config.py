"""Training settings: the one place each is defined.

Every field of :class:`TrainConfig` carries its type, default, help text and check.
From it come the ``squeezenet train`` flags (:func:`add_train_arguments`), the
validation of config files (TOML/JSON) and of flags alike (:meth:`TrainConfig.validate`,
run before any data is read), and the ``config.json`` saved in every run folder, which
loads back with :meth:`TrainConfig.from_dict`. Named configs (``--config demo``) are
TOML files in ``squeezenet/configs/`` that override the defaults; ``make demo`` uses
``demo``, and ``squeezenet train`` with no model uses ``natural`` for small colour images
and ``demo`` otherwise (:func:`default_config`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import SqueezeNetError
from .resizing import UNTIL
from .spec import EVAL_BATCH_SIZE
from .settings import (add_arguments, check_field_types, fraction_open, input_size, non_negative, non_negative_int,
                       one_of, opt, positive, positive_int, probability, share, size_or_share, validate_fields,
                       within)

DEFAULT_MODEL = "squeezenet1_1_simple_bypass_small_bn_w0.5_sr0.25"
CONFIG_DIR = Path(__file__).parent / "configs"

# The authors' Caffe solver (forresti/SqueezeNet solver.prototxt): SGD, lr 0.04,
# linear ("poly", power 1) decay to 0, momentum 0.9, weight decay 2e-4.
RECIPES = {
    "paper": dict(lr=0.04, schedule="poly", warmup_epochs=0.0, momentum=0.9, nesterov=False,
                  weight_decay=2e-4, label_smoothing=0.0),
    # Chosen by measurement on Fashion-MNIST (docs/BENCHMARKS.md): higher peak lr with
    # linear warm-up, cosine decay, Nesterov, label smoothing 0.1, no decay on BN/bias.
    "fast": dict(lr=0.2, schedule="cosine", warmup_epochs=1.0, momentum=0.9, nesterov=True,
                 weight_decay=5e-4, label_smoothing=0.1),
}


# `--random-erasing auto` (natural.toml, demo.toml): erasing pays only when the run is long enough to overfit.
# Half-width SqueezeNet on our CIFAR-10 split, same-seed pairs on one CPU kind (docs/BENCHMARKS.md 2.0.2.1,
# 2.0.13, 2.0.15, 2.0.16): -1.2 pt at 15 minutes (18-21 epochs), +0.06 at 30 (71-72), +0.74 at 45 (104-106),
# +1.22 and +1.00 at 60 (135-146, seeds 0 and 1). The cut is the midpoint between the longest neutral run (72
# epochs) and the shortest winning one (104), unmeasured in between; it counts epochs, not minutes, so a slower
# CPU's hour, with fewer epochs, trains without. (It was 100 until the 45-minute pair, whose planned lengths,
# 100-109 epochs, put a run that gains 0.74 pt on either side of that cut.) On Fashion-MNIST with the demo's
# model, one same-seed pair at 60 minutes (129 epochs, 2.0.17): +0.52 pt (+0.16 with flip TTA); the cut itself
# was not measured there. Under natural's progressive resizing, 30 minutes on the AVX-512/bf16 EPYC spans 85-87
# epochs (first plans 80 and 83, so `auto` stays off): erasing forced on there, two same-seed pairs (2.0.31-2.0.32),
# +0.60 and -0.58 pt single view (flip TTA +0.08 and -0.42), so no case for a lower cut for resized schedules.
AUTO_ERASING = {"p": 0.3, "min_epochs": 88}


def erasing_probability(v):
    """A --random-erasing check: None for ``auto`` or a probability, else what it must be."""
    if v == "auto":
        return None
    return "auto, or a number between 0 and 1" if isinstance(v, str) or within(0, 1)(v) else None


def duration(v):
    """A --time-budget check: None when ``v`` parses, else what it must be."""
    from .budget import parse_duration

    try:
        parse_duration(v)
    except SqueezeNetError:
        return "a duration of at least 10 s, such as 90s, 10m or 1h30m"
    return None


@dataclass
class TrainConfig:
    model: str = opt(DEFAULT_MODEL, "model name (see `squeezenet list`)", cli=False)
    data: str = opt("fashion-mnist", "fashion-mnist, cifar10, cifar100, or an ImageFolder path "
                    "(train/<class>/*.jpg, val/<class>/*.jpg)", resume_must_match=True)
    data_dir: str | None = opt(None, "where named datasets live (Fashion-MNIST IDX files, CIFAR batches)")
    download: bool = opt(True, "try torchvision's downloader when the data is not found")
    out: str = opt("runs/train", "run folder (one writer at a time; it is locked while training)")
    epochs: int = opt(10, "training epochs", positive_int, resume_must_match=True)
    batch_size: int = opt(256, "global batch size (split across torchrun processes)", positive_int, short="-b",
                          resume_must_match=True)
    recipe: str = opt("fast", "optimisation recipe: fast, or paper (the authors' Caffe solver); sets the defaults "
                      "of lr, schedule, warm-up, momentum, nesterov, weight decay and label smoothing",
                      one_of(*RECIPES), choices=list(RECIPES), resume_must_match=True)
    lr: float | None = opt(None, "peak learning rate (default: the recipe's: fast 0.2, paper 0.04)", positive,
                           resume_must_match=True)
    schedule: str | None = opt(None, "learning-rate schedule (default: the recipe's)",
                               one_of("cosine", "poly", "constant"), choices=["cosine", "poly", "constant"],
                               resume_must_match=True)
    warmup_epochs: float | None = opt(None, "linear warm-up epochs (default: the recipe's)", non_negative,
                                      resume_must_match=True)
    momentum: float | None = opt(None, "SGD momentum (default 0.9)", probability, resume_must_match=True)
    nesterov: bool | None = opt(None, "Nesterov momentum (default: the recipe's)", resume_must_match=True)
    weight_decay: float | None = opt(None, "weight decay on conv/linear weights (default: the recipe's)",
                                     non_negative, flag="--weight-decay", short="--wd", resume_must_match=True)
    label_smoothing: float | None = opt(None, "label smoothing (default: the recipe's)", probability,
                                        resume_must_match=True)
    random_erasing: float | str = opt(0.0, "random-erasing probability per image (small-image data), or auto: "
                                      f"{AUTO_ERASING['p']} once the schedule is known to span at least "
                                      f"{AUTO_ERASING['min_epochs']} epochs (under a time budget: at its first "
                                      "plan, from the next epoch), else off", erasing_probability,
                                      resume_must_match=True)
    cutmix: float = opt(0.0, "CutMix probability per batch (small-image data): a box from another image of the "
                        "batch is pasted in and the labels are mixed by area (alpha 1, as the paper's CIFAR runs)",
                        within(0, 1), resume_must_match=True)
    ema: float = opt(0.0, "keep an exponential moving average of the weights with this decay (e.g. 0.998) and "
                     "evaluate/save it; 0 = off", probability, resume_must_match=True)
    input_size: int | None = opt(None, "train (and record) at this image size in px; images are resized",
                                 input_size, resume_must_match=True)
    progressive_resizing: int | float = opt(0, "train the early part of the schedule at this smaller image size, "
                                            "in px (24) or as a share of the full size (0.75: 24 px of 32, 48 of "
                                            "64), and grow it to the full size over the 35% of the steps before "
                                            "--progressive-resizing-until (FFCV's progressive resizing; evaluation "
                                            "and the recorded size stay full); 0 = off", size_or_share,
                                            resume_must_match=True)
    progressive_resizing_until: float = opt(UNTIL, "with --progressive-resizing: the share of the schedule's steps "
                                            "by which the full size is reached; the rest trains at the full size",
                                            share, resume_must_match=True)
    dropout: float | None = opt(None, "dropout before the classifier (default: the model's, 0.5 for SqueezeNet)",
                                probability, resume_must_match=True)
    head_relu: bool | None = opt(None, "keep the paper's ReLU after conv10 (default: the model's, on); "
                                 "--no-head-relu avoids dead classes at high lr (see docs)")
    seed: int = opt(0, "random seed (data order, augmentation, initialisation)", non_negative_int,
                    resume_must_match=True)
    device: str = opt("auto", "auto, cpu, cuda or cuda:N",
                      lambda v: None if isinstance(v, str) and (v in ("auto", "cpu", "cuda") or
                                                                (v.startswith("cuda:") and v[5:].isdigit()))
                      else "auto, cpu, cuda or cuda:N")
    precision: str = opt("auto", "auto (bf16 where the hardware has it, else fp32), fp32, bf16 or fp16 (GPU)",
                         one_of("auto", "fp32", "bf16", "fp16"), choices=["auto", "fp32", "bf16", "fp16"])
    channels_last: bool = opt(True, "channels_last memory format (faster on CPU)")
    workers: int = opt(2, "DataLoader workers for large-image data", non_negative_int, short="-j")
    val_fraction: float = opt(0.1, "share of an ImageFolder without val/ held out for validation", fraction_open,
                              resume_must_match=True)
    weights: str | None = opt(None, "start from torchvision ImageNet weights (file or URL); conv10 is reset")
    resume: bool = opt(False, "continue the run in --out from its last.pt, with the run's own settings")
    time_budget: str | None = opt(None, "train to this wall-clock budget (90s, 10m, 1h30m): the step rate is "
                                  "measured and the whole schedule, evaluation included, is fitted to the budget "
                                  "(--epochs is then not used)", duration, resume_must_match=True)
    max_steps: int | None = opt(None, "stop after this many optimizer steps (smoke tests)", positive_int)
    train_subset: int | None = opt(None, "use only N training images, taken round-robin over the classes", positive_int, resume_must_match=True)
    eval_batch_size: int = opt(EVAL_BATCH_SIZE, "evaluation batch size", positive_int)
    progress: bool = opt(True, "progress bars on a terminal (plain lines elsewhere)")
    threads: int | None = opt(None, "torch intra-op threads", positive_int)
    model_options: dict = opt({}, "extra model constructor options", cli=False)

    def validate(self) -> "TrainConfig":
        """Check every value's type, then its range; raise one line naming the first bad
        setting and the fix. A config file's ``"false"`` is a string, not a boolean, and is
        refused rather than read as true."""
        validate_fields(self)
        if not isinstance(self.model, str) or not self.model:
            raise SqueezeNetError("model must be a model name; see `squeezenet list`")
        if not isinstance(self.model_options, dict):
            raise SqueezeNetError("model_options must be a table of model options")
        if not self.progressive_resizing and self.progressive_resizing_until != UNTIL:
            raise SqueezeNetError(f"--progressive-resizing-until {self.progressive_resizing_until} applies only with "
                                  "--progressive-resizing: give the smaller size too (e.g. --progressive-resizing 24), "
                                  "or drop --progressive-resizing-until")
        return self

    def resolved(self) -> "TrainConfig":
        """A validated copy with the recipe's values filled in where none was given."""
        self.validate()
        fill = {k: v for k, v in RECIPES[self.recipe].items() if getattr(self, k) is None}
        return dataclasses.replace(self, **fill, model_options=dict(self.model_options))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        d = dict(d)
        opts = d.get("model_options") or {}
        if isinstance(opts, dict) and "head_relu" in opts and "head_relu" not in d:  # older config files
            d["head_relu"] = opts.pop("head_relu")
            d["model_options"] = opts
        unknown = set(d) - names
        if unknown:
            raise SqueezeNetError(f"unknown training option(s): {', '.join(sorted(unknown))}; see "
                                  "`squeezenet train --help`")
        return cls(**d).validate()


def resume_must_match() -> tuple[str, ...]:
    """The settings that must be unchanged to resume a run (see :func:`opt`)."""
    return tuple(f.name for f in fields(TrainConfig) if f.metadata.get("resume_must_match"))


def check_types(settings: dict) -> None:
    """Refuse, in one line, the first setting of a (partial) table whose value has the
    wrong type for its field; unknown names are left to :meth:`TrainConfig.from_dict`."""
    check_field_types(TrainConfig, settings)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field (default None: only what is given overrides)."""
    add_arguments(parser, TrainConfig, defaults=False)


def default_config(data: str | None) -> str:
    """The named config ``squeezenet train`` starts from when no model is given: ``natural``
    for small colour images (CIFAR-10/100, or an ImageFolder of RGB images up to 64 px),
    chosen on CIFAR-10 (docs/BENCHMARKS.md 2.0.2); ``demo`` otherwise."""
    from .sources import FASHION_MNIST_NAMES, small_colour_folder

    if data is None or data.lower() in FASHION_MNIST_NAMES:
        return "demo"
    if data.lower() in ("cifar10", "cifar100"):
        return "natural"
    return "natural" if small_colour_folder(Path(data)) else "demo"


def load_config_file(path: str) -> dict:
    """A TOML/JSON file of settings, or a named config (``demo``, ``natural``, ``long``)."""
    p = Path(path)
    if not p.is_file() and (CONFIG_DIR / f"{path}.toml").is_file():
        p = CONFIG_DIR / f"{path}.toml"
    if not p.is_file():
        named = ", ".join(sorted(q.stem for q in CONFIG_DIR.glob("*.toml")))
        raise SqueezeNetError(f"config file not found: '{path}' (named configs: {named})")
    try:
        text = p.read_text()
        if p.suffix == ".json":
            d = json.loads(text)
        else:
            import tomllib

            d = tomllib.loads(text)
    except Exception as e:  # any parse error is the file's fault
        raise SqueezeNetError(f"cannot parse config file '{path}': {str(e).splitlines()[0]}") from e
    if not isinstance(d, dict):
        raise SqueezeNetError(f"config file '{path}' must hold a table of settings")
    return d


def layered(cfg: dict, over: dict) -> dict:
    """A config file's settings with explicit ones (flags, a benchmark's ``--set``) over
    them. One rule beyond replacing: ``progressive_resizing = 0`` given explicitly turns the
    file's progressive resizing off, its ``progressive_resizing_until`` with it, so
    ``--config natural --progressive-resizing 0`` trains without resizing; that share
    given explicitly without a size is still refused (:meth:`TrainConfig.validate`)."""
    if over.get("progressive_resizing") == 0 and "progressive_resizing_until" not in over:
        cfg = {k: v for k, v in cfg.items() if k != "progressive_resizing_until"}
    return {**cfg, **over}


def run_config(run_dir: str | Path) -> dict:
    """The settings a run folder was trained with (its config.json)."""
    p = Path(run_dir) / "config.json"
    try:
        d = json.loads(p.read_text())
    except FileNotFoundError:
        raise SqueezeNetError(f"'{run_dir}' has no config.json; is it a squeezenet run folder?") from None
    except (OSError, ValueError) as e:
        raise SqueezeNetError(f"cannot read '{p}': {e}; the run's settings are damaged: restore config.json from a "
                              "backup, or start a new run with another --out") from e
    if not isinstance(d, dict):
        raise SqueezeNetError(f"'{p}' is not a settings table")
    names = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in d.items() if k in names}
