"""Low-bit quantization (issue 19): packing against ONNX's own, LSQ's gradient against the
paper's formula, BN folding, the knapsack against brute force, and real files: ONNX
Runtime on INT4/INT2 ONNX against the fake-quant PyTorch model, every command reading them."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
import onnx  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

from helpers import TINY, assert_one_line, run_cli  # noqa: E402
from squeezenet import create_model  # noqa: E402
from squeezenet.compression import lowbit as lb  # noqa: E402
from squeezenet.formats.encoding import pack_signed, unpack_signed  # noqa: E402


@pytest.mark.parametrize("bits, kind", [(2, onnx.TensorProto.INT2), (4, onnx.TensorProto.INT4),
                                        (8, onnx.TensorProto.INT8)])
def test_packing_is_onnx_packing(bits, kind):
    rng = np.random.default_rng(bits)
    q = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), 37)
    raw = pack_signed(q, bits)
    assert len(raw) == math.ceil(37 * bits / 8)
    t = helper.make_tensor("t", kind, [37], raw, raw=True)
    assert (numpy_helper.to_array(t).astype(np.int64) == q).all()  # onnx reads our bytes as the same values
    assert (unpack_signed(raw, bits, 37) == q).all()


def test_lsq_gradient_is_the_papers():
    """LSQ (Esser et al. 2020, eq. 3): d x_hat / d s = round(x/s) - x/s inside the range,
    -Q_N or Q_P outside; times the gradient scale g."""
    s = torch.tensor(0.1, requires_grad=True)
    x = torch.tensor([0.234, -0.051, 5.0, -5.0])
    qn, qp = lb.qrange(4)
    lb.fake_quant(x, s, qn, qp, g=0.5).sum().backward()
    v = x / 0.1
    want = torch.where(v > qp, torch.tensor(float(qp)), torch.where(v < -qn, torch.tensor(float(-qn)), v.round() - v))
    assert s.grad.item() == pytest.approx(0.5 * want.sum().item(), rel=1e-5)


def test_mse_step_recovers_an_exact_grid():
    s = torch.tensor([0.01, 0.2, 3.0])
    q = torch.randint(-7, 8, (3, 50)).float()
    q[:, 0] = 7  # max |x| = 7 s: the grid is representable, error 0 only at step s
    got = lb.mse_step(q * s[:, None], 4, signed=True, per_channel=True)
    assert torch.allclose(got, s, rtol=1e-5)


def test_folding_batchnorm_keeps_the_outputs():
    torch.manual_seed(0)
    m = create_model(TINY, num_classes=10, in_chans=1)
    for mod in m.modules():  # non-trivial statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-1, 1)
            mod.running_var.uniform_(0.5, 2)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.5, 0.5)
    m.eval()
    plain = lb.fold_batchnorm(m, TINY)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in plain.modules())
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(m(x), plain(x), atol=1e-4, rtol=1e-4)


def test_knapsack_is_the_brute_force_optimum():
    rng = np.random.default_rng(0)
    sizes = {f"l{i}": (int(rng.integers(100, 3000)), int(rng.integers(4, 32))) for i in range(6)}
    sens = {n: {2: float(rng.uniform(0.5, 3)), 4: float(rng.uniform(0.05, 0.5)), 8: float(rng.uniform(0, 0.01))}
            for n in sizes}
    fixed = {"l0": 8}
    budget = sum(lb.weight_bytes(p, c, 4) for p, c in sizes.values())  # room for ~4 bits on average
    got = lb.allocate_bits(sizes, sens, budget, fixed, quantum=1)
    best = None
    for combo in itertools.product(lb.WEIGHT_BITS, repeat=5):
        bits = {"l0": 8, **dict(zip(list(sizes)[1:], combo))}
        cost = sum(lb.weight_bytes(*sizes[n], b) for n, b in bits.items())
        if cost <= budget:
            value = sum(sens[n][b] for n, b in bits.items() if n != "l0")
            best = min(best or (math.inf, None), (value, bits), key=lambda t: t[0])
    assert sum(sens[n][b] for n, b in got.items() if n != "l0") == pytest.approx(best[0])
    assert sum(lb.weight_bytes(*sizes[n], b) for n, b in got.items()) <= budget
    with pytest.raises(Exception, match="cannot hold"):
        lb.allocate_bits(sizes, sens, 100, fixed)


# ------------------------------------------------------------------ real files from a trained run

def _quantize(tiny_run, fmnist_dir, out, *args):
    code, stdout, err = run_cli("quantize", "-c", tiny_run / "best.pt", "--data-dir", fmnist_dir, "--no-download",
                                "--out", out, *args)
    assert code == 0, err
    tag = next(out.glob("lowbit_report_*.json"))
    return json.loads(tag.read_text()), stdout


@pytest.fixture(scope="module")
def w4(tiny_run, fmnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("w4")
    return _quantize(tiny_run, fmnist_dir, out, "--weight-bits", "4", "--calib-size", "64", "--rounding", "nearest")[0]


def test_int4_onnx_matches_the_fake_quant_model(w4):
    rows = {r["what"]: r for r in w4["rows"]}
    onnx_row, fq = rows["low-bit ONNX (ONNX Runtime)"], rows["fake-quant model (PyTorch)"]
    # parity, the stated tolerance: the same top-1 on >= 99.5% of the test images, logits within 1e-3 on average
    # and 0.25 at most (an fp32 sum in another order can move an activation across a rounding boundary, rarely).
    # ORT quantizing float biases (or re-quantizing folded weights per tensor) put the mean at 1.5e-2 to 0.13.
    p = w4["parity"]
    assert p["mean_abs_logit_diff"] <= 1e-3 and p["max_abs_logit_diff"] <= 0.25 and p["top1_agreement_pct"] >= 99.5
    assert abs(onnx_row["top1"] - fq["top1"]) <= 0.5
    assert rows["low-bit .sqz (PyTorch)"]["top1"] == fq["top1"]  # the .sqz rebuilds the fake-quant numbers
    m = onnx.load(w4["files"]["onnx"])
    int4 = {t.name: t for t in m.graph.initializer if t.data_type == onnx.TensorProto.INT4}
    n_int4 = sum(int(np.prod(t.dims)) for t in int4.values())
    assert sum(len(t.raw_data) for t in int4.values()) <= (n_int4 + len(int4)) // 2 + len(int4)  # packed, 2 per byte
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int4]
    assert len(dq) == len(int4) and all(any(c.op_type == "Conv" and d.output[0] in c.input for c in m.graph.node)
                                        for d in dq)
    layers = {r["layer"]: r["bits"] for r in w4["layers"]}
    assert list(layers.values())[0] == 8 and list(layers.values())[-1] == 8  # stem and conv10 kept at 8 bits
    assert set(list(layers.values())[1:-1]) == {4}
    assert n_int4 == sum(r["params"] for r in w4["layers"][1:-1])
    # its 8-bit edge layers (weights up to +-128) read or write float, so ONNX Runtime runs no int8 kernel on them
    # that could saturate on a CPU without VNNI, and the file gets no such note (the test below: the file's numbers)
    from squeezenet.formats.onnx import read_onnx, saturating_int8_layers
    assert saturating_int8_layers(read_onnx(w4["files"]["onnx"], False)) == []


def test_every_command_reads_the_low_bit_files(w4, fmnist_dir, tmp_path):
    from helpers import make_image_folder  # noqa: F401
    from PIL import Image

    img = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)).save(img)
    for f in (w4["files"]["sqz"], w4["files"]["onnx"]):
        code, out, err = run_cli("eval", "-c", f, "--data-dir", fmnist_dir, "--no-download")
        assert code == 0, err
        code, out, err = run_cli("predict", "-c", f, img, "--topk", "2")
        assert code == 0 and out.strip(), err
    for f in (w4["files"]["sqz"], w4["files"]["onnx"]):
        code, out, err = run_cli("bench", f, "--backends", "ort", "--batch-sizes", "1", "--repeats", "2", "--warmup",
                                 "1", "--out", tmp_path / "b")
        assert code == 0, err  # the ort rows time the file's own INT4 graph
        code, out, err = run_cli("bench", f, "--backends", "ort-int8", "--out", tmp_path / "b")
        assert_one_line(code, err, "already quantized")
    code, out, err = run_cli("bench", w4["files"]["sqz"], "--batch-sizes", "1", "--repeats", "2", "--warmup", "1",
                             "--out", tmp_path / "d")
    assert code == 0 and "| ort |" in out and "ort-int8" not in out, err  # the defaults, less ort-int8, as for an int8 .onnx
    from squeezenet.serve import load_classifier

    clf = load_classifier(w4["files"]["sqz"], None, True, "ort", str(tmp_path))
    assert len(clf.predict([str(img)], topk=2)[0]) == 2
    from squeezenet import deploy

    assert deploy.load(w4["files"]["onnx"]).predict([str(img)], topk=2)[0] == clf.predict([str(img)], topk=2)[0]


@pytest.mark.parametrize("act_bits", ["8", "4"])
def test_onnx_runtime_runs_the_files_numbers(tiny_run, fmnist_dir, tmp_path, act_bits):
    """The low-bit ONNX file gives the fake-quant numbers under ONNX Runtime as a user opens it
    (defaults, on the file) and as our commands do (INT4 weights folded to fp32 first). Two ORT
    passes change numbers unless the file prevents it: its WeightBiasQuantization rounds a float
    bias to int32 at input step x weight step (so the writer puts every bias on that grid, and
    the fake-quant model rounds it the same way), and it re-quantizes folded float weights per
    tensor at 8 bits (so our sessions turn it off). Either gave a mean |logit| difference of
    1.5e-2 (A8) to 0.13 (A4) on trained models' files; 4-bit activations show it most."""
    import onnxruntime as ort

    from squeezenet.formats.onnx import open_session
    from squeezenet.formats.open import open_model

    r, _ = _quantize(tiny_run, fmnist_dir, tmp_path / "q", "--weight-bits", "4", "--act-bits", act_bits,
                     "--calib-size", "64", "--rounding", "nearest")
    model = open_model(r["files"]["sqz"]).model  # the .sqz rebuilds the fake-quant numbers (test above)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((64, 1, 28, 28)).astype(np.float32))
    with torch.no_grad():
        ref = model(x)
    for sess in (ort.InferenceSession(r["files"]["onnx"], providers=["CPUExecutionProvider"]),
                 open_session(r["files"]["onnx"])):
        diff = (torch.from_numpy(sess.run(None, {"input": x.numpy()})[0]) - ref).abs()
        off = (diff.amax(1) > 1e-4).float().mean().item()  # images with any logit off by more than 1e-4
        # 0% here; 55-100% before (an fp32 sum in another order can still move one activation a step: 10% allowed)
        assert off <= 0.10 and diff.max() <= 0.25, (off, diff.max())


def test_export_keeps_the_low_bit_weights_and_builds_in_flip_tta(w4, tmp_path):
    """`export` of a low-bit .sqz writes its integer graph (exporting through PyTorch widened every
    weight to fp32, ~7x the file), and --tta flip averages each image with its mirror inside it:
    against two runs of the plain file, on the image and on the image flipped by numpy."""
    import onnxruntime as ort

    from squeezenet.formats.onnx import OnnxClassifier

    plain, tta = tmp_path / "plain.onnx", tmp_path / "tta.onnx"
    for out, extra in ((plain, []), (tta, ["--tta", "flip"])):
        code, stdout, err = run_cli("export", w4["files"]["sqz"], "--out", out, *extra)
        assert code == 0 and "low-bit weights kept as stored" in stdout, err
    int4 = [t for t in onnx.load(plain).graph.initializer if t.data_type == onnx.TensorProto.INT4]
    assert len(int4) == sum(r["bits"] == 4 for r in w4["layers"])
    assert plain.stat().st_size <= 1.01 * Path(w4["files"]["onnx"]).stat().st_size
    x = np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)
    run = {f: ort.InferenceSession(str(f)).run for f in (plain, tta)}
    mean = (run[plain](None, {"input": x})[0] + run[plain](None, {"input": x[..., ::-1].copy()})[0]) / 2
    np.testing.assert_allclose(run[tta](None, {"input": x})[0], mean, atol=1e-5)
    assert OnnxClassifier(tta).spec.tta == "flip" and OnnxClassifier(plain).spec.tta is None
    for flag in (["--fp16"], ["--opset", "18"], ["--input-size", "32"]):
        code, _, err = run_cli("export", w4["files"]["sqz"], "--out", tmp_path / "bad.onnx", *flag)
        assert_one_line(code, err, "holds low-bit integer weights, which export as they are stored")
        assert flag[0] in err and not (tmp_path / "bad.onnx").exists()


def test_low_bit_export_builds_in_flip_shift_tta(w4, tmp_path):
    """`export --tta flip-shift` of a low-bit .sqz (a graph built by hand, not traced from PyTorch):
    its logits are the mean of the plain file's over training's own 10 crops of the image."""
    import onnxruntime as ort

    from helpers import training_views

    from squeezenet.batches import normalize
    from squeezenet.formats.onnx import OnnxClassifier

    plain, tta = tmp_path / "plain.onnx", tmp_path / "fs.onnx"
    for out, extra in ((plain, []), (tta, ["--tta", "flip-shift"])):
        code, _, err = run_cli("export", w4["files"]["sqz"], "--out", out, *extra)
        assert code == 0, err
    spec = OnnxClassifier(plain).spec
    u8 = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    run = {f: ort.InferenceSession(str(f)).run for f in (plain, tta)}
    each = [run[plain](None, {"input": v.numpy()})[0] for v in training_views(u8, spec.pad, 1, spec.mean, spec.std)]
    got = run[tta](None, {"input": normalize(u8, spec.mean, spec.std).numpy()})[0]
    np.testing.assert_allclose(got, np.mean(each, axis=0), atol=1e-5)
    assert np.abs((each[0] + each[5]) / 2 - got).max() > 1e-4  # not flip alone
    assert OnnxClassifier(tta).spec.tta == "flip-shift"


def test_quantize_builds_flip_tta_into_the_low_bit_onnx(tiny_run, fmnist_dir, tmp_path):
    """--weight-bits with --tta: the ONNX files have it built in, every row is scored with it, and
    the float row is what `eval --tta flip` (metrics.evaluate's own flip) gives for the checkpoint."""
    r, _ = _quantize(tiny_run, fmnist_dir, tmp_path / "q", "--weight-bits", "4", "--calib-size", "64",
                     "--rounding", "nearest", "--tta", "flip")
    assert r["tag"] == "w4a8_flip" and r["files"]["sqz"].endswith("model_w4a8.sqz")  # the .sqz holds the model alone
    rows = {row["what"]: row for row in r["rows"]}
    code, _, err = run_cli("eval", "-c", tiny_run / "best.pt", "--data-dir", fmnist_dir, "--no-download", "--tta",
                           "flip", "--out", tmp_path / "e.json")
    assert code == 0, err
    assert rows["float model (PyTorch)"]["top1"] == pytest.approx(json.loads((tmp_path / "e.json").read_text())["top1"])
    code, _, err = run_cli("eval", "-c", r["files"]["onnx"], "--data-dir", fmnist_dir, "--no-download", "--out",
                           tmp_path / "o.json")
    assert code == 0, err
    onnx_eval = json.loads((tmp_path / "o.json").read_text())
    assert onnx_eval["tta_in_model"] == "flip"
    assert onnx_eval["top1"] == pytest.approx(rows["low-bit ONNX (ONNX Runtime)"]["top1"])
    assert r["parity"]["top1_agreement_pct"] >= 99.0
    assert "Every row is scored with flip test-time augmentation" in \
        (tmp_path / "q" / "lowbit_report_w4a8_flip.md").read_text()


def test_int2_and_mixed_files(tiny_run, fmnist_dir, tmp_path):
    r2, _ = _quantize(tiny_run, fmnist_dir, tmp_path / "w2", "--weight-bits", "2", "--calib-size", "64",
                      "--rounding", "adaround", "--adaround-iters", "100")
    m = onnx.load(r2["files"]["onnx"])
    assert any(t.data_type == onnx.TensorProto.INT2 for t in m.graph.initializer)
    assert r2["parity"]["top1_agreement_pct"] >= 99.0  # learned rounding is written as the file's integers
    from squeezenet.formats.sqz import read_container

    assert r2["tag"] == "w2a8_ada" and read_container(r2["files"]["sqz"])[0]["quantization"]["rounding"] == "adaround"
    assert "AdaRound, 100 Adam steps" in (tmp_path / "w2" / "lowbit_report_w2a8_ada.md").read_text()
    fp32 = sum(4 * r["params"] for r in r2["layers"])
    budget_kb = fp32 / 10 / 1024
    rm, _ = _quantize(tiny_run, fmnist_dir, tmp_path / "mixed", "--weight-bits", "mixed", "--size-budget",
                      f"{budget_kb:.3f}", "--calib-size", "64", "--adaround-iters", "50")
    # no --rounding: auto learns the rounding of a post-training file below 8 bits, and says so
    assert rm["tag"] == "mixeda8_ada" and rm["settings"]["rounding_chosen_by"] == "auto"
    assert "(chosen by --rounding auto: a post-training file below 8 bits)" in \
        (tmp_path / "mixed" / "lowbit_report_mixeda8_ada.md").read_text()
    assert sum(r["bytes"] for r in rm["layers"]) <= budget_kb * 1024
    assert {r["bits"] for r in rm["layers"]} <= {2, 4, 8} and "kl_2bit" in rm["layers"][1]
    assert rm["parity"]["top1_agreement_pct"] >= 99.0


def test_seed_draws_another_calibration_sample(tiny_run, fmnist_dir, tmp_path, w4):
    """--seed reaches the calibration sample: another seed calibrates other activation steps
    from other images (the w4 fixture is seed 0, same flags), and the report records it."""
    r, _ = _quantize(tiny_run, fmnist_dir, tmp_path / "s1", "--weight-bits", "4", "--calib-size", "64",
                     "--rounding", "nearest", "--seed", "1")
    from squeezenet.formats.sqz import read_container

    steps = {s: read_container(f)[0]["act_quant"] for s, f in ((0, w4["files"]["sqz"]), (1, r["files"]["sqz"]))}
    assert steps[0].keys() == steps[1].keys()
    assert any(steps[0][k][0] != steps[1][k][0] for k in steps[0])
    assert (w4["settings"]["seed"], r["settings"]["seed"]) == (0, 1)
    report = (tmp_path / "s1" / "lowbit_report_w4a8.md").read_text()
    assert "; seed 1;" in report and "calibration 64 training images" in report and r["calib_images"] == 64


def test_qat_learns_the_steps(tiny_run, fmnist_dir, tmp_path):
    r, _ = _quantize(tiny_run, fmnist_dir, tmp_path / "qat", "--weight-bits", "2", "--qat-epochs", "0.5",
                     "--calib-size", "64", "--batch-size", "64")
    assert r["qat"]["epochs"] == 0.5 and r["tag"] == "w2a8_qat0.5" and r["qat"]["loss"] == "distillation"
    assert "loss distillation from the float model" in (tmp_path / "qat" / "lowbit_report_w2a8_qat0.5.md").read_text()
    from squeezenet.formats.sqz import read_container

    header, _ = read_container(r["files"]["sqz"])
    assert header["version"] == 2 and header["quantization"]["qat_epochs"] == 0.5
    assert all(v[1] == 8 and v[0] > 0 for v in header["act_quant"].values())


# the SqueezeNet paper's Table 1 (Deep Compression's per-layer sparsity columns), read as the share of
# weights kept: fire2-5 100/100/33%, fire6 100/50/33%, fire7 50/100/33%, fire8 100/50/33%, fire9 50/100/30%,
# conv10 20%; conv1 is kept whole
_T1 = {2: (1, 1, .33), 3: (1, 1, .33), 4: (1, 1, .33), 5: (1, 1, .33), 6: (1, .5, .33), 7: (.5, 1, .33),
       8: (1, .5, .33), 9: (.5, 1, .30)}
PAPER_TABLE1_DENSITY = {f"fire{i}.{part}": d[j] for i, d in _T1.items()
                        for j, part in enumerate(("squeeze", "expand1x1", "expand3x3"))} | {"conv10": 0.2}


@pytest.fixture(scope="module")
def pruned_w4(tiny_run, fmnist_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned_w4")
    return _quantize(tiny_run, fmnist_dir, out, "--weight-bits", "4", "--sparsity", "paper", "--qat-epochs",
                     "0.5", "--calib-size", "64", "--batch-size", "64")[0]


def test_pruned_int4_is_stored_sparse_and_runs_everywhere(pruned_w4, w4):
    """Pruning + int4: every pruned layer keeps round(density x weights) integers (Table 1's
    densities), the pruned ones stay 0 through QAT, the .sqz holds them sparse and is smaller
    than the dense int4 file, and ONNX Runtime's dense INT4 graph computes what the
    fake-quant model does."""
    from squeezenet.formats.sqz import intq_arrays, read_raw

    assert pruned_w4["tag"] == "w4a8_ppaper_qat0.5"  # --rounding auto with QAT: nearest (QAT learns the rest)
    header, payload = read_raw(pruned_w4["files"]["sqz"])
    assert header["version"] == 3 and header["quantization"]["sparsity"] == "paper"
    assert (header["quantization"]["rounding"], header["quantization"]["rounding_chosen_by"]) == ("nearest", "auto")
    tensors = {t["key"].removeprefix("features.").removeprefix("classifier.").rsplit(".", 1)[0]: t
               for t in header["tensors"] if t["kind"] == "intq"}
    get = lambda ref: payload[ref[0]:ref[0] + ref[1]]  # noqa: E731
    for layer, density in PAPER_TABLE1_DENSITY.items():
        t = tensors[layer]
        if density == 1:
            assert "data" in t and "g_stream" not in t, layer  # kept whole: stored dense
            continue
        assert "g_stream" in t and "data" not in t, layer
        q, _ = intq_arrays(t, get)
        assert t["v_count"] == round(density * q.size)  # the kept integers, some of which may round to 0
        assert np.count_nonzero(q) <= round(density * q.size)
    assert "data" in tensors["conv1.conv"]
    rows = {r["layer"]: r for r in pruned_w4["layers"]}
    assert all(r["sqz_bytes"] < r["bytes"] for r in rows.values() if r["density"] < 1)
    from pathlib import Path

    assert Path(pruned_w4["files"]["sqz"]).stat().st_size < 0.8 * Path(w4["files"]["sqz"]).stat().st_size
    by_what = {r["what"]: r for r in pruned_w4["rows"]}
    assert by_what["low-bit .sqz (PyTorch)"]["top1"] == by_what["fake-quant model (PyTorch)"]["top1"]
    assert pruned_w4["parity"]["max_abs_logit_diff"] <= 0.25 and pruned_w4["parity"]["top1_agreement_pct"] >= 99.0


def test_sparse_layers_decode_to_the_encoded_integers(tmp_path):
    """The sparse intq form against the dense one on the same integers: equal arrays, and a
    Huffman stream no longer than fixed-width codes of the same symbols."""
    from squeezenet.formats import sqz

    rng = np.random.default_rng(0)
    conv = torch.nn.Conv2d(16, 32, 3)
    mask = rng.random(conv.weight.shape) < 0.3
    q = np.where(mask, rng.integers(-8, 8, conv.weight.shape), 0).astype(np.int8)
    step = rng.random(32).astype(np.float32) + 0.1
    blob, rows = sqz.encode_model(conv, {}, "x", {}, quantized={"weight": (q, step, 4, mask)})
    (tmp_path / "m.sqz").write_bytes(blob)
    header, arrays = sqz.read_container(tmp_path / "m.sqz")
    assert header["version"] == 3
    np.testing.assert_array_equal(arrays["weight"], q.astype(np.float32) * step.reshape(-1, 1, 1, 1))
    row = next(r for r in rows if r["layer"] == "weight")
    assert row["bytes_after_huffman"] <= row["bytes_before_huffman"] < 4 * q.size
    assert row["density"] == pytest.approx(mask.mean())


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_distillation_loss_is_hintons_kl_divergence(temperature):
    """QAT's loss against the closed form: T^2 * mean over images of sum_k p_k (log p_k - log q_k)
    with p = softmax(teacher / T), q = softmax(student / T); its gradient in the student's
    logits is T (q - p) / N; it is 0 when the student already equals the teacher."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=g, dtype=torch.float64)
    student = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = torch.nn.Linear(5, 5).double()
    from squeezenet.train import distillation_loss

    loss = distillation_loss(teacher, temperature)
    with torch.no_grad():
        t = teacher(x).numpy()
    s, T = student.detach().numpy(), temperature

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    p, q = softmax(t / T), softmax(s / T)
    value = loss(student, torch.zeros(6, dtype=torch.long), x)
    assert value.item() == pytest.approx(T * T * np.mean(np.sum(p * (np.log(p) - np.log(q)), 1)), rel=1e-6)  # the teacher is read in fp32
    value.backward()
    np.testing.assert_allclose(student.grad.numpy(), T * (q - p) / 6, rtol=1e-5, atol=1e-9)
    assert loss(teacher(x).detach(), None, x).item() == pytest.approx(0.0, abs=1e-6)
    assert not any(w.requires_grad for w in teacher.parameters())  # the teacher is not trained


@pytest.mark.parametrize("args, needle", [
    (["--weight-bits", "3"], "invalid choice"),
    (["--weight-bits", "4", "--size-budget", "10"], "add --weight-bits mixed"),
    (["--qat-epochs", "1"], "add --weight-bits"),
    (["--no-distill"], "add --weight-bits"),
    (["--weight-bits", "4", "--no-distill"], "add --qat-epochs"),
    (["--weight-bits", "mixed", "--size-budget", "10", "--max-drop", "1"], "not both"),
    (["--weight-bits", "4", "--sparsity", "1.5"], "--sparsity must be 'paper'"),
    (["--weight-bits", "4", "--sparsity", "most"], "--sparsity must be 'paper'"),
    (["--weight-bits", "mixed", "--sparsity", "paper"], "uniform width"),
    (["--sparsity", "paper"], "add --weight-bits"),
    (["--weight-bits", "4", "--rounding", "up"], "invalid choice"),
    (["--weight-bits", "4", "--adaround-iters", "0"], "--adaround-iters"),
    (["--weight-bits", "4", "--rounding", "nearest", "--adaround-iters", "50"], "add --rounding adaround"),
    (["--weight-bits", "8", "--adaround-iters", "50"], "auto learns rounding only without --qat-epochs and below 8"),
    (["--weight-bits", "4", "--qat-epochs", "1", "--adaround-iters", "50"], "add --rounding adaround"),
    (["--rounding", "adaround"], "add --weight-bits"),
    (["--rounding", "nearest"], "add --weight-bits"),
    (["--adaround-iters", "50"], "add --weight-bits"),
    (["--seed", "1"], "add --weight-bits"),
    (["--weight-bits", "4", "--seed", "-1"], "--seed"),
    # flags of the other mode were silently ignored before session 19
    (["--lr", "0.0005"], "--lr is for low-bit files: add --weight-bits"),
    (["--batch-size", "64", "--weight-clip", "mse"], "--weight-clip, --batch-size are for low-bit files"),
    (["--act-bits", "4"], "--act-bits is for low-bit files"),
    (["--weight-bits", "4", "--backends", "ort-int8"], "--backends chooses int8/fp16 files"),
])
def test_bad_low_bit_flags_are_one_line(tiny_run, tmp_path, args, needle):
    code, _, err = run_cli("quantize", "-c", tiny_run / "best.pt", "--out", tmp_path / "q", *args)
    assert_one_line(code, err, needle)


@pytest.mark.parametrize("bits, qat, expected", [
    ("4", 0.0, "adaround"), ("2", 0.0, "adaround"), ("mixed", 0.0, "adaround"),  # post-training below 8 bits
    ("8", 0.0, "nearest"),  # 8-bit weights lose nothing measurable to nearest rounding
    ("4", 1.0, "nearest"), ("mixed", 0.5, "nearest"),  # QAT learns the weights and steps after it
])
def test_rounding_auto_learns_rounding_only_for_post_training_low_bits(bits, qat, expected):
    from squeezenet.compression import lowbit as lb
    from squeezenet.deploy.lowbit import LowBitSettings

    s = LowBitSettings(bits, 8, qat).resolved()
    iters = lb.ADAROUND_ITERS if expected == "adaround" else None
    assert (s.rounding, s.rounding_chosen_by, s.adaround_iters) == (expected, "auto", iters)
    assert s.tag().endswith("_ada") == (expected == "adaround")
    assert s.resolved() == s  # resolving twice changes nothing (the record still says auto chose it)
    given = LowBitSettings(bits, 8, qat, rounding="nearest").resolved()
    assert (given.rounding, given.rounding_chosen_by) == ("nearest", "flag")


def test_low_bits_refuse_a_model_that_is_not_a_squeezenet(tmp_path):
    from squeezenet.formats.checkpoint import make_checkpoint
    from squeezenet.spec import DataSpec

    m = create_model("shufflenet_v1_g3_w0.25", num_classes=2, in_chans=1)
    spec = DataSpec("fashion-mnist", ["a", "b"], 1, 28, [0.5], [0.25], True, 2).to_dict()
    torch.save(make_checkpoint(m, "shufflenet_v1_g3_w0.25", spec), tmp_path / "s.pt")
    code, _, err = run_cli("quantize", "-c", tmp_path / "s.pt", "--weight-bits", "4", "--out", tmp_path / "q")
    assert_one_line(code, err, "'shufflenet_v1_g3_w0.25' is not a SqueezeNet")
    assert not (tmp_path / "q").exists()


def _edited(path, tmp_path, edit):
    """A copy of the container with ``edit(tensor headers)`` applied and the checksum redone
    (what a careless editor would write), so only the field checks can catch it."""
    import hashlib
    import struct
    import zlib

    from squeezenet.formats.sqz import read_raw

    header, payload = read_raw(path)
    edit(header["tensors"])
    h = zlib.compress(json.dumps(header).encode())
    body = b"SQZ\x00" + struct.pack("<HI", header["version"], len(h)) + h + payload
    bad = tmp_path / "bad.sqz"
    bad.write_bytes(body + hashlib.sha256(body).digest())
    return bad


def _set_bits(tensors):
    next(t for t in tensors if t["kind"] == "intq")["bits"] = 3


def _one_more_integer(tensors):  # one integer more than the gaps place
    next(t for t in tensors if t["kind"] == "intq" and "v_stream" in t)["v_count"] += 1


@pytest.mark.parametrize("which, edit, needle", [("w4", _set_bits, "is not 2, 4 or 8"),
                                                 ("pruned_w4", _one_more_integer, "does not decode")])
def test_an_edited_low_bit_file_is_refused(which, edit, needle, request, tmp_path):
    bad = _edited(request.getfixturevalue(which)["files"]["sqz"], tmp_path, edit)
    code, _, err = run_cli("eval", "-c", bad, "--data", "fashion-mnist")
    assert_one_line(code, err, needle)


def test_output_aware_steps_are_the_brute_force_choice():
    """calibrate_weight_steps against a brute force through F.conv2d: for each output channel,
    the candidate step whose quantized weights change that channel's conv output least."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 5, 3, stride=2))
    q = lb.quantize_model(net, {"0": 8, "2": 2}, None)
    x = [torch.randn(2, 3, 6, 6)]  # few patches: every one is used
    lb.calibrate_weight_steps(q, net, x, rows=10_000)
    inp = F.relu(net[0](x[0]))
    w = net[2].weight.detach()
    amax = w.reshape(5, -1).abs().amax(1)

    def output_error(step):  # per output channel, through torch's own convolution; Q_P = 1, Q_N = 2 at 2 bits
        s = step.view(-1, 1, 1, 1)
        return ((F.conv2d(inp, torch.clamp(torch.round(w / s), -2, 1) * s, stride=2)
                 - F.conv2d(inp, w, stride=2)) ** 2).sum((0, 2, 3))

    least = torch.stack([output_error(r * amax) for r in torch.linspace(0.2, 1.0, 40)]).min(0).values
    # the chosen step reaches the brute-force least error (to float rounding, so the test does not
    # hinge on which of two near-equal candidates a CPU's summation order prefers)
    torch.testing.assert_close(output_error(q[2].w_step.detach()), least, rtol=1e-4, atol=0)
    assert (output_error(lb.mse_step(w, 2, True, True)) > least * 1.01).any()  # the weight-MSE step is worse here


def test_activation_steps_are_calibrated_on_the_float_inputs():
    """Every activation step is the MSE step of that conv's input in the network with
    quantized weights and float activations, built here without activation quantizers
    at all (a calibration that quantized while observing would see other inputs downstream)."""
    torch.manual_seed(0)
    folded = lb.fold_batchnorm(create_model(TINY, num_classes=10, in_chans=1).eval(), TINY)
    plain = lb.quantize_model(folded, lb.uniform_bits(folded, 8), None)
    batches = [torch.randn(16, 1, 28, 28)]
    seen = {}
    def keep(mod, inp, n):
        seen.setdefault(n, inp[0].flatten()[::7].clone())  # returns None: the input is left as it is

    hooks = [m.register_forward_pre_hook(lambda mod, inp, n=n: keep(mod, inp, n))
             for n, m in plain.named_modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        plain(batches[0])
    for h in hooks:
        h.remove()
    q = lb.quantize_model(folded, lb.uniform_bits(folded, 8), 8)
    lb.calibrate_activations(q, batches)
    for n, m in q.named_modules():
        if isinstance(m, lb.QConv2d) and m.a_step is not None:
            assert m.a_step.item() == pytest.approx(lb.mse_step(seen[n], 8, False, False).item(), rel=1e-6), n
            assert not m.observing


def _output_error(conv_out, w_q, w, x):
    """||ReLU(conv(x, w_q)) - ReLU(conv(x, w))||^2 through torch's own convolution."""
    import torch.nn.functional as F

    return ((F.relu(conv_out(x, w_q)) - F.relu(conv_out(x, w))) ** 2).sum().item()


@pytest.mark.parametrize("bits", [2, 4])
def test_adaround_rounds_up_or_down_and_beats_nearest(bits):
    """AdaRound (Nagel et al. 2020) against round-to-nearest through F.conv2d: every learned
    integer is floor or ceil of w/s (the paper's feasible set), pruned weights stay 0, and
    the layer's post-ReLU output error is lower than nearest rounding's on the calibration
    images and on images it never saw (the paper's claim, not a property of our code)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, padding=1),
                              torch.nn.ReLU())
    mask = torch.rand_like(net[2].weight) > 0.3
    mix = torch.randn(3, 3)  # correlated input channels, as images have
    calib = [torch.einsum("nchw,cd->ndhw", torch.randn(32, 3, 10, 10), mix) for _ in range(2)]
    unseen = torch.einsum("nchw,cd->ndhw", torch.randn(64, 3, 10, 10), mix)
    q = lb.quantize_model(net, {"0": 8, "2": bits}, None, {"2": mask})
    step = q[2].w_step.detach().view(-1, 1, 1, 1)
    w = net[2].weight.detach()
    qn, qp = lb.qrange(bits)
    nearest = torch.clamp(torch.round(w * mask / step), -qn, qp) * step
    lb.adaround(q, net, calib, iters=800)
    ints = torch.from_numpy(q[2].integers()[0]).float()
    ratio = w * mask / step
    assert bool(((ints == torch.floor(ratio)) | (ints == torch.floor(ratio) + 1) | (ints == -qn) | (ints == qp)).all())
    assert bool((ints[~mask] == 0).all())
    learned = ints * step

    def conv2(inp, wt):  # the second conv on the first layer's float output
        return F.conv2d(F.relu(net[0](inp)), wt, net[2].bias, padding=1)

    with torch.no_grad():
        for x in (torch.cat(calib), unseen):
            # the first conv is 8-bit in q: the reference here is the float network's own input, so this
            # measures the second layer's rounding alone
            assert _output_error(conv2, learned, w, x) < 0.9 * _output_error(conv2, nearest, w, x)
    assert (ints != torch.clamp(torch.round(ratio), -qn, qp)).any()  # it did change some rounding


def test_max_drop_scores_on_images_the_calibration_never_saw():
    """--max-drop's yardstick images follow the calibration images in the seed's order, so
    none of them is a calibration image; with too few training images it says so in one line."""
    from types import SimpleNamespace

    from squeezenet.data import TensorDataset
    from squeezenet.deploy.lowbit import LowBitSettings, held_out_batches
    from squeezenet.deploy.quantize import calibration_batches
    from squeezenet.errors import SqueezeNetError
    from squeezenet.spec import DataSpec

    n = 3000  # image i carries i in its first two pixels (i // 256, i % 256)
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = torch.arange(n) // 256, torch.arange(n) % 256
    train = TensorDataset(images, torch.zeros(n, dtype=torch.int64), ["a"])
    spec = DataSpec("ids", ["a"], 1, 4, [0.0], [1.0])

    def ids(batches):
        return {int(round(float(b[i, 0, 0, 0]) * 255)) * 256 + int(round(float(b[i, 0, 0, 1]) * 255))
                for b in batches for i in range(len(b))}

    s = LowBitSettings(weight_bits="mixed", max_drop=1.0, calib_size=512, seed=3)
    calib = ids(calibration_batches(train, spec, s.calib_size, seed=s.seed))
    held = ids(b.numpy() for b in held_out_batches(SimpleNamespace(train=train, spec=spec, test=None), s))
    assert len(calib) == 512 and len(held) == 2000 and not calib & held
    small = SimpleNamespace(train=train.subset(512), spec=spec, test=None)
    with pytest.raises(SqueezeNetError, match="lower --calib-size"):
        held_out_batches(small, s)


def test_max_drop_keeps_the_smallest_budget_within_the_drop(tiny_run, fmnist_dir, tmp_path):
    """--max-drop 100 admits every candidate budget, so the file is the smallest one
    (1/16 of the fp32 weight bytes); each candidate is listed with its disagreement."""
    from squeezenet.deploy.lowbit import MAX_DROP_BUDGETS

    r, _ = _quantize(tiny_run, fmnist_dir, tmp_path / "md", "--weight-bits", "mixed", "--max-drop", "100",
                     "--calib-size", "64", "--rounding", "nearest")
    fp32 = sum(4 * layer["params"] for layer in r["layers"])
    cands = r["max_drop_candidates"]
    assert [c["fraction"] for c in cands] == [f"1/{k}" for k in MAX_DROP_BUDGETS[:len(cands)]]
    assert all(0 <= c["disagreement_pct"] <= 100 for c in cands)
    assert r["budget_bytes"] == cands[-1]["budget_bytes"] == fp32 // int(cands[-1]["fraction"][2:])
    assert sum(layer["bytes"] for layer in r["layers"]) <= r["budget_bytes"]
    assert "--max-drop candidates" in (tmp_path / "md" / f"lowbit_report_{r['tag']}.md").read_text()
