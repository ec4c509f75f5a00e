"""ONNX export with checks: onnx.checker, and ONNX Runtime against eager PyTorch."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

from ..errors import SqueezeNetError, require
from .runtime import META_KEY, open_session


def export_model_to_onnx(model: torch.nn.Module, path, input_shape=(3, 224, 224), opset: int = 17,
                         dynamic_batch: bool = False, metadata: dict | None = None, exporter: str = "torchscript",
                         batch: int = 1) -> Path:
    """Export ``model`` (eval mode, fp32) to ``path``; the graph input is ``input``
    (B, C, H, W) and the output ``logits``. ``exporter`` is ``torchscript`` (the
    fast tracing exporter) or ``dynamo`` (torch.export based)."""
    onnx = require("onnx", "onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().float().to(memory_format=torch.contiguous_format)
    x = torch.randn(batch, *input_shape)
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False, opset_version=max(opset, 18),
                              input_names=["input"], output_names=["logits"],
                              dynamic_shapes={"x": {0: torch.export.Dim("batch")}} if dynamic_batch else None,
                              verbose=False)
        else:
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["input"],
                              output_names=["logits"], dynamic_axes=axes, do_constant_folding=True)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    if metadata:
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(metadata)
        onnx.save(proto, str(path))
    return path


def convert_fp16(src, dst) -> Path:
    """fp16 weights and activations inside, fp32 input/output (keep_io_types)."""
    onnx = require("onnx", "onnx")
    from onnxruntime.transformers.float16 import convert_float_to_float16

    proto = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(proto, keep_io_types=True)
    from onnxruntime.transformers.onnx_model import OnnxModel

    wrapped = OnnxModel(half)
    wrapped.topological_sort()  # the converter appends its input casts at the end
    half = wrapped.model
    onnx.checker.check_model(half)
    onnx.save(half, str(dst))
    return Path(dst)


def max_abs_diff_vs_eager(model, path, inputs: torch.Tensor) -> float:
    sess = open_session(path)
    name = sess.get_inputs()[0].name
    with torch.no_grad():
        ref = model.eval()(inputs).numpy()
    out = sess.run(None, {name: inputs.numpy()})[0]
    return float(abs(out - ref).max())


def load_model_and_spec(model_name: str | None, checkpoint: str | None, input_size: int | None = None):
    """(model, model label, (C, H, W), data spec dict or None) from a name or checkpoint."""
    if bool(model_name) == bool(checkpoint):
        raise SqueezeNetError("give a model name or --checkpoint (exactly one)")
    if checkpoint:
        if str(checkpoint).endswith(".sqz"):
            from ..compression.container import load_container

            model, meta = load_container(checkpoint)
            spec, label = meta.get("data") or None, meta["model_name"]
        else:
            from ..checkpoint import load_checkpoint, model_from_checkpoint

            ckpt = load_checkpoint(checkpoint)
            model, spec, label = model_from_checkpoint(ckpt), ckpt.get("data") or None, ckpt["model_name"]
        size = input_size or (spec or {}).get("input_size") or 224
        chans = model.model_kwargs.get("in_chans", 3)
        if spec and input_size and input_size != spec["input_size"]:
            raise SqueezeNetError(f"checkpoint was trained at {spec['input_size']} px; drop --input-size "
                                  f"{input_size} or retrain at that size")
    else:
        from ..zoo import build_any

        model, (chans, native) = build_any(model_name)
        size, spec, label = input_size or native, None, model_name
    return model.eval(), label, (chans, size, size), spec


def export_onnx(model_name: str | None = None, checkpoint: str | None = None, out: str | None = None,
                opset: int = 17, dynamic_batch: bool = False, fp16: bool = False, input_size: int | None = None,
                exporter: str = "torchscript") -> dict:
    """Export a model or checkpoint to ONNX and verify it. Returns paths, sizes, diffs."""
    model, label, shape, spec = load_model_and_spec(model_name, checkpoint, input_size)
    if out is None:
        out = str(Path(checkpoint).with_suffix(".onnx")) if checkpoint else f"{label}.onnx"
    path = export_model_to_onnx(model, out, shape, opset, dynamic_batch, spec, exporter)
    torch.manual_seed(0)
    x = torch.randn(4 if dynamic_batch else 1, *shape)
    res = {"path": str(path), "size_bytes": path.stat().st_size, "input_shape": list(shape),
           "max_abs_diff": max_abs_diff_vs_eager(model, path, x)}
    if res["max_abs_diff"] > 1e-4:
        raise SqueezeNetError(f"ONNX output differs from eager by {res['max_abs_diff']:.2e} (> 1e-4); "
                              "try another --opset")
    if fp16:
        half = convert_fp16(path, path.with_name(path.stem + "_fp16.onnx"))
        res.update(fp16_path=str(half), fp16_size_bytes=half.stat().st_size,
                   fp16_max_abs_diff=max_abs_diff_vs_eager(model, half, x))
    return res
