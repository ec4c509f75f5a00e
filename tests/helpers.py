"""Test helpers: data in Fashion-MNIST's IDX layout, small image folders, a quick run."""

import contextlib
import gzip
import io
import struct
from pathlib import Path

import numpy as np

TINY = "squeezenet1_1_small_bn_w0.25"


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


def make_image_folder(root: Path, classes=("cat", "dog"), n=6, size=16, seed=0, splits=("train", "val")):
    """A small RGB ImageFolder tree: class i is a flat colour (40 + 170 i) with noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in splits:
        for i, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for j in range(n):
                a = np.clip(rng.normal(40 + 170 * (i % 2), 10, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(d / f"{j}.png")
    return root


def run_cli(*args):
    """main() in-process: (exit code, stdout, stderr)."""
    from squeezenet.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # argparse
            code = e.code
    return code, out.getvalue(), err.getvalue()


def assert_one_line(code, err, needle, exit_code=2):
    """Exit code 2 (or ``exit_code``) and exactly one ``error:`` line containing ``needle``."""
    lines = [ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith(("note:", "warning:"))]
    assert code == exit_code, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in lines[0], lines[0]


def training_views(u8, pad: int, shift: int, mean, std) -> list:
    """`--tta flip-shift`'s 10 views of a uint8 (B, C, H, W) batch, drawn with training's own
    crop (offset pad + d) and flip (batches.augment_batch), then normalised as training does:
    unshifted, up, down, left, right (the view shows the pixel d rows/columns on), then their
    mirrors. The reference the TTA code is checked against."""
    import torch

    from squeezenet.batches import augment_batch, normalize

    n, out = len(u8), []
    for flip in (False, True):
        for dy, dx in ((0, 0), (-shift, 0), (shift, 0), (0, -shift), (0, shift)):
            crop = augment_batch(u8, pad, torch.full((n,), pad + dy), torch.full((n,), pad + dx),
                                 torch.full((n,), flip))
            out.append(normalize(crop, mean, std))
    return out
