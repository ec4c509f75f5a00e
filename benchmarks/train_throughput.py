"""Training throughput: this project's pipeline vs a plain fp32 NCHW PyTorch loop.

Same model, same batch size, same optimizer, data pipeline included, one run:

  baseline  torchvision FashionMNIST-style Dataset (PIL images, RandomCrop(pad) +
            RandomHorizontalFlip + ToTensor + Normalize per image) -> DataLoader ->
            fp32 NCHW model. Timed with 0 and 2 DataLoader workers; the faster one is
            the baseline.
  ours      uint8 tensor decoded once, per-batch tensor crop/flip, channels_last,
            bf16 autocast where the CPU has native bf16 (else fp32, as `train` does).

Prints both img/s figures and the ratio. Usage:
    python benchmarks/train_throughput.py [--model NAME] [--batch-size 128] [--steps 30]

The model is built with the demo's options (no head ReLU, dropout 0.1) unless --model is given.
"""

import argparse
import json
import platform
import time

import torch
from torchvision import transforms as T

from squeezenet import create_model
from squeezenet.batches import augment_batch, augment_params, normalize
from squeezenet.data import load_data
from squeezenet.config import DEFAULT_MODEL, TrainConfig, load_config_file
from squeezenet.train import cpu_has_native_bf16, model_options

DEMO = TrainConfig.from_dict(load_config_file("demo"))


class PILDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.FashionMNIST does: one PIL image per item."""

    def __init__(self, images, labels, tf):
        self.images, self.labels, self.tf = images, labels, tf

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.tf(Image.fromarray(self.images[i, 0].numpy(), mode="L")), int(self.labels[i])


def run_steps(model, batches, steps, warmup, autocast_dtype=None):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    crit = torch.nn.CrossEntropyLoss()
    model.train()
    n, t0 = 0, None
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            t0, n = time.perf_counter(), 0
        with torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16, enabled=autocast_dtype is not None):
            loss = crit(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(y)
        if i + 1 >= warmup + steps:
            break
    return n / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--batch-size", type=int, default=DEMO.batch_size)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args()
    s = load_data("fashion-mnist")
    spec, tr = s.spec, s.train
    opts = model_options(DEMO) if a.model == DEFAULT_MODEL else {}
    res = {"model": a.model, "batch_size": a.batch_size, "torch": torch.__version__, "threads": torch.get_num_threads(),
           "machine": platform.processor() or platform.machine()}

    tf = T.Compose([T.RandomCrop(28, padding=spec.pad), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(spec.mean, spec.std)])
    for workers in (0, 2):
        torch.manual_seed(0)
        model = create_model(a.model, num_classes=10, in_chans=1, **opts)
        loader = torch.utils.data.DataLoader(PILDataset(tr.images, tr.labels, tf), batch_size=a.batch_size,
                                             shuffle=True, num_workers=workers, drop_last=True,
                                             persistent_workers=workers > 0)
        res[f"baseline_workers{workers}_img_s"] = run_steps(model, loader, a.steps, a.warmup)
        print(f"baseline fp32 NCHW, PIL pipeline, {workers} workers: {res[f'baseline_workers{workers}_img_s']:.0f} img/s",
              flush=True)

    def tensor_batches(g=torch.Generator().manual_seed(0)):
        while True:
            perm = torch.randperm(len(tr), generator=g)
            for i in range(len(tr) // a.batch_size):
                idx = perm[i * a.batch_size:(i + 1) * a.batch_size]
                x = augment_batch(tr.images[idx], spec.pad, *augment_params(len(idx), spec.pad, g))
                yield normalize(x, spec.mean, spec.std).contiguous(memory_format=torch.channels_last), tr.labels[idx]

    torch.manual_seed(0)
    model = create_model(a.model, num_classes=10, in_chans=1, **opts).to(memory_format=torch.channels_last)
    dtype = torch.bfloat16 if cpu_has_native_bf16() else None
    res["ours_precision"] = "bf16" if dtype else "fp32"
    res["ours_img_s"] = run_steps(model, tensor_batches(), a.steps, a.warmup, dtype)
    print(f"ours: uint8 tensors + batch augmentation + channels_last ({res['ours_precision']}): "
          f"{res['ours_img_s']:.0f} img/s", flush=True)
    torch.manual_seed(0)
    model = create_model(a.model, num_classes=10, in_chans=1, **opts).to(memory_format=torch.channels_last)
    res["ours_bf16_forced_img_s"] = run_steps(model, tensor_batches(), max(5, a.steps // 3), a.warmup, torch.bfloat16)
    print(f"ours with bf16 autocast forced: {res['ours_bf16_forced_img_s']:.0f} img/s", flush=True)
    base = max(res["baseline_workers0_img_s"], res["baseline_workers2_img_s"])
    res["ratio_vs_best_baseline"] = res["ours_img_s"] / base
    print(f"ratio ours / best baseline: {res['ratio_vs_best_baseline']:.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
