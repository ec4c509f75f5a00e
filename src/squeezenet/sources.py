"""Where data comes from, without PyTorch: Fashion-MNIST's IDX files (Debian's package,
``--data-dir``, the cache), ImageFolder trees, and the fingerprint of a train/validation
split. :mod:`squeezenet.data` builds training data on these; the torch-free evaluation
of an .onnx file (:mod:`squeezenet.deploy.onnx_eval`) reads them directly.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
from pathlib import Path

import numpy as np

from .errors import SqueezeNetError
from .imageio import IMG_EXTENSIONS
from .log import warn

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_NAMES = ("fashion-mnist", "fashion_mnist", "fmnist")  # what --data accepts for it


def default_cache_dir() -> Path:
    return Path(os.environ.get("SQUEEZENET_CACHE", Path.home() / ".cache" / "squeezenet"))


# --------------------------------------------------------------------------- IDX files

def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped), as used by MNIST and Fashion-MNIST."""
    path = str(path)
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("bad magic number")
        dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
        arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        if arr.size != int(np.prod(dims)):
            raise ValueError(f"expected {int(np.prod(dims))} values, found {arr.size}")
        return arr.reshape(dims)
    except (OSError, ValueError, struct.error, EOFError) as e:
        raise SqueezeNetError(f"corrupt IDX file '{path}': {e}; re-download the dataset") from e


def _fmnist_files(root: Path) -> dict | None:
    names = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
    for base in (root, root / "FashionMNIST" / "raw", root / "fashion-mnist"):
        found = {}
        for key, stem in names.items():
            for ext in (".gz", ""):
                if (base / (stem + ext)).is_file():
                    found[key] = base / (stem + ext)
                    break
        if len(found) == 4:
            return found
    return None


def find_fashion_mnist(data_dir: str | None = None, download: bool = True) -> dict:
    """Locate the four IDX files: in ``data_dir`` alone when it is given (a folder the user
    named is never silently swapped for another copy), else in Debian's package or the
    cache; then torchvision's downloader (into ``data_dir`` or the cache). Raises with
    instructions if all fail."""
    candidates = [Path(data_dir)] if data_dir else [Path(DEBIAN_FASHION_MNIST), default_cache_dir() / "data"]
    for c in candidates:
        files = _fmnist_files(c)
        if files:
            return files
    if download:
        target = Path(data_dir) if data_dir else default_cache_dir() / "data"
        try:
            import socket

            from torchvision.datasets import FashionMNIST

            old = socket.getdefaulttimeout()
            socket.setdefaulttimeout(15)
            try:
                FashionMNIST(str(target), train=True, download=True)
                FashionMNIST(str(target), train=False, download=True)
            finally:
                socket.setdefaulttimeout(old)
            files = _fmnist_files(target)
            if files:
                return files
        except Exception:  # any network/IO failure means: not available here
            pass
    where = ", ".join(str(c) for c in candidates)
    raise SqueezeNetError(
        f"Fashion-MNIST not found (looked in {where}{' and tried downloading' if download else ''}); "
        + ("put its four IDX files in that --data-dir, or drop --data-dir to use the installed copy" if data_dir else
           "install it with `apt-get install dataset-fashion-mnist` or pass --data-dir with the IDX files"))

# Images up to this size (px, longer side) are decoded once into uint8 tensors and trained
# with the small-image recipe; larger ones stream through DataLoader workers.
SMALL_IMAGE_MAX = 64


def train_folder(root: Path) -> Path:
    """The training images of an ImageFolder: ``root/train`` when there is one, else ``root``."""
    return root / "train" if (root / "train").is_dir() else root


def small_colour_folder(root: Path) -> bool:
    """Whether the first image of an ImageFolder (``root`` or ``root/train``) is an RGB image
    of at most SMALL_IMAGE_MAX px: a cheap look, not a check (loading reports bad trees)."""
    from PIL import Image

    root = train_folder(root)
    try:
        for c in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
            f = next((p for p in sorted(c.rglob("*")) if p.suffix.lower() in IMG_EXTENSIONS), None)
            if f is not None:
                with Image.open(f) as im:
                    return max(im.size) <= SMALL_IMAGE_MAX and im.mode not in ("L", "LA", "1", "I", "I;16", "F")
    except (OSError, ValueError):
        pass
    return False


def scan_folder(root: Path) -> tuple[list[tuple[str, int]], list[str]]:
    """List ``root/<class>/*`` images. Empty class folders are kept as classes (so the
    label space matches the tree) and reported on stderr."""
    if not root.is_dir():
        raise SqueezeNetError(f"image folder not found: '{root}'")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise SqueezeNetError(f"no class folders in '{root}'; expected {root}/<class>/<image>.jpg")
    samples = []
    for i, c in enumerate(classes):
        files = sorted(p for p in (root / c).rglob("*") if p.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            warn(f"class folder '{root / c}' has no images")
        samples += [(str(p), i) for p in files]
    if not samples:
        raise SqueezeNetError(f"no images found under '{root}'")
    if len(classes) == 1:
        warn(f"'{root}' has a single class folder ({classes[0]}); a classifier needs at least two "
             "(expected <root>/<class>/<image>)")
    return samples, classes


HELD_OUT_DIRS = ("val", "test")  # an ImageFolder's held-out images, in the order they are looked for


def held_out_folder(root: Path) -> Path | None:
    """``root``'s val/ (else test/) subfolder, or None without either."""
    return next((root / d for d in HELD_OUT_DIRS if (root / d).is_dir()), None)


def split_fingerprint(train_samples, val_samples, classes, root: Path | None = None) -> dict:
    """What a split holds, as counts and a SHA-256 over the class list and each split's
    (file, label) pairs, paths relative to ``root`` (so a moved tree keeps its split)."""
    h = hashlib.sha256(repr(list(classes)).encode())
    for tag, samples in (("train", train_samples), ("val", val_samples)):
        h.update(f"|{tag}:{len(samples)}".encode())
        for p, y in samples:
            rel = os.path.relpath(p, root) if root is not None else str(p)
            h.update(f"{rel}\0{y}\n".encode("utf-8", "surrogatepass"))
    return {"train": len(train_samples), "val": len(val_samples), "sha256": h.hexdigest()}


def match_classes(got: list[str], want: list[str], map_by_index: bool, name: str, where: str,
                  some_classes: bool = False) -> tuple[list[int] | None, str | None]:
    """How the data's labels map onto a model's outputs: (None, None) when the class names
    are the same; (mapping, note) for the same names in another order, or, with
    ``some_classes`` (evaluation only: a test folder without images of some classes; data
    that trains or calibrates a model must cover its classes), some of the model's
    classes, each remapped by name and still scored against all of the model's outputs;
    with ``map_by_index``, class i scored as output i; otherwise a one-line error."""
    if got == want:
        return None, None
    if len(set(got)) == len(got) and set(got) <= set(want) and (some_classes or len(got) == len(want)):
        if len(got) == len(want):
            return [want.index(c) for c in got], "the data's class order differs from the model's; labels remapped by name"
        missing = [c for c in want if c not in got]
        return [want.index(c) for c in got], (
            f"'{name}' has {len(got)} of the {len(want)} classes of {where} (none of {_few(missing)}); labels mapped "
            f"by name, and each image is still scored against all {len(want)} outputs")
    if map_by_index:
        if len(got) != len(want):
            raise SqueezeNetError(f"--map-by-index needs as many classes as the model has ({len(want)}); "
                                  f"'{name}' has {len(got)}")
        return list(range(len(got))), "class names differ from the model's; scored by index (--map-by-index)"
    raise SqueezeNetError(f"the data's classes ({_few(got)}) differ from {where}'s ({_few(want)}); evaluate on the "
                          "data it was trained on, or pass --map-by-index to score class i as output i")


def _few(names: list[str], n: int = 4) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names)} in all)" if len(names) > n else "")


def spread_over_classes(labels: list[int], n: int) -> list[int]:
    """Indices of ``n`` items taken round-robin over the classes (the first item of every
    class, then the second, ...), in their original order. A folder lists its classes one
    after another, so its first ``n`` images would be a few classes only (ImageNet's first
    1,000 validation images are classes 0-19): a subset must not be a prefix."""
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        by_class.setdefault(c, []).append(i)
    keep: list[int] = []
    for r in range(max((len(v) for v in by_class.values()), default=0)):
        keep += [by_class[c][r] for c in sorted(by_class) if r < len(by_class[c])][:n - len(keep)]
        if len(keep) == n:
            break
    return sorted(keep)
