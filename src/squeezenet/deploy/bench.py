"""Inference benchmark across backends, against eager fp32 and a same-run GEMM peak.

For each backend and batch size: median and p90 latency, throughput, achieved
GFLOP/s (2 x MACs per image), the fraction of a large fp32 GEMM's GFLOP/s measured
in the same run (a stand-in for the machine's peak), and the speed-up over plain
eager fp32 NCHW (the usual torchvision way). Warm-up runs are discarded; backends are
timed in alternating blocks so that drift in the machine's speed hits all of them
alike; the spread (p10-p90) is reported so instability is visible.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import SqueezeNetError
from ..files import atomic_write_text, ensure_writable_dir
from ..machine import check_threads, cpu_info, fit_torch_threads
from ..progress import progress
from ..profiler import profile
from ..render import markdown_table, pyplot, save_figure

BACKENDS = ("eager", "channels_last", "compile", "ort", "ort-tuned", "ort-int8", "ort-fp16")


def gemm_gflops(n: int = 1024, repeats: int = 10) -> float:
    """fp32 GEMM throughput (GFLOP/s) of torch.mm with n x n matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - t) / 1e9


def time_calls(fn, warmup: int, repeats: int, min_time: float = 0.0) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start) < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 20 * repeats:
            break
    return times


def _ort_version() -> str | None:
    try:
        import onnxruntime

        return onnxruntime.__version__
    except ImportError:
        return None


def bench_tag(label: str, backends, file_id: str | None = None) -> str:
    """``<model>[_<file id>]_<backend+backend...>_<machine>_torch<ver>[_ort<ver>]``: what a result file
    was measured with. ``file_id`` (the first 8 hex digits of a model file's SHA-256) keeps two files
    that share a stem, such as two runs' ``int8.onnx``, from writing over each other's results."""
    label = f"{label}_{file_id}" if file_id else label
    tag = f"{label}_{'+'.join(backends)}_{machine_tag()}_torch{torch.__version__.split('+')[0]}"
    ort_version = _ort_version() if any(b.startswith("ort") for b in backends) else None
    return f"{tag}_ort{ort_version}" if ort_version else tag


def machine_tag() -> str:
    import os

    cpu = cpu_info()[0] or platform.processor() or platform.machine()
    return f"{cpu.replace(' ', '-')}-{os.cpu_count()}c-{isa_tag()}"


CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_line() -> str:
    """The CPU's name and the flags that decide its fast paths, for a benchmark's header."""
    name, flags = cpu_info()
    return f"{name or 'unknown CPU'} ({', '.join(f for f in CPU_FLAGS if f in (flags or ())) or 'no AVX2'})"


def isa_tag() -> str:
    """The vector ISA that decides the fast kernels here: avx512-vnni-bf16, avx512, avx2, ..."""
    flags = cpu_info()[1]
    if flags is None:
        return "unknown-isa"
    if "avx512f" in flags:
        extra = [n for f, n in (("avx512_vnni", "vnni"), ("avx512_bf16", "bf16"), ("amx_tile", "amx")) if f in flags]
        return "-".join(["avx512", *extra])
    return "avx2" + ("-vnni" if "avx_vnni" in flags else "") if "avx2" in flags else platform.machine()


def make_runner(backend: str, model, shape, batch: int, tmp: Path, threads: int | None, calib=None,
                onnx_file: Path | None = None, ort_defaults: bool = True):
    """A zero-argument callable that runs one batch on ``backend``. ``onnx_file``: the
    ONNX Runtime backends run this file (a low-bit model's own graph) instead of an export.
    ``ort_defaults``: ``ort`` is ONNX Runtime's default session (bench's baseline, its
    threads counted by ONNX Runtime); False sizes it like the others, by ``threads``."""
    x = torch.randn(batch, *shape)
    if backend == "eager":
        return lambda: _nograd(model, x)
    if backend == "channels_last":
        m = _copy(model).to(memory_format=torch.channels_last)
        xc = x.contiguous(memory_format=torch.channels_last)
        return lambda: _nograd(m, xc)
    if backend == "compile":
        m = torch.compile(_copy(model))
        return lambda: _nograd(m, x)
    from .export import export_model_to_onnx
    from .onnx_tools import convert_fp16
    from ..formats.onnx import open_session

    fp32 = onnx_file or tmp / "model_fp32.onnx"
    if not fp32.exists():
        export_model_to_onnx(model, fp32, shape, dynamic_batch=True)
    if backend in ("ort", "ort-tuned"):
        path = fp32
    elif backend == "ort-int8":
        from .onnx_tools import fixed_batch, quantize_onnx_int8

        path = tmp / "model_int8.onnx"
        if not path.exists():
            n = fixed_batch(fp32) or 8  # a fixed-batch file is calibrated at its own batch
            calib = calib or [np.random.default_rng(0).standard_normal((n, *shape)).astype(np.float32)]
            quantize_onnx_int8(fp32, path, calib)
    elif backend == "ort-fp16":
        path = tmp / "model_fp16.onnx"
        if not path.exists():
            convert_fp16(fp32, path)
    else:
        raise SqueezeNetError(f"unknown backend '{backend}'; choose from {', '.join(BACKENDS)}")
    if backend == "ort" and ort_defaults:  # ONNX Runtime's defaults
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    else:
        sess = open_session(path, threads=threads)
    name, xn = sess.get_inputs()[0].name, x.numpy()
    return lambda: sess.run(None, {name: xn})


def _copy(model):
    import copy

    return copy.deepcopy(model)


@torch.no_grad()
def _nograd(m, x):
    return m(x)


ORT_BACKENDS = ("ort", "ort-tuned", "ort-int8", "ort-fp16")
DEFAULT_BACKENDS = ("eager", "channels_last", "ort", "ort-int8")  # a PyTorch model's
ONNX_DEFAULT_BACKENDS = ("ort", "ort-tuned", "ort-int8")  # an fp32 .onnx file's (int8 dropped for a quantized one)


@dataclass
class BenchSettings:
    backends: tuple | None = None  # None: DEFAULT_BACKENDS, or ONNX_DEFAULT_BACKENDS for an .onnx file
    batch_sizes: tuple = (1, 8, 32)
    threads: int | None = None
    repeats: int = 30
    warmup: int = 5
    min_time: float = 0.5  # seconds of timing per backend and batch size, at least

    def check(self, onnx_file: Path | None = None, quantized: bool = False) -> str:
        """Validate the backends and add the baseline (always measured): eager fp32 for a
        PyTorch model, ONNX Runtime's defaults (``ort``) for an .onnx file. Returns it."""
        if self.backends is None:  # a quantized model (an int8 .onnx, a low-bit .sqz) is not quantized again
            default = ONNX_DEFAULT_BACKENDS if onnx_file else DEFAULT_BACKENDS
            self.backends = tuple(b for b in default if not (quantized and b == "ort-int8"))
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise SqueezeNetError(f"unknown backend '{unknown[0]}'; choose from {', '.join(BACKENDS)}")
        baseline = "ort" if onnx_file else "eager"
        if onnx_file:
            torch_only = [b for b in self.backends if b not in ORT_BACKENDS]
            if torch_only:
                raise SqueezeNetError(f"'{onnx_file}' is an ONNX file: --backends {torch_only[0]} needs the PyTorch "
                                      f"model it was exported from (bench that .pt/.sqz); choose from "
                                      f"{', '.join(ORT_BACKENDS)}")
        if baseline not in self.backends:
            self.backends = (baseline, *self.backends)
        return baseline


def bench(model_name: str | None = None, checkpoint: str | None = None, out: str = "runs/bench",
          settings: BenchSettings | None = None, input_size: int | None = None, model=None, label: str | None = None,
          verify: bool = True, **kw) -> dict:
    """Benchmark any model reference (or ``model`` itself); writes ``<out>/bench_<tag>.csv``,
    ``.json`` and ``.png`` (see :func:`bench_tag`). ``kw`` may give any
    :class:`BenchSettings` field directly (``backends=[...], batch_sizes=[1]``).

    An .onnx file is timed as it is, on the ONNX Runtime backends, against ONNX Runtime's
    defaults; its MACs are counted from its graph (:func:`onnx_tools.onnx_macs`)."""
    from .export import load_model_and_spec

    settings = settings or BenchSettings(**kw)
    found = _onnx_file(model_name or checkpoint, verify) if model is None else None
    onnx_file, quantized = (found[2], found[3]) if found else (None, False)  # an .onnx file is timed as it is
    low_bit = _low_bit_sqz(model_name or checkpoint) if model is None and not found else None
    if found:
        label, shape = found[:2]
        if input_size and input_size != shape[1]:
            raise SqueezeNetError(f"'{onnx_file}' takes {shape[1]} px images; drop --input-size {input_size}")
        _check_fixed_batch(onnx_file, settings.batch_sizes)
    elif model is None:
        model, label, shape, _ = load_model_and_spec(model_name, checkpoint, input_size, verify, command="bench")
    else:
        size = input_size or 224
        shape = (model.default_cfg["input_size"][0] if hasattr(model, "default_cfg") else 3, size, size)
    baseline = settings.check(onnx_file, quantized or low_bit is not None)
    if quantized:
        _refuse_requantizing(onnx_file, settings.backends, "ort, ort-tuned")
    if low_bit is not None:
        _refuse_requantizing(low_bit, settings.backends, "eager, channels_last, ort, ort-tuned")
    outd = ensure_writable_dir(out)  # before minutes of timing, not after
    _check_memory(shape, max(settings.batch_sizes))
    if settings.threads:
        check_threads(settings.threads)
        torch.set_num_threads(settings.threads)
    else:
        fit_torch_threads()  # as ONNX Runtime's sessions: the cores this process may use
    if onnx_file is not None:
        from .onnx_tools import UncountedOperators, onnx_macs

        try:
            macs = onnx_macs(onnx_file, shape)
        except UncountedOperators as e:  # timed all the same, without a GFLOP/s that would be too low
            from ..log import note

            note(f"{e}: no GFLOP/s or share of the GEMM peak is given")
            macs = None
    else:
        model = model.eval()
        macs = profile(model, shape).macs
    peak = gemm_gflops()
    with tempfile.TemporaryDirectory() as tmp:
        if low_bit is not None:  # a low-bit .sqz's own graph (INT4/INT2 weights), which the ort backends time
            from .sqz_onnx import sqz_to_onnx

            onnx_file = Path(sqz_to_onnx(low_bit, Path(tmp) / "model_lowbit.onnx"))
        rows = _timed_rows(model, label, shape, macs, settings, onnx_file)
    base = {r["batch"]: r["median_ms"] for r in rows if r["backend"] == baseline}
    for r in rows:
        r["speedup"] = base[r["batch"]] / r["median_ms"]
        r["pct_of_gemm_peak"] = None if r["gflops"] is None else 100 * r["gflops"] / peak
    meta = {"gemm_gflops": peak, "macs": macs, "threads": torch.get_num_threads(), "machine": machine_tag(),
            "cpu": cpu_line(), "torch": torch.__version__, "backends": list(settings.backends), "baseline": baseline,
            "onnxruntime": _ort_version(), "model_ref": str(model_name or checkpoint or label)}
    csv_path, png = _write(outd, bench_tag(label, settings.backends, _file_id(model_name or checkpoint)), rows, meta,
                           label)
    counted = f"{macs / 1e6:.0f} MMACs/img" if macs is not None else "MACs not counted"
    table = (f"{label} @ {shape[1]} px, {counted}; {meta['cpu']}; fp32 GEMM peak in this run: "
             f"{peak:.1f} GFLOP/s; torch threads {meta['threads']}; speed-up against {BASELINE_WORDS[baseline]}\n"
             + markdown_table(rows, table_columns(baseline)))
    return {"rows": rows, "meta": meta, "table": table, "csv": str(csv_path), "png": str(png)}


def _file_id(ref) -> str | None:
    """The first 8 hex digits of the SHA-256 of the model file a reference names; None for a name."""
    from ..files import sha256_file
    from ..formats.open import resolve_file

    found = resolve_file(ref) if ref else None
    return sha256_file(found[0])[:8] if found else None


BASELINE_WORDS = {"eager": "eager PyTorch fp32 (NCHW), the usual way", "ort": "ONNX Runtime's default session"}


def _onnx_file(ref, verify: bool = True) -> tuple | None:
    """(label, (C, H, W), path, quantized) for a reference that is an .onnx file; None otherwise."""
    from ..formats.open import open_model, resolve_file
    from .onnx_tools import precision

    found = resolve_file(ref) if ref else None
    if not found or found[1] != "onnx":
        return None
    m = open_model(ref, need="any", verify=verify, command="bench")
    return m.name, (m.in_chans, m.input_size, m.input_size), found[0], precision(found[0]) != "fp32"


def _low_bit_sqz(ref) -> Path | None:
    """The file, for a reference that is a low-bit .sqz (version 2 or 3: integer weights);
    None for anything else."""
    from ..formats.open import resolve_file

    found = resolve_file(ref) if ref else None
    if not found or found[1] != "sqz":
        return None
    from .sqz_onnx import has_integer_weights

    return found[0] if has_integer_weights(found[0]) else None


def _check_fixed_batch(path, batch_sizes) -> None:
    from .onnx_tools import fixed_batch

    fixed = fixed_batch(path)
    if fixed and any(b != fixed for b in batch_sizes):
        raise SqueezeNetError(f"'{path}' takes batches of {fixed} only (it was exported without --dynamic-batch); "
                              f"pass --batch-sizes {fixed}, or export it again with --dynamic-batch")


def _refuse_requantizing(path, backends, use: str) -> None:
    other = [b for b in backends if b in ("ort-int8", "ort-fp16")]
    if other:
        raise SqueezeNetError(f"'{path}' is already quantized; --backends {other[0]} would quantize it again "
                              f"(use {use})")


def _timed_rows(model, label, shape, macs, s: BenchSettings, onnx_file: Path | None = None) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for bs in progress(s.batch_sizes, "bench"):
            fns = {b: make_runner(b, model, shape, bs, Path(tmp), s.threads, onnx_file=onnx_file) for b in s.backends}
            # Time the backends in alternating blocks (3 rounds), so slow drift in the
            # machine's speed hits every backend alike. Run-by-run interleaving is worse
            # here: ORT's and torch's spinning thread pools then fight over the 2 cores.
            times = {b: [] for b in s.backends}
            rounds = 3
            for _ in range(rounds):
                for b, fn in fns.items():
                    times[b] += time_calls(fn, s.warmup, max(1, s.repeats // rounds), s.min_time / rounds)
            for backend in s.backends:
                t = np.asarray(times[backend]) * 1000.0  # ms
                med = float(np.median(t))
                rows.append({"model": label, "backend": backend, "batch": bs, "input": shape[1],
                             "median_ms": med, "p10_ms": float(np.percentile(t, 10)),
                             "p90_ms": float(np.percentile(t, 90)),
                             "spread_pct": 100 * float(np.percentile(t, 90) - np.percentile(t, 10)) / med,
                             "img_per_s": bs / (med / 1000),
                             "gflops": None if macs is None else 2 * macs * bs / (med / 1000) / 1e9,
                             "runs": len(t)})
    return rows


def _write(outd: Path, tag: str, rows, meta, label) -> tuple[Path, Path]:
    """The CSV, JSON and PNG of a run, each written atomically."""
    csv_path = outd / f"bench_{tag}.csv"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(csv_path, buf.getvalue())
    atomic_write_text(outd / f"bench_{tag}.json", json.dumps({"meta": meta, "rows": rows}, indent=2))
    png = outd / f"bench_{tag}.png"
    _plot(rows, png, label, meta)
    return csv_path, png


def _check_memory(shape, batch: int) -> None:
    """Refuse a batch whose input tensor alone would not fit in the free memory, before
    anything is allocated (an allocation of that size can also be granted lazily and end
    with the kernel's OOM killer instead of an error)."""
    import psutil

    need = 4 * batch * int(np.prod(shape))
    free = psutil.virtual_memory().available
    if need > free // 4:
        raise SqueezeNetError(f"--batch-sizes {batch} needs {need / 2**30:.1f} GiB for the input alone; this machine "
                              f"has {free / 2**30:.1f} GiB free; use smaller batches")


def table_columns(baseline: str) -> list:
    return [
        ("backend", "backend"), ("batch", "batch"), ("median ms", lambda r: f"{r['median_ms']:.2f}"),
        ("p10-p90 ms", lambda r: f"{r['p10_ms']:.2f}-{r['p90_ms']:.2f}"), ("img/s", lambda r: f"{r['img_per_s']:.1f}"),
        ("GFLOP/s", lambda r: "-" if r["gflops"] is None else f"{r['gflops']:.1f}"),
        ("% GEMM peak", lambda r: "-" if r["pct_of_gemm_peak"] is None else f"{r['pct_of_gemm_peak']:.0f}%"),
        (f"speed-up vs {baseline}", lambda r: f"{r['speedup']:.2f}x"),
    ]


def _plot(rows, path, label, meta):
    plt = pyplot()
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    batches = sorted({r["batch"] for r in rows})
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(backends)
    for i, b in enumerate(backends):
        vals = [next((r["speedup"] for r in rows if r["backend"] == b and r["batch"] == bs), 0) for bs in batches]
        ax.bar([j + i * width for j in range(len(batches))], vals, width, label=b)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(batches))], [f"batch {b}" for b in batches])
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_ylabel(f"speed-up over {meta['baseline']} (x)")
    ax.set_title(f"{label} on {meta['machine']} (torch {meta['torch'].split('+')[0]})", fontsize=9)
    ax.legend(fontsize=8)
    save_figure(fig, path)
