"""Where does post-training low-bit quantization lose accuracy, and what do output-aware
weight steps win back? One model, one run, fake-quant models in PyTorch.

Prints the top-1 on the model's test split of: the float model; W8A32, W4A32, W8A8, W4A8
(MSE clipping); each conv but the edges alone at 4 bits (the rest at 8, float activations);
and W4A8, W4A4, W2A8 with MSE clipping against output-aware steps
(``compression.lowbit.calibrate_weight_steps``), 512 calibration images each.

Usage: python benchmarks/probes/lowbit_ptq_probe.py RUN [--data DIR]
"""

import argparse

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
    a = ap.parse_args()
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
    for wb, ab in [(8, None), (4, None), (8, 8), (4, 8)]:
        print(f"W{wb}A{ab or 32} (MSE clipping) {top1(quantized(lb.uniform_bits(plain, wb), ab)):.2f}", flush=True)
    for name in lb.conv_names(plain)[1:-1]:
        bits = {**lb.uniform_bits(plain, 8), name: 4}
        print(f"only {name} at 4 bits: {top1(quantized(bits, None)):.2f}", flush=True)
    for wb, ab in [(4, 8), (4, 4), (2, 8)]:
        bits = lb.uniform_bits(plain, wb)
        print(f"W{wb}A{ab}: MSE clipping {top1(quantized(bits, ab)):.2f}, output-aware "
              f"{top1(quantized(bits, ab, True)):.2f}", flush=True)


if __name__ == "__main__":
    main()
