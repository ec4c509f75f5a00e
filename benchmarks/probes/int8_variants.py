"""Which int8 flavour of ONNX Runtime static quantization is fastest at batch 1?

QDQ vs QOperator, uint8/int8 vs uint8/uint8, per-channel vs per-tensor, and leaving
conv1 / conv10 in fp32, for squeezenet1_1 at 224 px with 2 intra-op threads; the fp32
ORT model is timed in the same run. Usage: python benchmarks/probes/int8_variants.py
"""

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from squeezenet import create_model
from squeezenet.deploy.bench import time_calls
from squeezenet.deploy.export import export_model_to_onnx
from squeezenet.deploy.onnx_tools import Calibration


def main():
    torch.manual_seed(0)
    m = create_model("squeezenet1_1").eval()
    shape = (3, 224, 224)
    tmp = Path(tempfile.mkdtemp())
    p = export_model_to_onnx(m, tmp / "m.onnx", shape, dynamic_batch=True)
    pre = tmp / "pre.onnx"
    quant_pre_process(str(p), str(pre), skip_symbolic_shape=True)
    calib = [np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)]
    x = np.random.default_rng(1).standard_normal((1, *shape)).astype(np.float32)

    def ms(path):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        n = s.get_inputs()[0].name
        return 1000 * float(np.median(time_calls(lambda: s.run(None, {n: x}), 10, 60, 1.0)))

    def q(name, **kw):
        out = tmp / (name.replace("/", "_").replace(" ", "_").replace(",", "") + ".onnx")
        args = dict(quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
        args.update(kw)
        quantize_static(str(pre), str(out), Calibration(calib, "input"), **args)
        print(f"{name:40s} {ms(out):6.2f} ms", flush=True)

    print(f"{'fp32':40s} {ms(p):6.2f} ms")
    for fmt in (QuantFormat.QDQ, QuantFormat.QOperator):
        for wt in (QuantType.QInt8, QuantType.QUInt8):
            for pc in (True, False):
                q(f"{fmt.name} u8/{'s8' if wt == QuantType.QInt8 else 'u8'} {'per-channel' if pc else 'per-tensor'}",
                  quant_format=fmt, weight_type=wt, per_channel=pc)
    convs = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type == "Conv"]
    q("QDQ u8/s8 per-channel, conv1 in fp32", nodes_to_exclude=[convs[0]])
    q("QDQ u8/s8 per-channel, conv1+conv10 in fp32", nodes_to_exclude=[convs[0], convs[-1]])


if __name__ == "__main__":
    main()
