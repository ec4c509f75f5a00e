"""Never silently wrong, never a traceback, nothing lost (issue 11): each test here
failed before the fix it guards."""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import TINY, assert_one_line, make_image_folder, run_cli
from squeezenet import SqueezeNetError
from squeezenet.formats.checkpoint import load_checkpoint, make_checkpoint, seal
from squeezenet.files import RunLock, atomic_save
from squeezenet.train import Trainer, TrainConfig

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def _cfg(out, fmnist_dir, **kw):
    base = dict(model=TINY, data_dir=str(fmnist_dir), download=False, out=str(out), epochs=1, batch_size=64,
                lr=0.1, progress=False, precision="fp32")
    return TrainConfig(**{**base, **kw})


def _png(path, array):
    Image.fromarray(array).save(path, format="PNG")
    return path


# ---------------------------------------------------------------- 1. --input-size is applied

def test_input_size_is_what_training_used_and_predict_reproduces_eval_logits(tmp_path, fmnist_dir):
    from squeezenet.data import load_data
    from squeezenet.evaluate import load_predictor, preprocess_images

    out = tmp_path / "run"
    tr = Trainer(_cfg(out, fmnist_dir, input_size=40, max_steps=3))
    assert tr.splits.train.images.shape[-2:] == (40, 40)  # trained on 40 px, not 28
    tr.run()
    ck = load_checkpoint(out / "last.pt")
    assert ck["data"]["input_size"] == 40
    # the evaluation inputs training used, and predict on the raw 28 px test images
    splits = load_data("fashion-mnist", str(fmnist_dir), 40, download=False)
    from squeezenet.batches import normalize

    x_eval = normalize(splits.test.images[:6], ck["data"]["mean"], ck["data"]["std"])
    fn, spec = load_predictor(str(out / "last.pt"))
    with torch.no_grad():
        ref = fn(x_eval)
    from squeezenet.data import load_fashion_mnist

    raw = load_fashion_mnist(str(fmnist_dir), False)[1].images[:6]
    paths = [_png(tmp_path / f"{i}.png", raw[i, 0].numpy()) for i in range(6)]
    x_pred = preprocess_images([str(p) for p in paths], spec)
    assert x_pred.shape == (6, 1, 40, 40)
    torch.testing.assert_close(x_pred, x_eval, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(fn(x_pred), ref, rtol=0, atol=0)


def test_input_size_too_small_is_refused_before_data_is_read(tmp_path):
    code, _, err = run_cli("train", "squeezenet1_0", "--input-size", "16", "--data", tmp_path / "nonexistent",
                           "--out", tmp_path / "r")
    assert_one_line(code, err, "cannot take 16 px images")


# ---------------------------------------------------------------- 2. 16-bit and other modes

def test_16bit_grayscale_is_scaled_by_its_bit_depth(tmp_path):
    from squeezenet.imageio import image_to_array

    v8 = (np.arange(28 * 28).reshape(28, 28) % 256).astype(np.uint8)
    p16 = _png(tmp_path / "g16.png", v8.astype(np.uint16) * 257)  # same intensities at 16 bits
    assert Image.open(p16).mode.startswith("I;16")
    np.testing.assert_array_equal(image_to_array(p16, 1, None)[0], v8)
    np.testing.assert_array_equal(image_to_array(p16, 3, None)[1], v8)
    f = tmp_path / "f.tiff"
    Image.fromarray(v8.astype(np.float32) / 255.0, "F").save(f)
    assert np.abs(image_to_array(f, 1, None)[0].astype(int) - v8).max() <= 1


def test_16bit_png_predicts_like_its_8bit_twin_in_every_path(tmp_path, tiny_run):
    pytest.importorskip("onnxruntime")
    from squeezenet.deploy import load
    from squeezenet.deploy.export import export_onnx
    from squeezenet.evaluate import predict

    v8 = np.zeros((28, 28), np.uint8)
    v8[8:11, 4:24] = 250
    a, b = _png(tmp_path / "a.png", v8), _png(tmp_path / "b.png", v8.astype(np.uint16) * 257)
    (pa, pb), _ = predict(str(tiny_run / "last.pt"), [str(a), str(b)])
    assert pa[1] == pb[1]
    onnx_path = export_onnx(checkpoint=str(tiny_run / "last.pt"), out=str(tmp_path / "m.onnx"), dynamic_batch=True)
    clf = load(onnx_path["path"])
    np.testing.assert_array_equal(clf.preprocess([a]), clf.preprocess([b]))


def test_cmyk_rgba_palette_and_1x1_images_just_work(tmp_path):
    from squeezenet.imageio import image_to_array

    rgb = np.full((20, 20, 3), (200, 30, 60), np.uint8)
    paths = [_png(tmp_path / "rgba.png", np.dstack([rgb, np.full((20, 20), 128, np.uint8)])),
             tmp_path / "cmyk.jpg", tmp_path / "p.png", _png(tmp_path / "one.png", rgb[:1, :1])]
    Image.fromarray(rgb).convert("CMYK").save(paths[1])
    Image.fromarray(rgb).convert("P").save(paths[2])
    for p in paths:
        a = image_to_array(p, 3, 28)
        assert a.shape == (3, 28, 28) and a.dtype == np.uint8
        assert abs(int(a[0].mean()) - 200) <= 3 and abs(int(a[1].mean()) - 30) <= 3, p


# How a camera stores an image whose EXIF orientation tag is o, given the upright image u
# (the EXIF 2.32 spec, tag 0x0112: where the stored 0th row and 0th column lie when the
# image is shown; numpy here, not Pillow, so the test does not check Pillow against itself).
STORED_FOR_ORIENTATION = {
    1: lambda u: u,                      # 0th row top, 0th column left
    2: lambda u: u[:, ::-1],             # top, right: mirrored left-right
    3: lambda u: u[::-1, ::-1],          # bottom, right: turned 180 degrees
    4: lambda u: u[::-1],                # bottom, left: mirrored top-bottom
    5: lambda u: u.transpose(1, 0, 2),   # left, top: transposed
    6: lambda u: np.rot90(u, 1),         # right, top: a phone held upright (shown turned 90 degrees clockwise)
    7: lambda u: np.rot90(u, 2).transpose(1, 0, 2),  # right, bottom: transversed
    8: lambda u: np.rot90(u, -1),        # left, bottom: shown turned 90 degrees anticlockwise
}


def _tagged(path, stored, orientation, fmt="PNG", **kw):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(np.ascontiguousarray(stored)).save(path, format=fmt, exif=exif, **kw)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_the_exif_spec_defines(tmp_path, orientation):
    from squeezenet.imageio import image_to_array

    u = np.random.default_rng(orientation).integers(0, 256, (5, 7, 3), dtype=np.uint8)  # not square: turns show
    p = _tagged(tmp_path / "o.png", STORED_FOR_ORIENTATION[orientation](u), orientation)
    np.testing.assert_array_equal(image_to_array(p, 3, None), u.transpose(2, 0, 1))
    np.testing.assert_array_equal(image_to_array(p, 1, None)[0], np.asarray(Image.fromarray(u).convert("L")))


def test_a_sideways_phone_photo_predicts_as_its_upright_twin_in_every_path(tmp_path, tiny_run):
    """A JPEG stored sideways with orientation 6 gets the upright image's prediction from
    the PyTorch and the ONNX Runtime paths alike (they share the decoder)."""
    pytest.importorskip("onnxruntime")
    from squeezenet.deploy import load
    from squeezenet.deploy.export import export_onnx
    from squeezenet.evaluate import predict

    u = np.zeros((28, 28), np.uint8)
    u[4:24, 8:11] = 250  # a vertical bar: turned 90 degrees it is a horizontal one
    up = _png(tmp_path / "up.png", u)
    side = _tagged(tmp_path / "side.jpg", np.rot90(u, 1), 6, fmt="JPEG", quality=100, subsampling=0)
    turned = _png(tmp_path / "turned.png", np.rot90(u, 1))  # the stored pixels, untagged
    (pu, ps, pt), _ = predict(str(tiny_run / "last.pt"), [str(up), str(side), str(turned)], topk=10)  # all classes
    pu, ps, pt = dict(pu[1]), dict(ps[1]), dict(pt[1])
    gap = lambda p: max(abs(pu[c] - p[c]) for c in pu)  # noqa: E731
    # Not the class order (near-ties in a one-epoch model differ between CPUs): the tagged photo is far closer to
    # the upright image than its untagged pixels are (1.9e-7 against 2.0e-4 here; the JPEG's rounding alone).
    assert gap(ps) < 0.02 and gap(ps) < gap(pt) / 10
    clf = load(export_onnx(checkpoint=str(tiny_run / "last.pt"), out=str(tmp_path / "m.onnx"))["path"])
    a, b = clf.preprocess([up]), clf.preprocess([side])
    assert np.abs(a - b).max() < 0.1 < np.abs(a - clf.preprocess([_png(tmp_path / "s.png", np.rot90(u, 1))])).max()


@pytest.mark.parametrize("exif", [b"Exif\x00\x00not a TIFF header", b"Exif\x00\x00MM\x00\x2a\x00\x00\xff\xff"])
def test_damaged_exif_keeps_the_stored_pixels(tmp_path, exif):
    from squeezenet.imageio import image_to_array

    u = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    p = tmp_path / "d.png"
    Image.fromarray(u).save(p, format="PNG", exif=exif)
    np.testing.assert_array_equal(image_to_array(p, 3, None), u.transpose(2, 0, 1))


def test_decompression_bomb_is_one_line(tmp_path, tiny_run):
    from squeezenet.imageio import image_to_array

    small = tmp_path / "s.png"
    Image.new("L", (8, 8)).save(small)
    data = bytearray(small.read_bytes())
    struct.pack_into(">II", data, 16, 40000, 40000)  # IHDR width/height: 1.6 G pixels claimed
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bytes(data))
    with pytest.raises(SqueezeNetError, match="too large .*decompression bombs"):
        image_to_array(bomb, 1, 28)
    code, _, err = run_cli("predict", "-c", tiny_run / "last.pt", bomb)
    assert_one_line(code, err, "too large")


# ---------------------------------------------------------------- 3. ONNX integrity

def test_every_single_bit_flip_of_an_onnx_file_is_refused(tmp_path):
    pytest.importorskip("onnxruntime")
    from squeezenet.deploy.export import export_model_to_onnx
    from squeezenet.formats.onnx import OnnxClassifier
    from squeezenet.factory import create_model

    path = export_model_to_onnx(create_model(TINY, num_classes=10, in_chans=1), tmp_path / "m.onnx", (1, 28, 28),
                                metadata=dict(name="x", classes=[str(i) for i in range(10)], channels=1,
                                              input_size=28, mean=[0.5], std=[0.5]))
    OnnxClassifier(path)  # the intact file loads
    data = path.read_bytes()
    rng = np.random.default_rng(0)
    refused = 0
    for pos in rng.choice(len(data) * 8, 40, replace=False):
        bad = bytearray(data)
        bad[pos // 8] ^= 1 << (pos % 8)
        (tmp_path / "bad.onnx").write_bytes(bytes(bad))
        with pytest.raises(SqueezeNetError, match="integrity digest|corrupted"):
            OnnxClassifier(tmp_path / "bad.onnx")
        refused += 1
    assert refused == 40


def test_foreign_onnx_without_metadata_predicts_with_defaults(tmp_path):
    pytest.importorskip("onnxruntime")
    import onnx

    code, out, err = run_cli("export", "squeezenet1_1", "--input-size", "64", "--out", tmp_path / "m.onnx")
    assert code == 0, err
    img = _png(tmp_path / "x.png", np.zeros((50, 70, 3), np.uint8))
    code, out, err = run_cli("predict", "-c", tmp_path / "m.onnx", img, "--topk", "2")
    assert code == 0 and "no squeezenet metadata" in err and "class " in out, err
    proto = onnx.load(str(tmp_path / "m.onnx"))  # a foreign file: no digest, broken metadata JSON
    del proto.metadata_props[:]
    e = proto.metadata_props.add()
    e.key, e.value = "squeezenet", "{not json"
    onnx.save(proto, str(tmp_path / "f.onnx"))
    code, _, err = run_cli("predict", "-c", tmp_path / "f.onnx", img)
    assert_one_line(code, err, "carries no squeezenet integrity digest")
    code, _, err = run_cli("predict", "-c", tmp_path / "f.onnx", img, "--skip-integrity-check")
    assert_one_line(code, err, "'squeezenet' entry is not valid JSON")


# ---------------------------------------------------------------- 4-5. empty evaluation, NaN weights

def test_zero_images_evaluated_is_an_error():
    from squeezenet.data import TensorDataset
    from squeezenet.spec import DataSpec
    from squeezenet.metrics import evaluate

    spec = DataSpec("t", ["a", "b"], 1, 8, [0.5], [0.5])
    empty = TensorDataset(torch.zeros(0, 1, 8, 8, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), ["a", "b"])
    with pytest.raises(SqueezeNetError, match="no images were evaluated"):
        evaluate(None, empty, spec, predict_fn=lambda x: torch.zeros(len(x), 2))


def test_nan_weights_are_refused(tmp_path, tiny_run, fmnist_dir):
    ck = load_checkpoint(tiny_run / "last.pt")
    key = next(k for k, v in ck["state_dict"].items() if v.is_floating_point() and v.numel() > 1)
    ck["state_dict"][key][0] = float("nan")
    atomic_save(seal(ck), tmp_path / "nan.pt")
    code, _, err = run_cli("eval", "-c", tmp_path / "nan.pt", "--data-dir", fmnist_dir, "--no-download")
    assert_one_line(code, err, "contain NaN or inf")
    assert not (tmp_path / "nan.pt.eval.json").exists()


# ---------------------------------------------------------------- 6. class names

def test_eval_compares_class_names_and_remaps_a_reordering(tmp_path):
    from squeezenet.evaluate import evaluate_checkpoint

    make_image_folder(tmp_path / "pets", ("cat", "dog"))
    make_image_folder(tmp_path / "other", ("bird", "fish"))
    Trainer(TrainConfig(model="squeezenet1_1_small_w0.25", data=str(tmp_path / "pets"), out=str(tmp_path / "r"),
                        epochs=6, batch_size=4, lr=0.05, progress=False, precision="fp32", dropout=0.0)).run()
    ref = evaluate_checkpoint(str(tmp_path / "r" / "last.pt"), str(tmp_path / "pets"))
    with pytest.raises(SqueezeNetError, match=r"classes \(bird, fish\) differ from .*\(cat, dog\).*--map-by-index"):
        evaluate_checkpoint(str(tmp_path / "r" / "last.pt"), str(tmp_path / "other"))
    by_index = evaluate_checkpoint(str(tmp_path / "r" / "last.pt"), str(tmp_path / "other"), map_by_index=True)
    assert by_index["n"] == 12 and by_index["map_by_index"]
    # the same model with its outputs (and names) listed the other way round scores the same by name
    ck = load_checkpoint(tmp_path / "r" / "last.pt")
    ck["data"]["classes"] = ck["data"]["classes"][::-1]
    for k in ("classifier.conv10.weight", "classifier.conv10.bias"):
        ck["state_dict"][k] = ck["state_dict"][k].flip(0).contiguous()
    atomic_save(seal(ck), tmp_path / "flipped.pt")
    swapped = evaluate_checkpoint(str(tmp_path / "flipped.pt"), str(tmp_path / "pets"))
    assert swapped["top1"] == ref["top1"] and swapped["loss"] == pytest.approx(ref["loss"], rel=1e-6)
    assert swapped["classes"] == ["dog", "cat"]


def test_eval_scores_a_folder_of_val_images_alone_with_some_of_the_classes(tmp_path):
    """A test folder holding val/ alone, with images of some of the model's classes: the
    torch path said "class folders of 'DIR/val' differ from 'DIR'" (it took DIR itself for
    the training folder), and the torch-free ONNX path refused the missing classes. Both
    now score exactly the images of those classes as the full folder's evaluation does
    (the same rows of the same confusion matrix), and name the data they scored."""
    from squeezenet.deploy.onnx_eval import evaluate_onnx
    from squeezenet.evaluate import evaluate_checkpoint
    from squeezenet.factory import create_model

    full = make_image_folder(tmp_path / "full", ("bird", "cat", "dog"), n=4, size=16)
    some = tmp_path / "some"
    for c in ("cat", "dog"):
        shutil.copytree(full / "val" / c, some / "val" / c)
    spec = dict(name="folder:full", classes=["bird", "cat", "dog"], channels=3, input_size=16, mean=[0.5] * 3,
                std=[0.25] * 3)
    model = create_model("squeezenet1_1_small_w0.25", num_classes=3)
    with torch.no_grad():  # every image scored as "cat" by a wide margin: no near-tie any CPU could flip
        model.classifier.conv10.weight.zero_()
        model.classifier.conv10.bias.copy_(torch.tensor([0.0, 3.0, 1.0]))
    atomic_save(make_checkpoint(model, "squeezenet1_1_small_w0.25", spec), tmp_path / "m.pt")
    ref = evaluate_checkpoint(str(tmp_path / "m.pt"), str(full), out=str(tmp_path / "ref.json"))
    got = evaluate_checkpoint(str(tmp_path / "m.pt"), str(some), out=str(tmp_path / "got.json"))
    assert ref["n"] == 12 and got["n"] == 8 and got["data"] == "folder:some" and ref["data"] == "folder:full"
    assert ref["confusion"] == [[0, 4, 0], [0, 4, 0], [0, 4, 0]]
    assert got["confusion"] == [[0, 0, 0], [0, 4, 0], [0, 4, 0]]  # the cat and dog rows, where the model has them
    assert got["top1"] == pytest.approx(100.0 * sum(ref["confusion"][i][i] for i in (1, 2)) / 8)
    code, _, err = run_cli("export", "-c", tmp_path / "m.pt", "--out", tmp_path / "m.onnx")
    assert code == 0, err
    onnx = evaluate_onnx(str(tmp_path / "m.onnx"), str(some))
    assert onnx["n"] == 8 and onnx["confusion"] == got["confusion"] and onnx["data"] == "folder:some"
    # data that calibrates or fine-tunes a model (quantize, compress) must cover its classes
    from squeezenet.data import load_data_for
    from squeezenet.spec import DataSpec

    both = make_image_folder(tmp_path / "both", ("cat", "dog"), n=2, size=16)
    model_spec = DataSpec(**spec, small=True)
    assert load_data_for(model_spec, str(both), need_train=False).test.labels.unique().tolist() == [1, 2]
    with pytest.raises(SqueezeNetError, match=r"classes \(cat, dog\) differ from the model's \(bird, cat, dog\)"):
        load_data_for(model_spec, str(both))
    # a class the model does not have is still refused, in one line
    make_image_folder(tmp_path / "odd", ("cat", "fish"), n=2, size=16, splits=("val",))
    code, _, err = run_cli("eval", "-c", tmp_path / "m.pt", "--data", tmp_path / "odd")
    assert_one_line(code, err, "classes (cat, fish) differ from")


def test_compress_names_the_folder_a_run_needs(tmp_path):
    make_image_folder(tmp_path / "pets", ("cat", "dog"))
    Trainer(TrainConfig(model="squeezenet1_1_small_w0.25", data=str(tmp_path / "pets"), out=str(tmp_path / "r"),
                        epochs=1, batch_size=4, progress=False, precision="fp32")).run()
    code, _, err = run_cli("compress", "-c", tmp_path / "r" / "last.pt", "--out", tmp_path / "c.sqz")
    assert_one_line(code, err, "trained on image folder 'pets'; pass that folder with --data PATH")


# ---------------------------------------------------------------- 7-8. one writer, Ctrl-C and resume

def test_a_second_writer_is_refused_and_a_killed_holder_leaves_no_stale_lock(tmp_path, fmnist_dir):
    out = tmp_path / "run"
    with RunLock(out):
        with pytest.raises(SqueezeNetError, match=r"in use by a running squeezenet process \(pid \d+\)"):
            Trainer(_cfg(out, fmnist_dir, max_steps=1)).run()
    assert not (out / "last.pt").exists()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from squeezenet.files import RunLock\n"
                               f"with RunLock({str(out)!r}):\n    print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run_cli("train", TINY, "--data-dir", fmnist_dir, "--no-download", "--out", out,
                               "--max-steps", "1", "--no-progress")
        assert_one_line(code, err, "is in use by a running squeezenet process")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    Trainer(_cfg(out, fmnist_dir, max_steps=1)).run()  # the dead holder's lock file does not block
    assert (out / "last.pt").is_file()


def test_a_lock_taken_on_a_file_its_failing_holder_removed_is_taken_again(tmp_path, monkeypatch):
    """A run that fails in an empty folder removes its lock file while it still holds it.
    A second run that opened that file just before may then lock the unlinked file: it must
    notice, and lock the file on disk, or a third run would hold the folder beside it."""
    import fcntl

    out = tmp_path / "run"
    real, calls = fcntl.flock, []

    def holder_fails_in_between(fd, op):
        if op & fcntl.LOCK_EX and not calls:  # the previous holder unlinks and unlocks between our open and lock
            (out / ".lock").unlink()
        calls.append(op)
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", holder_fails_in_between)
    with RunLock(out) as lock:
        assert os.path.samestat(os.fstat(lock.fd), os.stat(out / ".lock"))  # the file a third run would open
        monkeypatch.setattr(fcntl, "flock", real)
        with pytest.raises(SqueezeNetError, match="in use by a running squeezenet process"):
            RunLock(out).__enter__()
    assert sum(1 for op in calls if op & fcntl.LOCK_EX) == 2


def test_a_run_that_fails_before_writing_leaves_no_lock_behind(tmp_path):
    """Only a failure in a folder that holds nothing else takes the lock file with it; a
    folder with anything in it, or a block that succeeds, keeps it."""
    empty, used, fine = tmp_path / "empty", tmp_path / "used", tmp_path / "fine"
    for folder in (empty, used):
        folder.mkdir()
    (used / "last.pt").write_bytes(b"x")
    for folder in (empty, used):
        with pytest.raises(SqueezeNetError, match="boom"):
            with RunLock(folder):
                raise SqueezeNetError("boom")
    assert sorted(p.name for p in empty.iterdir()) == []
    assert sorted(p.name for p in used.iterdir()) == [".lock", "last.pt"]
    with RunLock(fine):
        pass
    assert sorted(p.name for p in fine.iterdir()) == [".lock"]


def test_ctrl_c_exits_130_and_the_printed_resume_command_works(tmp_path, fmnist_dir, monkeypatch):
    full, part = tmp_path / "full", tmp_path / "part"
    args = [TINY, "--data-dir", fmnist_dir, "--no-download", "--epochs", "2", "-b", "64", "--lr", "0.1",
            "--precision", "fp32", "--no-progress", "--dropout", "0.1"]
    assert run_cli("train", *args, "--out", full)[0] == 0
    from squeezenet.train import StepRunner

    real, calls = StepRunner.__call__, {"n": 0}

    def interrupted(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 11:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(StepRunner, "__call__", interrupted)
    code, _, err = run_cli("train", *args, "--out", part)
    monkeypatch.setattr(StepRunner, "__call__", real)
    assert code == 130 and "continue with: squeezenet train --resume --out" in err, err
    printed = err.split("continue with: squeezenet ")[1].split()
    assert printed == ["train", "--resume", "--out", str(part)]
    code, _, err = run_cli(*printed)
    assert code == 0, err
    a, b = load_checkpoint(full / "last.pt")["state_dict"], load_checkpoint(part / "last.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    code, _, err = run_cli("train", "--resume", "--out", part, "--epochs", "3")  # an explicit change is refused
    assert_one_line(code, err, "epochs 2 -> 3")


# ---------------------------------------------------------------- 9. disks

@pytest.fixture
def tmpfs(tmp_path):
    """A real small or read-only file system (needs root and mount; skipped elsewhere)."""
    mounted = []

    def make(size="256k", ro=False):
        d = tmp_path / f"fs{len(mounted)}"
        d.mkdir()
        opts = f"size={size}" + (",ro" if ro else "")
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(d)], capture_output=True)
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs here (needs root)")
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", str(d)], capture_output=True)


def test_read_only_output_folders_are_one_line_errors(tmpfs, tiny_run, fmnist_dir):
    ro = tmpfs(ro=True)
    for args in (["train", TINY, "--data-dir", fmnist_dir, "--no-download", "--out", ro / "run", "--max-steps", "1"],
                 ["export", "-c", tiny_run / "last.pt", "--out", ro / "m.onnx"],
                 ["eval", "-c", tiny_run / "last.pt", "--data-dir", fmnist_dir, "--no-download", "--out",
                  ro / "e.json"]):
        code, _, err = run_cli(*args)
        assert_one_line(code, err, "read-only")


def test_a_full_disk_while_checkpointing_keeps_the_old_file(tmpfs, tiny_run):
    full = tmpfs(size="64k")
    shutil.copy(tiny_run / "config.json", full / "config.json")
    ck = load_checkpoint(tiny_run / "last.pt")
    small = make_checkpoint(torch.nn.Linear(2, 2), "x")
    atomic_save(small, full / "last.pt")
    before = (full / "last.pt").read_bytes()
    with pytest.raises(SqueezeNetError, match=r"cannot write .*last.pt.*(disk is full|No space)"):
        atomic_save(ck, full / "last.pt")  # ~100 KB into 64 KB
    assert (full / "last.pt").read_bytes() == before
    assert sorted(p.name for p in full.iterdir()) == ["config.json", "last.pt"]  # no temp file left


def test_eval_checks_its_output_before_evaluating(tmp_path, tiny_run, fmnist_dir, monkeypatch):
    import squeezenet.metrics as metrics

    monkeypatch.setattr(metrics, "evaluate", lambda *a, **k: pytest.fail("evaluated before checking the output"))
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli("eval", "-c", tiny_run / "last.pt", "--data-dir", fmnist_dir, "--no-download",
                           "--out", tmp_path / "file" / "e.json")
    assert_one_line(code, err, "cannot write")


# ---------------------------------------------------------------- 11. flags, checked up front

BAD_FLAGS = [
    (["train", "--workers", "-3"], "--workers must be >= 0"),
    (["train", "--momentum", "-1"], "--momentum must be in [0, 1)"),
    (["train", "--label-smoothing", "5"], "--label-smoothing must be in [0, 1)"),
    (["train", "--threads", "-1"], "--threads must be >= 1"),
    (["train", "--lr", "nan"], "--lr must be a finite number"),
    (["train", "--lr", "inf"], "--lr must be a finite number"),
    (["train", "--lr", "0"], "--lr must be > 0"),
    (["train", "--input-size", "7"], "--input-size must be between 8 and 2048"),
    (["train", "--ema", "1.5"], "--ema must be in [0, 1)"),
    (["train", "--weight-decay", "-1"], "--weight-decay must be >= 0"),
    (["train", "--warmup-epochs", "-1"], "--warmup-epochs must be >= 0"),
    (["train", "--train-subset", "-250"], "--train-subset must be >= 1"),
    (["train", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "--batch-size", "x"], "--batch-size expects an integer"),
    (["train", "--random-erasing", "2"], "--random-erasing must be auto, or a number between 0 and 1, got 2.0"),
    (["train", "--random-erasing", "sometimes"], "--random-erasing must be auto, or a number between 0 and 1, got "
                                                  "'sometimes'"),
    (["train", "--cutmix", "-0.5"], "--cutmix must be between 0 and 1, got -0.5"),
    (["train", "--recipe", "slow"], "invalid choice: 'slow'"),
    (["train", "--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N"),
    (["train", "--config", "nope.toml"], "config file not found"),
    (["train", "squeezenet1_0_bn_bn"], "modifier '_bn' appears twice"),
    (["eval", "-c", "x.pt", "--batch-size", "-5"], "expected an integer >= 1"),
    (["eval", "-c", "x.pt", "--batch-size", "0"], "expected an integer >= 1"),
    (["predict", "-c", "x.pt", "a.png", "--topk", "-1"], "expected an integer >= 1"),
    (["predict", "-c", "x.pt", "a.png", "--topk", "0"], "expected an integer >= 1"),
    (["summary", "squeezenet1_0", "--num-classes", "0"], "expected an integer >= 1"),
    (["summary", "squeezenet1_0", "--input-size", "0"], "expected a size between 8 and 2048"),
    (["summary", "squeezenet1_0_bn_bn"], "modifier '_bn' appears twice"),
    (["summary", "squeezenet1_0", "--count", "flops"], "unknown count option 'flops'"),
    (["explain", "squeezenet1_0_w1000"], "width must be between"),
    (["explain", "squeezenet1_0_sr0"], "squeeze ratio SR must be in (0, 1]"),
    (["explain", "squeezenet1_0_9999"], "outside 16-2048 px"),
    (["export", "squeezenet1_0", "--opset", "99"], "expected an ONNX opset"),
    (["bench", "squeezenet1_1", "--batch-sizes", "0,8"], "expected an integer >= 1"),
    (["bench", "squeezenet1_1", "--repeats", "-2"], "expected an integer >= 1"),
    (["compress", "--model", "squeezenet1_0", "--lr", "-1"], "expected a number > 0"),
    (["compress", "--model", "squeezenet1_0", "--finetune-epochs", "nan"], "expected a number >= 0"),
    (["quantize", "-c", "x.pt", "--calib-size", "0"], "expected an integer >= 1"),
    (["compare", "--repeats", "0"], "expected an integer >= 1"),
    (["sweep", "--train-epochs", "-1"], "--train-epochs must be >= 0"),
    (["sweep", "--sr", "0.5,nan"], "expected finite numbers"),
    (["serve", "m.onnx", "--max-batch", "0"], "--max-batch must be >= 1, got 0"),
    (["serve", "m.onnx", "--max-wait-ms", "nan"], "--max-wait-ms must be a finite number, got nan"),
    (["serve", "m.onnx", "--port", "70000"], "--port must be between 0 and 65535"),
    (["serve", "m.onnx", "--max-body-mb", "0"], "--max-body-mb must be between 0.001 and 4096"),
    (["serve", "m.onnx", "--read-timeout-s", "x"], "--read-timeout-s expects a number"),
    (["serve", "m.onnx", "--backend", "tensorrt"], "invalid choice: 'tensorrt'"),
    (["serve", "m.onnx", "--host", "0.0.0.0"], "would expose the server"),
    (["serve", "missing.onnx"], "model file not found"),
]


@pytest.mark.parametrize("args,needle", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flags_are_one_line_before_any_work(args, needle, tmp_path, monkeypatch):
    import squeezenet.data as data
    import squeezenet.train as train

    for module in (data, train):  # train binds load_data at import: patch the name it calls
        monkeypatch.setattr(module, "load_data", lambda *a, **k: pytest.fail("data was read before flags were checked"))
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(*args)
    assert_one_line(code, err, needle)


def test_every_command_is_covered_by_the_bad_flag_table():
    from squeezenet.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert commands == {"list", "explain", "summary", "train", "eval", "predict", "export", "quantize", "bench",
                        "compress", "compare", "sweep", "serve"}
    assert commands - {"list"} <= {a[0] for a, _ in BAD_FLAGS}


def test_absurd_names_answer_at_once_without_allocating():
    from squeezenet.models.squeezenet import estimate_params
    from squeezenet.factory import create_model, explain_name

    info = explain_name("squeezenet1_0_w4")  # 13.6 M params, built on the meta device
    assert info["params_1000_classes"].startswith("13,610,728")
    # the bound is computed from the stage list alone; it equals the built model's weight count
    for name in ("squeezenet1_0", "squeezenet1_1_complex_bypass_w0.5"):
        m = create_model(name)
        assert estimate_params(m.stages, 1000) == sum(p.numel() for k, p in m.named_parameters() if k.endswith("weight"))
    with pytest.raises(SqueezeNetError, match=r"751 M parameters \(limit 200 M\)"):
        create_model("squeezenet1_0_w4", base_e=1024, incr_e=1024)


# ---------------------------------------------------------------- 13-14. files that lie

def test_model_files_are_recognised_by_content(tmp_path, tiny_run, fmnist_dir):
    from squeezenet.compression.pipeline import compress

    r = compress(checkpoint=str(tiny_run / "last.pt"), out=str(tmp_path / "m.sqz"), evaluate_data=False)
    shutil.copy(r["path"], tmp_path / "looks_like.pt")
    code, out, err = run_cli("eval", "-c", tmp_path / "looks_like.pt", "--data-dir", fmnist_dir, "--no-download")
    assert code == 0 and "top-1" in out, err
    shutil.copy(tiny_run / "last.pt", tmp_path / "looks_like.sqz")
    code, out, err = run_cli("eval", "-c", tmp_path / "looks_like.sqz", "--data-dir", fmnist_dir, "--no-download")
    assert code == 0 and "top-1" in out, err
    img = _png(tmp_path / "img.pt", np.zeros((8, 8), np.uint8))
    code, _, err = run_cli("eval", "-c", img, "--data-dir", fmnist_dir)
    assert_one_line(code, err, "is an image, not a model file")
    (tmp_path / "notes.onnx").write_text("hello")
    code, _, err = run_cli("predict", "-c", tmp_path / "notes.onnx", img)
    assert_one_line(code, err, "is a text file, not a model file")


@pytest.mark.parametrize("edit,needle", [
    (lambda c: c.pop("state_dict"), "field 'state_dict' is missing"),
    (lambda c: c.pop("model_kwargs"), "field 'model_kwargs' is missing"),
    (lambda c: c["data"].update(classes=["a", "b"]), "field 'classes' must be 10 names"),
    (lambda c: c["data"].update(input_size=0), "field 'input_size' must be an integer between 8 and 2048"),
    (lambda c: c["data"].update(std=[0.0]), "field 'std' must be positive"),
    (lambda c: c.update(format_version=0), "field 'format_version' is invalid"),
    (lambda c: c["model_kwargs"].update(width=1000.0), "width must be between"),
])
def test_hand_edited_checkpoints_are_one_line(edit, needle, tmp_path, tiny_run):
    ck = load_checkpoint(tiny_run / "last.pt")
    edit(ck)
    atomic_save(seal(ck), tmp_path / "e.pt")
    img = _png(tmp_path / "x.png", np.zeros((28, 28), np.uint8))
    code, _, err = run_cli("predict", "-c", tmp_path / "e.pt", img)
    assert_one_line(code, err, needle)
    ck.pop("integrity")
    atomic_save(ck, tmp_path / "unsealed.pt")  # an edit without a new digest
    code, _, err = run_cli("predict", "-c", tmp_path / "unsealed.pt", img)
    assert_one_line(code, err, "format_version" if "format_version" in needle else "integrity digest")


def _reseal_sqz(data: bytes, header: dict) -> bytes:
    import hashlib

    version, hlen = struct.unpack("<HI", data[4:10])
    h = zlib.compress(json.dumps(header).encode())
    body = data[:4] + struct.pack("<HI", version, len(h)) + h + data[10 + hlen:-32]
    return body + hashlib.sha256(body).digest()


@pytest.mark.parametrize("edit,needle", [
    (lambda h: h["tensors"][0].update(shape=[10 ** 9]), "field 'shape'"),
    (lambda h: h["tensors"][0].update(kind="weird"), "field 'kind'"),
    (lambda h: h["tensors"][1].update(data=[10 ** 9, 4]), "field 'data'"),
    (lambda h: next(t for t in h["tensors"] if t["kind"] == "shared").update(k=3000), "field 'k'"),
    (lambda h: next(t for t in h["tensors"] if t["kind"] == "shared").update(count=-1), "field 'count'"),
    (lambda h: h.update(tensors="x"), "field 'tensors'"),
    (lambda h: h.update(model_kwargs={"width": 1000.0}), "width must be between"),
    (lambda h: h.pop("model_name"), "field 'model_name'"),
    (lambda h: h["data"].update(classes=[]), "field 'classes'"),
])
def test_hand_edited_sqz_with_a_recomputed_checksum_is_one_line(edit, needle, tmp_path, tiny_run):
    from squeezenet.formats import sqz as container
    from squeezenet.compression.pipeline import compress

    path = compress(checkpoint=str(tiny_run / "last.pt"), out=str(tmp_path / "m.sqz"), evaluate_data=False)["path"]
    data = open(path, "rb").read()
    header, _ = container.read_raw(path)
    edit(header)
    (tmp_path / "e.sqz").write_bytes(_reseal_sqz(data, header))
    with pytest.raises(SqueezeNetError, match=needle):
        from squeezenet.formats.open import open_model

        open_model(tmp_path / "e.sqz")


def test_version_zero_sqz_is_refused(tmp_path, tiny_run):
    import hashlib

    from squeezenet.compression.pipeline import compress

    path = compress(checkpoint=str(tiny_run / "last.pt"), out=str(tmp_path / "m.sqz"), evaluate_data=False)["path"]
    data = bytearray(open(path, "rb").read())
    struct.pack_into("<H", data, 4, 0)
    body = bytes(data[:-32])
    (tmp_path / "v0.sqz").write_bytes(body + hashlib.sha256(body).digest())
    from squeezenet.formats.sqz import load_container

    with pytest.raises(SqueezeNetError, match="'version' is 0"):
        load_container(tmp_path / "v0.sqz")


# ---------------------------------------------------------------- small but visible

def test_max_steps_run_reports_no_fake_numbers(tmp_path, fmnist_dir):
    code, out, err = run_cli("train", TINY, "--data-dir", fmnist_dir, "--no-download", "--out", tmp_path / "r",
                             "--max-steps", "2", "--no-progress", "-b", "64", "--precision", "fp32")
    assert code == 0, err
    assert "stopped by --max-steps after 2 steps" in out and "-1.00" not in out
    report = (tmp_path / "r" / "report.md").read_text()
    assert "nan" not in report.lower() and "peak RSS 0 MiB" not in report
    assert "best.pt" not in report and not (tmp_path / "r" / "best.pt").exists()
    assert "no epoch finished" in report


def test_one_class_and_unreadable_class_folders_warn(tmp_path, caplog):
    from squeezenet.data import load_data

    make_image_folder(tmp_path / "one", ("only",), splits=("train",))
    load_data(str(tmp_path / "one"), cache=False)
    assert "single class folder" in caplog.text
    make_image_folder(tmp_path / "two", ("a", "b"))
    for f in (tmp_path / "two" / "train" / "b").iterdir():
        f.write_bytes(b"not an image")
    load_data(str(tmp_path / "two"), cache=False)
    assert "class folder(s) b have no readable images" in caplog.text


def test_a_folder_of_one_image_without_val_says_too_few_in_one_line(tmp_path):
    """One image cannot be split into a training and a held-out part: the error says so,
    not that no image could be read."""
    from PIL import Image

    (tmp_path / "d" / "a").mkdir(parents=True)
    Image.new("RGB", (20, 20), (9, 9, 9)).save(tmp_path / "d" / "a" / "x.png")
    code, out, err = run_cli("train", "--data", tmp_path / "d", "--out", tmp_path / "r", "--max-steps", "1")
    assert code == 2 and "Traceback" not in err
    assert "has 1 image(s): too few to hold out 10%" in err and "could not read" not in err
    assert not (tmp_path / "r").exists()  # refused at its data: no empty run folder left behind


def test_a_train_refused_at_its_data_leaves_no_folder_it_made_and_keeps_one_it_found(tmp_path):
    """--out is checked for writing before the data is read (so a read-only disk fails
    first); a run then refused at its data removes the folders it made, and only those."""
    missing = tmp_path / "missing"
    code, _, err = run_cli("train", "--data", missing, "--out", tmp_path / "new" / "run")
    assert code == 2 and err.strip().splitlines() == [f"error: image folder not found: '{missing}'"], err
    assert not (tmp_path / "new").exists()  # the run folder and the parent made for it
    (tmp_path / "kept").mkdir()
    code, _, err = run_cli("train", "--data", missing, "--out", tmp_path / "kept" / "run")
    assert code == 2 and (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "run").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    code, _, err = run_cli("train", "--data", missing, "--out", tmp_path / "mine")
    assert code == 2 and (tmp_path / "mine" / "notes.txt").read_text() == "mine"


def test_a_path_where_train_wants_a_model_name_points_to_resume_and_weights(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"x")
    code, out, err = run_cli("train", tmp_path / "last.pt", "--resume", "--out", tmp_path / "r")
    assert code == 2 and "Traceback" not in err
    assert "not a model name" in err and "--resume --out RUN_DIR" in err and "--weights FILE" in err
    code, out, err = run_cli("train", "no_such_net", "--out", tmp_path / "r")  # not a path: the name's own error
    assert code == 2 and "unknown model 'no_such_net'" in err


def test_no_progress_silences_decoding_bars_and_logs_get_plain_lines(tmp_path, monkeypatch, capsys):
    from squeezenet import progress

    list(progress.progress(range(3000), "decoding images", min_total=2000))
    assert "\r" not in capsys.readouterr().err  # stderr is not a terminal: no redraws
    monkeypatch.setattr(progress, "_tty", lambda: False)
    p = progress.Progress(10, "epoch 1/1", every_s=0.0)
    p.update(1, loss="1.0")
    assert capsys.readouterr().err.strip() == "epoch 1/1: 1/10 loss=1.0"
    progress.enable(False)
    try:
        progress.Progress(10, "epoch", every_s=0.0).update(1)
        assert capsys.readouterr().err == ""
    finally:
        progress.enable(True)
