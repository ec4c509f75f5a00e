"""Training throughput: today's pipeline against the trainer as it is now, and every lever alone.

One run, one machine, two models (issue 18):

  demo   the demo model (squeezenet1_1_simple_bypass_small_bn_w0.5_sr0.25, the demo's
         options) on Fashion-MNIST, 28 px, 1 channel, batch 128;
  v1.1   full-width squeezenet1_1_small_bn on 32 px RGB (CIFAR-10-shaped uint8 images,
         synthetic: throughput does not depend on the pixels), batch 128.

Rows, each timed in the same process over the same number of steps:

  today      the pipeline as it was when issue 18 was filed, frozen here as the baseline
             (uint8 tensors, per-batch crop/flip, channels_last, --precision auto,
             nn.Dropout, the trainer's per-step bookkeeping);
  trainer    squeezenet's Trainer itself (its train_epoch over real batches);
  levers     today's pipeline with one change each: 1 thread, NCHW, batch 64 / 256,
             bf16 autocast on / off, the CPU dropout mask, a producer thread for batches,
             flush-denormal, and with --compile, torch.compile (inductor C++) of the step.

Each figure is also given as a share of the CPU's fp32 peak, measured in the same run as
the best of a few large sgemm calls at the same thread count; a training step is counted
as 3 x the forward multiply-accumulates x 2 FLOPs.

    python benchmarks/train_throughput.py [--steps 30] [--compile] [--json runs/bench/train_throughput.json]
"""

import argparse
import json
import queue
import statistics
import tempfile
import threading
import time

import torch
from torch import nn

from squeezenet import create_model
from squeezenet.config import DEFAULT_MODEL, TrainConfig, load_config_file
from squeezenet.data import Splits, TensorDataset, load_data
from squeezenet.deploy.bench import cpu_line
from squeezenet.profiler import profile
from squeezenet.spec import DataSpec
from squeezenet.train import Trainer, cpu_has_native_bf16, model_options

DEMO = TrainConfig.from_dict(load_config_file("demo"))


# ------------------------------------------------------------- the data of each case

def demo_splits() -> Splits:
    return load_data("fashion-mnist")


def cifar_shaped_splits(n: int = 12800) -> Splits:
    g = torch.Generator().manual_seed(0)
    classes = [str(i) for i in range(10)]
    imgs = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (n,), generator=g)
    ds = TensorDataset(imgs, labels, classes)
    spec = DataSpec("cifar-shaped", classes, 3, 32, [0.49, 0.48, 0.45], [0.25, 0.24, 0.26], True, pad=4)
    return Splits(ds, TensorDataset(imgs[:1000], labels[:1000], classes), spec)


CASES = {
    "demo": dict(model=DEFAULT_MODEL, options=model_options(DEMO), splits=demo_splits),
    "v1.1": dict(model="squeezenet1_1_small_bn", options={}, splits=cifar_shaped_splits),
}


# ------------------------------------------------------------- today's pipeline, frozen

def today_batches(ds, spec, batch, gen):
    """tensor_batches as it was: crop with zero padding + flip on uint8, then normalise."""
    mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
    std = torch.tensor(spec.std).view(1, -1, 1, 1)
    p = spec.pad
    while True:
        perm = torch.randperm(len(ds), generator=gen)
        for s in range(len(ds) // batch):
            idx = perm[s * batch:(s + 1) * batch]
            x = ds.images[idx]
            b, c, h, w = x.shape
            dy = torch.randint(0, 2 * p + 1, (b,), generator=gen)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=gen)
            flip = torch.rand(b, generator=gen) < 0.5
            xp = nn.functional.pad(x, (p, p, p, p))
            iy = torch.arange(h)[None, :] + dy[:, None]
            ix = torch.arange(w)[None, :] + dx[:, None]
            ix = torch.where(flip[:, None], ix.flip(1), ix)
            x = xp.permute(0, 2, 3, 1)[torch.arange(b)[:, None, None], iy[:, :, None], ix[:, None, :]]
            x = x.permute(0, 3, 1, 2)
            yield (x.float().div_(255.0) - mean) / std, ds.labels[idx]


def prefetched(it, depth: int = 2):
    """The producer-thread lever: batches made in a thread while the step runs."""
    q, stop = queue.Queue(depth), object()

    def work():
        for item in it:
            q.put(item)
        q.put(stop)

    threading.Thread(target=work, daemon=True).start()
    while (item := q.get()) is not stop:
        yield item


class TodayStep:
    """The trainer's step and bookkeeping as they were: lr set, channels_last input,
    autocast, finiteness check, zero_grad / backward / step, buffers kept for an undo,
    running loss and top-1."""

    def __init__(self, model, memory_format, precision, compiled=False):
        self.model, self.mf, self.precision = model, memory_format, precision
        self.opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4)
        self.crit = nn.CrossEntropyLoss(label_smoothing=0.1)
        self.fwd = torch.compile(self._fwd) if compiled else self._fwd

    def _fwd(self, x, y):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            logits = self.model(x)
            return logits, self.crit(logits.float(), y)

    def __call__(self, x, y):
        torch.get_rng_state()
        [b.detach().clone() for b in self.model.buffers()]
        for g in self.opt.param_groups:
            g["lr"] = 0.1
        x = x.contiguous(memory_format=self.mf)
        logits, loss = self.fwd(x, y)
        if not torch.isfinite(loss):
            raise RuntimeError("diverged")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        loss.item(), (logits.detach().float().argmax(1) == y).sum().item()


def build(case, cl=True, fast_dropout=False):
    torch.manual_seed(0)
    spec = case["data"].spec
    m = create_model(case["model"], num_classes=10, in_chans=spec.channels, **case["options"])
    if not fast_dropout:  # today's model drew its dropout mask with bernoulli_
        m.classifier.dropout = nn.Dropout(m.classifier.dropout.p)
    return m.to(memory_format=torch.channels_last if cl else torch.contiguous_format)


def time_today(case, steps, warmup, batch=128, threads=None, cl=True, precision=None, fast_dropout=False,
               producer=False, denormal=False, compiled=False):
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(denormal)
    try:
        prec = precision or ("bf16" if cpu_has_native_bf16() else "fp32")
        step = TodayStep(build(case, cl, fast_dropout), torch.channels_last if cl else torch.contiguous_format, prec,
                         compiled)
        step.model.train()
        batches = today_batches(case["data"].train, case["data"].spec, batch, torch.Generator().manual_seed(0))
        if producer:
            batches = prefetched(batches)
        t0 = None
        for i, (x, y) in enumerate(batches):
            if i == warmup:
                t0 = time.perf_counter()
            step(x, y)
            if i + 1 == warmup + steps:
                return steps * batch / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(before)
        torch.set_flush_denormal(False)


def time_trainer(case, steps, warmup, batch=128):
    """Squeezenet's own Trainer: img/s between the warm-up's last step and the last one."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig.from_dict({**load_config_file("demo"), "model": case["model"], "epochs": 1,
                                     "batch_size": batch, "out": tmp, "progress": False,
                                     "max_steps": warmup + steps, **_options(case)})
        tr = Trainer(cfg, splits=case["data"])
        stamps = []
        tr.after_step.append(lambda _: stamps.append(time.perf_counter()))
        tr.seed_epoch(0)
        tr.train_epoch(0)
    return steps * batch / (stamps[-1] - stamps[warmup - 1])


def _options(case) -> dict:
    o = case["options"]
    return {"head_relu": o.get("head_relu", True), "dropout": o.get("dropout", 0.5)}


# ------------------------------------------------------------- the CPU's fp32 peak

def fp32_peak_gflops(threads: int) -> float:
    """Best of a few n x n sgemm calls (n = 1024..3072) at ``threads``: what this CPU's
    fp32 units deliver to a compute-bound kernel, measured, not taken from a datasheet."""
    torch.set_num_threads(threads)
    best = 0.0
    for n in (1024, 2048, 3072):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        reps = max(2, int(4e9 / (2 * n ** 3)))
        t0 = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def step_gflop(case) -> float:
    spec = case["data"].spec
    m = create_model(case["model"], num_classes=10, in_chans=spec.channels, **case["options"])
    return 3 * 2 * profile(m, (spec.channels, spec.input_size, spec.input_size)).macs / 1e9


# ------------------------------------------------------------- the run

LEVERS = [
    ("1 thread", dict(threads=1)),
    ("NCHW instead of channels_last", dict(cl=False)),
    ("batch 64", dict(batch=64)),
    ("batch 256", dict(batch=256)),
    ("fp32 forced", dict(precision="fp32")),
    ("bf16 autocast forced", dict(precision="bf16")),
    ("dropout mask by rand (CPU)", dict(fast_dropout=True)),
    ("producer thread for batches", dict(producer=True)),
    ("flush denormals", dict(denormal=True)),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="baseline/lever pairs per lever (median ratio)")
    ap.add_argument("--cases", default="demo,v1.1")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the step (about a minute "
                                                             "of compiling per model)")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    threads = torch.get_num_threads()
    peak = fp32_peak_gflops(threads)
    res = {"machine": cpu_line(), "torch": torch.__version__, "threads": threads, "fp32_peak_gflops": peak,
           "steps": a.steps, "cases": {}}
    print(f"{res['machine']}; torch {torch.__version__}; {threads} threads; fp32 peak {peak:.0f} GFLOP/s", flush=True)
    levers = LEVERS + ([("torch.compile (inductor C++)", dict(compiled=True))] if a.compile else [])
    for name in a.cases.split(","):
        case = dict(CASES[name])
        case["data"] = case["splits"]()
        gflop = step_gflop(case)
        rows = {}

        def record(label, ips, ratio):
            rows[label] = {"img_s": ips, "share_of_peak": ips * gflop / peak, "vs_today": ratio}
            print(f"  {name:5s} {label:34s} {ips:7.0f} img/s  {100 * rows[label]['share_of_peak']:5.1f}% of peak  "
                  f"{ratio:.2f}x today", flush=True)

        # each lever is timed right after a baseline block, in --rounds rounds; its ratio is the
        # median of (lever / the baseline just before it), so the machine's drift cancels
        runs = [("trainer now", None)] + levers
        samples = {label: [] for label, _ in runs}
        base_samples = []
        for _ in range(a.rounds):
            for label, kw in runs:
                b = time_today(case, a.steps, a.warmup)
                v = time_trainer(case, a.steps, a.warmup) if kw is None else time_today(case, a.steps, a.warmup, **kw)
                base_samples.append(b)
                samples[label].append((v, v / b))
        record("today (baseline)", statistics.median(base_samples), 1.0)
        for label, got in samples.items():
            record(label, statistics.median(v for v, _ in got), statistics.median(r for _, r in got))
        res["cases"][name] = {"model": case["model"], "input": case["data"].spec.input_size,
                              "gflop_per_image_step": gflop, "rows": rows}
        print(f"  {name}: trainer now / today = {rows['trainer now']['vs_today']:.2f}x", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
