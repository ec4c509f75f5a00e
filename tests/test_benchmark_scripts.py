"""The benchmark scripts that docs/BENCHMARKS.md quotes still start, and the one that
needs no data or training (the ImageNet-shaped ladder's bytes) writes what it says.

Two of them had imported a helper that a later change renamed (``time_to_accuracy.cpu``),
and the bytes-only ladder unpacked a row tuple that had grown a field: both failed at once,
unseen, because nothing ran them."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


def _run(*args, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_script_starts(script):
    r = _run(script, "--help")
    assert r.returncode == 0 and "usage" in r.stdout, r.stderr[-2000:]


def test_bytes_only_ladder_writes_nearest_rounded_files(tmp_path):
    """No calibration data, so the files round to nearest and must say so (not the
    library default, --rounding auto, which would learn the rounding and tag them _ada)."""
    from squeezenet.formats.sqz import read_container

    r = _run(ROOT / "benchmarks" / "precision_ladder.py", "--bytes-only", "squeezenet1_1", "--out", tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    files = {p.stem: p for p in tmp_path.glob("*.sqz") if p.stem != "fp32"}
    assert {"w8a8", "w4a8", "w4a4", "w2a8", "w4a32_ppaper"} <= set(files)
    for p in files.values():
        q = read_container(p)[0]["quantization"]
        assert (q["rounding"], q["rounding_chosen_by"]) == ("nearest", "flag"), p.name
    # the pruned row is stored sparse: well under the dense int4 file (Table 1 keeps about a third of the weights)
    assert files["w4a32_ppaper"].stat().st_size < 0.5 * files["w4a8"].stat().st_size


def _time_to_accuracy():
    import importlib.util

    spec = importlib.util.spec_from_file_location("time_to_accuracy", ROOT / "benchmarks" / "time_to_accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_set_progressive_resizing_0_reproduces_the_config_without_resizing(tmp_path):
    """BENCHMARKS tells readers to reproduce every `--config natural` row run before the
    config adopted progressive resizing with `--set progressive_resizing=0`. That was refused
    ("--progressive-resizing-until 0.7 applies only with --progressive-resizing", a setting
    never given), as `--progressive-resizing 0` on the command line was before session 38.
    Now it trains as `natural.toml` without its two resizing lines, like the CLI flag."""
    import tomllib
    from argparse import Namespace

    from squeezenet.config import CONFIG_DIR, UNTIL, TrainConfig

    tta = _time_to_accuracy()
    a = Namespace(config="natural", model=None, data="cifar10", data_dir=None, out=str(tmp_path / "o"))
    off = TrainConfig.from_dict(tta.budget_settings(a, {"progressive_resizing": 0}, "30m"))
    natural = tomllib.loads((CONFIG_DIR / "natural.toml").read_text())
    assert natural["progressive_resizing"] and natural["progressive_resizing_until"] != UNTIL  # what is undone
    assert (off.progressive_resizing, off.progressive_resizing_until) == (0, UNTIL)
    for k, v in natural.items():  # everything else as the file says
        if not k.startswith("progressive_resizing"):
            assert getattr(off, k) == v, k
    assert off.out == str(tmp_path / "o" / "budget_30m") and off.time_budget == "30m"
    # the script itself gets past the settings: here it stops at the missing data, not at a setting never given
    r = _run(ROOT / "benchmarks" / "time_to_accuracy.py", "--data", tmp_path / "none", "--config", "natural",
             "--set", "progressive_resizing=0", "--budgets", "30m", "--out", tmp_path / "p", timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: image folder not found: '{tmp_path / 'none'}'"], r.stderr[-2000:]
    assert not (tmp_path / "p").exists()  # nor the run folder made for it (files.writable_dir_kept_on_success)
    # typed without a size, the share is still refused: one line, exit 2, before any run
    r = _run(ROOT / "benchmarks" / "time_to_accuracy.py", "--data", tmp_path / "none", "--config", "natural",
             "--set", "progressive_resizing=0", "--set", "progressive_resizing_until=0.6", "--budgets", "30m",
             "--out", tmp_path / "o", timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --progressive-resizing-until 0.6 applies only with --progressive-resizing: give the smaller size too "
        "(e.g. --progressive-resizing 24), or drop --progressive-resizing-until"], r.stderr[-2000:]
    assert not (tmp_path / "o").exists()
