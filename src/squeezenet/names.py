"""What a model's name says, for every family the tool covers: ours (SqueezeNet,
ShuffleNet V1; see :mod:`squeezenet.factory`), torchvision's (``tv:NAME`` or bare) and
timm's (``timm:NAME`` or bare).

The decoding rules are data: :data:`FAMILIES` lists, per family, a pattern whose named
groups are the settings a name carries (width multiplier, compound coefficient, size
letter, series, patch size, resolution, groups), the family's defaults, and its paper.
:func:`explain` reads a name with them, adds the computed parameters and MACs where a
builder is installed (built on the meta device: nothing is allocated), and the
published ImageNet top-1 from :data:`PUBLISHED_TOP1` (each with its source) or from
torchvision's weight metadata. A name no rule reads gets one line saying which part
was not understood.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .errors import SqueezeNetError
from .peers import PUBLISHED_TOP1

# EfficientNet compound scaling (Tan & Le 2019, arXiv:1905.11946; the authors' efficientnet_builder.py):
# coefficient -> (width, depth, resolution)
EFFICIENTNET = {"b0": (1.0, 1.0, 224), "b1": (1.0, 1.1, 240), "b2": (1.1, 1.2, 260), "b3": (1.2, 1.4, 300),
                "b4": (1.4, 1.8, 380), "b5": (1.6, 2.2, 456), "b6": (1.8, 2.6, 528), "b7": (2.0, 3.1, 600)}
# EfficientNet-Lite (tensorflow/tpu models/official/efficientnet/lite): no SE, ReLU6, fixed stem/head
EFFICIENTNET_LITE = {"0": (1.0, 1.0, 224), "1": (1.0, 1.1, 240), "2": (1.1, 1.2, 260), "3": (1.2, 1.4, 280),
                     "4": (1.4, 1.8, 300)}
SIZE_WORDS = {"xxs": "XX-small", "xs": "X-small", "s": "small", "m": "medium", "l": "large", "h": "huge",
              "b": "base", "t": "tiny", "tiny": "tiny", "small": "small", "base": "base", "large": "large"}

@dataclass
class Family:
    """How one family's names read. ``pattern`` is matched against the whole name (the
    ``tv:``/``timm:`` prefix removed); its named groups become settings through
    ``decode``; ``prefix`` says a name belongs to this family even when the rest fails."""

    key: str
    label: str  # family and version in words
    paper: str
    prefix: str
    pattern: str
    library: str  # "tv" or "timm": which builder the name is for
    decode: dict = field(default_factory=dict)  # group -> function(value, groups) -> (setting, text)
    defaults: dict = field(default_factory=dict)  # setting -> text, when the name does not say
    expect: str = ""  # what may follow the prefix, for the error message
    top1_key: object = None  # function(groups) -> key of PUBLISHED_TOP1


def _width3(v, g):  # timm's _100, _075, _130: width x 100
    return "width", f"{int(v) / 100:g}x"


def _width_x(v, g):  # torchvision's x0_5, 1_0 ...
    return "width", f"{float(v.replace('_', '.')):g}x"


def _size(v, g):
    return "size", SIZE_WORDS.get(v, v)


def _res(v, g):
    return "resolution", f"{int(v)} px"


def _patch(v, g):
    return "patch size", f"{int(v)} x {int(v)} px"


def _effnet(v, g):
    w, d, r = EFFICIENTNET[v]
    return "compound coefficient", f"{v.upper()}: width x{w}, depth x{d}, resolution {r} px"


def _lite(v, g):
    w, d, r = EFFICIENTNET_LITE[v]
    return "variant", f"Lite{v} (no squeeze-excitation, ReLU6): width x{w}, depth x{d}, resolution {r} px"


def _repvgg(v, g):
    series = "A (light, for mobile)" if v[0] == "a" else "B (heavier)"
    return "series", f"{v.upper()}: {series} series"


def _groups(v, g):
    return "groups", f"{v[1:]} (grouped 3x3 convs in alternate layers)" if v else "1"


def _wk(v3: str) -> str:
    """timm's width digits as our table writes them: 100 -> '1.0', 075 -> '0.75', 130 -> '1.3'."""
    w = int(v3) / 100
    return f"{w:.1f}" if w == int(w) else f"{w:g}"


FAMILIES = [
    Family("mobilenet_v1", "MobileNet V1", "Howard et al. 2017, arXiv:1704.04861", r"mobilenetv1",
           r"mobilenetv1_(?P<width>\d{3})", "timm", {"width": _width3}, {"resolution": "224 px"}, "_<width x 100>",
           lambda g: f"mobilenet_v1_{_wk(g['width'])}"),
    Family("mobilenet_v2_timm", "MobileNet V2", "Sandler et al. 2018, arXiv:1801.04381", r"mobilenetv2",
           r"mobilenetv2_(?P<width>\d{3})", "timm", {"width": _width3}, {"resolution": "224 px"}, "_<width x 100>",
           lambda g: f"mobilenet_v2_{_wk(g['width'])}"),
    Family("mobilenet_v2", "MobileNet V2", "Sandler et al. 2018, arXiv:1801.04381", r"mobilenet_v2",
           r"mobilenet_v2", "tv", {}, {"width": "1x", "resolution": "224 px"}, "nothing", lambda g: "mobilenet_v2_1.0"),
    Family("mobilenet_v3_timm", "MobileNet V3", "Howard et al. 2019, arXiv:1905.02244", r"(tf_)?mobilenetv3",
           r"(?P<tf>tf_)?mobilenetv3_(?P<size>large|small)_(?P<width>\d{3})", "timm",
           {"size": _size, "width": _width3}, {"resolution": "224 px"}, "_large|_small then _<width x 100>",
           lambda g: f"mobilenet_v3_{g['size']}_{_wk(g['width'])}"),
    Family("mobilenet_v3", "MobileNet V3", "Howard et al. 2019, arXiv:1905.02244", r"mobilenet_v3",
           r"mobilenet_v3_(?P<size>large|small)", "tv", {"size": _size}, {"width": "1x", "resolution": "224 px"},
           "_large or _small", lambda g: f"mobilenet_v3_{g['size']}_1.0"),
    Family("shufflenet_v2", "ShuffleNet V2", "Ma et al. 2018, arXiv:1807.11164", r"shufflenet_v2",
           r"shufflenet_v2_x(?P<width>\d_\d)", "tv", {"width": _width_x}, {"resolution": "224 px"},
           "_x0_5, _x1_0, _x1_5 or _x2_0", lambda g: f"shufflenet_v2_{float(g['width'].replace('_', '.')):.1f}"),
    Family("ghostnet", "GhostNet", "Han et al. 2020, arXiv:1911.11907", r"ghostnet",
           r"ghostnet_(?P<width>\d{3})", "timm", {"width": _width3}, {"resolution": "224 px"}, "_<width x 100>",
           lambda g: f"ghostnet_{_wk(g['width'])}"),
    Family("efficientnet_lite", "EfficientNet-Lite", "tensorflow/tpu models/official/efficientnet/lite",
           r"(tf_)?efficientnet_lite", r"(?P<tf>tf_)?efficientnet_lite(?P<lite>[0-4])", "timm", {"lite": _lite}, {},
           "a digit 0-4", lambda g: f"efficientnet_lite{g['lite']}"),
    Family("efficientnet_v2", "EfficientNet V2", "Tan & Le 2021, arXiv:2104.00298", r"efficientnet_v2",
           r"efficientnet_v2_(?P<size>s|m|l)", "tv", {"size": _size}, {}, "_s, _m or _l"),
    Family("efficientnet", "EfficientNet (V1)", "Tan & Le 2019, arXiv:1905.11946", r"(tf_)?efficientnet",
           r"(?P<tf>tf_)?efficientnet_(?P<coef>b[0-7])", "tv", {"coef": _effnet}, {}, "_b0 ... _b7 or _lite0-4",
           lambda g: f"efficientnet_{g['coef']}"),
    Family("mnasnet", "MnasNet-B1", "Tan et al. 2019, arXiv:1807.11626", r"mnasnet",
           r"mnasnet(?P<width>\d_\d+)", "tv", {"width": _width_x}, {"resolution": "224 px"}, "0_5, 0_75, 1_0 or 1_3"),
    Family("deit", "DeiT (data-efficient image transformer)", "Touvron et al. 2021, arXiv:2012.12877", r"deit",
           r"deit_(?P<size>tiny|small|base)_(?P<distilled>distilled_)?patch(?P<patch>\d+)_(?P<res>\d+)", "timm",
           {"size": _size, "patch": _patch, "res": _res}, {}, "_tiny|_small|_base then _patch<P>_<resolution>",
           lambda g: f"deit_{g['size']}_{g['patch']}" if not g.get("distilled") else None),
    Family("convit", "ConViT", "d'Ascoli et al. 2021, arXiv:2103.10697", r"convit",
           r"convit_(?P<size>tiny|small|base)", "timm", {"size": _size},
           {"patch size": "16 x 16 px", "resolution": "224 px"}, "_tiny, _small or _base",
           lambda g: f"convit_{g['size']}"),
    Family("mobilevit", "MobileViT", "Mehta & Rastegari 2022, arXiv:2110.02178", r"mobilevit_",
           r"mobilevit_(?P<size>xxs|xs|s)", "timm", {"size": _size}, {"resolution": "256 px"}, "xxs, xs or s",
           lambda g: f"mobilevit_{g['size']}"),
    Family("repvgg", "RepVGG", "Ding et al. 2021, arXiv:2101.03697", r"repvgg",
           r"repvgg_(?P<series>[ab]\d)(?P<groups>g[24])?", "timm", {"series": _repvgg, "groups": _groups},
           {"resolution": "224 px"}, "_a0-a2 or _b0-b3, optionally g2/g4", lambda g: f"repvgg_{g['series']}"
           if not g.get("groups") else None),
    Family("mobileone", "MobileOne", "Vasu et al. 2023, arXiv:2206.04040", r"mobileone",
           r"mobileone_s(?P<size>[0-4])", "timm", {"size": lambda v, g: ("size", f"S{v}")},
           {"resolution": "224 px"}, "_s0 ... _s4", lambda g: f"mobileone_s{g['size']}"),
    Family("vit", "Vision Transformer (ViT)", "Dosovitskiy et al. 2021, arXiv:2010.11929", r"vit_",
           r"vit_(?P<size>b|l|h)_(?P<patch>\d+)", "tv", {"size": _size, "patch": _patch}, {}, "_b|_l|_h then _<patch>"),
    Family("resnet", "ResNet", "He et al. 2016, arXiv:1512.03385", r"resnet",
           r"resnet(?P<depth>18|34|50|101|152)", "tv", {"depth": lambda v, g: ("depth", f"{v} layers")},
           {"resolution": "224 px"}, "18, 34, 50, 101 or 152"),
]


def _strip(name: str) -> tuple[str, str | None]:
    for p in ("tv:", "timm:"):
        if name.startswith(p):
            return name[len(p):], p[:-1]
    return name, None


def decode(name: str) -> tuple[Family, dict]:
    """(family, settings) for a peer's name, or a one-line error naming the part that
    no rule reads."""
    bare, _ = _strip(name)
    for fam in FAMILIES:
        m = re.fullmatch(fam.pattern, bare)
        if m:
            return fam, {k: v for k, v in m.groupdict().items() if v}
    for fam in FAMILIES:
        p = re.match(fam.prefix, bare)
        if p:
            rest = bare[p.end():] or "(nothing)"
            raise SqueezeNetError(f"'{name}': '{bare[:p.end()]}' is {fam.label}, but '{rest}' is not understood "
                                  f"(expected {fam.expect})")
    head = re.split(r"[_\d]", bare, maxsplit=1)[0] or bare
    raise SqueezeNetError(f"'{name}': no family we cover starts with '{head}' (ours: `squeezenet list`; others: "
                          f"{', '.join(dict.fromkeys(f.label for f in FAMILIES))})")


def explain(name: str, counts: bool = True) -> dict:
    """Everything a name says, for our names and the peers'."""
    from .factory import explain_name
    from .registry import registered_names

    ours = registered_names()
    if any(name == r or name.startswith(r + "_") for r in ours):
        return explain_name(name)  # ours: its own errors name the bad modifier
    stem = re.sub(r"\d+(\.\d+)?$", "", re.split(r"_(?:sr|pct|w|be|ie|freq)\d|_bn$|_small$", name)[0])
    near = [r for r in ours if len(stem) >= 8 and r.startswith(stem)]
    if near:
        raise SqueezeNetError(f"'{name}' is not one of our models; ours that start the same: {', '.join(near)} "
                              "(see `squeezenet list`)")
    try:
        fam, groups = decode(name)
    except SqueezeNetError:
        generic = _torchvision_generic(name, counts)
        if generic is None:
            raise
        return generic
    info = {"name": name, "family": f"{fam.label} ({fam.paper})"}
    for key, text in fam.defaults.items():
        info[key] = f"{text} (the family's default)"
    for group, value in groups.items():
        if group in fam.decode:
            setting, text = fam.decode[group](value, groups)
            info[setting] = text
    if groups.get("tf"):
        info["weights port"] = "tf_: ported from the authors' TensorFlow weights (TF 'same' padding)"
    if groups.get("distilled"):
        info["distillation"] = "with a distillation token"
    bare, lib = _strip(name)
    lib = lib or ("timm" if groups.get("tf") else fam.library)  # tf_ ports exist only in timm
    builder = f"{lib}:{bare}"
    info["builder"] = builder
    if counts:
        info.update(_counts(builder))
    top1 = _published_top1(fam, groups, bare, lib)
    info["published_top1"] = f"{top1[0]}% ({top1[1]})" if top1 else "not in our table"
    return info


def _torchvision_generic(name: str, counts: bool) -> dict | None:
    """Any other torchvision classifier: what its weights' metadata says (no rule reads its name)."""
    from .zoo import tv_default_weights

    bare, lib = _strip(name)
    if lib == "timm":
        return None
    w = tv_default_weights(bare)
    if w is None:
        return None
    info = {"name": name, "family": f"torchvision {bare} (no decoding rule for this family; from its weights' "
                                    "metadata)", "resolution": f"{w.transforms().crop_size[0]} px (its weights' crop)",
            "builder": f"tv:{bare}"}
    if counts:
        info.update(_counts(f"tv:{bare}"))
    info["published_top1"] = f"{w.meta['_metrics']['ImageNet-1K']['acc@1']}% (torchvision weight metadata ({w}))"
    return info


def _counts(builder: str) -> dict:
    """Params and MACs where a builder is installed (meta device: no memory)."""
    from .profiler import profile
    from .zoo import build_any

    try:
        built = build_any(builder, meta=True)
    except SqueezeNetError as e:
        return {"params/MACs": f"not computed ({e})"}
    prof = profile(built.model, (built.in_chans, built.input_size, built.input_size))
    return {"builder_resolution": f"{built.input_size} px (the builder's default/pretrained config)",
            "params_1000_classes": f"{prof.params:,} ({prof.params * 4 / 2**20:.2f} MiB fp32)",
            "macs": f"{prof.macs / 1e6:,.1f} M at {built.input_size} px ({prof.flops / 1e6:,.1f} M FLOPs; "
                    "conv/linear/matmul incl. attention)"}


def _published_top1(fam: Family, groups: dict, bare: str, lib: str):
    key = fam.top1_key(groups) if fam.top1_key else None
    if key and key in PUBLISHED_TOP1:
        return PUBLISHED_TOP1[key]
    if lib == "tv":
        from .zoo import tv_default_weights

        w = tv_default_weights(bare)
        if w is not None:
            return (round(w.meta["_metrics"]["ImageNet-1K"]["acc@1"], 3), f"torchvision weight metadata ({w})")
    return None
