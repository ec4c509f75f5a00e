"""Top-1 measured, not only cited: any model on an ImageNet-layout folder with its own
preprocessing (no hub here: the weights files and the folder are made by the tests)."""

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from squeezenet import SqueezeNetError
from squeezenet.imagenet import CaffeTransform, eval_transform, evaluate_imagenet

WNIDS = [f"n{i:08d}" for i in range(1000)]


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory):
    """1000 wnid folders (sorted = class index); two images in each of classes 0, 1 and 2."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    for i, w in enumerate(WNIDS):
        d = root / "val" / w
        d.mkdir(parents=True)
        if i < 3:
            for j in range(2):
                Image.fromarray(rng.integers(0, 256, (250, 300, 3), dtype=np.uint8)).save(d / f"ILSVRC_{i}_{j}.JPEG")
    return root


def constant_classifier_weights(path, winner: int):
    """torchvision squeezenet1_1 weights whose prediction is always ``winner``: conv10's
    weights are zero and its biases rank the classes (ReLU and the average keep them)."""
    m = torchvision.models.squeezenet1_1()
    with torch.no_grad():
        m.classifier[1].weight.zero_()
        m.classifier[1].bias.zero_()
        m.classifier[1].bias[winner] = 5.0
    torch.save(m.state_dict(), path)
    return str(path)


@pytest.mark.parametrize("name", ["squeezenet1_1", "tv:squeezenet1_1"])
@pytest.mark.parametrize("winner,top1", [(1, 100 / 3), (2, 100 / 3), (999, 0.0)])
def test_class_index_is_the_sorted_wnid_position(imagenet_dir, tmp_path, name, winner, top1):
    w = constant_classifier_weights(tmp_path / "w.pth", winner)
    r = evaluate_imagenet(name, w, str(imagenet_dir), batch_size=4, workers=0)
    assert r["n"] == 6 and r["classes"] == 1000
    assert r["top1"] == pytest.approx(top1) and r["img_per_s"] > 0


def test_eval_cli_with_model_and_weights(imagenet_dir, tmp_path):
    from test_reliability import run_cli

    w = constant_classifier_weights(tmp_path / "w.pth", 0)
    code, out, err = run_cli("eval", "--model", "squeezenet1_1", "--weights", w, "--data", imagenet_dir, "-j", "0",
                             "--out", tmp_path / "r.json")
    assert code == 0 and "top-1 33.33%" in out and "img/s" in out, err
    code, _, err = run_cli("eval", "--model", "squeezenet1_1", "--weights", w)
    assert code == 2 and "--model needs --data" in err


def test_a_partial_imagenet_folder_is_refused(tmp_path):
    for w in WNIDS[:5]:
        (tmp_path / "val" / w).mkdir(parents=True)
    with pytest.raises(SqueezeNetError, match="has 5 class folders but the model has 1000 outputs"):
        evaluate_imagenet("squeezenet1_1", None, str(tmp_path))


def test_weights_that_do_not_fit_are_one_line(tmp_path, imagenet_dir):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r.pth")
    with pytest.raises(SqueezeNetError, match="weights do not fit 'squeezenet1_1'"):
        evaluate_imagenet("squeezenet1_1", str(tmp_path / "r.pth"), str(imagenet_dir))
    with pytest.raises(SqueezeNetError, match="weights do not fit 'tv:mobilenet_v2'"):
        evaluate_imagenet("tv:mobilenet_v2", str(tmp_path / "r.pth"), str(imagenet_dir))
    with pytest.raises(SqueezeNetError, match="weights file not found"):
        evaluate_imagenet("squeezenet1_1", str(tmp_path / "none.pth"), str(imagenet_dir))


def _image():
    return Image.fromarray(np.random.default_rng(1).integers(0, 256, (333, 411, 3), dtype=np.uint8))


@pytest.mark.parametrize("name,tv", [("squeezenet1_1", "squeezenet1_1"), ("tv:efficientnet_b3", "efficientnet_b3"),
                                     ("tv:efficientnet_v2_s", "efficientnet_v2_s"), ("tv:vit_b_16", "vit_b_16")])
def test_our_preprocessing_equals_torchvisions_transforms(name, tv):
    from squeezenet.zoo import build_any

    img = _image()
    ours = eval_transform(name, build_any(name, meta=True).model)(img)
    want = torchvision.models.get_model_weights(tv).DEFAULT.transforms()(img)
    assert ours.shape == want.shape
    torch.testing.assert_close(ours, want, rtol=0, atol=0)


@pytest.mark.parametrize("size", [160, 96])
def test_our_models_at_other_sizes_are_evaluated_as_timm_and_our_training_evaluate(size):
    """At a size other than 224 torchvision's weights prescribe nothing; timm's evaluation
    resizes the shorter side to floor(size / 0.875) (160 -> 182, 96 -> 109; rounding would
    give 183 and 110), and so does the evaluation our own training of a large-image model
    runs and ``predict`` repeats. ``eval --model`` must not use a third rule."""
    timm = pytest.importorskip("timm")
    from squeezenet import create_model
    from squeezenet.data import _large_eval_transform
    from squeezenet.spec import IMAGENET_MEAN, IMAGENET_STD

    img = _image()
    ours = eval_transform(f"squeezenet1_1_{size}", create_model(f"squeezenet1_1_{size}"))(img)
    want = timm.data.create_transform(input_size=(3, size, size), crop_pct=0.875, interpolation="bilinear",
                                      mean=IMAGENET_MEAN, std=IMAGENET_STD)(img)
    torch.testing.assert_close(ours, want, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours, _large_eval_transform(size, IMAGENET_MEAN, IMAGENET_STD)(img), rtol=0, atol=1e-6)


def test_timm_models_use_timms_own_data_config():
    timm = pytest.importorskip("timm")
    from squeezenet.zoo import build_any

    img = _image()
    m = build_any("timm:efficientnet_b3", meta=True).model
    want = timm.data.create_transform(**timm.data.resolve_data_config({}, model=m))(img)
    torch.testing.assert_close(eval_transform("timm:efficientnet_b3", m)(img), want, rtol=0, atol=0)
    assert want.shape[-1] == 288  # timm's pretrained config, not the paper's 300


def test_caffe_preprocessing_for_the_authors_release():
    from squeezenet import create_model

    img = Image.new("RGB", (300, 260), (200, 100, 50))
    tf = eval_transform("squeezenet1_0_caffe", create_model("squeezenet1_0_caffe"))
    assert isinstance(tf, CaffeTransform)
    x = tf(img)
    assert x.shape == (3, 227, 227)
    assert x[:, 100, 100].tolist() == [50 - 104, 100 - 117, 200 - 123]  # BGR, 0-255, minus the mean
    assert (tf.resize, tf.crop) == (256, 227)


def test_caffe_preprocessing_keeps_a_resized_release_at_its_own_size():
    """``squeezenet1_0_caffe_160`` is the release at 160 px: its crops are 160 px, warped from
    180 (the authors' 256/227), not the release's 227 px crops."""
    from squeezenet import create_model

    tf = eval_transform("squeezenet1_0_caffe_160", create_model("squeezenet1_0_caffe_160"))
    assert (tf.resize, tf.crop) == (180, 160)
    assert tf(Image.new("RGB", (300, 260), (200, 100, 50))).shape == (3, 160, 160)


def test_caffe_preprocessing_warps_to_256x256_as_caffes_imagenet_lmdbs():
    """Caffe's ImageNet LMDBs (convert_imageset --resize_height=256 --resize_width=256) warp
    every image to 256x256 with OpenCV's INTER_LINEAR; the test phase crops the centre 227
    (offset 14). Closed form on a 512x256 image whose left quarter is red: warped, red ends at
    column 64 (source x = 2 dx + 0.5), i.e. crop column 50. Kept at its aspect ratio (shorter
    side 256, the torchvision way), the crop would start at column 142 and be all blue."""
    a = np.zeros((256, 512, 3), np.uint8)
    a[:, :128, 0], a[:, 128:, 2] = 255, 255
    x = CaffeTransform()(Image.fromarray(a))
    red, blue = [0 - 104, 0 - 117, 255 - 123], [255 - 104, 0 - 117, 0 - 123]  # BGR minus the mean
    assert x.shape == (3, 227, 227)
    assert x[:, 100, 49].tolist() == red and x[:, 100, 50].tolist() == blue
    assert x[:, :, :50].eq(torch.tensor(red, dtype=x.dtype).view(3, 1, 1)).all()


def test_caffe_preprocessing_shrinks_without_antialiasing_as_opencv_inter_linear():
    """OpenCV's INTER_LINEAR samples at source x = 3 dx + 1 when shrinking 768 -> 256, with no
    low-pass filter, so columns c = 1 mod 3 at 255 (the rest 0) come out 255 everywhere; an
    antialiased resize (PIL's, torchvision's) would average them to about a third of that."""
    a = np.zeros((768, 768), np.uint8)
    a[:, 1::3] = 255
    x = CaffeTransform()(Image.fromarray(a).convert("RGB"))
    assert x.eq(torch.tensor([255 - 104, 255 - 117, 255 - 123], dtype=x.dtype).view(3, 1, 1)).all()


def test_compare_adds_a_measured_top1_column(imagenet_dir, tmp_path):
    from squeezenet.compare import compare

    w = constant_classifier_weights(tmp_path / "w.pth", 1)
    r = compare(models=["squeezenet1_1", "shufflenet_v1_g3"], input_size=64, backends=["eager"], repeats=2,
                out=str(tmp_path / "c"), batch_throughput=2, data=str(imagenet_dir), weights={"squeezenet1_1": w})
    rows = {row["model"]: row for row in r["rows"]}
    assert rows["squeezenet1_1"]["measured_top1"] == pytest.approx(100 / 3)
    assert "measured_top1" not in rows["shufflenet_v1_g3"]
    assert "top-1 (measured, at the model's own size)" in r["table"] and "| 33.33 |" in r["table"]
    with pytest.raises(SqueezeNetError, match="not among the compared models"):
        compare(models=["squeezenet1_1"], weights={"resnet50": w}, data=str(imagenet_dir), out=str(tmp_path / "d"))


def test_limit_takes_images_from_every_class(imagenet_dir, tmp_path):
    """--limit 3 scores one image of each of classes 0, 1 and 2, not the first three images
    of the folder (class 0's two and class 1's first): a model that always answers class 2
    is right on exactly one of them."""
    w = constant_classifier_weights(tmp_path / "w.pth", 2)
    r = evaluate_imagenet("squeezenet1_1", w, str(imagenet_dir), batch_size=4, workers=0, limit=3)
    assert r["n"] == 3 and r["top1"] == pytest.approx(100 / 3)
    from squeezenet.sources import spread_over_classes

    labels = [0, 0, 0, 0, 1, 1, 1, 2, 2]  # 4, 3 and 2 images
    assert spread_over_classes(labels, 7) == [0, 1, 2, 4, 5, 7, 8]
    assert spread_over_classes(labels, 3) == [0, 4, 7] and spread_over_classes(labels, 100) == list(range(9))


@pytest.mark.parametrize("args,needle", [
    (["--model", "squeezenet1_1", "--data", "D", "--tta", "flip"], "--tta apply to model files"),
    (["--model", "squeezenet1_1", "--data", "D", "--map-by-index"], "--map-by-index apply to model files"),
    (["--checkpoint", "m.pt", "--limit", "5"], "--limit go with --model NAME"),
    (["--checkpoint", "m.pt", "--weights", "w.pth", "--preprocess", "caffe", "-j", "0"],
     "--weights, --preprocess, --workers go with --model NAME"),
])
def test_a_flag_of_the_other_eval_mode_is_refused(args, needle):
    """eval --model ignored --tta (a plain top-1 that reads as a TTA score), and eval
    --checkpoint ignored --limit, --weights, --preprocess and --workers: one line, exit 2."""
    from helpers import assert_one_line, run_cli

    code, _, err = run_cli("eval", *args)
    assert_one_line(code, err, needle)


def test_our_own_checkpoint_is_not_taken_as_bare_weights(imagenet_dir, tmp_path):
    """A checkpoint of ours records its classes, input size and normalisation; loaded as
    ``--weights`` into a name, ImageNet's defaults would replace them and the score would
    not be the model's. eval and compress refuse it (pointing to the file as the model);
    train --weights, which starts a new run on new data, still takes its state dict."""
    from helpers import assert_one_line, run_cli
    from squeezenet import create_model
    from squeezenet.formats.checkpoint import make_checkpoint
    from squeezenet.formats.open import load_weights_into
    from squeezenet.spec import DataSpec

    model = create_model("squeezenet1_1")
    spec = DataSpec("folder:x", [f"c{i}" for i in range(1000)], 3, 96, [0.1, 0.2, 0.3], [0.9, 0.8, 0.7])
    torch.save(make_checkpoint(model, "squeezenet1_1", spec.to_dict()), tmp_path / "best.pt")
    code, _, err = run_cli("eval", "--model", "squeezenet1_1", "--weights", tmp_path / "best.pt", "--data",
                           imagenet_dir, "-j", "0")
    assert_one_line(code, err, "is a squeezenet checkpoint ('squeezenet1_1', 1000 classes)")
    assert "eval --checkpoint FILE" in err
    code, _, err = run_cli("compress", "--model", "squeezenet1_1", "--weights", tmp_path / "best.pt", "--out",
                           tmp_path / "c.sqz")
    assert_one_line(code, err, "is a squeezenet checkpoint")
    fresh = create_model("squeezenet1_1")
    assert "own layout" in load_weights_into(fresh, "squeezenet1_1", str(tmp_path / "best.pt"), own_checkpoint=True)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    (tmp_path / "m.sqz").write_bytes(b"SQZ\x00" + bytes(64))
    code, _, err = run_cli("eval", "--model", "squeezenet1_1", "--weights", tmp_path / "m.sqz", "--data",
                           imagenet_dir, "-j", "0")
    assert_one_line(code, err, "is a .sqz container, not a state dict")


def test_imagenet_images_are_decoded_as_torchvisions_reference_evaluation(tmp_path):
    """torchvision's reference evaluation (and timm's) reads ``Image.open(f).convert("RGB")``,
    which ignores the EXIF orientation tag; a published top-1 was scored on those pixels, so
    ``eval --model`` must see the same ones even though training and ``predict`` turn a tagged
    photo upright. Checked against torchvision's own ImageFolder loader and transforms."""
    from torchvision.datasets.folder import pil_loader

    from squeezenet import create_model
    from squeezenet.imagenet import ReferenceDecoded

    a = np.random.default_rng(0).integers(0, 256, (250, 330, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display
    path = tmp_path / "tagged.JPEG"
    Image.fromarray(a).save(path, exif=exif)
    tf = eval_transform("squeezenet1_1", create_model("squeezenet1_1"))
    want = tf(pil_loader(str(path)))
    got, y = ReferenceDecoded([(str(path), 7)], ["x"] * 8, tf)[0]
    assert y == 7
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    from squeezenet.imageio import open_image

    assert open_image(str(path)).size == (250, 330)  # training and predict do turn it upright
    assert not torch.equal(tf(open_image(str(path))), want)


def test_torchvisions_file_is_not_scored_as_the_authors_caffe_release(imagenet_dir, tmp_path, monkeypatch):
    """torchvision's squeezenet1_0 file fits the release's shapes, but was trained on RGB
    normalised by ImageNet's mean/std: under Caffe's BGR 0-255 input it would score a wrong
    top-1 without a word. Known by the name torchvision's weights metadata gives the file,
    or, renamed, by the SHA-256 prefix in that name (torch.hub's check); one line, exit 2,
    pointing to the right name, under which the same file is scored."""
    import hashlib

    import squeezenet.models.squeezenet as sq
    from helpers import assert_one_line, run_cli

    url = torchvision.models.SqueezeNet1_0_Weights.IMAGENET1K_V1.url
    assert sq.TORCHVISION_URLS == {"1_0": url, "1_1": torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1.url}
    tv_file = tmp_path / url.rsplit("/", 1)[1]
    torch.save(torchvision.models.squeezenet1_0().state_dict(), tv_file)
    args = ("eval", "--data", imagenet_dir, "-j", "0", "--limit", "3")
    assert_one_line(*run_cli(*args, "--model", "squeezenet1_0_caffe", "--weights", tv_file)[::2],
                    "is torchvision's squeezenet1_0 file")
    code, out, err = run_cli(*args, "--model", "squeezenet1_0", "--weights", tv_file)
    assert code == 0 and "top-1" in out, err
    import squeezenet.compare as cmp

    def timed(*a, **k):
        raise AssertionError("compare measured something")

    with monkeypatch.context() as mp:  # compare checks it before it times any model
        mp.setattr(cmp, "profile", timed)
        with pytest.raises(SqueezeNetError, match="evaluate it as squeezenet1_0"):
            cmp.compare(models=["squeezenet1_1", "squeezenet1_0_caffe"], input_size=64, backends=["eager"],
                        out=str(tmp_path / "c"), data=str(imagenet_dir), weights={"squeezenet1_0_caffe": str(tv_file)})
    assert not (tmp_path / "c").exists()

    renamed = tmp_path / "weights.pth"
    renamed.write_bytes(tv_file.read_bytes())
    prefix = hashlib.sha256(renamed.read_bytes()).hexdigest()[:8]
    monkeypatch.setitem(sq.TORCHVISION_URLS, "1_0", url.replace(url.rsplit("-", 1)[1], f"{prefix}.pth"))
    assert_one_line(*run_cli(*args, "--model", "squeezenet1_0_caffe", "--weights", renamed)[::2],
                    "evaluate it as squeezenet1_0")
    monkeypatch.undo()
    assert sq.torchvision_release(str(renamed)) is None  # another file is not taken for torchvision's
