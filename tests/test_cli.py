"""The command line: help, one-line errors, JSON summary, end-to-end train/eval/predict."""

import json
import os
import subprocess
import sys

import pytest

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def cli(*args, check=True):
    r = subprocess.run([sys.executable, "-m", "squeezenet", *args], capture_output=True, text=True, env=ENV,
                       timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}: {r.stderr}")
    return r


COMMANDS = ("list", "explain", "summary", "train", "eval", "predict", "export", "quantize", "bench", "compress",
            "compare", "sweep", "serve")


def test_help_lists_every_command():
    out = cli("--help").stdout
    import re

    block = out.split("positional arguments:")[1].split("options:")[0]
    listed = re.findall(r"^    (\S+)", block, flags=re.M)  # wrapped help lines are indented further
    assert listed == list(COMMANDS)
    from squeezenet.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    for c in COMMANDS:  # every command has its own help with a description
        assert sub[c].description and sub[c].format_help().startswith(f"usage: squeezenet {c}")
    assert "--resume" in sub["train"].format_help() and "--skip-integrity-check" in sub["predict"].format_help()


def test_summary_json_schema():
    d = json.loads(cli("summary", "squeezenet1_0", "--input-size", "227", "--format", "json").stdout)
    assert [row["name"] for row in d["layers"]][:3] == ["conv1", "maxpool1", "fire2"]
    assert set(d["layers"][0]) >= {"name", "output_shape", "params", "macs"}
    assert d["total"]["params"] == 1_248_424 and d["total"]["size_bytes"]["fp32"] == 4 * 1_248_424
    assert "multiply-accumulates" in d["convention"]


def test_summary_other_formats_and_peers():
    assert "MiB" in cli("summary", "squeezenet1_1").stdout
    csv = cli("summary", "tv:mobilenet_v3_small", "--format", "csv").stdout
    assert csv.splitlines()[0].startswith("name,kind,output_shape,params")


@pytest.mark.parametrize("args,needle", [
    (["summary", "squeezenet1_o"], "did you mean squeezenet1_"),
    (["summary", "squeezenet1_0", "--input-size", "8"], "does not accept input"),
    (["eval", "--checkpoint", "missing.pt"], "model file not found"),
    (["predict", "--checkpoint", "missing.pt", "x.png"], "model file not found"),
    (["compress", "--model", "squeezenet1_0", "--bits", "12"], "--bits must be between 1 and 8"),
    (["compress", "--model", "squeezenet1_0", "--distill"], "add --finetune-epochs"),
    (["compress", "--model", "squeezenet1_0", "--lr", "0.001"], "--lr set the fine-tune; add --finetune-epochs"),
    (["compress", "--model", "squeezenet1_0", "--lr", "0.001", "--batch-size", "64"], "--lr and --batch-size set"),
    (["bench", "squeezenet1_1", "--backends", "tensorrt"], "unknown backend"),
])
def test_bad_input_is_one_line(args, needle):
    r = cli(*args, check=False)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_train_eval_predict_end_to_end(tmp_path, fmnist_dir):
    out = tmp_path / "run"
    cli("train", "squeezenet1_1_small_bn_w0.25", "--data-dir", str(fmnist_dir), "--no-download", "--epochs", "1",
        "--batch-size", "64", "--out", str(out), "--no-progress")
    assert (out / "report.md").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["epochs"] == 1 and cfg["batch_size"] == 64
    r = cli("eval", "--checkpoint", str(out / "last.pt"), "--data-dir", str(fmnist_dir), "--no-download")
    assert "top-1" in r.stdout and (out / "last.pt.eval.json").is_file()
    r = cli("eval", "--checkpoint", str(out / "last.pt"), "--data-dir", str(fmnist_dir), "--no-download",
            "--tta", "flip", "--out", str(tmp_path / "tta.json"))
    assert "flip TTA" in r.stdout and json.loads((tmp_path / "tta.json").read_text())["tta"] == "flip"
    from PIL import Image
    import numpy as np

    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(img)
    r = cli("predict", "--checkpoint", str(out / "last.pt"), str(img), "--topk", "3")
    from squeezenet.evaluate import predict

    ((_, want),), _ = predict(str(out / "last.pt"), [str(img)], topk=3)
    assert r.stdout.splitlines() == [str(img)] + [f"  {p * 100:6.2f}%  {name}" for name, p in want]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    r = cli("predict", "--checkpoint", str(out / "last.pt"), str(bad), check=False)
    assert r.returncode == 2 and "cannot read image" in r.stderr
    r = cli("train", "--config", str(tmp_path / "none.toml"), check=False)
    assert r.returncode == 2 and "config file not found" in r.stderr


def test_config_file_is_used(tmp_path, fmnist_dir):
    cfgf = tmp_path / "c.toml"
    cfgf.write_text(f'model = "squeezenet1_1_small_bn_w0.25"\nepochs = 1\nbatch_size = 128\nmax_steps = 2\n'
                    f'data_dir = "{fmnist_dir}"\ndownload = false\nprogress = false\n')
    cli("train", "--config", str(cfgf), "--out", str(tmp_path / "r"))
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["batch_size"] == 128 and cfg["max_steps"] == 2
