"""SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size.

Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer. arXiv:1602.07360 (2016).
Reference implementation: the authors' Caffe release (github.com/forresti/SqueezeNet)
and torchvision/models/squeezenet.py, whose state dicts load into the vanilla models
here (see :func:`load_torchvision_state_dict`).

The architecture is data. The design-space metaparameters of the paper's section 5
(base_e, incr_e, pct3x3, freq, SR) generate the eight Fire configurations; a version
table says where the stem and the max pools go; the macro-architecture (vanilla,
simple bypass, complex bypass) decides which Fire modules get a shortcut. SqueezeNet
v1.0 is exactly what the default metaparameters generate (Table 1).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict

import torch
from torch import nn

from ..archs import VERSIONS, DesignSpace, Stage, build_stages, estimate_params
from ..errors import SqueezeNetError
from ..registry import register_model
from ..spec import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["Fire", "SqueezeNet", "DesignSpace", "Stage", "build_stages", "load_torchvision_state_dict"]



def _conv_block(in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, batch_norm: bool = False):
    """conv -> [BN] -> ReLU, with names that keep torchvision's conv keys reachable."""
    layers = [("conv", nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=not batch_norm))]
    if batch_norm:
        layers.append(("bn", nn.BatchNorm2d(out_ch)))
    layers.append(("relu", nn.ReLU(inplace=True)))
    return nn.Sequential(OrderedDict(layers))


class Dropout(nn.Dropout):
    """nn.Dropout whose mask on CPU is drawn as ``rand >= p`` instead of with ``bernoulli_``:
    the same distribution, 3-4x less time (14.7 -> 5.0 ms for a 128x512x4x4 batch on a
    2-core Xeon; ``benchmarks/train_throughput.py`` measures it). Elsewhere, nn.Dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.p == 1.0:
            return super().forward(x)
        keep = (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep


class Fire(nn.Module):
    """1x1 squeeze -> ReLU -> (1x1 expand || 3x3 expand, padding 1) -> ReLU each -> concat.

    Attribute names match torchvision's Fire, so its weights load key for key. An
    expand branch with zero filters (pct3x3 of 0 or 1) is left out.
    """

    def __init__(self, in_ch: int, squeeze: int, expand1x1: int, expand3x3: int, batch_norm: bool = False):
        super().__init__()
        if squeeze < 1 or expand1x1 + expand3x3 < 1:
            raise ValueError(f"Fire needs squeeze >= 1 and expand filters >= 1, got {squeeze}/{expand1x1}/{expand3x3}")
        bias = not batch_norm
        self.squeeze = nn.Conv2d(in_ch, squeeze, 1, bias=bias)
        self.squeeze_bn = nn.BatchNorm2d(squeeze) if batch_norm else nn.Identity()
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1, bias=bias) if expand1x1 else None
        self.expand1x1_bn = nn.BatchNorm2d(expand1x1) if batch_norm and expand1x1 else nn.Identity()
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1, bias=bias) if expand3x3 else None
        self.expand3x3_bn = nn.BatchNorm2d(expand3x3) if batch_norm and expand3x3 else nn.Identity()
        self.expand3x3_activation = nn.ReLU(inplace=True)
        self.out_channels = expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze_bn(self.squeeze(x)))
        outs = []
        if self.expand1x1 is not None:
            outs.append(self.expand1x1_activation(self.expand1x1_bn(self.expand1x1(x))))
        if self.expand3x3 is not None:
            outs.append(self.expand3x3_activation(self.expand3x3_bn(self.expand3x3(x))))
        return torch.cat(outs, 1) if len(outs) > 1 else outs[0]  # (B, e1x1 + e3x3, H, W)


class SqueezeNet(nn.Module):
    """A SqueezeNet built from a stage list (see :func:`build_stages`).

    Uniform interface: ``num_classes``, ``forward_features``, ``forward_head``,
    ``reset_classifier``, ``get_classifier`` and ``default_cfg``. The classifier is
    the paper's: dropout -> conv10 (1x1) -> ReLU -> global average pool. No FC layer.
    """

    def __init__(self, stages, num_classes: int = 1000, dropout: float = 0.5, batch_norm: bool = False,
                 head_relu: bool = True, head_padding: int = 0):
        super().__init__()
        self.head_relu = head_relu
        self.head_padding = head_padding
        self.stages = stages
        self.num_classes = num_classes
        self.batch_norm = batch_norm
        self.features = nn.ModuleDict()
        self.bypass = nn.ModuleDict()
        for st in stages:
            if st.kind == "conv":
                self.features[st.name] = _conv_block(st.in_ch, st.out, st.kernel, st.stride, st.padding, batch_norm)
            elif st.kind == "pool":
                self.features[st.name] = nn.MaxPool2d(3, 2, ceil_mode=True)  # Caffe rounds up
            else:
                fire = Fire(st.in_ch, *st.out, batch_norm=batch_norm)
                self.features[st.name] = fire
                if st.shortcut == "identity":
                    self.bypass[st.name] = nn.Identity()
                elif st.shortcut == "conv":
                    self.bypass[st.name] = nn.Conv2d(st.in_ch, fire.out_channels, 1)
        self.num_features = stages[-1].out_channels
        self.drop_rate = dropout
        self._build_classifier(num_classes)
        self._init_weights()

    def _build_classifier(self, num_classes: int):
        self.classifier = nn.Sequential(OrderedDict([
            ("dropout", Dropout(p=self.drop_rate)),
            # head_padding=1 is the authors' released deploy.prototxt (conv10 "pad: 1"), not Table 1
            ("conv10", nn.Conv2d(self.num_features, num_classes, 1, padding=self.head_padding)),
            # The paper's ReLU on conv10. It can kill a class for good when a high early
            # learning rate drives its conv10 output negative everywhere; head_relu=False
            # (our small-data recipe) drops it. See docs/BENCHMARKS.md.
            ("relu10", nn.ReLU(inplace=True) if self.head_relu else nn.Identity()),
            ("avgpool10", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten(1)),
        ]))

    def _init_weights(self):
        # Caffe's "xavier" filler: U(-sqrt(3/fan_in), +sqrt(3/fan_in)), i.e. kaiming
        # uniform with gain 1; conv10 gets N(0, 0.01); biases start at 0.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self._init_classifier()

    def _init_classifier(self):
        conv10 = self.classifier.conv10
        nn.init.normal_(conv10.weight, mean=0.0, std=0.01)
        nn.init.zeros_(conv10.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for name, layer in self.features.items():
            if name in self.bypass:
                x = layer(x) + self.bypass[name](x)
            else:
                x = layer(x)
        return x  # (B, num_features, H', W')

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return x.mean((2, 3))
        return self.classifier(x)  # (B, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier.conv10

    def reset_classifier(self, num_classes: int):
        """Replace conv10 for ``num_classes`` outputs, initialised as the paper does."""
        self.num_classes = num_classes
        self.classifier.conv10 = nn.Conv2d(self.num_features, num_classes, 1, padding=self.head_padding)
        self._init_classifier()

    def profile_layers(self):
        """(name, module) rows for the profiler, in the paper's Table 1 order."""
        rows = []
        for name, layer in self.features.items():
            rows.append((name, layer))
            if name in self.bypass and isinstance(self.bypass[name], nn.Conv2d):
                rows.append((f"bypass_{name}", self.bypass[name]))
        rows.append(("conv10", self.classifier.conv10))
        rows.append(("avgpool10", self.classifier.avgpool10))
        return rows


# Bounds that keep a name or a hand-edited file from asking for absurd allocations.
BOUNDS = {"num_classes": (1, 100_000), "in_chans": (1, 16), "width": (0.01, 4.0), "base_e": (1, 2048),
          "incr_e": (0, 2048), "freq": (1, 8), "dropout": (0.0, 0.999)}
MAX_PARAMS = 200_000_000


def _check_bounds(**values):
    for k, v in values.items():
        lo, hi = BOUNDS[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi or v != v:
            raise ValueError(f"{k} must be between {lo} and {hi}, got {v!r}")
        if isinstance(lo, int) and isinstance(hi, int) and not isinstance(v, int):
            raise ValueError(f"{k} must be an integer, got {v!r}")


def _create(version: str, bypass: str = "none", *, num_classes: int = 1000, in_chans: int = 3,
            dropout: float = 0.5, batch_norm: bool = False, head_relu: bool = True, stem: str = "imagenet",
            width: float = 1.0,
            base_e: int = 128, incr_e: int = 128, pct3x3: float = 0.5, freq: int = 2,
            squeeze_ratio: float = 0.125, head_padding: int = 0, **unknown) -> SqueezeNet:
    if unknown:
        raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
    _check_bounds(num_classes=num_classes, in_chans=in_chans, dropout=dropout, width=width, base_e=base_e,
                  incr_e=incr_e, freq=freq)
    design = DesignSpace(base_e, incr_e, pct3x3, freq, squeeze_ratio)
    stages = build_stages(version, bypass, design, width, stem, in_chans)
    n = estimate_params(stages, num_classes)
    if n > MAX_PARAMS:
        raise ValueError(f"this configuration has about {n / 1e6:,.0f} M parameters (limit {MAX_PARAMS / 1e6:.0f} M); "
                         "lower the width or base_e/incr_e")
    if head_padding not in (0, 1):
        raise ValueError(f"head_padding must be 0 (Table 1) or 1 (the authors' release), got {head_padding!r}")
    model = SqueezeNet(stages, num_classes=num_classes, dropout=dropout, batch_norm=batch_norm, head_relu=head_relu,
                       head_padding=head_padding)
    v = VERSIONS[version]
    vanilla = design == DesignSpace() and width == 1.0 and bypass == "none" and stem == "imagenet" and head_relu
    model.model_kwargs = dict(
        num_classes=num_classes, in_chans=in_chans, dropout=dropout, batch_norm=batch_norm, head_relu=head_relu, stem=stem,
        width=width, **{k: val for k, val in asdict(design).items() if k != "num_fire"},
        **({"head_padding": head_padding} if head_padding else {}),
    )
    caffe = head_padding == 1
    model.default_cfg = dict(
        family="squeezenet", version=version, bypass=bypass, input_size=(in_chans, 227 if caffe else 224,
                                                                         227 if caffe else 224),
        preprocess="caffe" if caffe else "imagenet", release=caffe,
        mean=tuple(IMAGENET_MEAN), std=tuple(IMAGENET_STD), design=asdict(design), width=width, stem=stem,
        paper_top1=v["paper_top1"] if vanilla else None,
        paper_top5=v["paper_top5"] if vanilla else None,
        source=v["source"],
    )
    return model


# ----------------------------------------------------------------------------------
# Registered builders: one per (version, macro-architecture). Design-space, width,
# BN, stem and resolution variants are modifiers of these names (see factory.py).
# ----------------------------------------------------------------------------------

@register_model
def squeezenet1_0(**kwargs) -> SqueezeNet:
    """SqueezeNet v1.0, vanilla (paper Table 1)."""
    return _create("1_0", "none", **kwargs)


@register_model
def squeezenet1_0_caffe(**kwargs) -> SqueezeNet:
    """v1.0 as the authors released it (forresti/SqueezeNet SqueezeNet_v1.0/deploy.prototxt):
    conv10 has ``pad: 1``, so at 227 px its output is 15x15 and the global average includes a
    ring of ReLU(bias) values. Native input: 227 px with Caffe preprocessing (BGR, 0-255,
    mean 104/117/123). torchvision follows Table 1 instead (:func:`squeezenet1_0`)."""
    kwargs.setdefault("head_padding", 1)
    return _create("1_0", "none", **kwargs)


@register_model
def squeezenet1_0_simple_bypass(**kwargs) -> SqueezeNet:
    """v1.0 with identity shortcuts around fire3, fire5, fire7, fire9 (paper Table 3)."""
    return _create("1_0", "simple", **kwargs)


@register_model
def squeezenet1_0_complex_bypass(**kwargs) -> SqueezeNet:
    """v1.0 with simple bypass plus 1x1-conv shortcuts around fire2, 4, 6, 8."""
    return _create("1_0", "complex", **kwargs)


@register_model
def squeezenet1_1(**kwargs) -> SqueezeNet:
    """SqueezeNet v1.1: 64 3x3/2 stem filters, pools after conv1, fire3, fire5."""
    return _create("1_1", "none", **kwargs)


@register_model
def squeezenet1_1_simple_bypass(**kwargs) -> SqueezeNet:
    """v1.1 with identity shortcuts where Fire input and output channels agree."""
    return _create("1_1", "simple", **kwargs)


@register_model
def squeezenet1_1_complex_bypass(**kwargs) -> SqueezeNet:
    """v1.1 with simple bypass plus 1x1-conv shortcuts elsewhere."""
    return _create("1_1", "complex", **kwargs)


# ----------------------------------------------------------------------------------
# torchvision weights
# ----------------------------------------------------------------------------------

TORCHVISION_URLS = {
    "1_0": "https://download.pytorch.org/models/squeezenet1_0-b66bff10.pth",
    "1_1": "https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
}


def torchvision_release(weights: str) -> str | None:
    """The torchvision builder (``squeezenet1_0``, ``squeezenet1_1``) whose released file
    ``weights`` (a path or URL) is, known by its file name or, renamed, by the SHA-256 prefix
    torch.hub names the file with (``-<hex>.pth``, as ``torch.hub`` checks it); None if
    neither matches."""
    import os

    from torch.hub import HASH_REGEX

    from ..files import sha256_file

    names = {f"squeezenet{v}": url.rsplit("/", 1)[1] for v, url in TORCHVISION_URLS.items()}
    base = os.path.basename(weights.split("?")[0])
    digest = sha256_file(weights) if os.path.isfile(weights) else ""
    return next((tv for tv, name in names.items()
                 if base == name or digest.startswith(HASH_REGEX.search(name).group(1))), None)


def torchvision_key_map(model: SqueezeNet) -> dict[str, str]:
    """Map torchvision's state-dict keys to ours, derived from the stage list.

    torchvision's ``features`` is a flat Sequential: conv and its ReLU take two
    indices, a pool or a Fire one; the final conv is ``classifier.1``.
    """
    if model.batch_norm or model.bypass or not model.head_relu:
        raise SqueezeNetError("torchvision weights fit only vanilla models without BN; "
                              "use squeezenet1_0 or squeezenet1_1")
    mapping, idx = {}, 0
    for st in model.stages:
        name, module = st.name, model.features[st.name]
        if st.kind == "conv":
            for p in ("weight", "bias"):
                mapping[f"features.{idx}.{p}"] = f"features.{name}.conv.{p}"
            idx += 2
        else:
            for k in module.state_dict():
                mapping[f"features.{idx}.{k}"] = f"features.{name}.{k}"
            idx += 1
    for p in ("weight", "bias"):
        mapping[f"classifier.1.{p}"] = f"classifier.conv10.{p}"
    return mapping


def load_torchvision_state_dict(model: SqueezeNet, state_dict: dict) -> SqueezeNet:
    """Load a torchvision squeezenet1_0/1_1 state dict into our vanilla model.

    Shapes are checked key by key, so a v1.1 file given to a v1.0 model, or a file
    for another class count, fails with a one-line message instead of a torch error.
    """
    mapping = torchvision_key_map(model)
    ours = model.state_dict()
    missing = sorted(set(mapping) - set(state_dict))
    if len(missing) > len(mapping) // 2:
        raise SqueezeNetError(f"not a torchvision SqueezeNet state dict: missing '{missing[0]}' "
                              f"(and {len(missing) - 1} more keys)")
    new = {}
    for tv_key, our_key in mapping.items():
        t = state_dict.get(tv_key)
        if t is None or tuple(t.shape) != tuple(ours[our_key].shape):
            got = "is missing" if t is None else f"has shape {tuple(t.shape)}"
            raise SqueezeNetError(
                f"weights do not fit this model: '{tv_key}' {got}, the model expects "
                f"{tuple(ours[our_key].shape)}; pick the matching version (1_0 or 1_1) or num_classes")
        new[our_key] = t
    model.load_state_dict(new)
    return model
