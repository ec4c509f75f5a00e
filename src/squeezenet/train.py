"""Training: fast on a CPU, resumable, multi-process (torchrun), with a report.

``train(TrainConfig(...))`` is what ``squeezenet train`` calls. Small-image data is
held as uint8 tensors and augmented per batch; every random draw is derived from the
seed and the epoch, and the RNG states are stored in each checkpoint, so a run killed
at any step and resumed with ``--resume`` ends with the same weights as an
uninterrupted run (on CPU, same thread count).

Precision: ``auto`` picks bf16 autocast on CUDA GPUs with bf16 (fp16 + GradScaler
otherwise) and on CPUs with native bf16 (AVX512-BF16 or AMX); on other CPUs it keeps
fp32, because emulated bf16 was measured 4x *slower* there (docs/BENCHMARKS.md).
channels_last is on by default: 1.4-1.6x faster here.
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import atomic_save, load_checkpoint, make_checkpoint
from .data import (TensorDataset, apply_erasing, augment_batch, augment_params, collate_skip_bad, erase_boxes,
                   load_data, normalize)
from .errors import SqueezeNetError
from .metrics import evaluate, topk_correct
from .registry import create_model

DEFAULT_MODEL = "squeezenet1_1_simple_bypass_small_bn_w0.5_sr0.25"
# What `squeezenet train` does with no model named (= configs/demo.toml).
DEMO_DEFAULTS = dict(model=DEFAULT_MODEL, epochs=8, batch_size=128, lr=0.1, dropout=0.1, model_options={"head_relu": False})

# The authors' Caffe solver (forresti/SqueezeNet solver.prototxt): SGD, lr 0.04,
# linear ("poly", power 1) decay to 0, momentum 0.9, weight decay 2e-4.
RECIPES = {
    "paper": dict(lr=0.04, schedule="poly", warmup_epochs=0.0, momentum=0.9, nesterov=False,
                  weight_decay=2e-4, label_smoothing=0.0),
    # Chosen by measurement on Fashion-MNIST (docs/BENCHMARKS.md): higher peak lr with
    # linear warm-up, cosine decay, Nesterov, label smoothing 0.1, no decay on BN/bias.
    "fast": dict(lr=0.2, schedule="cosine", warmup_epochs=1.0, momentum=0.9, nesterov=True,
                 weight_decay=5e-4, label_smoothing=0.1),
}


@dataclass
class TrainConfig:
    model: str = DEFAULT_MODEL
    data: str = "fashion-mnist"
    data_dir: str | None = None
    download: bool = True
    out: str = "runs/train"
    epochs: int = 10
    batch_size: int = 256  # global batch, split across torchrun processes
    recipe: str = "fast"
    lr: float | None = None
    schedule: str | None = None
    warmup_epochs: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    label_smoothing: float | None = None
    random_erasing: float = 0.0  # probability per image (small-image data)
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = off
    input_size: int | None = None
    dropout: float | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    workers: int = 2
    val_fraction: float = 0.1
    weights: str | None = None
    resume: bool = False
    max_steps: int | None = None
    train_subset: int | None = None
    eval_batch_size: int = 1000
    progress: bool = True
    threads: int | None = None
    model_options: dict = field(default_factory=dict)

    def resolved(self) -> "TrainConfig":
        if self.recipe not in RECIPES:
            raise SqueezeNetError(f"unknown recipe '{self.recipe}'; use one of {', '.join(RECIPES)}")
        for k, v in RECIPES[self.recipe].items():
            if getattr(self, k) is None:
                setattr(self, k, v)
        if self.schedule not in ("poly", "cosine", "constant"):
            raise SqueezeNetError(f"unknown schedule '{self.schedule}'; use poly, cosine or constant")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise SqueezeNetError("--epochs, --batch-size and --lr must be positive")
        return self

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise SqueezeNetError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**d)


# Settings that shape the optimisation: resuming with any of them changed would silently
# splice two different runs, so it is refused (the model itself is checked separately).
RESUME_MUST_MATCH = ("data", "epochs", "batch_size", "recipe", "lr", "schedule", "warmup_epochs", "momentum",
                     "nesterov", "weight_decay", "label_smoothing", "random_erasing", "ema", "input_size",
                     "dropout", "seed", "train_subset")


def lr_at(cfg: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    """Learning rate at a global step: linear warm-up, then poly(1) or cosine decay."""
    warm = int(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    if cfg.schedule == "poly":
        return cfg.lr * (1.0 - t)
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * t))
    return cfg.lr


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(device: str, local_rank: int = 0) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SqueezeNetError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
        return torch.device("cuda", local_rank if device == "cuda" else int(device.split(":")[1]))
    if device != "cpu":
        raise SqueezeNetError(f"unknown device '{device}'; use auto, cpu or cuda")
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if precision not in ("fp32", "bf16", "fp16"):
        raise SqueezeNetError(f"unknown precision '{precision}'; use auto, fp32, bf16 or fp16")
    if precision == "fp16" and device.type == "cpu":
        raise SqueezeNetError("fp16 training needs a CUDA GPU; use --precision bf16 or fp32 on CPU")
    return precision


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_pref: str) -> DistInfo:
    """Join the torchrun process group if WORLD_SIZE > 1 (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        use_cuda = device_pref != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def param_groups(model: nn.Module, weight_decay: float):
    """No weight decay on biases and BatchNorm parameters."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class Trainer:
    """One training run. Use :func:`train` unless you need the pieces."""

    def __init__(self, cfg: TrainConfig, model: nn.Module | None = None, splits=None):
        self.cfg = cfg.resolved()
        self.dist = setup_distributed(cfg.device)
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        self.precision = resolve_precision(cfg.precision, self.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.splits = splits or load_data(cfg.data, cfg.data_dir, cfg.input_size, cfg.val_fraction, cfg.seed,
                                          cfg.download)
        self.spec = self.splits.spec
        if cfg.train_subset and isinstance(self.splits.train, TensorDataset):
            t = self.splits.train
            self.splits.train = TensorDataset(t.images[:cfg.train_subset], t.labels[:cfg.train_subset], t.classes)
        torch.manual_seed(cfg.seed)
        if model is None:
            opts = dict(cfg.model_options)
            if cfg.dropout is not None:
                opts["dropout"] = cfg.dropout
            model = create_model(cfg.model, num_classes=len(self.spec.classes), in_chans=self.spec.channels, **opts)
            if cfg.weights:
                model = _init_from_weights(model, cfg.weights, len(self.spec.classes))
        self.model_name = cfg.model
        self.model = model.to(self.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.optimizer = torch.optim.SGD(param_groups(self.model, cfg.weight_decay), lr=cfg.lr,
                                         momentum=cfg.momentum, nesterov=cfg.nesterov)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.ema = None
        if cfg.ema > 0:
            import copy

            self.ema = copy.deepcopy(self.model).eval()
            for p in self.ema.parameters():
                p.requires_grad_(False)
            self._ema_pairs = list(zip(self.ema.state_dict().values(), self.model.state_dict().values()))
        self.ddp = self.model
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.out = Path(cfg.out)
        self.history: list[dict] = []
        self.epoch, self.step_in_epoch, self.global_step, self.best_top1 = 0, 0, 0, -1.0
        self.train_time = 0.0
        self.aug_gen = torch.Generator()
        self.rng_resume = None
        self._rng_at_step_start = None
        if self.cfg.batch_size % self.dist.world:
            raise SqueezeNetError(f"--batch-size {cfg.batch_size} must be divisible by the {self.dist.world} processes")

    # ------------------------------------------------------------------ state
    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and exported: the EMA when it is on."""
        return self.ema if self.ema is not None else self.model

    @torch.no_grad()
    def update_ema(self):
        # decay ramps up early on, as in timm's ModelEmaV2 warm-up
        d = min(self.cfg.ema, (1 + self.global_step) / (10 + self.global_step))
        for e, m in self._ema_pairs:
            if e.dtype.is_floating_point:
                e.lerp_(m, 1.0 - d)
            else:
                e.copy_(m)

    def state(self) -> dict:
        extra = {"train_state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}} \
            if self.ema is not None else {}
        return make_checkpoint(
            self.eval_model, self.model_name, self.spec.to_dict(), **extra,
            optimizer=self.optimizer.state_dict(), scaler=self.scaler.state_dict(),
            epoch=self.epoch, step_in_epoch=self.step_in_epoch, global_step=self.global_step,
            best_top1=self.best_top1, history=self.history, train_time=self.train_time,
            # an interrupted step is redone on resume, so store the RNG as it was when it began
            rng={"torch": self._rng_at_step_start if self._rng_at_step_start is not None else torch.get_rng_state()},
            config=asdict(self.cfg), torch_version=str(torch.__version__),
        )

    def save(self, name: str = "last.pt"):
        if self.dist.main:
            atomic_save(self.state(), self.out / name)

    def resume(self):
        ckpt = load_checkpoint(self.out / "last.pt")
        if ckpt["model_name"] != self.model_name or ckpt["model_kwargs"] != self.model.model_kwargs:
            raise SqueezeNetError(f"cannot resume: {self.out}/last.pt is a '{ckpt['model_name']}' run, not "
                                  f"'{self.model_name}' with these options; use another --out")
        saved = ckpt.get("config") or {}
        changed = [f"{k} {saved[k]!r} -> {getattr(self.cfg, k)!r}" for k in RESUME_MUST_MATCH
                   if k in saved and saved[k] != getattr(self.cfg, k)]
        if changed:
            raise SqueezeNetError(f"cannot resume: {self.out}/last.pt was trained with other settings "
                                  f"({'; '.join(changed)}); resume with the run's own settings or use another --out")
        if self.ema is not None:
            if "train_state_dict" not in ckpt:
                raise SqueezeNetError("cannot resume with --ema: the run was started without it")
            self.model.load_state_dict(ckpt["train_state_dict"])
            self.ema.load_state_dict(ckpt["state_dict"])
        else:
            self.model.load_state_dict(ckpt.get("train_state_dict", ckpt["state_dict"]))
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step_in_epoch = ckpt["epoch"], ckpt["step_in_epoch"]
        self.global_step, self.best_top1 = ckpt["global_step"], ckpt["best_top1"]
        self.history, self.train_time = list(ckpt["history"]), ckpt["train_time"]
        self.rng_resume = ckpt["rng"]

    # ------------------------------------------------------------------ loop
    def batches(self, epoch: int):
        """Yield (step, inputs, labels) for this rank, for the rest of the epoch."""
        cfg, ds = self.cfg, self.splits.train
        if isinstance(ds, TensorDataset):
            bs = cfg.batch_size
            steps = len(ds) // bs
            if steps == 0:
                raise SqueezeNetError(f"--batch-size {bs} is larger than the {len(ds)} training images")
            perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(cfg.seed * 7919 + epoch))
            local = bs // self.dist.world
            for step in range(steps):
                # Draw augmentation for the whole global batch on every rank, then slice,
                # so N processes see exactly what one process would.
                dy, dx, flip = augment_params(bs, self.spec.pad, self.aug_gen)
                if cfg.random_erasing > 0:
                    boxes = erase_boxes(bs, ds.images.shape[2], ds.images.shape[3], cfg.random_erasing, self.aug_gen)
                if step < self.step_in_epoch:
                    continue
                sl = slice(self.dist.rank * local, (self.dist.rank + 1) * local)
                idx = perm[step * bs:(step + 1) * bs][sl]
                x = augment_batch(ds.images[idx], self.spec.pad, dy[sl], dx[sl], flip[sl])
                if cfg.random_erasing > 0:
                    x = apply_erasing(x, boxes[sl])
                yield step, normalize(x, self.spec.mean, self.spec.std), ds.labels[idx]
        else:
            sampler = torch.utils.data.distributed.DistributedSampler(
                ds, self.dist.world, self.dist.rank, shuffle=True, seed=cfg.seed, drop_last=True)
            sampler.set_epoch(epoch)
            loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size // self.dist.world, sampler=sampler,
                                                 num_workers=cfg.workers, collate_fn=collate_skip_bad,
                                                 drop_last=True, persistent_workers=False)
            for step, batch in enumerate(loader):
                if step < self.step_in_epoch or batch is None:
                    continue
                yield step, batch[0], batch[1]

    def steps_per_epoch(self) -> int:
        ds = self.splits.train
        if isinstance(ds, TensorDataset):
            return len(ds) // self.cfg.batch_size
        return len(ds) // self.cfg.batch_size

    def autocast(self):
        if self.precision == "fp32":
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def train_epoch(self, epoch: int, bar) -> dict:
        cfg = self.cfg
        spe = self.steps_per_epoch()
        total = cfg.epochs * spe
        crit = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        self.ddp.train()
        loss_sum, correct, seen, t0 = 0.0, 0, 0, time.perf_counter()
        for step, x, y in self.batches(epoch):
            self._rng_at_step_start = torch.get_rng_state()
            # BN running stats change in forward; keep them to undo an interrupted step
            self._buffers_at_step_start = [b.detach().clone() for b in self.model.buffers()]
            lr = lr_at(cfg, self.global_step, total, spe)
            for g in self.optimizer.param_groups:
                g["lr"] = lr
            x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            y = y.to(self.device, non_blocking=True)
            with self.autocast():
                logits = self.ddp(x)
                loss = crit(logits.float(), y)
            if not torch.isfinite(loss):
                raise SqueezeNetError(
                    f"loss became {loss.item()} at epoch {epoch + 1} step {step + 1} (global step "
                    f"{self.global_step + 1}); lower --lr or try --recipe paper. Last good checkpoint: "
                    f"{self.out / 'last.pt'}")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.ema is not None:
                self.update_ema()
            self.step_in_epoch, self.global_step = step + 1, self.global_step + 1
            self._rng_at_step_start = None
            n = len(y)
            loss_sum += loss.item() * n
            correct += topk_correct(logits.detach().float(), y, (1,))[0]
            seen += n
            if bar is not None:
                rate = seen * self.dist.world / (time.perf_counter() - t0)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}",
                                lr=f"{lr:.3g}", img_s=f"{rate:.0f}", refresh=False)
            if cfg.max_steps and self.global_step >= cfg.max_steps:
                break
        dt = time.perf_counter() - t0
        return {"train_loss": loss_sum / max(seen, 1), "train_top1": 100.0 * correct / max(seen, 1),
                "lr": lr if seen else 0.0, "img_per_s": seen * self.dist.world / max(dt, 1e-9), "epoch_time_s": dt}

    def run(self) -> dict:
        cfg = self.cfg
        if cfg.resume:
            self.resume()
        elif self.dist.main and (self.out / "last.pt").exists():
            raise SqueezeNetError(f"'{self.out}' already holds a run; pass --resume to continue it or "
                                  "choose another --out (nothing was overwritten)")
        if self.dist.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.json").write_text(json.dumps(
                {**asdict(cfg), "resolved_precision": self.precision, "device": str(self.device),
                 "world_size": self.dist.world, "data_spec": self.spec.to_dict()}, indent=2))
            for note in self.splits.notes:
                print(f"note: {note}", file=sys.stderr)
        from tqdm import tqdm

        spe = self.steps_per_epoch()
        try:
            while self.epoch < cfg.epochs:
                epoch = self.epoch
                if self.rng_resume is not None and self.step_in_epoch > 0:
                    torch.set_rng_state(self.rng_resume["torch"])
                    self.aug_gen.manual_seed(cfg.seed * 104729 + epoch)
                else:
                    torch.manual_seed(cfg.seed * 104729 + epoch)
                    self.aug_gen.manual_seed(cfg.seed * 104729 + epoch)
                self.rng_resume = None
                bar = (tqdm(total=spe, initial=self.step_in_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                            leave=True, dynamic_ncols=True, file=sys.stderr)
                       if cfg.progress and self.dist.main else None)
                t0 = time.perf_counter()
                try:
                    row = self.train_epoch(epoch, bar)
                finally:
                    self.train_time += time.perf_counter() - t0
                    if bar is not None:
                        bar.close()
                if self.step_in_epoch < spe:  # stopped mid-epoch by --max-steps: keep it resumable
                    self.save("last.pt")
                    break
                row.update(self.evaluate_epoch())
                row.update(epoch=epoch + 1, train_time_s=self.train_time, peak_rss_mib=peak_rss_mib())
                self.history.append(row)
                self.epoch, self.step_in_epoch = epoch + 1, 0
                improved = row.get("test_top1", -1) > self.best_top1
                if improved:
                    self.best_top1 = row["test_top1"]
                self.save("last.pt")
                if improved:
                    self.save("best.pt")
                if self.dist.main:
                    _write_metrics(self.out, self.history)
                    print(f"epoch {epoch + 1}: train loss {row['train_loss']:.4f}, test top-1 "
                          f"{row['test_top1']:.2f}% top-5 {row['test_top5']:.2f}%, {row['img_per_s']:.0f} img/s",
                          file=sys.stderr)
                if cfg.max_steps and self.global_step >= cfg.max_steps:
                    break
        except KeyboardInterrupt:
            if self._rng_at_step_start is not None:  # undo the half-done step's BN updates
                with torch.no_grad():
                    for b, saved in zip(self.model.buffers(), self._buffers_at_step_start):
                        b.copy_(saved)
            self.save("last.pt")
            raise SqueezeNetError(f"interrupted at epoch {self.epoch + 1} step {self.step_in_epoch}; checkpoint saved "
                                  f"to {self.out / 'last.pt'}; continue with --resume --out {self.out}") from None
        result = self.finish()
        if self.dist.world > 1:
            dist.barrier()
        return result

    def evaluate_epoch(self) -> dict:
        if not self.dist.main:
            return {}
        m = evaluate(self.eval_model, self.splits.test, self.spec, self.device, self.cfg.eval_batch_size,
                     self.cfg.workers, channels_last=self.cfg.channels_last)
        self._last_confusion = m.pop("confusion")
        return {f"test_{k}": v for k, v in m.items() if k != "n"}

    def finish(self) -> dict:
        if not self.dist.main:
            return {}
        from .report import write_report

        final = self.history[-1] if self.history else {}
        conf = getattr(self, "_last_confusion", None)
        if conf is None:
            m = evaluate(self.eval_model, self.splits.test, self.spec, self.device, self.cfg.eval_batch_size)
            conf = m["confusion"]
        write_report(self.out, self, conf)
        return {"out": str(self.out), "best_top1": self.best_top1, "final": final,
                "train_time_s": self.train_time, "peak_rss_mib": peak_rss_mib()}


def _init_from_weights(model, path: str, num_classes: int):
    from .models.squeezenet import load_torchvision_weights

    keep = model.num_classes
    if keep != 1000:
        model.reset_classifier(1000)
    load_torchvision_weights(model, path)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model


def _write_metrics(out: Path, history: list[dict]):
    import csv

    with open(out / "metrics.jsonl", "w") as f:
        for row in history:
            f.write(json.dumps(row) + "\n")
    keys = list(history[0].keys())
    with open(out / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(history)


def train(cfg: TrainConfig) -> dict:
    """Train a model as configured; returns a summary dict (also in the run folder)."""
    return Trainer(cfg).run()
