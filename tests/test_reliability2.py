"""Issue 20, "never silently wrong, round 2": each case below failed (a silently wrong
result, a traceback or a broken promise) before its fix. Server cases are in
test_serve.py's BAD table; the ShuffleNet widths in test_shufflenet.py."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import TINY, assert_one_line, make_image_folder, run_cli
from squeezenet import SqueezeNetError
from squeezenet.config import TrainConfig, load_config_file
from squeezenet.train import Trainer

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _labels_by_folder(root: Path, split: str, classes: list[str]) -> list[int]:
    """The label every image should get: its folder's position in the class list."""
    return [classes.index(c.name) for c in sorted((root / split).iterdir()) if c.is_dir()
            for _ in sorted(c.glob("*.png"))]


# ---------------------------------------------------------------- 1. the decode cache

def test_decode_cache_is_keyed_on_the_class_list(tmp_path, monkeypatch):
    """Classes b, c cached; an empty class a added: the cached labels (0, 1) must not be
    read as a, b. Labels after the change equal a fresh cache's, and each folder's."""
    from squeezenet.data import load_data

    monkeypatch.setenv("SQUEEZENET_CACHE", str(tmp_path / "cache"))
    root = make_image_folder(tmp_path / "imgs", classes=("b", "c"), n=4, size=12)
    first = load_data(str(root))
    assert first.test.labels.tolist() == [0] * 4 + [1] * 4
    for split in ("train", "val"):
        (root / split / "a").mkdir()
    again = load_data(str(root))
    fresh = load_data(str(root), cache=False)
    assert again.spec.classes == ["a", "b", "c"]
    assert again.test.labels.tolist() == fresh.test.labels.tolist() == [1] * 4 + [2] * 4
    assert again.train.labels.tolist() == fresh.train.labels.tolist()


def test_decode_cache_notices_a_replaced_file_and_ignores_a_damaged_cache(tmp_path, monkeypatch):
    from squeezenet.data import load_data

    monkeypatch.setenv("SQUEEZENET_CACHE", str(tmp_path / "cache"))
    root = make_image_folder(tmp_path / "imgs", n=2, size=12)
    before = load_data(str(root)).test.images.clone()
    Image.fromarray(np.full((12, 12, 3), 255, np.uint8)).save(root / "val" / "cat" / "0.png")
    os.utime(root / "val" / "cat" / "0.png", ns=(1, 1))  # even with an older mtime: the size changed
    after = load_data(str(root)).test.images
    assert not torch.equal(before, after) and int(after[0].min()) == 255
    for f in (tmp_path / "cache" / "decoded").glob("folder-*.pt"):
        f.write_bytes(b"garbage")
    assert torch.equal(load_data(str(root)).test.images, after)


# ---------------------------------------------------------------- 2. sweep points

def test_sweep_refuses_points_made_with_other_settings(tmp_path):
    from squeezenet.sweep import sweep

    out = tmp_path / "sw"
    first = sweep(sr=[0.5], pct3x3=[], out=str(out))
    assert sweep(sr=[0.5], pct3x3=[], out=str(out))["rows"] == first["rows"]  # same settings: reused
    data = make_image_folder(tmp_path / "never-decoded", n=2, size=8)  # there, so the data check passes
    with pytest.raises(SqueezeNetError, match=r"other settings \(.*train_epochs 0 -> 3"):
        sweep(sr=[0.5], pct3x3=[], out=str(out), train_epochs=3, data=str(data))


def test_sweep_takes_a_tiny_squeeze_ratio(tmp_path):
    from squeezenet.sweep import sweep

    r = sweep(sr=[0.00001], pct3x3=[], out=str(tmp_path / "sw"))
    assert r["rows"][0]["model"] == "squeezenet1_0_sr0.00001_pct0.5" and r["rows"][0]["params"] > 0


# ---------------------------------------------------------------- 3-5. resume and the data

def _folder_run(tmp_path, root, **kw):
    base = dict(model=TINY, data=str(root), out=str(tmp_path / "run"), epochs=2, batch_size=4, lr=0.05,
                progress=False, precision="fp32", max_steps=1)
    return TrainConfig(**{**base, **kw})


def test_resume_refuses_a_changed_split_fraction(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n=10, size=12, splits=("train",))
    Trainer(_folder_run(tmp_path, root)).run()
    with pytest.raises(SqueezeNetError, match="val_fraction 0.1 -> 0.5"):
        Trainer(_folder_run(tmp_path, root, resume=True, val_fraction=0.5, max_steps=None)).run()
    code, _, err = run_cli("train", "--resume", "--out", tmp_path / "run", "--val-fraction", "0.5")
    assert_one_line(code, err, "val_fraction 0.1 -> 0.5")


def test_resume_refuses_other_files_and_renamed_classes(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=("b", "c"), n=6, size=12)
    Trainer(_folder_run(tmp_path, root)).run()
    shutil.copy(root / "train" / "b" / "0.png", root / "train" / "b" / "extra.png")
    with pytest.raises(SqueezeNetError, match="split differs"):
        Trainer(_folder_run(tmp_path, root, resume=True, max_steps=None)).run()
    (root / "train" / "b" / "extra.png").unlink()
    for split in ("train", "val"):
        (root / split / "c").rename(root / split / "a")
    with pytest.raises(SqueezeNetError, match=r"class names differ from the run's \(\['b', 'c'\] -> \['a', 'b'\]\)"):
        Trainer(_folder_run(tmp_path, root, resume=True, max_steps=None)).run()


def test_eval_redraws_the_runs_own_held_out_split(tmp_path, caplog):
    """A folder without val/ trained with --val-fraction 0.3 --seed 5 holds out 6 of its 20
    images; `eval --data` on it must score exactly those (not the default 10%, seed 0 draw,
    which would include training images), and refuse once the folder has changed."""
    from squeezenet.evaluate import evaluate_checkpoint

    root = make_image_folder(tmp_path / "imgs", n=10, size=12, splits=("train",))
    res = Trainer(_folder_run(tmp_path, root, val_fraction=0.3, seed=5, max_steps=None, epochs=1)).run()
    ckpt = tmp_path / "run" / "last.pt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["data_split"]["val"] == 6 and saved["data"]["holdout"]["seed"] == 5
    r = evaluate_checkpoint(str(ckpt), data=str(root))
    # the same 6 images: the loss (a continuous score, robust to kernel rounding, unlike a top-1 of 6) agrees
    assert r["n"] == 6 and r["loss"] == pytest.approx(res["final"]["test_loss"], rel=1e-4)
    shutil.copy(root / "train" / "cat" / "0.png", root / "train" / "cat" / "extra.png")
    code, _, err = run_cli("eval", "--checkpoint", ckpt, "--data", root)
    assert_one_line(code, err, "no longer holds the images")


@pytest.mark.parametrize("command", ["quantize", "compress"])
def test_fine_tunes_train_on_the_models_own_split(tmp_path, command):
    """QAT (`quantize --qat-epochs`) and Deep Compression's fine-tunes must train on the
    model's own training images: a folder trained with --val-fraction 0.3 --seed 5 holds
    out 6 of 20 images, which the report scores on. They used to draw the default split
    (10%, seed 0, or --seed), which puts most of those 6 into the fine-tune's training set
    and inflates every top-1 after it."""
    root = make_image_folder(tmp_path / "imgs", n=10, size=12, splits=("train",))
    Trainer(_folder_run(tmp_path, root, val_fraction=0.3, seed=5, max_steps=None, epochs=1)).run()
    ckpt = tmp_path / "run" / "last.pt"
    model_split = torch.load(ckpt, weights_only=True)["data"]["holdout"]
    if command == "quantize":
        args = ["--weight-bits", "8", "--rounding", "nearest", "--qat-epochs", "1", "--calib-size", "4",
                "--seed", "2", "--out", tmp_path / "q"]
        tuned = [tmp_path / "q" / "qat_w8a8_qat1" / "last.pt"]
    else:
        args = ["--finetune-epochs", "1", "--out", tmp_path / "c.sqz"]
        tuned = [tmp_path / "c_work" / t / "last.pt" for t in ("prune_finetune", "centroid_finetune")]
    code, _, err = run_cli(command, "-c", ckpt, "--data", root, "--batch-size", "2", *args)
    assert code == 0, err
    for f in tuned:
        saved = torch.load(f, weights_only=True)
        assert saved["data"]["holdout"] == model_split
        assert (saved["data_split"]["train"], saved["data_split"]["val"]) == (14, 6)


def test_eval_warns_when_a_model_does_not_record_its_held_out_split(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n=10, size=12, splits=("train",))
    Trainer(_folder_run(tmp_path, root)).run()
    ckpt = tmp_path / "run" / "last.pt"
    saved = torch.load(ckpt, weights_only=True)
    del saved["data"]["holdout"]  # as files written before the hold-out was recorded
    torch.save(saved, ckpt)
    code, _, err = run_cli("eval", "--checkpoint", ckpt, "--data", root, "--skip-integrity-check")
    assert code == 0 and "does not record which images" in err


def test_train_subset_applies_to_large_image_folders(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n=10, size=80)
    tr = Trainer(TrainConfig(model="squeezenet1_1_bn_w0.25", data=str(root), input_size=64, out=str(tmp_path / "r"),
                             epochs=1, batch_size=2, train_subset=4, workers=0, progress=False, precision="fp32"))
    res = tr.run()
    assert len(tr.splits.train) == 4 and res["global_step"] == 2
    assert sorted(tr.splits.train.labels.tolist()) == [0, 0, 1, 1]  # both classes, not the folder's first


@pytest.mark.parametrize("size", [16, 80])  # decoded into memory, streamed
def test_train_subset_covers_every_class(tmp_path, size):
    """A folder lists its classes one after another; --train-subset 3 of three classes
    trains on one image of each, not on three images of the first class."""
    from squeezenet.data import load_data
    from squeezenet.train import training_data

    root = make_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), n=4, size=size)
    cfg = TrainConfig(data=str(root), train_subset=3, input_size=size if size > 64 else None)
    splits = training_data(cfg, load_data(str(root), input_size=cfg.input_size, cache=False))
    assert sorted(splits.train.labels.tolist()) == [0, 1, 2]


# ---------------------------------------------------------------- 6, 12. config files are typed

@pytest.mark.parametrize("text,needle", [
    ('head_relu = "false"', "setting 'head_relu' (--head-relu) must be true or false (a boolean), got 'false'"),
    ('nesterov = "false"', "setting 'nesterov' (--nesterov) must be true or false"),
    ('resume = "no"', "setting 'resume' (--resume) must be true or false"),
    ("data = 5", "setting 'data' (--data) must be a string, got 5 (an integer)"),
    ("out = 5", "setting 'out' (--out) must be a string, got 5"),
    ("out = 1979-05-27", "setting 'out' (--out) must be a string, got datetime.date(1979, 5, 27) (a date)"),
    ("epochs = 2.5", "setting 'epochs' (--epochs) must be an integer"),
    ("lr = true", "setting 'lr' (--lr) must be a number, got True (a boolean)"),
    ("random_erasing = true", "setting 'random_erasing' (--random-erasing) must be a number or a string, got True"),
    ('random_erasing = "0.3"', "--random-erasing must be auto, or a number between 0 and 1, got '0.3'"),
])
def test_config_file_values_are_type_checked(tmp_path, text, needle):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text + "\n")
    with pytest.raises(SqueezeNetError) as e:
        TrainConfig.from_dict(load_config_file(str(cfg)))
    assert needle in str(e.value)
    code, _, err = run_cli("train", "--config", cfg, "--out", tmp_path / "run")
    assert_one_line(code, err, needle)
    assert not (tmp_path / "run").exists()


def test_a_real_boolean_in_a_config_file_still_works(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("head_relu = false\nlr = 1\n")
    c = TrainConfig.from_dict(load_config_file(str(cfg)))
    assert c.head_relu is False and c.lr == 1


# ---------------------------------------------------------------- 7. numeric class folders

def test_numeric_class_folders_are_class_indices_and_the_order_is_said(tmp_path):
    from squeezenet.imagenet import class_order, scan_imagenet

    names = [str(i) for i in range(12)]
    assert class_order(names) == (names, "numeric (folder i = class i)")
    assert class_order(["n02", "n01"]) == (["n01", "n02"], "sorted folder names (WordNet ids)")
    for i in range(12):
        (tmp_path / "val" / str(i)).mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "val" / str(i) / "x.png")
    samples, wnids, order = scan_imagenet(tmp_path, 12)
    assert [(Path(p).parent.name, y) for p, y in samples] == [(str(i), i) for i in range(12)]
    for bad in (["1", "2"], ["0", "01"]):
        with pytest.raises(SqueezeNetError, match="not exactly 0.."):
            class_order(bad)


# ---------------------------------------------------------------- 9-11, 13-15. tracebacks

@pytest.mark.parametrize("args,needle", [
    (["explain", "tv:fasterrcnn_resnet50_fpn"], "is torchvision's an object detector"),
    (["summary", "tv:raft_small"], "optical-flow model"),
    (["summary", "tv:deeplabv3_resnet50"], "segmentation model"),
    (["explain", "tv:quantized_mobilenet_v2"], "use its float model 'tv:mobilenet_v2'"),
    (["summary", "tv:quantized_mobilenet_v2"], "int8 (quantized) classifier"),
    (["summary", "tv:vit_b_16", "--input-size", "256"], "does not accept input (1, 3, 256, 256)"),
    (["explain", "shufflenet_v1_g5"], "ours that start the same: shufflenet_v1_g1"),
])
def test_models_we_do_not_count_are_one_line(args, needle):
    code, _, err = run_cli(*args)
    assert_one_line(code, err, needle)


def test_eval_of_a_detector_is_one_line(tmp_path):
    code, _, err = run_cli("eval", "--model", "tv:fasterrcnn_mobilenet_v3_large_fpn", "--data", tmp_path)
    assert_one_line(code, err, "object detector")


def test_cifar_without_files_or_network_is_one_line(tmp_path, monkeypatch):
    import urllib.error

    from torchvision.datasets import CIFAR10

    def offline(self, *a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(CIFAR10, "download", offline)
    code, _, err = run_cli("train", "--data", "cifar10", "--data-dir", tmp_path / "empty", "--out", tmp_path / "r")
    assert_one_line(code, err, "could not be downloaded (no network?): put torchvision's 'cifar-10-batches-py'")
    code, _, err = run_cli("train", "--data", "cifar10", "--data-dir", tmp_path / "empty", "--no-download",
                           "--out", tmp_path / "r")
    assert_one_line(code, err, "cifar10 not found under")


def test_compress_takes_imagenet_weights_and_any_model_reference(tmp_path):
    from squeezenet import create_model

    torch.manual_seed(123)  # not compress's own seed (0): the weights must come from the file
    m = create_model("shufflenet_v1_g3_w0.5")
    torch.save(m.state_dict(), tmp_path / "w.pth")
    code, out, err = run_cli("compress", "--model", "shufflenet_v1_g3_w0.5", "--weights", tmp_path / "w.pth",
                             "--sparsity", "0.5", "--out", tmp_path / "s.sqz")
    assert code == 0, err
    from squeezenet.formats.sqz import load_container

    decoded, _ = load_container(tmp_path / "s.sqz")
    w, d = m.state_dict()["fc.weight"], decoded.state_dict()["fc.weight"]
    kept = d != 0
    assert kept.any() and not kept.all()
    # kept weights are the loaded ones, shared to 6-bit centroids; pruning drops the smallest
    assert float((d[kept] - w[kept]).abs().max()) <= float(w.max() - w.min()) / 16
    assert float(w[~kept].abs().max()) <= float(w[kept].abs().min()) + 1e-6
    # another library's model is compressed by name too, and decodes to the same architecture
    code, _, err = run_cli("compress", "--model", "tv:squeezenet1_1", "--sparsity", "0.5", "--out", tmp_path / "t.sqz")
    assert code == 0, err
    tv_decoded, header = load_container(tmp_path / "t.sqz")
    assert header["model_name"] == "tv:squeezenet1_1" and type(tv_decoded).__name__ == "SqueezeNet"
    assert sum(p.numel() for p in tv_decoded.parameters()) == 1_235_496  # torchvision's metadata


def test_out_of_memory_is_one_line(monkeypatch):
    import squeezenet.cli as cli

    def alloc(a):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: you "
                           "tried to allocate 60211200000 bytes.")
    monkeypatch.setattr(cli, "_cmd_list", alloc)
    code, _, err = run_cli("list")
    assert_one_line(code, err, "out of memory")


def test_bench_refuses_a_batch_that_cannot_fit_before_allocating(tmp_path):
    code, _, err = run_cli("bench", "squeezenet1_1", "--batch-sizes", "100000", "--out", tmp_path)
    assert_one_line(code, err, "--batch-sizes 100000 needs")


# ---------------------------------------------------------------- also

def test_bench_writes_atomically_and_names_the_path(tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli("bench", "squeezenet1_1", "--out", tmp_path / "file" / "sub")
    assert_one_line(code, err, f"cannot write '{tmp_path / 'file' / 'sub'}'")


def test_fp16_batch1_export_evaluates(tmp_path, tiny_run, fmnist_dir):
    from squeezenet.deploy.export import export_onnx
    from squeezenet.evaluate import evaluate_checkpoint

    r = export_onnx(checkpoint=str(tiny_run / "last.pt"), out=str(tmp_path / "m.onnx"), fp16=True)
    kw = dict(data_dir=str(fmnist_dir), download=False)
    fixed = evaluate_checkpoint(r["fp16_path"], **kw)
    dyn = export_onnx(checkpoint=str(tiny_run / "last.pt"), out=str(tmp_path / "d.onnx"), fp16=True,
                      dynamic_batch=True)
    # the same graph run one image per call both ways, so no CPU's batch-size-dependent kernels can differ
    one_by_one = evaluate_checkpoint(dyn["fp16_path"], batch_size=1, out=str(tmp_path / "d1.json"), **kw)
    assert fixed["n"] == 128 and fixed["confusion"] == one_by_one["confusion"]


def test_predict_predicts_the_good_images_and_reports_the_bad_one(tmp_path, tiny_run):
    good = tmp_path / "a.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(good)
    code, out, err = run_cli("predict", "-c", tiny_run / "last.pt", good, tmp_path / "missing.png")
    assert out.splitlines()[0] == str(good) and len(out.splitlines()) == 6
    assert_one_line(code, err, "1 of 2 image(s) could not be read (image not found")


@pytest.mark.parametrize("fmt", ["pt", "onnx"])
def test_predict_decodes_each_image_once_in_chunks(tmp_path, tiny_run, monkeypatch, fmt):
    """predict over more images than a chunk: every image decoded once, the answers in the
    given order and the same as one image at a time, an unreadable image reported."""
    from squeezenet import evaluate as ev
    from squeezenet.deploy.export import export_onnx
    from squeezenet.imageio import model_input

    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(paths[-1])
    paths.insert(2, tmp_path / "missing.png")
    model = tiny_run / "last.pt"
    if fmt == "onnx":
        model = Path(export_onnx(checkpoint=str(model), out=str(tmp_path / "m.onnx"), dynamic_batch=True)["path"])
    calls = []
    monkeypatch.setattr(ev, "model_input", lambda *a: calls.append(a[0]) or model_input(*a))
    real_chunks = ev.decoded_chunks
    monkeypatch.setattr(ev, "decoded_chunks", lambda images, spec: real_chunks(images, spec, chunk=2))
    results, bad = ev.predict(str(model), [str(p) for p in paths], topk=10)
    assert sorted(calls) == sorted(str(p) for p in paths)  # once each
    assert [r[0] for r in results] == [str(p) for p in paths if p.exists()] and len(bad) == 1
    for path, top in results:  # every class's probability, so a near-tie's order cannot matter on any CPU
        alone = dict(ev.predict(str(model), [path], topk=10)[0][0][1])
        assert dict(top) == pytest.approx(alone, abs=1e-5)


def test_resume_keeps_the_runs_own_normalisation(tmp_path, fmnist_dir, monkeypatch):
    """A run resumed where the data's mean/std now come out otherwise (another version's
    statistics) trains and records the normalisation it started with."""
    from squeezenet import data
    from squeezenet.formats.checkpoint import load_checkpoint

    cfg = dict(model=TINY, data_dir=str(fmnist_dir), download=False, out=str(tmp_path / "r"), epochs=2,
               batch_size=64, progress=False, precision="fp32", max_steps=1)
    first = Trainer(TrainConfig(**cfg))
    first.run()
    recorded = load_checkpoint(tmp_path / "r" / "last.pt")["data"]["mean"]
    monkeypatch.setattr(data, "_mean_std", lambda images: ([0.9], [0.1]))
    tr = Trainer(TrainConfig(**{**cfg, "resume": True, "max_steps": 2}))
    assert tr.spec.mean == [0.9]  # what the data says now
    tr.run()
    assert tr.spec.mean == recorded == first.spec.mean
    assert load_checkpoint(tmp_path / "r" / "last.pt")["data"]["mean"] == recorded


def test_resume_errors_say_what_differs(tmp_path, fmnist_dir):
    cfg = dict(model=TINY, data_dir=str(fmnist_dir), download=False, out=str(tmp_path / "r"), epochs=2,
               batch_size=64, progress=False, precision="fp32", max_steps=1)
    Trainer(TrainConfig(**cfg)).run()
    with pytest.raises(SqueezeNetError, match=r"other model options \(dropout 0.5 -> 0.2\)"):
        Trainer(TrainConfig(**{**cfg, "resume": True, "dropout": 0.2, "max_steps": None})).run()
    with pytest.raises(SqueezeNetError, match="is a 'squeezenet1_1_small_bn_w0.25' run, not 'squeezenet1_0_small'"):
        Trainer(TrainConfig(**{**cfg, "resume": True, "model": "squeezenet1_0_small", "max_steps": None})).run()


# ---------------------------------------------------------------- 16. torch-free serving

BLOCK_TORCH = "import sys\nfor m in ('torch', 'torchvision'):\n    sys.modules[m] = None\n"


def _no_torch(code: str, tmp_path) -> subprocess.CompletedProcess:
    script = tmp_path / "no_torch.py"
    script.write_text(BLOCK_TORCH + code)
    env = {**os.environ, "PYTHONPATH": SRC, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)


def test_onnx_predict_eval_and_int8_serving_need_no_torch(tmp_path, tiny_run, fmnist_dir):
    """In a process where torch cannot be imported: the CLI builds, `predict` and `eval` of
    an .onnx agree with the torch process, and `serve --backend ort-int8` quantizes at
    start and answers. The torch process's figures are the reference."""
    pytest.importorskip("onnxruntime")
    from squeezenet.deploy.export import export_onnx
    from squeezenet.evaluate import evaluate_checkpoint, predict

    onnx_path = export_onnx(checkpoint=str(tiny_run / "last.pt"), out=str(tmp_path / "m.onnx"),
                            dynamic_batch=True)["path"]
    imgs = []
    for i in range(3):
        imgs.append(tmp_path / f"{i}.png")
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (28, 28), dtype=np.uint8)).save(imgs[-1])
    want_eval = evaluate_checkpoint(onnx_path, data_dir=str(fmnist_dir), download=False,
                                    out=str(tmp_path / "torch.json"))
    want_pred, _ = predict(str(tiny_run / "last.pt"), [str(p) for p in imgs], topk=3)
    code = f"""
import json
from squeezenet.cli import build_parser
from squeezenet.evaluate import evaluate_checkpoint, predict
from squeezenet.serve import load_classifier
build_parser()
r = evaluate_checkpoint({str(onnx_path)!r}, data_dir={str(fmnist_dir)!r}, download=False,
                        out={str(tmp_path / 'np.json')!r})
p, bad = predict({str(onnx_path)!r}, {[str(p) for p in imgs]!r}, topk=3)
clf = load_classifier({str(onnx_path)!r}, None, True, "ort-int8", {str(tmp_path)!r})
q = clf.predict([{str(imgs[0])!r}], topk=3)
print(json.dumps({{"eval": r, "pred": p, "bad": bad, "int8": q, "torch": "torch" in sys.modules and
                   sys.modules["torch"] is not None}}))
"""
    res = _no_torch(code, tmp_path)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.splitlines()[-1])
    assert got["torch"] is False
    for k in ("n", "top1", "top5", "confusion"):
        assert got["eval"][k] == want_eval[k], k
    assert got["eval"]["loss"] == pytest.approx(want_eval["loss"], rel=1e-5)
    for (path, rows), (wpath, wrows) in zip(got["pred"], want_pred):
        assert path == wpath and [c for c, _ in rows] == [c for c, _ in wrows]
        assert [p for _, p in rows] == pytest.approx([p for _, p in wrows], abs=1e-5)
    assert got["bad"] == [] and len(got["int8"][0]) == 3


def test_without_torch_training_commands_say_what_to_install(tmp_path):
    res = _no_torch("from squeezenet.cli import main\nsys.exit(main(['summary', 'squeezenet1_0']))", tmp_path)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "error: `squeezenet summary` needs torch, which is not installed; install the training side with `pip install "
        "'squeezenet-toolkit[train]'` (serving .onnx/.sqz, and predict/eval of .onnx, need only the [serve] extra)"]


def test_serve_extra_installs_no_torch():
    import tomllib

    meta = tomllib.loads((Path(SRC).parent / "pyproject.toml").read_text())["project"]
    base = meta["dependencies"] + meta["optional-dependencies"]["serve"]
    assert not any(d.split("=")[0].split("[")[0] in ("torch", "torchvision") for d in base)


# ---------------------------------------------------------------- 22. the server process

def test_a_port_in_use_is_one_line_before_the_model_loads(tmp_path):
    from squeezenet.serve import ServeConfig
    from squeezenet.serve.app import serve

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(SqueezeNetError, match=f"cannot listen on 127.0.0.1:{port}"):
            serve(ServeConfig(str(tmp_path / "never-loaded.onnx"), port=port))


def test_the_page_escapes_the_name_and_asks_for_at_most_the_classes_there_are():
    from squeezenet.serve.app import _page

    page = _page("<img src=x onerror=alert(1)>", 3)
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "topk=3" in page and "topk=5" not in page
    assert "document.getElementById('result').innerHTML = '';" in page  # an error clears the old results


def test_normalisation_is_measured_over_the_whole_training_set():
    """Over 20,000 images the mean/std come from images spread through the set: a folder of
    20,000 black then 20,000 white images has mean 0.5, not its first 20,000's 0.0."""
    from squeezenet.data import _mean_std

    images = torch.cat([torch.zeros(20000, 1, 2, 2, dtype=torch.uint8), torch.full((20000, 1, 2, 2), 255,
                                                                                   dtype=torch.uint8)])
    mean, std = _mean_std(images)
    assert mean[0] == pytest.approx(0.5, abs=1e-3) and std[0] == pytest.approx(0.5, abs=1e-3)


def test_a_folders_input_size_is_not_its_first_image_alone(tmp_path):
    """A folder whose first class holds 16 px images and whose second holds 32 px ones trains
    at 32 px (the largest of the images probed across the classes), and says that they differ;
    before, the first image alone chose 16 px."""
    from squeezenet.data import load_data

    root = make_image_folder(tmp_path / "imgs", classes=("a",), n=4, size=16)
    make_image_folder(root, classes=("a", "b"), n=4, size=32, splits=("val",))
    make_image_folder(tmp_path / "b", classes=("b",), n=4, size=32, splits=("train",))
    (tmp_path / "b" / "train" / "b").rename(root / "train" / "b")
    splits = load_data(str(root), cache=False)
    assert splits.spec.input_size == 32 and splits.train.image_size == 32
    assert any("images differ in size (16x16 to 32x32 px" in n for n in splits.notes)
    assert not any("differ in size" in n for n in load_data(str(root), input_size=24, cache=False).notes)
