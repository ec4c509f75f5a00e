"""What the int8 graph edits of `quantize_onnx_int8(tune=True)` and other tweaks buy at batch 1.

squeezenet1_1 at 224 px, ONNX Runtime with 2 intra-op threads, eager PyTorch fp32 timed in
the same run (3 alternating rounds). Variants: plain QDQ (u8 activations, s8 per-channel
weights); + only conv1's input channels zero-padded 3 -> 4; all edits (padding, Concat
inputs sharing the Concat's scale, short names: what `quantize` and `bench` ship); then, on
top of that, other
things one might try: ORT's set_denormal_as_zero, dynamic_block_base, thread affinity, 3
threads on the 2 cores, per-tensor weights, int8 (s8) activations. Also prints file sizes.

With --profile it also prints ONNX Runtime's own per-operator kernel time (enable_profiling,
mean over 100 runs) for the plain, padded and shipped int8 models and for fp32.

Usage: python benchmarks/probes/int8_tuning.py [--rounds 3] [--profile]
"""

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from squeezenet import create_model
from squeezenet.deploy.bench import time_calls
from squeezenet.deploy.export import export_model_to_onnx
from squeezenet.deploy.onnx_tools import quantize_onnx_int8


def profile_ops(path, x, tmp, runs: int = 100) -> str:
    """Mean kernel microseconds per inference, by operator type, as one line."""
    by_op = profile_ops_us(path, x, tmp, runs)
    ops = ", ".join(f"{k} {v:.0f}" for k, v in sorted(by_op.items(), key=lambda kv: -kv[1]))
    return f"total {sum(by_op.values()):.0f} us: {ops}"


def profile_ops_us(path, x, tmp, runs: int = 100) -> dict:
    """Mean kernel microseconds per inference, by operator type."""
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 2, 1
    so.enable_profiling, so.profile_file_prefix = True, str(tmp / "prof")
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        s.run(None, {"input": x})
    events = [e for e in json.load(open(s.end_profiling()))
              if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    by_op = defaultdict(float)
    for e in events:
        by_op[e["args"]["op_name"]] += e["dur"] / runs
    return dict(by_op)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print ORT per-operator kernel times")
    a = ap.parse_args()
    torch.manual_seed(0)
    model = create_model("squeezenet1_1").eval()
    shape = (3, 224, 224)
    tmp = Path(tempfile.mkdtemp())
    fp32 = export_model_to_onnx(model, tmp / "fp32.onnx", shape, dynamic_batch=True)
    calib = [np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)]

    plain = quantize_onnx_int8(fp32, tmp / "plain.onnx", calib, tune=False)
    padded = quantize_onnx_int8(fp32, tmp / "padded.onnx", calib, tune=False, pad_input=True)
    tuned = quantize_onnx_int8(fp32, tmp / "tuned.onnx", calib)
    per_tensor = quantize_onnx_int8(fp32, tmp / "per_tensor.onnx", calib, per_channel=False)
    s8 = quantize_onnx_int8(fp32, tmp / "s8.onnx", calib, activations="s8")
    variants = {"ort fp32": (fp32, {}), "int8 plain QDQ": (plain, {}), "int8 + conv1 padded to 4 ch": (padded, {}),
                "int8 all edits (shipped)": (tuned, {}),
                "  + denormal-as-zero": (tuned, {"session.set_denormal_as_zero": "1"}),
                "  + dynamic_block_base=4": (tuned, {"session.dynamic_block_base": "4"}),
                "  + thread affinity": (tuned, {"session.intra_op_thread_affinities": "2"}),
                "  + 3 threads": (tuned, {"threads": "3"}),
                "  per-tensor weights": (per_tensor, {}),
                "  s8 activations": (s8, {})}
    x = np.random.default_rng(1).standard_normal((1, *shape)).astype(np.float32)
    if a.profile:
        for name in ("ort fp32", "int8 plain QDQ", "int8 + conv1 padded to 4 ch",
                     "int8 all edits (shipped)"):
            print(f"{name}: {profile_ops(variants[name][0], x, tmp)}")
    sessions = {}
    for name, (path, cfg) in variants.items():
        so = ort.SessionOptions()
        cfg = dict(cfg)
        so.intra_op_num_threads, so.inter_op_num_threads = int(cfg.pop("threads", 2)), 1
        for k, v in cfg.items():
            so.add_session_config_entry(k, v)
        sessions[name] = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    times = defaultdict(list)
    xt = torch.from_numpy(x)
    for _ in range(a.rounds):
        with torch.no_grad():
            times["eager fp32"] += time_calls(lambda: model(xt), 5, 30, 1.0)
        for name, s in sessions.items():
            times[name] += time_calls(lambda: s.run(None, {"input": x}), 10, 60, 1.0)
    eager = float(np.median(times["eager fp32"]))
    print(f"{'variant':50s} {'median ms':>9s} {'vs eager':>9s} {'file bytes':>11s}")
    for name, t in times.items():
        path = variants.get(name, (None,))[0]
        size = f"{Path(path).stat().st_size:,}" if path else "-"
        print(f"{name:50s} {1000 * float(np.median(t)):9.2f} {eager / float(np.median(t)):8.2f}x {size:>11s}")


if __name__ == "__main__":
    main()
