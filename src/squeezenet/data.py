"""Datasets: Fashion-MNIST (the built-in default), CIFAR-10/100, and ImageFolder trees.

Small images (<= 64 px) are decoded once into a uint8 tensor, cached on disk, and
augmented per batch as tensors (random crop with padding, horizontal flip), which is
far cheaper on a 2-core CPU than a per-image PIL pipeline. Larger images use the
ImageNet-style pipeline (random resized crop / resize + centre crop) with DataLoader
workers.

Corrupt or unreadable images: when a small-image tree is decoded, each bad file is
reported by path on stderr and skipped; in the streaming large-image pipeline a bad
file is reported by path and dropped from its batch. Neither raises a traceback.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import NamedTuple
from pathlib import Path

import numpy as np
import torch

from .errors import SqueezeNetError
from .log import note, warn
from .sources import (FASHION_MNIST_CLASSES, FASHION_MNIST_NAMES, HELD_OUT_DIRS, default_cache_dir,
                      find_fashion_mnist, held_out_folder, match_classes, read_idx, scan_folder, split_fingerprint, spread_over_classes, train_folder,
                      SMALL_IMAGE_MAX)
from .spec import IMAGENET_GRAY_MEAN, IMAGENET_GRAY_STD, IMAGENET_MEAN, IMAGENET_STD, DataSpec

# Bump when the decoder's output for the same file can change (resize, bit-depth or mode
# handling, EXIF orientation): the decoded-image cache is keyed on it.
DECODE_VERSION = 3


# --------------------------------------------------------------------------- datasets

@dataclass
class TensorDataset:
    """Images held in memory as uint8 (N, C, H, W) with int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    def subset(self, n_or_index) -> "TensorDataset":
        """The first ``n`` images (an int) or those at the given indices (a tensor)."""
        if isinstance(n_or_index, int):
            n_or_index = slice(0, n_or_index)
        return TensorDataset(self.images[n_or_index], self.labels[n_or_index], self.classes)

    def spread(self, n: int) -> "TensorDataset":
        """``n`` images taken round-robin over the classes (:func:`spread_over_classes`)."""
        return self.subset(torch.tensor(spread_over_classes(self.labels.tolist(), n), dtype=torch.int64))

    def relabel(self, mapping: list[int], classes: list[str]) -> "TensorDataset":
        """Labels mapped through ``mapping`` (old index -> new index), new class names."""
        return TensorDataset(self.images, torch.tensor(mapping, dtype=torch.int64)[self.labels], list(classes))

    def resized(self, size: int) -> "TensorDataset":
        """Every image resized to ``size`` px with the resize that inference uses."""
        if self.image_size == size and self.images.shape[-2] == size:
            return self
        from .imageio import resize_array

        x = self.images.numpy()
        out = np.stack([resize_array(a, size) for a in x]) if len(x) else np.zeros((0, x.shape[1], size, size), np.uint8)
        return TensorDataset(torch.from_numpy(out), self.labels, self.classes)


@dataclass
class DataRef:
    """Where evaluation and fine-tuning data come from (the trio every command takes)."""

    data: str | None = None
    data_dir: str | None = None
    download: bool = True


@dataclass
class Splits:
    train: object
    test: object
    spec: DataSpec
    notes: list[str] = field(default_factory=list)
    # which images are in each split: {"train": n, "val": n, "sha256": ...}; a resumed run
    # must see the same split (see checkpoint.check_resume)
    split: dict = field(default_factory=dict)
    # the data's own name ('fashion-mnist', 'folder:<name>'); load_data_for keeps it here
    # when it puts the model's spec in ``spec``
    source: str = ""


def load_fashion_mnist(data_dir: str | None = None, download: bool = True) -> tuple[TensorDataset, TensorDataset]:
    files = find_fashion_mnist(data_dir, download)
    out = []
    for split in ("train", "test"):
        x = read_idx(files[f"{split}_images"])
        y = read_idx(files[f"{split}_labels"])
        if x.ndim != 3 or len(x) != len(y):
            raise SqueezeNetError(f"corrupt Fashion-MNIST {split} files: {len(x)} images, {len(y)} labels")
        out.append(TensorDataset(torch.from_numpy(x.copy()).unsqueeze(1),
                                 torch.from_numpy(y.astype(np.int64)), list(FASHION_MNIST_CLASSES)))
    return out[0], out[1]


def load_cifar(name: str, data_dir: str | None, download: bool = False) -> tuple[TensorDataset, TensorDataset]:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    root = data_dir or str(default_cache_dir() / "data")
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    try:
        with _quiet_stdout():  # torchvision prints download progress and URLs
            sets = [cls(root, train=t, download=download) for t in (True, False)]
    except Exception as e:  # not there, no network (URLError), a damaged archive: all the same to the user
        tried = " and could not be downloaded (no network?)" if download else ""
        raise SqueezeNetError(f"{name} not found under '{root}'{tried}: put torchvision's '{folder}' folder there "
                              "(or pass --data-dir with it)") from e
    return tuple(TensorDataset(torch.from_numpy(s.data).permute(0, 3, 1, 2).contiguous(),
                               torch.tensor(s.targets, dtype=torch.int64), list(s.classes)) for s in sets)


def _quiet_stdout():
    import contextlib
    import io

    return contextlib.redirect_stdout(io.StringIO())


# ----------------------------------------------------------------------- ImageFolder

def load_image(path: str, mode: str = "RGB"):
    """Open an image fully (so truncation is caught here) or raise SqueezeNetError; the
    bit depth is respected (see :mod:`squeezenet.imageio`)."""
    from .imageio import open_image

    return open_image(path, mode)


PROBED_IMAGES = 20  # images whose size decides a folder's native size, spread over its classes


def _probe_size(samples, mode) -> tuple[int, int, str | None]:
    """(width, height) of the largest of up to :data:`PROBED_IMAGES` readable images taken
    round-robin over the classes (not the folder's first image alone), and a note when they
    differ in size."""
    sizes = []
    for i in spread_over_classes([y for _, y in samples], 3 * PROBED_IMAGES):
        try:
            sizes.append(load_image(samples[i][0], mode).size)
        except SqueezeNetError:
            continue
        if len(sizes) == PROBED_IMAGES:
            break
    if not sizes:
        raise SqueezeNetError("could not read any of the images probed across the classes; is this an image folder?")
    w, h = max(sizes, key=lambda wh: (max(wh), wh))
    if len(set(sizes)) == 1:
        return w, h, None
    lo = min(sizes, key=lambda wh: (max(wh), wh))
    return w, h, (f"images differ in size ({lo[0]}x{lo[1]} to {w}x{h} px among {len(sizes)} probed across the "
                  f"classes); the largest decides the input size unless --input-size is given")


def decode_cache_key(samples, classes, size: int, mode: str) -> str:
    """Everything that determines the decoded tensors: the decoder's version, size and
    mode, the class list, and every file with its label, size and modification time."""
    h = hashlib.sha256(repr((DECODE_VERSION, size, mode, list(classes))).encode())
    for p, y in samples:
        st = os.stat(p)
        h.update(f"{p}\0{y}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32]


def _read_decode_cache(path: Path, classes, key: str) -> TensorDataset | None:
    """The cached tensors, or None when the file is missing, unreadable or not for this key."""
    try:
        d = torch.load(path, weights_only=True)
        if d.get("key") != key or d.get("classes") != list(classes) or len(d["images"]) != len(d["labels"]):
            return None
        return TensorDataset(d["images"], d["labels"], list(classes))
    except Exception:  # a damaged cache file is rebuilt, never trusted
        return None


def _decode_folder(samples, classes, size: int, mode: str, cache: Path | None,
                   what: str = "the folder") -> TensorDataset:
    """Decode a small-image tree once into uint8 tensors (cached), skipping bad files."""
    key = decode_cache_key(samples, classes, size, mode)
    path = cache / f"folder-{key}.pt" if cache else None
    if path and path.is_file():
        ds = _read_decode_cache(path, classes, key)
        if ds is not None:
            return ds
    from .imageio import image_to_array
    from .progress import progress

    imgs, labels = [], []
    for p, y in progress(samples, "decoding images", min_total=2000):
        try:
            imgs.append(image_to_array(p, 1 if mode == "L" else 3, size))
        except SqueezeNetError as e:
            warn(f"skipping {e}")
            continue
        labels.append(y)
    if not imgs:
        raise SqueezeNetError(f"every image of {what} ({len(samples)}) was unreadable; check the files")
    empty = [c for i, c in enumerate(classes) if i not in set(labels)]
    if empty:
        warn(f"class folder(s) {', '.join(empty)} have no readable images; the model will still have an output "
             "for each")
    ds = TensorDataset(torch.from_numpy(np.stack(imgs)), torch.tensor(labels, dtype=torch.int64), classes)
    if path:
        from .files import atomic_save

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save({"images": ds.images, "labels": ds.labels, "classes": list(classes), "key": key}, path)
    return ds


class BadImage(NamedTuple):
    message: str  # why the image could not be read, naming its path


class FolderDataset(torch.utils.data.Dataset):
    """Streaming ImageFolder; an unreadable image yields a :class:`BadImage`, which the
    loader's collate drops and the main process reports (:func:`readable`)."""

    def __init__(self, samples, classes, transform, mode="RGB"):
        self.samples, self.classes, self.transform, self.mode = samples, classes, transform, mode
        self.labels = torch.tensor([y for _, y in samples])

    def __len__(self):
        return len(self.samples)

    def subset(self, n: int) -> "FolderDataset":
        """The first ``n`` images."""
        return type(self)(self.samples[:n], self.classes, self.transform, self.mode)

    def spread(self, n: int) -> "FolderDataset":
        """``n`` images taken round-robin over the classes (:func:`spread_over_classes`)."""
        keep = spread_over_classes([y for _, y in self.samples], n)
        return type(self)([self.samples[i] for i in keep], self.classes, self.transform, self.mode)

    def with_transform(self, transform) -> "FolderDataset":
        return type(self)(self.samples, self.classes, transform, self.mode)

    def relabel(self, mapping: list[int], classes: list[str]) -> "FolderDataset":
        return type(self)([(p, mapping[y]) for p, y in self.samples], list(classes), self.transform, self.mode)

    def open(self, path):
        """The Pillow image of ``path`` (:func:`load_image`: EXIF orientation applied)."""
        return load_image(path, self.mode)

    def __getitem__(self, i):
        path, y = self.samples[i]
        try:
            return self.transform(self.open(path)), y
        except SqueezeNetError as e:
            return BadImage(str(e))


def collate_skip_bad(batch):
    """(inputs or None, labels or None, [why each dropped image was unreadable])."""
    good = [b for b in batch if not isinstance(b, BadImage)]
    bad = [b.message for b in batch if isinstance(b, BadImage)]
    if not good:
        return None, None, bad
    x, y = torch.utils.data.default_collate(good)
    return x, y, bad


def readable(loader):
    """(inputs or None, labels or None) per batch of a loader built with
    :func:`collate_skip_bad`, reporting each skipped image here, in the main process."""
    for x, y, bad in loader:
        for message in bad:
            warn(f"skipping {message}")
        yield x, y


def _split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g).tolist()
    n_val = max(1, int(round(n * val_fraction)))
    return perm[n_val:], perm[:n_val]


def _mean_std(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Channel mean and std over up to 20,000 images evenly spaced through the set (not
    its first 20,000: a folder's are its first classes)."""
    idx = torch.linspace(0, len(images) - 1, min(len(images), 20000)).round().long()
    x = images[idx].float() / 255.0  # (N, C, H, W)
    return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).tolist()


def check_source(data: str, data_dir: str | None = None, download: bool = True, val_fraction: float = 0.1) -> None:
    """Raise the one-line error :func:`load_data` would for data that is not there, without
    decoding an image: a named dataset is found (or downloaded), a folder holds class
    folders and enough images to hold some out. For commands that hand the data on to
    later work (a sweep's points)."""
    name = data.lower()
    if name in FASHION_MNIST_NAMES:
        find_fashion_mnist(data_dir, download)
    elif name in ("cifar10", "cifar100"):
        load_cifar(name, data_dir, download)
    else:
        root = Path(data)
        samples, _ = scan_folder(train_folder(root))
        if held_out_folder(root) is None:
            _check_can_hold_out(root, samples, val_fraction)


def _check_can_hold_out(root: Path, samples: list, val_fraction: float) -> None:
    if len(samples) < 2:
        raise SqueezeNetError(f"'{root}' has {len(samples)} image(s): too few to hold out {val_fraction:.0%} for "
                              "validation and train on the rest; add images, or a val/ folder beside train/")


def load_data(data: str = "fashion-mnist", data_dir: str | None = None, input_size: int | None = None,
              val_fraction: float = 0.1, seed: int = 0, download: bool = True, grayscale: bool | None = None,
              cache: bool = True, check_split=None) -> Splits:
    """Load a dataset by name (fashion-mnist, cifar10, cifar100) or ImageFolder path.

    Returns train and test (or validation) splits plus a :class:`DataSpec`. Small-image
    data comes back as :class:`TensorDataset`; larger images as streaming datasets.
    ``check_split(split, holdout)`` is called for a folder once its split is drawn and
    before any image is decoded (evaluation refuses a changed folder there).
    """
    name = data.lower()
    notes = []
    if name in FASHION_MNIST_NAMES:
        train, test = load_fashion_mnist(data_dir, download)
        name = "fashion-mnist"
    elif name in ("cifar10", "cifar100"):
        train, test = load_cifar(name, data_dir, download)
    else:
        return _load_folder(Path(data), input_size, val_fraction, seed, grayscale, cache, check_split)
    if input_size and input_size != train.image_size:  # what training sees is what inference gets
        notes.append(f"images resized from {train.image_size} to {input_size} px (Pillow bilinear)")
        train, test = train.resized(input_size), test.resized(input_size)
    mean, std = _mean_std(train.images)
    size = train.image_size
    spec = DataSpec(name, train.classes, train.channels, size, mean, std, True,
                    pad=2 if size <= 28 else 4)
    split = {"train": len(train), "val": len(test),
             "sha256": hashlib.sha256(train.labels.numpy().tobytes() + test.labels.numpy().tobytes()).hexdigest()}
    return Splits(train, test, spec, notes, split)


def _load_folder(root: Path, input_size, val_fraction, seed, grayscale, cache, check_split=None) -> Splits:
    train_dir = train_folder(root)
    val_dir = held_out_folder(root)
    samples, classes = scan_folder(train_dir)
    notes = []
    if val_dir is not None:
        val_samples, val_classes = scan_folder(val_dir)
        if val_classes != classes:
            raise SqueezeNetError(f"class folders of '{val_dir}' differ from '{train_dir}'")
    else:
        _check_can_hold_out(root, samples, val_fraction)
        tr, va = _split_indices(len(samples), val_fraction, seed)
        val_samples = [samples[i] for i in va]
        samples = [samples[i] for i in tr]
        notes.append(f"no val/ folder: held out {len(val_samples)} images ({val_fraction:.0%}, seed {seed}) for validation")
    split = split_fingerprint(samples, val_samples, classes, root)
    # which images were held out, recorded with the model so evaluation redraws the same split
    holdout = {} if val_dir is not None else {"holdout": {"val_fraction": val_fraction, "seed": seed,
                                                          "sha256": split["sha256"]}}
    if check_split is not None:
        check_split(split, holdout.get("holdout"))
    mode = "L" if grayscale else "RGB"
    w, h, mixed = _probe_size(samples, mode)
    notes += [mixed] if mixed and not input_size else []
    native = max(w, h)
    if native <= SMALL_IMAGE_MAX and (input_size is None or input_size <= SMALL_IMAGE_MAX):
        size = input_size or native
        cache_dir = default_cache_dir() / "decoded" if cache else None
        train = _decode_folder(samples, classes, size, mode, cache_dir, f"the training images of '{train_dir}'")
        test = _decode_folder(val_samples, classes, size, mode, cache_dir,
                              f"'{val_dir}'" if val_dir else f"the images held out of '{train_dir}'")
        mean, std = _mean_std(train.images)
        spec = DataSpec(f"folder:{root.name}", classes, train.channels, size, mean, std, True,
                        pad=max(2, size // 8), extra=holdout)
        return Splits(train, test, spec, notes, split)
    from torchvision.transforms import v2 as T

    size = input_size or 224
    mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    ch = 1 if grayscale else 3
    if ch == 1:
        mean, std = list(IMAGENET_GRAY_MEAN), list(IMAGENET_GRAY_STD)
    train_tf = T.Compose([T.RandomResizedCrop(size, antialias=True), T.RandomHorizontalFlip(), *_to_tensor(mean, std)])
    spec = DataSpec(f"folder:{root.name}", classes, ch, size, mean, std, small=False, extra=holdout)
    return Splits(FolderDataset(samples, classes, train_tf, mode),
                  FolderDataset(val_samples, classes, _large_eval_transform(size, mean, std), mode), spec, notes, split)


def _to_tensor(mean, std) -> list:
    from torchvision.transforms import v2 as T

    return [T.PILToTensor(), T.ToDtype(torch.float32, scale=True), T.Normalize(mean, std)]


def _large_eval_transform(size: int, mean, std):
    """Resize to ``eval_resize(size)`` and centre-crop ``size``: how large images are evaluated."""
    from torchvision.transforms import v2 as T

    from .imageio import eval_resize

    return T.Compose([T.Resize(eval_resize(size), antialias=True), T.CenterCrop(size), *_to_tensor(mean, std)])


def eval_only_folder(data: str | None) -> Path | None:
    """The val/ (or test/) folder of ``data`` when that is all it holds: a set of images to
    score, without the training images a train/ folder would hold. None otherwise."""
    if not data or data.lower() in (*FASHION_MNIST_NAMES, "cifar10", "cifar100") or not Path(data).is_dir():
        return None
    subdirs = {d.name for d in Path(data).iterdir() if d.is_dir() and not d.name.startswith(".")}
    return held_out_folder(Path(data)) if subdirs and subdirs <= set(HELD_OUT_DIRS) else None


def _load_eval_folder(val_dir: Path, spec: DataSpec, cache: bool = True) -> Splits:
    """``val_dir``'s images prepared as ``spec`` says the model was trained (its input size,
    channels and, for large images, resize and centre crop): the test split alone."""
    samples, classes = scan_folder(val_dir)
    mode = "L" if spec.channels == 1 else "RGB"
    if spec.small:
        cache_dir = default_cache_dir() / "decoded" if cache else None
        test = _decode_folder(samples, classes, spec.input_size, mode, cache_dir, f"'{val_dir}'")
    else:
        test = FolderDataset(samples, classes, _large_eval_transform(spec.input_size, spec.mean, spec.std), mode)
    got = DataSpec(f"folder:{val_dir.parent.name}", classes, spec.channels, spec.input_size, spec.mean, spec.std,
                   spec.small)
    return Splits(None, test, got, [f"'{val_dir.parent}' holds {val_dir.name}/ alone: scoring its "
                                    f"{len(samples)} images"], split_fingerprint([], samples, classes, val_dir.parent))


# ------------------------------------------------------------- data for a trained model

def _valid_holdout(h) -> bool:
    return (isinstance(h, dict) and isinstance(h.get("val_fraction"), float) and 0 < h["val_fraction"] < 1
            and isinstance(h.get("seed"), int) and h["seed"] >= 0 and isinstance(h.get("sha256"), str))


def check_holdout(split: dict, drawn, holdout, name: str, where: str) -> None:
    """A folder without val/ is split again as training split it; scoring it is honest only
    when that redraws exactly the images the model never saw. A model that recorded its
    held-out images is checked against them (an error when the folder changed); one that
    did not gets a warning, because the default split may include its training images."""
    if drawn is None:  # the folder has val/ (or the data is a named dataset)
        return
    if holdout is None:
        warn(f"{where} does not record which images of '{name}' it held out; the validation split is redrawn "
             "with the defaults (10%, seed 0), which can include its training images if it was trained otherwise")
    elif not _valid_holdout(holdout) or holdout["sha256"] != split["sha256"]:
        raise SqueezeNetError(f"'{name}' no longer holds the images {where} was trained and validated on, so its "
                              "held-out split cannot be rebuilt (scores could include training images); evaluate "
                              "on a folder with a val/ subfolder of images it never saw")


def load_data_for(spec: DataSpec, data: str | None = None, data_dir: str | None = None, download: bool = True,
                  map_by_index: bool = False, where: str = "the model", need_train: bool = True) -> Splits:
    """The splits of ``data`` (default: the dataset the model was trained on) prepared
    exactly as training prepared them: the model's input size, channels and mean/std.

    Class names are compared with the model's: the same names in another order (and,
    without ``need_train``, some of the model's classes) are remapped to the model's
    indices by name; different names are refused unless ``map_by_index`` (then class i of
    the data is scored as output i). Without ``need_train`` (evaluation), a folder that
    holds only val/ (or test/) is the test split alone (``train`` is None), as the
    torch-free ONNX evaluation reads it.
    """
    name = data or spec.name
    if not data and (not name or name.startswith("folder:") or name == "unknown"):
        folder = f" '{name[7:]}'" if name.startswith("folder:") else ""
        raise SqueezeNetError(f"{where} was trained on an image folder{folder}; pass that folder (train/ and val/ "
                              "inside) with --data PATH")
    holdout = spec.extra.get("holdout")
    how = dict(val_fraction=holdout["val_fraction"], seed=holdout["seed"]) if _valid_holdout(holdout) else {}
    val_dir = None if need_train else eval_only_folder(data)
    if val_dir is not None:
        splits = _load_eval_folder(val_dir, spec)
    else:
        splits = load_data(name, data_dir, spec.input_size, download=download, grayscale=spec.channels == 1, **how,
                           check_split=lambda split, drawn: check_holdout(split, drawn, holdout, name, where))
    got = splits.spec
    if got.channels != spec.channels:
        raise SqueezeNetError(f"{where} takes {spec.channels}-channel images but '{name}' has {got.channels}")
    mapping, why = match_classes(got.classes, spec.classes, map_by_index, name, where, some_classes=not need_train)
    if mapping is not None:
        splits.notes.append(why)
        splits.train = None if splits.train is None else splits.train.relabel(mapping, spec.classes)
        splits.test = splits.test.relabel(mapping, spec.classes)
    for n in splits.notes:
        note(n)
    import dataclasses

    splits.source = got.name
    splits.spec = dataclasses.replace(spec, classes=list(spec.classes))
    return splits
