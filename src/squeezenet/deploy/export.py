"""ONNX export with checks: onnx.checker, and ONNX Runtime against eager PyTorch."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..errors import SqueezeNetError, require
from ..files import ensure_writable_file
from ..formats.open import open_model, resolve_file
from .onnx_tools import DEFAULT_OPSET, convert_fp16, finalize_onnx
from ..formats.onnx import open_session
from ..spec import check_tta



class FlipAverage(torch.nn.Module):
    """``model`` with flip test-time augmentation built in: the mean of the logits of
    each image and of its horizontal mirror, as :func:`squeezenet.metrics.evaluate`
    computes them with ``tta="flip"``."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(torch.cat([x, x.flip(-1)]))  # one pass at twice the batch: one graph, better kernels
        return out.view(2, -1, out.shape[-1]).mean(0)


def export_model_to_onnx(model: torch.nn.Module, path, input_shape=(3, 224, 224), opset: int = DEFAULT_OPSET,
                         dynamic_batch: bool = False, metadata: dict | None = None, exporter: str = "torchscript",
                         batch: int = 1) -> Path:
    """Export ``model`` (eval mode, fp32) to ``path``; the graph input is ``input``
    (B, C, H, W) and the output ``logits``. ``exporter`` is ``torchscript`` (the
    fast tracing exporter) or ``dynamo`` (torch.export based)."""
    onnx = require("onnx", "onnx")
    path = ensure_writable_file(path)
    tmp = path.with_name(f".{path.name}.export.tmp")
    model = model.eval().float().to(memory_format=torch.contiguous_format)
    x = torch.randn(batch, *input_shape)
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            torch.onnx.export(model, (x,), str(tmp), dynamo=True, external_data=False, opset_version=max(opset, 18),
                              input_names=["input"], output_names=["logits"],
                              dynamic_shapes={"x": {0: torch.export.Dim("batch")}} if dynamic_batch else None,
                              verbose=False)
        else:
            try:
                torch.onnx.export(model, (x,), str(tmp), dynamo=False, opset_version=opset, input_names=["input"],
                                  output_names=["logits"], dynamic_axes=axes, do_constant_folding=True)
            except OSError as e:
                from ..files import disk_error

                tmp.unlink(missing_ok=True)
                raise disk_error(e, path) from e
    try:
        proto = onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    onnx.checker.check_model(proto)
    return finalize_onnx(proto, path, metadata)


def max_abs_diff_vs_eager(model, path, inputs: torch.Tensor) -> float:
    sess = open_session(path)
    name = sess.get_inputs()[0].name
    with torch.no_grad():
        ref = model.eval()(inputs).numpy()
    out = sess.run(None, {name: inputs.numpy()})[0]
    return float(abs(out - ref).max())


def load_model_and_spec(model_name: str | None, checkpoint: str | None, input_size: int | None = None,
                        verify: bool = True, command: str = "export"):
    """(model, model label, (C, H, W), data spec dict or None) from any model reference
    (a name, tv:/timm:, a .pt/.sqz file or a run folder; see :func:`formats.open.open_model`)."""
    if bool(model_name) == bool(checkpoint):
        raise SqueezeNetError("give a model (a name, a model file or a run folder) or --checkpoint (exactly one)")
    m = open_model(model_name or checkpoint, verify=verify, command=command)
    spec = m.spec.to_dict() if m.spec is not None else None
    if spec and input_size and input_size != spec["input_size"]:
        raise SqueezeNetError(f"the model was trained at {spec['input_size']} px; drop --input-size "
                              f"{input_size} or retrain at that size")
    size = input_size or m.input_size
    return m.model.eval(), m.name, (m.in_chans, size, size), spec


def export_onnx(model_name: str | None = None, checkpoint: str | None = None, out: str | None = None,
                opset: int = DEFAULT_OPSET, dynamic_batch: bool = False, fp16: bool = False,
                input_size: int | None = None, exporter: str = "torchscript", verify: bool = True,
                tta: str | None = None) -> dict:
    """Export a model or checkpoint to ONNX and verify it. Returns paths, sizes, diffs.
    ``tta="flip"`` builds flip test-time augmentation into the graph and records it in
    the file's data spec (field ``tta``), so evaluation never applies it twice."""
    check_tta(tta)
    if out is None:
        found = resolve_file(checkpoint or model_name)  # a run folder's best.pt -> best.onnx beside it
        out = str(found[0].with_suffix(".onnx")) if found else f"{model_name.replace(':', '_')}.onnx"
    ensure_writable_file(out)
    model, label, shape, spec = load_model_and_spec(model_name, checkpoint, input_size, verify)
    if tta:
        if spec is None:
            raise SqueezeNetError(f"--tta needs a trained model file (a .pt, .sqz or run folder) whose data "
                                  f"description can record it; '{label}' has none")
        model, spec = FlipAverage(model).eval(), {**spec, "tta": tta}
    try:
        with torch.no_grad():
            model(torch.zeros(1, *shape))
    except RuntimeError as e:
        raise SqueezeNetError(f"'{label}' cannot take input {shape} ({str(e).splitlines()[0][:100]}); "
                              "choose another --input-size") from e
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
