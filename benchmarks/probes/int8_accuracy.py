"""Why `quantize` pads conv1's input channels: int8 top-1 of one checkpoint, per flavour.

On x86 CPUs without VNNI (this AVX2 machine), ONNX Runtime's u8s8 kernels add adjacent pairs
of uint8 x int8 products in saturating int16. This script quantizes the same checkpoint
(static QDQ, per-channel, MinMax on 512 training images) several ways and evaluates each on
the full test split: plain u8s8; u8s8 with reduce_range (7-bit weights: ORT's documented
fix); u8s8 with conv1's input channels zero-padded to 4; u8u8 (no int16 pairing); and what
`squeezenet quantize` ships (padding + shared concat scales + short names).

Usage: python benchmarks/probes/int8_accuracy.py [--checkpoint runs/demo/best.pt]
"""

import argparse
import tempfile
from pathlib import Path

from squeezenet.formats.checkpoint import load_checkpoint, model_from_checkpoint
from squeezenet.data import load_data
from squeezenet.deploy.export import export_model_to_onnx
from squeezenet.deploy.onnx_tools import quantize_onnx_int8
from squeezenet.deploy.quantize import calibration_batches, ort_logits_fn
from squeezenet.metrics import evaluate


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="runs/demo/best.pt")
    a = ap.parse_args()
    ck = load_checkpoint(a.checkpoint)
    splits = load_data(ck["data"]["name"])
    spec = splits.spec
    model = model_from_checkpoint(ck, len(spec.classes), spec.channels).eval()
    tmp = Path(tempfile.mkdtemp())
    shape = (spec.channels, spec.input_size, spec.input_size)
    fp32 = export_model_to_onnx(model, tmp / "fp32.onnx", shape, dynamic_batch=True)
    calib = calibration_batches(splits.train, spec, 512)
    variants = {
        "fp32 (ORT)": fp32,
        "u8s8 plain": quantize_onnx_int8(fp32, tmp / "plain.onnx", calib, tune=False),
        "u8s8 reduce_range": quantize_onnx_int8(fp32, tmp / "rr.onnx", calib, tune=False, reduce_range=True),
        "u8s8 conv1 padded to 4 channels": quantize_onnx_int8(fp32, tmp / "pad.onnx", calib, tune=False, pad_input=True),
        "u8u8": quantize_onnx_int8(fp32, tmp / "u8u8.onnx", calib, tune=False, weights="u8"),
        "shipped (padding + shared concat scales + short names)": quantize_onnx_int8(fp32, tmp / "shipped.onnx", calib),
    }
    print(f"checkpoint {a.checkpoint}: {ck['model_name']}, {len(splits.test)} test images")
    for name, path in variants.items():
        top1 = evaluate(None, splits.test, spec, predict_fn=ort_logits_fn(path))["top1"]
        print(f"{name:56s} top-1 {top1:6.2f}%")


if __name__ == "__main__":
    main()
