"""Magnitude pruning: per-layer densities (the paper's Table 1 preset) or a global
density, with masks that hold through fine-tuning."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import SqueezeNetError

# SqueezeNet paper Table 1, "sparsity" column read as the fraction of weights kept,
# per Fire module (squeeze, expand1x1, expand3x3); conv1 keeps all, conv10 20%.
PAPER_FIRE_DENSITY = {
    "fire2": (1.0, 1.0, 0.33), "fire3": (1.0, 1.0, 0.33), "fire4": (1.0, 1.0, 0.33), "fire5": (1.0, 1.0, 0.33),
    "fire6": (1.0, 0.5, 0.33), "fire7": (0.5, 1.0, 0.33), "fire8": (1.0, 0.5, 0.33), "fire9": (0.5, 1.0, 0.30),
}
PAPER_CONV10_DENSITY = 0.2
_FIRE_PARTS = ("squeeze", "expand1x1", "expand3x3")


def prunable(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv and linear layers, whose ``weight`` is pruned and shared."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def paper_density(name: str) -> float:
    """The paper's density for a layer name of our SqueezeNet (1.0 if not listed)."""
    parts = name.split(".")
    if parts[-1] == "conv10":
        return PAPER_CONV10_DENSITY
    for i, p in enumerate(parts):
        if p in PAPER_FIRE_DENSITY and i + 1 < len(parts) and parts[i + 1] in _FIRE_PARTS:
            return PAPER_FIRE_DENSITY[p][_FIRE_PARTS.index(parts[i + 1])]
    return 1.0


def density_plan(model: nn.Module, sparsity: str | float) -> dict[str, float]:
    """Per-layer density. ``'paper'`` uses Table 1; a float is a global density."""
    layers = prunable(model)
    if sparsity == "paper":
        if not any(paper_density(n) < 1 for n, _ in layers):
            raise SqueezeNetError("the paper's per-layer density applies to SqueezeNet layer names "
                                  "(fire2..fire9, conv10); use a global density such as 0.33")
        return {n: paper_density(n) for n, _ in layers}
    try:
        d = float(sparsity)
    except ValueError:
        raise SqueezeNetError(f"--sparsity must be 'paper' or a density in (0, 1], got '{sparsity}'") from None
    if not 0 < d <= 1:
        raise SqueezeNetError(f"density must be in (0, 1], got {d}")
    return {n: d for n, _ in layers} | {"__global__": d}


@torch.no_grad()
def compute_masks(model: nn.Module, plan: dict[str, float]) -> dict[str, torch.Tensor]:
    """Keep the largest-magnitude weights: per layer, or globally for a global plan."""
    layers = prunable(model)
    if "__global__" in plan:
        d = plan["__global__"]
        all_w = torch.cat([m.weight.detach().abs().flatten() for _, m in layers])
        k = max(1, int(round(d * all_w.numel())))
        thresh = all_w.kthvalue(all_w.numel() - k + 1).values if k < all_w.numel() else -1.0
        return {n: m.weight.detach().abs() >= thresh for n, m in layers}
    masks = {}
    for n, m in layers:
        w = m.weight.detach().abs().flatten()
        k = max(1, int(round(plan.get(n, 1.0) * w.numel())))
        mask = torch.zeros_like(w, dtype=torch.bool)
        mask[w.topk(k).indices] = True
        masks[n] = mask.view_as(m.weight)
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    mods = dict(model.named_modules())
    for n, mask in masks.items():
        mods[n].weight.mul_(mask.to(mods[n].weight.dtype))


def hold_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> list:
    """Zero the gradients of pruned weights (so momentum never revives them) and
    return the hook handles; call :func:`apply_masks` after each step as well."""
    mods = dict(model.named_modules())
    handles = []
    for n, mask in masks.items():
        m = mask.to(mods[n].weight.dtype)
        handles.append(mods[n].weight.register_hook(lambda g, m=m: g * m))
    return handles
