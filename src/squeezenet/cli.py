"""The `squeezenet` command. Each subcommand has an ``add_<cmd>_parser`` beside its
``_cmd_<cmd>``; each parses its flags and calls one library function that is also
usable from Python. Flag values are checked as they are parsed; bad input of any kind
ends in one ``error: ...`` line and exit code 2 (130 after Ctrl-C), never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import math
import sys
from pathlib import Path

from . import __version__
from .errors import SqueezeNetError
from .spec import EVAL_BATCH_SIZE
from .tta import HELP as TTA_HELP, TTA_MODES

EPILOG = """examples:
  squeezenet list
  squeezenet summary squeezenet1_0 --input-size 227
  squeezenet train                                  # default model on Fashion-MNIST
  squeezenet eval --checkpoint runs/demo/best.pt
  squeezenet export --checkpoint runs/demo/best.pt
  squeezenet bench squeezenet1_1 --backends eager,ort,ort-int8
  squeezenet compress --model squeezenet1_0 --sparsity paper --bits 6
  squeezenet compare
Run `squeezenet COMMAND --help` for the flags of each command."""


MODEL_REF = "a model: a name (tv:NAME, timm:NAME too), a .pt/.sqz/.onnx file or a run folder"


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (``error: ...``) and exit code 2."""

    def error(self, message):
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


# ------------------------------------------------------------------ flag types

def _number(kind, test, want):
    def convert(s):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {want}, got '{s}'") from None
        if (isinstance(v, float) and not math.isfinite(v)) or not test(v):
            raise argparse.ArgumentTypeError(f"expected {want}, got '{s}'")
        return v
    convert.__name__ = want
    return convert


positive_int = _number(int, lambda v: v >= 1, "an integer >= 1")
non_negative_int = _number(int, lambda v: v >= 0, "an integer >= 0")
positive_float = _number(float, lambda v: v > 0, "a number > 0")
non_negative_float = _number(float, lambda v: v >= 0, "a number >= 0")
image_size = _number(int, lambda v: 8 <= v <= 2048, "a size between 8 and 2048 px")
channels = _number(int, lambda v: 1 <= v <= 16, "a channel count between 1 and 16")
opset = _number(int, lambda v: 7 <= v <= 23, "an ONNX opset between 7 and 23")


def _int_list(s: str) -> list[int]:
    vals = [v for v in s.split(",") if v.strip()]
    if not vals:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, got '{s}'")
    return [positive_int(v) for v in vals]


def _float_list(s: str) -> list[float]:
    if s.strip().lower() == "none":
        return []
    try:
        vals = [float(v) for v in s.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers or 'none', got '{s}'") from None
    if not all(math.isfinite(v) for v in vals):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got '{s}'")
    return vals


def _str_list(s: str) -> list[str]:
    vals = [v.strip() for v in s.split(",") if v.strip()]
    if not vals:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got '{s}'")
    return vals


def _add_data_flags(p, default="fashion-mnist"):
    p.add_argument("--data", default=default,
                   help="fashion-mnist, cifar10, cifar100, or an ImageFolder path (train/<class>/*.jpg, "
                        "val/<class>/*.jpg) (default: %(default)s)")
    p.add_argument("--data-dir", help="where named datasets live (Fashion-MNIST IDX files, CIFAR batches)")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="never try torchvision's downloader")


def _add_model_file_flags(p, map_by_index: bool = False):
    p.add_argument("--skip-integrity-check", dest="verify", action="store_false",
                   help="load a model file without our integrity digest (foreign or older files)")
    if map_by_index:
        p.add_argument("--map-by-index", action="store_true",
                       help="score data class i as model output i even when the class names differ")


# ------------------------------------------------------------------ list / explain / summary

def add_list_parser(sub):
    p = sub.add_parser("list", help="list model names", description="List registered model names, with what each is.")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. '*bypass*'")
    p.set_defaults(func=_cmd_list)


def _cmd_list(a):
    from .factory import explain_name, list_models

    names = list_models(a.pattern)
    if not names:
        raise SqueezeNetError(f"no model matches '{a.pattern}'")
    w = max(map(len, names))
    for n in names:
        print(f"{n.ljust(w)}  {explain_name(n)['summary']}")
    print("\nmodifiers: _sr<x> _pct<x> _w<x> _bn _small _<resolution>, e.g. squeezenet1_1_w0.5_160 "
          "(see `squeezenet explain NAME`)")


def add_explain_parser(sub):
    p = sub.add_parser("explain", help="explain what a model name means",
                       description="What a model name says: family and version, width or compound scaling, "
                                   "resolution, groups, size, series, patch size; computed params and MACs where a "
                                   "builder is installed (no weights allocated); the published ImageNet top-1 with "
                                   "its source. Ours, torchvision's (tv:NAME or bare) and timm's (timm:NAME or bare).")
    p.add_argument("name")
    p.set_defaults(func=_cmd_explain)


def _cmd_explain(a):
    from .names import explain

    info = explain(a.name)
    w = max(map(len, info))
    for k, v in info.items():
        print(f"{k:>{w}}: {v}")


def add_summary_parser(sub):
    p = sub.add_parser("summary", help="per-layer params, MACs and output shapes",
                       description="Per-layer output shape, parameters and MACs (multiply-accumulates of conv/"
                                   "linear) with totals and fp32/fp16/int8 sizes. Works for our models and "
                                   "torchvision/timm names (tv:NAME, timm:NAME), model files and run folders, at "
                                   "the model's native resolution (torchvision: its weights' crop size). No weights "
                                   "are allocated for a name. An .onnx file is counted from its graph.")
    p.add_argument("model", help=MODEL_REF)
    p.add_argument("--input-size", type=image_size, help="square input size in px (default: the model's native size)")
    p.add_argument("--in-chans", type=channels, help="input channels (default 3)")
    p.add_argument("--num-classes", type=positive_int, help="classes (default 1000)")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")
    p.add_argument("--count", type=_str_list, default=[],
                   help="also count bn, act, pool and/or add (comma-separated; 1 MAC per element op). Default: "
                        "conv/linear/matmul and attention only, as torchvision and the papers")
    _add_model_file_flags(p)
    p.set_defaults(func=_cmd_summary)


def _cmd_summary(a):
    from .formats.open import open_model
    from .profiler import profile

    m = open_model(a.model, num_classes=a.num_classes, in_chans=a.in_chans, meta=True, need="any", verify=a.verify,
                   command="summary")
    size = a.input_size or m.input_size
    if m.onnx is None:
        print(profile(m.model, (m.in_chans, size, size), m.name, extra=a.count).format(a.format))
        return
    from .deploy.onnx_tools import onnx_layers, precision
    from .profiler import profile_from_rows

    if a.count:
        raise SqueezeNetError("--count needs a PyTorch model: an ONNX graph has its BatchNorm folded into the "
                              "convolutions; drop --count or give the .pt checkpoint")
    path, shape = Path(m.onnx.path), (m.in_chans, size, size)
    note = ("counted from the ONNX graph: one row per Conv/Gemm/MatMul node; parameters are the weights and biases "
            f"each node reads (export folds BatchNorm into the convolutions); the file: {path.stat().st_size:,} "
            f"bytes on disk, {precision(path)}")
    print(profile_from_rows(onnx_layers(path, shape), shape, m.name, note).format(a.format))


# ------------------------------------------------------------------ train

def add_train_parser(sub):
    from .config import add_train_arguments

    p = sub.add_parser("train", help="train and evaluate a model",
                       description="Train a model (default: `--config natural` for small colour images, else `--config demo`). "
                                   "Writes config.json, "
                                   "run.json, last.pt/best.pt, metrics.csv/jsonl, curves.png, confusion.png and "
                                   "report.md into --out, which is locked while the run writes. Under torchrun it "
                                   "runs DistributedDataParallel; --batch-size is then the global batch. "
                                   "`--resume --out DIR` continues a run with its own settings.")
    p.add_argument("model", nargs="?", help="model name (default: the natural or demo config's, by the data)")
    p.add_argument("--config", help="TOML or JSON file with any of these options, or a named config (demo, natural, long); "
                                    "flags win")
    add_train_arguments(p)
    p.set_defaults(func=_cmd_train)


def train_settings(a) -> dict:
    """The settings of a `train` call: defaults < named/file config < the run's own
    config.json (with --resume) < explicit flags."""
    from dataclasses import fields

    from .config import TrainConfig, check_types, default_config, layered, load_config_file, run_config

    names = {f.name for f in fields(TrainConfig)}
    explicit = {k: v for k, v in vars(a).items() if k in names and v is not None}
    if a.model:
        _check_model_is_a_name(a.model)
        explicit["model"] = a.model
    cfg = load_config_file(a.config) if a.config else {}
    check_types(cfg)  # before any value of the file is used ("resume = 'no'" is not a yes)
    if explicit.get("resume") or cfg.get("resume"):
        out = explicit.get("out") or cfg.get("out") or TrainConfig.out
        saved = run_config(out)
        saved.pop("max_steps", None)  # a smoke-test stop is not a setting of the run
        return {**saved, **cfg, **explicit, "resume": True, "out": out}
    if "model" not in cfg and "model" not in explicit:
        base = load_config_file(default_config(explicit.get("data") or cfg.get("data")))
        if cfg.keys() & {"epochs", "time_budget"}:  # the file's own length replaces the default's
            base = {k: v for k, v in base.items() if k not in ("epochs", "time_budget")}
        cfg = {**base, **cfg}
    return layered(length_from(cfg, explicit, a.config), explicit)


def _check_model_is_a_name(model: str) -> None:
    """`train runs/x/last.pt` (a path where a model name goes) gets told what it meant."""
    from .factory import is_model

    if not is_model(model) and Path(model).exists():
        raise SqueezeNetError(f"'{model}' is a file or folder, not a model name: `--resume --out RUN_DIR` continues "
                              "a run; `--weights FILE` starts from a model file's weights")


def length_from(cfg: dict, explicit: dict, source: str | None = None) -> dict:
    """A run's length comes from --epochs or --time-budget: a flag replaces the other
    setting of a config file (`--config demo --epochs 30` trains 30 epochs, not the
    demo's 10 minutes); both flags at once, or a file that sets both with no flag to
    choose, is an error (the budget would silently win over the file's epochs)."""
    if "epochs" in explicit and "time_budget" in explicit:
        raise SqueezeNetError("give --epochs or --time-budget, not both: a time budget sets the number of steps itself")
    if not explicit.keys() & {"epochs", "time_budget"} and cfg.get("epochs") is not None \
            and cfg.get("time_budget") is not None:
        raise SqueezeNetError(f"config file '{source}' sets both epochs and time_budget: keep one in the file, or "
                              "choose with --epochs N or --time-budget DURATION")
    if "epochs" in explicit:
        return {k: v for k, v in cfg.items() if k != "time_budget"}
    if "time_budget" in explicit:
        return {k: v for k, v in cfg.items() if k != "epochs"}
    return cfg


def _cmd_train(a):
    from . import progress
    from .config import TrainConfig
    from .train import train

    cfg = TrainConfig.from_dict(train_settings(a))
    with progress.enabled(cfg.progress):
        res = train(cfg)
    if not res:
        return
    final = res["final"].get("test_top1")
    if res["best_top1"] is None:
        head = (f"stopped by --max-steps after {res['global_step']} steps, before an epoch ended; test top-1 "
                f"{final:.2f}% at that point")
    else:
        # the final weights' score first: the best epoch's was chosen on the split it is scored on
        head = f"final test top-1 {final:.2f}% (best epoch {res['best_top1']:.2f}%)"
        if res["stopped_early"]:
            head += f" (stopped by --max-steps after {res['global_step']} steps)"
    b = res.get("budget")
    if b and b.get("plans"):
        from .budget import format_duration

        head += (f"; time budget {format_duration(b['budget_s'])}: planned {format_duration(b['plans'][-1]['planned_s'])}"
                 f", used {format_duration(b['spent'])}")
    print(f"{head}, training time {res['train_time_s']:.0f} s, peak RSS {res['peak_rss_mib']:.0f} MiB; "
          f"report: {Path(res['out']) / 'report.md'}")


# ------------------------------------------------------------------ eval / predict

def add_eval_parser(sub):
    p = sub.add_parser("eval", help="top-1/top-5 of a model file or of any named model",
                       description="Evaluate a checkpoint (.pt), container (.sqz) or export (.onnx) on a dataset's "
                                   "test split, preprocessed as in training; prints top-1/top-5 and writes a JSON "
                                   "next to the model file (or --out). Class names are matched with the model's. "
                                   "Or, with --model NAME --weights FILE|URL --data DIR, evaluate any of ours, "
                                   "torchvision's (tv:NAME) or timm's (timm:NAME) models on an ImageNet-layout "
                                   "folder (DIR/val/<wnid>/*.JPEG; class index = sorted wnid), each with its own "
                                   "evaluation preprocessing; reports top-1/top-5 and images/s.")
    p.add_argument("--checkpoint", "-c")
    p.add_argument("--model", help="a model name, for ImageNet evaluation with --weights and --data")
    p.add_argument("--weights", help="ImageNet weights for --model: a file or an http(s) URL")
    p.add_argument("--preprocess", choices=["auto", "torchvision", "timm", "caffe", "imagenet"], default="auto",
                   help="evaluation preprocessing for --model (default: the model's own)")
    p.add_argument("--workers", "-j", type=non_negative_int, help="DataLoader workers for --model (default 2)")
    p.add_argument("--limit", type=positive_int,
                   help="evaluate N images (--model), taken round-robin over the classes (the first image of each "
                        "class, then the second, ...) so that every class counts")
    _add_data_flags(p, default=None)
    p.add_argument("--out", help="JSON file to write (default: <checkpoint>.eval.json)")
    p.add_argument("--batch-size", type=positive_int, default=EVAL_BATCH_SIZE,
                   help=f"evaluation batch size (default {EVAL_BATCH_SIZE})")
    p.add_argument("--tta", choices=TTA_MODES, help=f"test-time augmentation: {TTA_HELP}")
    _add_model_file_flags(p, map_by_index=True)
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(a):
    if bool(a.model) == bool(a.checkpoint):
        raise SqueezeNetError("give --checkpoint FILE, or --model NAME with --weights and --data (exactly one)")
    _refuse_other_mode_flags(a)
    if a.model:
        return _eval_named(a)
    from .evaluate import evaluate_checkpoint

    r = evaluate_checkpoint(a.checkpoint, a.data, a.data_dir, a.download, a.batch_size, a.out, a.tta,
                            a.map_by_index, a.verify)
    tta = (f", {r['tta_in_model']} TTA built into the file" if r["tta_in_model"] else
           f", {a.tta} TTA" if a.tta else "")
    print(f"{r['model']} on {r['data']} ({r['n']} images{tta}): top-1 {r['top1']:.2f}%, top-5 {r['top5']:.2f}%, "
          f"loss {r['loss']:.4f}; written to {r['json']}")


def _refuse_other_mode_flags(a):
    """A flag of the other evaluation mode would be silently ignored (a --tta that never ran
    reads as a TTA score): refuse it in one line."""
    if a.model:
        given = [f for f, on in (("--tta", a.tta), ("--map-by-index", a.map_by_index)) if on]
        if given:
            raise SqueezeNetError(f"{' and '.join(given)} apply to model files (--checkpoint FILE); eval --model NAME "
                                  "scores plain ImageNet top-1 with the model's own preprocessing")
    else:
        given = [f for f, on in (("--weights", a.weights), ("--limit", a.limit), ("--preprocess", a.preprocess != "auto"),
                                 ("--workers", a.workers is not None)) if on]
        if given:
            raise SqueezeNetError(f"{', '.join(given)} go with --model NAME (ImageNet evaluation); a model file "
                                  "(--checkpoint) is evaluated on its whole test split with its recorded preprocessing")


def _eval_named(a):
    import json

    from .files import atomic_write_text, ensure_writable_file
    from .imagenet import evaluate_imagenet

    if not a.data:
        raise SqueezeNetError("--model needs --data DIR, an ImageNet-layout folder (DIR/val/<wnid>/*.JPEG)")
    if a.out:
        ensure_writable_file(a.out)
    r = evaluate_imagenet(a.model, a.weights, a.data, a.batch_size, 2 if a.workers is None else a.workers,
                          a.preprocess, a.limit)
    if a.out:
        atomic_write_text(a.out, json.dumps(r, indent=2))
    limited = " taken round-robin over the classes by --limit" if a.limit else ""
    print(f"{r['model']} on {r['data']} ({r['n']} images{limited}, {r['classes']} classes in {r['class_order']} order): top-1 {r['top1']:.2f}%, top-5 "
          f"{r['top5']:.2f}%; {r['img_per_s']:.1f} img/s end to end, {r['model_img_per_s']:.1f} img/s in the model; "
          f"preprocessing: {r['preprocess']}" + (f"; written to {a.out}" if a.out else ""))
    if not a.weights:
        print("note: no --weights: the model has random weights", file=sys.stderr)


def add_predict_parser(sub):
    p = sub.add_parser("predict", help="top-5 classes for images",
                       description="Print the top-k classes with names for each image, preprocessed as in training.")
    p.add_argument("--checkpoint", "-c", required=True, help=".pt checkpoint, .onnx file or .sqz container")
    p.add_argument("images", nargs="+")
    p.add_argument("--topk", type=positive_int, default=5)
    _add_model_file_flags(p)
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(a):
    from .evaluate import predict

    results, bad = predict(a.checkpoint, a.images, a.topk, a.verify)
    for path, preds in results:
        print(path)
        for name, p in preds:
            print(f"  {p * 100:6.2f}%  {name}")
    if bad:
        rest = "; the others were predicted above" if results else ""
        raise SqueezeNetError(f"{len(bad)} of {len(a.images)} image(s) could not be read ({bad[0]}"
                              f"{'; ...' if len(bad) > 1 else ''}){rest}")


# ------------------------------------------------------------------ deploy

def add_export_parser(sub):
    from .deploy.onnx_tools import DEFAULT_OPSET

    p = sub.add_parser("export", help="export to ONNX",
                       description="Export a model or checkpoint to ONNX with its data spec and an integrity "
                                   "digest, check it with onnx.checker and compare ONNX Runtime with eager PyTorch.")
    p.add_argument("model", nargs="?", help=MODEL_REF)
    p.add_argument("--checkpoint", "-c", help="the same as the positional model (kept for scripts)")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--opset", type=opset, help=f"ONNX opset (default: {DEFAULT_OPSET}; a low-bit .sqz takes the "
                                               "opset its integer types need)")
    p.add_argument("--dynamic-batch", action="store_true")
    p.add_argument("--fp16", action="store_true", help="also convert weights to fp16")
    p.add_argument("--input-size", type=image_size)
    p.add_argument("--tta", choices=TTA_MODES,
                   help=f"build test-time augmentation into the graph, as `eval --tta` measures it: {TTA_HELP}; "
                        "recorded in the file, so predict, eval and serve all run it")
    p.add_argument("--out", help="output .onnx path")
    _add_model_file_flags(p)
    p.set_defaults(func=_cmd_export)


def _cmd_export(a):
    from .deploy.export import export_onnx

    r = export_onnx(model_name=a.model, checkpoint=a.checkpoint, out=a.out, opset=a.opset,
                    dynamic_batch=a.dynamic_batch, fp16=a.fp16, input_size=a.input_size, verify=a.verify,
                    tta=a.tta)
    low = r.get("low_bit")
    parts = [f"{r['size_bytes']:,} bytes"]
    if low:
        parts.append("low-bit weights kept as stored, any batch size")
    if a.tta:
        parts.append(f"{a.tta} TTA built in")
    check = (f"max |ORT - fake-quant PyTorch| = {r['max_abs_diff']:.2e} (mean {r['mean_share']:.1%} of the logits' "
             "spread)" if low else f"max |ORT - eager| = {r['max_abs_diff']:.2e}")
    half = f"; fp16: {r['fp16_path']} max diff {r['fp16_max_abs_diff']:.2e}" if a.fp16 else ""
    print(f"wrote {r['path']} ({', '.join(parts)}); onnx.checker ok; {check}{half}")


def add_quantize_parser(sub):
    p = sub.add_parser("quantize", help="int8/fp16 quantization with accuracy report",
                       description="Quantize a checkpoint: ONNX Runtime int8 static (QDQ, per-channel) calibrated "
                                   "on training images preprocessed as for evaluation, fp16, and PyTorch PT2E int8 "
                                   "where it works. Reports top-1 before/after, file sizes and the layers that "
                                   "lose most.")
    p.add_argument("--checkpoint", "-c", required=True)
    _add_data_flags(p, default=None)
    p.add_argument("--calib-size", type=positive_int, default=512)
    p.add_argument("--out", help="output folder (default: next to the checkpoint)")
    p.add_argument("--backends", type=_str_list, help="int8/fp16 files to write (default ort-int8,ort-fp16,pt2e-int8)")
    p.add_argument("--eval-size", type=positive_int,
                   help="evaluate on N test images only, taken round-robin over the classes")
    p.add_argument("--tta", choices=TTA_MODES,
                   help="build test-time augmentation into the files, as `export --tta` does: the int8/fp16 files "
                        "(calibrated on all views) or, with --weight-bits, the ONNX files (a .sqz holds the model "
                        "alone); every row of the report is then scored with it")
    low = p.add_argument_group("low-bit SqueezeNet files (.sqz + ONNX INT8/INT4/INT2; see docs)")
    low.add_argument("--weight-bits", choices=["8", "4", "2", "mixed"],
                     help="uniform per-channel weights at 8/4/2 bits, or a per-layer mixed allocation")
    low.add_argument("--act-bits", type=int, choices=[8, 4, 32],
                     help="bits of every conv input but the first (32: float activations; default 8)")
    low.add_argument("--qat-epochs", type=float, help="LSQ quantization-aware fine-tune epochs (default 0)")
    low.add_argument("--size-budget", type=float, metavar="KB", help="mixed: the weights' bytes (default 1/12 of fp32)")
    low.add_argument("--max-drop", type=float, metavar="PT",
                     help="mixed: the smallest budget whose post-training drop stays within PT points")
    low.add_argument("--no-distill", dest="distill", action="store_false",
                     help="QAT on the labels (cross-entropy) instead of distilling from the float model")
    low.add_argument("--sparsity", metavar="paper|D",
                     help="prune first: 'paper' (the SqueezeNet paper's per-layer densities) or the share of weights "
                          "kept; the masks hold through QAT and the .sqz stores those layers sparse")
    low.add_argument("--weight-clip", choices=["output", "mse"],
                     help="each channel's weight step: the one that least changes its output on the calibration "
                          "images (output, default) or its weights (mse)")
    low.add_argument("--rounding", choices=["auto", "nearest", "adaround"],
                     help="round each weight to nearest, or learn up/down per weight on the calibration images, "
                          "layer by layer (adaround; minutes on 2 cores); auto (default): adaround for a "
                          "post-training file below 8 bits, nearest with --qat-epochs or 8-bit weights")
    low.add_argument("--adaround-iters", type=positive_int, metavar="N",
                     help="AdaRound's Adam steps per conv (default: the library's, stated in the report)")
    low.add_argument("--lr", type=float, help="QAT learning rate (default 0.005)")
    low.add_argument("--batch-size", type=positive_int, help="QAT batch size (default 128)")
    low.add_argument("--seed", type=non_negative_int,
                     help="seed of the calibration sample, AdaRound's sampled rows and QAT's data order (default 0); "
                          "repeat with another seed to see the run-to-run spread of a low-bit file's top-1")
    _add_model_file_flags(p, map_by_index=True)
    p.set_defaults(func=_cmd_quantize)


def _cmd_quantize(a):
    from .data import DataRef
    from .deploy.quantize import QuantizeSettings, quantize

    if a.weight_bits:
        from .deploy.lowbit import LowBitSettings, quantize_lowbit

        if a.backends:
            raise SqueezeNetError("--backends chooses int8/fp16 files; with --weight-bits the files are a .sqz and "
                                  "its ONNX (drop --backends, or drop --weight-bits for int8/fp16)")
        given = dict(act_bits=None if a.act_bits == 32 else a.act_bits, qat_epochs=a.qat_epochs,
                     size_budget_kb=a.size_budget, max_drop=a.max_drop, calib_size=a.calib_size, lr=a.lr,
                     batch_size=a.batch_size, eval_size=a.eval_size, seed=a.seed, map_by_index=a.map_by_index,
                     distill=a.distill, sparsity=a.sparsity, weight_clip=a.weight_clip, rounding=a.rounding,
                     adaround_iters=a.adaround_iters, tta=a.tta)
        s = LowBitSettings(a.weight_bits, **{k: v for k, v in given.items()  # unset flags: the settings' defaults
                                             if v is not None or (k == "act_bits" and a.act_bits == 32)})
        r = quantize_lowbit(a.checkpoint, a.out, DataRef(a.data, a.data_dir, a.download), s, a.verify)
        print(r["table"])
        p = r["parity"]
        print(f"parity (ONNX Runtime vs fake-quant PyTorch): max |logit diff| {p['max_abs_logit_diff']:.2e} (mean "
              f"{p['mean_abs_logit_diff']:.1e}), "
              f"same top-1 {p['top1_agreement_pct']:.2f}%")
        print(f"files: {r['files']['sqz']}, {r['files']['onnx']}")
        print(f"report: {r['report']}")
        return
    low_bit_only = {"--act-bits": a.act_bits, "--qat-epochs": a.qat_epochs, "--size-budget": a.size_budget,
                    "--max-drop": a.max_drop, "--no-distill": None if a.distill else True, "--sparsity": a.sparsity,
                    "--weight-clip": a.weight_clip, "--rounding": a.rounding, "--adaround-iters": a.adaround_iters,
                    "--lr": a.lr, "--batch-size": a.batch_size, "--seed": a.seed}
    given = [f for f, v in low_bit_only.items() if v is not None]
    if given:
        raise SqueezeNetError(f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for low-bit files: add "
                              "--weight-bits")
    s = QuantizeSettings(a.calib_size, eval_size=a.eval_size, map_by_index=a.map_by_index, tta=a.tta)
    if a.backends:
        s.backends = tuple(a.backends)
    r = quantize(a.checkpoint, a.out, DataRef(a.data, a.data_dir, a.download), s, a.verify)
    print(r["table"])
    print(f"report: {r['report']}")


def add_bench_parser(sub):
    p = sub.add_parser("bench", help="latency/throughput across backends",
                       description="Benchmark backends (eager, channels_last, compile, ort, ort-tuned, ort-int8, "
                                   "ort-fp16) per batch size: median/p90 latency, throughput, GFLOP/s, fraction of a "
                                   "same-run fp32 GEMM peak, and speed-up over eager fp32 (over ONNX Runtime's "
                                   "defaults for an .onnx file, which runs as it is). Writes CSV and PNG.")
    p.add_argument("model", nargs="?", help=MODEL_REF)
    p.add_argument("--checkpoint", "-c", help="the same as the positional model (kept for scripts)")
    p.add_argument("--backends", type=_str_list,
                   help="comma-separated (default: eager,channels_last,ort,ort-int8; for an .onnx file "
                        "ort,ort-tuned,ort-int8, without ort-int8 when it is already quantized)")
    p.add_argument("--batch-sizes", type=_int_list, default=[1, 8, 32])
    p.add_argument("--input-size", type=image_size)
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--repeats", type=positive_int, default=30)
    p.add_argument("--warmup", type=non_negative_int, default=5)
    p.add_argument("--out", default="runs/bench")
    _add_model_file_flags(p)
    p.set_defaults(func=_cmd_bench)


def _cmd_bench(a):
    from .deploy.bench import BenchSettings, bench

    r = bench(model_name=a.model, checkpoint=a.checkpoint, out=a.out, input_size=a.input_size, verify=a.verify,
              settings=BenchSettings(tuple(a.backends) if a.backends else None, tuple(a.batch_sizes), a.threads,
                                     a.repeats, a.warmup))
    print(r["table"])
    print(f"csv: {r['csv']}\nplot: {r['png']}")


# ------------------------------------------------------------------ compress / compare / sweep

def add_compress_parser(sub):
    p = sub.add_parser("compress", help="Deep Compression: prune, share weights, Huffman-code",
                       description="Prune (paper per-layer density or a global density), k-means weight sharing, "
                                   "optional fine-tuning, then relative-index + Huffman encoding into a .sqz "
                                   "container, with a per-layer report.")
    p.add_argument("--model", help=MODEL_REF + " (a name starts from initialised weights or --weights)")
    p.add_argument("--checkpoint", "-c", help="the same as --model (kept for scripts)")
    p.add_argument("--weights", help="ImageNet weights for a model name: torchvision's SqueezeNet file or the model's "
                                     "own state dict (a file or URL)")
    p.add_argument("--sparsity", default="paper", help="'paper' (Table 1 per-layer density) or a density in (0, 1]")
    p.add_argument("--bits", type=int, default=6)
    p.add_argument("--finetune-epochs", type=non_negative_float, default=0.0)
    p.add_argument("--distill", action="store_true",
                   help="fine-tune on the uncompressed model's outputs (KL) instead of the labels, as the paper does")
    _add_data_flags(p, default=None)
    p.add_argument("--out", help="output .sqz file")
    p.add_argument("--lr", type=positive_float, help="fine-tune learning rate (default 0.01)")
    p.add_argument("--batch-size", type=positive_int, help="fine-tune batch size (default 256)")
    _add_model_file_flags(p, map_by_index=True)
    p.set_defaults(func=_cmd_compress)


def _cmd_compress(a):
    from .compression.pipeline import compress

    from .compression.pipeline import CompressSettings
    from .data import DataRef

    tune = {k: v for k, v in (("lr", a.lr), ("batch_size", a.batch_size)) if v is not None}
    if tune and not a.finetune_epochs:
        raise SqueezeNetError(f"{' and '.join('--' + k.replace('_', '-') for k in tune)} set the fine-tune; add "
                              "--finetune-epochs")
    r = compress(model_name=a.model, checkpoint=a.checkpoint, weights=a.weights, out=a.out, verify=a.verify,
                 data=DataRef(a.data, a.data_dir, a.download),
                 settings=CompressSettings(a.sparsity, a.bits, a.finetune_epochs, map_by_index=a.map_by_index,
                                           distill=a.distill, **tune))
    print(r["table"])
    alexnet = f", {r['ratio_alexnet']:.0f}x smaller than AlexNet's 240 MB" if r["ratio_alexnet"] else ""
    print(f"wrote {r['path']} ({r['file_bytes']:,} bytes, {r['ratio_fp32']:.1f}x smaller than fp32{alexnet}); "
          f"report: {r['report']}")


def add_compare_parser(sub):
    p = sub.add_parser("compare", help="peers on this machine: params, MACs, latency",
                       description="Measure our SqueezeNets and the efficient-CNN peers on this machine.")
    p.add_argument("--models", type=_str_list,
                   help="comma-separated: names (ours, tv:NAME, timm:NAME), .pt/.sqz files or run folders "
                        "(default: SqueezeNet and the peers)")
    p.add_argument("--input-size", type=image_size, default=224, help="every model is measured at this size")
    p.add_argument("--backends", type=_str_list, default=["eager", "ort"])
    p.add_argument("--repeats", type=positive_int, default=20)
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--threads", type=positive_int)
    p.add_argument("--data", help="an ImageNet-layout folder: adds a measured top-1 for models given --weights")
    p.add_argument("--weights", type=_str_list, default=[],
                   help="NAME=FILE|URL pairs (comma-separated), e.g. squeezenet1_1=squeezenet1_1-b8a52dc0.pth")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(a):
    from .compare import compare

    weights = {}
    for pair in a.weights:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise SqueezeNetError(f"--weights takes NAME=FILE pairs, got '{pair}'")
        weights[name] = path
    if weights and not a.data:
        raise SqueezeNetError("--weights needs --data DIR (an ImageNet-layout folder) to measure top-1")
    r = compare(models=a.models, input_size=a.input_size, backends=a.backends, repeats=a.repeats, out=a.out,
                threads=a.threads, data=a.data, weights=weights)
    print(r["table"])
    for note in r["notes"]:
        print(f"note: {note}")
    print(f"report: {r['report']}")


def add_sweep_parser(sub):
    from .settings import add_arguments
    from .sweep.config import SweepSettings

    p = sub.add_parser("sweep", help="design-space sweep over SR / pct3x3 (paper Fig. 3) or a search, locally or on Ray",
                       description="Tabulate and plot size and MACs over SR and pct3x3; with --train-epochs, "
                                   "train every point on real data. --search random|tpe searches base_e, incr_e, "
                                   "pct3x3, freq and SR instead; --engine ray runs the points as Ray Tune trials. "
                                   "Interrupted sweeps resume; a failing point is recorded and the sweep goes on.")
    p.add_argument("--sr", type=_float_list, default=None,
                   help="squeeze ratios (default 0.125,0.25,0.5,0.75,1.0; 'none' to skip the SR axis)")
    p.add_argument("--pct3x3", type=_float_list, default=None,
                   help="3x3 fractions at SR 0.5 (default 0.01,...,0.99; 'none' to skip)")
    _add_data_flags(p)
    add_arguments(p, SweepSettings)
    p.set_defaults(func=_cmd_sweep)


def _cmd_sweep(a):
    from .data import DataRef
    from .errors import Incomplete
    from .sweep.config import SweepSettings
    from .sweep.driver import sweep

    settings = SweepSettings(**{k: getattr(a, k) for k in SweepSettings.__dataclass_fields__})
    r = sweep(sr=a.sr, pct3x3=a.pct3x3, data=DataRef(a.data, a.data_dir, a.download), settings=settings)
    print(r["table"])
    if r["best"]:
        print(f"best: {r['best']['model']} {r['best']['top1']:.2f}% top-1, {r['best']['params']:,} parameters")
    print(f"report: {r['report']}")
    if r["failed"]:
        raise Incomplete(f"{r['failed']} point(s) failed (see {r['report']}); run the same command again to retry "
                         "them")


def add_serve_parser(sub):
    from .serve.config import ServeConfig

    p = sub.add_parser("serve", help="HTTP inference service (Open Inference Protocol v2, /v1/predict, /metrics)",
                       description="Serve a model file (.onnx and SqueezeNet .sqz without PyTorch; .pt and other "
                                   ".sqz are exported to ONNX at start) over HTTP: the Open Inference Protocol v2 "
                                   "(KServe/Triton; tritonclient works unchanged), POST /v1/predict for images, GET "
                                   "/metrics for Prometheus, /docs for OpenAPI and / for a page. Requests are "
                                   "micro-batched; past --max-queue waiting images the answer is 503 with "
                                   "Retry-After. SIGTERM drains in-flight requests and exits 0.")
    ServeConfig.add_arguments(p)
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(a):
    import dataclasses

    from .serve import ServeConfig, serve

    values = {f.name: getattr(a, f.name) for f in dataclasses.fields(ServeConfig)}
    serve(ServeConfig(**{**values, "cors_origins": tuple(values["cors_origins"])}).validate())


PARSERS = (add_list_parser, add_explain_parser, add_summary_parser, add_train_parser, add_eval_parser,
           add_predict_parser, add_export_parser, add_quantize_parser, add_bench_parser, add_compress_parser,
           add_compare_parser, add_sweep_parser, add_serve_parser)


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="squeezenet", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
                       description="SqueezeNet models, profiler, training, compression, deployment and comparison.")
    ap.add_argument("--version", action="version", version=f"squeezenet {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for add in PARSERS:
        add(sub)
    return ap


def _is_out_of_memory(e: BaseException) -> bool:
    text = str(e).lower()
    return "out of memory" in text or "not enough memory" in text or "failed to allocate" in text or \
        "defaultcpuallocator" in text


def main(argv=None) -> int:
    from .log import to_stderr

    to_stderr()  # the library logs its notes, warnings and progress lines; the command shows them
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    try:
        args.func(args)
    except SqueezeNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except MemoryError:
        print("error: out of memory; use a smaller model, batch or input size", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if e.name not in ("torch", "torchvision", "matplotlib", "psutil", "tqdm"):
            raise
        print(f"error: `squeezenet {args.command}` needs {e.name}, which is not installed; install the training "
              "side with `pip install 'squeezenet-toolkit[train]'` (serving .onnx/.sqz, and predict/eval of .onnx, "
              "need only the [serve] extra)", file=sys.stderr)
        return 2
    except RuntimeError as e:  # PyTorch's allocator reports running out of memory as a RuntimeError
        if not _is_out_of_memory(e):
            raise
        print(f"error: out of memory ({str(e).splitlines()[0][:120]}); use a smaller model, batch or input size",
              file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno is None or e.errno == errno.EIO:
            raise
        from .files import disk_error

        print(f"error: {disk_error(e, e.filename or '?')}", file=sys.stderr)
        return 2
    return 0
