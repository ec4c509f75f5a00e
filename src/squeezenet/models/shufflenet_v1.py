"""ShuffleNet V1: pointwise group convolutions and channel shuffle.

Zhang, Zhou, Lin, Sun. "ShuffleNet: An Extremely Efficient Convolutional Neural Network
for Mobile Devices". arXiv:1707.01083 (2017), Table 1 and section 3. The authors'
release is megvii-model/ShuffleNet-Series (ShuffleNetV1/); neither torchvision nor timm
ships this family.

The architecture is data: a table of stage output channels per group count g (Table 1
at 1x), stage depths 4/8/4, and a width multiplier s that scales every channel count
(the paper's "ShuffleNet s x"), rounded so that every grouped convolution divides
evenly. Each unit (Fig. 2b/c) is

    1x1 group conv (ungrouped in the first unit of stage 2) -> BN -> ReLU -> channel shuffle
    -> 3x3 depthwise conv (stride 1 or 2) -> BN (no ReLU) -> 1x1 group conv -> BN
    -> stride 1: ReLU(x + main);  stride 2: ReLU(concat(avgpool3x3/2(x), main))

with the bottleneck at 1/4 of the unit's output channels. Names: ``shufflenet_v1_g3``
is g = 3 at 1x; ``shufflenet_v1_g3_w0.5`` is 0.5x (the ``_w`` width modifier).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import nn

from ..registry import register_model
from ..spec import IMAGENET_MEAN, IMAGENET_STD


# Table 1: output channels of stages 2/3/4 at 1x, per group count; conv1 has 24 filters.
STAGE_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
                  8: (384, 768, 1536)}
STAGE_UNITS = (4, 8, 4)  # the first unit of each stage has stride 2
STEM_CHANNELS = 24
# The authors' release (megvii-model/ShuffleNet-Series, ShuffleNetV1/network.py) does not
# scale the stem linearly: conv1 has 12 (0.5x), 24 (1.0x), 24 (1.5x) and 48 (2.0x)
# filters (16 at 0.5x for g = 8: 12 rounded up to a multiple of g). Other widths scale 24.
RELEASE_STEM = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}
WIDTHS = (0.25, 0.5, 1.0, 1.5, 2.0)  # Table 2
# Table 1's "complexity (MFLOPs)" at 1x: multiply-adds of the convolutions (the FC layer excluded)
PAPER_MMACS = {1: 143, 2: 140, 3: 137, 4: 133, 8: 137}
# Table 2/5, 1x with shuffle: top-1 error 32.6% (g=3), 32.4% (g=8)
PAPER_TOP1 = {3: 67.4, 8: 67.6}


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Section 3.1: reshape channels to (g, n), transpose to (n, g), flatten.

    Output channel ``j * g + i`` is input channel ``i * n + j``, so each block of g
    consecutive outputs (what one group of the next conv reads, when it has g groups)
    holds one channel from every input group."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)


class ShuffleUnit(nn.Module):
    """Fig. 2(b) (stride 1, identity shortcut, add) and 2(c) (stride 2, average-pooled
    shortcut, concat). ``groups_in`` is 1 for the first unit of stage 2."""

    def __init__(self, in_ch: int, out_ch: int, groups: int, stride: int, groups_in: int | None = None):
        super().__init__()
        self.stride, self.groups = stride, groups
        main_out = out_ch - in_ch if stride == 2 else out_ch
        mid = out_ch // 4
        self.conv1 = nn.Conv2d(in_ch, mid, 1, groups=groups if groups_in is None else groups_in, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False)  # depthwise
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, main_out, 1, groups=groups, bias=False)
        self.bn3 = nn.BatchNorm2d(main_out)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        if self.groups > 1:
            y = channel_shuffle(y, self.groups)
        y = self.bn3(self.conv3(self.bn2(self.conv2(y))))  # no ReLU after the depthwise conv
        if self.stride == 2:
            return self.relu(torch.cat([self.shortcut(x), y], 1))  # (B, out_ch, H/2, W/2)
        return self.relu(x + y)


class UnitSpec(NamedTuple):
    name: str  # stage2.0, stage2.1, ...
    in_ch: int
    out_ch: int
    stride: int
    groups_in: int | None  # None: the unit's groups; 1: ungrouped first conv


def _divisible(v: float, d: int) -> int:
    return max(d, int(round(v / d)) * d)


def build_units(groups: int, width: float = 1.0) -> tuple[int, list[UnitSpec]]:
    """(stem channels, unit list) for g = ``groups`` at width ``width``. Stage channels
    are rounded to multiples of 4g (the bottleneck is a quarter and is grouped), the
    stem to a multiple of g (a stride-2 unit's main branch makes out - in channels).
    The stem follows the release's table (:data:`RELEASE_STEM`) at its widths."""
    if groups not in STAGE_CHANNELS:
        raise ValueError(f"groups must be one of {sorted(STAGE_CHANNELS)}, got {groups}")
    if not 0.1 <= width <= 4.0:
        raise ValueError(f"width must be between 0.1 and 4.0, got {width}")
    stem = _divisible(RELEASE_STEM.get(width, STEM_CHANNELS * width), groups)
    units, ch = [], stem
    for s, (base, n) in enumerate(zip(STAGE_CHANNELS[groups], STAGE_UNITS)):
        out = _divisible(base * width, 4 * groups)
        for i in range(n):
            units.append(UnitSpec(f"stage{s + 2}.{i}", ch, out, 2 if i == 0 else 1, 1 if s == 0 and i == 0 else None))
            ch = out
    return stem, units


class ShuffleNetV1(nn.Module):
    """conv1 3x3/2 -> max pool 3x3/2 -> stages 2-4 -> global average pool -> FC.

    Uniform interface: ``num_classes``, ``forward_features``, ``forward_head``,
    ``reset_classifier``, ``get_classifier``, ``default_cfg``, ``model_kwargs``."""

    def __init__(self, groups: int = 3, width: float = 1.0, num_classes: int = 1000, in_chans: int = 3,
                 dropout: float = 0.0):
        super().__init__()
        stem, units = build_units(groups, width)
        self.units, self.groups, self.num_classes = units, groups, num_classes
        self.conv1 = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(in_chans, stem, 3, 2, 1, bias=False)), ("bn", nn.BatchNorm2d(stem)),
            ("relu", nn.ReLU(inplace=True))]))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.stages = nn.Sequential(OrderedDict(
            (u.name.replace(".", "_"), ShuffleUnit(u.in_ch, u.out_ch, groups, u.stride, u.groups_in)) for u in units))
        self.num_features = units[-1].out_ch
        self.drop_rate = dropout
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self._init_fc()

    def _init_fc(self):
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.maxpool(self.conv1(x)))  # (B, num_features, H/32, W/32)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.fc(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int):
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes)
        self._init_fc()

    def profile_layers(self):
        """(name, module) rows for the profiler: conv1, the pool, every unit, FC."""
        return [("conv1", self.conv1), ("maxpool", self.maxpool),
                *((u.name, getattr(self.stages, u.name.replace(".", "_"))) for u in self.units),
                ("avgpool", self.global_pool), ("fc", self.fc)]


def _create(groups: int, *, width: float = 1.0, num_classes: int = 1000, in_chans: int = 3, dropout: float = 0.0,
            **unknown) -> ShuffleNetV1:
    if unknown:
        raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
    if not 1 <= num_classes <= 100_000 or not 1 <= in_chans <= 16 or not 0.0 <= dropout < 1.0:
        raise ValueError(f"num_classes 1-100000, in_chans 1-16 and dropout in [0, 1) expected, got "
                         f"{num_classes}, {in_chans}, {dropout}")
    model = ShuffleNetV1(groups, width, num_classes, in_chans, dropout)
    model.model_kwargs = dict(width=width, num_classes=num_classes, in_chans=in_chans, dropout=dropout)
    model.default_cfg = dict(
        family="shufflenet_v1", groups=groups, width=width, input_size=(in_chans, 224, 224), mean=tuple(IMAGENET_MEAN),
        std=tuple(IMAGENET_STD), paper_top1=PAPER_TOP1.get(groups) if width == 1.0 else None,
        paper_mmacs=PAPER_MMACS[groups] if width == 1.0 else None,
        source="Zhang et al. 2017, arXiv:1707.01083 Table 1-2; megvii-model/ShuffleNet-Series")
    return model


# ----------------------------------------------------------------------------------
# Registered builders, one per group count; widths are the `_w<x>` modifier.
# ----------------------------------------------------------------------------------

@register_model
def shufflenet_v1_g1(**kwargs) -> ShuffleNetV1:
    """ShuffleNet V1, g = 1 (no grouping: 144/288/576 channels at 1x)."""
    return _create(1, **kwargs)


@register_model
def shufflenet_v1_g2(**kwargs) -> ShuffleNetV1:
    """ShuffleNet V1, g = 2 (200/400/800 channels at 1x)."""
    return _create(2, **kwargs)


@register_model
def shufflenet_v1_g3(**kwargs) -> ShuffleNetV1:
    """ShuffleNet V1, g = 3 (240/480/960 channels at 1x): the paper's headline model."""
    return _create(3, **kwargs)


@register_model
def shufflenet_v1_g4(**kwargs) -> ShuffleNetV1:
    """ShuffleNet V1, g = 4 (272/544/1088 channels at 1x)."""
    return _create(4, **kwargs)


@register_model
def shufflenet_v1_g8(**kwargs) -> ShuffleNetV1:
    """ShuffleNet V1, g = 8 (384/768/1536 channels at 1x)."""
    return _create(8, **kwargs)
