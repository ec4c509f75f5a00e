"""Published ImageNet-1k figures of SqueezeNet and the efficient-CNN peers, with sources.

Copied from the project's reference sheet (the papers and torchvision/timm weight
metadata). MACs are multiply-accumulates at 224x224 as the papers report them.
"""

from typing import NamedTuple


# Published ImageNet-1k top-1 (single crop, the paper's resolution), with sources. torchvision
# names not listed here take the accuracy of their weights' metadata, which ships with torchvision.
PUBLISHED_TOP1 = {
    "mobilenet_v1_1.0": (70.6, "Howard et al. 2017, arXiv:1704.04861 Table 6"),
    "mobilenet_v1_0.75": (68.4, "Howard et al. 2017, arXiv:1704.04861 Table 6"),
    "mobilenet_v1_0.5": (63.7, "Howard et al. 2017, arXiv:1704.04861 Table 6"),
    "mobilenet_v1_0.25": (50.6, "Howard et al. 2017, arXiv:1704.04861 Table 6"),
    "mobilenet_v2_1.0": (72.0, "Sandler et al. 2018, arXiv:1801.04381 Table 4"),
    "mobilenet_v3_large_1.0": (75.2, "Howard et al. 2019, arXiv:1905.02244 Table 3"),
    "mobilenet_v3_large_0.75": (73.3, "Howard et al. 2019, arXiv:1905.02244 Table 3"),
    "mobilenet_v3_small_1.0": (67.4, "Howard et al. 2019, arXiv:1905.02244 Table 3"),
    "mobilenet_v3_small_0.75": (65.4, "Howard et al. 2019, arXiv:1905.02244 Table 3"),
    "shufflenet_v2_0.5": (60.3, "Ma et al. 2018, arXiv:1807.11164 Table 8"),
    "shufflenet_v2_1.0": (69.4, "Ma et al. 2018, arXiv:1807.11164 Table 8"),
    "shufflenet_v2_1.5": (72.6, "Ma et al. 2018, arXiv:1807.11164 Table 8"),
    "shufflenet_v2_2.0": (74.9, "Ma et al. 2018, arXiv:1807.11164 Table 8"),
    "ghostnet_1.0": (73.9, "Han et al. 2020, arXiv:1911.11907 Table 7"),
    "ghostnet_1.3": (75.7, "Han et al. 2020, arXiv:1911.11907 Table 7"),
    **{f"efficientnet_b{k}": (v, "Tan & Le 2019, arXiv:1905.11946 Table 2") for k, v in enumerate(
        (77.1, 79.1, 80.1, 81.6, 82.9, 83.6, 84.0, 84.3))},
    **{f"efficientnet_lite{k}": (v, "tensorflow/tpu efficientnet/lite README") for k, v in enumerate(
        (75.1, 76.7, 77.6, 79.8, 81.5))},
    "squeezenet_1.0": (57.5, "Iandola et al. 2016, arXiv:1602.07360 Table 2"),
    "squeezenet_1.1": (58.178, "torchvision weight metadata"),
    "shufflenet_v1_g3_1.0": (67.4, "Zhang et al. 2017, arXiv:1707.01083 Table 5"),
    "shufflenet_v1_g8_1.0": (67.6, "Zhang et al. 2017, arXiv:1707.01083 Table 5"),
    "mnasnet_b1_1.0": (73.456, "torchvision weight metadata; Tan et al. 2019, arXiv:1807.11626"),
    "deit_tiny_16": (72.2, "Touvron et al. 2021, arXiv:2012.12877 Table 1"),
    "deit_small_16": (79.8, "Touvron et al. 2021, arXiv:2012.12877 Table 1"),
    "deit_base_16": (81.8, "Touvron et al. 2021, arXiv:2012.12877 Table 1"),
    "convit_tiny": (73.1, "d'Ascoli et al. 2021, arXiv:2103.10697 Table 1"),
    "convit_small": (81.3, "d'Ascoli et al. 2021, arXiv:2103.10697 Table 1"),
    "convit_base": (82.4, "d'Ascoli et al. 2021, arXiv:2103.10697 Table 1"),
    "mobilevit_xxs": (69.0, "Mehta & Rastegari 2022, arXiv:2110.02178 Table 1"),
    "mobilevit_xs": (74.8, "Mehta & Rastegari 2022, arXiv:2110.02178 Table 1"),
    "mobilevit_s": (78.4, "Mehta & Rastegari 2022, arXiv:2110.02178 Table 1"),
    "repvgg_a0": (72.41, "Ding et al. 2021, arXiv:2101.03697 Table 4"),
    "repvgg_a1": (74.46, "Ding et al. 2021, arXiv:2101.03697 Table 4"),
    "repvgg_a2": (76.48, "Ding et al. 2021, arXiv:2101.03697 Table 4"),
    "repvgg_b0": (75.14, "Ding et al. 2021, arXiv:2101.03697 Table 4"),
    "mobileone_s0": (71.4, "Vasu et al. 2023, arXiv:2206.04040 Table 9"),
    "mobileone_s1": (75.9, "Vasu et al. 2023, arXiv:2206.04040 Table 9"),
    "mobileone_s2": (77.4, "Vasu et al. 2023, arXiv:2206.04040 Table 9"),
    "mobileone_s3": (78.1, "Vasu et al. 2023, arXiv:2206.04040 Table 9"),
    "mobileone_s4": (79.4, "Vasu et al. 2023, arXiv:2206.04040 Table 9"),
}


TOP1_PX = 224  # the input size of every published top-1 below (ImageNet validation, centre crop)


class Peer(NamedTuple):
    name: str  # for zoo.build_any: ours, tv:NAME or timm:NAME
    label: str
    params_m: float  # published parameters, millions
    mmacs: float  # published multiply-accumulates at 224 px, millions
    top1_key: str  # its row in PUBLISHED_TOP1, the one table of published accuracies

    @property
    def top1(self) -> float:
        return PUBLISHED_TOP1[self.top1_key][0]

    @property
    def source(self) -> str:
        return PUBLISHED_TOP1[self.top1_key][1]


PEERS = [Peer(*row) for row in [
    # name, label, params (M), MMACs, key of the published top-1
    ("squeezenet1_0", "SqueezeNet 1.0", 1.25, 819, "squeezenet_1.0"),
    ("squeezenet1_1", "SqueezeNet 1.1", 1.24, 349, "squeezenet_1.1"),
    ("timm:mobilenetv1_100", "MobileNetV1 1.0", 4.2, 569, "mobilenet_v1_1.0"),
    ("tv:mobilenet_v2", "MobileNetV2 1.0", 3.4, 300, "mobilenet_v2_1.0"),
    ("tv:mobilenet_v3_large", "MobileNetV3-Large", 5.4, 219, "mobilenet_v3_large_1.0"),
    ("tv:mobilenet_v3_small", "MobileNetV3-Small", 2.5, 56, "mobilenet_v3_small_1.0"),
    ("shufflenet_v1_g3", "ShuffleNetV1 1x g=3", 1.9, 137, "shufflenet_v1_g3_1.0"),
    ("shufflenet_v1_g8", "ShuffleNetV1 1x g=8", 2.4, 137, "shufflenet_v1_g8_1.0"),
    ("tv:shufflenet_v2_x0_5", "ShuffleNetV2 0.5x", 1.4, 41, "shufflenet_v2_0.5"),
    ("tv:shufflenet_v2_x1_0", "ShuffleNetV2 1.0x", 2.3, 146, "shufflenet_v2_1.0"),
    ("tv:efficientnet_b0", "EfficientNet-B0", 5.3, 390, "efficientnet_b0"),
    ("tv:mnasnet1_0", "MnasNet-B1 1.0", 4.4, 314, "mnasnet_b1_1.0"),
    ("timm:ghostnet_100", "GhostNet 1.0x", 5.2, 141, "ghostnet_1.0"),
]]
# ShuffleNetV1 has no builder in torchvision or timm: ours (models/shufflenet_v1.py) is measured.
# Its MMACs are the paper's Table 1 complexity (convolutions only); params are the authors' release.
