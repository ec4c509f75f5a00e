"""Probe: torch.compile of BatchNorm + ReLU only (regional compile), convolutions left to
oneDNN in eager mode: does fusing the two memory passes of BN and ReLU pay on this CPU?

    python benchmarks/probes/train_regional_compile_probe.py MODEL CHANNELS PX BATCH eager|regional

e.g. `squeezenet1_1_simple_bypass_small_bn_w0.5_sr0.25 1 28 128 regional` (the demo model). Prints img/s of
30 SGD steps on synthetic channels_last batches after 5 warm-up steps (compilation included in the warm-up).
"""
import sys
import time

import torch
from torch import nn
import torch.nn.functional as F
from squeezenet import create_model
torch._dynamo.config.cache_size_limit = 64
torch.manual_seed(0)
name, ch, px, bs, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
opts = dict(head_relu=False, dropout=0.1) if 'w0.5' in name else {}
m = create_model(name, num_classes=10, in_chans=ch, **opts)

def bnrelu(x, w, b, rm, rv, mom):
    return F.relu(F.batch_norm(x, rm, rv, w, b, True, mom, 1e-5))
cbnrelu = torch.compile(bnrelu, dynamic=False)
class BNReLU(nn.Module):
    def __init__(self, bn):
        super().__init__(); self.bn = bn
    def forward(self, x):
        bn = self.bn
        if self.training:
            bn.num_batches_tracked.add_(1)
            return cbnrelu(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum)
        return F.relu(bn(x))
if mode == "regional":
    for mod in m.modules():
        for a in ("squeeze", "expand1x1", "expand3x3"):
            if hasattr(mod, a + "_bn") and isinstance(getattr(mod, a + "_bn"), nn.BatchNorm2d):
                setattr(mod, a + "_bn", BNReLU(getattr(mod, a + "_bn"))); setattr(mod, a + "_activation", nn.Identity())
        if isinstance(mod, nn.Sequential) and hasattr(mod, "bn") and hasattr(mod, "relu"):
            mod.bn = BNReLU(mod.bn); mod.relu = nn.Identity()
m = m.to(memory_format=torch.channels_last)
opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True)
crit = nn.CrossEntropyLoss(label_smoothing=0.1)
x = torch.randn(bs, ch, px, px).contiguous(memory_format=torch.channels_last); y = torch.randint(0, 10, (bs,))
def step():
    loss = crit(m(x).float(), y)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
t=time.perf_counter()
for _ in range(5): step()
print("warm", time.perf_counter()-t)
t=time.perf_counter(); n=30
for _ in range(n): step()
dt=(time.perf_counter()-t)/n
print(f"{name} {mode} b{bs}: {bs/dt:.0f} img/s  {dt*1000:.1f} ms/step")
