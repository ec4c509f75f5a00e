"""``squeezenet compress``: prune -> fine-tune -> share -> fine-tune centroids -> encode."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import SqueezeNetError
from ..render import markdown_table
from ..files import atomic_write_bytes, atomic_write_text, ensure_writable_file
from ..data import DataRef
from ..formats import sqz
from .prune import apply_masks, compute_masks, density_plan, hold_masks
from .share import hold_sharing, refresh_centroids, share_weights

ALEXNET_BYTES = 240e6  # paper Table 2: AlexNet 240 MB


def _finetune(model, model_name, data, data_dir, download, epochs: float, lr: float, batch_size: int, out: Path,
              hooks_fn, post_step, tag: str, input_size: int | None = None, teacher=None, splits=None):
    """Fine-tune with the project's trainer on ``splits`` (the model's own: its recorded
    hold-out and class order, which the report scores on); ``hooks_fn`` installs gradient
    hooks, ``post_step`` runs after every optimizer step (re-applying masks/sharing); with a
    ``teacher``, the loss is distillation from its outputs instead of the labels."""
    from ..train import Trainer, TrainConfig

    whole = max(1, int(epochs + 0.999))
    if (out / tag / "last.pt").exists():  # a previous compress run: start this stage afresh
        for f in (out / tag).glob("*.pt"):
            f.unlink()
    cfg = TrainConfig(model=model_name, data=data, data_dir=data_dir, download=download, out=str(out / tag),
                      epochs=whole, batch_size=batch_size, lr=lr, warmup_epochs=0.0, schedule="cosine",
                      label_smoothing=0.0, input_size=input_size)
    tr = Trainer(cfg, model=model, splits=splits)
    if teacher is not None:
        tr.distil_from(teacher)
    if epochs < whole:
        tr.cfg.max_steps = max(1, int(epochs * tr.steps_per_epoch()))
    handles = hooks_fn(tr.model)
    tr.after_step.append(lambda t: post_step(t.model))
    try:
        tr.run()
    finally:
        for h in handles:
            h.remove()
    model = tr.model.to(memory_format=torch.contiguous_format).cpu()
    return model, tr.best_top1, tr.history[-1]["test_top1"] if tr.history else None


@dataclass
class CompressSettings:
    sparsity: str | float = "paper"
    bits: int = 6
    finetune_epochs: float = 0.0
    lr: float = 0.01
    batch_size: int = 256
    seed: int = 0
    evaluate_data: bool = True
    map_by_index: bool = False
    distill: bool = False  # fine-tune on the uncompressed model's outputs; the paper fine-tunes on labels

    def check(self) -> None:
        if not 1 <= self.bits <= 8:
            raise SqueezeNetError(f"--bits must be between 1 and 8 (the paper uses 6 or 8), got {self.bits}")
        if self.finetune_epochs < 0 or self.lr <= 0 or self.batch_size < 1:
            raise SqueezeNetError("--finetune-epochs must be >= 0, --lr > 0 and --batch-size >= 1")
        if self.distill and not self.finetune_epochs:
            raise SqueezeNetError("--distill sets the fine-tune's loss; add --finetune-epochs")


def compress(model_name: str | None = None, checkpoint: str | None = None, weights: str | None = None,
             out: str | None = None, data: DataRef | None = None, settings: CompressSettings | None = None,
             verify: bool = True, **kw) -> dict:
    """Deep Compression of any model reference (a name, with optional ImageNet ``weights``;
    a .pt/.sqz file or a run folder; see :func:`formats.open.open_model`) into a .sqz
    container plus a report. ``kw`` may give any :class:`CompressSettings` or
    :class:`DataRef` field directly (``bits=6, data="fashion-mnist"``)."""
    settings = settings or CompressSettings(**{k: kw.pop(k) for k in list(kw) if k in CompressSettings.__annotations__})
    data = data or DataRef(**{k: kw.pop(k) for k in list(kw) if k in DataRef.__annotations__})
    if kw:
        raise TypeError(f"unexpected option(s): {', '.join(sorted(kw))}")
    if bool(model_name) == bool(checkpoint):
        raise SqueezeNetError("give --model (a name, a model file or a run folder) or --checkpoint (exactly one)")
    settings.check()
    ref = model_name or checkpoint
    torch.manual_seed(settings.seed)
    opened, data, source = _open_source(ref, weights, verify, data, settings)
    model = opened.model.eval().float()
    path = ensure_writable_file(Path(out) if out else Path(f"{opened.name.replace(':', '_')}_{settings.sparsity}_"
                                                             f"{settings.bits}bit.sqz"))
    evaluator = _Evaluator(opened.spec, data, settings, ref)
    model, masks, shared = _prune_and_share(model, opened, data, settings, evaluator, _work_dir(path))
    blob, rows = sqz.encode_model(model, shared, opened.name, dict(getattr(model, "model_kwargs", {})),
                                  opened.spec.to_dict() if opened.spec is not None else None,
                                  {"bits": settings.bits, "sparsity": str(settings.sparsity), "source": source})
    atomic_write_bytes(path, blob)
    lossless = _decodes_exactly(path, model)
    res = _result(path, opened.name, source, settings, model, masks, blob, rows, evaluator.acc, lossless)
    report = path.with_suffix(".md")
    atomic_write_text(report, _report_md(res))
    atomic_write_text(path.with_suffix(".json"), json.dumps({k: v for k, v in res.items() if k != "table"}, indent=2))
    res["report"] = str(report)
    return res


def _work_dir(path: Path) -> Path:
    return path.parent / (path.with_suffix("").name + "_work")


def _open_source(ref, weights, verify, data: DataRef, settings: CompressSettings):
    """(opened model, the data to use, a line saying where the weights came from)."""
    from ..formats.open import open_model

    opened = open_model(ref, weights=weights, verify=verify, command="compress")
    spec = opened.spec
    needs_data = settings.finetune_epochs > 0 or settings.evaluate_data
    if spec is not None and spec.name.startswith("folder:") and not data.data and needs_data:
        raise SqueezeNetError(f"'{ref}' was trained on image folder '{spec.name[7:]}'; pass that folder "
                              "with --data PATH (it is needed for evaluation and fine-tuning)")
    if spec is not None and not data.data:
        data = DataRef(spec.name, data.data_dir, data.download)
    if settings.finetune_epochs > 0 and not data.data:
        raise SqueezeNetError("fine-tuning needs --data (a dataset name or ImageFolder path)")
    if opened.path:
        source = f"checkpoint {ref}"
    else:
        source = f"ImageNet {opened.notes[0]}" if weights else f"initialised weights (seed {settings.seed})"
    return opened, data, source


class _Evaluator:
    """Top-1 after each stage, on the data the model was trained on (loaded once)."""

    def __init__(self, spec, data: DataRef, settings: CompressSettings, ref):
        self.spec, self.data, self.settings, self.ref = spec, data, settings, ref
        self.splits, self.acc = None, {}

    def load(self):
        """The model's splits, as training drew them (its hold-out and class order): what the
        fine-tunes train on and every stage is scored on."""
        from ..data import load_data, load_data_for

        d = self.data
        if self.splits is None:
            self.splits = (load_data_for(self.spec, d.data, d.data_dir, d.download, self.settings.map_by_index,
                                         where=f"'{self.ref}'")
                           if self.spec is not None else load_data(d.data, d.data_dir, download=d.download))
        return self.splits

    def __call__(self, model, tag: str) -> None:
        if not (self.data.data and self.settings.evaluate_data):
            return
        from ..metrics import evaluate

        splits = self.load()
        self.acc[tag] = evaluate(model, splits.test, splits.spec)["top1"]


def _prune_and_share(model, opened, data: DataRef, s: CompressSettings, evaluate, work: Path):
    """Prune -> (fine-tune) -> share -> (fine-tune the centroids); top-1 after each stage."""
    size = opened.spec.input_size if opened.spec else None
    teacher = copy.deepcopy(model).eval() if s.distill and s.finetune_epochs > 0 else None
    evaluate(model, "original")
    masks = compute_masks(model, density_plan(model, s.sparsity))
    apply_masks(model, masks)
    evaluate(model, "pruned")
    if s.finetune_epochs > 0:
        model, _, _ = _finetune(model, opened.name, data.data, data.data_dir, data.download, s.finetune_epochs, s.lr,
                                s.batch_size, work, lambda m: hold_masks(m, masks), lambda m: apply_masks(m, masks),
                                "prune_finetune", size, teacher, evaluate.load())
        apply_masks(model, masks)
        evaluate(model.eval(), "pruned_finetuned")
    shared = share_weights(model, masks, s.bits)
    evaluate(model, "shared")
    if s.finetune_epochs > 0:
        model, _, _ = _finetune(model, opened.name, data.data, data.data_dir, data.download, s.finetune_epochs,
                                s.lr / 10, s.batch_size, work, lambda m: hold_sharing(m, shared), lambda m: None,
                                "centroid_finetune", size, teacher, evaluate.load())
        model.eval()
        refresh_centroids(model, shared)
        evaluate(model, "shared_finetuned")
    return model, masks, shared


def _decodes_exactly(path: Path, model) -> bool:
    """The lossless check: the decoded container equals the shared-weight model exactly."""
    decoded, _ = sqz.load_container(path)
    ref_sd, dec_sd = model.state_dict(), decoded.state_dict()
    if not all(torch.equal(ref_sd[k].float(), dec_sd[k].float()) for k in ref_sd):
        raise SqueezeNetError("internal error: decoded container differs from the encoded model")
    return True


def _result(path, name, source, s: CompressSettings, model, masks, blob, rows, acc, lossless) -> dict:
    params = sum(p.numel() for p in model.parameters())
    kept = sum(int(m.sum()) for m in masks.values()) + sum(
        p.numel() for n, p in model.named_parameters() if n.rsplit(".", 1)[0] not in masks or not n.endswith("weight"))
    file_bytes = len(blob)
    res = {"path": str(path), "model": name, "source": source, "bits": s.bits, "sparsity": str(s.sparsity),
           "params": params, "params_kept": kept, "density": kept / params, "file_bytes": file_bytes,
           "payload_bytes_before_huffman": sum(r["bytes_before_huffman"] for r in rows),
           "payload_bytes_after_huffman": sum(r["bytes_after_huffman"] for r in rows),
           "fp32_bytes": 4 * params, "ratio_fp32": 4 * params / file_bytes,
           # the paper's yardstick (Table 2) is for ImageNet's 1000 classes; beside another task's model it means nothing
           "ratio_alexnet": ALEXNET_BYTES / file_bytes if getattr(model, "num_classes", None) == 1000 else None,
           "accuracy": acc, "layers": rows, "lossless": lossless,
           "finetune": {"epochs": s.finetune_epochs, "lr": s.lr,
                        "loss": "distillation" if s.distill else "cross-entropy"} if s.finetune_epochs else None}
    res["table"] = _table(res)
    return res


LAYER_COLUMNS = [
    ("layer", "layer"), ("params", lambda r: f"{r['params']:,}"), ("density", lambda r: f"{r['density']:.2f}"),
    ("bits", "bits"), ("idx bits", lambda r: r["index_bits"] or "-"), ("fp32 bytes", lambda r: f"{r['bytes_fp32']:,}"),
    ("before Huffman", lambda r: f"{r['bytes_before_huffman']:,}"),
    ("after Huffman", lambda r: f"{r['bytes_after_huffman']:,}"),
]


def _table(res) -> str:
    rows = [r for r in res["layers"] if not (r["bits"] == 32 and r["params"] < 64)]  # BN counters: in the totals
    total = {"layer": "**total**", "params": res["params"], "density": res["density"], "bits": "", "index_bits": "",
             "bytes_fp32": res["fp32_bytes"], "bytes_before_huffman": res["payload_bytes_before_huffman"],
             "bytes_after_huffman": res["payload_bytes_after_huffman"]}
    return markdown_table(rows + [total], LAYER_COLUMNS)


def _finetune_line(ft: dict | None) -> str:
    if not ft:
        return ""
    loss = "distillation from the uncompressed model" if ft["loss"] == "distillation" else "cross-entropy on the labels"
    return (f"Fine-tune: {ft['epochs']:g} epoch(s) after pruning (lr {ft['lr']:g}, cosine) and again after sharing "
            f"(the centroids, lr {ft['lr'] / 10:g}); loss: {loss}.\n\n")


def _report_md(res) -> str:
    alexnet = f"; vs AlexNet's 240 MB: {res['ratio_alexnet']:.0f}x" if res["ratio_alexnet"] else ""
    acc = markdown_table([{"stage": k, "top1": f"{v:.2f}"} for k, v in res["accuracy"].items()],
                         [("stage", "stage"), ("top-1", "top1")])
    return (f"# Deep Compression report: {res['model']}\n\n"
            f"Source: {res['source']}. Sparsity: {res['sparsity']}, weights: {res['bits']} bits (k-means, linear init).\n\n"
            f"- container: `{Path(res['path']).name}`, {res['file_bytes']:,} bytes "
            f"({res['file_bytes'] / 1e6:.3f} MB; header, codebooks and checksum included)\n"
            f"- fp32 weights: {res['fp32_bytes']:,} bytes -> {res['ratio_fp32']:.1f}x smaller"
            f"{alexnet}\n"
            f"- payload before Huffman {res['payload_bytes_before_huffman']:,} bytes, after {res['payload_bytes_after_huffman']:,}\n"
            f"- decoded model equals the shared-weight model exactly: {res['lossless']}\n\n"
            + _finetune_line(res.get("finetune"))
            + (f"## Accuracy (test top-1 %)\n\n{acc}\n\n" if res["accuracy"] else "")
            + f"## Per layer\n\n{res['table']}\n")
