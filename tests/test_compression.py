"""Deep Compression pieces: k-means, relative indices, Huffman, container, masks."""

import json
import math

import numpy as np
import pytest
import torch

from squeezenet import SqueezeNetError, create_model
from squeezenet.formats import encoding
from squeezenet.formats import sqz as container
from squeezenet.compression.prune import apply_masks, compute_masks, density_plan, hold_masks, paper_density
from squeezenet.compression.share import hold_sharing, kmeans_linear, refresh_centroids, share_weights


def test_kmeans_linear_init_recovers_known_clusters():
    rng = np.random.default_rng(0)
    centers = np.array([-0.5, -0.1, 0.2, 0.7])
    x = np.concatenate([c + 0.01 * rng.standard_normal(500) for c in centers])
    c, lab = kmeans_linear(x, 4)
    np.testing.assert_allclose(c, centers, atol=0.005)
    # every sample lands in the cluster of its generating centre
    assert (lab == np.repeat(np.arange(4), 500)).all()


def test_kmeans_linear_init_on_uniform_is_uniform_quantizer():
    # For U(0,1) the optimal 1-D k-means codebook is the uniform midpoint quantizer
    x = np.random.default_rng(1).uniform(0, 1, 40000)
    c, _ = kmeans_linear(x, 8)
    np.testing.assert_allclose(c, (np.arange(8) + 0.5) / 8, atol=0.01)


def test_kmeans_fewer_values_than_clusters():
    c, lab = kmeans_linear(np.array([1.0, 2.0, 1.0]), 16)
    assert list(c) == [1.0, 2.0] and list(lab) == [0, 1, 0]


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_relative_index_round_trip_with_gap_overflow(bits):
    rng = np.random.default_rng(bits)
    mask = rng.random(5000) < 0.05
    mask[[0, 4999]] = True
    mask[100:400] = False  # a gap far longer than 2**bits
    sym = encoding.encode_relative(mask, bits)
    esc = (1 << bits) - 1
    assert sym.max() <= esc and (sym == esc).sum() > 0
    assert (sym != esc).sum() == mask.sum()  # one non-escape symbol per kept weight
    np.testing.assert_array_equal(encoding.decode_relative(sym, bits, mask.size), mask)


def test_relative_index_worked_example():
    # Deep Compression Fig. 2 style: positions 1, 4, 15 with 3-bit indices (escape = 7)
    mask = np.zeros(16, dtype=bool)
    mask[[1, 4, 15]] = True
    assert encoding.encode_relative(mask, 3).tolist() == [1, 2, 7, 3]


def test_huffman_round_trip_and_optimal_lengths():
    # dyadic frequencies have Huffman lengths -log2(p): 1, 2, 3, 3
    lengths = encoding.code_lengths(np.array([8, 4, 2, 2]))
    assert lengths.tolist() == [1, 2, 3, 3]
    rng = np.random.default_rng(0)
    sym = rng.choice(64, size=20000, p=np.r_[np.full(32, 0.025), np.full(32, 0.00625)])
    ln = encoding.code_lengths(np.bincount(sym, minlength=64))
    data = encoding.huffman_encode(sym, ln)
    np.testing.assert_array_equal(encoding.huffman_decode(data, ln, len(sym)), sym)
    entropy = -(np.bincount(sym) / len(sym) * np.log2(np.bincount(sym) / len(sym))).sum()
    assert entropy <= len(data) * 8 / len(sym) < entropy + 1  # within 1 bit of entropy


def test_huffman_single_symbol_and_length_limit():
    sym = np.zeros(100, dtype=np.int64)
    ln = encoding.code_lengths(np.bincount(sym, minlength=4))
    np.testing.assert_array_equal(encoding.huffman_decode(encoding.huffman_encode(sym, ln), ln, 100), sym)
    fib = np.array([1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181, 6765,
                    10946, 17711, 28657, 46368, 75025, 121393, 196418, 317811])
    ln = encoding.code_lengths(fib)
    assert ln.max() <= encoding.MAX_CODE_LEN
    assert math.isclose(sum(2.0 ** -ln[ln > 0]), 1.0) or sum(2.0 ** -ln[ln > 0]) <= 1.0  # Kraft


def test_paper_density_preset():
    m = create_model("squeezenet1_0")
    plan = density_plan(m, "paper")
    assert plan["features.conv1.conv"] == 1.0
    assert plan["features.fire2.expand3x3"] == 0.33
    assert plan["features.fire7.squeeze"] == 0.5 and plan["features.fire8.expand1x1"] == 0.5
    assert plan["features.fire9.expand3x3"] == 0.30 and plan["classifier.conv10"] == 0.2
    assert paper_density("features.fire6.expand1x1") == 0.5


def test_global_density():
    torch.manual_seed(0)
    m = create_model("squeezenet1_1", num_classes=10)
    masks = compute_masks(m, density_plan(m, 0.25))
    kept = sum(int(v.sum()) for v in masks.values())
    total = sum(v.numel() for v in masks.values())
    assert abs(kept / total - 0.25) < 0.001


def _tiny_model():
    torch.manual_seed(0)
    return create_model("squeezenet1_1_w0.25", num_classes=4, dropout=0.0)


def test_masks_survive_finetuning():
    m = _tiny_model()
    masks = compute_masks(m, density_plan(m, "paper"))
    apply_masks(m, masks)
    hold_masks(m, masks)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(m(torch.randn(4, 3, 48, 48)), torch.tensor([0, 1, 2, 3]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        apply_masks(m, masks)
    mods = dict(m.named_modules())
    changed = False
    for name, mask in masks.items():
        w = mods[name].weight
        assert (w[~mask] == 0).all()
        changed |= bool((w[mask] != 0).any())
    assert changed


def test_centroid_finetuning_keeps_weights_shared():
    m = _tiny_model()
    masks = compute_masks(m, density_plan(m, "paper"))
    apply_masks(m, masks)
    shared = share_weights(m, masks, 3)
    before = {n: s.centroids.clone() for n, s in shared.items()}
    hold_sharing(m, shared)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(m(torch.randn(4, 3, 48, 48)), torch.tensor([0, 1, 2, 3]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    mods = dict(m.named_modules())
    for name, s in shared.items():
        w = mods[name].weight.detach()
        assert (w[~s.mask] == 0).all()
        vals = w[s.mask]
        for k in range(len(s.centroids)):
            members = vals[s.labels == k]
            assert torch.unique(members).numel() == 1  # still one shared value per cluster
    refresh_centroids(m, shared)
    assert any(not torch.equal(before[n], s.centroids) for n, s in shared.items())


def _encode(tmp_path, bits=4):
    m = _tiny_model().eval()
    masks = compute_masks(m, density_plan(m, "paper"))
    apply_masks(m, masks)
    shared = share_weights(m, masks, bits)
    blob, rows = container.encode_model(m, shared, "squeezenet1_1_w0.25", m.model_kwargs)
    path = tmp_path / "m.sqz"
    path.write_bytes(blob)
    return m, path


def test_container_round_trip_is_lossless(tmp_path):
    m, path = _encode(tmp_path)
    decoded, header = container.load_container(path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(decoded(x), m(x))
    assert header["model_name"] == "squeezenet1_1_w0.25"


def test_container_detects_corruption_and_truncation(tmp_path):
    _, path = _encode(tmp_path)
    data = bytearray(path.read_bytes())
    bad = tmp_path / "bad.sqz"
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    with pytest.raises(SqueezeNetError, match="checksum"):
        container.load_container(bad)
    bad.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(SqueezeNetError, match="corrupted or truncated"):
        container.load_container(bad)
    bad.write_bytes(b"hello")
    with pytest.raises(SqueezeNetError, match="not a .sqz"):
        container.load_container(bad)


def test_paper_sizes_on_imagenet_shaped_v10(tmp_path):
    """Initialised (seeded) v1.0, 1000 classes, paper density: 6-bit <= 470,000 bytes,
    8-bit <= 660,000 bytes, container included (paper: 0.47 MB and 0.66 MB)."""
    from squeezenet.compression.pipeline import compress

    from squeezenet.compression.prune import prunable

    r6 = compress(model_name="squeezenet1_0", sparsity="paper", bits=6, out=str(tmp_path / "v6.sqz"))
    decoded, _ = container.load_container(tmp_path / "v6.sqz")
    kept = total = 0
    for _, m in prunable(decoded):  # 6 bits: at most 64 shared values per layer, zeros where pruned
        w = m.weight.detach()
        assert len(torch.unique(w[w != 0])) <= 64
        kept, total = kept + int((w != 0).sum()), total + w.numel()
    assert kept / total == pytest.approx(421_098 / 1_244_448, abs=0.01)  # Table 1 density of the weights
    assert r6["file_bytes"] <= 470_000
    assert r6["ratio_alexnet"] == pytest.approx(240e6 / r6["file_bytes"])  # paper: 510x at 6 bits, 0.47 MB
    assert r6["payload_bytes_after_huffman"] < r6["payload_bytes_before_huffman"]
    r8 = compress(model_name="squeezenet1_0", sparsity="paper", bits=8, out=str(tmp_path / "v8.sqz"))
    assert r8["file_bytes"] <= 660_000
    assert 0.33 < r6["density"] < 0.35  # Table 1: 421,098 / 1,248,424 = 0.337


def test_compress_accepts_torchvision_checkpoint(tmp_path):
    """The same command runs on torchvision's ImageNet checkpoint file (here one the test
    writes with random weights), and the decoded model matches the shared weights."""
    import torchvision

    from squeezenet.compression.pipeline import compress

    tv = torchvision.models.squeezenet1_1()
    path = tmp_path / "squeezenet1_1-b8a52dc0.pth"
    torch.save(tv.state_dict(), path)
    r = compress(model_name="squeezenet1_1", weights=str(path), sparsity="paper", bits=6,
                 out=str(tmp_path / "tv.sqz"))
    assert "torchvision" in r["source"]
    model, header = container.load_container(tmp_path / "tv.sqz")
    # pruned positions are zero, kept conv1 weights are codebook values near the originals
    w = model.features["conv1"].conv.weight
    assert (w - tv.features[0].weight).abs().max() < 0.05
    assert header["bits"] == 6


def test_fine_tuning_keeps_the_pruning_and_can_distil(tiny_run, fmnist_dir, tmp_path):
    """compress --finetune-epochs on a trained run: the pruned weights stay zero and the shared
    ones on their centroids through both fine-tunes (the file decodes to the fine-tuned model
    exactly), top-1 is measured after every stage, and --distill's loss is recorded."""
    from helpers import run_cli

    out = tmp_path / "m.sqz"
    code, _, err = run_cli("compress", "-c", tiny_run / "best.pt", "--data-dir", fmnist_dir, "--no-download",
                           "--sparsity", "0.5", "--bits", "4", "--finetune-epochs", "0.3", "--distill", "--out", out)
    assert code == 0, err
    res = json.loads(out.with_suffix(".json").read_text())
    assert res["lossless"] and res["finetune"] == {"epochs": 0.3, "lr": 0.01, "loss": "distillation"}
    # AlexNet's 240 MB is an ImageNet yardstick: a 10-class model's file is not compared with it
    assert res["ratio_alexnet"] is None and "AlexNet" not in out.with_suffix(".md").read_text() + err
    assert list(res["accuracy"]) == ["original", "pruned", "pruned_finetuned", "shared", "shared_finetuned"]
    pruned = [r for r in res["layers"] if r["bits"] == 4]  # the weights (biases stay fp32): half of them kept
    assert pruned and abs(sum(r["params"] * r["density"] for r in pruned) / sum(r["params"] for r in pruned) - 0.5) \
        < 0.02
    assert "loss: distillation from the uncompressed model" in out.with_suffix(".md").read_text()
