"""Trainer: accuracy maths, checkpoints, resume equivalence, DDP equivalence, errors."""

import json
import os
import socket

import pytest
import torch

from squeezenet import SqueezeNetError, create_model
from squeezenet.formats.checkpoint import load_checkpoint, make_checkpoint, model_from_checkpoint
from squeezenet.files import atomic_save
from squeezenet.metrics import accuracy, topk_correct
from squeezenet.train import TrainConfig, Trainer, lr_at

TINY = "squeezenet1_1_small_bn_w0.25"


def test_topk_hand_computed():
    logits = torch.tensor([[0.1, 0.5, 0.2, 0.0, 0.0, 0.0, 0.3],   # target 1: top-1 hit
                           [0.9, 0.1, 0.0, 0.0, 0.0, 0.0, 0.8],   # target 6: rank 2 -> top-5 hit
                           [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],   # target 0: rank 7 -> miss
                           [0.3, 0.2, 0.1, 0.9, 0.8, 0.7, 0.6]])  # target 2: rank 7 -> miss
    targets = torch.tensor([1, 6, 0, 2])
    assert topk_correct(logits, targets, (1, 5)) == [1, 2]
    assert accuracy(logits, targets, (1, 5)) == [25.0, 50.0]
    assert topk_correct(logits[:, :3], torch.tensor([0, 0, 0, 0]), (1, 5)) == [2, 4]  # rows 2, 4 argmax 0; k > classes


def test_lr_schedules():
    cfg = TrainConfig(recipe="paper").resolved()
    assert cfg.lr == 0.04 and cfg.momentum == 0.9 and cfg.weight_decay == 2e-4
    assert lr_at(cfg, 0, 100, 10) == pytest.approx(0.04)
    assert lr_at(cfg, 50, 100, 10) == pytest.approx(0.02)  # poly power 1 = linear to 0
    fast = TrainConfig(recipe="fast", lr=1.0, warmup_epochs=1).resolved()
    assert lr_at(fast, 4, 100, 10) == pytest.approx(0.5)  # warm-up 10 steps
    assert lr_at(fast, 55, 100, 10) == pytest.approx(0.5)  # cosine midpoint


def _cfg(tmp, fmnist_dir, **kw):
    base = dict(model=TINY, data="fashion-mnist", data_dir=str(fmnist_dir), download=False, out=str(tmp),
                epochs=2, batch_size=64, progress=False, workers=0, dropout=0.2, lr=0.05, precision="fp32")
    base.update(kw)
    return TrainConfig(**base)


def test_train_writes_a_complete_run(tmp_path, fmnist_dir):
    res = Trainer(_cfg(tmp_path, fmnist_dir, epochs=8, lr=0.1)).run()
    for f in ("config.json", "last.pt", "best.pt", "metrics.csv", "metrics.jsonl", "curves.png", "confusion.png",
              "report.md"):
        assert (tmp_path / f).is_file(), f
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 9))
    for k in ("train_loss", "test_top1", "test_top5", "lr", "img_per_s"):
        assert k in rows[0]
    # the bands are easy: a few epochs must learn them (chance is 10%)
    assert res["best_top1"] > 50
    report = (tmp_path / "report.md").read_text()
    assert "curves.png" in report and "confusion.png" in report and "| fire9 |" in report
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model"] == TINY and json.loads((tmp_path / "run.json").read_text())["resolved_precision"] == "fp32"
    assert TrainConfig.from_dict(cfg) == Trainer(_cfg(tmp_path, fmnist_dir, epochs=8, lr=0.1)).cfg  # round trip
    # the checkpoint re-creates the model and evaluates the same as the reported top-1
    from squeezenet.evaluate import evaluate_checkpoint

    ev = evaluate_checkpoint(str(tmp_path / "last.pt"), data_dir=str(fmnist_dir), download=False)
    assert ev["top1"] == pytest.approx(rows[-1]["test_top1"])
    # the last epoch also scores the saved weights with flip TTA, as `eval --tta flip` does, and the report says so
    ev = evaluate_checkpoint(str(tmp_path / "last.pt"), data_dir=str(fmnist_dir), download=False, tta="flip",
                             out=str(tmp_path / "tta.json"))
    assert ev["top1"] == pytest.approx(rows[-1]["test_tta_top1"]) and all("test_tta_top1" not in r for r in rows[:-1])
    assert f"| final test top-1 with flip TTA | {rows[-1]['test_tta_top1']:.2f}% " in report
    assert "test_tta_top1" in (tmp_path / "metrics.csv").read_text().splitlines()[0]


def test_existing_run_is_not_overwritten(tmp_path, fmnist_dir):
    Trainer(_cfg(tmp_path, fmnist_dir, epochs=1)).run()
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(SqueezeNetError, match="--resume"):
        Trainer(_cfg(tmp_path, fmnist_dir, epochs=1)).run()
    assert (tmp_path / "last.pt").read_bytes() == before


def _weights(path):
    return load_checkpoint(path)["state_dict"]


@pytest.mark.parametrize("ema", [0.0, 0.99])
def test_resume_after_interrupt_gives_identical_weights(tmp_path, fmnist_dir, ema):
    full = tmp_path / "full"
    Trainer(_cfg(full, fmnist_dir, ema=ema)).run()

    # Kill the run in the middle of epoch 2 with a Ctrl-C, then resume.
    part = tmp_path / "part"
    tr = Trainer(_cfg(part, fmnist_dir, ema=ema))
    calls = {"n": 0}

    def interrupt_after_forward(module, inputs, output):  # mid-step: BN statistics already moved
        if module.training:
            calls["n"] += 1
            if calls["n"] == 11:  # 8 steps per epoch: this is step 3 of epoch 2
                raise KeyboardInterrupt

    tr.model.register_forward_hook(interrupt_after_forward)
    with pytest.raises(SqueezeNetError, match="--resume"):
        tr.run()
    ck = load_checkpoint(part / "last.pt")
    assert (ck["epoch"], ck["step_in_epoch"]) == (1, 2)
    Trainer(_cfg(part, fmnist_dir, resume=True, ema=ema)).run()
    for key in ("state_dict", "train_state_dict") if ema else ("state_dict",):
        a, b = load_checkpoint(full / "last.pt")[key], load_checkpoint(part / "last.pt")[key]
        for k in a:
            assert torch.equal(a[k], b[k]), (key, k)


def test_ema_weights_are_what_is_saved_and_evaluated(tmp_path, fmnist_dir):
    res = Trainer(_cfg(tmp_path, fmnist_dir, ema=0.9, epochs=2, lr=0.1)).run()
    ck = load_checkpoint(tmp_path / "last.pt")
    ema, raw = ck["state_dict"], ck["train_state_dict"]
    assert any(not torch.equal(ema[k], raw[k]) for k in ema if ema[k].is_floating_point())
    from squeezenet.evaluate import evaluate_checkpoint

    ev = evaluate_checkpoint(str(tmp_path / "last.pt"), data_dir=str(fmnist_dir), download=False)
    assert ev["top1"] == pytest.approx(res["final"]["test_top1"])


def test_nan_loss_stops_with_step(tmp_path, fmnist_dir):
    with pytest.raises(SqueezeNetError, match=r"loss became (nan|inf) at epoch 1 step \d+"):
        Trainer(_cfg(tmp_path, fmnist_dir, lr=1e12, dropout=0.0, model_options={})).run()


def test_atomic_save_survives_interrupted_write(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    m = create_model(TINY, num_classes=10)
    atomic_save(make_checkpoint(m, TINY), path)
    import squeezenet.formats.checkpoint as ck

    real_save = torch.save

    def dying_save(obj, f):
        f.write(b"partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(ck.torch, "save", dying_save)
    with pytest.raises(SqueezeNetError, match="cannot write .*last.pt.*disk full"):
        atomic_save(make_checkpoint(create_model(TINY, num_classes=3), TINY), path)
    monkeypatch.setattr(ck.torch, "save", real_save)
    restored = model_from_checkpoint(load_checkpoint(path))
    assert restored.num_classes == 10
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_checkpoints_load_weights_only(tmp_path):
    bad = tmp_path / "evil.pt"
    torch.save({"format": "squeezenet-checkpoint", "payload": Evil()}, bad)
    with pytest.raises(SqueezeNetError, match="cannot load checkpoint"):
        load_checkpoint(bad)


def test_wrong_checkpoint_errors(tmp_path, fmnist_dir):
    from squeezenet.evaluate import evaluate_checkpoint

    p = tmp_path / "five.pt"
    five = dict(name="fashion-mnist", classes=list("abcde"), channels=1, input_size=28, mean=[0.3], std=[0.3])
    atomic_save(make_checkpoint(create_model(TINY, num_classes=5, in_chans=1), TINY, five), p)
    with pytest.raises(SqueezeNetError, match=r"the data's classes \(T-shirt/top, .*\) differ from .* \(a, b, c, d"):
        evaluate_checkpoint(str(p), "fashion-mnist", str(fmnist_dir), download=False)
    with pytest.raises(SqueezeNetError, match="--map-by-index needs as many classes as the model has \\(5\\)"):
        evaluate_checkpoint(str(p), "fashion-mnist", str(fmnist_dir), download=False, map_by_index=True)
    ck = make_checkpoint(create_model(TINY, num_classes=10, in_chans=1), TINY)
    ck["model_name"] = "squeezenet1_0"  # weights of one architecture labelled as another
    from squeezenet.formats.checkpoint import seal

    atomic_save(seal(ck), p)
    with pytest.raises(SqueezeNetError, match="'squeezenet1_0' expects"):
        evaluate_checkpoint(str(p), "fashion-mnist", str(fmnist_dir), download=False)
    tv = tmp_path / "tv.pth"
    torch.save(create_model("squeezenet1_1").state_dict(), tv)
    with pytest.raises(SqueezeNetError, match="not a squeezenet checkpoint"):
        load_checkpoint(tv)


def test_resume_refuses_other_model(tmp_path, fmnist_dir):
    Trainer(_cfg(tmp_path, fmnist_dir, epochs=1)).run()
    with pytest.raises(SqueezeNetError, match="cannot resume"):
        Trainer(_cfg(tmp_path, fmnist_dir, model="squeezenet1_0_small_bn_w0.25", resume=True)).run()
    # same model, other schedule: splicing two different runs is refused, naming the change
    with pytest.raises(SqueezeNetError, match=r"cannot resume: .*epochs 1 -> 2; batch_size 64 -> 32"):
        Trainer(_cfg(tmp_path, fmnist_dir, epochs=2, batch_size=32, resume=True)).run()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg_dict):
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    Trainer(TrainConfig(**cfg_dict)).run()
    torch.distributed.destroy_process_group()


def test_ddp_two_gloo_processes_match_single_process(tmp_path, fmnist_dir):
    import torch.multiprocessing as mp

    common = dict(model="squeezenet1_1_small_w0.25", dropout=0.0, epochs=1, max_steps=4, lr=0.05, device="cpu")
    single = _cfg(tmp_path / "single", fmnist_dir, **common)
    torch.set_num_threads(1)
    try:
        Trainer(single).run()
    finally:
        torch.set_num_threads(2)
    ddp_cfg = _cfg(tmp_path / "ddp", fmnist_dir, **common).__dict__
    mp.start_processes(_ddp_worker, args=(2, _free_port(), ddp_cfg), nprocs=2, join=True, start_method="spawn")
    a, b = _weights(tmp_path / "single" / "last.pt"), _weights(tmp_path / "ddp" / "last.pt")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    assert load_checkpoint(tmp_path / "ddp" / "last.pt")["global_step"] == 4


def _ddp_budget_worker(rank, world, port, cfg_dict, step_s):
    """A torchrun process on its own fake clock (``step_s[rank]`` per step), under a time budget."""
    from datetime import timedelta

    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", timeout=timedelta(seconds=60))  # a mismatch fails, not hangs
    clock = type("Clock", (), {"t": 0.0, "__call__": lambda self: self.t})()
    tr = Trainer(TrainConfig(**cfg_dict))
    tr.clock = clock
    tr.after_step.append(lambda t: setattr(clock, "t", clock.t + step_s[rank]))
    tr.run()
    plans = tr.budget.planner.plans
    torch.save({"global_step": tr.global_step, "total_steps": tr.total_steps, "last_plan": plans[-1].total_steps,
                "weights": {k: v.detach().clone() for k, v in tr.model.named_parameters()}},  # not BN buffers
               os.path.join(cfg_dict["out"], f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_torchrun_processes_follow_rank_0s_budget_plan_to_the_same_step(tmp_path, fmnist_dir):
    """Under torchrun every process measures its own step time, but rank 0's plan is the
    run's. The processes' own plans then differ (here rank 1's clock is faster), and each
    process decided from its own plan whether a step-time check was due, so near the end of
    the schedule one process joined the plan's broadcast while the other went on to the
    next gradient all-reduce: mismatched collectives. Every process must check at the same
    steps and stop at rank 0's total."""
    import torch.multiprocessing as mp

    cfg = _cfg(tmp_path / "ddp", fmnist_dir, model=TINY, dropout=0.0, batch_size=8, device="cpu",
               time_budget="50s").__dict__
    mp.start_processes(_ddp_budget_worker, args=(2, _free_port(), cfg, (0.2, 0.15)), nprocs=2, join=True,
                       start_method="spawn")
    r0, r1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt") for r in (0, 1))
    assert r0["global_step"] == r1["global_step"] == r0["total_steps"] == r1["total_steps"]
    for k, v in r0["weights"].items():  # the gradient all-reduces stayed paired: the replicas agree
        torch.testing.assert_close(r1["weights"][k], v, rtol=0, atol=0)
    assert r0["last_plan"] == r1["last_plan"] == r0["total_steps"]  # the same plan on every process
    ck = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert ck["global_step"] == r0["total_steps"] and 0.95 * 50 <= ck["budget"]["spent"] <= 50


def test_training_on_a_large_image_folder(tmp_path, caplog):
    """The streaming (DataLoader workers) path: an ImageFolder of 80 px images, with one
    corrupt file, trains and evaluates end to end. Proven without depending on the CPU's
    numerics: the steps taken, the bad file reported, and the reported top-1 equal to one
    recomputed from best.pt with torchvision's own transforms (resize 73, centre crop 64)."""
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.transforms import v2 as T

    from squeezenet.data import FolderDataset

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, color in (("dark", 40), ("bright", 210)):
            d = tmp_path / "imgs" / split / c
            d.mkdir(parents=True)
            for i in range(8):
                Image.fromarray(np.clip(rng.normal(color, 15, (80, 80, 3)), 0, 255).astype(np.uint8)).save(d / f"{i}.png")
    (tmp_path / "imgs" / "train" / "dark" / "bad.png").write_bytes(b"junk")
    tr = Trainer(TrainConfig(model="squeezenet1_1_bn_w0.25", data=str(tmp_path / "imgs"), input_size=64,
                             out=str(tmp_path / "run"), epochs=2, batch_size=8, workers=1, progress=False, lr=0.1,
                             precision="fp32", model_options={"head_relu": False}))
    assert isinstance(tr.splits.train, FolderDataset) and len(tr.splits.train) == 17
    res = tr.run()
    assert res["epochs_done"] == 2 and res["global_step"] == 2 * (17 // 8)
    assert "bad.png" in caplog.text  # reported in the main process, not by the DataLoader worker
    ck = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ck["data"]["classes"] == ["bright", "dark"] and ck["data"]["input_size"] == 64
    model = model_from_checkpoint(ck).eval().to(memory_format=torch.channels_last)  # as the trainer evaluates
    tf = T.Compose([T.Resize(73, antialias=True), T.CenterCrop(64), T.PILToTensor(), T.ToDtype(torch.float32, scale=True),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    paths = [(tmp_path / "imgs" / "val" / c / f"{i}.png", k) for k, c in enumerate(("bright", "dark")) for i in range(8)]
    x = torch.stack([tf(Image.open(p).convert("RGB")) for p, _ in paths])
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        pred = model(x).argmax(1)
    top1 = 100.0 * float((pred == torch.tensor([k for _, k in paths])).float().mean())
    best = max(h["test_top1"] for h in tr.history)
    assert ck["best_top1"] == best and best == pytest.approx(top1, abs=1e-9)


def test_named_demo_config_is_what_train_without_a_model_runs():
    """`squeezenet train` with no model and `make demo` (`--config demo`) are one recipe:
    TrainConfig's defaults overridden by squeezenet/configs/demo.toml, the only copy."""
    from squeezenet.cli import build_parser, train_settings
    from squeezenet.config import load_config_file

    a = build_parser().parse_args(["train"])
    b = build_parser().parse_args(["train", "--config", "demo"])
    assert train_settings(a) == train_settings(b) == load_config_file("demo")
    cfg = TrainConfig.from_dict(train_settings(a))
    assert (cfg.time_budget, cfg.batch_size, cfg.lr, cfg.dropout, cfg.head_relu) == ("10m", 128, 0.1, 0.1, False)
    c = build_parser().parse_args(["train", "--epochs", "3", "--no-head-relu", "squeezenet1_1_small"])
    assert train_settings(c) == {"epochs": 3, "head_relu": False, "model": "squeezenet1_1_small"}


def test_flip_tta_averages_the_mirrored_logits():
    """tta='flip' scores (f(x) + f(mirror x)) / 2, computed here by hand; a mirror-symmetric
    model gives exactly its plain result, an asymmetric one changes."""
    from squeezenet.data import TensorDataset
    from squeezenet.spec import DataSpec
    from squeezenet.metrics import evaluate

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 3, (40,), generator=g)
    spec = DataSpec(name="toy", classes=["a", "b", "c"], channels=1, input_size=8, mean=[0.5], std=[0.25])
    w = torch.randn(3, 64, generator=g)
    asym = lambda x: x.flatten(1) @ w.T  # noqa: E731
    x = (images.float() / 255 - 0.5) / 0.25
    avg = (asym(x) + asym(x.flip(-1))) / 2
    by_hand = 100.0 * float((avg.argmax(1) == labels).float().mean())
    plain_by_hand = 100.0 * float((asym(x).argmax(1) == labels).float().mean())
    ds = TensorDataset(images, labels, spec.classes)
    got = evaluate(None, ds, spec, batch_size=16, predict_fn=asym, tta="flip")
    assert got["top1"] == pytest.approx(by_hand)
    assert got["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(avg, labels)), rel=1e-5)
    assert evaluate(None, ds, spec, batch_size=16, predict_fn=asym)["top1"] == pytest.approx(plain_by_hand)
    assert by_hand != plain_by_hand  # the asymmetric model is really changed by TTA
    sym = lambda x: asym(x) + asym(x.flip(-1))  # noqa: E731
    assert evaluate(None, ds, spec, predict_fn=sym, tta="flip")["top1"] == evaluate(None, ds, spec, predict_fn=sym)["top1"]
    with pytest.raises(SqueezeNetError, match="unknown test-time augmentation"):
        evaluate(None, ds, spec, predict_fn=sym, tta="rotate")


def test_an_epoch_cut_short_by_unreadable_batches_is_still_an_epoch(tmp_path, fmnist_dir, monkeypatch):
    """A last batch lost to unreadable images must not end the run as if --max-steps stopped it."""
    real = Trainer.batches

    def lose_last_batch(self, epoch):
        return (b for b in real(self, epoch) if b[0] < self.steps_per_epoch() - 1)

    monkeypatch.setattr(Trainer, "batches", lose_last_batch)
    res = Trainer(_cfg(tmp_path, fmnist_dir, epochs=3)).run()
    assert res["epochs_done"] == 3 and not res["stopped_early"] and res["best_top1"] is not None


def test_after_step_hooks_run_after_every_optimizer_step(tmp_path, fmnist_dir):
    tr = Trainer(_cfg(tmp_path, fmnist_dir, epochs=1))
    seen = []
    tr.after_step.append(lambda t: seen.append(t.global_step))
    tr.run()
    assert seen == list(range(1, tr.steps_per_epoch() + 1))


def test_calibration_on_an_image_folder_uses_evaluation_preprocessing(tmp_path):
    """int8 calibration images are resized and centre-cropped like the test split, never
    randomly cropped and flipped like training images."""
    import numpy as np
    from PIL import Image

    from squeezenet.data import load_data
    from squeezenet.deploy.quantize import calibration_batches

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            d = tmp_path / "imgs" / split / c
            d.mkdir(parents=True)
            for i in range(4):
                Image.fromarray(rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(d / f"{i}.png")
    splits = load_data(str(tmp_path / "imgs"), input_size=72)
    kw = dict(eval_transform=splits.test.transform)
    first = calibration_batches(splits.train, splits.spec, 6, batch=6, **kw)[0]
    again = calibration_batches(splits.train, splits.spec, 6, batch=6, **kw)[0]
    np.testing.assert_array_equal(first, again)  # deterministic: no random augmentation
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(splits.train), generator=g)[:6].tolist()
    from squeezenet.data import load_image

    want = np.stack([splits.test.transform(load_image(splits.train.samples[i][0])).numpy() for i in idx])
    np.testing.assert_allclose(first, want, rtol=0, atol=1e-6)


def test_resolved_returns_a_new_config_and_leaves_the_callers_alone():
    cfg = TrainConfig(recipe="paper")
    out = cfg.resolved()
    assert out is not cfg and cfg.lr is None and out.lr == 0.04
    assert TrainConfig.from_dict(out.to_dict()) == out  # config.json round-trips


def test_each_torchrun_process_gets_its_own_gpu_or_one_line(monkeypatch):
    """torchrun's LOCAL_RANK picks the GPU; more processes than GPUs is one line naming the fix, not
    torch's "invalid device ordinal" at the first tensor (found with 2 processes on a 1-GPU machine)."""
    from squeezenet.train import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:1", local_rank=0) == torch.device("cuda", 1)
    with pytest.raises(SqueezeNetError, match=r"process 2 needs GPU cuda:2, but this machine has 2 .*nproc_per_node=2\)$"):
        resolve_device("cuda", local_rank=2)
    with pytest.raises(SqueezeNetError, match=r"^--device cuda:3 names a GPU this machine lacks: .* has 2 GPU\(s\) \(cuda:0-1\)$"):
        resolve_device("cuda:3")
