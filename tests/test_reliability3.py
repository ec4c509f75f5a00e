"""Session 21's audit, as a new user would try the tool: each case below ended in a
traceback or a misleading message before its fix."""

import numpy as np
import pytest
import torch

from helpers import TINY, assert_one_line, make_image_folder, run_cli
from squeezenet.config import TrainConfig
from squeezenet.train import Trainer


def _run(tmp_path, root, **kw):
    base = dict(model=TINY, data=str(root), out=str(tmp_path / "run"), epochs=2, batch_size=4, lr=0.05,
                progress=False, precision="fp32")
    return TrainConfig(**{**base, **kw})


def test_a_batch_larger_than_the_training_set_is_one_line(tmp_path):
    """6 training images and batch 8: an epoch has no step. This was a ZeroDivisionError
    from the schedule's epoch count."""
    root = make_image_folder(tmp_path / "imgs", n=3, size=12)
    code, _, err = run_cli("train", TINY, "--data", root, "-b", "8", "--epochs", "1", "--out",
                           tmp_path / "run", "--no-progress")
    assert_one_line(code, err, "--batch-size 8 is larger than the 6 training images")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_a_changed_folder_is_refused_before_its_images_are_decoded(tmp_path, monkeypatch):
    """A model trained on a folder without val/, evaluated on a folder that is no longer it:
    the refusal names the changed hold-out. It used to decode first, and a folder whose
    redrawn hold-out held only unreadable files said 'every image in the folder was
    unreadable', which was neither true nor the reason."""
    import squeezenet.data as data

    root = make_image_folder(tmp_path / "imgs", n=10, size=12, splits=("train",))
    Trainer(_run(tmp_path, root, epochs=1)).run()
    for p in (root / "train" / "cat").glob("*.png"):
        p.write_bytes(b"not an image")
    (root / "train" / "cat" / "extra.png").write_bytes(b"not an image")
    monkeypatch.setattr(data, "_decode_folder", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    code, _, err = run_cli("eval", "--checkpoint", tmp_path / "run" / "last.pt", "--data", root)
    assert_one_line(code, err, "no longer holds the images")


def test_an_unreadable_held_out_split_is_named(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n=4, size=12)
    for p in (root / "val").rglob("*.png"):
        p.write_bytes(b"not an image")
    code, _, err = run_cli("train", TINY, "--data", root, "-b", "4", "--epochs", "1", "--out",
                           tmp_path / "run", "--no-progress")
    assert_one_line(code, err, f"every image of '{root / 'val'}' (8) was unreadable")


def test_resume_of_a_finished_run_and_a_spent_max_steps(tmp_path):
    """Resuming a run that had finished, or one stopped mid-epoch by --max-steps, crashed in
    the report (no confusion matrix in this process); a --max-steps the run had already
    passed trained one more step anyway."""
    root = make_image_folder(tmp_path / "imgs", n=6, size=12)
    first = Trainer(_run(tmp_path, root, epochs=1)).run()
    again = Trainer(_run(tmp_path, root, epochs=1, resume=True)).run()
    assert again["global_step"] == first["global_step"] == 3
    assert again["final"]["test_loss"] == pytest.approx(first["final"]["test_loss"], rel=1e-5)  # the same weights
    out = tmp_path / "run2"
    Trainer(_run(tmp_path, root, out=str(out), max_steps=4)).run()  # epoch 1 is 3 steps
    code, _, err = run_cli("train", "--resume", "--out", out, "--max-steps", "4")
    assert_one_line(code, err, "--max-steps 4 is not past the 4 steps")
    res = Trainer(_run(tmp_path, root, out=str(out), max_steps=5, resume=True)).run()
    assert res["global_step"] == 5 and res["stopped_early"]
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["global_step"] == 5 and saved["step_in_epoch"] == 2
    report = (out / "report.md").read_text()
    assert "before an epoch of this resumed run ended: the figures below evaluate the weights at that point" in report
    assert len(res["final"]) and (out / "confusion.json").is_file()


def test_a_run_folder_says_which_file_it_used_and_best_pt_is_flagged_on_its_own_split(tmp_path):
    """A run folder stands for its best.pt, picked by validation top-1; scored on that same
    split, its top-1 is the maximum over epochs, not an estimate for new images. Both used
    to pass without a word."""
    root = make_image_folder(tmp_path / "imgs", n=6, size=12)
    Trainer(_run(tmp_path, root, epochs=2)).run()
    run = tmp_path / "run"
    code, _, err = run_cli("eval", "--checkpoint", run, "--data", root)
    assert code == 0, err
    assert f"run folder '{run}': using best.pt" in err and "optimistic estimate" in err
    code, _, err = run_cli("eval", "--checkpoint", run / "last.pt", "--data", root)
    assert code == 0 and "optimistic" not in err and "run folder" not in err
    other = make_image_folder(tmp_path / "other", n=6, size=12, seed=3)
    code, _, err = run_cli("eval", "--checkpoint", run / "best.pt", "--data", other, "--map-by-index")
    assert code == 0 and "optimistic" not in err, err


def test_compare_pairs_a_published_top1_only_with_costs_at_its_own_size(tmp_path):
    """`compare --input-size 64` plotted SqueezeNet 1.1's 58.2% (ImageNet, 224 px) against
    its 64 px MACs (22 M, not 349 M; paper Table 1 / torchvision: 349 M at 224 px) under an
    axis labelled 'MMACs at 224 px'. Only at 224 px are the two drawn together now."""
    from squeezenet.compare import compare

    r = compare(models=["squeezenet1_1"], input_size=64, backends=["eager"], repeats=2, out=str(tmp_path / "a"),
                batch_throughput=2)
    assert not r["plots"] and any("no top-1 plot is drawn" in n for n in r["notes"])
    assert "top-1 (published, 224 px)" in r["table"]
    r = compare(models=["squeezenet1_1"], input_size=224, backends=["eager"], repeats=2, out=str(tmp_path / "b"),
                batch_throughput=2)
    assert len(r["plots"]) == 2 and not r["notes"]
    assert abs(r["rows"][0]["macs"] / 1e6 - 349) < 1  # the published 224 px count the top-1 is plotted against


def test_more_threads_than_cores_is_warned(tmp_path, monkeypatch):
    """`bench --threads 64` on 2 cores measured squeezenet1_1 at 73 ms a batch-1 image against
    14 ms on 2 threads, without a word."""
    import squeezenet.machine as machine

    monkeypatch.setattr(machine, "usable_cores", lambda: 1)
    before = torch.get_num_threads()
    try:
        code, _, err = run_cli("bench", TINY, "--threads", "2", "--backends", "eager", "--batch-sizes", "1",
                               "--repeats", "1", "--warmup", "0", "--input-size", "32", "--out", tmp_path)
    finally:
        torch.set_num_threads(before)
    assert code == 0 and "warning: --threads 2 is more than the 1 core(s) this process may use" in err, err


def test_a_sweep_over_a_base_without_the_fire_design_space_says_so(tmp_path):
    code, _, err = run_cli("sweep", "--sr", "0.25", "--pct3x3", "none", "--base", "shufflenet_v1_g3", "--out", tmp_path)
    assert_one_line(code, err, "--base shufflenet_v1_g3 has no squeeze ratio or 3x3 fraction to sweep")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("case", ["missing folder", "one image", "cifar10 not there"])
def test_a_sweep_over_data_that_is_not_there_is_one_line_before_any_point(tmp_path, case):
    """Session 41: `sweep --train-epochs 1 --data MISSING` ran every point, recorded each as
    failed with the same error, left a sweep folder and exited 0. Now the data is looked at
    (not decoded) before the folder is made: one line, exit 2."""
    if case == "missing folder":
        data, needle = ["--data", tmp_path / "missing"], "image folder not found"
    elif case == "one image":
        root = make_image_folder(tmp_path / "one", n=1, size=8, splits=("train",), classes=("cat",))
        data, needle = ["--data", root], "has 1 image(s): too few to hold out"
    else:
        (tmp_path / "empty").mkdir()
        data, needle = ["--data", "cifar10", "--data-dir", tmp_path / "empty", "--no-download"], "cifar10 not found"
    code, _, err = run_cli("sweep", "--sr", "0.5", "--pct3x3", "none", "--train-epochs", "1", *data,
                           "--out", tmp_path / "new" / "sweep")
    assert_one_line(code, err, needle)
    assert not (tmp_path / "new").exists()


def test_a_sweep_whose_points_failed_exits_1_after_its_report(tmp_path):
    """The data is there, but a point cannot train (batch 64 over 5 training images): the
    point is recorded as failed and the sweep ends with its table and report, then one
    error line and exit 1 (not 0, so a script sees the sweep is incomplete; not 2, the
    input was read). Running it again retries the point."""
    root = make_image_folder(tmp_path / "imgs", n=3, size=8, splits=("train",))
    args = ("sweep", "--sr", "0.5", "--pct3x3", "none", "--train-epochs", "1", "--data", root, "--batch-size", "64",
            "--out", tmp_path / "sw")
    code, out, err = run_cli(*args)
    assert_one_line(code, err, "1 point(s) failed (see ", exit_code=1)
    assert "| failed |" in out and "report: " in out
    assert "--batch-size 64 is larger than the 5 training images" in (tmp_path / "sw" / "sweep.md").read_text()


def test_train_weights_starts_from_a_checkpoint_of_ours_with_any_number_of_classes(tmp_path):
    """`train --weights RUN/last.pt` loaded every file into a 1000-class model first, so a
    checkpoint of ours (3 classes here) failed with 'expects (1000, ...)'. Now the layers
    load as they are; the classifier is kept when the data has as many classes and
    replaced by a fresh one when it has another number. ImageNet's 1000-class files
    load as before."""
    from squeezenet import create_model

    three = make_image_folder(tmp_path / "three", classes=("a", "b", "c"), n=4, size=12)
    two = make_image_folder(tmp_path / "two", classes=("x", "y"), n=4, size=12)
    Trainer(_run(tmp_path, three, epochs=1, out=str(tmp_path / "src"))).run()
    src = torch.load(tmp_path / "src" / "last.pt", weights_only=True)["state_dict"]

    def started(root, weights, out):
        return Trainer(_run(tmp_path, root, weights=str(weights), out=str(tmp_path / out))).model.state_dict()

    same = started(three, tmp_path / "src" / "last.pt", "same")
    assert all(torch.equal(same[k], v) for k, v in src.items())  # the classifier too
    other = started(two, tmp_path / "src" / "last.pt", "other")
    head = "classifier.conv10.weight"
    assert other[head].shape[0] == 2
    assert all(torch.equal(other[k], v) for k, v in src.items() if not k.startswith("classifier."))
    imagenet = create_model(TINY)  # 1000 outputs, the model's own layout
    torch.save(imagenet.state_dict(), tmp_path / "imagenet.pth")
    fine = started(two, tmp_path / "imagenet.pth", "fine")
    assert fine[head].shape[0] == 2 and torch.equal(fine["features.conv1.conv.weight"],
                                                    imagenet.state_dict()["features.conv1.conv.weight"])


def test_a_train_subset_larger_than_the_training_set_says_it_trains_on_all(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n=4, size=12)
    code, out, err = run_cli("train", TINY, "--data", root, "-b", "4", "--epochs", "1", "--train-subset", "5000",
                             "--precision", "fp32", "--out", tmp_path / "run", "--no-progress")
    assert code == 0 and "--train-subset 5000 is not below the 8 training images: training on all of them" in err, err
    saved = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert saved["global_step"] == 2  # 8 images, batch 4
    # the headline is the final weights' score (the best epoch's was chosen on the split it is scored on)
    assert out.startswith(f"final test top-1 {saved['history'][-1]['test_top1']:.2f}% (best epoch "), out


def test_layer_sensitivity_is_never_a_negative_divergence():
    """A model with saturated outputs (a toy run's) printed KL divergences like -7.18e-11 in
    the mixed-precision table: float32 round-off of near-equal terms. KL(p || q) >= 0."""
    from squeezenet import create_model
    from squeezenet.compression.lowbit import layer_sensitivity

    torch.manual_seed(0)
    m = create_model(TINY, num_classes=4, in_chans=3).eval()
    x = [torch.randn(8, 3, 32, 32)]
    plain = layer_sensitivity(m, x, clip="mse")  # a real damage is still measured, and 2 bits hurt more than 8
    assert sum(d[2] > d[8] for d in plain.values()) > len(plain) // 2
    with torch.no_grad():
        m.classifier.conv10.weight.mul_(200)  # saturated softmax: every KL is round-off around 0
    s = layer_sensitivity(m, x, clip="mse")
    assert all(v >= 0 for d in s.values() for v in d.values())


def test_deploy_load_takes_every_model_file_of_ours(tmp_path):
    """`squeezenet.deploy.load` read every file as ONNX: a valid .pt, .sqz or run folder was
    refused as 'carries no squeezenet integrity digest (not exported by squeezenet, or
    damaged)', which sent users to verify=False for a file that was fine. It now takes
    what serve takes, and predicts what the PyTorch model predicts."""
    from squeezenet import deploy
    from squeezenet.evaluate import predict

    root = make_image_folder(tmp_path / "imgs", n=6, size=12)
    Trainer(_run(tmp_path, root, epochs=1)).run()
    ckpt = tmp_path / "run" / "last.pt"
    images = [str(p) for p in sorted((root / "val").rglob("*.png"))]
    want, _ = predict(str(ckpt), images, topk=2)
    for ref in (ckpt, tmp_path / "run"):
        got = deploy.load(ref).predict(images, topk=2)
        for (_, w), g in zip(want, got):  # by class name: two near-equal probabilities may swap places
            assert dict(w).keys() == dict(g).keys()
            assert all(abs(p - dict(g)[c]) < 1e-4 for c, p in w)
    code, _, err = run_cli("compress", "-c", ckpt, "--data", root, "--out", tmp_path / "m.sqz")
    assert code == 0, err
    assert len(deploy.load(tmp_path / "m.sqz").predict(images, topk=2)) == len(images)


def test_predict_prepares_a_large_image_as_eval_does(tmp_path):
    """A model trained on a large-image folder is evaluated on the shorter side resized to
    256/224 of its input size and the centre cropped (torchvision's Resize + CenterCrop);
    `predict`, `serve` and `deploy.load` squashed the whole image to the input size
    instead, so the top-1 `eval` reported did not describe their answers on non-square
    images. Both paths now give the same pixels and the same probabilities."""
    from PIL import Image
    from torchvision.transforms import v2 as T

    from squeezenet import deploy
    from squeezenet.evaluate import predict
    from squeezenet.imageio import model_input
    from squeezenet.spec import DataSpec

    rng = np.random.default_rng(0)
    spec = DataSpec("x", ["a", "b"], 3, 64, [0.5] * 3, [0.25] * 3, small=False)
    tf = T.Compose([T.Resize(int(64 * 256 / 224), antialias=True), T.CenterCrop(64), T.PILToTensor()])
    for w, h in ((120, 80), (80, 120), (64, 64), (300, 71), (73, 73)):
        p = tmp_path / f"{w}x{h}.png"
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(p)
        want = tf(Image.open(p).convert("RGB")).numpy()
        assert np.array_equal(model_input(str(p), spec), want), (w, h)
    from squeezenet.imageio import resize_rule

    assert resize_rule(spec)["shorter_side"] == 73  # int(64 * 256 / 224): what a client must do (server metadata)

    root = make_image_folder(tmp_path / "imgs", n=4, size=80)
    for f in (root / "val").rglob("*.png"):  # non-square evaluation images
        Image.fromarray((rng.random((80, 130, 3)) * 255).astype(np.uint8)).save(f)
    tr = Trainer(_run(tmp_path, root, model=TINY, input_size=64, epochs=1, workers=0))
    tr.run()
    model = tr.eval_model.eval()
    ds = tr.splits.test
    with torch.no_grad():
        ref = torch.softmax(model(torch.stack([ds[i][0] for i in range(len(ds))])), 1)
    images = [p for p, _ in ds.samples]
    got, _ = predict(str(tmp_path / "run" / "last.pt"), images, topk=2)
    onnx_got = deploy.load(tmp_path / "run" / "last.pt").predict(images, topk=2)
    for i, ((_, g), o) in enumerate(zip(got, onnx_got)):
        for c, prob in g:
            assert abs(prob - float(ref[i, ["cat", "dog"].index(c)])) < 1e-5
        assert all(abs(prob - dict(g)[c]) < 1e-4 for c, prob in o)
