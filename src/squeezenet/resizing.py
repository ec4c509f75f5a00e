"""Progressive resizing: the early part of the schedule trains on smaller images.

``--progressive-resizing 24`` on 32 px images (or ``0.75``, a share of the full size: :func:`start_px`)
trains at 24 px, then grows the size by
:data:`STEP` px at a time along a linear ramp over :data:`GROWTH` of the schedule's steps, to
reach the full size at ``until`` of them (``--progressive-resizing-until``, default
:data:`UNTIL`: the ramp runs from 50% to 85%); the rest of the schedule, and every evaluation,
run at the full size, which is the size the model is recorded with. FFCV's ImageNet ResNet
recipes do the same near the end of training (160 -> 192 px, evaluated at 224-256). The size
follows the step and the schedule's total, as the learning rate does, so a time budget's re-plan
moves both together and a resumed run resizes exactly where it would have.

A smaller step costs less, and the budget planner (:mod:`squeezenet.budget`) counts each step in
full-size step equivalents (:func:`work`) with the relative costs measured on the run's own model
(``TimeBudget``), so the same minutes buy more steps. The batch is downscaled after augmentation,
bilinearly with antialiasing (:func:`resize`).
"""

from __future__ import annotations

import math
import typing

if typing.TYPE_CHECKING:  # torch is imported where it is used: the settings read UNTIL without it
    import torch

UNTIL = 0.85  # share of the schedule's steps by which the full size is reached (the default)
GROWTH = 0.35  # share of the schedule's steps the ramp from the smallest to the full size spans
STEP = 4  # px between the sizes of the ramp


def start_px(setting: int | float, full: int) -> int:
    """The size ``--progressive-resizing`` starts at for a run at ``full`` px: the setting
    itself when it is a size in px; when it is a share of the full size (0.75), that share
    rounded to a multiple of :data:`STEP` (0.75 of 32 px: 24; of 64: 48; of 28: 20), and 0
    (off) when that leaves no size of at least 8 px below the full one. 0: off."""
    if not setting:
        return 0
    if isinstance(setting, int) and not isinstance(setting, bool):
        return setting
    px = round(setting * full / STEP) * STEP
    return px if 8 <= px < full else 0


def ramp(until: float = UNTIL) -> tuple[float, float]:
    """(start, end) of the growth, as shares of the schedule's steps: the :data:`GROWTH` before
    ``until``, cut at the schedule's start (``until`` below GROWTH: the ramp starts at step 0)."""
    return max(0.0, until - GROWTH), until


def levels(low: int, full: int) -> list[int]:
    """The sizes a schedule trains at, smallest first: ``low``, ``low + STEP``, ..., ``full``."""
    return list(range(low, full, STEP)) + [full] if low < full else [full]


def starts(total: int, low: int, full: int, until: float = UNTIL) -> list[tuple[int, int]]:
    """(first step, px) of each size in a schedule of ``total`` steps. Size ``low + k*STEP``
    starts where the linear ramp from ``low`` (at its start) to ``full`` (at ``until``) passes
    it (:func:`ramp`); ``full`` starts at ``until``."""
    a, b = ramp(until)

    def share(px):  # of the schedule's steps, where this size starts
        if px == low:
            return 0.0
        return b if px == full else a + (b - a) * (px - low) / (full - low)

    return [(math.ceil(share(px) * total), px) for px in levels(low, full)]


def resolution_at(step: int, total: int, low: int, full: int, until: float = UNTIL) -> int:
    """The image size of global step ``step`` in a schedule of ``total`` steps."""
    px = low
    for first, size in starts(total, low, full, until):
        if step >= first:
            px = size
    return px


def work(start: int, end: int, total: int, low: int, full: int, rel: dict[int, float],
         until: float = UNTIL) -> float:
    """Steps ``start`` to ``end`` (exclusive) of a ``total``-step schedule, counted in
    full-size steps: each step weighs ``rel[px]``, its size's cost relative to the full size's."""
    bounds = starts(total, low, full, until) + [(max(end, total), None)]
    w = 0.0
    for (a, px), (b, _) in zip(bounds, bounds[1:]):
        w += max(0, min(b, end) - max(a, start)) * rel[px]
    return w


def full_size_steps(total: int, until: float, px_cost: dict | None) -> float:
    """A ``total``-step schedule's work in full-size steps, from the budget's measured costs
    (``px_cost``: size -> a step's cost relative to the full size's, the largest size the full
    one, the smallest the start): what runs that trained at different sizes can be compared
    by. Without costs (no progressive resizing) every step is a full-size step."""
    rel = {int(px): float(c) for px, c in (px_cost or {}).items()}
    if len(rel) < 2:
        return float(total)
    return work(0, total, total, min(rel), max(rel), rel, until)


def resize(x: torch.Tensor, px: int) -> torch.Tensor:
    """A normalised float batch (B, C, H, W) at ``px`` x ``px``: bilinear, antialiased (a
    triangle filter as wide as the reduction, as PIL's bilinear resize uses)."""
    import torch.nn.functional as F

    if x.shape[-1] == px and x.shape[-2] == px:
        return x
    return F.interpolate(x, size=(px, px), mode="bilinear", antialias=True, align_corners=False)


def price_sizes(model: torch.nn.Module, sizes: list[int], batch: int, channels: int, device, memory_format,
                autocast, clock, rounds: int = 3, passes: int = 3) -> dict[int, float]:
    """Each of ``sizes``' training-step cost relative to the last (the full size), timed on
    a copy of ``model``: a step (forward and backward of a batch of random images under
    ``autocast()`` in ``memory_format``, an SGD update) at each size in turn, the fastest of
    ``rounds`` kept. A step has a part that does not shrink with the image (per-operator
    overhead, the update), so a 24 px step costs more than (24/32)^2 of a 32 px one. Where
    ``clock`` cannot time a step (a test's fake clock), the pixels' ratio."""
    import copy

    import torch

    net = copy.deepcopy(model).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.0, momentum=0.9)
    best = {px: math.inf for px in sizes}
    for _ in range(rounds):
        for px in sizes:
            x = torch.randn(batch, channels, px, px, device=device).contiguous(memory_format=memory_format)
            for i in range(passes + 1):  # the first pass of a size is not timed (primitive creation)
                if i == 1:
                    t = clock()
                opt.zero_grad(set_to_none=True)
                with autocast():
                    net(x).float().logsumexp(1).mean().backward()
                opt.step()
            best[px] = min(best[px], (clock() - t) / passes)
    full = sizes[-1]
    if not best[full] > 0:
        return {px: (px / full) ** 2 for px in sizes}
    return {px: best[px] / best[full] for px in sizes}
