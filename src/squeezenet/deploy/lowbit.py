"""``squeezenet quantize --weight-bits 8|4|2|mixed``: low-bit files with measured accuracy.

Steps: fold BatchNorm (:func:`compression.lowbit.fold_batchnorm`), choose each conv's
bits (uniform, or mixed: measured sensitivity + an exact knapsack under the size budget,
or the smallest budget within ``--max-drop``), optionally prune (``--sparsity``), calibrate
the steps (weights by the error of each channel's output, activations by MSE), optionally
fine-tune with LSQ (``--qat-epochs``), then write

- ``model_<tag>.sqz``: the integers packed at their width, a step per channel, the
  activation steps; checksummed (container version 2; 3 with sparse, pruned layers);
- ``model_<tag>.onnx``: INT8/INT4/INT2 initializers -> DequantizeLinear -> Conv, and
  QuantizeLinear/DequantizeLinear on the quantized conv inputs (opset 21, 25 with INT2);
- ``lowbit_report.md``/``.json``: top-1 of the float model, the fake-quant model, the
  ONNX file under ONNX Runtime and the .sqz under PyTorch; bytes on disk against the
  same graph in fp32; ONNX-vs-PyTorch parity; the per-layer bits, parameters and
  sensitivity.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..compression import lowbit as lb
from ..data import DataRef, load_data_for
from ..errors import SqueezeNetError
from ..files import atomic_write_bytes, atomic_write_text, ensure_writable_dir
from ..metrics import evaluate
from ..render import markdown_table
from ..spec import check_tta, evaluation_tta
from ..tta import VIEWS_PER_IMAGE

WEIGHT_CHOICES = ("8", "4", "2", "mixed")
WEIGHT_CLIPS = ("output", "mse")
ROUNDINGS = ("auto", "nearest", "adaround")
CLIP_WORDS = {"output": "steps chosen by the error of each channel's output", "mse": "MSE clipping"}
MAX_DROP_BUDGETS = (4, 6, 8, 10, 12, 14, 16)  # fractions 1/k of the fp32 weight bytes tried by --max-drop


@dataclass
class LowBitSettings:
    weight_bits: str = "4"  # 8, 4, 2 or mixed
    act_bits: int | None = 8  # 8, 4, or None (float activations)
    qat_epochs: float = 0.0
    size_budget_kb: float | None = None  # mixed: the weights' bytes (default 1/12 of fp32)
    max_drop: float | None = None  # mixed: the smallest budget whose PTQ drop on held-out training images is within
    calib_size: int = 512
    lr: float = 0.005
    batch_size: int = 128
    eval_size: int | None = None
    seed: int = 0
    map_by_index: bool = False
    distill: bool = True  # QAT learns the float model's outputs (train.distillation_loss), not labels
    sparsity: str | None = None  # prune first: 'paper' (Table 1 densities) or a global density in (0, 1]
    weight_clip: str = "output"  # each channel's step by the error of its output (output) or of its weights (mse)
    # nearest, adaround (each weight rounded up or down as learned on the calibration images), or auto:
    # adaround for a post-training file with weights below 8 bits, else nearest (see resolved_rounding)
    rounding: str = "auto"
    adaround_iters: int | None = None  # Adam steps per conv (None: lb.ADAROUND_ITERS)
    rounding_chosen_by: str = "flag"  # set by resolved(): "auto" when --rounding auto chose it
    tta: str | None = None  # test-time augmentation built into the ONNX files and scored in every row (spec.TTA_MODES)

    def check(self) -> None:
        check_tta(self.tta)
        if str(self.weight_bits) not in WEIGHT_CHOICES:
            raise SqueezeNetError(f"--weight-bits must be 8, 4, 2 or mixed, got '{self.weight_bits}'; ONNX Runtime "
                                  "and the .sqz container take these widths")
        if self.act_bits not in (None, 8, 4):
            raise SqueezeNetError(f"--act-bits must be 8 or 4 (or 32 for float activations), got {self.act_bits}")
        if (self.size_budget_kb is not None or self.max_drop is not None) and self.weight_bits != "mixed":
            raise SqueezeNetError("--size-budget and --max-drop choose a mixed allocation; add --weight-bits mixed")
        if self.size_budget_kb is not None and self.max_drop is not None:
            raise SqueezeNetError("give --size-budget KB or --max-drop PT, not both")
        if not (self.qat_epochs >= 0 and math.isfinite(self.qat_epochs)):
            raise SqueezeNetError(f"--qat-epochs must be >= 0, got {self.qat_epochs}")
        if self.size_budget_kb is not None and not self.size_budget_kb > 0:
            raise SqueezeNetError(f"--size-budget must be > 0 KB, got {self.size_budget_kb}")
        if not self.distill and not self.qat_epochs:
            raise SqueezeNetError("--no-distill sets the loss of quantization-aware training; add --qat-epochs")
        if self.max_drop is not None and not self.max_drop >= 0:
            raise SqueezeNetError(f"--max-drop must be >= 0 points, got {self.max_drop}")
        if self.weight_clip not in WEIGHT_CLIPS:
            raise SqueezeNetError(f"--weight-clip must be {' or '.join(WEIGHT_CLIPS)}, got '{self.weight_clip}'")
        if self.rounding not in ROUNDINGS:
            raise SqueezeNetError(f"--rounding must be {' or '.join(ROUNDINGS)}, got '{self.rounding}'")
        if self.adaround_iters is not None:
            if not (isinstance(self.adaround_iters, int) and self.adaround_iters >= 1):
                raise SqueezeNetError(f"--adaround-iters must be a whole number >= 1, got {self.adaround_iters}")
            if self.resolved_rounding() != "adaround":
                raise SqueezeNetError("--adaround-iters sets AdaRound's steps, and this file rounds to nearest ("
                                      + ("--rounding nearest" if self.rounding == "nearest" else
                                         "--rounding auto learns rounding only without --qat-epochs and below 8 bits")
                                      + "); add --rounding adaround or drop --adaround-iters")
        if self.sparsity is not None:
            self._check_sparsity()

    def _check_sparsity(self) -> None:
        if self.weight_bits == "mixed":
            raise SqueezeNetError("--sparsity prunes a uniform width: use --weight-bits 8, 4 or 2 with it (the mixed "
                                  "search budgets dense layers)")
        if self.sparsity == "paper":
            return
        try:
            d = float(self.sparsity)
        except ValueError:
            d = float("nan")
        if not 0 < d < 1:
            raise SqueezeNetError(f"--sparsity must be 'paper' (the SqueezeNet paper's per-layer densities) or the "
                                  f"share of weights kept, in (0, 1), got '{self.sparsity}'")

    def resolved_rounding(self) -> str:
        """``auto`` made concrete, by the measurements in docs/BENCHMARKS.md 4.1 (session 12): learned
        rounding (AdaRound) cut the post-training drop of W4A8 from 0.88 to 0.02 pt and of mixed 2/4/8
        from 3.82 to 0.84 pt, but added nothing once QAT followed (it learns the steps and weights
        anyway) and 8-bit weights round to nearest with no measurable loss; it costs minutes."""
        if self.rounding != "auto":
            return self.rounding
        return "adaround" if not self.qat_epochs and str(self.weight_bits) != "8" else "nearest"

    def resolved(self) -> "LowBitSettings":
        """A checked copy with ``rounding`` made concrete, and ``adaround_iters`` where it rounds
        that way (what the files record)."""
        self.check()
        rounding = self.resolved_rounding()
        return replace(self, rounding=rounding,
                       adaround_iters=(self.adaround_iters or lb.ADAROUND_ITERS) if rounding == "adaround" else None,
                       rounding_chosen_by="auto" if self.rounding == "auto" else self.rounding_chosen_by)

    def tag(self, tta: bool = True) -> str:
        """Names the files: ``w4a8_ada``; ``_flip`` ends it where --tta built that into the ONNX files
        (``tta=False``: the name of the .sqz, which holds the model alone)."""
        w = "mixed" if self.weight_bits == "mixed" else f"w{self.weight_bits}"
        pruned = f"_p{self.sparsity}" if self.sparsity is not None else ""
        ada = "_ada" if self.resolved_rounding() == "adaround" else ""
        return (f"{w}a{self.act_bits or 32}{pruned}{ada}" + (f"_qat{self.qat_epochs:g}" if self.qat_epochs else "")
                + (f"_{self.tta}" if self.tta and tta else ""))


def quantize_lowbit(checkpoint: str, out: str | None = None, data: DataRef | None = None,
                    settings: LowBitSettings | None = None, verify: bool = True) -> dict:
    from ..formats.open import open_model, resolve_file

    s = (settings or LowBitSettings()).resolved()
    data = data or DataRef()
    found = resolve_file(checkpoint)
    mf = open_model(checkpoint, verify=verify, command="quantize")
    from .sqz_onnx import is_squeezenet_name

    if not is_squeezenet_name(mf.name):
        raise SqueezeNetError(f"--weight-bits writes low-bit SqueezeNet files (.sqz and ONNX); '{mf.name}' is not a "
                              "SqueezeNet. Use `squeezenet quantize -c FILE` (int8/fp16) for other families")
    if s.qat_epochs and not data.data and (not mf.spec or mf.spec.name not in ("fashion-mnist", "cifar10", "cifar100")):
        raise SqueezeNetError("--qat-epochs trains on the model's data; give --data (the training folder or dataset)")
    evaluation_tta(mf.need_spec(), s.tta, f"'{checkpoint}'")  # flip-shift on a model trained without translation
    outd = ensure_writable_dir(Path(out) if out else (found[0].parent if found else Path(".")) / "quantized")
    splits = load_data_for(mf.need_spec(), data.data, data.data_dir, data.download, s.map_by_index,
                           where=f"'{checkpoint}'")
    from .quantize import calibration_batches

    eval_tf = getattr(splits.test, "transform", None)
    calib = [torch.from_numpy(x) for x in calibration_batches(splits.train, splits.spec, s.calib_size,
                                                              eval_transform=eval_tf, seed=s.seed)]
    test = splits.test.spread(s.eval_size) if s.eval_size else splits.test
    model = mf.model.eval()
    plain = lb.fold_batchnorm(model, mf.name)
    _check_folding(model, plain, calib[0])

    t0 = time.perf_counter()
    sizes = lb.layer_sizes(plain)
    sens, candidates, budget = None, [], None
    if s.weight_bits == "mixed":
        sens = lb.layer_sensitivity(plain, calib, clip=s.weight_clip, seed=s.seed)
        first, last = lb.edge_layers(plain)
        fixed = {first: lb.EDGE_BITS, last: lb.EDGE_BITS}
        fp32_bytes = sum(4 * p for p, _ in sizes.values())
        if s.max_drop is not None:
            bits, budget, candidates = _smallest_within(plain, model, sizes, sens, fixed, fp32_bytes, splits, s, calib)
        else:
            budget = int(s.size_budget_kb * 1024) if s.size_budget_kb else fp32_bytes // 12
            bits = lb.allocate_bits(sizes, sens, budget, fixed)
    else:
        bits = lb.uniform_bits(plain, int(s.weight_bits))
    masks = lb.pruning_masks(plain, s.sparsity) if s.sparsity is not None else {}
    qmodel = calibrated(plain, bits, s, calib, masks)
    search_s = time.perf_counter() - t0
    qat = None
    if s.qat_epochs > 0:
        qmodel, qat = _qat(qmodel, plain, mf, data, splits, s, outd)
    qmodel.eval()

    tag = s.tag()
    sqz_path, onnx_path = outd / f"model_{s.tag(tta=False)}.sqz", outd / f"model_{tag}.onnx"
    fp32_sqz = outd / "model_folded_fp32.sqz"
    fp32_onnx = outd / ("model_folded_fp32" + (f"_{s.tta}" if s.tta else "") + ".onnx")
    stored = write_files(qmodel, plain, mf, bits, s, sqz_path, onnx_path, fp32_sqz, fp32_onnx)
    rows, parity = _measure(model, qmodel, test, splits.spec, (sqz_path, onnx_path, fp32_onnx), s.tta)
    layers = [{"layer": n, "params": sizes[n][0], "bits": bits[n],
               "density": float(masks[n].float().mean()) if n in masks else 1.0,
               "bytes": lb.weight_bytes(*sizes[n], bits[n]), "sqz_bytes": stored[n],
               **({f"kl_{b}bit": sens[n][b] for b in lb.WEIGHT_BITS} if sens else {})} for n in sizes]
    res = {"model": mf.name, "settings": asdict(s), "calib_images": sum(len(b) for b in calib), "tag": tag,
           "rows": rows, "parity": parity, "layers": layers,
           "budget_bytes": budget, "max_drop_candidates": candidates, "search_s": search_s, "qat": qat,
           "files": {"sqz": str(sqz_path), "onnx": str(onnx_path)}}
    table = markdown_table(rows, ROW_COLUMNS)
    report = outd / f"lowbit_report_{tag}.md"
    atomic_write_text(report, _report(res, table, splits.spec.name, len(test)))
    atomic_write_text(outd / f"lowbit_report_{tag}.json", json.dumps(res, indent=2))
    return {**res, "table": table, "report": str(report)}


def calibrated(plain, bits: dict, s: LowBitSettings, calib: list, masks: dict | None = None,
               rounding: str | None = None):
    """The quantized copy of ``plain`` with its weight steps (``s.weight_clip``), then its
    activation steps calibrated on ``calib``, then (``rounding``, default ``s.resolved_rounding()``)
    its weights' rounding learned layer by layer (AdaRound)."""
    q = lb.quantize_model(plain, bits, s.act_bits, masks)
    if s.weight_clip == "output":
        lb.calibrate_weight_steps(q, plain, calib, seed=s.seed)
    lb.calibrate_activations(q, calib)
    if (rounding or s.resolved_rounding()) == "adaround":
        lb.adaround(q, plain, calib, iters=s.adaround_iters or lb.ADAROUND_ITERS, seed=s.seed)
    return q


def _check_folding(model, plain, x) -> None:
    with torch.no_grad():
        a, b = model(x), plain(x)
    err = (a - b).abs().max().item() / max(1e-6, a.abs().max().item())
    if err > 1e-3:
        raise SqueezeNetError(f"folding BatchNorm changed the outputs by {err:.2e} (relative); this model's layout is "
                              "not one the low-bit path knows")


def held_out_batches(splits, s: LowBitSettings, n: int = 2000) -> list:
    """--max-drop's yardstick: up to ``n`` training images that follow the calibration
    images in the seed's order, so none of them is a calibration image (nor a test one)."""
    from .quantize import calibration_batches

    n = min(n, len(splits.train) - s.calib_size)
    if n < 1:
        raise SqueezeNetError(f"--max-drop scores the allocations on training images beyond the {s.calib_size} "
                              f"calibration ones, and the data has {len(splits.train)}; lower --calib-size")
    return [torch.from_numpy(x) for x in calibration_batches(
        splits.train, splits.spec, n, batch=250, seed=s.seed, skip=s.calib_size,
        eval_transform=getattr(splits.test, "transform", None))]


def _smallest_within(plain, model, sizes, sens, fixed, fp32_bytes, splits, s, calib):
    """--max-drop: the smallest of the budgets 1/4 ... 1/16 of the fp32 weight bytes whose
    post-training model disagrees with the float model's top-1 on at most ``max_drop`` % of
    the held-out training images (:func:`held_out_batches`); the disagreement bounds the
    top-1 drop on those images from above."""
    held = held_out_batches(splits, s)
    n_held = sum(len(x) for x in held)
    with torch.no_grad():
        labels = [model(x).argmax(1) for x in held]  # agreement with the float model stands in for labels

    def agreement(m):
        m.eval()
        with torch.no_grad():
            return 100 * sum((m(x).argmax(1) == y).sum().item() for x, y in zip(held, labels)) / \
                sum(len(y) for y in labels)

    cands, chosen = [], None
    for k in MAX_DROP_BUDGETS:
        budget = fp32_bytes // k
        try:
            bits = lb.allocate_bits(sizes, sens, budget, fixed)
        except SqueezeNetError:
            break
        q = calibrated(plain, bits, s, calib, rounding="nearest")  # the search rounds to nearest: AdaRound x 7 is slow
        drop = 100 - agreement(q)
        cands.append({"fraction": f"1/{k}", "budget_bytes": budget, "disagreement_pct": drop, "images": n_held})
        if drop <= s.max_drop:
            chosen = (bits, budget)
    if chosen is None:
        raise SqueezeNetError(f"no mixed allocation down to 1/4 of the fp32 weights stays within --max-drop "
                              f"{s.max_drop} (best: {min(c['disagreement_pct'] for c in cands):.2f} pt); raise it or "
                              "add --qat-epochs")
    return chosen[0], chosen[1], cands


def _qat(qmodel, plain, mf, data: DataRef, splits, s: LowBitSettings, outd: Path):
    """LSQ fine-tune with the project's trainer (fp32, cosine from ``lr``, no warm-up),
    distilling from ``plain`` (the folded float model) unless ``s.distill`` is off. It trains
    on ``splits``, the model's own (its recorded hold-out, its class order), which the report
    scores on; ``s.seed`` sets only the data order."""
    import copy

    from ..train import Trainer, TrainConfig

    whole = max(1, int(math.ceil(s.qat_epochs)))
    work = outd / f"qat_{s.tag()}"
    for f in work.glob("*.pt"):  # a previous run of the same settings: start afresh
        f.unlink()
    cfg = TrainConfig(model=mf.name, data=data.data or mf.spec.name, data_dir=data.data_dir, download=data.download,
                      out=str(work), epochs=whole, batch_size=s.batch_size, lr=s.lr, warmup_epochs=0.0,
                      schedule="cosine", label_smoothing=0.0, precision="fp32", seed=s.seed, progress=False,
                      input_size=mf.input_size)
    tr = Trainer(cfg, model=qmodel, splits=splits)
    if s.distill:
        tr.distil_from(copy.deepcopy(plain))  # plain is written to the fp32 files afterwards
    if s.qat_epochs < whole:
        tr.cfg.max_steps = max(1, int(s.qat_epochs * tr.steps_per_epoch()))
    t0 = time.perf_counter()
    tr.run()
    q = tr.model.to(memory_format=torch.contiguous_format).cpu().eval()
    return q, {"epochs": s.qat_epochs, "loss": "distillation" if s.distill else "cross-entropy",
               "seconds": time.perf_counter() - t0,
               "top1_per_epoch": [h.get("test_top1") for h in tr.history]}


def write_files(qmodel, plain, mf, bits, s, sqz_path, onnx_path, fp32_sqz, fp32_onnx) -> dict[str, int]:
    """Write the four files; returns each quantized conv's weight bytes in the .sqz (steps,
    integers and, for a pruned layer, its Huffman-coded gaps and values)."""
    import copy

    from ..formats import sqz
    from .sqz_onnx import sqz_to_onnx

    final = copy.deepcopy(plain)  # the BN-free layout, with the (fine-tuned) biases
    quantized, act = {}, {}
    for name, m in qmodel.named_modules():
        if isinstance(m, lb.QConv2d):
            q, step = m.integers()
            quantized[f"{name}.weight"] = (q, step, m.weight_bits) + ((m.mask.numpy(),) if m.mask is not None else ())
            final.get_submodule(name).bias.data.copy_(m.quantized_bias().detach())  # on ORT's int32 grid
            if m.a_step is not None:
                act[name] = [float(m.a_step.detach().clamp_min(1e-12)), m.act_bits]
    spec = mf.spec.to_dict() if mf.spec else None
    kw = dict(plain.model_kwargs)
    info = {"weight_bits": bits, "act_bits": s.act_bits, "qat_epochs": s.qat_epochs, "sparsity": s.sparsity,
            "rounding": s.resolved_rounding(), "rounding_chosen_by": s.rounding_chosen_by,
            "policy": "BN folded; per-channel symmetric weights; unsigned per-tensor activations; stem and conv10 8-bit"}
    blob, rows = sqz.encode_model(final, {}, mf.name, kw, spec, extra={"act_quant": act, "quantization": info},
                                  quantized=quantized)
    atomic_write_bytes(sqz_path, blob)
    sqz_to_onnx(sqz_path, onnx_path, s.tta)
    blob32, _ = sqz.encode_model(plain, {}, mf.name, kw, spec)
    atomic_write_bytes(fp32_sqz, blob32)
    sqz_to_onnx(fp32_sqz, fp32_onnx, s.tta)
    return {r["layer"]: r["bytes_after_huffman"] for r in rows if f"{r['layer']}.weight" in quantized}


def _measure(model, qmodel, test, spec, paths, tta: str | None = None):
    """The report's rows and the ONNX-against-PyTorch parity. With ``tta`` every row is
    scored with it: the ONNX files have it built in, the PyTorch models are wrapped."""
    from ..formats.sqz import load_container
    from .export import TTAverage
    from .quantize import ort_logits_fn

    sqz_path, onnx_path, fp32_onnx = paths
    loaded, _ = load_container(sqz_path)
    if tta:
        model, qmodel, loaded = (TTAverage(m, tta, spec).eval() for m in (model, qmodel, loaded))
    ort_q, ort_32 = ort_logits_fn(onnx_path), ort_logits_fn(fp32_onnx)
    rows = []

    def add(name, fn, path=None):
        t = time.perf_counter()
        m = evaluate(None, test, spec, predict_fn=fn)
        rows.append({"what": name, "file": Path(path).name if path else "", "bytes": Path(path).stat().st_size
                     if path else None, "top1": m["top1"], "top5": m["top5"], "eval_s": time.perf_counter() - t})

    def recorded(fn, into):
        return lambda x: into.append(fn(x)) or into[-1]

    fq_out, onnx_out = [], []  # both passes walk the test split in the same order
    with torch.no_grad():
        add("float model (PyTorch)", lambda x: model(x))
        add("BN-folded fp32 (ONNX Runtime)", ort_32, fp32_onnx)
        add("fake-quant model (PyTorch)", recorded(qmodel, fq_out))
        add("low-bit .sqz (PyTorch)", lambda x: loaded(x), sqz_path)
        add("low-bit ONNX (ONNX Runtime)", recorded(ort_q, onnx_out), onnx_path)
    # parity: ONNX Runtime on the low-bit file against the fake-quant PyTorch model, from the passes above
    a, b = torch.cat(fq_out), torch.cat(onnx_out)
    diff, agree, n = (a - b).abs(), (a.argmax(1) == b.argmax(1)).sum().item(), len(a)
    base = rows[0]["top1"]
    fp32_bytes = rows[1]["bytes"]
    for r in rows:
        r["delta_top1"] = r["top1"] - base
        r["size_vs_fp32"] = r["bytes"] / fp32_bytes if r["bytes"] else None
    return rows, {"max_abs_logit_diff": diff.max().item(), "mean_abs_logit_diff": diff.mean().item(),
                  "top1_agreement_pct": 100 * agree / max(1, n), "images": n}


ROW_COLUMNS = [
    ("what", "what"), ("file", "file"), ("bytes", lambda r: f"{r['bytes']:,}" if r["bytes"] else "-"),
    ("vs fp32 ONNX", lambda r: f"1/{1 / r['size_vs_fp32']:.1f}" if r["size_vs_fp32"] else "-"),
    ("top-1 %", lambda r: f"{r['top1']:.2f}"), ("top-5 %", lambda r: f"{r['top5']:.2f}"),
    ("Δ top-1 (pt)", lambda r: f"{r['delta_top1']:+.2f}")]


def _pruning_line(sparsity: str | None) -> str:
    if sparsity is None:
        return ""
    density = "the paper's per-layer densities" if sparsity == "paper" else f"density {sparsity}"
    return (f" Pruned first ({density}; by magnitude, on the folded weights), the masks held through QAT; the .sqz "
            "stores pruned layers sparse (Huffman-coded gaps and integers), the ONNX file dense (ONNX Runtime has "
            "no sparse low-bit conv).")


AUTO_WHY = {"adaround": "a post-training file below 8 bits", "nearest": "8-bit weights or a QAT fine-tune follows"}


def _rounding_line(s: dict) -> str:
    rounding = s.get("rounding", "nearest")
    why = f" (chosen by --rounding auto: {AUTO_WHY[rounding]})" if s.get("rounding_chosen_by") == "auto" else ""
    if rounding != "adaround":
        return f" Weights rounded to nearest{why}."
    return (f" Rounding learned before any fine-tune (AdaRound, {s['adaround_iters']} Adam steps per conv, layer by layer "
            "on the calibration images: each weight goes to the grid point below or above it, whichever reconstructs "
            f"the float layer's output best){why}.")


def _tta_line(tta: str | None) -> str:
    if not tta:
        return ""
    return (f" Every row is scored with {tta} test-time augmentation (each image's logits averaged over its "
            f"{VIEWS_PER_IMAGE[tta]} views, {VIEWS_PER_IMAGE[tta]}x the inference cost): the ONNX files have it built in "
            "and record it, so eval, predict and serve run it; the .sqz holds the model alone "
            f"(`eval --tta {tta}`, or `export --tta {tta}` for an ONNX file).")


def _report(res: dict, table: str, data_name: str, n_test: int) -> str:
    s = res["settings"]
    cols = [("layer", "layer"), ("params", lambda r: f"{r['params']:,}"), ("bits", "bits"),
            ("bytes", lambda r: f"{r['bytes']:,}")]
    if s.get("sparsity") is not None:
        cols += [("density", lambda r: f"{r['density']:.2f}"), (".sqz bytes (sparse)", lambda r: f"{r['sqz_bytes']:,}")]
    if res["layers"] and "kl_2bit" in res["layers"][0]:
        cols += [(f"KL at {b} bits", lambda r, b=b: f"{r[f'kl_{b}bit']:.2e}") for b in lb.WEIGHT_BITS]
    p = res["parity"]
    text = (f"# Low-bit quantization: {res['model']} on {data_name} ({res['tag']})\n\n"
            f"Weights {s['weight_bits']}, activations {s['act_bits'] or 'float'}, QAT epochs {s['qat_epochs']:g}; "
            f"calibration {res['calib_images']:,} training images; seed {s.get('seed', 0)}; {n_test} test images. Policy: BatchNorm folded first; "
            f"per-channel symmetric weights ({CLIP_WORDS[s.get('weight_clip', 'mse')]}, LSQ steps when fine-tuned); "
            "unsigned per-tensor "
            "activations on every conv input but the first; the stem conv and conv10 keep 8-bit weights."
            + _pruning_line(s.get("sparsity")) + _rounding_line(s) + _tta_line(s.get("tta")) + f"\n\n{table}\n\nParity, ONNX Runtime on the low-bit file against the fake-quant PyTorch model over "
            f"{p['images']} images: max |logit difference| {p['max_abs_logit_diff']:.2e} (mean "
            f"{p.get('mean_abs_logit_diff', float('nan')):.1e}), same top-1 on "
            f"{p['top1_agreement_pct']:.2f}%.\n\n")
    if res["budget_bytes"]:
        text += f"Mixed-precision weight budget: {res['budget_bytes']:,} bytes; search {res['search_s']:.1f} s.\n\n"
    if res["max_drop_candidates"]:
        text += ("--max-drop candidates (disagreement with the float model's top-1 on "
                 f"{res['max_drop_candidates'][0].get('images', 2000):,} training images that follow the calibration "
                 "ones in the seed's order: neither calibration nor test images):\n\n")
        text += markdown_table(res["max_drop_candidates"], [("budget", "fraction"), ("bytes", "budget_bytes"), (
            "disagreement %", lambda r: f"{r['disagreement_pct']:.2f}")]) + "\n\n"
    if res["qat"]:
        loss = {"distillation": "distillation from the float model (KL, T=1)",
                "cross-entropy": "cross-entropy on the labels"}[res["qat"]["loss"]]
        text += f"QAT: {res['qat']['epochs']:g} epoch(s) in {res['qat']['seconds']:.0f} s, loss {loss}, lr " \
                f"{s['lr']:g} cosine; test top-1 after each" + (" (single view)" if s.get("tta") else "") + \
                f": {res['qat']['top1_per_epoch']}\n\n"
    text += "## Per layer\n\n" + markdown_table(res["layers"], cols) + "\n"
    return text
