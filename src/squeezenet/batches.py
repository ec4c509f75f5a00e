"""Training batches: what one epoch feeds the optimizer.

Small-image data (uint8 tensors) is augmented per batch as tensors: random crop with
zero padding, horizontal flip, and optional random erasing and CutMix, all drawn from a seeded
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
                   random_erasing: float = 0.0, cutmix: float = 0.0):
    """Yield (step, normalised inputs, labels) of one epoch for this rank, from
    ``start_step`` on. Augmentation is drawn for the whole global batch on every rank
    and then sliced, so N processes see exactly what one process would, and a resumed
    epoch redraws the skipped steps to stay on the same random stream. With ``cutmix``
    > 0 the labels are class probabilities (B, classes) instead of indices."""
    steps = len(ds) // batch_size
    if steps == 0:
        raise SqueezeNetError(f"--batch-size {batch_size} is larger than the {len(ds)} training images")
    perm = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    h, w = ds.images.shape[2], ds.images.shape[3]
    local = batch_size // world
    mine = torch.arange(rank * local, (rank + 1) * local)  # this rank's positions in the global batch
    for step in range(steps):
        dy, dx, flip = augment_params(batch_size, spec.pad, aug_gen)
        boxes = erase_boxes(batch_size, h, w, random_erasing, aug_gen) if random_erasing > 0 else None
        mix = cutmix_box(h, w, cutmix, aug_gen) if cutmix > 0 else None
        if step < start_step:
            continue
        batch = perm[step * batch_size:(step + 1) * batch_size]

        def images(pos):  # the augmented images at these global positions
            x = augment_batch(ds.images[batch[pos]], spec.pad, dy[pos], dx[pos], flip[pos])
            return x if boxes is None else apply_erasing(x, boxes[pos])

        x, y = images(mine), ds.labels[batch[mine]]
        if mix is not None:
            partner = batch_size - 1 - mine  # the batch reversed, as timm's mixup pairs images
            # one process holds every partner already (its own batch reversed); N processes augment theirs
            x2 = x.flip(0) if world == 1 else images(partner)
            x, y = apply_cutmix(x, y, x2, ds.labels[batch[partner]], mix, len(spec.classes))
        elif cutmix > 0:  # an unmixed batch of a CutMix run: the same (B, classes) form
            y = torch.nn.functional.one_hot(y, len(spec.classes)).float()
        yield step, normalize(x, spec.mean, spec.std), y


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


def cutmix_box(h: int, w: int, p: float, generator: torch.Generator) -> tuple[int, int, int, int] | None:
    """One batch's CutMix box (Yun et al. 2019, arXiv:1905.04899, with their CIFAR
    setting alpha = 1, so the kept share is uniform on [0, 1]) as (y0, y1, x0, x1), or
    None for a batch left unmixed (probability 1 - p). The same four numbers are drawn
    either way, so the random stream does not depend on the outcome."""
    u = torch.rand(4, generator=generator).tolist()
    cut = (1.0 - u[1]) ** 0.5  # the box's side as a share of the image's
    cy, cx = int(u[2] * h), int(u[3] * w)
    bh, bw = int(h * cut), int(w * cut)
    y0, y1 = max(cy - bh // 2, 0), min(cy + bh // 2, h)
    x0, x1 = max(cx - bw // 2, 0), min(cx + bw // 2, w)
    return (y0, y1, x0, x1) if u[0] < p and y1 > y0 and x1 > x0 else None


def apply_cutmix(x: torch.Tensor, y: torch.Tensor, x2: torch.Tensor, y2: torch.Tensor, box, classes: int):
    """Paste ``x2``'s box into ``x`` and mix the labels by the pixels each image keeps:
    (images, (B, classes) probabilities)."""
    y0, y1, x0, x1 = box
    x = x.clone()
    x[:, :, y0:y1, x0:x1] = x2[:, :, y0:y1, x0:x1]
    pasted = (y1 - y0) * (x1 - x0) / (x.shape[2] * x.shape[3])
    one_hot = torch.nn.functional.one_hot
    target = one_hot(y, classes).float() * (1.0 - pasted) + one_hot(y2, classes).float() * pasted
    return x, target
