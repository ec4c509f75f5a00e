"""Do the last two recipe levers of issue 18 pay under a time budget?

    python benchmarks/probes/recipe_lever_probe.py --data DIR --budget 15m --lever plain --out runs/p
    python benchmarks/probes/recipe_lever_probe.py --data DIR --budget 15m --lever bn-bias-lr=16 --out runs/b
    python benchmarks/probes/recipe_lever_probe.py --data DIR --budget 15m --lever lookahead=5,0.5 --out runs/l

Levers, each on top of the config's recipe (default: natural), the model unchanged:
  plain           the baseline;
  whiten          the stem initialised by patch whitening (whiten_stem_probe.py);
  bn-bias-lr=K    BatchNorm as airbench trains it (Jordan 2024): the BN scales frozen at 1 and
                  the BN biases learning at K times the schedule's rate. SGD's update is linear
                  in the gradient and these biases have no weight decay, so scaling their
                  gradient by K is exactly a K-times learning rate, momentum included;
  lookahead=K,A   Lookahead (Zhang et al. 2019) around the SGD: every K steps the slow weights
                  move a fraction A towards the fast ones and the fast weights restart from
                  them; the run ends on the slow weights;
  pools=L1,L2     SqueezeNet v1.1's max pools after these layers instead of Table 1's conv1,
                  fire3, fire5 (e.g. pools=fire3,fire5: a 32 px input keeps 32x32 through
                  fire3 and reaches fire9 at 8x8, not 4x4). Patched in this process only, before
                  the model is built; pair it with --set model=... for the width.
Prints and writes the final top-1 (and flip TTA) as JSON, with the epochs the budget bought.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import nn

from squeezenet.config import TrainConfig, layered, load_config_file
from squeezenet.evaluate import evaluate_checkpoint
from squeezenet.files import atomic_write_text
from squeezenet.train import Trainer


def bn_bias_lr(tr: Trainer, k: float) -> str:
    n = 0
    for m in tr.model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.requires_grad_(False)  # frozen at its init, 1
            m.bias.register_hook(lambda g: g * k)
            n += 1
    return f"{n} BatchNorms: scales frozen, biases at {k:g}x the learning rate"


def lookahead(tr: Trainer, k: int, alpha: float) -> str:
    params = [p for p in tr.model.parameters() if p.requires_grad]
    slow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def sync(t: Trainer) -> None:
        if t.global_step % k and t.global_step < t.total_steps:
            return
        for p, s in zip(params, slow):
            s.add_(p - s, alpha=alpha)
            p.copy_(s)

    tr.after_step.append(sync)
    return f"lookahead k={k}, alpha={alpha:g} over {len(params)} tensors"


def apply_lever(tr: Trainer, lever: str) -> str:
    name, _, arg = lever.partition("=")
    if name == "plain":
        return "plain"
    if name == "pools":
        from squeezenet import archs

        return f"max pools after {', '.join(archs.VERSIONS['1_1']['pools_after'])} (run_probe set them)"
    if name == "bn-bias-lr":
        return bn_bias_lr(tr, float(arg))
    if name == "whiten":
        from whiten_stem_probe import whiten_stem  # this folder is on sys.path when a probe runs

        return whiten_stem(tr)
    if name == "lookahead":
        k, alpha = arg.split(",")
        return lookahead(tr, int(k), float(alpha))
    raise SystemExit(f"error: unknown --lever '{lever}'; use plain, whiten, bn-bias-lr=K, lookahead=K,ALPHA or pools=L1,L2")


def probe_args(description: str, **extra) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data", required=True)
    ap.add_argument("--config", default="natural")
    ap.add_argument("--budget", default="15m")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", required=True)
    for flag, kw in extra.items():
        ap.add_argument(flag, **kw)
    return ap.parse_args()


def run_probe(a: argparse.Namespace, lever: str, json_name: str = "lever_probe.json", **row_extra) -> dict:
    """Train ``a.config`` under ``a.budget`` with ``lever`` applied; print and write the row."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from time_to_accuracy import parse_setting  # the one --set KEY=VALUE reader

    if lever.startswith("pools="):
        from squeezenet import archs

        archs.VERSIONS["1_1"]["pools_after"] = tuple(lever.partition("=")[2].split(","))
    overrides = dict(parse_setting(kv) for kv in a.set)
    settings = {**layered(load_config_file(a.config), overrides), "data": a.data, "time_budget": a.budget,
                "out": a.out, "progress": False}
    tr = Trainer(TrainConfig.from_dict(settings))
    what = apply_lever(tr, lever)
    print(what)
    res = tr.run()
    tta = evaluate_checkpoint(str(Path(a.out) / "last.pt"), a.data, tr.cfg.data_dir, tr.cfg.download,
                              tta="flip")["top1"]
    row = {**row_extra, "lever": lever, "what": what, "top1": res["final"]["test_top1"],
           "best_top1": res["best_top1"], "tta_top1": tta, "epochs": res["epochs_done"],
           "used_s": res["budget"]["spent"]}
    print(json.dumps(row))
    atomic_write_text(Path(a.out) / json_name, json.dumps({**row, "result": res}, indent=2, default=str))
    return row


def main() -> None:
    a = probe_args(__doc__.split("\n\n")[0], **{"--lever": dict(default="plain")})
    run_probe(a, a.lever)


if __name__ == "__main__":
    main()
