"""The GPU paths (``--device cuda``): the time budget, fp16 with its GradScaler, and
checkpoints that move between a GPU and a CPU. CI has no GPU, so these skip there; they
run on a lent GPU machine through ``benchmarks/probes/gpu_check.sh``, which also times real
budgets and torchrun with nccl there (BENCHMARKS 2.0.8)."""

import math

import pytest
import torch

from helpers import TINY

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA GPU (CI has none): run benchmarks/probes/gpu_check.sh on a GPU host")


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _trainer(fmnist_dir, **kw):
    from squeezenet.train import Trainer, TrainConfig

    return Trainer(TrainConfig(**{**dict(model=TINY, data_dir=str(fmnist_dir), download=False, batch_size=32,
                                         progress=False, device="cuda", lr=0.1), **kw}))


def test_a_budgeted_gpu_run_completes_its_schedule_and_resumes_with_what_is_left(tmp_path, fmnist_dir):
    """The CPU test of the same name, on the GPU (bf16 autocast where the GPU has it): the
    planner's clock reads come after a synchronize, and the plan is the fake clock's."""
    from squeezenet.budget import MARGIN
    from squeezenet.formats.checkpoint import load_checkpoint

    clock = FakeClock()

    def budgeted(**kw):
        tr = _trainer(fmnist_dir, time_budget="20s", **kw)
        tr.clock = clock
        tr.after_step.append(lambda t: setattr(clock, "t", clock.t + 0.2))
        return tr

    tr = budgeted(out=str(tmp_path / "r"))
    assert tr.device.type == "cuda"
    res = tr.run()
    assert tr.total_steps == int(20 * (1 - MARGIN) / 0.2) and tr.global_step == tr.total_steps
    assert res["epochs_done"] == math.ceil(tr.total_steps / tr.steps_per_epoch()) and not res["stopped_early"]
    assert 0.95 * 20 <= res["budget"]["spent"] <= 20

    clock.t = 0.0
    budgeted(out=str(tmp_path / "r2"), max_steps=tr.steps_per_epoch() + 3).run()
    assert load_checkpoint(tmp_path / "r2" / "last.pt")["budget"]["spent"] == pytest.approx(
        (tr.steps_per_epoch() + 3) * 0.2)
    again = budgeted(out=str(tmp_path / "r2"), resume=True)
    res2 = again.run()
    assert again.global_step == again.total_steps == tr.total_steps
    assert 0.95 * 20 <= res2["budget"]["spent"] <= 20


def test_fp16_trains_through_its_grad_scaler(tmp_path, fmnist_dir):
    tr = _trainer(fmnist_dir, precision="fp16", epochs=1, out=str(tmp_path / "r"))
    tr.run()
    assert tr.scaler.is_enabled() and tr.scaler.get_scale() > 0
    assert math.isfinite(tr.history[-1]["train_loss"])
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())


def test_a_gpu_checkpoint_evaluates_on_the_cpu_to_the_top1_the_gpu_recorded(tmp_path, fmnist_dir):
    """Saved on the GPU, loaded with weights_only on the CPU: the same weights, so the same
    predictions up to float ties (at most one image of the split differs)."""
    from squeezenet.evaluate import evaluate_checkpoint
    from squeezenet.formats.checkpoint import load_checkpoint

    tr = _trainer(fmnist_dir, precision="fp32", epochs=1, out=str(tmp_path / "r"))
    tr.run()
    ck = load_checkpoint(tmp_path / "r" / "last.pt")
    assert all(t.device.type == "cpu" for t in ck["state_dict"].values() if isinstance(t, torch.Tensor))
    on_cpu = evaluate_checkpoint(str(tmp_path / "r" / "last.pt"), data_dir=str(fmnist_dir), download=False)
    assert abs(on_cpu["top1"] - tr.history[-1]["test_top1"]) <= 100.0 / on_cpu["n"] + 1e-9
