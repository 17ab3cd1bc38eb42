"""Tests for skiplib.data: tiny fake CIFAR-10 copies in both on-disk formats, offline."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from skiplib import data as D
from skiplib.data import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    DeviceLoader,
    ImageSet,
    cifar,
    cifar10_loaders,
    load_cifar10,
    loader,
    subset,
    synthetic_cifar10,
    to_float,
)

PER_BATCH = 4  # images per data_batch_i: 20 train images from five batches
N_TEST = 6


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    # Never touch a real data directory or the network, and start each test with no memory cache.
    monkeypatch.setenv("SKIPLIB_DATA", str(tmp_path / "default-data"))
    loader._FLOAT_CACHE.clear()
    yield
    loader._FLOAT_CACHE.clear()


def _pixels(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def make_batches(root: Path) -> dict[str, tuple[np.ndarray, list[int]]]:
    """torchvision's layout: cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)]
    xs, ys = [], []
    for i, name in enumerate(names + ["test_batch"]):
        n = PER_BATCH if name != "test_batch" else N_TEST
        x = _pixels(n, seed=i)
        y = [(3 * i + j) % 10 for j in range(n)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": x.reshape(n, -1), b"labels": y, b"batch_label": name.encode()}, f)
        xs.append(x)
        ys.append(y)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}, f)
    return {"train": (np.concatenate(xs[:5]), sum(ys[:5], [])), "test": (xs[5], ys[5])}


def make_folder(root: Path, ext: str, per_class: dict[str, int] | None = None) -> dict[str, list[tuple[str, int]]]:
    """Image folders cifar10/<split>/<class>/NNN.<ext>; returns (path, label) in expected order."""
    per_class = per_class or {"train": 2, "test": 1}
    out: dict[str, list[tuple[str, int]]] = {}
    for s, (split, k) in enumerate(per_class.items()):
        out[split] = []
        for label, name in enumerate(CIFAR10_CLASSES):
            d = root / "cifar10" / split / name
            d.mkdir(parents=True)
            pix = _pixels(k, seed=100 * s + label)
            for j in reversed(range(k)):  # written out of order: the loader must sort by name
                path = d / f"{j:03d}.{ext}"
                Image.fromarray(pix[j].transpose(1, 2, 0)).save(path)
            out[split] += [(str(d / f"{j:03d}.{ext}"), label) for j in range(k)]
    return out


# ---------------------------------------------------------------- load_cifar10
@pytest.mark.parametrize("split", ["train", "test"])
def test_reads_torchvision_batches_exactly(tmp_path, split, capsys):
    expected = make_batches(tmp_path)[split]
    ds = load_cifar10(split, tmp_path, download=False)
    assert ds.source == "CIFAR-10 (torchvision batches)"
    assert ds.images.dtype == torch.uint8 and ds.labels.dtype == torch.int64
    assert ds.images.shape == (len(expected[1]), 3, 32, 32) and len(ds) == len(expected[1])
    assert torch.equal(ds.images, torch.from_numpy(expected[0]))
    assert ds.labels.tolist() == expected[1]
    assert ds.classes == CIFAR10_CLASSES
    assert f"CIFAR-10 {split}: {len(ds):,} images from CIFAR-10 (torchvision batches)" in capsys.readouterr().out


def test_reads_png_folder_exactly_in_torchvision_class_order(tmp_path):
    expected = make_folder(tmp_path, "png")
    for split in ("train", "test"):
        ds = load_cifar10(split, tmp_path, download=False, verbose=False)
        assert ds.source == "CIFAR-10 (image folder)"
        assert ds.images.shape == (len(expected[split]), 3, 32, 32) and ds.images.dtype == torch.uint8
        assert ds.labels.tolist() == [label for _, label in expected[split]]
        for img, (path, label) in zip(ds.images, expected[split]):
            assert Path(path).parent.name == CIFAR10_CLASSES[label]
            assert torch.equal(img, torch.from_numpy(np.asarray(Image.open(path)).transpose(2, 0, 1).copy()))
    # the pixels we wrote, not just what PIL reads back
    assert torch.equal(ds.images[0], torch.from_numpy(_pixels(1, seed=100)[0]))


@pytest.mark.parametrize("ext", ["jpg", "jpeg"])
def test_reads_jpeg_folder_as_jpeg_copy(tmp_path, ext):
    expected = make_folder(tmp_path, ext)["train"]
    ds = load_cifar10("train", tmp_path, download=False, verbose=False)
    assert ds.source == "CIFAR-10 (JPEG copy)"
    assert ds.images.shape == (20, 3, 32, 32) and ds.labels.tolist() == [lab for _, lab in expected]
    # JPEG is lossy, so compare with PIL's own RGB decoding of each file.
    decoded = [np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1) for p, _ in expected]
    assert torch.equal(ds.images, torch.from_numpy(np.stack(decoded)))


def test_folder_handles_grayscale_hidden_dirs_and_other_files(tmp_path):
    make_folder(tmp_path, "png", {"test": 1})
    Image.fromarray(np.full((32, 32), 7, np.uint8), mode="L").save(tmp_path / "cifar10/test/cat/010.png")
    (tmp_path / "cifar10/test/.ipynb_checkpoints").mkdir()
    (tmp_path / "cifar10/test/dog/notes.txt").write_text("not an image")
    ds = load_cifar10("test", tmp_path, download=False, verbose=False)
    assert len(ds) == 11 and torch.equal(ds.images[4], torch.full((3, 32, 32), 7, dtype=torch.uint8))


def test_batches_are_preferred_over_folders(tmp_path):
    make_batches(tmp_path)
    make_folder(tmp_path, "png")
    assert load_cifar10("train", tmp_path, download=False, verbose=False).source == "CIFAR-10 (torchvision batches)"


def test_cache_is_written_and_reused_after_source_is_deleted(tmp_path, capsys):
    make_folder(tmp_path, "png")
    first = load_cifar10("train", tmp_path, download=False)
    cache = tmp_path / "cache" / "cifar10-image-folder-train.pt"
    assert cache.is_file() and "cached to" in capsys.readouterr().out
    shutil.rmtree(tmp_path / "cifar10")
    again = load_cifar10("train", tmp_path, download=False)
    assert f"[cache {cache}]" in capsys.readouterr().out
    assert again.source == first.source
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)


def test_corrupt_cache_is_decoded_again(tmp_path):
    expected = make_batches(tmp_path)["test"]
    load_cifar10("test", tmp_path, download=False, verbose=False)
    (tmp_path / "cache" / "cifar10-torchvision-batches-test.pt").write_bytes(b"not a torch file")
    ds = load_cifar10("test", tmp_path, download=False, verbose=False)
    assert torch.equal(ds.images, torch.from_numpy(expected[0]))


def test_a_new_cache_replaces_a_linked_one_not_the_file_it_points_to(tmp_path):
    # a data folder may link a cache made elsewhere (e.g. a shared copy): a rebuild must not write through the link
    users = tmp_path / "users-cache.pt"
    users.write_bytes(b"the user's cache, made from other files")
    make_folder(tmp_path / "session", "png")
    link = tmp_path / "session" / "cache" / "cifar10-image-folder-train.pt"
    link.parent.mkdir()
    link.symlink_to(users)
    ds = load_cifar10("train", tmp_path / "session", download=False, verbose=False)
    assert users.read_bytes() == b"the user's cache, made from other files"
    assert not link.is_symlink() and torch.equal(load_cifar10("train", tmp_path / "session", download=False,
                                                              verbose=False).images, ds.images)


def test_cache_follows_a_change_of_source_and_of_file_count(tmp_path):
    make_folder(tmp_path, "png")
    assert len(load_cifar10("train", tmp_path, download=False, verbose=False)) == 20
    Image.fromarray(_pixels(1, 9)[0].transpose(1, 2, 0)).save(tmp_path / "cifar10/train/ship/100.png")
    assert len(load_cifar10("train", tmp_path, download=False, verbose=False)) == 21  # stale cache not used
    make_batches(tmp_path)
    ds = load_cifar10("train", tmp_path, download=False, verbose=False)
    assert ds.source == "CIFAR-10 (torchvision batches)" and len(ds) == 5 * PER_BATCH
    assert (tmp_path / "cache" / "cifar10-torchvision-batches-train.pt").is_file()


def test_default_root_is_skiplib_data(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPLIB_DATA", str(tmp_path / "mine"))
    assert D.data_dir() == tmp_path / "mine" and (tmp_path / "mine").is_dir()
    make_batches(tmp_path / "mine")
    assert len(load_cifar10("test", download=False, verbose=False)) == N_TEST


def test_bad_split_raises_value_error(tmp_path):
    with pytest.raises(ValueError, match=r"'train', 'test'.*'val'"):
        load_cifar10("val", tmp_path, download=False)


def test_nothing_found_says_where_it_looked_and_how_to_get_data(tmp_path):
    with pytest.raises(RuntimeError) as err:
        load_cifar10("train", tmp_path, download=False)
    msg = str(err.value)
    for needle in ("SKIPLIB_DATA", str(tmp_path / "cifar-10-batches-py"), str(tmp_path / "cifar10" / "train"),
                   "tar xzf", "smoke", "download=False"):
        assert needle in msg


def test_wrong_class_folders_are_an_error(tmp_path):
    (tmp_path / "cifar10" / "train" / "kitten").mkdir(parents=True)
    with pytest.raises(RuntimeError, match="kitten"):
        load_cifar10("train", tmp_path, download=False)


def test_allow_synthetic_falls_back_to_a_labelled_stand_in(tmp_path):
    ds = load_cifar10("test", tmp_path, download=False, allow_synthetic=True, verbose=False)
    assert ds.source == "synthetic CIFAR-shaped stand-in (not CIFAR-10)"
    assert ds.images.shape == (1000, 3, 32, 32) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels).tolist() == [100] * 10


# ---------------------------------------------------------------- synthetic, subset, to_float
def test_synthetic_is_deterministic_and_learnable():
    a, b, other = synthetic_cifar10(500, seed=0), synthetic_cifar10(500, seed=0), synthetic_cifar10(300, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images[:300], other.images)
    # A nearest-class-mean classifier on mean colour, fit on one seed, beats chance on another.
    feat = lambda ds: ds.images.float().mean((2, 3))  # noqa: E731
    centroids = torch.stack([feat(a)[a.labels == k].mean(0) for k in range(10)])
    accuracy = (torch.cdist(feat(other), centroids).argmin(1) == other.labels).float().mean()
    assert accuracy > 0.5


def _labelled(counts: list[int]) -> ImageSet:
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    images = torch.arange(len(labels)).view(-1, 1, 1, 1).expand(-1, 3, 2, 2).to(torch.uint8)
    return ImageSet(images.contiguous(), labels, "fake")


def test_subset_is_stratified_and_deterministic():
    ds = _labelled([10] * 10)
    a, b, c = subset(ds, 30, seed=1), subset(ds, 30, seed=1), subset(ds, 30, seed=2)
    assert torch.bincount(a.labels).tolist() == [3] * 10
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.source == "fake" and len(a) == 30
    ids = a.images[:, 0, 0, 0].long()
    assert torch.equal(ds.labels[ids], a.labels) and len(set(ids.tolist())) == 30  # real, distinct images


def test_subset_proportional_for_unbalanced_classes():
    ds = _labelled([40, 20, 20, 10, 10])
    assert torch.bincount(subset(ds, 10).labels).tolist() == [4, 2, 2, 1, 1]
    assert len(subset(ds, 17)) == 17


def test_subset_none_or_large_is_unchanged_and_small_is_an_error():
    ds = _labelled([3] * 10)
    assert subset(ds, None) is ds and subset(ds, 30) is ds and subset(ds, 99) is ds
    for n in (0, -1, 9):
        with pytest.raises(ValueError, match="number of classes"):
            subset(ds, n)


def test_to_float_normalises_and_resizes(monkeypatch):
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(3, 1, 1, 1).expand(3, 3, 32, 32)
    out = to_float(images)
    assert out.dtype == torch.float32 and out.shape == (3, 3, 32, 32)
    mean, std = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1), torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    expected = (torch.tensor([0, 128, 255]).view(3, 1, 1, 1) / 255 - mean) / std
    torch.testing.assert_close(out, expected.expand(3, 3, 32, 32))
    small = to_float(images, size=16)
    assert small.shape == (3, 3, 16, 16)
    torch.testing.assert_close(small, expected.expand(3, 3, 16, 16))  # a flat image stays flat
    # chunking gives the same result as one pass
    rand = torch.from_numpy(_pixels(7, 3))
    whole = to_float(rand, size=16, mean=(0.5,) * 3, std=(0.25,) * 3)
    monkeypatch.setattr(cifar, "_CHUNK", 3)
    torch.testing.assert_close(to_float(rand, size=16, mean=(0.5,) * 3, std=(0.25,) * 3), whole)
    ref = torch.nn.functional.interpolate(rand.float() / 255, size=16, mode="bilinear", antialias=True)
    torch.testing.assert_close(whole, (ref - 0.5) / 0.25)


def test_to_float_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        to_float(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="per channel"):
        to_float(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), mean=(0.5,), std=(0.5,))


# ---------------------------------------------------------------- DeviceLoader
def _xy(n: int = 10):
    x = torch.arange(n * 3 * 4 * 4, dtype=torch.float32).view(n, 3, 4, 4) + 1  # distinct, non-zero
    return x, torch.arange(n)


def _epoch(loader):
    return [(xb.clone(), yb.clone()) for xb, yb in loader]


def test_loader_plain_order_and_length():
    x, y = _xy(10)
    loader = DeviceLoader(x, y, 3)
    batches = _epoch(loader)
    assert len(loader) == 4 == len(batches) and loader.num_samples == 10
    assert [len(yb) for _, yb in batches] == [3, 3, 3, 1]
    assert torch.equal(torch.cat([xb for xb, _ in batches]), x)
    dropped = DeviceLoader(x, y, 3, drop_last=True, shuffle=True)
    assert len(dropped) == 3 and [len(yb) for _, yb in dropped] == [3, 3, 3]


def test_loader_shuffle_covers_every_sample_once_and_is_seeded():
    x, y = _xy(10)
    loader = DeviceLoader(x, y, 4, shuffle=True, seed=5)
    epochs = [_epoch(loader) for _ in range(2)]
    for batches in epochs:
        ys = torch.cat([yb for _, yb in batches])
        assert sorted(ys.tolist()) == list(range(10))
        assert torch.equal(torch.cat([xb for xb, _ in batches]), x[ys])  # x and y stay paired
    assert not torch.equal(torch.cat([b[1] for b in epochs[0]]), torch.cat([b[1] for b in epochs[1]]))
    same = DeviceLoader(x, y, 4, shuffle=True, seed=5)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(epochs[0], _epoch(same)))
    other = DeviceLoader(x, y, 4, shuffle=True, seed=6)
    assert not torch.equal(torch.cat([b[1] for b in epochs[0]]), torch.cat([b[1] for b in _epoch(other)]))


def test_loader_state_dict_resumes_the_next_epoch_exactly(tmp_path):
    x, y = _xy(12)
    a = DeviceLoader(x, y, 5, shuffle=True, augment=True, pad=1, seed=3)
    _epoch(a)
    torch.save(a.state_dict(), tmp_path / "ckpt.pt")  # through a file, as a checkpoint would
    expected = _epoch(a)
    b = DeviceLoader(x, y, 5, shuffle=True, augment=True, pad=1, seed=99)
    b.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    got = _epoch(b)
    assert b.epoch == a.epoch == 2
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(expected, got))


def test_augment_with_pad_zero_only_flips():
    x, y = _xy(64)
    seen_flip = seen_plain = False
    for xb, yb in DeviceLoader(x, y, 16, shuffle=True, augment=True, pad=0, seed=1):
        assert xb.shape == (len(yb), 3, 4, 4)
        for img, i in zip(xb, yb):
            plain, flip = torch.equal(img, x[i]), torch.equal(img, x[i].flip(-1))
            assert plain or flip
            seen_plain, seen_flip = seen_plain or plain, seen_flip or flip
    assert seen_plain and seen_flip


def test_augment_crops_are_zero_padded_shifts():
    x, y = _xy(64)
    pad = 2
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    shifts = set()
    for xb, yb in DeviceLoader(x, y, 16, augment=True, pad=pad, seed=2):
        assert xb.shape == (len(yb), 3, 4, 4)
        for img, i in zip(xb, yb):
            matches = [(dy, dx, f) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1) for f in (0, 1)
                       if torch.equal(img, (lambda c: c.flip(-1) if f else c)(padded[i, :, dy:dy + 4, dx:dx + 4]))]
            assert matches, f"sample {i} is not a padded crop (+flip) of the original"
            shifts.add(matches[0][:2])
    assert len(shifts) > 5  # many different offsets, so the crop really moves


def test_augment_does_not_touch_the_stored_data_and_keeps_uint8():
    x = torch.from_numpy(_pixels(8, 4))
    before = x.clone()
    loader = DeviceLoader(x, torch.arange(8), 8, augment=True, pad=4)
    xb, _ = next(iter(loader))
    assert xb.dtype == torch.uint8 and xb.shape == x.shape and xb.is_contiguous()
    assert torch.equal(loader.x, before)


def test_loader_moves_to_the_requested_device():
    x, y = _xy(4)
    xb, yb = next(iter(DeviceLoader(x, y, 2, device="cpu")))
    assert xb.device.type == "cpu" and yb.device.type == "cpu"


@pytest.mark.parametrize("kwargs, match", [
    (dict(y=torch.arange(3)), "same length"),
    (dict(batch_size=0), "batch_size"),
    (dict(pad=-1), "pad"),
    (dict(x=torch.zeros(10, 5), augment=True), "augment"),
])
def test_loader_bad_arguments(kwargs, match):
    x, y = _xy(10)
    args = dict(x=x, y=y, batch_size=4) | kwargs
    with pytest.raises(ValueError, match=match):
        DeviceLoader(args.pop("x"), args.pop("y"), args.pop("batch_size"), **args)


# ---------------------------------------------------------------- cifar10_loaders
def test_cifar10_loaders_end_to_end_and_memory_cache(tmp_path, capsys):
    make_folder(tmp_path, "png", {"train": 3, "test": 2})
    kw = dict(train_subset=20, test_subset=None, image_size=16, batch_size=8, root=tmp_path, seed=1)
    train, test, info = cifar10_loaders(**kw)
    assert info == {"source": "CIFAR-10 (image folder)", "train_size": 20, "test_size": 20, "image_size": 16}
    assert train.shuffle and train.augment and train.pad == 2 and not test.shuffle and not test.augment
    xb, yb = next(iter(train))
    assert xb.shape == (8, 3, 16, 16) and xb.dtype == torch.float32 and yb.dtype == torch.int64
    assert torch.bincount(train.y).tolist() == [2] * 10
    # Second call: served from memory even though the files and disk cache are gone.
    shutil.rmtree(tmp_path / "cifar10")
    shutil.rmtree(tmp_path / "cache")
    capsys.readouterr()
    train2, test2, info2 = cifar10_loaders(**kw)
    assert info2 == info and torch.equal(train2.x, train.x) and torch.equal(test2.y, test.y)
    assert "from memory" in capsys.readouterr().out


def test_cifar10_loaders_synthetic_and_single_sample_tail(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "_SYNTHETIC_SIZES", {"train": 600, "test": 100})  # keep the test quick
    train, test, info = cifar10_loaders(train_subset=257, test_subset=50, batch_size=128, root=tmp_path,
                                        allow_synthetic=True, download=False, verbose=False)
    assert info["source"].startswith("synthetic") and (info["train_size"], info["test_size"]) == (257, 50)
    assert train.pad == 4 and len(train) == 2  # a BatchNorm-breaking batch of one is left out
    assert all(len(yb) == 128 for _, yb in train)
