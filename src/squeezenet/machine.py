"""How many cores this process may really use, and what its CPU can do (torch-free).

``os.cpu_count()`` is the host's count. A container gets fewer: a cpuset (``docker
--cpuset-cpus``) narrows the CPUs the process may run on, and a CPU quota (``docker
--cpus``, Kubernetes limits: cgroup ``cpu.max`` or ``cpu.cfs_quota_us``) caps the time it
may use. ONNX Runtime sizes its default thread pool by the host's physical cores and sees
neither (microsoft/onnxruntime#29510), and OpenMP (torch) sees only the cpuset; a pool
larger than the cores it gets spins and waits (the guide saw one image go from 15 ms to
950 ms when the cores were shared). Every thread pool that is not given a size is sized
by :func:`usable_cores`.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _own_cgroup_v2(proc_self_cgroup: Path) -> str:
    """This process's cgroup v2 path ("0::/a/b" in /proc/self/cgroup), or ""."""
    for line in (_read(proc_self_cgroup) or "").splitlines():
        if line.startswith("0::"):
            return line[3:].strip("/")
    return ""


def _v2_quota(text: str | None) -> float | None:
    parts = (text or "").split()
    try:
        q, p = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):  # "max PERIOD" (no limit), a missing or unreadable file
        return None
    return q / p if q > 0 and p > 0 else None


def cpu_quota(root: Path = CGROUP_ROOT, proc_self_cgroup: Path = Path("/proc/self/cgroup")) -> float | None:
    """The cgroup's CPU quota in cores (1.5 = one and a half), or None when unlimited or
    unknown: the smallest cgroup v2 ``cpu.max`` ("QUOTA PERIOD"; "max PERIOD" is no limit)
    from this process's own cgroup up to the root, else cgroup v1 ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us``."""
    own = Path(_own_cgroup_v2(proc_self_cgroup))
    found = [_v2_quota(_read(root / d / "cpu.max")) for d in (own, *own.parents)]
    if any(q is not None for q in found):
        return min(q for q in found if q is not None)
    q, p = _read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us")
    try:
        q_i, p_i = int(q or ""), int(p or "")
    except ValueError:
        return None
    return q_i / p_i if q_i > 0 and p_i > 0 else None


def usable_cores(root: Path = CGROUP_ROOT, proc_self_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """The CPUs this process may run on, capped by its CPU quota (rounded up), at least 1."""
    quota = cpu_quota(root, proc_self_cgroup)
    cores = _affinity()
    return max(1, min(cores, math.ceil(quota)) if quota else cores)


def fit_torch_threads() -> int:
    """Lower torch's intra-op threads to :func:`usable_cores` when it has more (OpenMP
    counts the cpuset, not the quota); an explicit ``OMP_NUM_THREADS`` is left alone.
    Returns the threads torch uses."""
    import torch

    cores = usable_cores()
    if "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() > cores:
        torch.set_num_threads(cores)
    return torch.get_num_threads()


def check_threads(threads: int | None, flag: str = "--threads") -> None:
    """Warn when an explicit thread count exceeds the cores this process may use: the
    threads then share cores and every figure measured with them is slower than the
    machine is (squeezenet1_1 at batch 1: 14 ms on 2 threads, 73 ms on 64, 2-core EPYC)."""
    if threads and threads > usable_cores():
        from .log import warn

        warn(f"{flag} {threads} is more than the {usable_cores()} core(s) this process may use; the threads will "
             "share cores and run slower than the machine can")


def cpu_info() -> tuple[str | None, set[str] | None]:
    """(model name, flags) from /proc/cpuinfo; None for what cannot be read."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None, None
    name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), None)
    flags = next((set(ln.split(":", 1)[1].split()) for ln in lines if ln.startswith("flags")), set())
    return name, flags


# x86 instructions that add uint8 x int8 products in int32 (AVX-512 VNNI, AVX-VNNI, AMX)
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def int8_pairs_saturate(flags: set[str] | None = None) -> bool:
    """Whether ONNX Runtime's u8s8 kernels here add pairs of uint8 x int8 products in
    saturating int16: an x86 CPU without VNNI (``vpmaddubsw``: AVX2, AVX-512 before
    Cascade Lake, SSE). Unknown CPUs (no /proc/cpuinfo) and other architectures answer False."""
    if flags is None:
        if platform.machine().lower() not in ("x86_64", "amd64"):
            return False
        flags = cpu_info()[1]
    return bool(flags) and not any(f in flags for f in INT8_DOT_FLAGS)
