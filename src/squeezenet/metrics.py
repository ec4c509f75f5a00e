"""Accuracy, confusion matrices and evaluation loops shared by train, eval and quantize."""

from __future__ import annotations

import torch

from .batches import normalize
from .data import TensorDataset, collate_skip_bad, readable
from .errors import SqueezeNetError
from .spec import EVAL_BATCH_SIZE, check_tta
from .tta import fill_value, shift_pixels, views


def topk_correct(logits: torch.Tensor, targets: torch.Tensor, ks=(1, 5)) -> list[int]:
    """Number of samples whose target is among the top-k logits, for each k.

    k larger than the number of classes counts every sample (as torchvision does).
    """
    maxk = min(max(ks), logits.shape[1])
    pred = logits.topk(maxk, dim=1).indices  # (B, maxk)
    hit = pred.eq(targets[:, None])  # (B, maxk)
    return [int(hit[:, : min(k, maxk)].any(1).sum()) for k in ks]


def accuracy(logits: torch.Tensor, targets: torch.Tensor, ks=(1, 5)) -> list[float]:
    """Top-k accuracy in percent."""
    return [100.0 * c / len(targets) for c in topk_correct(logits, targets, ks)]


def iterate_eval(dataset, spec, batch_size: int = EVAL_BATCH_SIZE, workers: int = 0, channels_last: bool = False):
    """Yield (normalised float inputs, labels) over an evaluation dataset."""
    if isinstance(dataset, TensorDataset):
        for i in range(0, len(dataset), batch_size):
            x = normalize(dataset.images[i:i + batch_size], spec.mean, spec.std)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, dataset.labels[i:i + batch_size]
    else:
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                             collate_fn=collate_skip_bad)
        for x, y in readable(loader):
            if x is not None:
                yield x, y


@torch.no_grad()
def evaluate(model, dataset, spec, device="cpu", batch_size: int = EVAL_BATCH_SIZE, workers: int = 0,
             channels_last: bool = False, predict_fn=None, tta: str | None = None,
             flip_top1_too: bool = False) -> dict:
    """Loss, top-1, top-5 and the confusion matrix (rows = true class) on a dataset.

    ``predict_fn(x) -> logits`` replaces ``model`` when given (e.g. an ONNX session).
    ``tta="flip"`` averages the logits of each image and its horizontal mirror (test-time
    augmentation; the training augmentation flips too, so both views are in-distribution);
    ``tta="flip-shift"`` over 10 views, shifted as training translates (:mod:`squeezenet.tta`).
    ``flip_top1_too`` adds ``tta_top1``, the flip-TTA top-1, to the plain metrics: one more
    pass (the mirrored images), the plain logits reused.
    """
    check_tta(tta)
    if batch_size < 1:
        raise SqueezeNetError(f"evaluation batch size must be >= 1, got {batch_size}")
    was_training = model is not None and model.training
    if model is not None:
        model.eval()
    try:
        return _evaluate(model, dataset, spec, device, batch_size, workers, channels_last, predict_fn, tta,
                         flip_top1_too)
    finally:  # a model evaluated mid-training (the time budget prices a pass) goes on training
        if was_training:
            model.train()


def _evaluate(model, dataset, spec, device, batch_size, workers, channels_last, predict_fn, tta,
              flip_top1_too=False) -> dict:
    n_cls = len(spec.classes)
    conf = torch.zeros(n_cls, n_cls, dtype=torch.int64)
    loss_sum, hits, n, flip_hits = 0.0, [0, 0], 0, 0
    run = predict_fn or (lambda v: model(v.to(device)).float().cpu())
    shift = shift_pixels(tta, spec.pad) if tta else 0
    fill = fill_value(spec.mean, spec.std)
    for x, y in iterate_eval(dataset, spec, batch_size, workers, channels_last):
        logits = run(x)
        if flip_top1_too:
            flip_hits += topk_correct((logits + run(x.flip(-1))) / 2, y, ks=(1,))[0]
        if tta:  # the first view is x itself, whose logits are at hand
            rest = views(x, tta, shift, fill)[1:]
            logits = torch.stack([logits, *(run(v) for v in rest)]).mean(0)
        if not torch.isfinite(logits).all():
            raise SqueezeNetError("the model produced NaN/inf outputs; its weights are broken (a diverged run?); "
                                  "use an earlier checkpoint")
        loss_sum += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
        for i, c in enumerate(topk_correct(logits, y)):
            hits[i] += c
        conf += torch.bincount(y * n_cls + logits.argmax(1), minlength=n_cls * n_cls).view(n_cls, n_cls)
        n += len(y)
    if n == 0:
        raise SqueezeNetError("no images were evaluated (the test split is empty or every image was unreadable)")
    return {"loss": loss_sum / max(n, 1), "top1": 100.0 * hits[0] / max(n, 1),
            "top5": 100.0 * hits[1] / max(n, 1), "n": n, "confusion": conf.tolist(),
            **({"tta_top1": 100.0 * flip_hits / n} if flip_top1_too else {})}
