"""``squeezenet eval`` and ``squeezenet predict``."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, model_from_checkpoint
from .data import DataSpec, load_data, load_image, normalize
from .errors import SqueezeNetError
from .metrics import evaluate


def evaluate_checkpoint(checkpoint: str, data: str | None = None, data_dir: str | None = None,
                        download: bool = True, batch_size: int = 1000, out: str | None = None,
                        tta: str | None = None) -> dict:
    """Top-1/top-5/loss of a checkpoint on a dataset's test split; writes a JSON.

    ``tta="flip"``: average each image's logits with its mirror's (see :func:`metrics.evaluate`).
    """
    ckpt = load_checkpoint(checkpoint)
    spec_d = ckpt.get("data") or {}
    data = data or spec_d.get("name", "fashion-mnist")
    if data.startswith("folder:"):
        raise SqueezeNetError("this checkpoint was trained on an image folder; pass its path with --data")
    splits = load_data(data, data_dir, spec_d.get("input_size"), download=download)
    model = model_from_checkpoint(ckpt, expect_classes=len(splits.spec.classes), expect_channels=splits.spec.channels)
    spec = splits.spec
    if spec_d.get("mean"):  # normalise as in training
        spec.mean, spec.std = spec_d["mean"], spec_d["std"]
    m = evaluate(model, splits.test, spec, batch_size=batch_size, tta=tta)
    res = {"model": ckpt["model_name"], "checkpoint": str(checkpoint), "data": spec.name, "tta": tta, "n": m["n"],
           "top1": m["top1"], "top5": m["top5"], "loss": m["loss"], "confusion": m["confusion"],
           "classes": spec.classes}
    path = Path(out) if out else Path(str(checkpoint) + ".eval.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2))
    res["json"] = str(path)
    return res


def preprocess_images(paths: list[str], spec: DataSpec) -> torch.Tensor:
    """Load images as the model was trained: mode, size, normalisation. (B, C, H, W)."""
    import numpy as np

    mode = "L" if spec.channels == 1 else "RGB"
    out = []
    for p in paths:
        im = load_image(p, mode)
        if im.size != (spec.input_size, spec.input_size):
            im = im.resize((spec.input_size, spec.input_size))
        a = np.array(im, dtype=np.uint8)  # a writable copy
        out.append(torch.from_numpy(a[None] if a.ndim == 2 else a.transpose(2, 0, 1).copy()))
    return normalize(torch.stack(out), spec.mean, spec.std)


def load_predictor(path: str):
    """(logits_fn, DataSpec) for a .pt checkpoint, a .sqz container or an .onnx file."""
    if str(path).endswith(".onnx"):
        from .deploy.runtime import OnnxClassifier

        clf = OnnxClassifier(path)
        return (lambda x: torch.from_numpy(clf.run(x.numpy()))), DataSpec(**clf.spec)
    if str(path).endswith(".sqz"):
        from .compression.container import load_container

        model, meta = load_container(path)
        spec = meta.get("data") or {}
    else:
        ckpt = load_checkpoint(path)
        model, spec = model_from_checkpoint(ckpt), ckpt.get("data") or {}
    if not spec:
        raise SqueezeNetError(f"'{path}' has no data description (classes, input size); it was not trained "
                              "with `squeezenet train`")
    model.eval()
    return (lambda x: model(x)), DataSpec(**spec)


@torch.no_grad()
def predict(checkpoint: str, images: list[str], topk: int = 5) -> list[tuple[str, list[tuple[str, float]]]]:
    """Top-k (class name, probability) for each image."""
    fn, spec = load_predictor(checkpoint)
    x = preprocess_images(images, spec)
    probs = torch.softmax(fn(x).float(), 1)
    k = min(topk, probs.shape[1])
    top = probs.topk(k, 1)
    return [(p, [(spec.classes[int(i)], float(v)) for v, i in zip(top.values[j], top.indices[j])])
            for j, p in enumerate(images)]
