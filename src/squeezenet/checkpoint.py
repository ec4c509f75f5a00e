"""Checkpoints: written atomically, loaded with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it
loads under torch's safe unpickler. It records the model name and constructor
options, so :func:`model_from_checkpoint` rebuilds the exact architecture, and the
data spec (classes, channels, input size, mean/std) needed to predict.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .errors import SqueezeNetError

FORMAT = "squeezenet-checkpoint"
FORMAT_VERSION = 1


def atomic_save(obj, path: str | os.PathLike) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over
    ``path``. A crash midway leaves the previous file untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint safely, or raise a one-line SqueezeNetError."""
    path = Path(path)
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                path = path / name
                break
    if not path.is_file():
        raise SqueezeNetError(f"checkpoint not found: '{path}'")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SqueezeNetError(f"cannot load checkpoint '{path}': corrupt or not a squeezenet checkpoint "
                              f"({type(e).__name__})") from e
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SqueezeNetError(f"'{path}' is not a squeezenet checkpoint; for torchvision weights use "
                              "`load_torchvision_weights` or --weights")
    return ckpt


def model_from_checkpoint(ckpt: dict, expect_classes: int | None = None, expect_channels: int | None = None):
    """Rebuild the model a checkpoint was trained as and load its weights."""
    from .registry import create_model

    kwargs = dict(ckpt["model_kwargs"])
    if expect_classes is not None and kwargs.get("num_classes") != expect_classes:
        raise SqueezeNetError(
            f"checkpoint is for {kwargs.get('num_classes')} classes but the data has {expect_classes}; "
            "use a checkpoint trained on this dataset")
    if expect_channels is not None and kwargs.get("in_chans") != expect_channels:
        raise SqueezeNetError(
            f"checkpoint expects {kwargs.get('in_chans')}-channel images but the data has {expect_channels}")
    model = create_model(ckpt["model_name"], **kwargs)
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise SqueezeNetError(f"checkpoint weights do not fit '{ckpt['model_name']}': {first}") from e
    return model


def make_checkpoint(model, model_name: str, data_spec: dict | None = None, **extra) -> dict:
    """A checkpoint dict for ``model`` (unwrapped from DDP/compile)."""
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": model_name,
        "model_kwargs": dict(getattr(model, "model_kwargs", {})),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "data": data_spec or {},
        **extra,
    }
