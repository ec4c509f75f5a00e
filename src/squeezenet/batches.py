"""Training batches: what one epoch feeds the optimizer.

Small-image data (uint8 tensors) is augmented per batch as tensors: random crop with
zero padding, horizontal flip and optional random erasing, all drawn from a seeded
generator so a resumed run redraws exactly what it would have seen; large-image data
streams through DataLoader workers. :func:`normalize` is the one normalisation that
training and evaluation share.
"""

from __future__ import annotations

import torch

from .data import TensorDataset, collate_skip_bad, readable
from .errors import SqueezeNetError
from .spec import DataSpec


# --------------------------------------------------------------- training batches

def tensor_batches(ds: TensorDataset, spec: DataSpec, batch_size: int, seed: int, epoch: int,
                   aug_gen: torch.Generator, start_step: int = 0, rank: int = 0, world: int = 1,
                   random_erasing: float = 0.0):
    """Yield (step, normalised inputs, labels) of one epoch for this rank, from
    ``start_step`` on. Augmentation is drawn for the whole global batch on every rank
    and then sliced, so N processes see exactly what one process would, and a resumed
    epoch redraws the skipped steps to stay on the same random stream."""
    steps = len(ds) // batch_size
    if steps == 0:
        raise SqueezeNetError(f"--batch-size {batch_size} is larger than the {len(ds)} training images")
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    local = batch_size // world
    sl = slice(rank * local, (rank + 1) * local)
    for step in range(steps):
        dy, dx, flip = augment_params(batch_size, spec.pad, aug_gen)
        if random_erasing > 0:
            boxes = erase_boxes(batch_size, ds.images.shape[2], ds.images.shape[3], random_erasing, aug_gen)
        if step < start_step:
            continue
        idx = perm[step * batch_size:(step + 1) * batch_size][sl]
        x = augment_batch(ds.images[idx], spec.pad, dy[sl], dx[sl], flip[sl])
        if random_erasing > 0:
            x = apply_erasing(x, boxes[sl])
        yield step, normalize(x, spec.mean, spec.std), ds.labels[idx]


def loader_batches(ds, batch_size: int, seed: int, epoch: int, workers: int, start_step: int = 0, rank: int = 0,
                   world: int = 1):
    """The streaming (large-image) counterpart: DataLoader workers, bad files dropped."""
    sampler = torch.utils.data.distributed.DistributedSampler(ds, world, rank, shuffle=True, seed=seed,
                                                              drop_last=True)
    sampler.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size // world, sampler=sampler, num_workers=workers,
                                         collate_fn=collate_skip_bad, drop_last=True, persistent_workers=False)
    for step, (x, y) in enumerate(readable(loader)):
        if step < start_step or x is None:
            continue
        yield step, x, y


# --------------------------------------------------------------- per-batch augmentation

def normalize(x_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (B, C, H, W) -> normalised float32."""
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x_uint8.float().div_(255.0) - m) / s


def augment_params(n: int, pad: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random crop offsets (dy, dx in [0, 2*pad]) and flip flags for n images."""
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return dy, dx, flip


def augment_batch(x: torch.Tensor, pad: int, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Random crop with zero padding, then horizontal flip, on a uint8 (B, C, H, W) batch."""
    b, c, h, w = x.shape
    if pad > 0:
        xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p)
        iy = (torch.arange(h)[None, :] + dy[:, None])  # (B, H)
        ix = (torch.arange(w)[None, :] + dx[:, None])  # (B, W)
        ix = torch.where(flip[:, None], ix.flip(1), ix)
        bi = torch.arange(b)[:, None, None]
        x = xp.permute(0, 2, 3, 1)[bi, iy[:, :, None], ix[:, None, :]]  # (B, H, W, C)
        return x.permute(0, 3, 1, 2)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def erase_boxes(n: int, h: int, w: int, p: float, generator: torch.Generator,
                area=(0.02, 0.25), ratio=(0.3, 3.3)) -> torch.Tensor:
    """Random-erasing boxes (Zhong et al., 2017) as (n, 4) [y0, y1, x0, x1]; an empty
    box (y0 == y1) for images that keep all their pixels."""
    apply = torch.rand(n, generator=generator) < p
    a = torch.empty(n).uniform_(*area, generator=generator) * h * w
    r = torch.exp(torch.empty(n).uniform_(torch.log(torch.tensor(ratio[0])).item(),
                                          torch.log(torch.tensor(ratio[1])).item(), generator=generator))
    bh = torch.sqrt(a * r).round().clamp(1, h).long()
    bw = torch.sqrt(a / r).round().clamp(1, w).long()
    y0 = (torch.rand(n, generator=generator) * (h - bh + 1)).long()
    x0 = (torch.rand(n, generator=generator) * (w - bw + 1)).long()
    bh = torch.where(apply, bh, torch.zeros_like(bh))
    return torch.stack([y0, y0 + bh, x0, x0 + bw], 1)


def apply_erasing(x: torch.Tensor, boxes: torch.Tensor, value: int = 0) -> torch.Tensor:
    """Set each image's box to ``value`` (uint8 (B, C, H, W) in, same out)."""
    h, w = x.shape[-2:]
    ys, xs = torch.arange(h)[None, :], torch.arange(w)[None, :]
    iny = (ys >= boxes[:, 0:1]) & (ys < boxes[:, 1:2])  # (B, H)
    inx = (xs >= boxes[:, 2:3]) & (xs < boxes[:, 3:4])  # (B, W)
    m = (iny[:, :, None] & inx[:, None, :])[:, None]  # (B, 1, H, W)
    return x.masked_fill(m, value)
