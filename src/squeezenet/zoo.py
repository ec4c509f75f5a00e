"""Build any model by name: ours (registry), torchvision's (``tv:NAME`` or a bare
torchvision builder name) and timm's (``timm:NAME``, optional extra)."""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import torch

from .errors import SqueezeNetError
from .factory import create_model, is_model


class Built(NamedTuple):
    model: torch.nn.Module
    in_chans: int
    input_size: int  # native square resolution in px


def build_any(name: str, num_classes: int | None = None, in_chans: int | None = None, meta: bool = False) -> Built:
    """The model called ``name`` with random weights (no hub), in eval mode.

    ``meta=True`` builds it on the meta device: shapes and counts without allocating
    any weights (``summary``/``explain`` of any size answer at once)."""
    with torch.device("meta") if meta else contextlib.nullcontext():
        return _build(name, num_classes, in_chans)


def _build(name, num_classes, in_chans) -> Built:
    kw = {}
    if num_classes:
        kw["num_classes"] = num_classes
    if name.startswith("timm:"):
        from .errors import require

        timm = require("timm", "peers")
        try:
            m = timm.create_model(name[5:], pretrained=False, in_chans=in_chans or 3, **kw)
        except RuntimeError as e:
            raise SqueezeNetError(f"unknown timm model '{name[5:]}' ({e})") from e
        size = m.pretrained_cfg.get("input_size", (3, 224, 224))[1] if hasattr(m, "pretrained_cfg") else 224
        return Built(m.eval(), in_chans or 3, size)
    if name.startswith("tv:") or (not is_model(name) and _is_tv(name)):
        import torchvision

        tv = name[3:] if name.startswith("tv:") else name
        if in_chans not in (None, 3):
            raise SqueezeNetError("torchvision models take 3-channel input; drop --in-chans")
        try:
            m = torchvision.models.get_model(tv, weights=None, **kw)
        except ValueError as e:
            raise SqueezeNetError(f"unknown torchvision model '{tv}'") from e
        return Built(m.eval(), 3, 224)
    kw_ours = dict(kw)
    if in_chans:
        kw_ours["in_chans"] = in_chans
    m = create_model(name, **kw_ours)
    return Built(m.eval(), m.default_cfg["input_size"][0], m.default_cfg["input_size"][1])


def _is_tv(name: str) -> bool:
    import torchvision

    return name in torchvision.models.list_models(module=torchvision.models)
