"""Where does int8 lose to its GEMM on this CPU? (issue 19: int8 speed without VNNI)

Three ratios of int8 against fp32, all measured in one run, 2 intra-op threads, alternated rounds:

1. ONNX Runtime's own GEMMs on the issue's conv-shaped problem (M 3136 = 56 x 56 pixels, K 576 = 64 x 3 x 3,
   N 128): fp32 `MatMul` against u8s8 `MatMulInteger` (uint8 activations, int8 weights, constant B). This is
   the most int8 can give a convolution here.
2. The convolutions of squeezenet1_1 at 224 px, batch 1: fp32 `Conv` (and the fused conv ops ORT makes of it)
   against int8 `QLinearConv`, from ONNX Runtime's profiler (kernel time per inference, mean over --runs).
3. The whole model at batch 1 (median wall time), fp32 file against the int8 file `squeezenet quantize` writes.

If (2) is close to (1), the integer kernels do what this CPU allows, and what (3) loses beyond (2) is the
operators around the convolutions (QuantizeLinear of the input, MaxPool, Concat, the head).

Usage: python benchmarks/probes/int8_gemm_probe.py [--rounds 7] [--runs 100]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from int8_tuning import profile_ops_us
from squeezenet import create_model
from squeezenet.deploy.bench import cpu_line, time_calls
from squeezenet.deploy.export import export_model_to_onnx
from squeezenet.deploy.onnx_tools import quantize_onnx_int8

M, K, N = 3136, 576, 128


def session(model_or_path):
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    so.log_severity_level = 3
    data = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def gemm_models():
    rng = np.random.default_rng(0)
    b32 = numpy_helper.from_array(rng.standard_normal((K, N)).astype(np.float32), "B")
    fp32 = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["A", "B"], ["Y"])], "fp32",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [M, K])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [M, N])], [b32]), opset_imports=[helper.make_opsetid("", 17)])
    b8 = numpy_helper.from_array(rng.integers(-64, 65, (K, N)).astype(np.int8), "B")
    zp = [numpy_helper.from_array(np.array(128, np.uint8), "a_zp"), numpy_helper.from_array(np.array(0, np.int8), "b_zp")]
    int8 = helper.make_model(helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B", "a_zp", "b_zp"], ["Y"])], "int8",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [M, K])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [M, N])], [b8, *zp]), opset_imports=[helper.make_opsetid("", 17)])
    a32 = rng.standard_normal((M, K)).astype(np.float32)
    a8 = rng.integers(0, 256, (M, K)).astype(np.uint8)
    return (session(fp32), {"A": a32}), (session(int8), {"A": a8})


def alternated(pairs: dict, rounds: int) -> dict:
    """Median ms of each (session, feed), over ``rounds`` alternated rounds of 20 calls."""
    times = {k: [] for k in pairs}
    for _ in range(rounds):
        for k, (sess, feed) in pairs.items():
            times[k].append(np.median(time_calls(lambda: sess.run(None, feed), 3, 20)))
    return {k: 1000 * float(np.median(v)) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=100, help="inferences per profile")
    a = ap.parse_args()
    print(cpu_line(), "; ONNX Runtime", ort.__version__, "; 2 threads")
    f, i = gemm_models()
    g = alternated({"fp32 MatMul": f, "u8s8 MatMulInteger": i}, a.rounds)
    gemm = g["fp32 MatMul"] / g["u8s8 MatMulInteger"]
    print(f"1. GEMM {M}x{K}x{N}: fp32 {g['fp32 MatMul']:.3f} ms, u8s8 {g['u8s8 MatMulInteger']:.3f} ms: "
          f"int8 {gemm:.2f}x fp32 ({2 * M * K * N / g['fp32 MatMul'] / 1e6:.0f} GFLOP/s fp32)")

    tmp = Path(tempfile.mkdtemp())
    shape = (3, 224, 224)
    p32 = export_model_to_onnx(create_model("squeezenet1_1").eval(), tmp / "fp32.onnx", shape, dynamic_batch=True)
    calib = [np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)]
    p8 = quantize_onnx_int8(p32, tmp / "int8.onnx", calib)
    x = np.random.default_rng(1).standard_normal((1, *shape)).astype(np.float32)
    ops32, ops8 = profile_ops_us(p32, x, tmp, a.runs), profile_ops_us(p8, x, tmp, a.runs)
    conv32 = sum(v for k, v in ops32.items() if "Conv" in k)
    conv8 = sum(v for k, v in ops8.items() if "Conv" in k)
    print(f"2. convolutions (kernel time per inference): fp32 {conv32:.0f} us of {sum(ops32.values()):.0f}, "
          f"int8 {conv8:.0f} us of {sum(ops8.values()):.0f}: int8 {conv32 / conv8:.2f}x fp32")
    for name, ops in (("fp32", ops32), ("int8", ops8)):
        print(f"   {name}: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])))
    w = alternated({"fp32": (session(p32), {"input": x}), "int8": (session(p8), {"input": x})}, a.rounds)
    t32, t8 = sum(ops32.values()), sum(ops8.values())
    print(f"   all kernels: int8 {t32 / t8:.2f}x fp32; outside the convolutions fp32 {t32 - conv32:.0f} us, "
          f"int8 {t8 - conv8:.0f} us")
    print(f"3. whole model, batch 1: fp32 {w['fp32']:.3f} ms, int8 {w['int8']:.3f} ms: int8 {w['fp32'] / w['int8']:.2f}x fp32")


if __name__ == "__main__":
    main()
