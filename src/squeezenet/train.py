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

import functools
import json
import math
import os
import resource
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .formats.checkpoint import check_resume, check_resume_data, load_checkpoint, make_checkpoint
from .config import AUTO_ERASING, TrainConfig, resume_must_match
from .batches import loader_batches, tensor_batches
from .budget import BudgetPlanner, Plan, parse_duration
from .data import TensorDataset, load_data
from .ema import ModelEma
from .errors import Interrupted, SqueezeNetError
from .log import note, say
from .files import RunLock, atomic_write_text, writable_dir_kept_on_success
from .machine import check_threads, fit_torch_threads
from .metrics import evaluate, topk_correct
from .progress import Progress
from . import resizing
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
        index = local_rank if device == "cuda" else int(device.split(":")[1])
        if index >= (n := torch.cuda.device_count()):
            have = f"this machine has {n} GPU(s) (cuda:0-{n - 1})"
            raise SqueezeNetError(f"torchrun process {local_rank} needs GPU cuda:{index}, but {have}; run at most "
                                  f"one process per GPU (torchrun --nproc_per_node={n})" if device == "cuda" else
                                  f"--device {device} names a GPU this machine lacks: {have}")
        return torch.device("cuda", index)
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


def check_input_size(model: nn.Module, name: str, size: int, channels: int) -> None:
    """Refuse, in one line, an input size the model cannot take: one eval-mode forward
    with no state change (on the meta device before any data is read, when --input-size
    says the size; on the built model at the data's own size otherwise)."""
    was = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, channels, size, size, device=next(model.parameters()).device))
    except RuntimeError as e:
        raise SqueezeNetError(f"'{name}' cannot take {size} px images ({str(e).splitlines()[0][:100]}); "
                              "use a larger --input-size (or the _small stem for 28-64 px)") from e
    finally:
        model.train(was)


class NonFiniteLoss(Exception):
    pass


def cross_entropy(label_smoothing: float = 0.0):
    """The default loss, in the trainer's ``criterion(logits, y, x)`` form."""
    ce = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    return lambda logits, y, x: ce(logits, y)


def distillation_loss(teacher: nn.Module, temperature: float = 1.0):
    """The loss of a fine-tune that should reproduce ``teacher`` (quantization-aware
    training, ``compress --distill``), in the ``criterion(logits, y, x)`` form: the KL
    divergence from the teacher's softened outputs to the student's, times T^2 (Hinton et
    al. 2015, arXiv:1503.02531). Soft targets carry more per image than a label and are
    the quantity a compression drop measures; the labels ``y`` are not used."""
    teacher = teacher.eval().requires_grad_(False)
    t = float(temperature)

    def loss(logits, y, x):
        with torch.no_grad():
            target = F.log_softmax(teacher(x).float() / t, 1)
        return F.kl_div(F.log_softmax(logits / t, 1), target, log_target=True, reduction="batchmean") * t * t

    return loss


class StepRunner:
    """One optimizer step: the forward under autocast at the run's precision, the loss and
    its finiteness check (before any weight changes), backward through the GradScaler,
    the update."""

    def __init__(self, net: nn.Module, optimizer, scaler, device: torch.device, precision: str, memory_format):
        self.net, self.optimizer, self.scaler = net, optimizer, scaler
        self.device, self.precision, self.memory_format = device, precision, memory_format

    def autocast(self):
        if self.precision == "fp32":
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def __call__(self, x, y, lr: float, crit) -> tuple[torch.Tensor, torch.Tensor]:
        """``crit(logits, y, x)``: the loss (see :func:`cross_entropy`)."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        x = x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        y = y.to(self.device, non_blocking=True)
        with self.autocast():
            logits = self.net(x)
            loss = crit(logits.float(), y, x)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(loss.item())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return logits, loss


@dataclass
class EpochStats:
    """Running loss, top-1 and images/s of one epoch (all processes counted)."""

    world: int = 1
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0
    lr: float = 0.0
    t0: float = 0.0

    def __post_init__(self):
        self.t0 = time.perf_counter()

    def add(self, logits, y, loss, lr: float) -> None:
        self.loss_sum += loss.item() * len(y)
        y = y.argmax(1) if y.dim() == 2 else y  # CutMix's mixed labels: the larger share counts
        self.correct += topk_correct(logits.detach().float(), y.to(logits.device), (1,))[0]
        self.seen += len(y)
        self.lr = lr

    def postfix(self) -> dict:
        rate = self.seen * self.world / (time.perf_counter() - self.t0)
        return dict(loss=f"{self.loss_sum / self.seen:.3f}", acc=f"{100 * self.correct / self.seen:.1f}",
                    lr=f"{self.lr:.3g}", img_s=f"{rate:.0f}")

    def row(self) -> dict:
        dt, n = time.perf_counter() - self.t0, max(self.seen, 1)
        return {"train_loss": self.loss_sum / n, "train_top1": 100.0 * self.correct / n, "lr": self.lr,
                "img_per_s": self.seen * self.world / max(dt, 1e-9), "epoch_time_s": dt}


class Trainer:
    """One training run. Use :func:`train` unless you need the pieces.

    ``after_step`` holds callables ``f(trainer)`` run after every optimizer step (the
    compression fine-tune re-applies its masks there); ``criterion(logits, y, x)`` is the
    loss (cross-entropy, or distillation after :meth:`distil_from`); ``on_epoch(row)`` is
    called with every finished epoch's metrics (a sweep engine reports them, e.g. to Ray Tune)."""

    def __init__(self, cfg: TrainConfig, model: nn.Module | None = None, splits=None,
                 on_epoch: Callable[[dict], None] | None = None):
        self.cfg = cfg.resolved()
        self.model_name = self.cfg.model
        self.dist, self.device, self.precision = setup_runtime(self.cfg)
        if model is None:
            check_model_early(self.cfg)
        self.out = Path(self.cfg.out)
        with writable_dir_kept_on_success(self.out) if self.dist.main else nullcontext():
            self.splits = training_data(self.cfg, splits)
            self.spec = self.splits.spec
            if self.steps_per_epoch() < 1:
                raise SqueezeNetError(f"--batch-size {self.cfg.batch_size} is larger than the "
                                      f"{len(self.splits.train)} training images, so an epoch has no step; use "
                                      f"--batch-size {max(len(self.splits.train), 1)} or smaller, or more images")
            self._setup_model(model)
        self.after_step: list[Callable[["Trainer"], None]] = []
        self.on_epoch = on_epoch
        self.criterion = cross_entropy(self.cfg.label_smoothing)  # (logits, y, x) -> loss
        self.total_steps = self.cfg.epochs * self.steps_per_epoch()  # a time budget re-plans it
        self.budget: TimeBudget | None = None
        self.clock = time.perf_counter  # the budget's clock (tests give a fake one)
        self.budget_state: dict = {}  # a resumed run's budget: time spent, plans
        self.erasing: dict | None = None  # `--random-erasing auto` once decided: p, from_epoch, epochs, streamed
        self.history: list[dict] = []
        self.epoch, self.step_in_epoch, self.global_step, self.best_top1 = 0, 0, 0, -1.0
        self.train_time = 0.0
        self.stopped_early = False  # by --max-steps
        self.final_eval: dict | None = None
        self.aug_gen = torch.Generator()
        self.rng_resume = None
        self._rng_at_step_start = None
        self._buffers_at_step_start = None

    def _setup_model(self, model) -> None:
        """The model (built for the data's classes and channels unless given), on its
        device and memory format, with its optimizer, scaler, EMA, DDP wrapper and step."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        model = model if model is not None else build_model(cfg, self.spec)
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
        self.step = StepRunner(self.ddp, self.optimizer, self.scaler, self.device, self.precision, self.memory_format)

    def distil_from(self, teacher: nn.Module) -> None:
        """Train on ``teacher``'s outputs instead of the labels (:func:`distillation_loss`);
        the teacher is moved to the run's device and memory format (pass a copy to keep it)."""
        self.criterion = distillation_loss(teacher.to(self.device).to(memory_format=self.memory_format))

    # ------------------------------------------------------------------ state
    @property
    def eval_model(self) -> nn.Module:
        """The weights that are evaluated and exported: the EMA when it is on."""
        return self.ema.module if self.ema is not None else self.model

    def state(self) -> dict:
        return trainer_state(self)

    def save(self, name: str = "last.pt"):
        if self.dist.main:
            from .files import atomic_save

            atomic_save(self.state(), self.out / name)

    def resume(self):
        restore_trainer(self, self.out / "last.pt")

    # ------------------------------------------------------------------ loop
    def batches(self, epoch: int):
        """Yield (step, inputs, labels) for this rank, for the rest of the epoch."""
        cfg, ds = self.cfg, self.splits.train
        if isinstance(ds, TensorDataset):
            return tensor_batches(ds, self.spec, cfg.batch_size, cfg.seed, epoch, self.aug_gen, self.step_in_epoch,
                                  self.dist.rank, self.dist.world, self.erasing_at(epoch), cfg.cutmix)
        return loader_batches(ds, cfg.batch_size, cfg.seed, epoch, cfg.workers, self.step_in_epoch,
                              self.dist.rank, self.dist.world)

    def erasing_at(self, epoch: int) -> float:
        """This epoch's random-erasing probability: ``--random-erasing``, or under ``auto``
        :data:`squeezenet.config.AUTO_ERASING`'s, decided once, at the first epoch that starts
        with the schedule's length known (a time budget knows it from its first plan), and
        kept in the checkpoint, so a resumed run erases exactly where it would have."""
        p = self.cfg.random_erasing
        if p != "auto":
            return p
        if self.erasing is None and self.step_in_epoch == 0 and self.schedule_known:
            streamed = not isinstance(self.splits.train, TensorDataset)
            on = self.n_epochs >= AUTO_ERASING["min_epochs"] and not streamed
            self.erasing = {"p": AUTO_ERASING["p"] if on else 0.0, "from_epoch": epoch, "epochs": self.n_epochs,
                            "streamed": streamed}
        return self.erasing["p"] if self.erasing is not None and epoch >= self.erasing["from_epoch"] else 0.0

    def steps_per_epoch(self) -> int:
        return len(self.splits.train) // self.cfg.batch_size

    @functools.cached_property
    def low_px(self) -> int:
        """The size --progressive-resizing starts at, in px (its share of the full size
        resolved, :func:`squeezenet.resizing.start_px`); 0: off. Resolved once: the settings
        and the data's size are fixed for the run, and every step reads it."""
        return resizing.start_px(self.cfg.progressive_resizing, self.spec.input_size)

    def train_px(self, step: int | None = None) -> int:
        """The image size a global step trains at: the data's, or under
        --progressive-resizing the schedule's (:func:`squeezenet.resizing.resolution_at`)."""
        full, low = self.spec.input_size, self.low_px
        if not low:
            return full
        return resizing.resolution_at(self.global_step if step is None else step, self.total_steps, low, full,
                                      self.cfg.progressive_resizing_until)

    @property
    def n_epochs(self) -> int:
        """Epochs the schedule spans (the last may be partial under a time budget)."""
        return -(-self.total_steps // self.steps_per_epoch())

    @property
    def schedule_known(self) -> bool:
        """Whether :attr:`n_epochs` is the schedule's: a time budget sets it at its first plan."""
        return self.budget is None or bool(self.budget.planner.plans)

    def epochs_label(self) -> str:
        """The epoch count a progress line shows: '?' until a time budget has made its first plan."""
        return str(self.n_epochs) if self.schedule_known else "?"

    def train_epoch(self, epoch: int) -> dict:
        cfg, spe = self.cfg, self.steps_per_epoch()
        crit = self.criterion
        bar = Progress(spe, f"epoch {epoch + 1}/{self.epochs_label()}", self.step_in_epoch) \
            if cfg.progress and self.dist.main else None
        self.ddp.train()
        stats = EpochStats(self.dist.world)
        try:
            for step, x, y in self.batches(epoch):
                self._rng_at_step_start = torch.get_rng_state()
                # BN running stats change in forward; keep them to undo an interrupted step
                self._buffers_at_step_start = [b.detach().clone() for b in self.model.buffers()]
                lr = lr_at(cfg, self.global_step, self.total_steps, spe)
                if self.low_px:
                    x = resizing.resize(x, self.train_px())
                try:
                    logits, loss = self.step(x, y, lr, crit)
                except NonFiniteLoss as e:
                    raise diverged(self, e.args[0]) from None
                if self.ema is not None:
                    self.ema.update(self.global_step)
                self.step_in_epoch, self.global_step = step + 1, self.global_step + 1
                self._rng_at_step_start = None
                stats.add(logits, y, loss, lr)
                for hook in self.after_step:
                    hook(self)
                if bar is not None:
                    bar.update(1, **stats.postfix())
                if self.budget is not None:
                    self.budget.after_step()
                if self.global_step >= self.total_steps:  # the schedule is complete (a budget's may end mid-epoch)
                    break
                if cfg.max_steps and self.global_step >= cfg.max_steps and self.step_in_epoch < spe:
                    self.stopped_early = True
                    break
        finally:
            if bar is not None:
                bar.close()
        row = stats.row()
        if self.low_px:  # the size of the epoch's last step
            row["train_px"] = self.train_px(self.global_step - 1)
        if cfg.random_erasing == "auto":  # what `auto` chose for this epoch
            row["random_erasing"] = self.erasing_at(epoch)
        return row

    def seed_epoch(self, epoch: int) -> None:
        seed_epoch(self, epoch)

    def run(self) -> dict:
        if not self.dist.main:
            return self._run()
        with RunLock(self.out):
            return self._run()

    def _run(self) -> dict:
        cfg = self.cfg
        if cfg.resume:
            self.resume()
            if cfg.max_steps and self.global_step >= cfg.max_steps:
                raise SqueezeNetError(f"--max-steps {cfg.max_steps} is not past the {self.global_step} steps "
                                      f"'{self.out}' has already trained; give a larger --max-steps, or none")
            if self.epoch >= self.n_epochs:
                note(f"'{self.out}' had already finished ({self.epoch} epoch(s) trained); nothing was trained (the report "
                     "is rewritten)")
        elif self.dist.main and (self.out / "last.pt").exists():
            raise SqueezeNetError(f"'{self.out}' already holds a run; pass --resume to continue it or "
                                  "choose another --out (nothing was overwritten)")
        if self.dist.main:
            write_run_files(self)
        if cfg.time_budget:
            self.budget = TimeBudget(self, self.clock)
        try:
            while self.epoch < self.n_epochs and not self.stopped_early:
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
                    self.stopped_early = self.epoch < self.n_epochs
                    break
        except KeyboardInterrupt:
            undo_partial_step(self)
            self.save("last.pt")
            raise Interrupted(f"interrupted at epoch {self.epoch + 1} step {self.step_in_epoch}; checkpoint saved to "
                              f"{self.out / 'last.pt'}; continue with: squeezenet train --resume --out {self.out}"
                              ) from None
        result = self.finish()
        if self.dist.world > 1:
            dist.barrier()
        return result

    def end_epoch(self, row: dict) -> None:
        trained_at = self.budget.now() if self.budget is not None else None
        ended = self.global_step >= self.total_steps  # the schedule's end
        if self.dist.main:
            metrics, self._last_confusion = self._evaluate(flip_top1_too=self.checks_flip_tta and ended)
            row.update(metrics)
        row.update(epoch=self.epoch + 1, train_time_s=self.train_time, peak_rss_mib=peak_rss_mib())
        self.history.append(row)
        self.epoch, self.step_in_epoch = self.epoch + 1, 0
        improved = row.get("test_top1", -1) > self.best_top1
        self.best_top1 = max(self.best_top1, row.get("test_top1", -1))
        self._record_epoch(improved)
        if self.dist.main and self.on_epoch is not None:
            self.on_epoch(dict(row))
        if self.budget is not None:
            self.budget.after_epoch(trained_at)
            if not ended and self.global_step >= self.total_steps:
                self._end_schedule_here(row, improved)

    def _end_schedule_here(self, row: dict, improved: bool) -> None:
        """The epoch end's re-plan, made after its evaluation and checkpoints (it times them),
        moved the schedule's end to this step: the budget has no room for another. The run
        ends here, so it finishes as any schedule's end does: the final evaluation gets its
        flip-TTA top-1, and the checkpoints are written again with the schedule that was
        trained (a resume must find the run finished, not train on past its end)."""
        if self.dist.main and self.checks_flip_tta:
            metrics, self._last_confusion = self._evaluate(flip_top1_too=True)
            row.update(metrics)
        self._record_epoch(improved)

    def _record_epoch(self, improved: bool) -> None:
        """The epoch's checkpoints (best.pt too when it improved) and its metrics files."""
        self.save("last.pt")
        if improved:
            self.save("best.pt")
        if self.dist.main:
            log_epoch(self.out, self.history)

    @property
    def checks_flip_tta(self) -> bool:
        """Small-image runs also score the final weights with flip TTA (one more cheap pass,
        over the mirrored images), so the report can say what `export --tta flip` would ship."""
        return bool(self.spec.small)

    def _evaluate(self, flip_top1_too: bool = False) -> tuple[dict, list]:
        """({"test_top1": ..., ...}, confusion matrix) of the weights that are saved
        (with ``test_tta_top1`` too when ``flip_top1_too``)."""
        m = evaluate(self.eval_model, self.splits.test, self.spec, self.device, self.cfg.eval_batch_size,
                     self.cfg.workers, channels_last=self.cfg.channels_last, flip_top1_too=flip_top1_too)
        conf = m.pop("confusion")
        return {f"test_{k}": v for k, v in m.items() if k != "n"}, conf

    def finish(self) -> dict:
        return finish_run(self) if self.dist.main else {}


class TimeBudget:
    """``--time-budget``: measures the run and lets :class:`squeezenet.budget.BudgetPlanner`
    fit ``trainer.total_steps`` to the clock (the planner is pure; this is the timing)."""

    def __init__(self, tr: Trainer, clock=time.perf_counter):
        self.tr, self.clock = tr, clock
        spent = float(tr.budget_state.get("spent", 0.0))
        self.planner = BudgetPlanner(parse_duration(tr.cfg.time_budget), tr.steps_per_epoch(), clock, spent=spent,
                                     plans=[Plan(**p) for p in tr.budget_state.get("plans", [])],
                                     final_evals=1.0 if tr.checks_flip_tta else 0.0)
        self.px_cost = {int(k): v for k, v in tr.budget_state.get("px_cost", {}).items()}  # size -> relative step cost
        if tr.low_px:
            self.planner.work = self._work
        self.planner.start()
        self.mark = (tr.global_step, self.now())  # where the step time is measured from
        self.untimed_until = tr.global_step + (0 if self.planner.plans else self.planner.untimed_steps())
        self.eval_s = plans[-1].eval_s if (plans := self.planner.plans) else 0.0  # an epoch end's evaluation + checkpoint
        if not self.planner.plans:
            tr.total_steps = 10 ** 9  # until the first plan: warm-up does not depend on the total

    def now(self) -> float:
        if self.tr.device.type == "cuda":
            torch.cuda.synchronize(self.tr.device)
        return self.clock()

    def after_step(self) -> None:
        """Plan once the first steps are measured; then check the step time a few times
        per epoch (the planner says when) and re-plan if it drifted."""
        tr, planner = self.tr, self.planner
        measured = tr.global_step - self.mark[0]
        if not planner.plans:
            if tr.global_step <= self.untimed_until:  # one-off costs (autotuning, allocation): not the rate
                if tr.global_step == self.untimed_until:
                    self.mark = (tr.global_step, self.now())
                return
            if measured < planner.measure_steps():
                return
            seconds = self.now() - self.mark[1]
            if tr.low_px and tr.dist.main:
                self.px_cost = self._price_sizes()
            step_s = planner.observe(self._steps_since_mark(), seconds)
            self.eval_s = self._estimate_eval_s() + self._estimate_save_s() if tr.dist.main else 0.0  # rank 0 plans
            self._plan(planner.plan, step_s, self.eval_s, 0.0)
            self.mark = (tr.global_step, self.now())  # the pricing above is not a step
        elif planner.check_due(tr.global_step, measured):  # the rate over the latest intervals (planner.observe)
            now = self.now()
            self._plan(planner.maybe_replan, planner.observe(self._steps_since_mark(), now - self.mark[1]), self.eval_s,
                       0.0)
            self.mark = (tr.global_step, now)

    def after_epoch(self, trained_at: float) -> None:
        """Re-plan from the step time since the last check and this epoch end's evaluation
        and checkpoint time (``trained_at``: the clock when its last step ended)."""
        tr, now = self.tr, self.now()
        steps = tr.global_step - self.mark[0]
        if steps > 0 and self.planner.plans:
            self.eval_s = now - trained_at
            step_s = self.planner.observe(self._steps_since_mark(), trained_at - self.mark[1])
            self._plan(self.planner.maybe_replan, step_s, self.eval_s, 0.0)
        self.mark = (tr.global_step, self.now())

    def _plan(self, how, step_s: float, eval_s: float, save_s: float) -> None:
        """Rank 0 plans (or keeps its plan) for every process. The others record rank 0's
        total as their plan, so that all of them check the step time at the same steps:
        a process that checked alone would join a broadcast the others never make."""
        tr, planner = self.tr, self.planner
        plan = how(tr.global_step, step_s, eval_s, save_s) if tr.dist.main else None
        total = plan.total_steps if plan is not None else tr.total_steps
        if tr.dist.world > 1:
            t = torch.tensor([total], device=tr.device if tr.device.type == "cuda" else "cpu")
            dist.broadcast(t, 0)
            total = int(t.item())
            if not tr.dist.main and (not planner.plans or planner.plans[-1].total_steps != total):
                planner.plans.append(Plan(total, step_s, eval_s, 0, 0.0, tr.global_step))
        tr.total_steps = total

    def _steps_since_mark(self) -> float:
        """The steps since the last check point, in full-size steps (their number unless
        --progressive-resizing made some of them cheaper)."""
        return self.planner.steps_work(self.mark[0], self.tr.global_step, self.tr.total_steps)

    def _work(self, start: int, end: int, total: int) -> float:
        tr = self.tr
        if not self.px_cost:  # other ranks: rank 0 plans; any consistent count will do
            return float(end - start)
        return resizing.work(start, end, total, tr.low_px, tr.spec.input_size, self.px_cost,
                             tr.cfg.progressive_resizing_until)

    def _price_sizes(self) -> dict[int, float]:
        """Each size's step cost relative to the full size's, timed on a copy of the model
        (:func:`squeezenet.resizing.price_sizes`) with this budget's clock."""
        tr = self.tr
        return resizing.price_sizes(tr.model, resizing.levels(tr.low_px, tr.spec.input_size),
                                    tr.cfg.batch_size // tr.dist.world, tr.spec.channels, tr.device,
                                    tr.memory_format, tr.step.autocast, self.now)

    def _estimate_eval_s(self) -> float:
        """One evaluation pass, priced by timing up to one evaluation batch."""
        tr = self.tr
        n = min(len(tr.splits.test), tr.cfg.eval_batch_size)
        t = self.now()
        evaluate(tr.eval_model, tr.splits.test.subset(n), tr.spec, tr.device, tr.cfg.eval_batch_size, 0,
                 channels_last=tr.cfg.channels_last)
        return (self.now() - t) * len(tr.splits.test) / max(n, 1)

    def _estimate_save_s(self) -> float:
        """A checkpoint: serialising the state (writing it is as fast or faster)."""
        import io

        t = self.clock()
        torch.save(self.tr.state(), io.BytesIO())
        return 2 * (self.clock() - t)  # last.pt, and best.pt when it improves

    def state(self) -> dict:
        """What the checkpoint and the report keep: the budget, the time spent, the plans."""
        from dataclasses import asdict

        return {"budget_s": self.planner.budget_s, "spent": self.planner.elapsed(),
                "plans": [asdict(p) for p in self.planner.plans],
                **({"px_cost": {str(k): v for k, v in self.px_cost.items()}} if self.px_cost else {})}


def setup_runtime(cfg: TrainConfig) -> tuple[DistInfo, torch.device, str]:
    """Processes (torchrun), device, precision and threads of a run."""
    info = setup_distributed(cfg.device)
    device = resolve_device(cfg.device, info.local_rank)
    if cfg.batch_size % info.world:
        raise SqueezeNetError(f"--batch-size {cfg.batch_size} must be divisible by the {info.world} processes")
    if cfg.threads:
        check_threads(cfg.threads)
        torch.set_num_threads(cfg.threads)
    else:
        fit_torch_threads()  # a container's CPU quota, which OpenMP does not see
    return info, device, resolve_precision(cfg.precision, device)


def check_model_early(cfg: TrainConfig) -> None:
    """The model's name and options, and --input-size when given, checked before any data
    is read: the model built, and run, on the meta device (no memory)."""
    with torch.device("meta"):
        meta = create_model(cfg.model, num_classes=2, in_chans=3, **model_options(cfg))
    if cfg.input_size:
        check_input_size(meta, cfg.model, cfg.input_size, 3)
        check_progressive_resizing(cfg, meta, cfg.input_size, 3)


def check_progressive_resizing(cfg: TrainConfig, model: nn.Module, full: int, channels: int) -> None:
    """Refuse, in one line, a --progressive-resizing size that is not below the training
    size or that the model cannot take."""
    low = resizing.start_px(cfg.progressive_resizing, full)
    if cfg.progressive_resizing and not low:  # a share that leaves no smaller size
        note(f"--progressive-resizing {cfg.progressive_resizing} of the {full} px the run trains at leaves no size "
             f"of at least 8 px below it: training at {full} px throughout")
    if not low:
        return
    if low >= full:
        raise SqueezeNetError(f"--progressive-resizing {low} is not below the {full} px the run trains at; give a "
                              f"smaller size (e.g. {max(8, full * 3 // 4)}) or 0 to train at {full} px throughout")
    check_input_size(model, cfg.model, low, channels)


def training_data(cfg: TrainConfig, splits=None):
    """The run's splits (loaded unless given), the training set cut to --train-subset."""
    splits = splits or load_data(cfg.data, cfg.data_dir, cfg.input_size, cfg.val_fraction, cfg.seed, cfg.download)
    if cfg.train_subset and cfg.train_subset >= len(splits.train):
        note(f"--train-subset {cfg.train_subset} is not below the {len(splits.train)} training images: training "
             "on all of them")
    elif cfg.train_subset:  # both the in-memory and the streaming datasets; every class, not a folder's first few
        splits.train = splits.train.spread(cfg.train_subset)
    per_batch = {"--random-erasing": cfg.random_erasing != "auto" and cfg.random_erasing, "--cutmix": cfg.cutmix}
    if not isinstance(splits.train, TensorDataset) and any(per_batch.values()):  # `auto` there is simply off
        flag = next(k for k, v in per_batch.items() if v)
        raise SqueezeNetError(f"{flag} applies to small images held in memory; {cfg.data} is streamed from files "
                              f"(large images), so it would be ignored: drop {flag} or set it to 0")
    return splits


def diverged(tr: Trainer, loss: float) -> SqueezeNetError:
    return SqueezeNetError(f"loss became {loss} at epoch {tr.epoch + 1} step {tr.step_in_epoch + 1} (global step "
                           f"{tr.global_step + 1}); lower --lr or try --recipe paper. Last good checkpoint: "
                           f"{tr.out / 'last.pt'}")


def build_model(cfg: TrainConfig, spec) -> nn.Module:
    """The configured model for the data's classes and channels (ImageNet weights with
    --weights), checked at the data's size unless --input-size was checked already."""
    model = create_model(cfg.model, num_classes=len(spec.classes), in_chans=spec.channels, **model_options(cfg))
    if not cfg.input_size:
        check_input_size(model, cfg.model, spec.input_size, spec.channels)
        check_progressive_resizing(cfg, model, spec.input_size, spec.channels)
    return _init_from_weights(model, cfg.weights, len(spec.classes)) if cfg.weights else model


def undo_partial_step(tr: Trainer) -> None:
    """Ctrl-C inside a step: put back the BatchNorm statistics its forward changed."""
    if tr._rng_at_step_start is not None and tr._buffers_at_step_start is not None:
        with torch.no_grad():
            for b, saved in zip(tr.model.buffers(), tr._buffers_at_step_start):
                b.copy_(saved)


def log_epoch(out: Path, history: list[dict]) -> None:
    """metrics.jsonl/csv (atomically) and one line on stderr."""
    _write_metrics(out, history)
    row = history[-1]
    say(f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}, test top-1 {row['test_top1']:.2f}% "
        f"top-5 {row['test_top5']:.2f}%, {row['img_per_s']:.0f} img/s")


def write_run_files(tr: Trainer) -> None:
    """config.json (exactly the settings) and run.json (device, precision, data) at the start."""
    atomic_write_text(tr.out / "config.json", json.dumps(tr.cfg.to_dict(), indent=2))
    atomic_write_text(tr.out / "run.json", json.dumps(
        {"resolved_precision": tr.precision, "device": str(tr.device), "world_size": tr.dist.world,
         "torch_version": str(torch.__version__), "data_spec": tr.spec.to_dict(), "data_split": tr.splits.split},
        indent=2))
    for n in tr.splits.notes:
        note(n)


def seed_epoch(tr: Trainer, epoch: int) -> None:
    """Every random draw of an epoch from the seed and the epoch (a resumed epoch continues
    the torch stream from the interrupted step)."""
    if tr.rng_resume is not None and tr.step_in_epoch > 0:
        torch.set_rng_state(tr.rng_resume["torch"])
    else:
        torch.manual_seed(tr.cfg.seed * 104729 + epoch)
    tr.aug_gen.manual_seed(tr.cfg.seed * 104729 + epoch)
    tr.rng_resume = None


def finish_run(tr: Trainer) -> dict:
    """Evaluate a run stopped before any epoch ended, write the report, and sum it up."""
    from .report import write_report

    conf = getattr(tr, "_last_confusion", None)
    if conf is None:  # no epoch ended in this process (--max-steps, a resumed run too): evaluate what there is, once
        tr.final_eval, conf = tr._evaluate()
    summary = run_summary(tr, conf)
    write_report(tr.out, summary, tr.eval_model)
    return {"out": str(tr.out), "best_top1": summary.best_top1, "final": summary.final, "epochs_done": tr.epoch,
            "global_step": tr.global_step, "stopped_early": tr.stopped_early, "train_time_s": tr.train_time,
            "peak_rss_mib": summary.peak_rss_mib, "budget": summary.budget}


def run_summary(tr: Trainer, confusion):
    """The run as the report shows it."""
    from .report import RunSummary

    final = dict(tr.final_eval) if tr.final_eval is not None else tr.history[-1]
    return RunSummary(
        model_name=tr.model_name, cfg=tr.cfg, spec=tr.spec, device=str(tr.device), precision=tr.precision,
        world=tr.dist.world, train_time=tr.train_time, history=tr.history,
        best_top1=tr.best_top1 if tr.history else None, final=final, global_step=tr.global_step,
        stopped_early=tr.stopped_early, peak_rss_mib=peak_rss_mib(), confusion=confusion,
        budget=tr.budget.state() if tr.budget is not None else (tr.budget_state or None),
        final_at_stop=tr.final_eval is not None, erasing=tr.erasing, total_steps=tr.total_steps,
        files=sorted(p.name for p in tr.out.iterdir() if p.is_file() and not p.name.startswith(".")))


def trainer_state(tr: Trainer) -> dict:
    """A sealed checkpoint of everything a bit-exact resume needs."""
    extra = {"train_state_dict": {k: v.detach().cpu() for k, v in tr.model.state_dict().items()}} \
        if tr.ema is not None else {}
    return make_checkpoint(
        tr.eval_model, tr.model_name, tr.spec.to_dict(), **extra,
        optimizer=tr.optimizer.state_dict(), scaler=tr.scaler.state_dict(),
        epoch=tr.epoch, step_in_epoch=tr.step_in_epoch, global_step=tr.global_step,
        best_top1=tr.best_top1, history=tr.history, train_time=tr.train_time,
        # an interrupted step is redone on resume, so store the RNG as it was when it began
        rng={"torch": tr._rng_at_step_start if tr._rng_at_step_start is not None else torch.get_rng_state()},
        config=tr.cfg.to_dict(), torch_version=str(torch.__version__), data_split=tr.splits.split,
        total_steps=tr.total_steps, budget=tr.budget.state() if tr.budget is not None else tr.budget_state,
        erasing=tr.erasing,
    )


def restore_trainer(tr: Trainer, path: Path) -> None:
    """Continue ``tr`` from the checkpoint at ``path``, refusing another model, other
    settings or other data."""
    if not path.is_file():
        raise SqueezeNetError(f"nothing to resume: '{path}' does not exist; drop --resume to start the run")
    ckpt = load_checkpoint(path)
    check_resume(ckpt, tr.model_name, tr.model.model_kwargs, tr.cfg.to_dict(), RESUME_MUST_MATCH, path)
    check_resume_data(ckpt, tr.spec.to_dict(), tr.splits.split, path)
    saved = ckpt.get("data") or {}
    if saved.get("mean") and saved.get("std"):  # the run's own normalisation, even if the data's is computed otherwise now
        tr.spec.mean, tr.spec.std = list(saved["mean"]), list(saved["std"])
    if tr.ema is not None:
        if "train_state_dict" not in ckpt:
            raise SqueezeNetError("cannot resume with --ema: the run was started without it")
        tr.model.load_state_dict(ckpt["train_state_dict"])
        tr.ema.module.load_state_dict(ckpt["state_dict"])
    else:
        tr.model.load_state_dict(ckpt.get("train_state_dict", ckpt["state_dict"]))
    tr.optimizer.load_state_dict(ckpt["optimizer"])
    tr.scaler.load_state_dict(ckpt["scaler"])
    tr.epoch, tr.step_in_epoch = ckpt["epoch"], ckpt["step_in_epoch"]
    tr.global_step, tr.best_top1 = ckpt["global_step"], ckpt["best_top1"]
    tr.history, tr.train_time = list(ckpt["history"]), ckpt["train_time"]
    tr.rng_resume = ckpt["rng"]
    tr.total_steps = ckpt.get("total_steps", tr.total_steps)
    tr.budget_state = ckpt.get("budget") or {}
    tr.erasing = ckpt.get("erasing")


def _init_from_weights(model, path: str, num_classes: int):
    """Weights to start from: ImageNet's (torchvision's SqueezeNet file or the model's own
    layout) or a checkpoint of ours trained on other data. They load into the model with
    as many outputs as they have; the classifier is then replaced by a fresh one when the
    data has another number of classes."""
    from .formats.open import classifier_outputs, load_weights_into, read_state_dict

    sd = read_state_dict(path, own_checkpoint=True)  # a new run records its own data
    k = classifier_outputs(model, sd) or 1000
    if model.num_classes != k:
        model.reset_classifier(k)
    load_weights_into(model, "the model", path, own_checkpoint=True, sd=sd)
    if num_classes != k:
        model.reset_classifier(num_classes)
        note(f"--weights: every layer but the classifier loaded; its {k} outputs are replaced by a fresh "
             f"classifier for the data's {num_classes} classes")
    else:
        note(f"--weights: every layer loaded, the classifier too ({k} outputs, as many as the data's classes)")
    return model


def _write_metrics(out: Path, history: list[dict]):
    import csv
    import io

    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(row) + "\n" for row in history))
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for row in history for k in row))  # the last epoch adds test_tta_top1
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(history)
    atomic_write_text(out / "metrics.csv", buf.getvalue())


def train(cfg: TrainConfig) -> dict:
    """Train a model as configured; returns a summary dict (also in the run folder)."""
    return Trainer(cfg).run()
