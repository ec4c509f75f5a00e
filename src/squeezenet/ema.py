"""Exponential moving average of a model's weights (after timm's ``ModelEmaV2``)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEma:
    """A frozen copy of ``model`` whose floating-point state follows
    ``ema = decay * ema + (1 - decay) * model`` after each step; integer buffers
    (BatchNorm's step counter) are copied. The decay ramps up over the first steps,
    ``min(decay, (1 + step) / (10 + step))``, as timm's warm-up does."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self._pairs = list(zip(self.module.state_dict().values(), model.state_dict().values()))

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for e, m in self._pairs:
            if e.dtype.is_floating_point:
                e.lerp_(m, 1.0 - d)
            else:
                e.copy_(m)
