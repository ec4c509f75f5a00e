"""Accuracy vs compressed size over weight bits (4-8) and densities.

Compresses a trained checkpoint at each (density, bits) point without fine-tuning
(prune -> k-means -> encode), evaluates the decoded .sqz model on the test set, and
plots top-1 against file size. Fine-tuned points can be added with --finetuned
REPORT.json (written by `squeezenet compress`). Usage:

    python benchmarks/compression_sweep.py --checkpoint runs/demo/best.pt --out runs/compress_sweep
"""

import argparse
import json
from pathlib import Path

from squeezenet.formats.sqz import load_container
from squeezenet.compression.pipeline import compress
from squeezenet.data import load_data
from squeezenet.metrics import evaluate
from squeezenet.formats.checkpoint import load_checkpoint, model_from_checkpoint
from squeezenet.render import pyplot


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--out", default="runs/compress_sweep")
    ap.add_argument("--bits", default="4,5,6,7,8")
    ap.add_argument("--densities", default="paper,0.5,0.2")
    ap.add_argument("--finetuned", nargs="*", default=[], help="compress report JSONs of fine-tuned runs")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ck = load_checkpoint(a.checkpoint)
    spec = ck["data"]
    splits = load_data(spec["name"], input_size=spec["input_size"])
    splits.spec.mean, splits.spec.std = spec["mean"], spec["std"]
    base = evaluate(model_from_checkpoint(ck), splits.test, splits.spec)["top1"]
    ckpt_bytes = Path(a.checkpoint).stat().st_size
    rows = []
    for d in a.densities.split(","):
        for b in map(int, a.bits.split(",")):
            r = compress(checkpoint=a.checkpoint, sparsity=d, bits=b, out=str(out / f"d{d}_b{b}.sqz"),
                         evaluate_data=False)
            model, _ = load_container(r["path"])
            top1 = evaluate(model, splits.test, splits.spec)["top1"]
            rows.append({"density": d, "bits": b, "file_bytes": r["file_bytes"], "top1": top1, "finetuned": False})
            print(f"density {d:>5} bits {b}: {r['file_bytes']:>8,} bytes  top-1 {top1:.2f}  (fp32 {base:.2f})", flush=True)
    for f in a.finetuned:
        r = json.loads(Path(f).read_text())
        model, _ = load_container(r["path"])
        top1 = evaluate(model, splits.test, splits.spec)["top1"]
        rows.append({"density": r["sparsity"], "bits": r["bits"], "file_bytes": r["file_bytes"], "top1": top1,
                     "finetuned": True})
        print(f"fine-tuned density {r['sparsity']} bits {r['bits']}: {r['file_bytes']:,} bytes  top-1 {top1:.2f}")
    (out / "compression_sweep.json").write_text(json.dumps({"fp32_top1": base, "checkpoint_bytes": ckpt_bytes,
                                                            "rows": rows}, indent=2))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for d in dict.fromkeys(r["density"] for r in rows if not r["finetuned"]):
        pts = [r for r in rows if r["density"] == d and not r["finetuned"]]
        ax.plot([p["file_bytes"] / 1e3 for p in pts], [p["top1"] for p in pts], "o-", label=f"density {d}, no fine-tune")
        for p in pts:
            ax.annotate(f"{p['bits']}b", (p["file_bytes"] / 1e3, p["top1"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ft = [r for r in rows if r["finetuned"]]
    if ft:
        ax.scatter([p["file_bytes"] / 1e3 for p in ft], [p["top1"] for p in ft], marker="*", s=150, c="k",
                   label="fine-tuned", zorder=5)
    ax.axhline(base, color="gray", ls="--", lw=1, label=f"fp32 ({base:.2f}%)")
    ax.set_xlabel("compressed file size (kB, container included)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(f"Deep Compression of {ck['model_name']}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "compression_sweep.png", dpi=110)


if __name__ == "__main__":
    main()
