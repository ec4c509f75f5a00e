"""``squeezenet eval`` and ``predict`` of an .onnx file without PyTorch: numpy, pillow
and onnxruntime only (the ``[serve]`` extra).

The data is read as training read it: Fashion-MNIST from its IDX files, or the ``val/``
(or ``test/``) folder of an ImageFolder tree of small images, decoded by the same
:mod:`squeezenet.imageio` at the model's input size and normalised with its mean/std.
What needs PyTorch to reproduce exactly (CIFAR via torchvision, the seeded hold-out of a
tree without ``val/``, the large-image resize-and-crop pipeline) is refused in one line
naming the ``[train]`` extra. With PyTorch installed, ``eval`` uses the shared
evaluation loop (:func:`squeezenet.metrics.evaluate`); tests check both agree.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SqueezeNetError
from ..log import note, warn
from ..imageio import model_input, normalize_array, resize_array
from ..sources import (FASHION_MNIST_CLASSES, FASHION_MNIST_NAMES, find_fashion_mnist, held_out_folder,
                       match_classes, read_idx, scan_folder)
from ..formats.onnx import OnnxClassifier
from ..spec import EVAL_BATCH_SIZE, evaluation_tta
from ..tta import fill_value, shift_pixels, views


def _needs_torch(what: str) -> SqueezeNetError:
    return SqueezeNetError(f"{what} needs PyTorch, which is not installed: `pip install 'squeezenet-toolkit[train]'`")


def eval_images(spec, data: str | None, data_dir: str | None, download: bool, where: str):
    """(uint8 (N, C, H, W) images, int64 labels, the data's class names, data name)."""
    name = data or spec.name
    if not spec.small:
        raise _needs_torch(f"evaluating {where} (large images: resize and centre crop)")
    if name.lower() in FASHION_MNIST_NAMES:
        files = find_fashion_mnist(data_dir, download)
        x, y = read_idx(files["test_images"])[:, None], read_idx(files["test_labels"]).astype(np.int64)
        if x.shape[-1] != spec.input_size:
            x = np.stack([resize_array(a, spec.input_size) for a in x])
        return x, y, list(FASHION_MNIST_CLASSES), "fashion-mnist"
    if name.startswith("folder:") or name == "unknown" or name.lower() in ("cifar10", "cifar100"):
        if name.lower() in ("cifar10", "cifar100"):
            raise _needs_torch(f"reading {name} (torchvision's format)")
        raise SqueezeNetError(f"{where} was trained on an image folder; pass that folder (train/ and val/ inside) "
                              "with --data PATH")
    root = Path(name)
    val = held_out_folder(root)
    if val is None:
        raise _needs_torch(f"'{root}' has no val/ folder, and reproducing training's seeded hold-out")
    samples, classes = scan_folder(val)
    images, labels = [], []
    for path, label in samples:
        try:
            images.append(model_input(path, spec))
            labels.append(label)
        except SqueezeNetError as e:
            warn(f"skipping {e}")
    if not images:
        raise SqueezeNetError(f"every image under '{val}' was unreadable")
    return np.stack(images), np.asarray(labels, np.int64), classes, f"folder:{root.name}"


def evaluate_onnx(path: str, data: str | None = None, data_dir: str | None = None, download: bool = True,
                  batch_size: int = EVAL_BATCH_SIZE, tta: str | None = None, map_by_index: bool = False,
                  verify: bool = True) -> dict:
    """Loss, top-1, top-5 and the confusion matrix of an .onnx classifier, as
    :func:`squeezenet.metrics.evaluate` computes them."""
    clf = OnnxClassifier(path, verify=verify)
    for n in clf.notes:  # as predict_onnx and the PyTorch path say them
        note(n)
    spec = clf.spec
    tta = evaluation_tta(spec, tta, f"'{path}'")
    x, y, classes, name = eval_images(spec, data, data_dir, download, f"'{path}'")
    mapping, msg = match_classes(classes, spec.classes, map_by_index, name, f"'{path}'", some_classes=True)
    if mapping is not None:
        y = np.asarray(mapping, np.int64)[y]
        note(msg)
    k = len(spec.classes)
    conf = np.zeros((k, k), np.int64)
    loss_sum, hits = 0.0, [0, 0]
    shift = shift_pixels(tta, spec.pad) if tta else 0
    fill = fill_value(spec.mean, spec.std)
    for i in range(0, len(x), batch_size):
        xb, yb = normalize_array(x[i:i + batch_size], spec.mean, spec.std), y[i:i + batch_size]
        logits = clf.run(xb)
        if tta:  # as metrics.evaluate: the mean of the views' logits, the first being xb's
            rest = views(xb, tta, shift, fill)[1:]
            logits = np.mean([logits, *(clf.run(np.ascontiguousarray(v, np.float32)) for v in rest)], axis=0)
        z = logits.astype(np.float64)
        logp = z - z.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        loss_sum += float(-logp[np.arange(len(yb)), yb].sum())
        order = np.argsort(-logits, axis=1, kind="stable")
        for j, kk in enumerate((1, 5)):
            hits[j] += int((order[:, :min(kk, k)] == yb[:, None]).any(1).sum())
        np.add.at(conf, (yb, order[:, 0]), 1)
    n = len(y)
    return {"loss": loss_sum / n, "top1": 100.0 * hits[0] / n, "top5": 100.0 * hits[1] / n, "n": n,
            "confusion": conf.tolist(), "classes": spec.classes, "data": name, "tta_in_model": spec.tta}


def predict_onnx(path: str, images: list[str], topk: int, verify: bool = True):
    """([(image, [(class, probability), ...])], [unreadable image messages])."""
    from ..formats.onnx import softmax, top_k

    clf = OnnxClassifier(path, verify=verify)
    for n in clf.notes:
        note(n)
    from ..evaluate import decoded_chunks

    results, bad = [], []
    for good, x, unreadable in decoded_chunks(images, clf.spec):
        bad += unreadable
        if x is not None:
            probs = softmax(clf.run(normalize_array(x, clf.spec.mean, clf.spec.std)))
            results += list(zip(good, top_k(probs, min(topk, probs.shape[1]), clf.spec.classes)))
    return results, bad
