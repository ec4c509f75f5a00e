"""ImageNet top-1/top-5, measured: any model of ours, torchvision's or timm's, with its own
evaluation preprocessing, on an ImageNet-layout folder.

Layout: ``DIR/val/<wnid>/*.JPEG`` (or ``DIR/<wnid>/...``); the class index is the
position of the wnid in sorted order, as torchvision's and timm's ImageNet weights
use it, so all 1000 class folders must be there (empty ones are allowed).

Preprocessing, per model (``preprocess="auto"``):

- torchvision models: their default weights' ``transforms()`` (resize, centre crop,
  interpolation, mean/std exactly as torchvision evaluates them);
- timm models: ``timm.data.create_transform`` of the model's resolved data config;
- ours: torchvision's ImageNet evaluation transform at the model's resolution (resize
  to 256/224 of it, rounded down as timm's ``crop_pct`` 0.875 and our own training's
  evaluation do; centre crop, bilinear, ImageNet mean/std), which is how
  torchvision's SqueezeNet weights are evaluated; ``squeezenet1_0_caffe`` (the authors'
  release) gets the Caffe preprocessing: warped to 256x256 (aspect ratio not kept, as
  Caffe's ImageNet LMDBs were made), centre crop 227, BGR, 0-255, minus the mean
  (104, 117, 123), no division.

Weights come from a file or an http(s) URL (torch.hub's cache), loaded with
``weights_only=True``; torchvision-format SqueezeNet state dicts load into ours.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .data import FolderDataset, collate_skip_bad, readable
from .errors import SqueezeNetError
from .imageio import eval_resize, open_image

CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)  # forresti/SqueezeNet train_val.prototxt
PREPROCESS = ("auto", "torchvision", "timm", "caffe", "imagenet")


class CaffeTransform:
    """The authors' Caffe preprocessing, as their ImageNet LMDBs and data layer applied it:
    every image warped to ``resize`` x ``resize`` (Caffe's ``convert_imageset
    --resize_height=256 --resize_width=256``: no aspect ratio kept) with OpenCV's default
    ``INTER_LINEAR`` (bilinear, pixel centres at +0.5, no antialiasing when shrinking),
    stored as uint8; then the test phase's centre crop ``crop`` (offset (resize - crop) // 2),
    RGB -> BGR, 0-255 floats minus the per-channel mean. (C, H, W) float32 out.

    OpenCV computes the bilinear weights in 11-bit fixed point, this in float, so a pixel
    may differ by one grey level from what OpenCV would have stored."""

    def __init__(self, crop: int = 227, resize: int = 256, mean_bgr=CAFFE_MEAN_BGR):
        self.crop, self.resize, self.mean = crop, resize, torch.tensor(mean_bgr).view(3, 1, 1)

    def __call__(self, img) -> torch.Tensor:
        x = torch.from_numpy(np.array(img.convert("RGB"), dtype=np.float32)).permute(2, 0, 1)[None]
        x = torch.nn.functional.interpolate(x, size=(self.resize, self.resize), mode="bilinear",
                                            align_corners=False, antialias=False)
        x = x.round().clamp(0, 255)[0]  # the LMDB holds uint8
        top = (self.resize - self.crop) // 2
        x = x[:, top:top + self.crop, top:top + self.crop]
        return x.flip(0) - self.mean  # BGR minus mean

    def __repr__(self) -> str:
        return (f"Caffe(warp to {self.resize}x{self.resize}, bilinear as OpenCV INTER_LINEAR, centre crop "
                f"{self.crop}, BGR, 0-255, mean {tuple(self.mean.flatten().tolist())})")


def eval_transform(name: str, model, preprocess: str = "auto"):
    """The evaluation transform (PIL image -> normalised tensor) for ``name``."""
    from torchvision.transforms._presets import ImageClassification

    if preprocess not in PREPROCESS:
        raise SqueezeNetError(f"unknown preprocessing '{preprocess}'; use {', '.join(PREPROCESS)}")
    cfg = getattr(model, "default_cfg", {}) or {}
    if preprocess == "auto":
        if name.startswith("timm:"):
            preprocess = "timm"
        elif name.startswith("tv:") or not cfg.get("family"):
            preprocess = "torchvision"
        else:
            preprocess = "caffe" if cfg.get("preprocess") == "caffe" else "imagenet"
    if preprocess == "caffe":  # the authors' 256 -> 227 geometry at the model's own size (227: exactly theirs)
        size = cfg.get("input_size", (3, 227, 227))[-1]
        return CaffeTransform(crop=size, resize=int(round(size * 256 / 227)))
    if preprocess == "timm":
        from .errors import require

        timm = require("timm", "peers")
        return timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    if preprocess == "torchvision":
        from .zoo import tv_default_weights

        w = tv_default_weights(name.removeprefix("tv:"))
        if w is None:
            raise SqueezeNetError(f"torchvision has no weights entry for '{name}'; use --preprocess imagenet")
        return w.transforms()
    size = cfg.get("input_size", (3, 224, 224))[-1]  # shorter side: floor(size / 0.875), as timm and our training
    return ImageClassification(crop_size=size, resize_size=eval_resize(size))


def check_not_torchvisions(name: str, weights: str) -> None:
    """Refuse torchvision's own SqueezeNet file given to the authors' Caffe release: its
    shapes fit, but it was trained on RGB images normalised by torchvision's mean and std,
    and the release's BGR 0-255 input would give it another top-1 without saying why
    (how far off was not measured: no ImageNet here). Evaluated as torchvision's model, it
    gets its own preprocessing."""
    from .models.squeezenet import torchvision_release

    tv = torchvision_release(weights)
    if tv:
        raise SqueezeNetError(f"'{weights}' is torchvision's {tv} file, trained with torchvision's preprocessing (RGB, "
                              f"ImageNet mean/std); '{name}' is the authors' Caffe release and is scored with Caffe's "
                              f"(BGR, 0-255), which would give these weights a wrong top-1; evaluate it as {tv}")


def build_with_weights(name: str, weights: str | None):
    """(model, label): ``name`` built (ours, tv:, timm:) and, with ``weights``, loaded."""
    from .formats.open import open_model

    return open_model(name, weights=weights, command="eval").model.eval(), name


def scan_imagenet(root, num_classes: int) -> tuple[list[tuple[str, int]], list[str], str]:
    """(samples, wnids, how they were ordered) of an ImageNet-layout folder; index = sorted position."""
    from .imageio import IMG_EXTENSIONS

    root = Path(root)
    base = root / "val" if (root / "val").is_dir() else root
    if not base.is_dir():
        raise SqueezeNetError(f"ImageNet folder not found: '{root}' (expected {root}/val/<wnid>/*.JPEG)")
    wnids, order = class_order([d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith(".")])
    if len(wnids) != num_classes:
        raise SqueezeNetError(f"'{base}' has {len(wnids)} class folders but the model has {num_classes} outputs; the "
                              "class index is the sorted position of the folder, so all of them must be there "
                              "(empty folders are fine)")
    samples = [(str(p), i) for i, w in enumerate(wnids) for p in sorted((base / w).iterdir())
               if p.suffix.lower() in IMG_EXTENSIONS]
    if not samples:
        raise SqueezeNetError(f"no images under '{base}'")
    return samples, wnids, order


def class_order(names: list[str]) -> tuple[list[str], str]:
    """(folders in class-index order, how they were ordered). WordNet ids (n01440764, ...)
    sort as strings, as torchvision's and timm's weights index them. Folders named
    0, 1, ..., N-1 are the class indices themselves, so they are taken in numeric order
    (sorted as strings, folder 5 would be scored as class 445 of 1000); other all-numeric
    names are refused, since no order is safe to guess."""
    if names and all(n.isdigit() for n in names):
        nums = sorted(int(n) for n in names)
        if nums != list(range(len(names))) or len(set(names)) != len(names) or any(
                n != str(int(n)) for n in names):
            raise SqueezeNetError(f"class folders are numbers but not exactly 0..{len(names) - 1} (found "
                                  f"{', '.join(sorted(names, key=int)[:3])}, ...); name them 0..N-1 (folder i = class "
                                  "i) or by WordNet id (sorted order)")
        return sorted(names, key=int), "numeric (folder i = class i)"
    return sorted(names), "sorted folder names (WordNet ids)"


class ReferenceDecoded(FolderDataset):
    """An ImageNet folder decoded as the weights' own evaluations decode it: torchvision's
    reference scripts and timm read ``Image.open(f).convert("RGB")``, which ignores the EXIF
    orientation tag; our training and ``predict`` apply it (:mod:`squeezenet.imageio`), which
    would turn the few tagged images and score them differently from the published figure."""

    def open(self, path):
        return open_image(path, self.mode, upright=False)


class Prepared(NamedTuple):
    """A model with its weights, and the ImageNet folder decoded and transformed for it."""
    name: str
    weights: str | None
    data: str
    model: torch.nn.Module
    dataset: ReferenceDecoded
    transform: object
    classes: int
    class_order: str


def prepare_imagenet(name: str, weights: str | None, data: str, preprocess: str = "auto",
                     limit: int | None = None) -> Prepared:
    """Everything :func:`evaluate_imagenet` checks before its first image: the model built
    and loaded, the folder's classes matched to its outputs, the preprocessing chosen (and
    torchvision's file refused for the authors' release). Cheap next to the scoring, so
    ``compare`` prepares every weighted model before it times anything."""
    model, _ = build_with_weights(name, weights)
    n_out = _num_outputs(model)
    samples, wnids, order = scan_imagenet(data, n_out)
    tf = eval_transform(name, model, preprocess)
    if preprocess == "auto" and isinstance(tf, CaffeTransform) and weights:
        check_not_torchvisions(name, weights)
    ds = ReferenceDecoded(samples, wnids, tf)
    if limit:  # every class, not the folder's first few
        ds = ds.spread(limit)
    return Prepared(name, weights, str(data), model, ds, tf, len(wnids), order)


def evaluate_imagenet(name: str, weights: str | None, data: str, batch_size: int = 50, workers: int = 2,
                      preprocess: str = "auto", limit: int | None = None) -> dict:
    """Top-1/top-5 of ``name`` with ``weights`` on an ImageNet-layout folder, with the
    model's own preprocessing; also images/s of the whole loop (decode included) and of
    the forward passes alone."""
    if batch_size < 1 or workers < 0:
        raise SqueezeNetError("--batch-size must be >= 1 and --workers >= 0")
    return score_imagenet(prepare_imagenet(name, weights, data, preprocess, limit), batch_size, workers)


@torch.no_grad()
def score_imagenet(p: Prepared, batch_size: int = 50, workers: int = 2) -> dict:
    """:func:`evaluate_imagenet`'s scoring loop over a :func:`prepare_imagenet` result."""
    from .metrics import topk_correct

    model = p.model
    loader = torch.utils.data.DataLoader(p.dataset, batch_size=batch_size, num_workers=workers,
                                         collate_fn=collate_skip_bad)
    hits, n, t_model, t0 = [0, 0], 0, 0.0, time.perf_counter()
    for x, y in readable(loader):
        if x is None:
            continue
        t = time.perf_counter()
        logits = model(x).float()
        t_model += time.perf_counter() - t
        if not torch.isfinite(logits).all():
            raise SqueezeNetError(f"'{p.name}' produced NaN/inf outputs with these weights")
        for i, c in enumerate(topk_correct(logits, y)):
            hits[i] += c
        n += len(y)
    if n == 0:
        raise SqueezeNetError("no images were evaluated (every image was unreadable)")
    total = time.perf_counter() - t0
    return {"model": p.name, "weights": p.weights, "data": p.data, "n": n, "top1": 100.0 * hits[0] / n,
            "top5": 100.0 * hits[1] / n, "img_per_s": n / total, "model_img_per_s": n / max(t_model, 1e-9),
            "preprocess": repr(p.transform).replace("\n", " "), "classes": p.classes, "class_order": p.class_order}


def _num_outputs(model) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int):
        return n
    with torch.no_grad():
        cfg = getattr(model, "default_cfg", None) or getattr(model, "pretrained_cfg", {}) or {}
        size = (cfg.get("input_size") or (3, 224, 224))[-1]
        return model(torch.zeros(1, 3, size, size)).shape[-1]
