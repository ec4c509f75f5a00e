"""Probe: where a training step goes, and whether compiling it pays on this CPU.

    python benchmarks/probes/train_regional_compile_probe.py MODEL CHANNELS PX BATCH MODE

MODE:
  eager     the plain step (SGD, label smoothing, channels_last, fp32), the reference;
  compiled  torch.compile (inductor C++) of the forward and loss, backward by AOTAutograd;
  regional  torch.compile of BatchNorm + ReLU only, the convolutions left to oneDNN in eager
            mode: does fusing BN's and ReLU's memory passes pay?
  merged    each Fire's two expands as one 3x3 convolution (the 1x1 filters zero-padded to 3x3),
            one BatchNorm and one ReLU over the joined channels: the same function with no concat,
            at 9x the 1x1 expand's MACs. Does removing the concat and half the BN/ReLU calls pay?
  gemm1x1   every 1x1 convolution as the matrix product it is (addmm on the channels_last
            view), the rest eager: conv_efficiency_probe.py times oneDNN's 1x1 convolutions slower
            than addmm in isolation; does it carry over to the step?
  foreach   the eager step with SGD's multi-tensor (foreach) update: one call per step, not one per tensor;
  fused     the eager step with SGD's fused CPU kernel (fused=True);
  profile   the eager step under torch.profiler: self CPU time by operator, 5 steps, then by kind
            (convolutions, BatchNorm, ReLU, concat, pooling, the rest) with the bound on any fusion
            that leaves the convolutions to oneDNN: 1 / (the convolutions' share);
  profile-bf16  the same under bf16 autocast (what `--precision auto` picks on a CPU with avx512_bf16).

e.g. `squeezenet1_1_simple_bypass_small_bn_w0.5_sr0.25 1 28 128 regional` (the demo model; its
demo options are applied to names with w0.5) or `squeezenet1_1_small_bn 3 32 128 profile`.
Prints img/s of 30 steps on synthetic batches after 5 warm-up steps (compiling happens in
the warm-up). OpenMP settings are environment variables: `OMP_WAIT_POLICY=PASSIVE ... eager`.
"""

import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from squeezenet import create_model

torch._dynamo.config.cache_size_limit = 64


def bn_relu(x, w, b, rm, rv, mom):
    return F.relu(F.batch_norm(x, rm, rv, w, b, True, mom, 1e-5))


compiled_bn_relu = torch.compile(bn_relu, dynamic=False)


class BNReLU(nn.Module):
    def __init__(self, bn):
        super().__init__()
        self.bn = bn

    def forward(self, x):
        bn = self.bn
        if self.training:
            bn.num_batches_tracked.add_(1)
            return compiled_bn_relu(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum)
        return F.relu(bn(x))


def fuse_regions(m: nn.Module) -> None:
    for mod in m.modules():
        for a in ("squeeze", "expand1x1", "expand3x3"):
            if isinstance(getattr(mod, a + "_bn", None), nn.BatchNorm2d):
                setattr(mod, a + "_bn", BNReLU(getattr(mod, a + "_bn")))
                setattr(mod, a + "_activation", nn.Identity())
        if isinstance(mod, nn.Sequential) and hasattr(mod, "bn") and hasattr(mod, "relu"):
            mod.bn, mod.relu = BNReLU(mod.bn), nn.Identity()


class MergedFire(nn.Module):
    """Fire with its expands joined: conv3x3(pad(w1x1) ++ w3x3) -> one BN -> one ReLU."""

    def __init__(self, fire):
        super().__init__()
        self.squeeze, self.squeeze_bn, self.squeeze_activation = fire.squeeze, fire.squeeze_bn, fire.squeeze_activation
        self.w1, self.w3 = fire.expand1x1.weight, fire.expand3x3.weight
        bn = isinstance(fire.expand1x1_bn, nn.BatchNorm2d)
        self.b = None if bn else nn.Parameter(torch.cat([fire.expand1x1.bias.data, fire.expand3x3.bias.data]))
        self.bn = nn.BatchNorm2d(fire.out_channels) if bn else nn.Identity()

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze_bn(self.squeeze(x)))
        w = torch.cat([F.pad(self.w1, (1, 1, 1, 1)), self.w3], 0)
        return F.relu(self.bn(F.conv2d(x, w, self.b, padding=1)), inplace=True)


def gemm_forward(self, x):
    """A 1x1, stride-1 convolution of a channels_last batch as one addmm: (N*H*W, C) x (C, C_out)."""
    if not x.is_contiguous(memory_format=torch.channels_last):
        return F.conv2d(x, self.weight, self.bias)
    n, c, h, w = x.shape
    xm, wm = x.permute(0, 2, 3, 1).reshape(-1, c), self.weight.view(self.out_channels, c).t()
    y = torch.addmm(self.bias, xm, wm) if self.bias is not None else xm @ wm
    return y.view(n, h, w, self.out_channels).permute(0, 3, 1, 2)


def gemm_1x1(m: nn.Module) -> None:
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d) and mod.kernel_size == (1, 1) and mod.stride == (1, 1) and mod.groups == 1:
            mod.forward = gemm_forward.__get__(mod)


def merge_fires(m: nn.Module) -> None:
    from squeezenet.models.squeezenet import Fire

    for name, mod in list(m.features.items()):
        if isinstance(mod, Fire) and mod.expand1x1 is not None and mod.expand3x3 is not None:
            m.features[name] = MergedFire(mod)


KINDS = {  # aten operators (self time) by what they do in a SqueezeNet training step
    "convolutions (oneDNN)": ("mkldnn_convolution", "convolution_backward", "_convolution", "convolution"),
    "BatchNorm": ("native_batch_norm", "native_batch_norm_backward", "_batch_norm_impl_index",
                  "batch_norm"),
    "ReLU": ("relu", "relu_", "clamp_min", "clamp_min_", "threshold_backward"),
    "concat": ("cat",),
    "max pool": ("max_pool2d_with_indices", "max_pool2d_with_indices_backward"),
}


def print_kinds(averages) -> None:
    """Self CPU time by kind of operator, and what a fusion of everything but the
    convolutions could gain at most (all of it free)."""
    total = sum(e.self_cpu_time_total for e in averages)
    by = {k: 0.0 for k in KINDS}
    for e in averages:
        op = e.key.removeprefix("aten::")
        kind = next((k for k, ops in KINDS.items() if op in ops), None)
        if kind is not None and e.key.startswith("aten::"):
            by[kind] += e.self_cpu_time_total
    by["the rest (optimizer, loss, copies, autograd)"] = total - sum(by.values())
    for k, v in by.items():
        print(f"{k:45s} {100 * v / total:5.1f}%")
    conv = by["convolutions (oneDNN)"] / total
    print(f"bound if everything but the convolutions were free: {1 / conv:.2f}x")


def main():
    name, ch, px, bs, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    torch.manual_seed(0)
    opts = dict(head_relu=False, dropout=0.1) if "w0.5" in name else {}
    m = create_model(name, num_classes=10, in_chans=ch, **opts)
    if mode == "regional":
        fuse_regions(m)
    if mode == "merged":
        merge_fires(m)
    if mode == "gemm1x1":
        gemm_1x1(m)
    m = m.to(memory_format=torch.channels_last)
    how = {"foreach": dict(foreach=True), "fused": dict(fused=True)}.get(mode, dict(foreach=False))
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True, **how)
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(bs, ch, px, px).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (bs,))

    def fwd(x, y):
        if mode == "profile-bf16":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return crit(m(x), y)
        return crit(m(x), y)

    if mode == "compiled":
        fwd = torch.compile(fwd)

    def step():
        loss = fwd(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t = time.perf_counter()
    for _ in range(5):
        step()
    warm = time.perf_counter() - t
    if mode.startswith("profile"):
        from torch.profiler import profile

        with profile() as p:
            for _ in range(5):
                step()
        averages = p.key_averages()
        print(averages.table(sort_by="self_cpu_time_total", row_limit=20))
        print_kinds(averages)
        return
    t = time.perf_counter()
    for _ in range(30):
        step()
    dt = (time.perf_counter() - t) / 30
    print(f"{name} {mode} batch {bs}: {bs / dt:.0f} img/s ({dt * 1000:.1f} ms/step; warm-up {warm:.0f} s)")


if __name__ == "__main__":
    main()
