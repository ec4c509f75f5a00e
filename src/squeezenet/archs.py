"""SqueezeNet's architecture as data, with no PyTorch import: the section-5 design space,
the version table, and the stage list they generate. ``models/squeezenet.py`` builds
modules from it; ``deploy/sqz_onnx.py`` builds an ONNX graph from it without torch.

Iandola et al., arXiv:1602.07360 (Table 1, section 5); forresti/SqueezeNet (v1.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class DesignSpace:
    """The paper's section-5 metaparameters. Defaults generate SqueezeNet v1.0.

    e_i = base_e + incr_e * floor(i / freq)   for Fire i = 0..7 (fire2..fire9)
    e3x3_i = pct3x3 * e_i,  e1x1_i = e_i - e3x3_i,  s1x1_i = SR * e_i
    """

    base_e: int = 128
    incr_e: int = 128
    pct3x3: float = 0.5
    freq: int = 2
    squeeze_ratio: float = 0.125
    num_fire: int = 8

    def fire_configs(self, width: float = 1.0) -> list[tuple[int, int, int]]:
        """(squeeze, expand1x1, expand3x3) for each Fire module, width-scaled."""
        if not 0.0 <= self.pct3x3 <= 1.0:
            raise ValueError(f"pct3x3 must be in [0, 1], got {self.pct3x3}")
        if not 0.0 < self.squeeze_ratio <= 1.0:
            raise ValueError(f"squeeze ratio SR must be in (0, 1], got {self.squeeze_ratio}")
        if self.freq < 1 or width <= 0:
            raise ValueError(f"freq must be >= 1 and width > 0, got freq={self.freq}, width={width}")
        cfgs = []
        for i in range(self.num_fire):
            e = max(1, round((self.base_e + self.incr_e * (i // self.freq)) * width))
            e3 = round(e * self.pct3x3)
            cfgs.append((max(1, round(self.squeeze_ratio * e)), e - e3, e3))
        return cfgs


# Where the stem and the max pools go, per version. Fire modules are named fire2..fire9
# and a max pool after layer L is named maxpool<number of L>, as in the paper's Table 1.
#   stem: (filters, kernel, stride, padding);  pools_after: layer names
VERSIONS = {
    "1_0": dict(stem=(96, 7, 2, 0), pools_after=("conv1", "fire4", "fire8"),
                paper_top1=57.5, paper_top5=80.3, source="arXiv:1602.07360 Table 1-2"),
    "1_1": dict(stem=(64, 3, 2, 0), pools_after=("conv1", "fire3", "fire5"),
                paper_top1=58.178, paper_top5=80.624, source="forresti/SqueezeNet v1.1; torchvision metadata"),
}
# The small-input stem keeps 28-64 px images from collapsing: a 3x3/1 conv (padding 1)
# instead of the strided stem, so a 28 px input reaches fire9 at 3x3 (v1.1 pools:
# 28 -> 14 -> 7 -> 3) rather than at 1x1, and a 32 px input at 4x4.
SMALL_STEM = dict(kernel=3, stride=1, padding=1)
BYPASS_KINDS = ("none", "simple", "complex")


class Stage(NamedTuple):
    """One row of a SqueezeNet's layer list."""

    name: str  # conv1, maxpool1, fire2, ... as in the paper's Table 1
    kind: str  # "conv", "pool" or "fire"
    in_ch: int
    out: int | tuple[int, int, int]  # filters (conv), channels (pool), (squeeze, e1x1, e3x3) (fire)
    kernel: int = 0
    stride: int = 0
    padding: int = 0
    shortcut: str | None = None  # fire only: None, "identity" or "conv"

    @property
    def out_channels(self) -> int:
        return sum(self.out[1:]) if self.kind == "fire" else self.out


def build_stages(version: str = "1_0", bypass: str = "none", design: DesignSpace = DesignSpace(),
                 width: float = 1.0, stem: str = "imagenet", in_chans: int = 3):
    """The layer list of a SqueezeNet, as data.

    Returns a list of :class:`Stage` records, one per layer:
        Stage(name, "conv", in_ch, out_ch, kernel, stride, padding)
        Stage(name, "pool", ch,    ch,     3,      2,      0)
        Stage(name, "fire", in_ch, (squeeze, e1x1, e3x3), shortcut=bypass)
    where bypass is None, "identity" (in == out channels; simple and complex) or
    "conv" (a 1x1 conv shortcut where channels differ; complex only).
    """
    if version not in VERSIONS:
        raise ValueError(f"unknown version '{version}', expected one of {sorted(VERSIONS)}")
    if bypass not in BYPASS_KINDS:
        raise ValueError(f"bypass must be one of {BYPASS_KINDS}, got '{bypass}'")
    if stem not in ("imagenet", "small"):
        raise ValueError(f"stem must be 'imagenet' or 'small', got '{stem}'")
    v = VERSIONS[version]
    filters, kernel, stride, padding = v["stem"]
    filters = max(1, round(filters * width))
    pools = set(v["pools_after"])
    if stem == "small":
        kernel, stride, padding = SMALL_STEM["kernel"], SMALL_STEM["stride"], SMALL_STEM["padding"]
    stages = [Stage("conv1", "conv", in_chans, filters, kernel, stride, padding)]
    ch = filters
    if "conv1" in pools:
        stages.append(Stage("maxpool1", "pool", ch, ch, 3, 2, 0))
    for i, (s, e1, e3) in enumerate(design.fire_configs(width)):
        name, out = f"fire{i + 2}", e1 + e3
        kind = None
        if bypass != "none":
            kind = "identity" if out == ch else ("conv" if bypass == "complex" else None)
        stages.append(Stage(name, "fire", ch, (s, e1, e3), shortcut=kind))
        ch = out
        if name in pools:
            stages.append(Stage(f"maxpool{i + 2}", "pool", ch, ch, 3, 2, 0))
    return stages


def estimate_params(stages, num_classes: int) -> int:
    """Parameter count from the stage list alone (weights, no biases/BN): a bound
    checked before anything is allocated."""
    n = 0
    for st in stages:
        if st.kind == "conv":
            n += st.in_ch * st.out * st.kernel ** 2
        elif st.kind == "fire":
            s, e1, e3 = st.out
            n += st.in_ch * s + s * e1 + 9 * s * e3 + (st.in_ch * (e1 + e3) if st.shortcut == "conv" else 0)
    return n + stages[-1].out_channels * num_classes
