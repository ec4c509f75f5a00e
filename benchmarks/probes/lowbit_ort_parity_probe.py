"""Probe: does ONNX Runtime compute a low-bit file's own numbers, and what does it cost?

    python benchmarks/probes/lowbit_ort_parity_probe.py MODEL.sqz MODEL.onnx [--images 64] [--rounds 5]

MODEL.onnx is the file `squeezenet quantize --weight-bits` wrote beside MODEL.sqz. The reference is the
.sqz rebuilt in PyTorch (the fake-quant numbers). Prints the mean and max |logit difference| on random
images for ORT sessions on the file at each graph-optimisation level, then for the session our commands
open (INT4/INT2 weights folded to fp32 first) with and without ORT's WeightBiasQuantization pass, and the
latency of those two at batch 1 and 32 (alternated over --rounds rounds, 2 threads; median ms).
"""

import argparse
import time

import numpy as np
import torch

from squeezenet.deploy.bench import cpu_line
from squeezenet.formats.onnx import dequantize_low_bit_weights, read_onnx, session_options
from squeezenet.formats.open import open_model


def _session(data, level=None, disabled=()):
    import onnxruntime as ort

    so = session_options(2)
    if level:
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"], disabled_optimizers=list(disabled))


def _ms(sess, x, seconds=0.4):
    for _ in range(5):
        sess.run(None, {"input": x})
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < seconds:
        sess.run(None, {"input": x})
        n += 1
    return (time.perf_counter() - t) / n * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sqz")
    ap.add_argument("onnx")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    m = open_model(a.sqz)
    x = np.random.default_rng(0).standard_normal((a.images, m.in_chans, m.input_size, m.input_size)).astype(np.float32)
    with torch.no_grad():
        ref = m.model(torch.from_numpy(x)).numpy()
    raw = read_onnx(a.onnx, False)
    folded = dequantize_low_bit_weights(raw)
    print(cpu_line(), f"; {a.images} random images; against the .sqz in PyTorch")
    cases = [(f"file, {lvl}", _session(raw, lvl)) for lvl in ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_ALL")]
    cases += [("folded, WeightBiasQuantization on", _session(folded)),
              ("folded, WeightBiasQuantization off", _session(folded, disabled=["WeightBiasQuantization"]))]
    for name, sess in cases:
        out = sess.run(None, {"input": x})[0]
        d = np.abs(out - ref)
        print(f"{name}: mean |logit diff| {d.mean():.2e}, max {d.max():.2e}, same top-1 "
              f"{100 * (out.argmax(1) == ref.argmax(1)).mean():.1f}%")
    on, off = cases[-2][1], cases[-1][1]
    for b in (1, 32):
        xb = x[:1].repeat(b, 0)
        t = {"on": [], "off": []}
        for _ in range(a.rounds):
            t["on"].append(_ms(on, xb))
            t["off"].append(_ms(off, xb))
        mon, moff = np.median(t["on"]), np.median(t["off"])
        print(f"batch {b}: pass on {mon:.3f} ms, off {moff:.3f} ms, off / on {moff / mon:.2f}x")


if __name__ == "__main__":
    main()
