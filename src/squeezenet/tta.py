"""Test-time augmentation: the views of each image whose logits are averaged.

One source for every path that scores or ships TTA: ``metrics.evaluate`` (PyTorch
models), ``deploy.onnx_eval`` (ONNX files, with numpy), ``deploy.export.TTAverage`` (the module
that ``export`` and ``quantize --tta`` build into an ONNX graph) and ``deploy.sqz_onnx``
(the hand-built graph of a low-bit container). Torch-free at import.

- ``flip``: the image and its horizontal mirror (2 views).
- ``flip-shift``: the image shifted by ``s`` pixels up, down, left and right, and
  unshifted, each with its mirror (10 views). ``s`` is half the training translation
  (``DataSpec.pad // 2``, at least 1): 1 px on Fashion-MNIST (pad 2), 2 px on CIFAR
  (pad 4). The uncovered border is filled as training's zero padding fills it (black,
  before normalisation), so every view is one training could have drawn. A model
  trained without translation (``pad`` 0, large images) has no such views: refused.
  Chosen by measurement: docs/BENCHMARKS.md 2.0.18.

Logits (not probabilities) are averaged, with equal weights.
"""

from __future__ import annotations

from .errors import SqueezeNetError

TTA_MODES = ("flip", "flip-shift")
VIEWS_PER_IMAGE = {"flip": 2, "flip-shift": 10}
HELP = ("'flip' averages each image's logits with its horizontal mirror's (2x the inference cost); 'flip-shift' "
        "over 10 views, the image unshifted and shifted up, down, left and right by half the training translation, "
        "each also mirrored (10x)")


def shift_pixels(mode: str, pad: int, where: str = "the model") -> int:
    """The shift of ``flip-shift``'s views for a model trained with translation ``pad``
    (0 for ``flip``); a one-line error where the model never saw shifted images."""
    if mode != "flip-shift":
        return 0
    if pad < 1:
        raise SqueezeNetError(f"--tta flip-shift shifts by half the training translation, and {where} trained "
                              "without translation (pad 0); use --tta flip")
    return max(1, pad // 2)


def offsets(mode: str, shift: int) -> list[tuple[int, int]]:
    """The (dy, dx) of each unmirrored view; every one is also taken mirrored."""
    if mode == "flip":
        return [(0, 0)]
    return [(0, 0), (-shift, 0), (shift, 0), (0, -shift), (0, shift)]


def fill_value(mean, std) -> list[float]:
    """A black pixel (uint8 0, what training's padding adds) after normalisation, per channel."""
    return [-m / s for m, s in zip(mean, std)]


def views(x, mode: str, shift: int, fill: list[float]):
    """The views of a normalised (B, C, H, W) batch, as a list of (B, C, H, W) batches:
    each offset's view, then each one's mirror. ``x`` is a torch tensor or a numpy array,
    ``fill`` the per-channel fill (:func:`fill_value`).

    View (dy, dx) has at (i, j) the pixel (i + dy, j + dx) of ``x``, and the fill where
    that lies outside: a crop of the padded image, as training's translation takes it."""
    if hasattr(x, "flip"):  # torch
        from torch import cat

        fill_, mirror = x.new_tensor(fill).view(-1, 1, 1), lambda v: v.flip(-1)
    else:
        from numpy import asarray, concatenate as cat

        fill_, mirror = asarray(fill, x.dtype).reshape(-1, 1, 1), lambda v: v[..., ::-1]
    out = [_along(_along(x, dy, -2, fill_, cat), dx, -1, fill_, cat) for dy, dx in offsets(mode, shift)]
    return out + [mirror(v) for v in out]


def _along(x, d: int, axis: int, fill, cat):
    """``x`` moved by ``d`` along ``axis`` (the view shows the pixel ``d`` on), the ``|d|``
    uncovered rows or columns filled. Only slices with constant bounds and a concatenation:
    an exported graph holds no shape arithmetic (shape inference, MAC counts, any input size)."""
    if d == 0:
        return x
    cut = (slice(None),) * (x.ndim + axis)  # index up to the axis
    strip = x[cut + (slice(None, abs(d)),)] * 0 + fill  # |d| rows or columns of fill, of x's other sizes
    if d > 0:
        return cat([x[cut + (slice(d, None),)], strip], axis)
    return cat([strip, x[cut + (slice(None, d),)]], axis)
