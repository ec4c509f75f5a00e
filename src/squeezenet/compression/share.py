"""Weight sharing: per-layer k-means on the surviving weights, linear centroid
initialisation (Deep Compression section 3.2), and centroid fine-tuning in which the
gradients of all weights in a cluster are summed into their shared value."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import SqueezeNetError, require


def kmeans_linear(values: np.ndarray, k: int, max_iter: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1-D k-means (scikit-learn, Lloyd) with centroids initialised linearly between
    min and max. Returns (centroids float32 (k',), labels int (n,)), k' <= k when
    there are fewer distinct values than clusters."""
    sk = require("sklearn.cluster", "compress")
    v = np.asarray(values, dtype=np.float64).reshape(-1, 1)
    uniq = np.unique(v)
    if len(uniq) <= k:
        centroids = uniq.astype(np.float32)
        return centroids, np.searchsorted(uniq, v[:, 0]).astype(np.int64)
    init = np.linspace(v.min(), v.max(), k).reshape(-1, 1)
    km = sk.KMeans(n_clusters=k, init=init, n_init=1, max_iter=max_iter, algorithm="lloyd", random_state=seed)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty-cluster / convergence chatter
        labels = km.fit_predict(v)
    centroids = km.cluster_centers_[:, 0].astype(np.float32)
    # drop empty clusters, keep codebook sorted (stable, makes files deterministic)
    used = np.unique(labels)
    order = used[np.argsort(centroids[used])]
    remap = np.full(k, -1, dtype=np.int64)
    remap[order] = np.arange(len(order))
    return centroids[order], remap[labels]


class SharedLayer:
    """Codebook and cluster labels of one layer's nonzero weights."""

    def __init__(self, centroids: np.ndarray, labels: np.ndarray, mask: torch.Tensor, bits: int):
        self.centroids = torch.from_numpy(np.asarray(centroids, np.float32))
        self.labels = torch.from_numpy(np.asarray(labels, np.int64))
        self.mask = mask.bool()
        self.bits = bits

    def dense(self) -> torch.Tensor:
        w = torch.zeros(self.mask.shape, dtype=torch.float32)
        w[self.mask] = self.centroids[self.labels]
        return w


@torch.no_grad()
def share_weights(model: nn.Module, masks: dict[str, torch.Tensor], bits: int | dict[str, int]) -> dict[str, SharedLayer]:
    """Cluster each masked layer's surviving weights into 2**bits values, in place."""
    mods = dict(model.named_modules())
    shared = {}
    for name, mask in masks.items():
        b = bits[name] if isinstance(bits, dict) else bits
        if not 1 <= b <= 8:
            raise SqueezeNetError(f"bits must be between 1 and 8, got {b}")
        w = mods[name].weight
        vals = w.detach()[mask].cpu().numpy()
        if vals.size == 0:
            raise SqueezeNetError(f"layer '{name}' has no weights left after pruning; raise the density")
        c, lab = kmeans_linear(vals, 2 ** b)
        layer = SharedLayer(c, lab, mask, b)
        w.copy_(layer.dense().to(w.dtype))
        shared[name] = layer
    return shared


def hold_sharing(model: nn.Module, shared: dict[str, SharedLayer]) -> list:
    """Gradient hooks for centroid fine-tuning: each weight's gradient becomes the sum
    of its cluster's gradients (and 0 where pruned). Every member of a cluster then
    receives the same SGD update, so they stay equal to one shared centroid value."""
    mods = dict(model.named_modules())
    handles = []
    for name, layer in shared.items():
        mask, labels, k = layer.mask, layer.labels, len(layer.centroids)

        def hook(g, mask=mask, labels=labels, k=k):
            sums = torch.zeros(k, dtype=g.dtype).index_add_(0, labels, g[mask])
            out = torch.zeros_like(g)
            out[mask] = sums[labels]
            return out

        handles.append(mods[name].weight.register_hook(hook))
    return handles


@torch.no_grad()
def refresh_centroids(model: nn.Module, shared: dict[str, SharedLayer]) -> None:
    """Read back each cluster's (shared) value after fine-tuning into the codebook,
    and rewrite the weights from it so they are exactly codebook values."""
    mods = dict(model.named_modules())
    for name, layer in shared.items():
        w = mods[name].weight
        vals = w.detach()[layer.mask].float()
        k = len(layer.centroids)
        sums = torch.zeros(k).index_add_(0, layer.labels, vals)
        counts = torch.zeros(k).index_add_(0, layer.labels, torch.ones_like(vals))
        layer.centroids = (sums / counts.clamp(min=1)).float()
        w.copy_(layer.dense().to(w.dtype))
