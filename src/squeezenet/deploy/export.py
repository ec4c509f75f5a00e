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
from ..tta import fill_value, shift_pixels, views



class TTAverage(torch.nn.Module):
    """``model`` with test-time augmentation built in: the mean of its logits over the
    views of :mod:`squeezenet.tta`, as :func:`squeezenet.metrics.evaluate` computes them
    with the same ``tta``. ``spec`` (a :class:`spec.DataSpec` or its dict) gives the
    training translation and normalisation the shifted views follow."""

    def __init__(self, model: torch.nn.Module, tta: str, spec, where: str = "the model"):
        super().__init__()
        d = spec if isinstance(spec, dict) else spec.to_dict()
        self.model, self.tta, self.shift = model, tta, shift_pixels(tta, d.get("pad", 0), where)
        self.fill = fill_value(d["mean"], d["std"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = views(x, self.tta, self.shift, self.fill)
        out = self.model(torch.cat(v))  # one pass at the views' batch: one graph, better kernels
        return out.view(len(v), -1, out.shape[-1]).mean(0)


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


# ONNX Runtime against the fake-quant model: the mean |logit difference| as a share of the logits' spread. Not
# a max: an fp32 sum in another order that lands on an activation's rounding boundary moves it a whole step, which
# at 4-bit activations can move a logit by 0.1-1 on some images (docs/BENCHMARKS.md 4.1, session 17: a mean under
# 0.1% of the spread); a wrongly built graph is off by about the spread itself.
LOW_BIT_TOLERANCE = 0.25


def export_low_bit(path: Path, out, tta: str | None = None, *, opset: int | None = None, fp16: bool = False,
                   input_size: int | None = None) -> dict:
    """A low-bit .sqz to ONNX as it is stored: INT8/INT4/INT2 initializers -> DequantizeLinear
    -> Conv, activations through QuantizeLinear/DequantizeLinear, any batch size, at the
    opset its integer types need (:func:`sqz_onnx.sqz_to_onnx`). Checked against the
    fake-quant PyTorch model the container rebuilds; exporting through PyTorch instead
    would widen every weight to fp32 (about 7x the file)."""
    from .sqz_onnx import sqz_to_onnx

    given = [flag for flag, v in (("--fp16", fp16), ("--opset", opset), ("--input-size", input_size)) if v]
    if given:
        raise SqueezeNetError(f"'{path}' holds low-bit integer weights, which export as they are stored (at the "
                              f"opset their types need, at the trained size); drop {', '.join(given)}")
    m = open_model(str(path))
    if tta and m.spec is None:
        raise SqueezeNetError(f"--tta needs a model file whose data description can record it; '{path}' has none")
    model = TTAverage(m.model, tta, m.spec, f"'{path}'").eval() if tta else m.model
    written = Path(sqz_to_onnx(path, out, tta))
    torch.manual_seed(0)
    x = torch.randn(16, m.in_chans, m.input_size, m.input_size)
    with torch.no_grad():
        ref = model(x)
    diff = (torch.from_numpy(open_session(written).run(None, {"input": x.numpy()})[0]) - ref).abs()
    share = float(diff.mean() / ref.std().clamp_min(1e-12))
    if share > LOW_BIT_TOLERANCE:
        written.unlink()
        raise SqueezeNetError(f"the ONNX graph's logits differ from the fake-quant model's by {share:.0%} of their "
                              f"spread on average (> {LOW_BIT_TOLERANCE:.0%}); '{path}' may be damaged")
    return {"path": str(written), "size_bytes": written.stat().st_size, "input_shape": [m.in_chans, m.input_size,
            m.input_size], "max_abs_diff": float(diff.max()), "mean_share": share, "low_bit": True}


def max_abs_diff_vs_eager(model, path, inputs: torch.Tensor) -> float:
    sess = open_session(path)
    name = sess.get_inputs()[0].name
    with torch.no_grad():
        ref = model.eval()(inputs).numpy()
    out = sess.run(None, {name: inputs.numpy()})[0]
    return float(abs(out - ref).max())


def _one_reference(model_name: str | None, checkpoint: str | None) -> str:
    if bool(model_name) == bool(checkpoint):
        raise SqueezeNetError("give a model (a name, a model file or a run folder) or --checkpoint (exactly one)")
    return model_name or checkpoint


def load_model_and_spec(model_name: str | None, checkpoint: str | None, input_size: int | None = None,
                        verify: bool = True, command: str = "export"):
    """(model, model label, (C, H, W), data spec dict or None) from any model reference
    (a name, tv:/timm:, a .pt/.sqz file or a run folder; see :func:`formats.open.open_model`)."""
    m = open_model(_one_reference(model_name, checkpoint), verify=verify, command=command)
    spec = m.spec.to_dict() if m.spec is not None else None
    if spec and input_size and input_size != spec["input_size"]:
        raise SqueezeNetError(f"the model was trained at {spec['input_size']} px; drop --input-size "
                              f"{input_size} or retrain at that size")
    size = input_size or m.input_size
    return m.model.eval(), m.name, (m.in_chans, size, size), spec


def export_onnx(model_name: str | None = None, checkpoint: str | None = None, out: str | None = None,
                opset: int | None = None, dynamic_batch: bool = False, fp16: bool = False,
                input_size: int | None = None, exporter: str = "torchscript", verify: bool = True,
                tta: str | None = None) -> dict:
    """Export a model or checkpoint to ONNX and verify it. Returns paths, sizes, diffs.
    ``tta`` (``flip``, ``flip-shift``) builds test-time augmentation into the graph and records it in
    the file's data spec (field ``tta``), so evaluation never applies it twice.
    ``opset`` defaults to :data:`onnx_tools.DEFAULT_OPSET`. A low-bit .sqz
    (``quantize --weight-bits``) keeps its integer weights: see :func:`export_low_bit`."""
    check_tta(tta)
    found = resolve_file(_one_reference(model_name, checkpoint))
    if out is None:  # beside the file (a run folder's best.pt -> best.onnx); _flip.onnx with TTA, as quantize names it
        stem = str(found[0].with_suffix("")) if found else model_name.replace(":", "_")
        out = stem + (f"_{tta}" if tta else "") + ".onnx"
    ensure_writable_file(out)
    if found and found[1] == "sqz":
        from .sqz_onnx import has_integer_weights

        if has_integer_weights(found[0]):
            return export_low_bit(found[0], out, tta, opset=opset, fp16=fp16, input_size=input_size)
    opset = opset or DEFAULT_OPSET
    model, label, shape, spec = load_model_and_spec(model_name, checkpoint, input_size, verify)
    if tta:
        if spec is None:
            raise SqueezeNetError(f"--tta needs a trained model file (a .pt, .sqz or run folder) whose data "
                                  f"description can record it; '{label}' has none")
        model, spec = TTAverage(model, tta, spec, f"'{found[0] if found else label}'").eval(), {**spec, "tta": tta}
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
