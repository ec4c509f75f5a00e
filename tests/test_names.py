"""`squeezenet explain` reads the names of every family we cover (issue 13: at least 30 names)."""

import pytest

from squeezenet import SqueezeNetError
from squeezenet.names import FAMILIES, PUBLISHED_TOP1, decode, explain

# name -> settings the explanation must contain (substrings), read from the name or the family's default
CASES = {
    # ours
    "squeezenet1_0": {"version": "v1.0", "resolution": "224 px"},
    "squeezenet1_1_simple_bypass_w0.5_bn_160": {"version": "v1.1", "width": "0.5x", "resolution": "160 px"},
    "squeezenet1_0_sr0.75": {"design_space": "SR 0.75"},
    "shufflenet_v1_g3": {"groups": "g=3", "width": "1.0x", "published_top1": "67.4%"},
    "shufflenet_v1_g8_w0.5": {"groups": "g=8", "width": "0.5x"},
    "shufflenet_v1_g1_w2.0_160": {"groups": "g=1", "width": "2.0x", "resolution": "160 px"},
    # torchvision, bare and tv:
    "mobilenet_v2": {"family": "MobileNet V2", "width": "1x", "published_top1": "72.0%"},
    "tv:mobilenet_v3_small": {"family": "MobileNet V3", "size": "small", "published_top1": "67.4%"},
    "mobilenet_v3_large": {"size": "large", "published_top1": "75.2%"},
    "shufflenet_v2_x0_5": {"family": "ShuffleNet V2", "width": "0.5x", "published_top1": "60.3%"},
    "tv:shufflenet_v2_x2_0": {"width": "2x", "published_top1": "74.9%"},
    "efficientnet_b0": {"compound coefficient": "B0: width x1.0, depth x1.0, resolution 224 px",
                        "published_top1": "77.1%"},
    "tv:efficientnet_b7": {"compound coefficient": "B7: width x2.0, depth x3.1, resolution 600 px",
                           "published_top1": "84.3%"},
    "efficientnet_v2_s": {"family": "EfficientNet V2", "size": "small", "builder_resolution": "384 px",
                          "published_top1": "torchvision weight metadata"},
    "mnasnet1_0": {"family": "MnasNet", "width": "1x", "published_top1": "73.456%"},
    "tv:mnasnet0_75": {"width": "0.75x"},
    "vit_b_16": {"family": "ViT", "size": "base", "patch size": "16 x 16 px", "macs": "17,563.8 M"},
    "resnet50": {"family": "ResNet", "depth": "50 layers"},
    # timm, bare and timm:
    "mobilenetv1_100": {"family": "MobileNet V1", "width": "1x", "published_top1": "70.6%"},
    "timm:mobilenetv1_075": {"width": "0.75x", "published_top1": "68.4%"},
    "mobilenetv2_100": {"family": "MobileNet V2", "width": "1x", "published_top1": "72.0%"},
    "mobilenetv3_large_100": {"size": "large", "width": "1x", "published_top1": "75.2%"},
    "mobilenetv3_small_075": {"size": "small", "width": "0.75x", "published_top1": "65.4%"},
    "ghostnet_100": {"family": "GhostNet", "width": "1x", "published_top1": "73.9%"},
    "ghostnet_130": {"width": "1.3x", "published_top1": "75.7%"},
    "efficientnet_b3": {"compound coefficient": "B3: width x1.2, depth x1.4, resolution 300 px",
                        "published_top1": "81.6%"},
    "efficientnet_lite0": {"variant": "Lite0", "published_top1": "75.1%"},
    "timm:efficientnet_lite4": {"variant": "Lite4 (no squeeze-excitation, ReLU6): width x1.4, depth x1.8, "
                                           "resolution 300 px", "published_top1": "81.5%"},
    "tf_efficientnet_b0": {"weights port": "TensorFlow", "builder": "timm:tf_efficientnet_b0"},
    "deit_tiny_patch16_224": {"family": "DeiT", "size": "tiny", "patch size": "16 x 16 px",
                              "resolution": "224 px", "published_top1": "72.2%"},
    "deit_base_distilled_patch16_384": {"size": "base", "resolution": "384 px", "distillation": "token",
                                        "published_top1": "not in our table"},
    "convit_tiny": {"family": "ConViT", "size": "tiny", "patch size": "16 x 16 px", "published_top1": "73.1%"},
    "mobilevit_xs": {"family": "MobileViT", "size": "X-small", "resolution": "256 px", "published_top1": "74.8%"},
    "mobilevit_xxs": {"size": "XX-small", "published_top1": "69.0%"},
    "repvgg_a1": {"family": "RepVGG", "series": "A1: A (light", "published_top1": "74.46%"},
    "repvgg_b1g4": {"series": "B1: B (heavier", "groups": "4"},
    "mobileone_s2": {"family": "MobileOne", "size": "S2", "published_top1": "77.4%"},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_explain_reads_the_name(name):
    info = explain(name, counts=name in ("vit_b_16", "efficientnet_v2_s"))
    for key, want in CASES[name].items():
        assert key in info and want in str(info[key]), (key, info.get(key))


def test_at_least_30_names_across_every_family():
    assert len(CASES) >= 30
    covered = {decode(n)[0].key for n in CASES if not n.startswith(("squeezenet", "shufflenet_v1"))}
    assert covered == {f.key for f in FAMILIES}  # every rule is exercised


@pytest.mark.parametrize("name", ["mobilenetv1_100", "ghostnet_130", "efficientnet_b3", "deit_tiny_patch16_224"])
def test_counts_come_from_the_installed_builder(name):
    pytest.importorskip("timm")
    import timm

    from squeezenet.zoo import build_any

    info = explain(name)
    params = sum(p.numel() for p in build_any(decode(name)[0].library + ":" + name
                                              if decode(name)[0].library == "timm" else name).model.parameters())
    assert info["params_1000_classes"].startswith(f"{params:,}")
    assert name in timm.list_models() or name.startswith("efficientnet")


@pytest.mark.parametrize("name,needle", [
    ("efficientnet_b9", "'efficientnet' is EfficientNet (V1), but '_b9' is not understood (expected _b0 ... _b7"),
    ("mobilenetv3_large", "'_large' is not understood"),
    ("deit_huge_patch16_224", "'deit' is DeiT"),
    ("repvgg_c1", "'_c1' is not understood"),
    ("foo_bar", "no family we cover starts with 'foo'"),
    ("squeezenet1_0_w1000", "width must be between"),
])
def test_unknown_names_say_which_part_was_not_understood(name, needle):
    with pytest.raises(SqueezeNetError, match=needle.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        explain(name, counts=False)


def test_every_published_figure_has_a_source():
    """A paper (arXiv) or README for each; where the source is torchvision's weight
    metadata, the figure equals that metadata's acc@1."""
    from squeezenet.zoo import tv_default_weights

    from_metadata = {"squeezenet_1.1": "squeezenet1_1", "mnasnet_b1_1.0": "mnasnet1_0"}
    for key, (top1, source) in PUBLISHED_TOP1.items():
        assert 40 < top1 < 90 and ("arXiv" in source or "README" in source or key in from_metadata), key
        if "torchvision weight metadata" in source:
            assert top1 == tv_default_weights(from_metadata[key]).meta["_metrics"]["ImageNet-1K"]["acc@1"], key


def test_other_torchvision_classifiers_are_explained_from_their_metadata():
    info = explain("regnet_y_400mf", counts=False)
    assert "no decoding rule" in info["family"] and info["resolution"].startswith("224 px")
    assert "torchvision weight metadata" in info["published_top1"]
