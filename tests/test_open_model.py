"""One way in (`formats.open.open_model`): one of each kind of model reference, and the
commands accepting the same references."""

import numpy as np
import pytest
import torch

from helpers import TINY, assert_one_line, run_cli
from squeezenet import SqueezeNetError
from squeezenet.formats.open import open_model


@pytest.fixture(scope="module")
def files(tiny_run, tmp_path_factory):
    """The tiny run's checkpoint as .pt, .sqz and .onnx, and the run folder itself."""
    from squeezenet.compression.pipeline import compress
    from squeezenet.deploy.export import export_onnx

    d = tmp_path_factory.mktemp("refs")
    sqz = compress(checkpoint=str(tiny_run / "last.pt"), out=str(d / "m.sqz"), sparsity="0.5", evaluate_data=False)
    onnx = export_onnx(checkpoint=str(tiny_run / "last.pt"), out=str(d / "m.onnx"), dynamic_batch=True)
    return {"pt": tiny_run / "last.pt", "sqz": sqz["path"], "onnx": onnx["path"], "run": tiny_run}


def test_one_of_each_kind_of_reference(files):
    x = torch.randn(2, 1, 28, 28)
    pt = open_model(files["pt"])
    assert (pt.kind, pt.name, pt.in_chans, pt.input_size) == ("checkpoint", TINY, 1, 28)
    run = open_model(files["run"])  # a run folder: its best.pt (else last.pt)
    assert run.kind == "checkpoint" and run.path.endswith(("best.pt", "last.pt"))
    sqz = open_model(files["sqz"])
    assert sqz.kind == "sqz" and sqz.spec.classes == pt.spec.classes
    onnx = open_model(files["onnx"], need="any")
    assert onnx.kind == "onnx" and onnx.model is None
    np.testing.assert_allclose(onnx.logits(x).numpy(), pt.logits(x).numpy(), atol=1e-4)  # same weights, ORT vs eager
    name = open_model("squeezenet1_1_w0.5_bn", num_classes=7)
    assert (name.kind, name.spec, name.model.num_classes, name.input_size) == ("name", None, 7, 224)
    tv = open_model("tv:mobilenet_v3_small", meta=True)
    assert tv.kind == "tv" and sum(p.numel() for p in tv.model.parameters()) == 2_542_856  # torchvision metadata
    pytest.importorskip("timm")
    timm = open_model("timm:ghostnet_100", meta=True)
    assert timm.kind == "timm" and timm.input_size == 224


def test_references_are_refused_in_the_same_words(files, tmp_path):
    with pytest.raises(SqueezeNetError, match="is an ONNX model; `squeezenet export` needs a PyTorch model"):
        open_model(files["onnx"], command="export")
    with pytest.raises(SqueezeNetError, match="--weights goes with a model name"):
        open_model(files["pt"], weights="w.pth")
    with pytest.raises(SqueezeNetError, match="model file not found"):
        open_model(str(tmp_path / "nope.pt"))
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(SqueezeNetError, match="is a text file, not a model file"):
        open_model(tmp_path / "a.txt")
    with pytest.raises(SqueezeNetError, match="a folder without best.pt or last.pt"):
        open_model(tmp_path)


def test_every_command_takes_a_run_folder_and_another_librarys_name(files, tmp_path):
    run = files["run"]
    code, out, err = run_cli("summary", run)
    assert code == 0 and TINY in out, err
    code, out, err = run_cli("summary", "tv:mobilenet_v3_small")
    assert code == 0 and "2,542,856" in out, err
    code, out, err = run_cli("export", run, "--out", tmp_path / "r.onnx")
    assert code == 0 and (tmp_path / "r.onnx").is_file(), err
    code, out, err = run_cli("export", "tv:mobilenet_v3_small", "--out", tmp_path / "tv.onnx")
    assert code == 0, err
    code, out, err = run_cli("bench", run, "--backends", "eager", "--batch-sizes", "1", "--repeats", "1",
                             "--warmup", "0", "--out", tmp_path / "b")
    assert code == 0, err
    code, out, err = run_cli("predict", "-c", files["sqz"], files["pt"])  # a .pt is not an image: one line
    assert_one_line(code, err, "could not be read")
