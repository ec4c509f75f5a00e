"""Building models by name: ``list_models(pattern)``, ``create_model(name, **overrides)``,
``parse_model_name`` and ``explain_name`` (the registry itself is :mod:`squeezenet.registry`).

A name is a registered base name optionally followed by modifiers, so that the name
says what the model is (family, version, macro-architecture, design-space setting,
width, stem and resolution)::

    squeezenet1_1_simple_bypass_w0.5_bn_160
    ^ registered base name      ^ width ^BN ^ input resolution

Modifiers (any order, each at most once):

    ``_sr<x>``     squeeze ratio SR            (design space, paper section 5)
    ``_pct<x>``    fraction of 3x3 expand filters pct3x3
    ``_w<x>``      width multiplier on every channel count
    ``_be<n>``     base_e: expand filters of the first Fire module  (section 5)
    ``_ie<n>``     incr_e: expand filters added every freq Fire modules
    ``_freq<n>``   freq: Fire modules between increments of the expand width
    ``_bn``        BatchNorm after every conv except the classifier
    ``_small``     small-input stem for 28-64 px images
    ``_<N>``       native input resolution N px (metadata used by profile/bench/compare)
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field

from . import models  # noqa: F401  (importing the models package registers every builder)
from .errors import SqueezeNetError
from .registry import is_registered, model_entrypoint, registered_names

MODIFIERS = {
    "sr": ("squeeze_ratio", float),
    "pct": ("pct3x3", float),
    "w": ("width", float),
    "be": ("base_e", int),
    "ie": ("incr_e", int),
    "freq": ("freq", int),
}
_MOD_RE = re.compile(r"_(sr|pct|w)(\d+(?:\.\d+)?)$|_(be|ie|freq)(\d+)$|_(bn)$|_(small)$|_(\d{2,4})$")


def list_models(pattern: str = "*") -> list[str]:
    """Registered base names matching a shell-style pattern, sorted."""
    return [n for n in registered_names() if fnmatch.fnmatch(n, pattern)]


@dataclass
class ParsedName:
    base: str
    overrides: dict = field(default_factory=dict)
    input_size: int | None = None


def parse_model_name(name: str) -> ParsedName:
    """Split ``name`` into a registered base name and keyword overrides."""
    if not isinstance(name, str) or not name:
        raise SqueezeNetError("model name must be a non-empty string; see `squeezenet list`")
    rest, overrides, input_size = name, {}, None
    while not is_registered(rest):
        m = _MOD_RE.search(rest)
        if not m:
            break
        if m.group(1) or m.group(3):
            word, digits = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            key, conv = MODIFIERS[word]
            mod, value = f"_{word}", conv(digits)
        elif m.group(5):
            key, mod, value = "batch_norm", "_bn", True
        elif m.group(6):
            key, mod, value = "stem", "_small", "small"
        else:
            key, mod, value = "input_size", "_<resolution>", int(m.group(7))
            if not 16 <= value <= 2048:
                raise SqueezeNetError(f"resolution {value} in '{name}' is outside 16-2048 px")
        if key in overrides or (key == "input_size" and input_size is not None):
            raise SqueezeNetError(f"modifier '{mod}' appears twice in '{name}'; give each modifier once")
        if key == "input_size":
            input_size = value
        else:
            overrides[key] = value
        rest = rest[: m.start()]
    if not is_registered(rest):
        close = difflib.get_close_matches(name, registered_names(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise SqueezeNetError(
            f"unknown model '{name}'{hint} (run `squeezenet list` for all names)"
        )
    return ParsedName(rest, overrides, input_size)


def create_model(name: str, **overrides):
    """Build a model by name. Keyword overrides win over modifiers in the name."""
    parsed = parse_model_name(name)
    kwargs = {**parsed.overrides, **overrides}
    try:
        model = model_entrypoint(parsed.base)(**kwargs)
    except TypeError as e:
        raise SqueezeNetError(f"bad option for model '{name}': {e}") from e
    except ValueError as e:
        raise SqueezeNetError(f"bad configuration for model '{name}': {e}") from e
    if parsed.input_size is not None and hasattr(model, "default_cfg"):
        model.default_cfg["input_size"] = (model.default_cfg["input_size"][0], parsed.input_size, parsed.input_size)
    if hasattr(model, "default_cfg"):
        model.default_cfg["name"] = name
    return model


def is_model(name: str) -> bool:
    try:
        parse_model_name(name)
        return True
    except SqueezeNetError:
        return False


def explain_name(name: str) -> dict:
    """What a model name says: family, version, macro-architecture, design space,
    width, BN, stem and resolution, plus the resulting Fire configuration."""
    import torch

    parsed = parse_model_name(name)
    with torch.device("meta"):  # counts without allocating weights
        model = create_model(name)
    cfg = model.default_cfg
    if cfg.get("family") == "shufflenet_v1":
        return _explain_shufflenet_v1(name, parsed, model)
    design = cfg["design"]
    version = cfg["version"].replace("_", ".")
    bypass = {"none": "vanilla", "simple": "simple bypass (identity shortcuts)",
              "complex": "complex bypass (identity + 1x1-conv shortcuts)"}[cfg["bypass"]]
    ds = (f"base_e {design['base_e']}, incr_e {design['incr_e']}, pct3x3 {design['pct3x3']}, "
          f"freq {design['freq']}, SR {design['squeeze_ratio']}")
    fires = ", ".join("/".join(map(str, st.out)) for st in model.stages if st.kind == "fire")
    res = cfg["input_size"][1]
    params = sum(p.numel() for p in model.parameters())
    summary = f"SqueezeNet v{version}, {bypass}, width {cfg['width']}x, {res} px"
    if cfg.get("release"):
        summary += ", the authors' Caffe release (conv10 pad 1, Caffe preprocessing)"
    if parsed.overrides.get("batch_norm"):
        summary += ", BatchNorm"
    if cfg["stem"] == "small":
        summary += ", small-input stem"
    if {"squeeze_ratio", "pct3x3"} & set(parsed.overrides):
        summary += f", SR {design['squeeze_ratio']}, pct3x3 {design['pct3x3']}"
    return {
        "name": name,
        "family": "SqueezeNet (Iandola et al., arXiv:1602.07360)",
        "version": f"v{version}",
        "macro": bypass,
        "design_space": ds,
        "width": f"{cfg['width']}x",
        "batch_norm": bool(parsed.overrides.get("batch_norm", False)),
        "stem": cfg["stem"] + (" (3x3/1 conv for 28-64 px inputs)" if cfg["stem"] == "small" else ""),
        "resolution": f"{res} px" + ("" if parsed.input_size else " (default)"),
        "fire_s1x1/e1x1/e3x3": fires,
        "params_1000_classes": f"{params:,} ({params * 4 / 2**20:.2f} MiB fp32)",
        **({"release": "forresti/SqueezeNet SqueezeNet_v1.0/deploy.prototxt: conv10 pad 1 (Table 1: pad 0; "
                       "torchvision follows Table 1); input 227 px, BGR, 0-255, minus mean 104/117/123"}
           if cfg.get("release") else {}),
        "summary": summary,
    }


def _explain_shufflenet_v1(name: str, parsed: ParsedName, model) -> dict:
    from .profiler import profile

    cfg = model.default_cfg
    res = cfg["input_size"][1]
    prof = profile(model, cfg["input_size"], name)
    fc = model.fc.in_features * model.fc.out_features
    chans = "/".join(str(u.out_ch) for u in model.units if u.stride == 2)
    summary = f"ShuffleNet V1 {cfg['width']}x (g={cfg['groups']}), {res} px"
    return {
        "name": name,
        "family": "ShuffleNet V1 (Zhang et al., arXiv:1707.01083)",
        "groups": f"g={cfg['groups']} (pointwise group convolutions + channel shuffle)",
        "width": f"{cfg['width']}x" + ("" if "width" in parsed.overrides else " (default)"),
        "stages": f"conv1 {model.conv1.conv.out_channels} -> stage2/3/4 {chans} channels, 4/8/4 units",
        "resolution": f"{res} px" + ("" if parsed.input_size else " (default)"),
        "params_1000_classes": f"{prof.params:,} ({prof.params * 4 / 2**20:.2f} MiB fp32)",
        "macs": f"{prof.macs / 1e6:.1f} M with the FC layer, {(prof.macs - fc) / 1e6:.1f} M without "
                f"(paper Table 1 counts the convolutions: {cfg['paper_mmacs'] or '-'} M)",
        "published_top1": f"{cfg['paper_top1']}% (arXiv:1707.01083 Table 5)" if cfg["paper_top1"] else "-",
        "summary": summary,
    }
