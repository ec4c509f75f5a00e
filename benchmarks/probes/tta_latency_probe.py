"""Probe: what `export --tta` costs at inference, in ONNX Runtime on this CPU.

    python benchmarks/probes/tta_latency_probe.py PLAIN.onnx TTA.onnx [TTA2.onnx ...] [--threads 2] [--rounds 5]

The files come from `squeezenet export` of the same checkpoint, without and with `--tta flip`
or `--tta flip-shift` (exported with --dynamic-batch). Times one ORT session per file at batch
1 and 32, the files alternated for --rounds rounds (so drift hits all), and prints the median
latency of each and the ratio to the plain file: a TTA graph runs the model once at 2x
(flip) or 10x (flip-shift) the batch.
"""

import argparse
import time

import numpy as np

from squeezenet.deploy.bench import cpu_line
from squeezenet.formats.onnx import OnnxClassifier, open_session
from squeezenet.tta import VIEWS_PER_IMAGE


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("plain")
    ap.add_argument("tta", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    files = (a.plain, *a.tta)
    sess = {f: open_session(f, threads=a.threads) for f in files}
    shape = [d for d in sess[a.plain].get_inputs()[0].shape[1:]]
    views = {f: VIEWS_PER_IMAGE[OnnxClassifier(f).spec.tta] for f in a.tta}
    # the plain file is also timed at each TTA file's batch of views (V x b images): the network's
    # share of a TTA call, the rest being the views' construction (slices, concatenations, mirrors)
    jobs = [(f, b, b) for f in files for b in (1, 32)] + [(a.plain, b, v * b) for v in sorted(set(views.values()))
                                                          for b in (1, 32)]
    res = {j: [] for j in jobs}
    rng = np.random.default_rng(0)
    for _ in range(a.rounds):
        for f, b, n in jobs:
            x = rng.standard_normal((n, *shape)).astype(np.float32)
            s = sess[f]
            for _ in range(10):
                s.run(None, {"input": x})
            t = []
            for _ in range(60 if b == 1 else 15):
                t0 = time.perf_counter()
                s.run(None, {"input": x})
                t.append(time.perf_counter() - t0)
            res[(f, b, n)].append(np.median(t))
    print(f"{cpu_line()}; {a.threads} threads; input {shape}")
    for bs in (1, 32):
        p = np.median(res[(a.plain, bs, bs)])
        line = [f"batch {bs}: plain {p * 1e3:.3f} ms"]
        for f in a.tta:
            q, net = np.median(res[(f, bs, bs)]), np.median(res[(a.plain, bs, views[f] * bs)])
            line.append(f"{OnnxClassifier(f).spec.tta} TTA {q * 1e3:.3f} ms ({q / p:.2f}x; plain at batch "
                        f"{views[f] * bs}: {net * 1e3:.3f} ms, {net / q:.0%} of it)")
        print(", ".join(line))

if __name__ == "__main__":
    main()
