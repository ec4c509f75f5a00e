"""Does another inference engine beat ONNX Runtime at batch 1? OpenVINO vs ORT, same run.

squeezenet1_1 at 224 px, batch 1, 2 threads. The same fp32 and int8 .onnx files (the int8
one is what `bench`'s ort-int8 backend builds: QDQ, per-channel weights, this project's
graph edits) are run by ONNX Runtime (2 intra-op threads) and by OpenVINO's CPU plugin
(PERFORMANCE_HINT=LATENCY, INFERENCE_NUM_THREADS=2; OpenVINO reads QDQ models and runs the
convolutions in int8). Eager PyTorch fp32 is timed in the same run, in alternating rounds.

OpenVINO is not a dependency of this project: `pip install openvino` first.

Usage: python benchmarks/probes/openvino_probe.py [--rounds 3] [--repeats 20] [--model squeezenet1_1]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from squeezenet.deploy.bench import make_runner, machine_tag, time_calls
from squeezenet.deploy.export import load_model_and_spec


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="squeezenet1_1")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    try:
        import openvino as ov
    except ImportError:
        raise SystemExit("openvino is not installed: pip install openvino")
    torch.set_num_threads(2)
    model, label, shape, _ = load_model_and_spec(a.model, None, None)
    model.eval()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        fns = {b: make_runner(b, model, shape, 1, tmp, 2) for b in ("eager", "ort-tuned", "ort-int8")}
        core = ov.Core()
        x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
        for name, path in (("openvino fp32", tmp / "model_fp32.onnx"), ("openvino int8", tmp / "model_int8.onnx")):
            req = core.compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                        "INFERENCE_NUM_THREADS": 2}).create_infer_request()
            fns[name] = lambda req=req: req.infer({0: x})
        times = {b: [] for b in fns}
        for _ in range(a.rounds):
            for b, fn in fns.items():
                times[b] += time_calls(fn, 5, a.repeats, 0.3)
    print(f"{label} @ {shape[1]} px, batch 1, {machine_tag()}, torch {torch.__version__}, openvino {ov.__version__}")
    base = float(np.median(times["eager"]))
    for b, t in times.items():
        med = float(np.median(t))
        print(f"{b:16s} {med * 1e3:7.2f} ms  (p10-p90 {np.percentile(t, 10) * 1e3:.2f}-{np.percentile(t, 90) * 1e3:.2f})"
              f"  {base / med:5.2f}x eager")


if __name__ == "__main__":
    main()
