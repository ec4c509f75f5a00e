"""Where a training step of the demo model spends its time, and how fast it is per batch size.

1. Steps per second at batch 64 / 128 / 256 (synthetic inputs, channels_last, fp32, SGD),
   timed in alternating blocks so the machine's drift hits all sizes alike.
2. A torch.profiler table of 5 steps at --profile-batch, by operator (self CPU time).
3. The same step with the stem's max pool moved before its BN/ReLU (BN and ReLU then run at
   14x14 instead of 28x28), an idea measured and not adopted: see docs/BENCHMARKS.md.
4. With --by-shape, the profile grouped by input shape, and the share of the step spent in
   operators on full-resolution (28x28) tensors: the stem's conv, BN, ReLU and max pool.

Usage: python benchmarks/train_step_profile.py [--rounds 6] [--profile-batch 256] [--by-shape]
"""

import argparse
import statistics
import time

import torch
from torch import nn

from squeezenet import create_model
from squeezenet.config import DEFAULT_MODEL, TrainConfig, load_config_file
from squeezenet.train import model_options

DEMO = TrainConfig.from_dict(load_config_file("demo"))


def make_model(pool_first: bool = False) -> nn.Module:
    torch.manual_seed(0)
    opts = model_options(DEMO)
    m = create_model(DEFAULT_MODEL, num_classes=10, in_chans=1, **opts)
    if pool_first:
        c = m.features["conv1"]
        m.features["conv1"] = nn.Sequential(c.conv, m.features["maxpool1"], c.bn, c.relu)
        m.features["maxpool1"] = nn.Identity()
    return m.to(memory_format=torch.channels_last)


class Stepper:
    def __init__(self, batch: int, pool_first: bool = False):
        self.model, self.batch = make_model(pool_first), batch
        self.x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, 10, (batch,))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.crit = nn.CrossEntropyLoss()
        for _ in range(2):
            self.step()

    def step(self):
        loss = self.crit(self.model(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def img_per_s(self, images: int = 1024) -> float:
        t = time.perf_counter()
        for _ in range(max(1, images // self.batch)):
            self.step()
        return max(1, images // self.batch) * self.batch / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--profile-batch", type=int, default=256)
    ap.add_argument("--by-shape", action="store_true", help="also group the profile by input shape")
    a = ap.parse_args()
    runs = {f"batch {b}": Stepper(b) for b in (64, 128, 256)}
    runs["batch 128, stem pool before BN/ReLU"] = Stepper(128, pool_first=True)
    rates = {k: [] for k in runs}
    for _ in range(a.rounds):
        for k, s in runs.items():
            rates[k].append(s.img_per_s())
    print(f"{DEFAULT_MODEL}, fp32 channels_last, {torch.get_num_threads()} threads; img/s, median of {a.rounds}:")
    for k, v in rates.items():
        print(f"  {k:36s} {statistics.median(v):7.0f}   ({min(v):.0f}-{max(v):.0f})")
    from torch.profiler import profile

    s = Stepper(a.profile_batch)
    with profile() as p:
        for _ in range(5):
            s.step()
    print(p.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40))
    if a.by_shape:
        s = Stepper(a.profile_batch)
        with profile(record_shapes=True) as p:
            for _ in range(5):
                s.step()
        groups = p.key_averages(group_by_input_shape=True)
        print(groups.table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=40,
                           max_shapes_column_width=60))
        total = sum(e.self_cpu_time_total for e in groups)
        full = sum(e.self_cpu_time_total for e in groups
                   if any(len(sh) == 4 and sh[2:] == [28, 28] for sh in (e.input_shapes or [])))
        print(f"operators on 28x28 tensors (the stem): {100 * full / total:.1f}% of the step's self CPU time")


if __name__ == "__main__":
    main()
