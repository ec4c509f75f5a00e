"""Which ONNX Runtime settings beat the defaults for batch-1 SqueezeNet on this CPU?

Times one fp32 and one int8 (QDQ, per-channel) export of the model under ORT's
defaults and under variations: intra-op threads, spinning, graph optimisation level,
execution mode. Eager PyTorch fp32 is measured in the same run as the baseline.
Usage: python benchmarks/probes/ort_settings.py [--model squeezenet1_1] [--input-size 224]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from squeezenet import create_model
from squeezenet.deploy.bench import time_calls
from squeezenet.deploy.export import export_model_to_onnx
from squeezenet.deploy.onnx_tools import quantize_onnx_int8


def med_ms(fn, repeats=60):
    return 1000 * float(np.median(time_calls(fn, 10, repeats, 1.0)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="squeezenet1_1")
    ap.add_argument("--input-size", type=int, default=224)
    a = ap.parse_args()
    torch.manual_seed(0)
    m = create_model(a.model).eval()
    shape = (3, a.input_size, a.input_size)
    x = torch.randn(1, *shape)
    with torch.no_grad():
        eager = med_ms(lambda: m(x))
    print(f"eager fp32: {eager:.2f} ms")
    tmp = Path(tempfile.mkdtemp())
    fp32 = export_model_to_onnx(m, tmp / "m.onnx", shape, dynamic_batch=True)
    calib = [np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)]
    int8 = quantize_onnx_int8(fp32, tmp / "q.onnx", calib)
    variants = {
        "defaults": {},
        "threads=1": dict(intra=1),
        "threads=2": dict(intra=2),
        "threads=2,no-spin": dict(intra=2, spin="0"),
        "threads=2,opt=extended": dict(intra=2, level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
        "threads=2,opt=basic": dict(intra=2, level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC),
    }
    xn = x.numpy()
    for label, path in (("fp32", fp32), ("int8", int8)):
        for name, v in variants.items():
            so = ort.SessionOptions()
            if "intra" in v:
                so.intra_op_num_threads = v["intra"]
                so.inter_op_num_threads = 1
            if "spin" in v:
                so.add_session_config_entry("session.intra_op.allow_spinning", v["spin"])
            if "level" in v:
                so.graph_optimization_level = v["level"]
            s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            name_in = s.get_inputs()[0].name
            t = med_ms(lambda: s.run(None, {name_in: xn}))
            print(f"ort {label} {name:24s}: {t:6.2f} ms  {eager / t:5.2f}x eager")


if __name__ == "__main__":
    main()
