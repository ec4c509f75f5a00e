"""Size against accuracy for one trained model, from fp32 down to 2 bits: one table, one
Pareto plot, every file's bytes on disk, accuracy and batch-1 latency measured in this run.

    python benchmarks/precision_ladder.py --run runs/demo --qat-epochs 1 --out runs/ladder_fmnist
    python benchmarks/precision_ladder.py --run runs/cifar --data DIR --out runs/ladder_cifar
    python benchmarks/precision_ladder.py --bytes-only squeezenet1_1 --out runs/ladder_sq11

Rows: fp32 and fp16 ONNX, int8 (ONNX Runtime QDQ, `squeezenet quantize`), W8A8 / W4A8 /
W4A4 / W2A8 / mixed 2-4-8 at 1/12 of the fp32 weight bytes (`quantize --weight-bits`,
each after --qat-epochs of LSQ), pruning at the paper's densities + uniform int4 (`quantize
--sparsity paper`, float activations, its sparse .sqz), Deep Compression 6-bit and pruning +
4-bit k-means weights (`squeezenet compress`, paper densities, --finetune-epochs). Latency: the median of
batch-1 calls of each file's ONNX graph in ONNX Runtime (2 threads), in one run, against
the fp32 file. ``--bytes-only NAME``: a registered ImageNet-shaped model with its random
initialisation; only the file sizes mean anything there.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from squeezenet.deploy.bench import cpu_line as cpu  # noqa: E402

from squeezenet.data import DataRef  # noqa: E402
from squeezenet.errors import SqueezeNetError  # noqa: E402
from squeezenet.files import atomic_write_text  # noqa: E402
from squeezenet.render import markdown_table, pyplot, save_figure  # noqa: E402

# (label, weight bits, activation bits, fine-tuned?, pruning): 8-bit is post-training only (lossless without
# QAT); the pruned row keeps float activations, as Deep Compression's rows do, so the two compare weights alone
LOWBIT = [("W8A8", "8", 8, False, None), ("W4A8", "4", 8, True, None), ("W4A4", "4", 4, True, None),
          ("W2A8", "2", 8, True, None), ("mixed 2/4/8 (1/12)", "mixed", 8, True, None),
          ("pruning (paper densities) + int4 (uniform, float activations)", "4", None, True, "paper")]


def latency_ms(path, shape, threads=2, repeats=200) -> float:
    from squeezenet.deploy.bench import time_calls
    from squeezenet.formats.onnx import open_session

    sess = open_session(path, threads=threads)
    x = np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    name = sess.get_inputs()[0].name
    return float(np.median(time_calls(lambda: sess.run(None, {name: x}), 10, repeats, 1.0)) * 1000)


def ladder(a) -> list[dict]:
    from squeezenet.deploy.lowbit import LowBitSettings, quantize_lowbit
    from squeezenet.deploy.quantize import quantize
    from squeezenet.compression.pipeline import compress
    from squeezenet.deploy.sqz_onnx import sqz_to_onnx

    out = Path(a.out)
    data = DataRef(a.data, a.data_dir, False)
    rows = []
    q = quantize(a.run, str(out / "int8"), data, backends=("ort-int8", "ort-fp16"), calib_size=512,
                 eval_size=a.eval_size)
    for r in q["rows"]:
        if r["backend"].startswith("ort"):
            rows.append({"row": {"ort-fp32": "fp32", "ort-int8": "int8 (ORT QDQ)", "ort-fp16": "fp16"}[r["backend"]],
                         "file": r["file"], "bytes": r["size_bytes"], "top1": r["top1"]})
    for label, wb, ab, tuned, sparsity in LOWBIT:
        epochs = a.qat_epochs if tuned else 0.0
        s = LowBitSettings(wb, ab, epochs, eval_size=a.eval_size, sparsity=sparsity)
        try:
            r = quantize_lowbit(a.run, str(out / "lowbit"), data, s)
        except SqueezeNetError as e:  # e.g. a budget too small for this model: say so, go on
            print(f"{label}: {e}")
            continue
        onnx_row = next(x for x in r["rows"] if x["what"].startswith("low-bit ONNX"))
        sqz_bytes = Path(r["files"]["sqz"]).stat().st_size
        rows.append({"row": label + (f", QAT {epochs:g} ep" if epochs else ", PTQ"),
                     "file": r["files"]["onnx"], "bytes": sqz_bytes if sparsity else onnx_row["bytes"],
                     "top1": onnx_row["top1"], "sqz_bytes": sqz_bytes,
                     **({"note": "bytes of the sparse .sqz; its ONNX is dense INT4"} if sparsity else {})})
    if a.dc_from:  # Deep Compression rows of an earlier ladder of the same checkpoint (their files are re-timed)
        rows += [r for r in json.loads(Path(a.dc_from).read_text()) if "k-means" in r["row"]]
        return rows
    for label, bits in (("Deep Compression 6-bit (pruned + k-means)", 6), ("pruning + 4-bit weights (k-means)", 4)):
        c = compress(checkpoint=a.run, out=str(out / f"dc{bits}.sqz"), data=data, bits=bits,
                     finetune_epochs=a.dc_epochs)
        acc = list(c["accuracy"].values())[-1]
        onnx_path = sqz_to_onnx(c["path"], out / f"dc{bits}.onnx")
        rows.append({"row": label + (f", {a.dc_epochs:g} ep fine-tune" if a.dc_epochs else ""), "file": onnx_path,
                     "bytes": c["file_bytes"], "top1": acc, "note": "bytes of the .sqz; its ONNX is fp32"})
    return rows


def bytes_only(a) -> list[dict]:
    """File sizes of a registered model (random weights), each format written for real."""
    import torch

    from squeezenet import create_model
    from squeezenet.compression import lowbit as lb
    from squeezenet.deploy.lowbit import LowBitSettings, write_files
    from squeezenet.formats.open import OpenedModel

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = create_model(a.bytes_only).eval()
    mf = OpenedModel(ref=a.bytes_only, kind="name", name=a.bytes_only, spec=None, in_chans=3, input_size=224,
                     model=model)
    plain = lb.fold_batchnorm(model, a.bytes_only)
    calib = [torch.rand(8, 3, 224, 224)]
    rows = []
    for label, wb, ab, _, sparsity in LOWBIT:
        if wb == "mixed":
            sizes = lb.layer_sizes(plain)
            first, last = lb.edge_layers(plain)
            sens = {n: {2: 1.0, 4: 0.1, 8: 0.0} for n in sizes}  # no data: equal sensitivity, budget-bound
            try:
                bits = lb.allocate_bits(sizes, sens, sum(4 * p for p, _ in sizes.values()) // 12,
                                        {first: 8, last: 8})
            except SqueezeNetError as e:  # conv10 at 8 bits alone can exceed 1/12: say so
                print(f"{label}: {e}")
                continue
        else:
            bits = lb.uniform_bits(plain, int(wb))
        masks = lb.pruning_masks(plain, sparsity) if sparsity else {}
        qm = lb.quantize_model(plain, bits, ab, masks)
        lb.calibrate_activations(qm, calib)
        s = LowBitSettings(wb, ab, sparsity=sparsity, rounding="nearest").resolved()  # no data: nearest, as done here
        tag = s.tag()
        write_files(qm, plain, mf, bits, s, out / f"{tag}.sqz", out / f"{tag}.onnx", out / "fp32.sqz",
                     out / "fp32.onnx")
        rows.append({"row": label, "file": str(out / f"{tag}.onnx"), "bytes": (out / f"{tag}.onnx").stat().st_size,
                     "sqz_bytes": (out / f"{tag}.sqz").stat().st_size, "top1": None})
    rows.insert(0, {"row": "fp32", "file": str(out / "fp32.onnx"), "bytes": (out / "fp32.onnx").stat().st_size,
                    "top1": None})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", help="a run folder or model file (trained)")
    ap.add_argument("--data", help="the data the model was trained on (default: what it recorded)")
    ap.add_argument("--data-dir")
    ap.add_argument("--qat-epochs", type=float, default=1.0)
    ap.add_argument("--dc-epochs", type=float, default=1.0, help="Deep Compression fine-tune epochs")
    ap.add_argument("--eval-size", type=int)
    ap.add_argument("--dc-from", help="take the Deep Compression rows from this earlier ladder.json")
    ap.add_argument("--bytes-only", metavar="NAME")
    ap.add_argument("--out", default="runs/ladder")
    a = ap.parse_args()
    rows = bytes_only(a) if a.bytes_only else ladder(a)
    fp32 = next(r for r in rows if r["row"] == "fp32")
    shape = None
    if not a.bytes_only:
        import onnx

        dims = onnx.load(fp32["file"]).graph.input[0].type.tensor_type.shape.dim
        shape = tuple(d.dim_value for d in dims[1:])
        for r in rows:
            r["latency_ms"] = latency_ms(r["file"], shape)
    for r in rows:
        r["vs_fp32_bytes"] = fp32["bytes"] / r["bytes"]
        if r.get("top1") is not None:
            r["delta_top1"] = r["top1"] - fp32["top1"]
        if r.get("latency_ms"):
            r["speedup"] = fp32["latency_ms"] / r["latency_ms"]
    cols = [("row", "row"), ("bytes on disk", lambda r: f"{r['bytes']:,}"),
            ("fp32 / this", lambda r: f"{r['vs_fp32_bytes']:.1f}x"),
            (".sqz bytes", lambda r: f"{r['sqz_bytes']:,}" if r.get("sqz_bytes") else "-")]
    if not a.bytes_only:
        cols += [("top-1 %", lambda r: f"{r['top1']:.2f}"), ("Δ top-1 (pt)", lambda r: f"{r['delta_top1']:+.2f}"),
                 ("b1 latency ms (ORT)", lambda r: f"{r['latency_ms']:.3f}"),
                 ("speed vs fp32", lambda r: f"{r['speedup']:.2f}x")]
    table = markdown_table(rows, cols)
    what = a.bytes_only or a.run
    text = f"# Precision ladder: {what}\n\n{cpu()}\n\n{table}\n"
    out = Path(a.out)
    atomic_write_text(out / "ladder.md", text)
    atomic_write_text(out / "ladder.json", json.dumps(rows, indent=2, default=str))
    if not a.bytes_only:
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in rows:
            ax.scatter(r["bytes"] / 1024, r["top1"], s=18)
            ax.annotate(r["row"].split(",")[0], (r["bytes"] / 1024, r["top1"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
        pts = sorted(rows, key=lambda r: (r["bytes"], -r["top1"]))
        front, best = [], -1.0
        for r in pts:
            if r["top1"] > best:
                front.append(r)
                best = r["top1"]
        ax.step([r["bytes"] / 1024 for r in front], [r["top1"] for r in front], "k--", where="post", lw=1,
                label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel("file size (KiB, log)")
        ax.set_ylabel("test top-1 (%)")
        ax.set_title(f"{Path(what).name}: size vs accuracy\n{cpu()}", fontsize=7)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        save_figure(fig, out / "ladder.png")
    print(text)


if __name__ == "__main__":
    tempfile.tempdir = None
    main()
