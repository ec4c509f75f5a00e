"""``squeezenet compare``: SqueezeNet and its peers measured on this machine.

For each model: parameters, MACs (multiply-accumulates of conv/linear at the given
resolution), weight size at fp32 and int8 (params x 4 and x 1 bytes), batch-1 latency
and batch-32 throughput on each backend (eager PyTorch fp32; ONNX Runtime fp32), and
the published ImageNet top-1 with its source. Peers have random weights: latency does
not depend on the values. Optional peers (timm) are skipped with a note when missing.

A model is any reference :func:`squeezenet.formats.open.open_model` takes, so a model the
user trained (a ``.pt`` checkpoint, a ``.sqz`` container or a run folder) is measured beside
the peers, on its own input channels and weights, at ``input_size`` like every other row.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from .errors import SqueezeNetError
from .files import RunLock, atomic_write_text, writable_dir_kept_on_success
from .machine import check_threads, fit_torch_threads
from .progress import progress
from .peers import PEERS, TOP1_PX
from .profiler import convention
from .render import markdown_table, pyplot, save_figure
from .profiler import profile


def _latency(fn, repeats: int, warmup: int = 3) -> float:
    from .deploy.bench import time_calls

    return float(np.median(time_calls(fn, warmup, repeats)))


def compare(models=None, input_size: int = 224, backends=("eager", "ort"), repeats: int = 20,
            out: str = "runs/compare", threads: int | None = None, batch_throughput: int = 32,
            data: str | None = None, weights: dict | None = None) -> dict:
    """Params, MACs, latency and throughput of each model on this machine, beside its
    published top-1; with ``data`` (an ImageNet-layout folder) and ``weights`` (name ->
    file or URL), also the top-1 measured here (see :mod:`squeezenet.imagenet`)."""
    if threads:
        check_threads(threads)
        torch.set_num_threads(threads)
    else:
        fit_torch_threads()  # as ONNX Runtime's sessions: the cores this process may use
    published = {p.name: p for p in PEERS}
    names = models or [p.name for p in PEERS]
    bad = [b for b in backends if b not in ("eager", "ort", "ort-int8", "channels_last")]
    if bad:
        raise SqueezeNetError(f"compare backends are eager, channels_last, ort and ort-int8; got '{bad[0]}'")
    weights = weights or {}
    if weights and not data:
        raise SqueezeNetError("--weights needs --data DIR (an ImageNet-layout folder) to measure top-1")
    unknown = sorted(set(weights) - set(names))
    if unknown:
        raise SqueezeNetError(f"--weights names '{unknown[0]}', which is not among the compared models")
    notes: list[str] = []
    opened = _open_all(names, weights, notes)  # every reference checked before anything is timed
    from .imagenet import prepare_imagenet

    prepared = {ref: prepare_imagenet(ref, w, data) for ref, w in weights.items()}  # and every weights file
    # then the folder: one that cannot be written is refused before anything is timed, and one that another
    # compare is writing (whose timings this one would also disturb) is refused by name
    with writable_dir_kept_on_success(out) as outd, RunLock(outd):
        return _measure(opened, published, backends, repeats, outd, input_size, threads, batch_throughput, data,
                        prepared, notes)


def _measure(opened, published, backends, repeats, outd: Path, input_size, threads, batch_throughput, data,
             prepared: dict, notes) -> dict:
    from .deploy.bench import machine_tag, make_runner

    rows = []
    for name, m in progress(opened, "compare"):
        model, shape = m.model, (m.in_chans, input_size, input_size)  # open_model gives it in eval mode
        if m.spec is not None and m.spec.input_size != input_size:
            notes.append(f"{name} was trained at {m.spec.input_size} px; measured here at {input_size} px, like "
                         f"every row (--input-size {m.spec.input_size} measures all at its size)")
        prof = profile(model, shape, m.name)
        pub = published.get(name)
        row = {"model": name, "label": pub.label if pub else name, "params": prof.params, "macs": prof.macs,
               "fp32_mib": prof.params * 4 / 2**20, "int8_mib": prof.params / 2**20,
               "published_top1": pub.top1 if pub else None, "top1_source": pub.source if pub else "",
               "published_mmacs": pub.mmacs if pub else None}
        if name in prepared:
            from .imagenet import score_imagenet

            m = score_imagenet(prepared[name])
            row.update(measured_top1=m["top1"], measured_top5=m["top5"], measured_n=m["n"])
        with tempfile.TemporaryDirectory() as tmp:
            for b in backends:
                try:
                    # every backend on the same threads: torch's (above) and ONNX Runtime's sessions alike
                    f1 = make_runner(b, model, shape, 1, Path(tmp), threads, ort_defaults=False)
                    row[f"{b}_b1_ms"] = 1000 * _latency(f1, repeats)
                    fb = make_runner(b, model, shape, batch_throughput, Path(tmp), threads, ort_defaults=False)
                    row[f"{b}_b{batch_throughput}_img_s"] = batch_throughput / _latency(fb, max(3, repeats // 5), 1)
                except Exception as e:  # a backend that cannot run a peer is a note, not a crash
                    notes.append(f"{name} on {b}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
        rows.append(row)
    if not rows:
        raise SqueezeNetError("no model could be measured")
    tag = f"{machine_tag()}_torch{torch.__version__.split('+')[0]}_{input_size}px"
    keys = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(outd / f"compare_{tag}.csv", buf.getvalue())
    atomic_write_text(outd / f"compare_{tag}.json", json.dumps({"rows": rows, "notes": notes}, indent=2))
    table = _table(rows, backends, batch_throughput)
    plots = _plots(rows, outd, tag, backends, input_size) if input_size == TOP1_PX else []
    if input_size != TOP1_PX:  # a 224 px accuracy beside 64 px costs would credit a model with both
        notes.append(f"the top-1 figures are at {TOP1_PX} px, where they were published (and measured, with "
                     f"--weights, at each model's own size); MACs and speeds here are at {input_size} px, so no "
                     "top-1 plot is drawn")
    report = outd / "compare.md"
    atomic_write_text(report, f"# Efficient CNNs on {machine_tag()} (torch {torch.__version__}), {input_size} px\n\n"
                      f"{convention()}. Threads: {torch.get_num_threads()} for every backend. Latency: median "
                      "of repeated runs, batch 1; throughput: batch " + str(batch_throughput) + ". Named models have "
                      "random weights (speed does not depend on them), model files their own. Top-1: published "
                      "ImageNet figures, sources in the CSV"
                      + (f"; measured: on {data} with the weights given" if prepared else "") + ".\n\n"
                      f"{table}\n\n" + "".join(f"![{p.stem}]({p.name})\n\n" for p in plots) +
                      "".join(f"- note: {n}\n" for n in notes))
    return {"rows": rows, "notes": notes, "table": table, "report": str(report), "plots": [str(p) for p in plots]}


def _open_all(refs, weights: dict, notes: list) -> list:
    """(reference, :class:`~squeezenet.formats.open.OpenedModel`) for each of ``refs``: names
    (ours, ``tv:``, ``timm:``) and model files alike. An optional library that is missing
    skips its models with a note; any other bad reference, or ``--weights`` for a file, is an
    error here, before the first model is timed."""
    from .formats.open import open_model, resolve_file, weights_for_a_file

    for ref in weights:
        if resolve_file(ref) is not None:
            raise weights_for_a_file(ref)
    out = []
    for ref in refs:
        try:
            out.append((ref, open_model(ref, command="compare")))
        except SqueezeNetError as e:
            if "optional dependency" not in str(e):
                raise
            notes.append(f"skipped {ref}: {e}")
    return out


def _table(rows, backends, bt) -> str:
    def num(key, fmt):
        return lambda r: format(r[key], fmt) if r.get(key) is not None else "-"

    cols = [("model", "label"), ("params (M)", lambda r: f"{r['params'] / 1e6:.2f}"),
            ("MMACs", lambda r: f"{r['macs'] / 1e6:.0f}"), ("fp32 MiB", num("fp32_mib", ".2f")),
            ("int8 MiB", num("int8_mib", ".2f")),
            (f"top-1 (published, {TOP1_PX} px)", lambda r: r["published_top1"] or "-")]
    if any("measured_top1" in r for r in rows):
        cols.append(("top-1 (measured, at the model's own size)", num("measured_top1", ".2f")))
    for b in backends:
        cols += [(f"{b} b1 ms", num(f"{b}_b1_ms", ".2f")), (f"{b} b{bt} img/s", num(f"{b}_b{bt}_img_s", ".0f"))]
    return markdown_table(rows, cols)


def _plots(rows, outd: Path, tag: str, backends, input_size: int) -> list[Path]:
    plt = pyplot()
    pts = [r for r in rows if r["published_top1"]]

    def scatter(x_of, size_of, xlabel, title, name, log_x=False):
        fig, ax = plt.subplots(figsize=(7, 5))
        for r in pts:
            x = x_of(r)
            if x is not None:
                ax.scatter(x, r["published_top1"], s=size_of(r), alpha=0.6)
                ax.annotate(r["label"], (x, r["published_top1"]), fontsize=7, xytext=(4, 4),
                            textcoords="offset points")
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("published ImageNet top-1 (%)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        return save_figure(fig, outd / f"{name}_{tag}.png")

    paths = [scatter(lambda r: r["macs"] / 1e6, lambda r: 40 * r["params"] / 1e6, f"MMACs at {input_size} px (log)",
                     "top-1 vs MACs (bubble area ~ params)", "compare_top1_vs_macs", log_x=True)]
    lat_key = next((f"{b}_b1_ms" for b in ("ort", "eager", *backends) if any(f"{b}_b1_ms" in r for r in pts)), None)
    if lat_key:
        paths.append(scatter(lambda r: r.get(lat_key), lambda r: 40,
                             f"measured latency, batch 1, {lat_key.split('_b1')[0]} (ms)",
                             "top-1 vs latency on this machine", "compare_top1_vs_latency"))
    return paths
