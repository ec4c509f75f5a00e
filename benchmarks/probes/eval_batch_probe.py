"""Probe: how fast is one evaluation pass at each batch size?

    python benchmarks/probes/eval_batch_probe.py RUN/last.pt [--data DIR] [--batch-sizes 1000,500,256,128,64]
        [--rounds 2]

Times `metrics.evaluate` over the model's own test split (its recorded hold-out for a folder),
channels_last, on the threads torch has, as a training run's per-epoch evaluation does. The
batch sizes alternate within each round, so drift in the host's speed hits them alike. Prints
seconds and img/s per batch size and round, and checks that the top-1 does not depend on the
batch size. A time budget pays for every evaluation out of its training time.
"""

import argparse
import time

import torch

from squeezenet.data import load_data_for
from squeezenet.deploy.bench import cpu_line
from squeezenet.formats.open import open_model
from squeezenet.metrics import evaluate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data")
    ap.add_argument("--batch-sizes", default="1000,500,256,128,64")
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    mf = open_model(a.checkpoint, need="any")
    splits = load_data_for(mf.need_spec(), a.data, None, False, False, where=f"'{a.checkpoint}'")
    model = mf.model.eval().to(memory_format=torch.channels_last)
    print(f"{cpu_line()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{len(splits.test):,} test images")
    top1 = set()
    for r in range(a.rounds):
        for bs in (int(b) for b in a.batch_sizes.split(",")):
            t = time.perf_counter()
            m = evaluate(model, splits.test, splits.spec, "cpu", bs, 0, channels_last=True)
            dt = time.perf_counter() - t
            top1.add(m["top1"])
            print(f"round {r + 1}  batch {bs:5d}  {dt:6.2f} s  {len(splits.test) / dt:7.0f} img/s  top-1 {m['top1']:.2f}")
    print("top-1 the same at every batch size" if len(top1) == 1 else f"top-1 differs: {sorted(top1)}")


if __name__ == "__main__":
    main()
