"""Numbers from outside the code, copied from the project's reference sheet
(SqueezeNet paper arXiv:1602.07360 Tables 1-3 and section 5, the authors' Caffe
release forresti/SqueezeNet, and torchvision/models/squeezenet.py)."""

# Paper Table 1, SqueezeNet v1.0 at 227x227x3: (layer, output spatial size, channels, params)
TABLE1 = [
    ("conv1", 111, 96, 14_208),
    ("maxpool1", 55, 96, 0),
    ("fire2", 55, 128, 11_920),
    ("fire3", 55, 128, 12_432),
    ("fire4", 55, 256, 45_344),
    ("maxpool4", 27, 256, 0),
    ("fire5", 27, 256, 49_440),
    ("fire6", 27, 384, 104_880),
    ("fire7", 27, 384, 111_024),
    ("fire8", 27, 512, 188_992),
    ("maxpool8", 13, 512, 0),
    ("fire9", 13, 512, 197_184),
    ("conv10", 13, 1000, 513_000),
    ("avgpool10", 1, 1000, 0),
]
TABLE1_TOTAL = 1_248_424
# Table 1 s1x1 / e1x1 / e3x3 per Fire module
TABLE1_FIRES = [(16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128),
                (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)]

# torchvision reference values (squeezenet.py weight metadata)
TV_V10_PARAMS, TV_V10_GMACS = 1_248_424, 0.819
TV_V11_PARAMS, TV_V11_GMACS = 1_235_496, 0.349

# Complex bypass: four 1x1 bypass convs with bias, 96->128, 128->256, 256->384, 384->512
COMPLEX_BYPASS_EXTRA = 96 * 128 + 128 + 128 * 256 + 256 + 256 * 384 + 384 + 384 * 512 + 512  # 341,248
COMPLEX_BYPASS_TOTAL = 1_589_672
PAPER_COMPLEX_BYPASS_MB = 7.7  # paper Table 3; does not follow from the architecture (see docs)

# Section 5 SR sweep (1000 classes, fp32), sizes in MiB; the paper prints 4.8MB and ~19MB
SR_SWEEP = {0.125: (1_248_424, 4.76), 0.25: (1_967_080, 7.50), 0.5: (3_404_392, 12.99),
            0.75: (4_841_704, 18.47), 1.0: (6_279_016, 23.95)}

# ShuffleNet V1 (Zhang et al. 2017, arXiv:1707.01083) Table 1 at 224 px, width 1x: stage 2/3/4 output
# channels and "complexity (MFLOPs)", which counts the convolutions' multiply-adds (the FC is excluded).
SHUFFLENET_V1_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
                          8: (384, 768, 1536)}
SHUFFLENET_V1_MMACS = {1: 143, 2: 140, 3: 137, 4: 133, 8: 137}
# The authors' release (megvii-model/ShuffleNet-Series, ShuffleNetV1/README): 1.0x parameters in millions
SHUFFLENET_V1_RELEASE_PARAMS_M = {3: 1.9, 8: 2.4}
# The release's ShuffleNetV1/network.py: stage_out_channels [stem, stage2, stage3, stage4] per width, and its
# README's table ("FLOPs" = multiply-adds in millions, params in millions).
SHUFFLENET_V1_RELEASE_CHANNELS = {
    3: {0.5: (12, 120, 240, 480), 1.0: (24, 240, 480, 960), 1.5: (24, 360, 720, 1440), 2.0: (48, 480, 960, 1920)},
    8: {0.5: (16, 192, 384, 768), 1.0: (24, 384, 768, 1536), 1.5: (24, 576, 1152, 2304), 2.0: (48, 768, 1536, 3072)},
}
SHUFFLENET_V1_RELEASE_TABLE = {  # (g, width): (MFLOPs = MMACs, params M)
    (3, 2.0): (524, 5.4), (8, 2.0): (522, 6.5), (3, 1.5): (292, 3.4), (8, 1.5): (290, 4.3),
    (3, 1.0): (138, 1.9), (8, 1.0): (138, 2.4), (3, 0.5): (38, 0.7), (8, 0.5): (40, 1.0),
}
