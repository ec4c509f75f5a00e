"""Probe: does the time budget price a smaller training size right?

    python benchmarks/probes/resize_cost_probe.py [--model M] [--px 32] [--low 24] [--rounds 5]

``--progressive-resizing`` makes the budget planner count each step at its size's cost
relative to the full size's, priced once at the first plan by
:func:`squeezenet.resizing.price_sizes` (forward and backward on a copy of the model). This
times, alternated in ``--rounds`` rounds, the real thing for each size: a full training step
(the 32 px batch resized, forward, label-smoothed loss, backward, SGD with momentum) on
random data, and prints the median step time and its ratio to the full size's next to the
pricing's ratios, repeated as often. Nothing else should run.

With ``--data DIR`` (an ImageFolder of small images, decoded once) it also times the trainer's
own loop under ``--config natural`` at each size, alternated the same way: the batch drawn
and augmented from the decoded images, resized, the step, and the trainer's per-step
bookkeeping, i.e. what a run's epoch times contain and the pricing leaves out.
"""

import argparse
import statistics
import time

import torch
from torch import nn

from squeezenet import create_model
from squeezenet.machine import cpu_info
from squeezenet.resizing import levels, price_sizes, resize


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="squeezenet1_1_simple_bypass_small_bn_w0.5_sr0.25")
    ap.add_argument("--px", type=int, default=32)
    ap.add_argument("--low", type=int, default=24)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--data", help="also time the trainer's loop on this ImageFolder (--config natural)")
    a = ap.parse_args()
    torch.manual_seed(0)
    net = create_model(a.model, num_classes=10, in_chans=3, dropout=0.1).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    sizes = levels(a.low, a.px)
    x32 = torch.randn(a.batch, 3, a.px, a.px)
    y = torch.randint(0, 10, (a.batch,))
    no_autocast = lambda: torch.autocast("cpu", enabled=False)  # noqa: E731 (fp32, as --precision auto on AVX2)

    def step(px):
        x = resize(x32, px).contiguous(memory_format=torch.channels_last)
        loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    real = {px: [] for px in sizes}
    priced = []
    for _ in range(a.rounds):
        for px in sizes:
            step(px)  # untimed: a new shape's primitives
            t = time.perf_counter()
            for _ in range(a.steps):
                step(px)
            real[px].append((time.perf_counter() - t) / a.steps)
        priced.append(price_sizes(net, sizes, a.batch, 3, torch.device("cpu"), torch.channels_last, no_autocast,
                                  time.perf_counter))
    name, flags = cpu_info()
    shown = sorted(f for f in flags or () if f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"))
    print(f"{name} ({', '.join(shown) or 'no AVX2'}), {torch.get_num_threads()} threads; {a.model}, "
          f"batch {a.batch}, {a.rounds} rounds of {a.steps} steps per size")
    full = statistics.median(real[a.px])
    print("| size | real step, median ms (range) | real / full | priced / full, per round |")
    print("|---|---|---|---|")
    for px in sizes:
        med = statistics.median(real[px])
        print(f"| {px} px | {1000 * med:.1f} ({1000 * min(real[px]):.1f}-{1000 * max(real[px]):.1f}) | "
              f"{med / full:.2f} | {', '.join(f'{p[px]:.2f}' for p in priced)} |")
    if a.data:
        loop_table(a, sizes)


def loop_table(a, sizes) -> None:
    """The trainer's own loop at each size (``--config natural`` on ``a.data``), alternated
    in ``a.rounds`` rounds of ``a.steps`` steps after an untimed one: the median step time
    from one step's end to the next's, batch making and bookkeeping included."""
    import tempfile

    from squeezenet.config import TrainConfig, load_config_file
    from squeezenet.data import load_data
    from squeezenet.train import Trainer

    splits = load_data(a.data)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig.from_dict({**load_config_file("natural"), "out": tmp, "progress": False, "time_budget": None,
                                     "epochs": 1, "random_erasing": 0.0, "batch_size": a.batch})
        tr = Trainer(cfg, splits=splits)
        if a.px != tr.spec.input_size:
            raise SystemExit(f"--px {a.px} is not the folder's input size {tr.spec.input_size}")
        stamps, times = [], {px: [] for px in sizes}
        tr.after_step.append(lambda _: stamps.append(time.perf_counter()))
        tr.total_steps = 10 ** 9  # no schedule end inside the probe
        tr.seed_epoch(0)
        for _ in range(a.rounds):
            for px in sizes:
                tr.train_px = lambda step=None, px=px: px  # the probe fixes the size of each block
                tr.cfg.progressive_resizing = px if px < a.px else None
                if tr.step_in_epoch + a.steps + 1 >= tr.steps_per_epoch():
                    tr.step_in_epoch = 0
                stamps.clear()
                tr.cfg.max_steps = tr.global_step + a.steps + 1
                tr.train_epoch(0)
                times[px] += [b - s for s, b in zip(stamps, stamps[1:])]
    full = statistics.median(times[a.px])
    print(f"\nthe trainer's loop (--config natural on {a.data}, batch {a.batch}):")
    print("| size | loop step, median ms | loop / full |")
    print("|---|---|---|")
    for px in sizes:
        med = statistics.median(times[px])
        print(f"| {px} px | {1000 * med:.1f} | {med / full:.2f} |")


if __name__ == "__main__":
    main()
