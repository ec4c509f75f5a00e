"""Build any model by name: ours (registry), torchvision's (``tv:NAME`` or a bare
torchvision builder name) and timm's (``timm:NAME``, optional extra)."""

from __future__ import annotations

from .errors import SqueezeNetError
from .registry import create_model, is_model


def build_any(name: str, num_classes: int | None = None, in_chans: int | None = None):
    """Return (model, native (C, H)) for ``name``; peers get random weights (no hub)."""
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
        return m.eval(), (in_chans or 3, size)
    if name.startswith("tv:") or (not is_model(name) and _is_tv(name)):
        import torchvision

        tv = name[3:] if name.startswith("tv:") else name
        if in_chans not in (None, 3):
            raise SqueezeNetError("torchvision models take 3-channel input; drop --in-chans")
        try:
            m = torchvision.models.get_model(tv, weights=None, **kw)
        except ValueError as e:
            raise SqueezeNetError(f"unknown torchvision model '{tv}'") from e
        return m.eval(), (3, 224)
    kw_ours = dict(kw)
    if in_chans:
        kw_ours["in_chans"] = in_chans
    m = create_model(name, **kw_ours)
    return m.eval(), (m.default_cfg["input_size"][0], m.default_cfg["input_size"][1])


def _is_tv(name: str) -> bool:
    import torchvision

    return name in torchvision.models.list_models(module=torchvision.models)
