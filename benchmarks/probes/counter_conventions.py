"""How do fvcore, thop and ptflops count compared with our profiler? One run, same models.

Each tool is optional (`pip install fvcore thop ptflops`; none is a project dependency);
a missing one is reported as such. Models are profiled at 224 px on the CPU with random
weights. Ours: MACs of conv/linear/matmul with attention ("ours"), and with BatchNorm,
activations, pooling and element-wise adds at one MAC per element op ("ours+all").

Usage: python benchmarks/probes/counter_conventions.py [--models squeezenet1_1_simple_bypass_bn,tv:mobilenet_v3_small,tv:vit_b_16]
"""

import argparse
import contextlib
import io
import warnings

import torch

from squeezenet import profile
from squeezenet.zoo import build_any


def quiet(fn):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn()


def fvcore_macs(m, x):
    from fvcore.nn import FlopCountAnalysis

    return quiet(lambda: FlopCountAnalysis(m, x).total())  # fvcore's "flop" is one multiply-add


def thop_macs(m, x):
    import copy

    from thop import profile as thop_profile

    return quiet(lambda: thop_profile(copy.deepcopy(m), inputs=(x,))[0])


def ptflops_macs(m, x):
    from ptflops import get_model_complexity_info

    return quiet(lambda: get_model_complexity_info(m, tuple(x.shape[1:]), as_strings=False,
                                                   print_per_layer_stat=False)[0])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="squeezenet1_1_simple_bypass_bn,tv:mobilenet_v3_small,tv:vit_b_16")
    a = ap.parse_args()
    tools = {"fvcore": fvcore_macs, "thop": thop_macs, "ptflops": ptflops_macs}
    print("| model | ours (M) | ours+all (M) | " + " | ".join(f"{t} (M, x ours)" for t in tools) + " |")
    print("|---|---|---|" + "---|" * len(tools))
    for name in a.models.split(","):
        built = build_any(name)
        m, size = built.model.eval(), built.input_size
        x = torch.zeros(1, 3, size, size)
        ours = profile(m, (3, size, size)).macs
        every = profile(m, (3, size, size), extra=("bn", "act", "pool", "add")).macs
        cells = []
        for t, fn in tools.items():
            try:
                with torch.no_grad():
                    v = fn(m, x)
                cells.append(f"{v / 1e6:,.1f} ({v / ours:.3f})")
            except ImportError:
                cells.append("not installed")
            except Exception as e:  # a tool that cannot trace the model: say so
                cells.append(f"failed: {type(e).__name__}")
        print(f"| {name} @ {size} | {ours / 1e6:,.1f} | {every / 1e6:,.1f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
