"""The `squeezenet` command. Each subcommand parses its flags and calls one library
function that is also usable from Python; errors are one line, never a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import SqueezeNetError

EPILOG = """examples:
  squeezenet list
  squeezenet summary squeezenet1_0 --input-size 227
  squeezenet train                                  # default model on Fashion-MNIST
  squeezenet eval --checkpoint runs/demo/best.pt
  squeezenet export --checkpoint runs/demo/best.pt --format onnx
  squeezenet bench squeezenet1_1 --backends eager,ort,ort-int8
  squeezenet compress --model squeezenet1_0 --sparsity paper --bits 6
  squeezenet compare
Run `squeezenet COMMAND --help` for the flags of each command."""


def _load_config_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise SqueezeNetError(f"config file not found: '{path}'")
    try:
        if p.suffix == ".json":
            return json.loads(p.read_text())
        import tomllib

        return tomllib.loads(p.read_text())
    except Exception as e:
        raise SqueezeNetError(f"cannot parse config file '{path}': {e}") from e


def _int_list(s: str) -> list[int]:
    try:
        return [int(v) for v in s.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{s}'") from None


def _float_list(s: str) -> list[float]:
    if s.strip().lower() == "none":
        return []
    try:
        return [float(v) for v in s.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers or 'none', got '{s}'") from None


def _str_list(s: str) -> list[str]:
    return [v.strip() for v in s.split(",") if v.strip()]


def _add_data_flags(p, default="fashion-mnist"):
    p.add_argument("--data", default=default,
                   help="fashion-mnist, cifar10, cifar100, or an ImageFolder path (train/<class>/*.jpg, "
                        "val/<class>/*.jpg) (default: %(default)s)")
    p.add_argument("--data-dir", help="where named datasets live (Fashion-MNIST IDX files, CIFAR batches)")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="never try torchvision's downloader")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="squeezenet", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="SqueezeNet models, profiler, training, compression, deployment and comparison.")
    ap.add_argument("--version", action="version", version=f"squeezenet {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="list model names", description="List registered model names, with what each is.")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. '*bypass*'")

    p = sub.add_parser("explain", help="explain what a model name means",
                       description="Parse a model name into family, version, macro-architecture, design-space "
                                   "setting, width, stem and resolution.")
    p.add_argument("name")

    p = sub.add_parser("summary", help="per-layer params, MACs and output shapes",
                       description="Per-layer output shape, parameters and MACs (multiply-accumulates of conv/"
                                   "linear) with totals and fp32/fp16/int8 sizes. Works for our models and "
                                   "torchvision/timm names (tv:NAME, timm:NAME).")
    p.add_argument("model")
    p.add_argument("--input-size", type=int, help="square input size in px (default: the model's native size)")
    p.add_argument("--in-chans", type=int, help="input channels (default 3)")
    p.add_argument("--num-classes", type=int, help="classes (default 1000)")
    p.add_argument("--format", choices=["table", "markdown", "csv", "json"], default="table")

    p = sub.add_parser("train", help="train and evaluate a model",
                       description="Train a model (default: the demo SqueezeNet on Fashion-MNIST). Writes "
                                   "config.json, last.pt/best.pt, metrics.csv/jsonl, curves.png, confusion.png "
                                   "and report.md into --out. Under torchrun it runs DistributedDataParallel; "
                                   "--batch-size is then the global batch.")
    p.add_argument("model", nargs="?", help="model name (default: the demo recipe, configs/demo.toml)")
    _add_data_flags(p)
    p.add_argument("--config", help="TOML or JSON file with any of these options (flags win)")
    p.add_argument("--out", help="run folder (default runs/train)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", "-b", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's)")
    p.add_argument("--recipe", choices=["fast", "paper"], help="fast (default) or the authors' Caffe solver")
    p.add_argument("--schedule", choices=["cosine", "poly", "constant"])
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", "--wd", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--dropout", type=float, help="dropout before conv10 (default 0.5)")
    p.add_argument("--random-erasing", type=float, help="random-erasing probability per image (default 0)")
    p.add_argument("--ema", type=float, help="keep an EMA of the weights with this decay (e.g. 0.998) and "
                                             "evaluate/save it")
    p.add_argument("--no-head-relu", dest="head_relu", action="store_const", const=False,
                   help="drop the paper's ReLU after conv10 (avoids dead classes at high lr; see docs)")
    p.add_argument("--input-size", type=int, help="resize images to this size")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--no-channels-last", dest="channels_last", action="store_const", const=False)
    p.add_argument("--workers", "-j", type=int, help="DataLoader workers for large-image data")
    p.add_argument("--weights", help="start from torchvision ImageNet weights (file or URL); conv10 is reset")
    p.add_argument("--resume", action="store_true", default=None, help="continue the run in --out from last.pt")
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (smoke tests)")
    p.add_argument("--train-subset", type=int, help="use only the first N training images")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--no-progress", dest="progress", action="store_const", const=False)

    p = sub.add_parser("eval", help="evaluate a checkpoint: top-1/top-5",
                       description="Evaluate a checkpoint on a dataset's test split; prints top-1/top-5 and "
                                   "writes a JSON next to the checkpoint (or --out).")
    p.add_argument("--checkpoint", "-c", required=True)
    _add_data_flags(p, default=None)
    p.add_argument("--out", help="JSON file to write (default: <checkpoint>.eval.json)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--tta", choices=["flip"], help="test-time augmentation: average each image's logits with its "
                                                   "horizontal mirror's (reported separately from plain accuracy)")

    p = sub.add_parser("predict", help="top-5 classes for images",
                       description="Print the top-5 classes with names for each image.")
    p.add_argument("--checkpoint", "-c", required=True, help=".pt checkpoint, .onnx file or .sqz container")
    p.add_argument("images", nargs="+")
    p.add_argument("--topk", type=int, default=5)

    p = sub.add_parser("export", help="export to ONNX",
                       description="Export a model or checkpoint to ONNX, check it with onnx.checker and compare "
                                   "ONNX Runtime with eager PyTorch.")
    p.add_argument("model", nargs="?")
    p.add_argument("--checkpoint", "-c")
    p.add_argument("--format", choices=["onnx"], default="onnx")
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--dynamic-batch", action="store_true")
    p.add_argument("--fp16", action="store_true", help="also convert weights to fp16")
    p.add_argument("--input-size", type=int)
    p.add_argument("--out", help="output .onnx path")

    p = sub.add_parser("quantize", help="int8/fp16 quantization with accuracy report",
                       description="Quantize a checkpoint: ONNX Runtime int8 static (QDQ, per-channel) calibrated "
                                   "on training images, fp16, and PyTorch PT2E int8 where it works. Reports "
                                   "top-1 before/after, file sizes and the layers that lose most.")
    p.add_argument("--checkpoint", "-c", required=True)
    _add_data_flags(p, default=None)
    p.add_argument("--calib-size", type=int, default=512)
    p.add_argument("--out", help="output folder (default: next to the checkpoint)")
    p.add_argument("--backends", type=_str_list, default=["ort-int8", "ort-fp16", "pt2e-int8"])
    p.add_argument("--eval-size", type=int, help="evaluate on the first N test images only")

    p = sub.add_parser("bench", help="latency/throughput across backends",
                       description="Benchmark backends (eager, channels_last, compile, ort, ort-int8, ort-fp16) "
                                   "per batch size: median/p90 latency, throughput, GFLOP/s, fraction of a "
                                   "same-run fp32 GEMM peak, and speed-up over eager fp32. Writes CSV and PNG.")
    p.add_argument("model", nargs="?")
    p.add_argument("--checkpoint", "-c")
    p.add_argument("--backends", type=_str_list, default=["eager", "channels_last", "ort", "ort-int8"])
    p.add_argument("--batch-sizes", type=_int_list, default=[1, 8, 32])
    p.add_argument("--input-size", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", default="runs/bench")

    p = sub.add_parser("compress", help="Deep Compression: prune, share weights, Huffman-code",
                       description="Prune (paper per-layer density or a global density), k-means weight sharing, "
                                   "optional fine-tuning, then relative-index + Huffman encoding into a .sqz "
                                   "container, with a per-layer report.")
    p.add_argument("--model", help="model name (initialised weights) or use --checkpoint")
    p.add_argument("--checkpoint", "-c")
    p.add_argument("--weights", help="torchvision ImageNet checkpoint file for --model")
    p.add_argument("--sparsity", default="paper", help="'paper' (Table 1 per-layer density) or a density in (0, 1]")
    p.add_argument("--bits", type=int, default=6)
    p.add_argument("--finetune-epochs", type=float, default=0.0)
    _add_data_flags(p, default=None)
    p.add_argument("--out", help="output .sqz file")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=256)

    p = sub.add_parser("compare", help="peers on this machine: params, MACs, latency",
                       description="Measure our SqueezeNets and the efficient-CNN peers on this machine.")
    p.add_argument("--models", type=_str_list)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--backends", type=_str_list, default=["eager", "ort"])
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--out", default="runs/compare")
    p.add_argument("--threads", type=int)

    p = sub.add_parser("sweep", help="design-space sweep over SR / pct3x3 (paper Fig. 3)",
                       description="Tabulate and plot size and MACs over SR and pct3x3; with --train-epochs, "
                                   "train every point on real data. Interrupted sweeps resume.")
    p.add_argument("--base", default="squeezenet1_0")
    p.add_argument("--sr", type=_float_list, default=None,
                   help="squeeze ratios (default 0.125,0.25,0.5,0.75,1.0; 'none' to skip the SR axis)")
    p.add_argument("--pct3x3", type=_float_list, default=None,
                   help="3x3 fractions at SR 0.5 (default 0.01,...,0.99; 'none' to skip)")
    p.add_argument("--train-epochs", type=int, default=0)
    _add_data_flags(p)
    p.add_argument("--train-model-options", default="small,bn", help="modifiers for trained points (default small,bn)")
    p.add_argument("--out", default="runs/sweep")
    p.add_argument("--batch-size", type=int, default=256)
    return ap


def _cmd_list(a):
    from .registry import explain_name, list_models

    names = list_models(a.pattern)
    if not names:
        raise SqueezeNetError(f"no model matches '{a.pattern}'")
    w = max(map(len, names))
    for n in names:
        print(f"{n.ljust(w)}  {explain_name(n)['summary']}")
    print("\nmodifiers: _sr<x> _pct<x> _w<x> _bn _small _<resolution>, e.g. squeezenet1_1_w0.5_160 "
          "(see `squeezenet explain NAME`)")


def _cmd_explain(a):
    from .registry import explain_name

    info = explain_name(a.name)
    for k, v in info.items():
        print(f"{k:>14}: {v}")


def _cmd_summary(a):
    from .profiler import profile
    from .zoo import build_any

    model, native = build_any(a.model, num_classes=a.num_classes, in_chans=a.in_chans)
    chans = a.in_chans or native[0]
    size = a.input_size or native[1]
    print(profile(model, (chans, size, size), a.model).format(a.format))


def _cmd_train(a):
    from .train import TrainConfig, train

    cfg = {}
    if a.config:
        cfg.update(_load_config_file(a.config))
    for k, v in vars(a).items():
        if k in ("command", "config") or v is None:
            continue
        if k == "head_relu":
            cfg.setdefault("model_options", {})["head_relu"] = v
            continue
        if k == "download" and v is True:
            continue
        cfg[k] = v
    cfg.setdefault("out", "runs/train")
    if "model" not in cfg:  # no model named: the demo recipe
        from .train import DEMO_DEFAULTS

        cfg = {**DEMO_DEFAULTS, **cfg, "model_options": {**DEMO_DEFAULTS["model_options"], **cfg.get("model_options", {})}}
    res = train(TrainConfig.from_dict(cfg))
    if res:
        print(f"best test top-1 {res['best_top1']:.2f}%, training time {res['train_time_s']:.0f} s, "
              f"peak RSS {res['peak_rss_mib']:.0f} MiB; report: {Path(res['out']) / 'report.md'}")


def _cmd_eval(a):
    from .evaluate import evaluate_checkpoint

    r = evaluate_checkpoint(a.checkpoint, a.data, a.data_dir, a.download, a.batch_size, a.out, a.tta)
    tta = f", {a.tta} TTA" if a.tta else ""
    print(f"{r['model']} on {r['data']} ({r['n']} images{tta}): top-1 {r['top1']:.2f}%, top-5 {r['top5']:.2f}%, "
          f"loss {r['loss']:.4f}; written to {r['json']}")


def _cmd_predict(a):
    from .evaluate import predict

    for path, preds in predict(a.checkpoint, a.images, a.topk):
        print(path)
        for name, p in preds:
            print(f"  {p * 100:6.2f}%  {name}")


def _cmd_export(a):
    from .deploy.export import export_onnx

    r = export_onnx(model_name=a.model, checkpoint=a.checkpoint, out=a.out, opset=a.opset,
                    dynamic_batch=a.dynamic_batch, fp16=a.fp16, input_size=a.input_size)
    print(f"wrote {r['path']} ({r['size_bytes']:,} bytes); onnx.checker ok; max |ORT - eager| = "
          f"{r['max_abs_diff']:.2e}" + (f"; fp16: {r['fp16_path']} max diff {r['fp16_max_abs_diff']:.2e}"
                                         if a.fp16 else ""))


def _cmd_quantize(a):
    from .deploy.quantize import quantize

    r = quantize(a.checkpoint, a.data, a.data_dir, a.download, a.calib_size, a.out, a.backends, a.eval_size)
    print(r["table"])
    print(f"report: {r['report']}")


def _cmd_bench(a):
    from .deploy.bench import bench

    r = bench(model_name=a.model, checkpoint=a.checkpoint, backends=a.backends, batch_sizes=a.batch_sizes,
              input_size=a.input_size, threads=a.threads, repeats=a.repeats, warmup=a.warmup, out=a.out)
    print(r["table"])
    print(f"csv: {r['csv']}\nplot: {r['png']}")


def _cmd_compress(a):
    from .compression.pipeline import compress

    r = compress(model_name=a.model, checkpoint=a.checkpoint, weights=a.weights, sparsity=a.sparsity, bits=a.bits,
                 finetune_epochs=a.finetune_epochs, data=a.data, data_dir=a.data_dir, download=a.download,
                 out=a.out, lr=a.lr, batch_size=a.batch_size)
    print(r["table"])
    print(f"wrote {r['path']} ({r['file_bytes']:,} bytes, {r['ratio_fp32']:.1f}x smaller than fp32, "
          f"{r['ratio_alexnet']:.0f}x smaller than AlexNet's 240 MB); report: {r['report']}")


def _cmd_compare(a):
    from .compare import compare

    r = compare(models=a.models, input_size=a.input_size, backends=a.backends, repeats=a.repeats, out=a.out,
                threads=a.threads)
    print(r["table"])
    for note in r["notes"]:
        print(f"note: {note}")
    print(f"report: {r['report']}")


def _cmd_sweep(a):
    from .sweep import sweep

    r = sweep(base=a.base, sr=a.sr, pct3x3=a.pct3x3, train_epochs=a.train_epochs, data=a.data,
              data_dir=a.data_dir, download=a.download, out=a.out, batch_size=a.batch_size,
              train_model_options=a.train_model_options)
    print(r["table"])
    print(f"report: {r['report']}")


COMMANDS = {"list": _cmd_list, "explain": _cmd_explain, "summary": _cmd_summary, "train": _cmd_train,
            "eval": _cmd_eval, "predict": _cmd_predict, "export": _cmd_export, "quantize": _cmd_quantize,
            "bench": _cmd_bench, "compress": _cmd_compress, "compare": _cmd_compare, "sweep": _cmd_sweep}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    try:
        COMMANDS[args.command](args)
    except SqueezeNetError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0
