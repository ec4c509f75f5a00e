"""Counting conventions: MACs and FLOPs side by side, optional extras checked against
closed-form counts, attention counted on every path, and every torchvision
classification model against the metadata that ships with torchvision."""

import math

import pytest
import torch
import torchvision

from squeezenet import SqueezeNetError, create_model, profile
from squeezenet.profiler import REST_ROW
from squeezenet.zoo import build_any, tv_default_weights

# SqueezeNet v1.1 at 224 px: (channels, spatial size) of every ReLU output, from the architecture:
# conv1 64 @ 111; fire2-3 (16 + 64 + 64) @ 55; fire4-5 (32 + 128 + 128) @ 27; fire6-7 (48 + 192 + 192) @ 13;
# fire8-9 (64 + 256 + 256) @ 13; relu10 1000 @ 13
V11_RELU = [(64, 111), (144, 55), (144, 55), (288, 27), (288, 27), (432, 13), (432, 13), (576, 13), (576, 13),
            (1000, 13)]
# max pools 3x3 (9 taps per output) after conv1 (64 @ 55), fire3 (128 @ 27), fire5 (256 @ 13); the global
# average pool reads 13 x 13 = 169 values per class
V11_POOL = 9 * (64 * 55 ** 2 + 128 * 27 ** 2 + 256 * 13 ** 2) + 169 * 1000
# simple bypass adds at fire3 (128 @ 55), fire5 (256 @ 27), fire7 (384 @ 13), fire9 (512 @ 13)
V11_BYPASS_ADDS = 128 * 55 ** 2 + 256 * 27 ** 2 + 384 * 13 ** 2 + 512 * 13 ** 2


def test_extras_match_closed_form_counts():
    m = create_model("squeezenet1_1")
    base = profile(m, (3, 224, 224))
    assert base.macs == 349_151_936 and base.flops == 2 * base.macs
    relu = sum(c * s * s for c, s in V11_RELU)
    assert profile(m, (3, 224, 224), extra=("act",)).macs - base.macs == relu
    assert profile(m, (3, 224, 224), extra=("pool",)).macs - base.macs == V11_POOL
    bn = create_model("squeezenet1_1_simple_bypass_bn")  # BN after every conv but conv10
    assert profile(bn, (3, 224, 224), extra=("bn",)).macs - base.macs == relu - 1000 * 13 ** 2
    assert profile(bn, (3, 224, 224), extra=("add",)).macs - base.macs == V11_BYPASS_ADDS
    every = profile(bn, (3, 224, 224), extra=("bn", "act", "pool", "add"))
    assert every.macs - base.macs == (relu - 169_000) + relu + V11_POOL + V11_BYPASS_ADDS


def test_every_output_says_what_was_counted():
    p = profile(create_model("squeezenet1_1"), (3, 224, 224), extra=("pool",))
    d = p.to_dict()
    assert d["total"]["flops"] == 2 * d["total"]["macs"] and d["counted"][-1] == "pool"
    assert "plus pooling" in d["convention"] and "BatchNorm, activations, element-wise adds not counted" in d["convention"]
    table = p.format("table")
    assert "FLOPs" in table.splitlines()[0] and p.convention in table
    assert f"{p.macs / 1e9:.3f} GMACs = {p.flops / 1e9:.3f} GFLOPs" in p.format("markdown")
    assert p.format("csv").splitlines()[0].split(",")[5:7] == ["macs", "flops"]
    with pytest.raises(SqueezeNetError, match="unknown count option 'flops'"):
        profile(create_model("squeezenet1_1"), (3, 64, 64), extra=("flops",))


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_attention_is_counted_on_every_path(device):
    """nn.MultiheadAttention in eval/no-grad takes PyTorch's fused fast path on CPU, which
    a plain FlopCounterMode does not see; the closed form is in/out projections plus QK^T and AV."""
    e, heads, n = 64, 4, 10

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = torch.nn.MultiheadAttention(e, heads, batch_first=True)

        def forward(self, x):  # (B, n, e) from a (B, 1, n, e) "image"
            x = x[:, 0]
            return self.attn(x, x, x, need_weights=False)[0]

    with torch.device(device):
        m = Block().eval()
    p = profile(m, (1, n, e))
    assert p.macs == 3 * n * e * e + n * e * e + 2 * n * n * e
    # the projections and products run inside MultiheadAttention (out_proj's weight used functionally), which
    # is no leaf layer: they are the last row, so the rows add up to the totals
    rows = {s.name: s for s in p.layers}
    assert set(rows) == {"attn.out_proj", REST_ROW}
    assert (rows[REST_ROW].macs, rows[REST_ROW].params) == (p.macs, 3 * e * e + 3 * e)  # in_proj weight and bias
    assert (rows["attn.out_proj"].macs, rows["attn.out_proj"].params) == (0, e * e + e)


def _tv_models():
    return torchvision.models.list_models(module=torchvision.models)


@pytest.mark.parametrize("name", _tv_models())
def test_every_torchvision_classifier_against_its_weight_metadata(name):
    """Our MACs equal torchvision's `_ops` (GMACs at the weights' own crop size) within 1%, or
    within the metadata's rounding to 3 decimals; parameters equal `num_params` exactly."""
    w = tv_default_weights(name)
    built = build_any(name, meta=True)  # the weights' configuration, no download, no memory
    assert built.input_size == w.transforms().crop_size[0]
    p = profile(built.model, (3, built.input_size, built.input_size))
    gmacs = p.macs / 1e9
    assert math.isclose(gmacs, w.meta["_ops"], rel_tol=0.01) or abs(gmacs - w.meta["_ops"]) <= 0.0005, \
        (gmacs, w.meta["_ops"])
    assert p.params == w.meta["num_params"]
    # and the per-layer rows add up to those totals (attention computed in no leaf layer included)
    assert sum(s.macs for s in p.layers) == p.macs and sum(s.params for s in p.layers) == p.params
    assert all(s.macs >= 0 and s.params >= 0 for s in p.layers)
