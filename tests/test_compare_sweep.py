"""Peers against torchvision's own metadata; names; design-space sweep."""

import json

import pytest
import torch
import torchvision

from squeezenet import SqueezeNetError, create_model, profile
from squeezenet.peers import PEERS
from squeezenet.factory import explain_name
from squeezenet.sweep import sweep

from reference import SR_SWEEP, TV_V11_PARAMS

TV_PEERS = [p.name[3:] for p in PEERS if p.name.startswith("tv:")] + ["squeezenet1_0", "squeezenet1_1"]


@pytest.mark.parametrize("name", TV_PEERS)
def test_torchvision_peer_params_and_macs_match_metadata(name):
    meta = torchvision.models.get_model_weights(name).DEFAULT.meta
    model = torchvision.models.get_model(name, weights=None)
    prof = profile(model, (3, 224, 224))
    assert prof.params == meta["num_params"]
    gmacs = meta["_ops"]  # torchvision's "GFLOPS" are multiply-accumulates
    assert abs(prof.macs / 1e9 - gmacs) / gmacs < 0.02


def test_published_table_is_consistent_with_measured_counts():
    # our params/MACs at 224 agree with the published figures we cite (within rounding)
    from squeezenet.zoo import build_any

    for peer in PEERS:
        name, params_m, mmacs, top1, src = peer.name, peer.params_m, peer.mmacs, peer.top1, peer.source
        if name.startswith("timm:"):
            continue
        prof = profile(build_any(name).model, (3, 224, 224))
        # papers round; MobileNetV2's paper says 3.4 M where torchvision's model has 3.50 M
        assert abs(prof.params / 1e6 - params_m) / params_m < 0.04, name
        assert abs(prof.macs / 1e6 - mmacs) / mmacs < 0.03, name
        assert src and 40 < top1 < 90


def test_timm_peers_when_installed():
    timm = pytest.importorskip("timm", reason="timm is the optional 'peers' extra")
    m = timm.create_model("ghostnet_100", pretrained=False)
    prof = profile(m, (3, 224, 224))
    assert abs(prof.params / 1e6 - 5.2) < 0.1  # GhostNet paper: 5.2 M
    assert abs(prof.macs / 1e6 - 141) / 141 < 0.05  # GhostNet paper: 141 MMACs


def test_explain_name():
    info = explain_name("squeezenet1_1_simple_bypass_w0.5_160")
    assert info["version"] == "v1.1" and info["width"] == "0.5x"
    assert info["resolution"] == "160 px" and "simple bypass" in info["macro"]
    info = explain_name("squeezenet1_0_sr0.75")
    assert "SR 0.75" in info["design_space"]
    with pytest.raises(SqueezeNetError, match="unknown model"):
        explain_name("resnet50")


def test_width_and_resolution_in_name():
    m = create_model("squeezenet1_1_w0.5_160")
    assert m.default_cfg["input_size"] == (3, 160, 160)
    full = sum(p.numel() for p in create_model("squeezenet1_1").parameters())
    half = sum(p.numel() for p in m.parameters())
    assert 0.3 < half / full < 0.5  # conv10 scales linearly, the rest ~quadratically


def test_sweep_sizes_and_resume(tmp_path):
    r = sweep(sr=[0.125, 0.75], pct3x3=[0.5], out=str(tmp_path))
    by_sr = {row["sr"]: row for row in r["rows"] if row["axis"] == "SR"}
    assert by_sr[0.125]["params"] == SR_SWEEP[0.125][0]
    assert round(by_sr[0.75]["size_mib"], 2) == SR_SWEEP[0.75][1]  # paper: ~19 MB
    assert (tmp_path / "sweep_SR.png").is_file() and (tmp_path / "sweep.md").read_text().count("MiB") >= 1
    # a finished point is not recomputed: edit its JSON and see the edit survive
    p = next((tmp_path / "points").glob("SR_*sr0.125*.json"))
    d = json.loads(p.read_text())
    d["marker"] = 1
    p.write_text(json.dumps(d))
    r2 = sweep(sr=[0.125, 0.75], pct3x3=[0.5], out=str(tmp_path))
    assert any(row.get("marker") == 1 for row in r2["rows"])


def test_sweep_with_training(tmp_path, fmnist_dir):
    r = sweep(sr=[0.125], pct3x3=[], train_epochs=1, data_dir=str(fmnist_dir), download=False, out=str(tmp_path),
              batch_size=64, base="squeezenet1_1")
    row = r["rows"][0]
    assert row["top1"] is not None and 0 <= row["top1"] <= 100
    assert (tmp_path / "sweep_accuracy_vs_size.png").is_file()


def test_compare_smoke_skips_missing_optional_peer(tmp_path, monkeypatch):
    import squeezenet.errors as errors
    from squeezenet.compare import compare

    real = errors.require

    def no_timm(module, extra):
        if module == "timm":
            raise SqueezeNetError("optional dependency 'timm' is missing; install it with `pip install 'squeezenet-toolkit[peers]'`")
        return real(module, extra)

    monkeypatch.setattr(errors, "require", no_timm)
    r = compare(models=["squeezenet1_1", "tv:shufflenet_v2_x0_5", "timm:ghostnet_100"], input_size=64,
                backends=["eager"], repeats=2, out=str(tmp_path), batch_throughput=2)
    labels = [row["model"] for row in r["rows"]]
    assert "squeezenet1_1" in labels and "tv:shufflenet_v2_x0_5" in labels
    assert all(row["eager_b1_ms"] > 0 for row in r["rows"])
    assert (tmp_path / "compare.md").is_file()
    assert any("skipped timm:ghostnet_100" in n for n in r["notes"])


def test_sweep_counts_the_parameters_of_the_model_it_trained(tmp_path):
    """Trained points report the parameters of the model trained on *this* data (2 RGB
    classes here), not of a 10-class grayscale one."""
    from helpers import make_image_folder
    from squeezenet import create_model

    make_image_folder(tmp_path / "pets", ("cat", "dog"), n=8)
    r = sweep(sr=[0.125], pct3x3=[], train_epochs=1, data=str(tmp_path / "pets"), out=str(tmp_path / "s"),
              batch_size=4, base="squeezenet1_1")
    want = sum(p.numel() for p in create_model("squeezenet1_1_sr0.125_small_bn", num_classes=2).parameters())
    assert r["rows"][0]["trained_params"] == want


@pytest.mark.parametrize("threads", [1, None])
def test_compare_runs_onnx_runtime_on_the_threads_torch_gets(tmp_path, monkeypatch, threads):
    """compare's ort column ran ONNX Runtime's default session, sized by the host's physical
    cores, beside eager on --threads (or the cores the process may use): an unequal race."""
    ort = pytest.importorskip("onnxruntime")
    import squeezenet.machine as machine
    from squeezenet.compare import compare

    monkeypatch.setattr(machine, "usable_cores", lambda: 1)
    seen, real = [], ort.InferenceSession

    def recording(*args, **kw):
        opts = kw.get("sess_options") or (args[1] if len(args) > 1 else None)
        seen.append(opts.intra_op_num_threads if opts is not None else "ort default")
        return real(*args, **kw)

    monkeypatch.setattr(ort, "InferenceSession", recording)
    before = torch.get_num_threads()
    try:
        r = compare(models=["squeezenet1_1"], input_size=64, backends=["eager", "ort"], repeats=2, out=str(tmp_path),
                    batch_throughput=2, threads=threads)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)  # the rest of the suite keeps its threads
    assert r["rows"][0]["ort_b1_ms"] > 0 and not [n for n in r["notes"] if "no top-1 plot" not in n]
    assert "Threads: 1 for every backend" in (tmp_path / "compare.md").read_text()
    assert seen and all(t == 1 for t in seen), seen


def test_compare_measures_a_trained_model_file_beside_the_peers(tiny_run, tmp_path):
    """`compare --models RUN,NAME`: a model the user trained runs on its own input channels
    (1 here: a 3-channel input would fail in both backends and leave only notes) and its own
    weights, counted as the file's state dict counts it; a size other than the trained one is
    noted, the trained size is not."""
    from helpers import run_cli

    from squeezenet.compare import compare

    sd = torch.load(tiny_run / "best.pt", map_location="cpu", weights_only=True)["state_dict"]
    want = sum(v.numel() for k, v in sd.items() if k.rsplit(".", 1)[-1] in ("weight", "bias"))
    r = compare(models=[str(tiny_run), "squeezenet1_1"], input_size=28, backends=["eager", "ort"], repeats=2,
                out=str(tmp_path / "a"), batch_throughput=2)
    mine, peer = r["rows"]
    assert mine["model"] == str(tiny_run) and mine["params"] == want and mine["published_top1"] is None
    assert peer["params"] == TV_V11_PARAMS and peer["published_top1"]  # torchvision's squeezenet1_1 metadata
    assert all(row[k] > 0 for row in r["rows"] for k in ("eager_b1_ms", "ort_b1_ms", "ort_b2_img_s"))
    assert not [n for n in r["notes"] if "no top-1 plot" not in n], r["notes"]
    r = compare(models=[str(tiny_run / "best.pt")], input_size=32, backends=["eager"], repeats=2,
                out=str(tmp_path / "b"), batch_throughput=2)
    assert any("was trained at 28 px; measured here at 32 px" in n for n in r["notes"]), r["notes"]
    code, out, err = run_cli("compare", "--models", f"{tiny_run},tv:mobilenet_v3_small", "--input-size", "28",
                             "--backends", "eager", "--repeats", "2", "--out", tmp_path / "c")
    assert code == 0, err
    assert str(tiny_run) in out and "MobileNetV3" in out


def test_compare_refuses_a_bad_reference_before_timing_anything(tiny_run, tmp_path):
    """A misspelt name after a good one, an ONNX file, or --weights for a file: one line,
    exit 2, and nothing measured or written."""
    from helpers import assert_one_line, run_cli

    onnx = tmp_path / "m.onnx"
    assert run_cli("export", tiny_run / "best.pt", "--out", onnx)[0] == 0
    for models, extra, needle in [
        ("squeezenet1_1,squeezenet9_9", [], "squeezenet9_9"),
        (f"squeezenet1_1,{onnx}", [], "needs a PyTorch model"),
        (f"squeezenet1_1,{tiny_run}", ["--data", tmp_path, "--weights", f"{tiny_run}=w.pth"], "weights of its own"),
    ]:
        out = tmp_path / "out"
        code, _, err = run_cli("compare", "--models", models, "--backends", "eager", "--repeats", "2", "--out", out,
                               *extra)
        assert_one_line(code, err, needle)
        assert not out.exists()


def test_compare_refuses_a_busy_or_unwritable_folder_before_timing_anything(tmp_path, monkeypatch):
    """A folder another compare is writing (whose timings this one would disturb, and whose
    files it would mix with its own) or one that cannot be written: one line, exit 2, and
    nothing profiled or timed."""
    import squeezenet.compare as cmp
    from helpers import assert_one_line, run_cli
    from squeezenet.files import RunLock

    def timed(*a, **k):
        raise AssertionError("compare measured something")

    monkeypatch.setattr(cmp, "profile", timed)
    args = ("compare", "--models", "squeezenet1_1", "--backends", "eager", "--repeats", "2", "--input-size", "64")
    busy = tmp_path / "busy"
    with RunLock(busy):  # as another process's compare holds it
        assert_one_line(*run_cli(*args, "--out", busy)[::2], "in use by a running squeezenet process")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_one_line(*run_cli(*args, "--out", a_file / "sub")[::2], str(a_file))
    assert a_file.read_text() == "x"


def test_a_compare_that_fails_after_taking_its_folder_leaves_no_folder(tmp_path, monkeypatch):
    """A compare that took its folder and then could measure nothing (here its one model's
    profile fails) leaves neither the folder nor a lone lock file that would look like a run."""
    import squeezenet.compare as cmp
    from helpers import assert_one_line, run_cli
    from squeezenet.errors import SqueezeNetError

    def fails(*a, **k):
        assert (out / ".lock").is_file()  # the folder is taken by now
        raise SqueezeNetError("the model cannot be profiled")

    monkeypatch.setattr(cmp, "profile", fails)
    out = tmp_path / "new" / "cmp"
    code, _, err = run_cli("compare", "--models", "squeezenet1_1", "--backends", "eager", "--repeats", "2",
                           "--input-size", "64", "--out", out)
    assert_one_line(code, err, "cannot be profiled")
    assert not (tmp_path / "new").exists()
