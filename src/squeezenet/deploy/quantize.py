"""Post-training quantization with accuracy and size reports.

Backends:
  ort-int8   ONNX Runtime static int8, QDQ format, per-channel int8 weights, uint8
             activations, calibrated (MinMax) on real training images.
  ort-fp16   fp16 weights/activations in ONNX (fp32 input/output).
  pt2e-int8  PyTorch's own PT2E flow with the X86 Inductor quantizer, run eagerly
             (reference int8 numerics); compared in the same table where it works.

``tta`` (``--tta flip`` or ``flip-shift``) builds test-time augmentation into every file
and row, as ``export --tta`` does: the files record it, calibration sees all views.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import DataRef, FolderDataset, TensorDataset, load_data_for
from ..spec import DataSpec, check_tta, evaluation_tta
from ..errors import SqueezeNetError, require
from ..files import atomic_write_text, ensure_writable_dir
from ..metrics import evaluate, iterate_eval
from ..render import markdown_table
from .export import TTAverage, export_model_to_onnx
from ..tta import VIEWS_PER_IMAGE
from .onnx_tools import convert_fp16, quantize_onnx_int8
from ..formats.onnx import open_session


def calibration_batches(train, spec: DataSpec, n: int, batch: int = 32, seed: int = 0,
                        eval_transform=None, skip: int = 0) -> list[np.ndarray]:
    """``n`` training images, chosen with a seed, preprocessed as for evaluation (for
    streamed image folders: ``eval_transform``, the test split's resize + centre crop,
    never the training augmentation). ``skip``: leave out the first ``skip`` images of
    the seed's order, so that a second draw with the same seed shares none with the first."""
    if n < 1 or len(train) == 0:
        raise SqueezeNetError("calibration set is empty; pass --data with training images and --calib-size >= 1")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(train), generator=g)[skip:skip + n]
    if isinstance(train, TensorDataset):
        return [x.numpy() for x, _ in iterate_eval(train.subset(idx), spec, batch)]
    if isinstance(train, FolderDataset):
        if eval_transform is None:
            raise SqueezeNetError("internal error: calibration on an image folder needs the evaluation transform")
        train = train.with_transform(eval_transform)
    sub = torch.utils.data.Subset(train, idx.tolist())
    sub.classes = train.classes
    return [x.numpy() for x, _ in iterate_eval(sub, spec, batch)]


def ort_logits_fn(path):
    sess = open_session(path)
    name = sess.get_inputs()[0].name
    return lambda x: torch.from_numpy(sess.run(None, {name: x.numpy().astype(np.float32)})[0])


def pt2e_int8(model, calib: list[np.ndarray], example: torch.Tensor):
    """PT2E static int8 with the X86 Inductor quantizer; returns the converted module."""
    from torch.export import export

    try:  # PT2E moved from torch.ao to torchao (the optional 'pt2e' extra)
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer, get_default_x86_inductor_quantization_config)
    except ImportError:
        try:
            from torch.ao.quantization.quantize_pt2e import convert_pt2e, prepare_pt2e
            from torch.ao.quantization.quantizer.x86_inductor_quantizer import (
                X86InductorQuantizer, get_default_x86_inductor_quantization_config)
        except ImportError as e:
            raise SqueezeNetError("PT2E quantization needs torchao with this torch: "
                                  "`pip install 'squeezenet-toolkit[pt2e]'`") from e
    batch = torch.export.Dim("batch", min=1, max=4096)
    gm = export(model.eval(), (example.repeat(2, 1, 1, 1),), dynamic_shapes={"x": {0: batch}}).module()
    q = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(gm, q)
    with torch.no_grad():
        for b in calib:
            prepared(torch.from_numpy(b))
    return convert_pt2e(prepared)


def layer_errors(qpath, fp32_path, batch: np.ndarray, top: int = 5) -> list[dict]:
    """Relative L2 error of each quantized activation against the fp32 model.

    In the QDQ graph every quantized activation T reappears as
    ``T_DequantizeLinear_Output``: that tensor is compared with T of the fp32 graph
    (errors accumulate from the input on, as they do at inference). Returns the
    ``top`` worst layers."""
    onnx = require("onnx", "onnx")

    def run_all(path, names):
        proto = onnx.load(str(path))
        have = {o.name for o in proto.graph.output}
        for n in names:
            if n not in have:
                proto.graph.output.add().name = n
        tmp = Path(path).with_suffix(".debug.onnx")
        onnx.save(proto, str(tmp))
        try:
            sess = open_session(tmp)
            vals = sess.run(None, {sess.get_inputs()[0].name: batch})
            return {o.name: v for o, v in zip(sess.get_outputs(), vals)}
        finally:
            tmp.unlink(missing_ok=True)

    qproto = onnx.load(str(qpath))
    suffix = "_DequantizeLinear_Output"
    dq = [o for n in qproto.graph.node if n.op_type == "DequantizeLinear" for o in n.output if o.endswith(suffix)]
    fp_names = {n.output[0] for n in onnx.load(str(fp32_path)).graph.node}
    pairs = {o: o[: -len(suffix)] for o in dq if o[: -len(suffix)] in fp_names}
    ref, q = run_all(fp32_path, list(pairs.values())), run_all(qpath, list(pairs))
    rows = []
    for qn, fn in pairs.items():
        r, v = ref[fn], q[qn]
        if r.shape == v.shape:
            rows.append({"tensor": fn, "relative_l2_error": float(np.linalg.norm(v - r) / max(np.linalg.norm(r), 1e-12))})
    rows.sort(key=lambda d: -d["relative_l2_error"])
    return rows[:top]


def _file_size(p) -> int:
    return Path(p).stat().st_size


BACKENDS = ("ort-int8", "ort-fp16", "pt2e-int8")


@dataclass
class QuantizeSettings:
    calib_size: int = 512  # training images to calibrate on
    backends: tuple = BACKENDS
    eval_size: int | None = None  # evaluate on N test images only, taken round-robin over the classes
    map_by_index: bool = False
    tta: str | None = None  # test-time augmentation built into every file (spec.TTA_MODES)

    def check(self) -> None:
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise SqueezeNetError(f"unknown quantize backend '{unknown[0]}'; use {', '.join(BACKENDS)}")
        check_tta(self.tta)


def quantize(checkpoint: str, out: str | None = None, data: DataRef | None = None,
             settings: QuantizeSettings | None = None, verify: bool = True, **kw) -> dict:
    """Quantize a trained model (a .pt/.sqz file or a run folder); evaluate every backend
    on the test split. ``kw`` may give any :class:`QuantizeSettings` or :class:`DataRef`
    field directly (``calib_size=128, data_dir=...``)."""
    from ..formats.open import open_model, resolve_file

    settings = settings or QuantizeSettings(**{k: kw.pop(k) for k in list(kw) if k in QuantizeSettings.__annotations__})
    data = data or DataRef(**{k: kw.pop(k) for k in list(kw) if k in DataRef.__annotations__})
    if kw:
        raise TypeError(f"unexpected option(s): {', '.join(sorted(kw))}")
    settings.check()
    found = resolve_file(checkpoint)
    mf = open_model(checkpoint, verify=verify, command="quantize")
    evaluation_tta(mf.need_spec(), settings.tta, f"'{checkpoint}'")  # flip-shift on a model trained without translation
    out = ensure_writable_dir(Path(out) if out else (found[0].parent if found else Path(".")) / "quantized")
    splits = load_data_for(mf.need_spec(), data.data, data.data_dir, data.download, settings.map_by_index,
                           where=f"'{checkpoint}'")
    test = splits.test.spread(settings.eval_size) if settings.eval_size else splits.test
    rows, errors, notes, n_calib = _quantized_rows(mf, splits, test, settings, out)
    table = markdown_table(rows, ROW_COLUMNS)
    report = out / "quantize_report.md"
    atomic_write_text(report, _report(mf.name, splits.spec.name, n_calib, len(test), table, errors, notes))
    atomic_write_text(out / "quantize_report.json", json.dumps({"rows": rows, "layer_errors": errors, "notes": notes,
                                                                "calib_images": n_calib}, indent=2))
    return {"rows": rows, "table": table, "layer_errors": errors, "notes": notes, "report": str(report),
            "calib_images": n_calib}


def _quantized_rows(mf, splits, test, settings: QuantizeSettings, out: Path):
    """One row per backend (top-1/top-5, file size, against eager fp32), the int8 layers
    that lose most, notes on backends that could not run, and the calibration images used
    (fewer than ``calib_size`` where the training split is smaller)."""
    spec, model, meta = splits.spec, mf.model, mf.spec.to_dict() or None
    if settings.tta:
        model, meta = TTAverage(model, settings.tta, spec).eval(), {**meta, "tta": settings.tta}
    shape = (spec.channels, spec.input_size, spec.input_size)
    fp32 = export_model_to_onnx(model, out / "model_fp32.onnx", shape, dynamic_batch=True, metadata=meta)
    calib = calibration_batches(splits.train, spec, settings.calib_size,
                                eval_transform=getattr(splits.test, "transform", None))
    rows, errors, notes = [], [], []
    if settings.tta:
        notes.append(f"{settings.tta} TTA is built into every file and row ({VIEWS_PER_IMAGE[settings.tta]}x the "
                     "inference cost); the files record it, so eval, predict and serve run it once")

    def add(name, path, fn):
        t = time.perf_counter()
        m = evaluate(None, test, spec, predict_fn=fn)
        rows.append({"backend": name, "file": str(path) if path else "", "size_bytes": _file_size(path) if path else None,
                     "top1": m["top1"], "top5": m["top5"], "eval_s": time.perf_counter() - t})

    add("eager-fp32", None, lambda x: model(x))
    add("ort-fp32", fp32, ort_logits_fn(fp32))
    if "ort-int8" in settings.backends:
        q = quantize_onnx_int8(fp32, out / "model_int8.onnx", calib)
        add("ort-int8", q, ort_logits_fn(q))
        errors = layer_errors(q, fp32, calib[0])
    if "ort-fp16" in settings.backends:
        h = convert_fp16(fp32, out / "model_fp16.onnx")
        add("ort-fp16", h, ort_logits_fn(h))
    if "pt2e-int8" in settings.backends:
        try:
            qm = pt2e_int8(model, calib, torch.from_numpy(calib[0][:1]))
            add("pt2e-int8", None, lambda x: qm(x))
        except Exception as e:  # optional second backend: report, don't fail
            notes.append(f"pt2e-int8 skipped: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
    fp32_size = _file_size(fp32)
    for r in rows:
        r["delta_top1"] = r["top1"] - rows[0]["top1"]
        r["size_vs_fp32"] = (r["size_bytes"] / fp32_size) if r["size_bytes"] else None
    return rows, errors, notes, sum(len(b) for b in calib)


ROW_COLUMNS = [
    ("backend", "backend"), ("top-1 %", lambda r: f"{r['top1']:.2f}"), ("top-5 %", lambda r: f"{r['top5']:.2f}"),
    ("Δ top-1 (pt)", lambda r: f"{r['delta_top1']:+.2f}"),
    ("file bytes", lambda r: f"{r['size_bytes']:,}" if r["size_bytes"] else "-"),
    ("size vs fp32", lambda r: f"{100 * r['size_vs_fp32']:.1f}%" if r["size_vs_fp32"] else "-")]


def _report(name, data_name, calib_size, n_test, table, errors, notes) -> str:
    err_md = markdown_table(errors, [("tensor", "tensor"), ("relative L2 error (int8 vs fp32)",
                                                            lambda e: f"{e['relative_l2_error']:.4f}")])
    return (f"# Quantization report: {name} on {data_name}\n\n"
            f"Calibration: {calib_size:,} training images (MinMax). Test images: {n_test:,}.\n\n"
            f"{table}\n\n## Layers that lose most (int8)\n\n{err_md}\n\n" + "".join(f"- note: {n}\n" for n in notes))
