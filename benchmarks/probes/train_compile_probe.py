"""Does torch.compile speed up the training step here? Eager channels_last vs compiled,
same model, batch and optimizer, synthetic batches, one run.
Usage: python benchmarks/probes/train_compile_probe.py [--model NAME] [--batch-size 256]
"""

import argparse
import time

import torch

from squeezenet import create_model


def run(model, x, y, steps=8, warmup=4):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    t0 = time.perf_counter()
    for i in range(warmup + steps):
        if i == warmup:
            first, t = time.perf_counter() - t0, time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, steps * len(y) / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="squeezenet1_1_small_bn_w0.5")
    ap.add_argument("--batch-size", type=int, default=256)
    a = ap.parse_args()
    x = torch.randn(a.batch_size, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.batch_size,))
    torch.manual_seed(0)
    m = create_model(a.model, num_classes=10, in_chans=1).to(memory_format=torch.channels_last).train()
    _, eager = run(m, x, y)
    print(f"eager channels_last: {eager:.0f} img/s", flush=True)
    torch.manual_seed(0)
    m = create_model(a.model, num_classes=10, in_chans=1).to(memory_format=torch.channels_last).train()
    warm, comp = run(torch.compile(m), x, y)
    print(f"torch.compile: {comp:.0f} img/s after {warm:.0f} s of compile + warm-up; ratio {comp / eager:.2f}x")


if __name__ == "__main__":
    main()
