"""Where does post-training low-bit quantization lose accuracy, and what do output-aware
weight steps win back? One model, one run, fake-quant models in PyTorch.

Prints the top-1 on the model's test split of: the float model; W8A32, W4A32, W8A8, W4A8
(MSE clipping); each conv but the edges alone at 4 bits (the rest at 8, float activations);
and W4A8, W4A4, W2A8 with MSE clipping against output-aware steps
(``compression.lowbit.calibrate_weight_steps``), 512 calibration images each; then the
same three with output-aware steps rounded to nearest against learned rounding
(AdaRound, ``compression.lowbit.adaround``), with the seconds AdaRound took.

Usage: python benchmarks/probes/lowbit_ptq_probe.py RUN [--data DIR] [--parts clip,layers,adaround]
"""

import argparse
import time

import torch

from squeezenet.compression import lowbit as lb
from squeezenet.data import load_data_for
from squeezenet.deploy.quantize import calibration_batches
from squeezenet.formats.open import open_model
from squeezenet.metrics import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run")
    ap.add_argument("--data", help="the data the model was trained on (default: what it recorded)")
    ap.add_argument("--parts", default="clip,layers,adaround", help="which comparisons to run")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    mf = open_model(a.run, command="quantize")
    splits = load_data_for(mf.need_spec(), a.data)
    tf = getattr(splits.test, "transform", None)
    calib = [torch.from_numpy(x) for x in calibration_batches(splits.train, splits.spec, 512, eval_transform=tf)]
    model = mf.model.eval()
    plain = lb.fold_batchnorm(model, mf.name)

    def top1(m):
        with torch.no_grad():
            return evaluate(m.eval(), splits.test, splits.spec)["top1"]

    def quantized(bits, act, output_aware=False):
        q = lb.quantize_model(plain, bits, act)
        if output_aware:
            lb.calibrate_weight_steps(q, plain, calib)
        lb.calibrate_activations(q, calib)
        return q

    print(f"float {top1(model):.2f}")
    if "clip" in parts:
        for wb, ab in [(8, None), (4, None), (8, 8), (4, 8)]:
            print(f"W{wb}A{ab or 32} (MSE clipping) {top1(quantized(lb.uniform_bits(plain, wb), ab)):.2f}", flush=True)
    if "layers" in parts:
        for name in lb.conv_names(plain)[1:-1]:
            bits = {**lb.uniform_bits(plain, 8), name: 4}
            print(f"only {name} at 4 bits: {top1(quantized(bits, None)):.2f}", flush=True)
    if "clip" in parts:
        for wb, ab in [(4, 8), (4, 4), (2, 8)]:
            bits = lb.uniform_bits(plain, wb)
            print(f"W{wb}A{ab}: MSE clipping {top1(quantized(bits, ab)):.2f}, output-aware "
                  f"{top1(quantized(bits, ab, True)):.2f}", flush=True)
    if "adaround" in parts:
        for wb, ab in [(4, 8), (4, 4), (2, 8)]:
            q = quantized(lb.uniform_bits(plain, wb), ab, True)
            near = top1(q)
            t = time.perf_counter()
            lb.adaround(q, plain, calib)
            print(f"W{wb}A{ab}: output-aware nearest {near:.2f}, AdaRound {top1(q):.2f} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
