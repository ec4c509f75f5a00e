"""What each int8 flavour computes on this CPU: top-1 of one checkpoint, and whether ONNX Runtime's
integer kernels compute the file's own QDQ numbers.

On x86 CPUs without VNNI (AVX2; AVX-512 without `avx512_vnni`), ONNX Runtime's u8s8 kernels add
adjacent pairs of uint8 x int8 products in saturating int16 (`vpmaddubsw`): 255 x 127 x 2 = 64,770
does not fit in 32,767. Where a pair overflows, the kernel's sum is not the one the file's
QuantizeLinear/DequantizeLinear graph defines, and a CPU with VNNI (which adds in int32) computes
another answer from the same file. This script quantizes one checkpoint (static QDQ, per-channel,
MinMax on 512 training images) several ways and evaluates each on the test split twice:

- with ONNX Runtime's integer kernels (all graph optimisations, as our commands run it);
- with every graph optimisation off, so that each DequantizeLinear -> Conv -> QuantizeLinear runs in
  fp32: the file's own numbers, the same on every CPU (the reference).

It prints both top-1s, the images whose top-1 class differs between them, and the largest logit
difference. Flavours: plain u8s8; u8s8 with reduce_range (weights in [-64, 64]: 255 x 64 x 2 =
32,640, no pair can overflow; ONNX Runtime's documented fix); u8s8 with conv1's input channels
zero-padded to 4; u8u8; and what `squeezenet quantize` ships.

Then it times the shipped file before and after reduce_range (median ms at batch 1 and 32, alternated
rounds, 2 threads), and the same for squeezenet1_1 at 224 px (random weights, calibrated on 8 random
images) against its fp32 file at batch 1: the same integer kernels, so the same speed is expected.

Usage: python benchmarks/probes/int8_accuracy.py [--checkpoint runs/demo/best.pt] [--eval-size N] [--rounds 5]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from squeezenet.data import load_data
from squeezenet.deploy.bench import cpu_line, time_calls
from squeezenet.deploy.export import export_model_to_onnx
from squeezenet.deploy.onnx_tools import quantize_onnx_int8
from squeezenet.deploy.quantize import calibration_batches, ort_logits_fn
from squeezenet.formats.checkpoint import load_checkpoint, model_from_checkpoint
from squeezenet.formats.onnx import open_session
from squeezenet.metrics import evaluate


def reference_logits_fn(path):
    """The file's QDQ numbers in fp32: ONNX Runtime with every graph optimisation off."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda x: torch.from_numpy(sess.run(None, {name: x.numpy().astype(np.float32)})[0])


def scored(fn, test, spec):
    """(top-1 %, every logit in evaluation order)."""
    seen = []

    def record(x):
        y = fn(x)
        seen.append(y.numpy())
        return y

    return evaluate(None, test, spec, predict_fn=record)["top1"], np.concatenate(seen)


def median_ms(sess, x, seconds=0.5):
    name = sess.get_inputs()[0].name
    return 1000 * float(np.median(time_calls(lambda: sess.run(None, {name: x}), 5, 20, seconds)))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="runs/demo/best.pt")
    ap.add_argument("--eval-size", type=int, default=0, help="evaluate on this many test images (0: all)")
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    ck = load_checkpoint(a.checkpoint)
    splits = load_data(ck["data"]["name"])
    spec = splits.spec
    test = splits.test.spread(a.eval_size) if a.eval_size else splits.test
    model = model_from_checkpoint(ck, len(spec.classes), spec.channels).eval()
    tmp = Path(tempfile.mkdtemp())
    shape = (spec.channels, spec.input_size, spec.input_size)
    fp32 = export_model_to_onnx(model, tmp / "fp32.onnx", shape, dynamic_batch=True)
    calib = calibration_batches(splits.train, spec, 512)
    variants = {
        "u8s8 plain": quantize_onnx_int8(fp32, tmp / "plain.onnx", calib, tune=False, reduce_range=False),
        "u8s8 reduce_range": quantize_onnx_int8(fp32, tmp / "rr.onnx", calib, tune=False, reduce_range=True),
        "u8s8 conv1 padded to 4 channels": quantize_onnx_int8(fp32, tmp / "pad.onnx", calib, tune=False,
                                                              pad_input=True, reduce_range=False),
        "u8u8": quantize_onnx_int8(fp32, tmp / "u8u8.onnx", calib, tune=False, weights="u8", reduce_range=False),
        "shipped before (padding + shared concat scales, full range)": quantize_onnx_int8(
            fp32, tmp / "shipped_full.onnx", calib, reduce_range=False),
        "shipped now (the same, reduce_range)": quantize_onnx_int8(fp32, tmp / "shipped.onnx", calib),
    }
    print(cpu_line())
    fp32_top1 = evaluate(None, test, spec, predict_fn=ort_logits_fn(fp32))["top1"]
    print(f"checkpoint {a.checkpoint}: {ck['model_name']}, {len(test)} test images; fp32 (ORT) top-1 {fp32_top1:.2f}%")
    print(f"{'flavour':60s} {'kernels':>8s} {'QDQ ref':>8s} {'differ':>7s} {'max |dlogit|':>12s}")
    for name, path in variants.items():
        (top_k, k), (top_r, r) = scored(ort_logits_fn(path), test, spec), scored(reference_logits_fn(path), test, spec)
        print(f"{name:60s} {top_k:7.2f}% {top_r:7.2f}% {int((k.argmax(1) != r.argmax(1)).sum()):7d} "
              f"{np.abs(k - r).max():12.4f}")
    latency(variants["shipped before (padding + shared concat scales, full range)"],
            variants["shipped now (the same, reduce_range)"], shape, a.rounds)
    imagenet_latency(a.rounds, tmp)


def latency(before, after, shape, rounds):
    sessions = {"before": open_session(before, threads=2), "now": open_session(after, threads=2)}
    for b in (1, 32):
        x = np.random.default_rng(0).standard_normal((b, *shape)).astype(np.float32)
        t = {k: [] for k in sessions}
        for _ in range(rounds):
            for k, sess in sessions.items():
                t[k].append(median_ms(sess, x))
        mb, mn = np.median(t["before"]), np.median(t["now"])
        print(f"batch {b}: shipped before {mb:.3f} ms, now {mn:.3f} ms, now / before {mn / mb:.2f}x")


def imagenet_latency(rounds, tmp):
    from squeezenet import create_model

    p = export_model_to_onnx(create_model("squeezenet1_1").eval(), tmp / "s11.onnx", (3, 224, 224), dynamic_batch=True)
    calib = [np.random.default_rng(0).standard_normal((8, 3, 224, 224)).astype(np.float32)]
    files = {"fp32": p, "int8 full range (before)": quantize_onnx_int8(p, tmp / "s11_full.onnx", calib, reduce_range=False),
             "int8 reduce_range (now)": quantize_onnx_int8(p, tmp / "s11_rr.onnx", calib)}
    sessions = {k: open_session(v, threads=2) for k, v in files.items()}
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    t = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, sess in sessions.items():
            t[k].append(median_ms(sess, x))
    base = np.median(t["fp32"])
    for k in sessions:
        print(f"squeezenet1_1 224 px batch 1, {k}: {np.median(t[k]):.3f} ms, {base / np.median(t[k]):.2f}x fp32")


if __name__ == "__main__":
    main()
