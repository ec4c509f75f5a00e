"""Test-time augmentation's views (squeezenet.tta) against training's own augmentation.

`flip-shift` claims that every view is a crop training could have drawn. Training's
crop-and-flip (batches.augment_batch, on uint8 images, before normalisation) is the
reference here: the views are computed by it, then normalised, and compared with
tta.views on the normalised batch, in torch and in numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import training_views

from squeezenet.batches import normalize
from squeezenet.data import TensorDataset
from squeezenet.errors import SqueezeNetError
from squeezenet.metrics import evaluate
from squeezenet.spec import DataSpec, evaluation_tta
from squeezenet.tta import VIEWS_PER_IMAGE, fill_value, shift_pixels, views

MEAN, STD = [0.3, 0.5, 0.2], [0.25, 0.3, 0.4]


@pytest.mark.parametrize("pad, shift", [(4, 2), (2, 1), (1, 1), (5, 2)])
def test_flip_shift_views_are_crops_training_draws(pad, shift):
    assert shift_pixels("flip-shift", pad) == shift and shift_pixels("flip", pad) == 0
    g = torch.Generator().manual_seed(0)
    u8 = torch.randint(1, 256, (3, 3, 9, 7), dtype=torch.uint8, generator=g)  # no black pixel: the fill shows
    x = normalize(u8, MEAN, STD)
    want = training_views(u8, pad, shift, MEAN, STD)
    fill = fill_value(MEAN, STD)
    got_t = views(x, "flip-shift", shift, fill)
    got_n = views(x.numpy(), "flip-shift", shift, fill)
    assert len(got_t) == len(got_n) == VIEWS_PER_IMAGE["flip-shift"] == 10
    for w, t, n in zip(want, got_t, got_n):
        torch.testing.assert_close(t, w, atol=1e-6, rtol=0)
        np.testing.assert_allclose(n, w.numpy(), atol=1e-6, rtol=0)
    # the check can fail: the views differ from one another, and a shift the other way is another view
    assert (want[1] - want[2]).abs().max() > 0.5 and (want[0] - want[5]).abs().max() > 0.5
    flip = views(x, "flip", 0, fill)
    assert len(flip) == 2 and torch.equal(flip[0], want[0]) and torch.equal(flip[1], want[5])


def test_evaluate_averages_the_logits_over_the_training_views():
    """evaluate(tta='flip-shift') scores the mean of an asymmetric linear model's logits over the
    10 training crops, computed here by hand; a model trained without translation is refused."""
    g = torch.Generator().manual_seed(1)
    u8 = torch.randint(0, 256, (60, 3, 8, 8), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 4, (60,), generator=g)
    spec = DataSpec(name="toy", classes=list("abcd"), channels=3, input_size=8, mean=MEAN, std=STD, pad=4)
    w = torch.randn(4, 3 * 64, generator=g)
    asym = lambda x: x.flatten(1) @ w.T  # noqa: E731
    avg = torch.stack([asym(v) for v in training_views(u8, 4, 2, MEAN, STD)]).mean(0)
    by_hand = 100.0 * float((avg.argmax(1) == labels).float().mean())
    ds = TensorDataset(u8, labels, spec.classes)
    got = evaluate(None, ds, spec, batch_size=16, predict_fn=asym, tta="flip-shift")
    assert got["top1"] == pytest.approx(by_hand)
    assert got["loss"] == pytest.approx(float(torch.nn.functional.cross_entropy(avg, labels)), rel=1e-5)
    flip = evaluate(None, ds, spec, batch_size=16, predict_fn=asym, tta="flip")
    assert flip["loss"] != pytest.approx(got["loss"], rel=1e-3)  # the shifted views really count
    no_translation = DataSpec(name="big", classes=list("abcd"), channels=3, input_size=8, mean=MEAN, std=STD, pad=0)
    for call in (lambda: evaluate(None, ds, no_translation, predict_fn=asym, tta="flip-shift"),
                 lambda: evaluation_tta(no_translation, "flip-shift", "'m.pt'")):
        with pytest.raises(SqueezeNetError, match="trained without translation .* use --tta flip"):
            call()
    assert evaluation_tta(no_translation, "flip", "'m.pt'") == "flip"


def test_flip_shift_on_a_model_trained_without_translation_is_one_line(tmp_path):
    """Large images train with random resized crops, not padding (pad 0): no view of flip-shift is
    one training drew. eval, export and quantize (int8 and low-bit) refuse it in one line, exit 2,
    before any file is written; flip stays available."""
    from helpers import TINY, assert_one_line, make_image_folder, run_cli

    from squeezenet.train import TrainConfig, Trainer

    data = make_image_folder(tmp_path / "big", n=4, size=96)
    run = tmp_path / "run"
    Trainer(TrainConfig(model=TINY, data=str(data), out=str(run), epochs=1, batch_size=4, progress=False,
                        precision="fp32")).run()
    for cmd in (["eval", "-c", run / "last.pt", "--data", data],
                ["export", run / "last.pt", "--out", tmp_path / "x.onnx"],
                ["quantize", "-c", run / "last.pt", "--data", data, "--out", tmp_path / "q"],
                ["quantize", "-c", run / "last.pt", "--data", data, "--weight-bits", "4", "--out", tmp_path / "q"]):
        code, _, err = run_cli(*cmd, "--tta", "flip-shift")
        assert_one_line(code, err, f"'{run / 'last.pt'}' trained without translation (pad 0); use --tta flip")
    assert not (tmp_path / "x.onnx").exists() and not (tmp_path / "q").exists()
    code, out, err = run_cli("eval", "-c", run / "last.pt", "--data", data, "--tta", "flip", "--out", tmp_path / "e.json")
    assert code == 0 and "flip TTA" in out, err
