"""Does a patch-whitening initialisation of the stem pay under a time budget?

    python benchmarks/probes/whiten_stem_probe.py --data DIR --config natural --budget 30m --out runs/whiten30
    python benchmarks/probes/whiten_stem_probe.py --data DIR --config natural --budget 30m --plain --out runs/plain30

The first conv of a SqueezeNet (the small stem: 3x3, stride 1) starts from the whitening
transform of the training images' 3x3 patches, as airbench (Jordan 2024) does for its
first layer: the covariance of C x 3 x 3 patches of normalised training images, its
eigenvectors v_i scaled by 1 / sqrt(lambda_i + eps), the k = min(F // 2, C * 9) of largest
variance used as filters in pairs (v_i, -v_i) so that the ReLU after BatchNorm keeps both
signs; the remaining F - 2k filters keep the default init. The architecture is unchanged
(same conv, same parameter count) and the weights stay trainable: this is an
initialisation, not a frozen preprocessor. ``--plain`` runs the same budget without it (the
baseline). Prints and writes the final top-1 (and flip TTA) as JSON.
"""

import torch
import torch.nn.functional as F
from torch import nn

from squeezenet.batches import normalize


def whitening_filters(images_uint8: torch.Tensor, mean, std, kernel: int, count: int, eps: float = 1e-2,
                      n_images: int = 5000, seed: int = 0) -> torch.Tensor:
    """(2k, C, kernel, kernel) filters: the top-k whitening directions of the images'
    patches and their negatives, k = count // 2 capped by the patch dimension."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images_uint8), generator=g)[:n_images]
    x = normalize(images_uint8[idx], mean, std)
    c = x.shape[1]
    p = F.unfold(x, kernel).transpose(1, 2).reshape(-1, c * kernel * kernel).double()
    p = p - p.mean(0)
    cov = p.T @ p / len(p)
    lam, vec = torch.linalg.eigh(cov)  # ascending
    k = min(count // 2, c * kernel * kernel)
    lam, vec = lam.flip(0)[:k], vec.flip(1)[:, :k]
    w = (vec / (lam + eps).sqrt()).T.float().reshape(k, c, kernel, kernel)
    return torch.cat([w, -w])


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def whiten_stem(tr) -> str:
    """Initialise ``tr``'s stem conv from its training images' patch whitening."""
    conv = first_conv(tr.model)
    w = whitening_filters(tr.splits.train.images, tr.spec.mean, tr.spec.std, conv.kernel_size[0],
                          conv.out_channels, seed=tr.cfg.seed)
    with torch.no_grad():
        conv.weight[:len(w)].copy_(w.to(conv.weight.dtype))
    return f"whitened {len(w)} of {conv.out_channels} stem filters"


def main() -> None:
    from recipe_lever_probe import probe_args, run_probe  # this folder is on sys.path when a probe runs

    a = probe_args(__doc__.split("\n\n")[0], **{"--plain": dict(action="store_true", help="the baseline")})
    run_probe(a, "plain" if a.plain else "whiten", "whiten_probe.json", whiten=not a.plain)


if __name__ == "__main__":
    main()
