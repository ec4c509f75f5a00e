"""Published ImageNet-1k figures of SqueezeNet and the efficient-CNN peers, with sources.

Copied from the project's reference sheet (the papers and torchvision/timm weight
metadata). MACs are multiply-accumulates at 224x224 as the papers report them.
"""

from typing import NamedTuple


class Peer(NamedTuple):
    name: str  # for zoo.build_any: ours, tv:NAME or timm:NAME
    label: str
    params_m: float  # published parameters, millions
    mmacs: float  # published multiply-accumulates at 224 px, millions
    top1: float  # published ImageNet-1k top-1, %
    source: str  # where top1 comes from


PEERS = [Peer(*row) for row in [
    # name, label, params (M), MMACs, top-1, source of top-1
    ("squeezenet1_0", "SqueezeNet 1.0", 1.25, 819, 57.5, "Iandola et al. 2016, arXiv:1602.07360 Table 2"),
    ("squeezenet1_1", "SqueezeNet 1.1", 1.24, 349, 58.2, "torchvision weight metadata (58.178)"),
    ("timm:mobilenetv1_100", "MobileNetV1 1.0", 4.2, 569, 70.6, "Howard et al. 2017, arXiv:1704.04861"),
    ("tv:mobilenet_v2", "MobileNetV2 1.0", 3.4, 300, 72.0, "Sandler et al. 2018, arXiv:1801.04381"),
    ("tv:mobilenet_v3_large", "MobileNetV3-Large", 5.4, 219, 75.2, "Howard et al. 2019, arXiv:1905.02244"),
    ("tv:mobilenet_v3_small", "MobileNetV3-Small", 2.5, 56, 67.4, "Howard et al. 2019, arXiv:1905.02244"),
    ("shufflenet_v1_g3", "ShuffleNetV1 1x g=3", 1.9, 137, 67.4, "Zhang et al. 2017, arXiv:1707.01083 Table 5"),
    ("shufflenet_v1_g8", "ShuffleNetV1 1x g=8", 2.4, 137, 67.6, "Zhang et al. 2017, arXiv:1707.01083 Table 5"),
    ("tv:shufflenet_v2_x0_5", "ShuffleNetV2 0.5x", 1.4, 41, 60.3, "Ma et al. 2018, arXiv:1807.11164"),
    ("tv:shufflenet_v2_x1_0", "ShuffleNetV2 1.0x", 2.3, 146, 69.4, "Ma et al. 2018, arXiv:1807.11164"),
    ("tv:efficientnet_b0", "EfficientNet-B0", 5.3, 390, 77.1, "Tan & Le 2019, arXiv:1905.11946"),
    ("tv:mnasnet1_0", "MnasNet-B1 1.0", 4.4, 314, 73.5, "torchvision weight metadata (73.456); Tan et al. arXiv:1807.11626"),
    ("timm:ghostnet_100", "GhostNet 1.0x", 5.2, 141, 73.9, "Han et al. 2020, arXiv:1911.11907"),
]]
# ShuffleNetV1 has no builder in torchvision or timm: ours (models/shufflenet_v1.py) is measured.
# Its MMACs are the paper's Table 1 complexity (convolutions only); params are the authors' release.
