"""SqueezeNet core against the paper's Table 1 and torchvision."""

import math

import pytest
import torch
import torchvision
from torch import nn

from squeezenet import SqueezeNetError, create_model, list_models, profile
from squeezenet.formats.open import open_model
from squeezenet.models.squeezenet import DesignSpace, Fire, load_torchvision_state_dict

from reference import (COMPLEX_BYPASS_EXTRA, COMPLEX_BYPASS_TOTAL, SR_SWEEP, TABLE1, TABLE1_FIRES, TABLE1_TOTAL,
                       TV_V10_GMACS, TV_V10_PARAMS, TV_V11_GMACS, TV_V11_PARAMS)


def test_v10_reproduces_table1_at_227():
    prof = profile(create_model("squeezenet1_0"), (3, 227, 227))
    got = [(s.name, s.output_shape[2], s.output_shape[1], s.params) for s in prof.layers]
    assert got == TABLE1
    assert prof.params == TABLE1_TOTAL
    assert all(s.output_shape[2] == s.output_shape[3] for s in prof.layers)


def test_default_design_space_generates_v10_fires():
    assert DesignSpace().fire_configs() == TABLE1_FIRES


def test_fire_module_structure():
    fire = Fire(96, 16, 64, 64)
    x = torch.randn(2, 96, 13, 13)
    y = fire(x)
    assert y.shape == (2, 128, 13, 13)
    # the concat is [expand1x1 | expand3x3], each after its own ReLU
    s = torch.relu(fire.squeeze(x))
    torch.testing.assert_close(y[:, :64], torch.relu(fire.expand1x1(s)))
    torch.testing.assert_close(y[:, 64:], torch.relu(fire.expand3x3(s)))
    assert fire.expand3x3.padding == (1, 1)


@pytest.mark.parametrize("name,params,gmacs", [("squeezenet1_0", TV_V10_PARAMS, TV_V10_GMACS),
                                               ("squeezenet1_1", TV_V11_PARAMS, TV_V11_GMACS)])
def test_totals_at_224(name, params, gmacs):
    prof = profile(create_model(name), (3, 224, 224))
    assert prof.params == params
    assert abs(prof.macs / 1e9 - gmacs) / gmacs < 0.005


def test_v10_maps_at_224_with_ceil_mode():
    prof = profile(create_model("squeezenet1_0"), (3, 224, 224))
    sizes = {s.name: s.output_shape[2] for s in prof.layers}
    assert (sizes["conv1"], sizes["maxpool1"], sizes["maxpool4"], sizes["maxpool8"]) == (109, 54, 27, 13)


def test_v11_layout():
    m = create_model("squeezenet1_1")
    conv1 = m.features["conv1"].conv
    assert (conv1.out_channels, conv1.kernel_size, conv1.stride) == (64, (3, 3), (2, 2))
    pools = [st.name for st in m.stages if st.kind == "pool"]
    assert pools == ["maxpool1", "maxpool3", "maxpool5"]


def test_bypass_parameter_counts():
    vanilla = profile(create_model("squeezenet1_0")).params
    simple = create_model("squeezenet1_0_simple_bypass")
    assert profile(simple).params == vanilla
    assert sorted(simple.bypass.keys()) == ["fire3", "fire5", "fire7", "fire9"]
    complex_ = create_model("squeezenet1_0_complex_bypass")
    assert profile(complex_).params - vanilla == COMPLEX_BYPASS_EXTRA
    assert profile(complex_).params == COMPLEX_BYPASS_TOTAL
    convs = {k: (v.in_channels, v.out_channels) for k, v in complex_.bypass.items()
             if isinstance(v, torch.nn.Conv2d)}
    assert convs == {"fire2": (96, 128), "fire4": (128, 256), "fire6": (256, 384), "fire8": (384, 512)}
    # profiler lists the bypass convs as their own rows
    names = [s.name for s in profile(complex_).layers]
    assert "bypass_fire2" in names and "bypass_fire8" in names


def test_simple_bypass_adds_identity():
    # paper: the input of fire4 is fire2's output + fire3's output
    m = create_model("squeezenet1_0_simple_bypass").eval()
    seen = {}
    hooks = [m.features[n].register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, (i[0].clone(), o.clone())))
             for n in ("fire2", "fire3", "fire4")]
    with torch.no_grad():
        m(torch.randn(1, 3, 224, 224))
    for h in hooks:
        h.remove()
    torch.testing.assert_close(seen["fire4"][0], seen["fire2"][1] + seen["fire3"][1], rtol=0, atol=0)


@pytest.mark.parametrize("sr", sorted(SR_SWEEP))
def test_sr_sweep_sizes(sr):
    params, mib = SR_SWEEP[sr]
    m = create_model(f"squeezenet1_0_sr{sr}")
    n = sum(p.numel() for p in m.parameters())
    assert n == params
    assert round(n * 4 / 2**20, 2) == mib


def test_paper_48mb_and_19mb():
    # The paper's "MB" are MiB of fp32 weights: 4.76 MiB ~ "4.8MB", 18.47 MiB ~ "19MB"
    assert round(TABLE1_TOTAL * 4 / 2**20, 1) == 4.8
    n = sum(p.numel() for p in create_model("squeezenet1_0_sr0.75").parameters())
    assert 18.4 < n * 4 / 2**20 < 19.0


@pytest.mark.parametrize("ours,tv", [("squeezenet1_0", "squeezenet1_0"), ("squeezenet1_1", "squeezenet1_1")])
def test_torchvision_weights_give_equal_outputs(ours, tv):
    torch.manual_seed(0)
    ref = getattr(torchvision.models, tv)().eval()
    # randomise every parameter so equality is not an accident of init
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn_like(p) * 0.05)
    model = load_torchvision_state_dict(create_model(ours), ref.state_dict()).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        diff = (model(x) - ref(x)).abs().max().item()
    assert diff <= 1e-5


def test_torchvision_loader_from_file(tmp_path):
    ref = torchvision.models.squeezenet1_1().eval()
    path = tmp_path / "squeezenet1_1-b8a52dc0.pth"
    torch.save(ref.state_dict(), path)
    model = open_model("squeezenet1_1", weights=str(path)).model
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        assert (model(x) - ref(x)).abs().max().item() <= 1e-5


def test_torchvision_loader_rejects_wrong_version(tmp_path):
    path = tmp_path / "v11.pth"
    torch.save(torchvision.models.squeezenet1_1().state_dict(), path)
    with pytest.raises(SqueezeNetError, match="do not fit"):
        open_model("squeezenet1_0", weights=str(path))
    bad = tmp_path / "junk.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SqueezeNetError, match="cannot read"):
        open_model("squeezenet1_0", weights=str(bad))
    with pytest.raises(SqueezeNetError, match="not found"):
        open_model("squeezenet1_0", weights=str(tmp_path / "missing.pth"))


def test_caffe_initialisation():
    torch.manual_seed(0)
    m = create_model("squeezenet1_0")
    w = m.features["fire9"].expand3x3.weight  # fan_in 64*9
    bound = math.sqrt(3.0 / (64 * 9))
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    c10 = m.classifier.conv10.weight
    assert abs(c10.std().item() - 0.01) < 0.0005
    assert all((mod.bias == 0).all() for mod in m.modules() if isinstance(mod, torch.nn.Conv2d))


def test_registry_names_and_errors():
    names = list_models()
    for n in ["squeezenet1_0", "squeezenet1_1", "squeezenet1_1_simple_bypass", "squeezenet1_0_complex_bypass"]:
        assert n in names
    assert list_models("*bypass*") == [n for n in names if "bypass" in n]
    with pytest.raises(SqueezeNetError, match="did you mean .*squeezenet1_0"):
        create_model("squeezenet1_o")
    with pytest.raises(SqueezeNetError, match="bad configuration"):
        create_model("squeezenet1_0", pct3x3=1.5)


def test_duplicate_registration_raises():
    from squeezenet.registry import register_model

    with pytest.raises(ValueError, match="already registered"):
        @register_model
        def squeezenet1_0():  # noqa: F811
            pass


def test_name_modifiers():
    m = create_model("squeezenet1_1_w0.5_bn_small_160", num_classes=10, in_chans=1)
    assert m.default_cfg["input_size"] == (1, 160, 160)
    assert m.features["conv1"].conv.out_channels == 32
    assert isinstance(m.features["conv1"].bn, torch.nn.BatchNorm2d)
    assert m.features["conv1"].conv.stride == (1, 1)
    assert m.num_classes == 10


def test_small_stem_keeps_spatial_extent():
    m = create_model("squeezenet1_1_small", in_chans=1, num_classes=10)
    prof = profile(m, (1, 28, 28))
    sizes = {s.name: s.output_shape[2] for s in prof.layers}
    assert sizes["fire9"] == 3  # 28 -> 14 -> 7 -> 3 instead of collapsing to 1x1
    prof = profile(create_model("squeezenet1_1_small"), (3, 32, 32))
    assert {s.name: s.output_shape[2] for s in prof.layers}["fire9"] == 4


def test_uniform_interface():
    m = create_model("squeezenet1_1", num_classes=7)
    x = torch.randn(2, 3, 64, 64)
    f = m.forward_features(x)
    assert f.shape[1] == m.num_features == 512
    assert m.forward_head(f).shape == (2, 7)
    assert m.forward_head(f, pre_logits=True).shape == (2, 512)
    m.reset_classifier(3)
    assert m(x).shape == (2, 3) and m.num_classes == 3 and m.get_classifier().out_channels == 3


def test_authors_release_v10_pads_conv10():
    """forresti/SqueezeNet deploy.prototxt: conv10 pad 1, so at 227 px its output is 15x15 and the
    global average takes in a ring of 56 ReLU(bias) values: with the same weights,
    release = (169 * table1 + 56 * relu(bias)) / 225 for every class."""
    from squeezenet import create_model, profile

    t1, rel = create_model("squeezenet1_0").eval(), create_model("squeezenet1_0_caffe").eval()
    rel.load_state_dict(t1.state_dict())
    with torch.no_grad():
        t1.classifier.conv10.bias.uniform_(-0.5, 0.5)
        rel.classifier.conv10.bias.copy_(t1.classifier.conv10.bias)
        x = torch.randn(2, 3, 227, 227)
        want = (169 * t1(x) + 56 * torch.relu(t1.classifier.conv10.bias)) / 225
        torch.testing.assert_close(rel(x), want, rtol=1e-5, atol=1e-6)
    shapes = {r.name: r.output_shape for r in profile(rel, (3, 227, 227)).layers}
    assert shapes["conv10"][2:] == [15, 15] and shapes["fire9"][2:] == [13, 13]
    assert rel.default_cfg["input_size"] == (3, 227, 227) and rel.default_cfg["preprocess"] == "caffe"
    assert rel.model_kwargs["head_padding"] == 1 and "head_padding" not in t1.model_kwargs


def test_cpu_dropout_keeps_nn_dropouts_distribution_and_gradient():
    """The classifier's dropout draws its CPU mask as rand >= p: a Bernoulli(1 - p) keep
    mask scaled by 1 / (1 - p), as nn.Dropout's (closed form: mean kept share 1 - p, each
    kept value x / (1 - p), gradient the same mask); identity in eval mode."""
    from squeezenet.models.squeezenet import Dropout

    torch.manual_seed(0)
    d = Dropout(0.3)
    x = torch.full((400, 256), 2.0, requires_grad=True)
    y = d(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005  # 102,400 draws: 4.5 standard errors
    assert torch.allclose(y[kept], torch.tensor(2.0 / 0.7))
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept) and torch.allclose(x.grad[kept], torch.tensor(1 / 0.7))
    d.eval()
    assert torch.equal(d(x), x)
    assert isinstance(create_model("squeezenet1_1").classifier.dropout, nn.Dropout)
