import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("SQUEEZENET_CACHE", str(Path(__file__).parent / ".cache-tests"))
torch.set_num_threads(min(2, os.cpu_count() or 1))


def write_idx(path: Path, arr: np.ndarray):
    """Write an IDX file (gzipped), the format of MNIST / Fashion-MNIST."""
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def make_fmnist_like(root: Path, n_train=512, n_test=128, seed=0):
    """A small, learnable dataset in Fashion-MNIST's IDX layout: class c is a horizontal
    band at height 3 + 5 * (c // 2), bright (250) for even c and dim (140) for odd c, on
    noise. Random crops of +-2 px and flips keep the classes apart."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n)
        x = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(y):
            r = 3 + 5 * (c // 2)
            x[i, r:r + 3, 4:24] = 250 if c % 2 == 0 else 140
        write_idx(root / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", y)
    return root


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory):
    return make_fmnist_like(tmp_path_factory.mktemp("fmnist"))
