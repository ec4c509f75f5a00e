"""Sweeps: the search (seeded, replayable, budgeted), the pure trial function, faults and
resume, and the Ray engine against the local one (Ray in local mode, 2 CPUs, loopback)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import assert_one_line, run_cli
from squeezenet import create_model
from squeezenet.errors import SqueezeNetError
from squeezenet.files import RunLock
from squeezenet.sweep import SPACE, sweep
from squeezenet.sweep.report import pareto_front
from squeezenet.sweep.space import make_search, point_name

TINY_OPTS = "small,bn,w0.25"


def fake_top1(p: dict) -> float:
    """A closed-form objective: best at base_e 128, pct3x3 0.5, SR 0.25."""
    return 90 - abs(p["base_e"] - 128) / 32 - 10 * abs(p["pct3x3"] - 0.5) - 4 * abs(p["sr"] - 0.25)


# ------------------------------------------------------------------ names and the space

def test_design_space_modifiers_build_the_section_5_formula():
    """e_i = base_e + incr_e * floor(i / freq) (paper section 5), squeeze = SR * e_i, 3x3 = pct3x3 * e_i."""
    m = create_model("squeezenet1_0_be64_ie32_freq4_sr0.25_pct0.75")
    fires = [st for st in m.stages if st.kind == "fire"]
    for i, st in enumerate(fires):
        e = 64 + 32 * (i // 4)
        s1, e1, e3 = st.out if len(st.out) == 3 else (None, *st.out)
        assert e1 + e3 == e and e3 == round(0.75 * e), (i, st.out)
    assert m.default_cfg["design"] == {"base_e": 64, "incr_e": 32, "pct3x3": 0.75, "freq": 4, "squeeze_ratio": 0.25,
                                       "num_fire": 8}
    assert point_name("squeezenet1_0", {"base_e": 64, "incr_e": 32, "freq": 4, "sr": 0.25, "pct3x3": 0.75}) == \
        "squeezenet1_0_be64_ie32_freq4_sr0.25_pct0.75"


@pytest.mark.parametrize("kind", ["random", "tpe"])
def test_the_search_is_seeded_and_reproducible(kind):
    def run(seed):
        s, seen = make_search(kind, seed, trials=12), []
        for _ in range(12):
            p = s.ask()
            s.tell(p, fake_top1(p))
            seen.append(p)
        return seen

    a, b, c = run(3), run(3), run(4)
    assert a == b and a != c
    for p in a:  # every point inside the space, on its grid
        assert all(p[k] in ax.values() for k, ax in SPACE.items()), p


def test_pareto_front_is_the_non_dominated_points():
    rows = [{"size_mib": s, "top1": t, "status": "done"} for s, t in
            [(1, 80), (2, 79), (2, 85), (3, 84), (4, 90), (5, 90), (1.5, 80)]]
    assert [(r["size_mib"], r["top1"]) for r in pareto_front(rows)] == [(1, 80), (2, 85), (4, 90)]


# ------------------------------------------------------------------ the driver (stub trials: no training)

def stub_trial(config, report=None):
    """The search logic without training: top-1 is a closed form of the point's name."""
    from squeezenet.factory import parse_model_name

    d = parse_model_name(config["model"]).overrides
    p = {"base_e": d["base_e"], "pct3x3": d["pct3x3"], "sr": d["squeeze_ratio"]}
    return {"trained_model": config["model"], "top1": fake_top1(p), "top5": 99.0, "train_time_s": 0.0,
            "trained_params": 1}


def test_search_under_a_parameter_budget(tmp_path):
    budget = 600_000
    r = sweep(search="random", trials=5, train_epochs=1, max_params=budget, out=str(tmp_path / "s"),
              trial_fn=stub_trial, base="squeezenet1_1")
    assert len(r["rows"]) == 5 and all(row["params"] <= budget for row in r["rows"])
    assert all(row["params"] == sum(p.numel() for p in create_model(row["model"]).parameters()) for row in r["rows"])
    assert r["best"]["top1"] == max(row["top1"] for row in r["rows"])
    text = (tmp_path / "s" / "sweep.md").read_text()
    assert "600,000 parameters" in text and r["best"]["model"] in text
    assert "optimistic estimate for new images" in text  # the best of the points, chosen on the split it is scored on
    assert (tmp_path / "s" / "sweep_accuracy_vs_size.png").is_file()
    # the same command again: every point read back, none rerun, same rows
    calls = []
    again = sweep(search="random", trials=5, train_epochs=1, max_params=budget, out=str(tmp_path / "s"),
                  trial_fn=lambda c, rep=None: calls.append(c) or stub_trial(c), base="squeezenet1_1")
    assert calls == [] and again["rows"] == r["rows"]


def test_tpe_search_resumes_to_the_same_points(tmp_path):
    """A TPE search killed after 4 points and run again asks the same 8 points as one
    that was never interrupted (the finished points are replayed into the sampler)."""
    whole = sweep(search="tpe", trials=8, train_epochs=1, out=str(tmp_path / "a"), trial_fn=stub_trial)

    calls = []

    def dies_at_five(config, report=None):
        calls.append(config["model"])
        if len(calls) == 5:
            raise KeyboardInterrupt
        return stub_trial(config)

    with pytest.raises(KeyboardInterrupt):
        sweep(search="tpe", trials=8, train_epochs=1, out=str(tmp_path / "b"), trial_fn=dies_at_five)
    assert len(list((tmp_path / "b" / "points").glob("*.json"))) == 4
    calls.clear()
    resumed = sweep(search="tpe", trials=8, train_epochs=1, out=str(tmp_path / "b"),
                    trial_fn=lambda c, rep=None: calls.append(c["model"]) or stub_trial(c))
    assert len(calls) == 4  # only the points not yet finished
    assert [r["model"] for r in resumed["rows"]] == [r["model"] for r in whole["rows"]]


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    def fails_on_sr_half(config, report=None):
        if "_sr0.5_" in config["model"]:
            raise RuntimeError("deliberate failure")
        return stub_trial_grid(config)

    r = sweep(sr=[0.25, 0.5, 0.75], pct3x3=[], train_epochs=1, out=str(tmp_path), trial_fn=fails_on_sr_half)
    status = {row["sr"]: row["status"] for row in r["rows"]}
    assert status == {0.25: "done", 0.5: "failed", 0.75: "done"} and r["failed"] == 1
    failed = next(row for row in r["rows"] if row["status"] == "failed")
    assert "RuntimeError: deliberate failure" in failed["error"]
    assert "deliberate failure" in (tmp_path / "sweep.md").read_text()
    # the next run retries only the failed point
    calls = []
    r2 = sweep(sr=[0.25, 0.5, 0.75], pct3x3=[], train_epochs=1, out=str(tmp_path),
               trial_fn=lambda c, rep=None: calls.append(c["model"]) or stub_trial_grid(c))
    assert len(calls) == 1 and "_sr0.5_" in calls[0] and r2["failed"] == 0


def stub_trial_grid(config, report=None):
    return {"trained_model": config["model"], "top1": 50.0, "top5": 90.0, "train_time_s": 0.0, "trained_params": 1}


def test_two_sweeps_into_one_folder_are_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(SqueezeNetError, match="in use|another|lock"):
            sweep(sr=[0.5], pct3x3=[], out=str(tmp_path))


@pytest.mark.parametrize("args, needle", [
    (["--search", "tpe"], "needs --train-epochs"),
    (["--scheduler", "asha"], "for --engine ray"),
    (["--engine", "ray", "--scheduler", "asha", "--train-epochs", "1"], "--train-epochs >= 2"),
    (["--trials", "0", "--search", "random", "--train-epochs", "1"], "--trials must be >= 1"),
    (["--cpus-per-trial", "-1"], "--cpus-per-trial must be > 0"),
])
def test_bad_sweep_flags_are_one_line(tmp_path, args, needle):
    code, _, err = run_cli("sweep", "--out", tmp_path / "s", *args)
    assert_one_line(code, err, needle)
    assert not (tmp_path / "s").exists()  # refused before any work


@pytest.mark.parametrize("engine_args, needle", [
    (["--engine", "ray"], "needs ray, which is not installed"),
    (["--search", "tpe", "--train-epochs", "1"], "needs optuna, which is not installed"),
])
def test_a_missing_sweep_extra_is_one_line(tmp_path, engine_args, needle):
    code = ("import sys; sys.modules['ray'] = None; sys.modules['optuna'] = None\n"
            "from squeezenet.cli import main\n"
            f"sys.exit(main(['sweep', '--out', {str(tmp_path / 's')!r}, *{engine_args!r}]))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert_one_line(res.returncode, res.stderr, needle)
    assert "pip install 'squeezenet[sweep]'" in res.stderr


# ------------------------------------------------------------------ real trials, local and on Ray

@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.tune")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def test_ray_engine_equals_the_local_engine_point_for_point(tmp_path, fmnist_dir, ray_local):
    """Three tiny real trials (1 epoch each, 1 thread, same seed) on each engine: the same
    table, point for point; one trial fails on purpose on both and the others finish."""
    from squeezenet.sweep import run_trial

    def fails_on_sr_half(config, report=None):  # defined here, so Ray ships it by value
        if "_sr0.5_" in config["model"]:
            raise RuntimeError("deliberate failure")
        return run_trial(config, report)

    common = dict(sr=[0.25, 0.5, 0.75], pct3x3=[], train_epochs=1, data="fashion-mnist", data_dir=str(fmnist_dir),
                  download=False, batch_size=64, base="squeezenet1_1", train_model_options=TINY_OPTS,
                  cpus_per_trial=1, trial_fn=fails_on_sr_half)
    local = sweep(out=str(tmp_path / "local"), **common)
    on_ray = sweep(out=str(tmp_path / "ray"), engine="ray", **common)
    keys = ("model", "params", "macs", "status", "top1", "top5", "trained_params")
    assert [{k: r.get(k) for k in keys} for r in on_ray["rows"]] == [{k: r.get(k) for k in keys} for r in local["rows"]]
    assert [r["status"] for r in on_ray["rows"]] == ["done", "failed", "done"]
    assert "deliberate failure" in on_ray["rows"][1]["error"]
    assert all(0 <= r["top1"] <= 100 for r in on_ray["rows"] if r["status"] == "done")
    # per-point files written by the driver, as for the local engine
    assert sorted(p.name for p in (tmp_path / "ray" / "points").glob("*.json")) == \
        sorted(p.name for p in (tmp_path / "local" / "points").glob("*.json"))


def test_ray_resumes_a_sweep_keeping_finished_trials_and_asha_runs(tmp_path, fmnist_dir, ray_local):
    """Points finished by an earlier run are not sent to Ray again; with ASHA every point
    ends as done or stopped and is recorded."""
    common = dict(pct3x3=[], train_epochs=2, data="fashion-mnist", data_dir=str(fmnist_dir), download=False,
                  batch_size=128, base="squeezenet1_1", train_model_options=TINY_OPTS, cpus_per_trial=1,
                  engine="ray", out=str(tmp_path / "s"))
    first = sweep(sr=[0.25], **common)
    stamp = Path(tmp_path / "s" / "points").glob("SR_*sr0.25*.json").__next__()
    before = stamp.stat().st_mtime_ns
    r = sweep(sr=[0.25, 0.75, 1.0], scheduler="asha", **common)
    assert stamp.stat().st_mtime_ns == before  # the finished point was kept, not rerun
    assert r["rows"][0] == first["rows"][0]
    assert all(row["status"] in ("done", "stopped") for row in r["rows"])
    assert all(json.loads(p.read_text())["status"] in ("done", "stopped")
               for p in (tmp_path / "s" / "points").glob("*.json"))
