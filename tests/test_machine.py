"""Thread pools are sized by the cores this process may really use: its CPU affinity and
its cgroup's CPU quota (a container's --cpus), which ONNX Runtime's default and OpenMP miss."""

from pathlib import Path

import pytest

from squeezenet import machine


def _cgroup(tmp_path: Path, files: dict) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text("0::/kubepods/pod1\n")
    return root, proc


@pytest.mark.parametrize("files,quota,cores", [
    ({"cpu.max": "150000 100000\n"}, 1.5, 2),  # docker --cpus=1.5: two threads, rounded up
    ({"kubepods/pod1/cpu.max": "200000 100000\n", "cpu.max": "max 100000\n"}, 2.0, 2),  # the process's own cgroup
    ({"cpu.max": "max 100000\n"}, None, 8),  # no quota: the affinity
    ({"kubepods/cpu.max": "300000 100000\n", "kubepods/pod1/cpu.max": "max 100000\n"}, 3.0, 3),  # a parent's limit
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5, 1),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None, 8),  # v1 unlimited
    ({"cpu.max": "garbage\n"}, None, 8),
    ({}, None, 8),  # no cgroup files at all
])
def test_usable_cores_is_the_affinity_capped_by_the_quota(tmp_path, monkeypatch, files, quota, cores):
    monkeypatch.setattr(machine, "_affinity", lambda: 8)  # a host with 8 CPUs in this process's cpuset
    root, proc = _cgroup(tmp_path, files)
    assert machine.cpu_quota(root, proc) == quota
    assert machine.usable_cores(root, proc) == cores


def test_onnx_sessions_are_sized_by_the_usable_cores(monkeypatch):
    """Without --threads an ONNX Runtime session gets usable_cores() intra-op threads, not
    ORT's own default (the host's physical cores); an explicit count wins."""
    from squeezenet.formats import onnx as fo

    monkeypatch.setattr(machine, "usable_cores", lambda *a: 3)
    assert fo.session_options().intra_op_num_threads == 3
    assert fo.session_options(threads=1).intra_op_num_threads == 1
    assert fo.session_options().inter_op_num_threads == 1


def test_torch_threads_are_lowered_to_the_quota(monkeypatch):
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(machine, "usable_cores", lambda *a: 1)
    try:
        torch.set_num_threads(2)
        assert machine.fit_torch_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's own setting is left alone
        torch.set_num_threads(2)
        assert machine.fit_torch_threads() == 2
    finally:
        torch.set_num_threads(before)
