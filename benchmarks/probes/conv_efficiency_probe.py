"""Probe: how close to this CPU's fp32 peak do a training step's convolutions run?

    python benchmarks/probes/conv_efficiency_probe.py MODEL CHANNELS PX [--batch 128] [--rounds 5]

Issue 18 asks for twice the training throughput. The profile
(``train_regional_compile_probe.py ... profile``) puts the convolutions at about half of a step,
so even if everything else cost nothing a step would be at most about 2x faster. This probe asks
the other half of the question: could the convolutions themselves run faster? For each
convolution of ``MODEL`` at ``PX`` px (the shapes of a real forward pass, channels_last, as the
trainer runs them) it times the training work alone, alternated over ``--rounds`` rounds:
the forward, the weight gradient and (except for the first layer, whose input needs none) the
input gradient, and gives its FLOP rate as a share of the fp32 peak measured in the same run
(``train_throughput.fp32_peak_gflops``: the best large sgemm). A 1x1 convolution is also timed
as the matrix product it is (``addmm`` on the channels_last view), a different kernel for the
same arithmetic. Then the sum over the layers against the whole step (SGD with momentum,
cross-entropy, random data) timed the same way.

e.g. ``squeezenet1_1_simple_bypass_small_bn_w0.5_sr0.25 3 32`` (the natural config's model on
CIFAR-10) or ``squeezenet1_1_small_bn 3 32`` (the throughput target's full-width v1.1). Medians
of ``--rounds``; nothing else should run.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from squeezenet import create_model
from squeezenet.machine import cpu_info

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from train_throughput import fp32_peak_gflops  # noqa: E402


def conv_shapes(model: nn.Module, x: torch.Tensor) -> list[tuple[str, nn.Conv2d, torch.Size]]:
    """(name, module, input shape) of each convolution, in the order a forward pass meets them."""
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.append((n, m, i[0].shape)))
             for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


def timed(fn, reps: int) -> float:
    """Seconds per call, the mean of ``reps`` calls after two untimed ones."""
    fn(), fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def conv_case(conv: nn.Conv2d, shape: torch.Size, first: bool):
    """(training FLOPs, the oneDNN closure, the addmm closure or None) for one convolution."""
    cl = torch.channels_last
    x = torch.randn(shape).contiguous(memory_format=cl).requires_grad_(not first)
    w = conv.weight.detach().clone().contiguous(memory_format=cl).requires_grad_()
    b = conv.bias.detach().clone().requires_grad_() if conv.bias is not None else None
    y = F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
    g = torch.randn_like(y).contiguous(memory_format=cl)
    leaves = [t for t in (x, w, b) if t is not None and t.requires_grad]
    macs = y.numel() * w[0].numel()  # per output: C_in / groups x k x k multiply-adds
    flops = 2 * macs * (3 if not first else 2)  # forward, weight gradient, input gradient

    def onednn():
        out = F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
        torch.autograd.grad(out, leaves, g)

    gemm = None
    if conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1 and conv.padding == (0, 0):
        n, c, h, wd = shape
        co = w.shape[0]

        def as_addmm():  # a view: channels_last is (N, H, W, C) in memory
            xm, wm = x.permute(0, 2, 3, 1).reshape(-1, c), w.view(co, c).t()
            return (torch.addmm(b, xm, wm) if b is not None else xm @ wm).view(n, h, wd, co).permute(0, 3, 1, 2)

        def gemm():
            torch.autograd.grad(as_addmm(), leaves, g)

        with torch.no_grad():  # the same product, or the comparison means nothing
            assert torch.allclose(F.conv2d(x, w, b), as_addmm(), atol=1e-3, rtol=1e-3)
    return flops, onednn, gemm


def step_closure(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y, label_smoothing=0.1).backward()
        opt.step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("channels", type=int)
    ap.add_argument("px", type=int)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    threads = torch.get_num_threads()
    name, flags = cpu_info()
    shown = sorted((flags or set()) & {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"})
    peak = fp32_peak_gflops(threads)
    print(f"{name}; flags {', '.join(shown)}; torch {torch.__version__}; {threads} threads; "
          f"fp32 peak {peak:.0f} GFLOP/s (best sgemm, this run)")
    torch.manual_seed(0)
    opts = dict(head_relu=False, dropout=0.1) if "w0.5" in a.model else {}
    model = create_model(a.model, num_classes=10, in_chans=a.channels, **opts).train()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(a.batch, a.channels, a.px, a.px).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (a.batch,))
    layers = conv_shapes(model, x)
    cases = [(n, *conv_case(m, s, i == 0), s, m) for i, (n, m, s) in enumerate(layers)]
    step = step_closure(model, x, y)
    t_conv = {n: [] for n, *_ in cases}
    t_gemm = {n: [] for n, _, _, gemm, *_ in cases if gemm}
    t_step = []
    for _ in range(a.rounds):  # alternated, so a drift of the host's speed reaches every column alike
        t_step.append(timed(step, a.reps))
        for n, flops, onednn, gemm, *_ in cases:
            t_conv[n].append(timed(onednn, a.reps))
            if gemm:
                t_gemm[n].append(timed(gemm, a.reps))
    med = {n: statistics.median(v) for n, v in t_conv.items()}
    med_gemm = {n: statistics.median(v) for n, v in t_gemm.items()}
    step_s = statistics.median(t_step)
    print(f"{a.model}, {a.channels} x {a.px} px, batch {a.batch}; training work per convolution (forward, "
          f"weight gradient, input gradient but for the first layer), medians of {a.rounds} rounds")
    print(f"{'layer':24s} {'input':>16s} {'out':>4s} {'k':>2s} {'MFLOP':>8s} {'ms':>7s} {'GFLOP/s':>8s} "
          f"{'% peak':>6s} {'addmm ms':>9s}")
    total_flops = 0
    for n, flops, _, _, s, m in cases:
        total_flops += flops
        g = f"{1e3 * med_gemm[n]:9.2f}" if n in med_gemm else f"{'':9s}"
        rate = flops / med[n] / 1e9
        print(f"{n:24s} {'x'.join(map(str, s[1:])):>16s} {m.out_channels:4d} {m.kernel_size[0]:2d} "
              f"{flops / 1e6:8.0f} {1e3 * med[n]:7.2f} {rate:8.1f} {100 * rate / peak:6.1f} {g}")
    conv_s = sum(med.values())
    print(f"convolutions: {1e3 * conv_s:.1f} ms of a {1e3 * step_s:.1f} ms step ({100 * conv_s / step_s:.0f}%), "
          f"{total_flops / conv_s / 1e9:.1f} GFLOP/s = {100 * total_flops / conv_s / 1e9 / peak:.0f}% of the peak; "
          f"at the peak they would take {1e3 * total_flops / peak / 1e9:.1f} ms")
    if med_gemm:
        print(f"1x1 convolutions: {1e3 * sum(med[n] for n in med_gemm):.1f} ms by oneDNN, "
              f"{1e3 * sum(med_gemm.values()):.1f} ms as addmm")
    print(f"step {a.batch / step_s:.0f} img/s; with every convolution at the peak and the rest unchanged "
          f"{step_s / (step_s - conv_s + total_flops / peak / 1e9):.2f}x; with the rest free and the "
          f"convolutions as measured {step_s / conv_s:.2f}x; with both {step_s * peak * 1e9 / total_flops:.2f}x")


if __name__ == "__main__":
    main()
