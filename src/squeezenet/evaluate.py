"""``squeezenet eval`` and ``squeezenet predict``: any model file, preprocessed exactly
as in training (one image decoder, :mod:`squeezenet.imageio`; the recorded data spec).

An .onnx file needs no PyTorch: ``predict`` always runs it through
:mod:`squeezenet.deploy.onnx_eval`, and so does ``eval`` where PyTorch is not installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .errors import SqueezeNetError
from .log import note
from .files import atomic_write_text, ensure_writable_file
from .formats.sniff import sniff
from .imageio import model_input
from .spec import EVAL_BATCH_SIZE, evaluation_tta


def torch_available() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # a blocked or broken torch
        return False


def _is_onnx(path) -> bool:
    p = Path(path)
    return p.is_file() and sniff(p) == "onnx"


def evaluate_checkpoint(checkpoint: str, data: str | None = None, data_dir: str | None = None,
                        download: bool = True, batch_size: int = EVAL_BATCH_SIZE, out: str | None = None,
                        tta: str | None = None, map_by_index: bool = False, verify: bool = True) -> dict:
    """Top-1/top-5/loss of a model file (.pt, .sqz or .onnx) on a dataset's test split;
    writes a JSON (its folder is checked first, before the evaluation runs).

    ``tta``: average each image's logits over its views (``flip``, ``flip-shift``; see :mod:`squeezenet.tta`).
    """
    if batch_size < 1:
        raise SqueezeNetError(f"--batch-size must be >= 1, got {batch_size}")
    path = ensure_writable_file(Path(out) if out else Path(str(checkpoint) + ".eval.json"))
    if _is_onnx(checkpoint) and not torch_available():
        from .deploy.onnx_eval import evaluate_onnx

        m = evaluate_onnx(checkpoint, data, data_dir, download, batch_size, tta, map_by_index, verify)
        name, classes, data_name = Path(checkpoint).stem, m["classes"], m["data"]
    else:
        name, classes, data_name, m = _evaluate_with_torch(checkpoint, data, data_dir, download, batch_size, tta,
                                                           map_by_index, verify)
    res = {"model": name, "checkpoint": str(checkpoint), "data": data_name, "tta": tta,
           "tta_in_model": m["tta_in_model"], "n": m["n"],
           "top1": m["top1"], "top5": m["top5"], "loss": m["loss"], "confusion": m["confusion"],
           "classes": classes, "map_by_index": map_by_index}
    atomic_write_text(path, json.dumps(res, indent=2))
    res["json"] = str(path)
    return res


def _evaluate_with_torch(checkpoint, data, data_dir, download, batch_size, tta, map_by_index, verify):
    from .formats.open import open_model
    from .data import load_data_for
    from .metrics import evaluate

    mf = open_model(checkpoint, need="any", verify=verify, command="eval")
    for n in mf.notes:
        note(n)
    spec = mf.need_spec()
    tta = evaluation_tta(spec, tta, f"'{checkpoint}'")
    splits = load_data_for(spec, data, data_dir, download, map_by_index, where=f"'{checkpoint}'", need_train=False)
    m = evaluate(None, splits.test, splits.spec, batch_size=batch_size, tta=tta, predict_fn=mf.logits)
    if mf.path and Path(mf.path).name == "best.pt" and _names_the_same_data(data, spec.name):
        note(f"'{mf.path}' is the epoch that scored best on this validation split, so its score here is an "
             "optimistic estimate for new images; last.pt was not chosen on it")
    m["tta_in_model"] = spec.tta
    return mf.name, splits.spec.classes, splits.source, m


def _names_the_same_data(data: str | None, trained_on: str) -> bool:
    """Whether ``--data`` (None: the model's own) names the data the model was trained and
    validated on (a folder by its name, as the model records it)."""
    from .sources import FASHION_MNIST_NAMES

    if data is None:
        return True
    if trained_on.startswith("folder:"):
        return f"folder:{Path(data).name}" == trained_on
    d = "fashion-mnist" if data.lower() in FASHION_MNIST_NAMES else data.lower()
    return d == trained_on


def preprocess_images(images, spec):
    """Paths (or bytes) -> the normalised (B, C, H, W) torch batch training saw."""
    import torch

    from .batches import normalize

    arrays = [model_input(p, spec) for p in images]
    return normalize(torch.from_numpy(np.stack(arrays)), spec.mean, spec.std)


def decoded_chunks(images, spec, chunk: int = EVAL_BATCH_SIZE):
    """Yield (readable images, their uint8 (B, C, H, W) arrays, unreadable-image messages)
    for ``chunk`` images at a time: each image is decoded once, and a long list of images
    is never held in memory as one float batch."""
    for start in range(0, len(images), chunk):
        good, arrays, bad = [], [], []
        for p in images[start:start + chunk]:
            try:
                arrays.append(model_input(p, spec))
                good.append(p)
            except SqueezeNetError as e:
                bad.append(str(e))
        yield good, (np.stack(arrays) if arrays else None), bad


def load_predictor(path: str, verify: bool = True):
    """(logits_fn, DataSpec) for a .pt checkpoint, a .sqz container or an .onnx file."""
    from .formats.open import open_model

    mf = open_model(path, need="any", verify=verify, command="predict")
    for n in mf.notes:
        note(n)
    return mf.logits, mf.need_spec()


def predict(checkpoint: str, images: list[str], topk: int = 5, verify: bool = True):
    """Top-k (class name, probability) for each readable image, and one message per
    unreadable one: ``([(image, [(class, p), ...]), ...], [message, ...])``."""
    if topk < 1:
        raise SqueezeNetError(f"--topk must be >= 1, got {topk}")
    if _is_onnx(checkpoint):
        from .deploy.onnx_eval import predict_onnx

        return predict_onnx(checkpoint, images, topk, verify)
    import torch

    from .batches import normalize

    fn, spec = load_predictor(checkpoint, verify)
    results, bad = [], []
    for good, x, unreadable in decoded_chunks(images, spec):
        bad += unreadable
        if x is None:
            continue
        with torch.no_grad():
            logits = fn(normalize(torch.from_numpy(x), spec.mean, spec.std)).float()
        if not torch.isfinite(logits).all():
            raise SqueezeNetError(f"'{checkpoint}' produced NaN/inf outputs; its weights are broken")
        top = torch.softmax(logits, 1).topk(min(topk, logits.shape[1]), 1)
        results += [(p if isinstance(p, str) else "<bytes>",
                     [(spec.classes[int(i)], float(v)) for v, i in zip(top.values[j], top.indices[j])])
                    for j, p in enumerate(good)]
    return results, bad
