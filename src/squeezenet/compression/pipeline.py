"""``squeezenet compress``: prune -> fine-tune -> share -> fine-tune centroids -> encode."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import SqueezeNetError
from ..render import markdown_table
from ..files import atomic_write_bytes, atomic_write_text, ensure_writable_file
from . import container
from .prune import apply_masks, compute_masks, density_plan, hold_masks
from .share import hold_sharing, refresh_centroids, share_weights

ALEXNET_BYTES = 240e6  # paper Table 2: AlexNet 240 MB


def _finetune(model, model_name, data, data_dir, download, epochs: float, lr: float, batch_size: int, out: Path,
              hooks_fn, post_step, tag: str, input_size: int | None = None):
    """Fine-tune with the project's trainer; ``hooks_fn`` installs gradient hooks,
    ``post_step`` runs after every optimizer step (re-applying masks/sharing)."""
    from ..train import Trainer, TrainConfig

    whole = max(1, int(epochs + 0.999))
    if (out / tag / "last.pt").exists():  # a previous compress run: start this stage afresh
        for f in (out / tag).glob("*.pt"):
            f.unlink()
    cfg = TrainConfig(model=model_name, data=data, data_dir=data_dir, download=download, out=str(out / tag),
                      epochs=whole, batch_size=batch_size, lr=lr, warmup_epochs=0.0, schedule="cosine",
                      label_smoothing=0.0, input_size=input_size)
    tr = Trainer(cfg, model=model)
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


def compress(model_name: str | None = None, checkpoint: str | None = None, weights: str | None = None,
             sparsity="paper", bits: int = 6, finetune_epochs: float = 0.0, data: str | None = None,
             data_dir: str | None = None, download: bool = True, out: str | None = None, lr: float = 0.01,
             batch_size: int = 256, seed: int = 0, evaluate_data: bool = True, map_by_index: bool = False,
             verify: bool = True) -> dict:
    """Deep Compression of a model or checkpoint into a .sqz container plus a report."""
    if bool(model_name) == bool(checkpoint):
        raise SqueezeNetError("give --model NAME or --checkpoint FILE (exactly one)")
    if not 1 <= bits <= 8:
        raise SqueezeNetError(f"--bits must be between 1 and 8 (the paper uses 6 or 8), got {bits}")
    if finetune_epochs < 0 or lr <= 0 or batch_size < 1:
        raise SqueezeNetError("--finetune-epochs must be >= 0, --lr > 0 and --batch-size >= 1")
    torch.manual_seed(seed)
    spec = None
    if checkpoint:
        from ..artifacts import load_model_file

        mf = load_model_file(checkpoint, verify, need_torch=True, command="compress")
        model, model_name, spec = mf.model, mf.name, mf.spec
        if spec is not None and spec.name.startswith("folder:") and not data and (finetune_epochs > 0 or evaluate_data):
            raise SqueezeNetError(f"'{checkpoint}' was trained on image folder '{spec.name[7:]}'; pass that folder "
                                  "with --data PATH (it is needed for evaluation and fine-tuning)")
        data = data or (spec.name if spec else None)
        source = f"checkpoint {checkpoint}"
    else:
        from ..factory import create_model, is_model

        if not is_model(model_name):
            raise SqueezeNetError(f"compress --model takes one of our model names (see `squeezenet list`), got "
                                  f"'{model_name}'; to compress another library's model, train or convert it to a "
                                  "squeezenet checkpoint first")
        model = create_model(model_name)
        source = f"initialised weights (seed {seed})"
        if weights:
            from ..imagenet import load_weights_into

            load_weights_into(model, model_name, weights)  # torchvision SqueezeNet files, or our own layout
            source = f"torchvision-layout ImageNet weights {weights}"
    if finetune_epochs > 0 and not data:
        raise SqueezeNetError("fine-tuning needs --data (a dataset name or ImageFolder path)")
    model = model.eval().float()
    path = ensure_writable_file(Path(out) if out else Path(f"{model_name}_{sparsity}_{bits}bit.sqz"))
    work = path.with_suffix("")
    work = work.parent / (work.name + "_work")
    acc = {}
    splits = None

    def eval_now(tag):
        nonlocal splits
        if data and evaluate_data:
            from ..data import load_data, load_data_for
            from ..metrics import evaluate

            if splits is None:
                splits = (load_data_for(spec, data, data_dir, download, map_by_index, where=f"'{checkpoint}'")
                          if spec is not None else load_data(data, data_dir, download=download))
            acc[tag] = evaluate(model, splits.test, splits.spec)["top1"]

    eval_now("original")
    plan = density_plan(model, sparsity)
    masks = compute_masks(model, plan)
    apply_masks(model, masks)
    eval_now("pruned")
    if finetune_epochs > 0:
        model, _, _ = _finetune(model, model_name, data, data_dir, download, finetune_epochs, lr, batch_size, work,
                                lambda m: hold_masks(m, masks), lambda m: apply_masks(m, masks), "prune_finetune",
                                spec.input_size if spec else None)
        apply_masks(model, masks)
        model.eval()
        eval_now("pruned_finetuned")
    shared = share_weights(model, masks, bits)
    eval_now("shared")
    if finetune_epochs > 0:
        model, _, _ = _finetune(model, model_name, data, data_dir, download, finetune_epochs, lr / 10, batch_size,
                                work, lambda m: hold_sharing(m, shared), lambda m: None, "centroid_finetune",
                                spec.input_size if spec else None)
        model.eval()
        refresh_centroids(model, shared)
        eval_now("shared_finetuned")
    blob, rows = container.encode_model(model, shared, model_name, dict(model.model_kwargs),
                                        spec.to_dict() if spec is not None else None,
                                        {"bits": bits, "sparsity": str(sparsity), "source": source})
    atomic_write_bytes(path, blob)
    # Lossless check: the decoded model must equal the shared-weight model exactly.
    decoded, _ = container.load_container(path)
    ref_sd, dec_sd = model.state_dict(), decoded.state_dict()
    lossless = all(torch.equal(ref_sd[k].float(), dec_sd[k].float()) for k in ref_sd)
    if not lossless:
        raise SqueezeNetError("internal error: decoded container differs from the encoded model")
    params = sum(p.numel() for p in model.parameters())
    kept = sum(int(m.sum()) for m in masks.values()) + sum(
        p.numel() for n, p in model.named_parameters() if n.rsplit(".", 1)[0] not in masks or not n.endswith("weight"))
    file_bytes = len(blob)
    before = sum(r["bytes_before_huffman"] for r in rows)
    after = sum(r["bytes_after_huffman"] for r in rows)
    res = {"path": str(path), "model": model_name, "source": source, "bits": bits, "sparsity": str(sparsity),
           "params": params, "params_kept": kept, "density": kept / params, "file_bytes": file_bytes,
           "payload_bytes_before_huffman": before, "payload_bytes_after_huffman": after,
           "fp32_bytes": 4 * params, "ratio_fp32": 4 * params / file_bytes, "ratio_alexnet": ALEXNET_BYTES / file_bytes,
           "accuracy": acc, "layers": rows, "lossless": lossless}
    res["table"] = _table(res)
    report = path.with_suffix(".md")
    atomic_write_text(report, _report_md(res))
    atomic_write_text(path.with_suffix(".json"), json.dumps({k: v for k, v in res.items() if k != "table"}, indent=2))
    res["report"] = str(report)
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


def _report_md(res) -> str:
    acc = markdown_table([{"stage": k, "top1": f"{v:.2f}"} for k, v in res["accuracy"].items()],
                         [("stage", "stage"), ("top-1", "top1")])
    return (f"# Deep Compression report: {res['model']}\n\n"
            f"Source: {res['source']}. Sparsity: {res['sparsity']}, weights: {res['bits']} bits (k-means, linear init).\n\n"
            f"- container: `{Path(res['path']).name}`, {res['file_bytes']:,} bytes "
            f"({res['file_bytes'] / 1e6:.3f} MB; header, codebooks and checksum included)\n"
            f"- fp32 weights: {res['fp32_bytes']:,} bytes -> {res['ratio_fp32']:.1f}x smaller; "
            f"vs AlexNet's 240 MB: {res['ratio_alexnet']:.0f}x\n"
            f"- payload before Huffman {res['payload_bytes_before_huffman']:,} bytes, after {res['payload_bytes_after_huffman']:,}\n"
            f"- decoded model equals the shared-weight model exactly: {res['lossless']}\n\n"
            + (f"## Accuracy (test top-1 %)\n\n{acc}\n\n" if res["accuracy"] else "")
            + f"## Per layer\n\n{res['table']}\n")
