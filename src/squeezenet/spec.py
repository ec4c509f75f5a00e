"""What a trained model needs at inference: classes, channels, input size, mean/std.

Torch-free, so the serving path validates an ONNX file's metadata with the same code
that validates a checkpoint's or a .sqz container's. Every field is checked, and a bad
one is named in a one-line :class:`SqueezeNetError`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import SqueezeNetError
from .tta import TTA_MODES, shift_pixels

# Evaluation batch: every evaluation pass's default (training's per-epoch evaluation, `eval`,
# `quantize`). At 128 a pass of the demo model over Fashion-MNIST's test images ran 2.3-2.5x
# faster than at 1000 on the AVX-512 EPYC, and of the CIFAR-10 model 2.1-2.3x (its activations
# stay in cache; docs/BENCHMARKS.md 2.0.10); a time budget turns that into training steps.
# The scores are the same.
EVAL_BATCH_SIZE = 128
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
# One-channel models on ImageNet-style data: the channel mean of the above (torchvision's
# Grayscale weights 0.299/0.587/0.114 give 0.449) and its std (0.226).
IMAGENET_GRAY_MEAN = [0.449]
IMAGENET_GRAY_STD = [0.226]


@dataclass
class DataSpec:
    """What a model trained on this data needs to know at inference time."""

    name: str
    classes: list[str]
    channels: int
    input_size: int
    mean: list[float]
    std: list[float]
    small: bool = True
    pad: int = 0
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def tta(self) -> str | None:
        """The test-time augmentation built into the model's graph (``export --tta``), or None."""
        return self.extra.get("tta")

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        return {**d, **self.extra}

    @classmethod
    def from_dict(cls, d, where: str, num_classes: int | None = None, channels: int | None = None) -> "DataSpec":
        """Validate ``d`` (from a file named by ``where``) and build a spec."""
        if not isinstance(d, dict):
            raise SqueezeNetError(f"{where}: the data description is not a table")

        def bad(key, want):
            return SqueezeNetError(f"{where}: field '{key}' must be {want}, found {_short(d.get(key))}")

        classes = d.get("classes")
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise bad("classes", "a non-empty list of class names")
        if num_classes is not None and len(classes) != num_classes:
            raise bad("classes", f"{num_classes} names (the model has {num_classes} outputs); "
                                 f"{len(classes)} given")
        ch = d.get("channels")
        if not _int(ch) or ch not in (1, 3) or (channels is not None and ch != channels):
            raise bad("channels", f"{channels if channels is not None else '1 or 3'} (the model's input channels)")
        size = d.get("input_size")
        if not _int(size) or not 8 <= size <= 2048:
            raise bad("input_size", "an integer between 8 and 2048")
        for key in ("mean", "std"):
            v = d.get(key)
            if not isinstance(v, list) or len(v) != ch or not all(_num(x) for x in v):
                raise bad(key, f"a list of {ch} finite numbers")
        if not all(s > 0 for s in d["std"]):
            raise bad("std", "positive")
        if d.get("tta") not in (None, *TTA_MODES):
            raise bad("tta", f"one of {', '.join(TTA_MODES)} or absent (the test-time augmentation built into the "
                             "model); this file may come from a newer squeezenet")
        name = d.get("name", "")
        pad = d.get("pad", 0)
        known = {"name", "classes", "channels", "input_size", "mean", "std", "small", "pad"}
        return cls(str(name), list(classes), ch, size, [float(x) for x in d["mean"]], [float(x) for x in d["std"]],
                   bool(d.get("small", True)), pad if _int(pad) and 0 <= pad <= size else 0,
                   {k: v for k, v in d.items() if k not in known})


def check_tta(tta: str | None) -> str | None:
    """``tta`` if it is None or one of :data:`TTA_MODES`, else a one-line error."""
    if tta not in (None, *TTA_MODES):
        raise SqueezeNetError(f"unknown test-time augmentation '{tta}'; use {', '.join(TTA_MODES)} or none")
    return tta


def evaluation_tta(spec: DataSpec, tta: str | None, where: str) -> str | None:
    """The augmentation an evaluation applies on top of the model: ``tta`` (from --tta),
    refused when the model already has one built in, which would apply it twice, or when
    the model cannot have it (``flip-shift`` on a model trained without translation)."""
    if check_tta(tta) and spec.tta:
        raise SqueezeNetError(f"{where} already averages each image over its {spec.tta} views (exported with "
                              f"--tta {spec.tta}); drop --tta, or export without it")
    if tta:
        shift_pixels(tta, spec.pad, where)
    return tta


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."
