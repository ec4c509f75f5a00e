"""Training: fast on a CPU, resumable, multi-process (torchrun), with a report.

``train(TrainConfig(...))`` is what ``squeezenet train`` calls. Small-image data is
held as uint8 tensors and augmented per batch; every random draw is derived from the
seed and the epoch, and the RNG states are stored in each checkpoint, so a run killed
at any step and resumed with ``--resume`` ends with the same weights as an
uninterrupted run (on CPU, same thread count). A run folder is locked while a run
writes to it (:class:`squeezenet.files.RunLock`).

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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from .formats.checkpoint import check_resume, check_resume_data, load_checkpoint, make_checkpoint
from .config import DEFAULT_MODEL, RECIPES, TrainConfig, resume_must_match  # noqa: F401  (re-exported)
from .data import TensorDataset, load_data, loader_batches, tensor_batches
from .ema import ModelEma
from .errors import Interrupted, SqueezeNetError
from .files import RunLock, atomic_write_text, ensure_writable_dir
from .metrics import evaluate, topk_correct
from .progress import Progress
from .factory import create_model

# Settings that shape the optimisation (marked in config.py): resuming with any of them
# changed would silently splice two different runs, so it is refused (the model and the
# data's classes and split are checked separately).
RESUME_MUST_MATCH = resume_must_match()


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
    return torch.device("cpu")


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
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


def model_options(cfg: TrainConfig) -> dict:
    opts = dict(cfg.model_options)
    if cfg.dropout is not None:
        opts["dropout"] = cfg.dropout
    if cfg.head_relu is not None:
        opts["head_relu"] = cfg.head_relu
    return opts


def check_input_size(name: str, opts: dict, size: int, channels: int = 3) -> None:
    """Refuse an input size the model cannot take, before any data is read (a
    forward pass on the meta device: shapes only, no memory)."""
    with torch.device("meta"):
        model = create_model(name, num_classes=2, in_chans=channels, **opts)
        try:
            model.eval()(torch.empty(1, channels, size, size))
        except RuntimeError as e:
            raise SqueezeNetError(f"'{name}' cannot take {size} px images ({str(e).splitlines()[0][:100]}); "
                                  "use a larger --input-size (or the _small stem for 28-64 px)") from e


def _check_forward(model: nn.Module, name: str, spec) -> None:
    """One eval-mode forward at the data's size before training (no state changes)."""
    was = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, spec.channels, spec.input_size, spec.input_size))
    except RuntimeError as e:
        raise SqueezeNetError(f"'{name}' cannot take {spec.input_size} px images ({str(e).splitlines()[0][:100]}); "
                              "use a larger --input-size (or the _small stem for 28-64 px)") from e
    finally:
        model.train(was)


class Trainer:
    """One training run. Use :func:`train` unless you need the pieces.

    ``after_step`` holds callables ``f(trainer)`` run after every optimizer step (the
    compression fine-tune re-applies its masks there)."""

    def __init__(self, cfg: TrainConfig, model: nn.Module | None = None, splits=None):
        self.cfg = cfg = cfg.resolved()
        self.dist = setup_distributed(cfg.device)
        self.device = resolve_device(cfg.device, self.dist.local_rank)
        self.precision = resolve_precision(cfg.precision, self.device)
        if cfg.batch_size % self.dist.world:
            raise SqueezeNetError(f"--batch-size {cfg.batch_size} must be divisible by the {self.dist.world} processes")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if model is None and cfg.input_size:
            check_input_size(cfg.model, model_options(cfg), cfg.input_size)
        self.out = Path(cfg.out)
        if self.dist.main:
            ensure_writable_dir(self.out)
        self.splits = splits or load_data(cfg.data, cfg.data_dir, cfg.input_size, cfg.val_fraction, cfg.seed,
                                          cfg.download)
        self.spec = self.splits.spec
        if cfg.train_subset:  # both the in-memory and the streaming datasets
            self.splits.train = self.splits.train.subset(cfg.train_subset)
        torch.manual_seed(cfg.seed)
        if model is None:
            model = create_model(cfg.model, num_classes=len(self.spec.classes), in_chans=self.spec.channels,
                                 **model_options(cfg))
            _check_forward(model, cfg.model, self.spec)
            if cfg.weights:
                model = _init_from_weights(model, cfg.weights, len(self.spec.classes))
        self.model_name = cfg.model
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = model.to(self.device).to(memory_format=self.memory_format)
        self.optimizer = torch.optim.SGD(param_groups(self.model, cfg.weight_decay), lr=cfg.lr,
                                         momentum=cfg.momentum, nesterov=cfg.nesterov)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.ema = ModelEma(self.model, cfg.ema) if cfg.ema > 0 else None
        self.ddp = self.model
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.after_step: list[Callable[["Trainer"], None]] = []
        self.history: list[dict] = []
        self.epoch, self.step_in_epoch, self.global_step, self.best_top1 = 0, 0, 0, -1.0
        self.train_time = 0.0
        self.stopped_early = False  # by --max-steps
        self.final_eval: dict | None = None
        self.aug_gen = torch.Generator()
        self.rng_resume = None
        self._rng_at_step_start = None
        self._buffers_at_step_start = None

    # ------------------------------------------------------------------ state
    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and exported: the EMA when it is on."""
        return self.ema.module if self.ema is not None else self.model

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
            config=self.cfg.to_dict(), torch_version=str(torch.__version__), data_split=self.splits.split,
        )

    def save(self, name: str = "last.pt"):
        if self.dist.main:
            from .files import atomic_save

            atomic_save(self.state(), self.out / name)

    def resume(self):
        path = self.out / "last.pt"
        if not path.is_file():
            raise SqueezeNetError(f"nothing to resume: '{path}' does not exist; drop --resume to start the run")
        ckpt = load_checkpoint(path)
        check_resume(ckpt, self.model_name, self.model.model_kwargs, self.cfg.to_dict(), RESUME_MUST_MATCH, path)
        check_resume_data(ckpt, self.spec.to_dict(), self.splits.split, path)
        if self.ema is not None:
            if "train_state_dict" not in ckpt:
                raise SqueezeNetError("cannot resume with --ema: the run was started without it")
            self.model.load_state_dict(ckpt["train_state_dict"])
            self.ema.module.load_state_dict(ckpt["state_dict"])
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
            return tensor_batches(ds, self.spec, cfg.batch_size, cfg.seed, epoch, self.aug_gen, self.step_in_epoch,
                                  self.dist.rank, self.dist.world, cfg.random_erasing)
        return loader_batches(ds, cfg.batch_size, cfg.seed, epoch, cfg.workers, self.step_in_epoch,
                              self.dist.rank, self.dist.world)

    def steps_per_epoch(self) -> int:
        return len(self.splits.train) // self.cfg.batch_size

    def autocast(self):
        if self.precision == "fp32":
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def train_step(self, x, y, lr: float, crit) -> tuple[torch.Tensor, torch.Tensor]:
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        y = y.to(self.device, non_blocking=True)
        with self.autocast():
            logits = self.ddp(x)
            loss = crit(logits.float(), y)
        if not torch.isfinite(loss):
            raise SqueezeNetError(
                f"loss became {loss.item()} at epoch {self.epoch + 1} step {self.step_in_epoch + 1} (global step "
                f"{self.global_step + 1}); lower --lr or try --recipe paper. Last good checkpoint: "
                f"{self.out / 'last.pt'}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return logits, loss

    def train_epoch(self, epoch: int) -> dict:
        cfg, spe = self.cfg, self.steps_per_epoch()
        crit = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        bar = Progress(spe, f"epoch {epoch + 1}/{cfg.epochs}", self.step_in_epoch) if cfg.progress and self.dist.main \
            else None
        self.ddp.train()
        loss_sum, correct, seen, lr, t0 = 0.0, 0, 0, 0.0, time.perf_counter()
        try:
            for step, x, y in self.batches(epoch):
                self._rng_at_step_start = torch.get_rng_state()
                # BN running stats change in forward; keep them to undo an interrupted step
                self._buffers_at_step_start = [b.detach().clone() for b in self.model.buffers()]
                lr = lr_at(cfg, self.global_step, cfg.epochs * spe, spe)
                logits, loss = self.train_step(x, y, lr, crit)
                if self.ema is not None:
                    self.ema.update(self.global_step)
                self.step_in_epoch, self.global_step = step + 1, self.global_step + 1
                self._rng_at_step_start = None
                loss_sum += loss.item() * len(y)
                correct += topk_correct(logits.detach().float(), y.to(logits.device), (1,))[0]
                seen += len(y)
                for hook in self.after_step:
                    hook(self)
                if bar is not None:
                    rate = seen * self.dist.world / (time.perf_counter() - t0)
                    bar.update(1, loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}", lr=f"{lr:.3g}",
                               img_s=f"{rate:.0f}")
                if cfg.max_steps and self.global_step >= cfg.max_steps and self.step_in_epoch < spe:
                    self.stopped_early = True
                    break
        finally:
            if bar is not None:
                bar.close()
        dt = time.perf_counter() - t0
        return {"train_loss": loss_sum / max(seen, 1), "train_top1": 100.0 * correct / max(seen, 1),
                "lr": lr, "img_per_s": seen * self.dist.world / max(dt, 1e-9), "epoch_time_s": dt}

    def seed_epoch(self, epoch: int) -> None:
        if self.rng_resume is not None and self.step_in_epoch > 0:
            torch.set_rng_state(self.rng_resume["torch"])
        else:
            torch.manual_seed(self.cfg.seed * 104729 + epoch)
        self.aug_gen.manual_seed(self.cfg.seed * 104729 + epoch)
        self.rng_resume = None

    def run(self) -> dict:
        if not self.dist.main:
            return self._run()
        with RunLock(self.out):
            return self._run()

    def _run(self) -> dict:
        cfg = self.cfg
        if cfg.resume:
            self.resume()
        elif self.dist.main and (self.out / "last.pt").exists():
            raise SqueezeNetError(f"'{self.out}' already holds a run; pass --resume to continue it or "
                                  "choose another --out (nothing was overwritten)")
        if self.dist.main:
            self._write_config()
        try:
            while self.epoch < cfg.epochs and not self.stopped_early:
                self.seed_epoch(self.epoch)
                t0 = time.perf_counter()
                try:
                    row = self.train_epoch(self.epoch)
                finally:
                    self.train_time += time.perf_counter() - t0
                if self.stopped_early:  # mid-epoch, by --max-steps: keep it resumable
                    self.save("last.pt")
                    break
                self.end_epoch(row)
                if cfg.max_steps and self.global_step >= cfg.max_steps:
                    self.stopped_early = self.epoch < cfg.epochs
                    break
        except KeyboardInterrupt:
            self._undo_partial_step()
            self.save("last.pt")
            raise Interrupted(f"interrupted at epoch {self.epoch + 1} step {self.step_in_epoch}; checkpoint saved to "
                              f"{self.out / 'last.pt'}; continue with: squeezenet train --resume --out {self.out}"
                              ) from None
        result = self.finish()
        if self.dist.world > 1:
            dist.barrier()
        return result

    def _write_config(self) -> None:
        atomic_write_text(self.out / "config.json", json.dumps(self.cfg.to_dict(), indent=2))
        atomic_write_text(self.out / "run.json", json.dumps(
            {"resolved_precision": self.precision, "device": str(self.device), "world_size": self.dist.world,
             "torch_version": str(torch.__version__), "data_spec": self.spec.to_dict(),
             "data_split": self.splits.split}, indent=2))
        for note in self.splits.notes:
            print(f"note: {note}", file=sys.stderr)

    def _undo_partial_step(self) -> None:
        if self._rng_at_step_start is not None and self._buffers_at_step_start is not None:
            with torch.no_grad():
                for b, saved in zip(self.model.buffers(), self._buffers_at_step_start):
                    b.copy_(saved)

    def end_epoch(self, row: dict) -> None:
        row.update(self.evaluate_epoch())
        row.update(epoch=self.epoch + 1, train_time_s=self.train_time, peak_rss_mib=peak_rss_mib())
        self.history.append(row)
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        improved = row.get("test_top1", -1) > self.best_top1
        if improved:
            self.best_top1 = row["test_top1"]
        self.save("last.pt")
        if improved:
            self.save("best.pt")
        if self.dist.main:
            _write_metrics(self.out, self.history)
            print(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}, test top-1 {row['test_top1']:.2f}% "
                  f"top-5 {row['test_top5']:.2f}%, {row['img_per_s']:.0f} img/s", file=sys.stderr)

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
        from .report import RunSummary, write_report

        conf = getattr(self, "_last_confusion", None)
        if not self.history:  # stopped before an epoch ended: evaluate what there is, once
            m = evaluate(self.eval_model, self.splits.test, self.spec, self.device, self.cfg.eval_batch_size,
                         self.cfg.workers, channels_last=self.cfg.channels_last)
            conf = m.pop("confusion")
            self.final_eval = {f"test_{k}": v for k, v in m.items() if k != "n"}
        final = self.history[-1] if self.history else dict(self.final_eval)
        summary = RunSummary(
            model_name=self.model_name, cfg=self.cfg, spec=self.spec, device=str(self.device),
            precision=self.precision, world=self.dist.world, train_time=self.train_time, history=self.history,
            best_top1=self.best_top1 if self.history else None, final=final, global_step=self.global_step,
            stopped_early=self.stopped_early, peak_rss_mib=peak_rss_mib(), confusion=conf,
            files=sorted(p.name for p in self.out.iterdir() if p.is_file() and not p.name.startswith(".")))
        write_report(self.out, summary, self.eval_model)
        return {"out": str(self.out), "best_top1": summary.best_top1, "final": final, "epochs_done": self.epoch,
                "global_step": self.global_step, "stopped_early": self.stopped_early,
                "train_time_s": self.train_time, "peak_rss_mib": summary.peak_rss_mib}


def _init_from_weights(model, path: str, num_classes: int):
    """ImageNet weights (torchvision's SqueezeNet file or the model's own layout) into the
    1000-class model, then a fresh classifier for the data's classes."""
    from .formats.open import load_weights_into

    if model.num_classes != 1000:
        model.reset_classifier(1000)
    load_weights_into(model, "the model", path)
    if num_classes != 1000:
        model.reset_classifier(num_classes)
    return model


def _write_metrics(out: Path, history: list[dict]):
    import csv
    import io

    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0].keys()))
    w.writeheader()
    w.writerows(history)
    atomic_write_text(out / "metrics.csv", buf.getvalue())


def train(cfg: TrainConfig) -> dict:
    """Train a model as configured; returns a summary dict (also in the run folder)."""
    return Trainer(cfg).run()
