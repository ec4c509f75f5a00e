"""``squeezenet eval`` and ``squeezenet predict``: any model file, preprocessed exactly
as in training (one image decoder, :mod:`squeezenet.imageio`; the recorded data spec)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

from .artifacts import load_model_file
from .data import load_data_for
from .errors import SqueezeNetError
from .files import atomic_write_text, ensure_writable_file
from .imageio import image_to_array
from .metrics import evaluate
from .spec import DataSpec


def evaluate_checkpoint(checkpoint: str, data: str | None = None, data_dir: str | None = None,
                        download: bool = True, batch_size: int = 1000, out: str | None = None,
                        tta: str | None = None, map_by_index: bool = False, verify: bool = True) -> dict:
    """Top-1/top-5/loss of a model file (.pt, .sqz or .onnx) on a dataset's test split;
    writes a JSON (its folder is checked first, before the evaluation runs).

    ``tta="flip"``: average each image's logits with its mirror's (see :func:`metrics.evaluate`).
    """
    if batch_size < 1:
        raise SqueezeNetError(f"--batch-size must be >= 1, got {batch_size}")
    path = ensure_writable_file(Path(out) if out else Path(str(checkpoint) + ".eval.json"))
    mf = load_model_file(checkpoint, verify)
    for n in mf.notes:
        print(f"note: {n}", file=sys.stderr)
    splits = load_data_for(mf.need_spec(), data, data_dir, download, map_by_index, where=f"'{checkpoint}'")
    spec = splits.spec
    m = evaluate(None, splits.test, spec, batch_size=batch_size, tta=tta, predict_fn=mf.logits)
    res = {"model": mf.name, "checkpoint": str(checkpoint), "data": splits.spec.name, "tta": tta, "n": m["n"],
           "top1": m["top1"], "top5": m["top5"], "loss": m["loss"], "confusion": m["confusion"],
           "classes": spec.classes, "map_by_index": map_by_index}
    atomic_write_text(path, json.dumps(res, indent=2))
    res["json"] = str(path)
    return res


def preprocess_images(images, spec: DataSpec) -> torch.Tensor:
    """Paths (or bytes) -> the normalised (B, C, H, W) batch training saw."""
    from .data import normalize

    arrays = [image_to_array(p, spec.channels, spec.input_size) for p in images]
    return normalize(torch.from_numpy(np.stack(arrays)), spec.mean, spec.std)


def load_predictor(path: str, verify: bool = True):
    """(logits_fn, DataSpec) for a .pt checkpoint, a .sqz container or an .onnx file."""
    mf = load_model_file(path, verify)
    for n in mf.notes:
        print(f"note: {n}", file=sys.stderr)
    return mf.logits, mf.need_spec()


@torch.no_grad()
def predict(checkpoint: str, images: list[str], topk: int = 5, verify: bool = True
            ) -> list[tuple[str, list[tuple[str, float]]]]:
    """Top-k (class name, probability) for each image."""
    if topk < 1:
        raise SqueezeNetError(f"--topk must be >= 1, got {topk}")
    fn, spec = load_predictor(checkpoint, verify)
    x = preprocess_images(images, spec)
    logits = fn(x).float()
    if not torch.isfinite(logits).all():
        raise SqueezeNetError(f"'{checkpoint}' produced NaN/inf outputs; its weights are broken")
    probs = torch.softmax(logits, 1)
    k = min(topk, probs.shape[1])
    top = probs.topk(k, 1)
    return [(p if isinstance(p, str) else "<bytes>",
             [(spec.classes[int(i)], float(v)) for v, i in zip(top.values[j], top.indices[j])])
            for j, p in enumerate(images)]
