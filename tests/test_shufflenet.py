"""ShuffleNet V1 against the paper's Table 1, the authors' release and closed-form counts."""

import pytest
import torch

from reference import (SHUFFLENET_V1_CHANNELS, SHUFFLENET_V1_MMACS, SHUFFLENET_V1_RELEASE_CHANNELS,
                       SHUFFLENET_V1_RELEASE_PARAMS_M, SHUFFLENET_V1_RELEASE_TABLE)
from squeezenet import create_model, profile
from squeezenet.models import ShuffleUnit, channel_shuffle

GROUPS = [1, 2, 3, 4, 8]


def closed_form_params(g: int, num_classes: int = 1000) -> int:
    """Parameters of the 1x net from Table 1's channels alone: convs (grouped: in*out/g*k*k),
    BN (2 per channel), FC with bias."""
    n = 3 * 24 * 9 + 2 * 24
    cin = 24
    for s, (out, units) in enumerate(zip(SHUFFLENET_V1_CHANNELS[g], (4, 8, 4))):
        for i in range(units):
            mid, main = out // 4, (out - cin if i == 0 else out)
            g1 = 1 if s == 0 and i == 0 else g
            n += cin * mid // g1 + 2 * mid + 9 * mid + 2 * mid + mid * main // g + 2 * main
            cin = out
    return n + cin * num_classes + num_classes


@pytest.mark.parametrize("g", GROUPS)
def test_table1_macs_and_channels(g):
    m = create_model(f"shufflenet_v1_g{g}")
    prof = profile(m, (3, 224, 224))
    fc = m.fc.in_features * m.fc.out_features
    conv_macs = prof.macs - fc  # Table 1's complexity counts the convolutions
    assert conv_macs == pytest.approx(SHUFFLENET_V1_MMACS[g] * 1e6, rel=0.01)
    shapes = {r.name: r.output_shape for r in prof.layers}
    assert shapes["conv1"][1:] == [24, 112, 112] and shapes["maxpool"][2:] == [56, 56]
    for stage, (c, size) in zip((2, 3, 4), zip(SHUFFLENET_V1_CHANNELS[g], (28, 14, 7))):
        last = {2: 3, 3: 7, 4: 3}[stage]
        assert shapes[f"stage{stage}.{last}"][1:] == [c, size, size]
    assert prof.params == closed_form_params(g)


@pytest.mark.parametrize("g", [3, 8])
def test_params_match_the_authors_release(g):
    n = sum(p.numel() for p in create_model(f"shufflenet_v1_g{g}").parameters())
    assert round(n / 1e6, 1) == SHUFFLENET_V1_RELEASE_PARAMS_M[g]


@pytest.mark.parametrize("g,width", sorted(SHUFFLENET_V1_RELEASE_TABLE))
def test_every_width_matches_the_authors_release(g, width):
    """Stem and stage widths equal the release's network.py (its 1.5x keeps a 24-filter
    stem); MACs (with the FC, as the release counts) and params within the rounding of its
    README's table."""
    m = create_model(f"shufflenet_v1_g{g}_w{width}")
    stem = m.conv1.conv.out_channels
    stages = tuple(u.out_ch for u in m.units if u.stride == 2)
    assert (stem, *stages) == SHUFFLENET_V1_RELEASE_CHANNELS[g][width]
    prof = profile(m, (3, 224, 224))
    mmacs, params_m = SHUFFLENET_V1_RELEASE_TABLE[(g, width)]
    assert prof.macs / 1e6 == pytest.approx(mmacs, rel=0.015)
    assert round(prof.params / 1e6, 1) == pytest.approx(params_m, abs=0.1)


def test_channel_shuffle_is_a_permutation_that_mixes_every_group():
    g, n = 3, 4
    x = torch.arange(g * n, dtype=torch.float32).view(1, g * n, 1, 1)
    y = channel_shuffle(x, g).flatten().long()
    assert sorted(y.tolist()) == list(range(g * n))  # a permutation
    for block in y.view(n, g):  # each next-conv group of g channels takes one from every input group
        assert sorted((block // n).tolist()) == list(range(g))


def test_a_unit_lets_every_input_group_reach_every_output_group():
    torch.manual_seed(0)
    unit = ShuffleUnit(48, 48, groups=3, stride=1).eval()
    x = torch.rand(1, 48, 8, 8)
    x2 = x.clone()
    x2[:, :16] += 1.0  # only input group 0 changes
    with torch.no_grad():
        main = unit.bn3(unit.conv3(unit.bn2(unit.conv2(channel_shuffle(unit.relu(unit.bn1(unit.conv1(x))), 3)))))
        main2 = unit.bn3(unit.conv3(unit.bn2(unit.conv2(channel_shuffle(unit.relu(unit.bn1(unit.conv1(x2))), 3)))))
    changed = (main - main2).abs().flatten(2).amax(2)[0] > 1e-6  # per output channel of the main branch
    assert all(changed[j * 16:(j + 1) * 16].any() for j in range(3))
    # without the shuffle, group 0 would reach only output group 0
    with torch.no_grad():
        plain = unit.bn3(unit.conv3(unit.bn2(unit.conv2(unit.relu(unit.bn1(unit.conv1(x)))))))
        plain2 = unit.bn3(unit.conv3(unit.bn2(unit.conv2(unit.relu(unit.bn1(unit.conv1(x2)))))))
    assert not ((plain - plain2).abs()[:, 16:] > 1e-6).any()


def test_units_as_the_paper_describes_them():
    m = create_model("shufflenet_v1_g3")
    first, stride1 = m.stages.stage2_0, m.stages.stage2_1
    assert first.conv1.groups == 1 and stride1.conv1.groups == 3  # stage 2's first pointwise conv is not grouped
    assert first.conv2.groups == first.conv2.in_channels == 60  # depthwise, bottleneck = 240 / 4
    assert isinstance(first.shortcut, torch.nn.AvgPool2d) and first.conv3.out_channels == 240 - 24
    x = torch.rand(2, 240, 8, 8)
    with torch.no_grad():  # no ReLU after the depthwise conv: its BN output keeps negative values
        y = stride1.bn2(stride1.conv2(stride1.relu(stride1.bn1(stride1.conv1(x)))))
    assert (y < 0).any()


@pytest.mark.parametrize("width", [0.25, 0.5, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("g", GROUPS)
def test_every_width_and_group_builds_and_runs(g, width):
    m = create_model(f"shufflenet_v1_g{g}_w{width}", num_classes=7).eval()
    with torch.no_grad():
        assert m(torch.rand(1, 3, 64, 64)).shape == (1, 7)
    for u in m.units:
        assert (u.out_ch // 4) % g == 0 and (u.out_ch - (u.in_ch if u.stride == 2 else 0)) % g == 0
    if width == 1.0:
        assert [u.out_ch for u in m.units if u.stride == 2] == list(SHUFFLENET_V1_CHANNELS[g])


def test_onnx_export_matches_eager(tmp_path):
    pytest.importorskip("onnxruntime")
    from squeezenet.deploy.export import export_model_to_onnx
    from squeezenet.formats.onnx import open_session

    torch.manual_seed(0)
    m = create_model("shufflenet_v1_g3").eval()
    path = export_model_to_onnx(m, tmp_path / "s.onnx", (3, 224, 224), dynamic_batch=True)
    x = torch.randn(2, 3, 224, 224)
    sess = open_session(path)
    out = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert abs(out - m(x).numpy()).max() <= 1e-4


def test_trains_through_the_uniform_interface(tmp_path, fmnist_dir):
    from squeezenet.train import Trainer, TrainConfig

    res = Trainer(TrainConfig(model="shufflenet_v1_g3_w0.5", data_dir=str(fmnist_dir), download=False,
                              out=str(tmp_path), epochs=1, batch_size=64, progress=False, precision="fp32",
                              lr=0.1)).run()
    assert res["epochs_done"] == 1 and res["final"]["test_top1"] >= 0
    from squeezenet.formats.open import open_model

    mf = open_model(tmp_path / "last.pt")
    assert mf.name == "shufflenet_v1_g3_w0.5" and mf.model.fc.out_features == 10
