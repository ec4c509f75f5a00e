"""Loaders on datasets the tests build: IDX files and ImageFolder trees."""

import numpy as np
import pytest
import torch
from PIL import Image

from squeezenet import SqueezeNetError
from squeezenet.batches import augment_batch, augment_params, tensor_batches
from squeezenet.data import TensorDataset, load_data
from squeezenet.sources import find_fashion_mnist, read_idx
from squeezenet.spec import DataSpec

from helpers import write_idx


def test_idx_round_trip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), arr)


def test_corrupt_idx_is_a_clear_error(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x05\x00\x00\x00\x1c\x00\x00\x00\x1cshort")
    with pytest.raises(SqueezeNetError, match="corrupt IDX"):
        read_idx(p)


def test_fashion_mnist_from_data_dir(fmnist_dir):
    s = load_data("fashion-mnist", str(fmnist_dir), download=False)
    assert isinstance(s.train, TensorDataset)
    assert s.train.images.shape == (512, 1, 28, 28) and s.train.images.dtype == torch.uint8
    assert len(s.test) == 128 and s.spec.classes[9] == "Ankle boot"
    assert s.spec.channels == 1 and s.spec.input_size == 28


def test_torchvision_layout_is_found(tmp_path, fmnist_dir):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in fmnist_dir.iterdir():
        (raw / f.name).write_bytes(f.read_bytes())
    files = find_fashion_mnist(str(tmp_path), download=False)
    assert files["train_images"].parent == raw


def test_missing_dataset_error(tmp_path, monkeypatch):
    import squeezenet.sources as d

    monkeypatch.setattr(d, "DEBIAN_FASHION_MNIST", str(tmp_path / "nope"))
    monkeypatch.setenv("SQUEEZENET_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SqueezeNetError, match="apt-get install dataset-fashion-mnist"):
        load_data("fashion-mnist", None, download=False)
    with pytest.raises(SqueezeNetError, match="put its four IDX files in that --data-dir"):
        load_data("fashion-mnist", str(tmp_path / "empty"), download=False)


def test_a_data_dir_without_the_files_is_not_swapped_for_the_installed_copy(tmp_path, monkeypatch, fmnist_dir):
    """`--data-dir DIR` naming a folder without Fashion-MNIST trained on Debian's copy (or
    the cache's) without a word; CIFAR never did. The folder named is the one used."""
    import squeezenet.sources as d

    monkeypatch.setattr(d, "DEBIAN_FASHION_MNIST", str(fmnist_dir))  # an installed copy that would be found
    assert find_fashion_mnist(None, download=False)["train_images"].parent == fmnist_dir
    with pytest.raises(SqueezeNetError, match=r"looked in .*typo\)"):
        find_fashion_mnist(str(tmp_path / "typo"), download=False)


def _tree(root, size=16, corrupt=True, empty=True):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c, color in (("cat", 40), ("dog", 200)):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(6):
                a = np.clip(rng.normal(color, 10, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(d / f"{i}.jpg")
        if empty:
            (root / split / "zebra").mkdir()
    if corrupt:
        good = (root / "train" / "cat" / "0.jpg").read_bytes()
        (root / "train" / "cat" / "broken.jpg").write_bytes(good[: len(good) // 3])
        (root / "train" / "dog" / "notes.jpg").write_bytes(b"this is not an image")


def test_small_image_folder_skips_bad_files_and_keeps_empty_class(tmp_path, caplog):
    _tree(tmp_path)
    s = load_data(str(tmp_path), cache=False)
    err = caplog.text  # the library logs its warnings (squeezenet.log); the CLI prints them
    assert "broken.jpg" in err and "notes.jpg" in err and "zebra" in err
    assert s.spec.classes == ["cat", "dog", "zebra"]
    assert s.train.images.shape == (12, 3, 16, 16)  # 14 files, 2 unreadable
    assert sorted(s.train.labels.tolist()) == [0] * 6 + [1] * 6
    # cat images are dark, dog images bright: the decode kept the pixels
    cat = s.train.images[s.train.labels == 0].float().mean()
    dog = s.train.images[s.train.labels == 1].float().mean()
    assert cat < 60 < 180 < dog


def test_folder_cache_is_reused(tmp_path, monkeypatch):
    _tree(tmp_path / "d", corrupt=False, empty=False)
    monkeypatch.setenv("SQUEEZENET_CACHE", str(tmp_path / "cache"))
    a = load_data(str(tmp_path / "d"))
    assert list((tmp_path / "cache" / "decoded").glob("folder-*.pt"))
    b = load_data(str(tmp_path / "d"))
    assert torch.equal(a.train.images, b.train.images)


def test_folder_without_val_gets_a_split(tmp_path):
    _tree(tmp_path, corrupt=False, empty=False)
    import shutil

    shutil.rmtree(tmp_path / "val")
    s = load_data(str(tmp_path / "train"), val_fraction=0.25, cache=False)
    assert len(s.train) + len(s.test) == 12 and len(s.test) == 3
    assert any("held out" in n for n in s.notes)


def test_large_image_folder_streams_and_skips_bad(tmp_path, caplog):
    _tree(tmp_path, size=80, corrupt=True, empty=False)
    s = load_data(str(tmp_path), input_size=72, cache=False)
    assert not isinstance(s.train, TensorDataset) and s.spec.input_size == 72
    from squeezenet.data import collate_skip_bad

    loader = torch.utils.data.DataLoader(s.train, batch_size=20, collate_fn=collate_skip_bad)
    x, y, bad = next(iter(loader))
    assert x.shape == (12, 3, 72, 72) and len(bad) == 2 and any("broken.jpg" in b for b in bad)
    from squeezenet.data import readable

    assert [tuple(t.shape) for t in next(readable(iter(loader)))] == [(12, 3, 72, 72), (12,)]
    assert "skipping" in caplog.text and "broken.jpg" in caplog.text  # reported in this (the main) process


def test_missing_folder_error(tmp_path):
    with pytest.raises(SqueezeNetError, match="image folder not found"):
        load_data(str(tmp_path / "nothing"))


def test_augment_crop_and_flip_are_exact():
    x = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    # offset (dy, dx) = (pad, pad) is the identity crop; (0, 0) shifts right/down by pad
    same = augment_batch(x, 1, torch.tensor([1]), torch.tensor([1]), torch.tensor([False]))
    assert torch.equal(same, x)
    shifted = augment_batch(x, 1, torch.tensor([0]), torch.tensor([0]), torch.tensor([False]))
    assert shifted[0, 0, 0].tolist() == [0, 0, 0, 0] and shifted[0, 0, 1].tolist() == [0, 0, 1, 2]
    flipped = augment_batch(x, 1, torch.tensor([1]), torch.tensor([1]), torch.tensor([True]))
    assert torch.equal(flipped, x.flip(3))
    g = torch.Generator().manual_seed(0)
    dy, dx, flip = augment_params(1000, 2, g)
    assert dy.min() == 0 and dy.max() == 4 and 400 < flip.sum() < 600


def _numbered(n=32, size=8, classes=None):
    """n images, image i filled with the value i + 1 and labelled i (mod classes): every
    pixel says which image it came from. Normalisation mean 0, std 1/255 keeps the values."""
    classes = classes or n
    imgs = (torch.arange(n, dtype=torch.uint8) + 1).view(n, 1, 1, 1).expand(n, 1, size, size).contiguous()
    ds = TensorDataset(imgs, torch.arange(n) % classes, [str(c) for c in range(classes)])
    spec = DataSpec("numbered", ds.classes, 1, size, [0.0], [1 / 255], pad=0)
    return ds, spec


def _epoch(ds, spec, **kw):
    g = torch.Generator().manual_seed(3)
    return [(step, x.round().long(), y) for step, x, y in tensor_batches(ds, spec, 16, 0, 0, g, **kw)]


def test_cutmix_labels_are_the_share_of_pixels_each_class_has_in_the_image():
    ds, spec = _numbered()
    batches = _epoch(ds, spec, cutmix=1.0)
    pasted = []
    for _, x, y in batches:
        assert y.shape == (16, 32) and torch.allclose(y.sum(1), torch.ones(16))
        for xi, yi in zip(x, y):  # count the pixels of each source image (value i + 1 is class i)
            share = torch.bincount(xi.flatten() - 1, minlength=32).float() / xi.numel()
            assert torch.allclose(yi, share)
            pasted.append(1 - yi.max().item())
    # every batch was mixed (p = 1), each image with one other, never with itself
    assert all((y > 0).sum(1).max() <= 2 for _, _, y in batches) and max(pasted) > 0
    assert all(y.dtype == torch.int64 for _, _, y in _epoch(ds, spec, cutmix=0.0))  # off: class indices


def test_cutmix_and_erasing_are_the_same_on_two_processes_and_after_a_resume():
    ds, spec = _numbered(64, 12, classes=4)
    spec.pad = 2
    kw = dict(cutmix=0.5, random_erasing=0.5)
    one = _epoch(ds, spec, **kw)
    assert any(torch.equal(y, y.round()) for _, _, y in one)  # p = 0.5: some batches unmixed (one-hot)
    assert any(not torch.equal(y, y.round()) for _, _, y in one)
    halves = [_epoch(ds, spec, rank=r, world=2, **kw) for r in (0, 1)]
    for (s, x, y), (_, x0, y0), (_, x1, y1) in zip(one, *halves):
        assert torch.equal(x, torch.cat([x0, x1])) and torch.equal(y, torch.cat([y0, y1])), s
    g = torch.Generator().manual_seed(3)
    resumed = [(s, x.round().long(), y) for s, x, y in tensor_batches(ds, spec, 16, 0, 0, g, start_step=2, **kw)]
    assert [s for s, *_ in resumed] == [2, 3]
    assert all(torch.equal(a[1], b[1]) and torch.equal(a[2], b[2]) for a, b in zip(one[2:], resumed))


def test_per_batch_augmentation_on_streamed_images_is_refused_not_ignored(tmp_path):
    from squeezenet.config import TrainConfig
    from squeezenet.train import training_data

    _tree(tmp_path, size=80, corrupt=False, empty=False)
    for flag, kw in (("--cutmix", dict(cutmix=0.5)), ("--random-erasing", dict(random_erasing=0.3))):
        cfg = TrainConfig(data=str(tmp_path), input_size=72, **kw).resolved()
        with pytest.raises(SqueezeNetError, match=f"{flag} applies to small images held in memory.*drop {flag}"):
            training_data(cfg)
