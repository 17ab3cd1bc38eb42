"""Misuse of the data layer (issue 19): one table, each row an input and the message or
behaviour a learner or instructor must get. Rows for cases that were already handled well
stay here so that they stay so. Everything happens in tmp_path, offline (download=False).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from skiplib import data as D
from skiplib.data import CIFAR10_CLASSES, load_cifar10


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    # A row that reads SKIPLIB_DATA must never reach the real data folder.
    monkeypatch.setenv("SKIPLIB_DATA", str(tmp_path / "default-data"))


def _save(path: Path, seed: int, size: int = 32) -> np.ndarray:
    pix = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    # Uncompressed PNG: the file size depends only on the image size, so a replaced image keeps
    # its name, count and byte size and only its modification time tells the cache it changed.
    Image.fromarray(pix).save(path, compress_level=0) if path.suffix == ".png" else Image.fromarray(pix).save(path)
    return pix


def _folder(root: Path, ext: str = "png", per_class: int = 1) -> None:
    for label, name in enumerate(CIFAR10_CLASSES):
        d = root / "cifar10" / "train" / name
        d.mkdir(parents=True)
        for j in range(per_class):
            _save(d / f"{j:03d}.{ext}", seed=10 * label + j)


def _load(root: Path) -> D.ImageSet:
    return load_cifar10("train", root, download=False)


def _cache(root: Path) -> Path:
    return root / "cache" / "cifar10-image-folder-train.pt"


# ---------------------------------------------------------------- arrangements
def _empty_class(root):
    _folder(root)
    (root / "cifar10/train/cat/000.png").unlink()


def _all_empty(root):
    _folder(root, per_class=0)


def _truncated_jpeg(root):
    _folder(root, "jpg")
    path = root / "cifar10/train/dog/000.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a download or copy cut short


def _not_an_image(root):
    _folder(root)
    (root / "cifar10/train/ship/000.png").write_bytes(b"<html>404 Not Found</html>")


def _wrong_size(root):
    _folder(root)
    _save(root / "cifar10/train/frog/000.png", seed=1, size=16)


def _data_is_a_file(root, monkeypatch):
    (root / "data.txt").write_text("not a folder")
    monkeypatch.setenv("SKIPLIB_DATA", str(root / "data.txt"))


def _data_under_a_file(root, monkeypatch):
    (root / "data.txt").write_text("not a folder")
    monkeypatch.setenv("SKIPLIB_DATA", str(root / "data.txt" / "skiplib"))


def _replaced_image(root):
    _folder(root)
    _load(root)  # decoded and cached
    path = root / "cifar10/train/horse/000.png"
    before = path.stat()
    new = _save(path, seed=999)
    assert path.stat().st_size == before.st_size  # same name, count and size: only the time differs
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # not at the clock's mercy
    return {"new": torch.from_numpy(new).permute(2, 0, 1)}


def _moved_image(root):
    _folder(root, per_class=2)
    _load(root)
    os.replace(root / "cifar10/train/cat/001.png", root / "cifar10/train/dog/002.png")  # same file count


def _torn_cache(root):
    _folder(root)
    first = _load(root)
    _cache(root).write_bytes(_cache(root).read_bytes()[:100])  # a write interrupted half-way
    return {"images": first.images}


def _corrupt_cache_images_gone(root):
    _folder(root)
    _load(root)
    shutil.rmtree(root / "cifar10")
    _cache(root).write_bytes(b"not a torch file")


def _images_gone_cache_kept(root):
    _folder(root)
    return {"images": _load(root).images, "gone": shutil.rmtree(root / "cifar10")}


def _wrong_classes(root):
    _folder(root)
    os.rename(root / "cifar10/train/cat", root / "cifar10/train/kitten")


# ---------------------------------------------------------------- expectations
def _new_pixels(ds, ctx):
    horse = (ds.labels == CIFAR10_CLASSES.index("horse")).nonzero().item()
    assert torch.equal(ds.images[horse], ctx["new"])


def _moved_label(ds, ctx):
    counts = torch.bincount(ds.labels, minlength=10)
    assert counts[CIFAR10_CLASSES.index("cat")] == 1 and counts[CIFAR10_CLASSES.index("dog")] == 3


def _same_images(ds, ctx):
    assert torch.equal(ds.images, ctx["images"])


Raises = tuple[type[Exception], list[str]]  # exception type, substrings of its message ({root} filled in)
Returns = tuple[Callable[[Any, dict], None], list[str]]  # check of the result, substrings of what was printed

CASES: list[tuple[str, Callable, Callable, Raises | Returns]] = [
    # item 5: an empty class folder used to load 9 classes without a word
    ("empty class folder", _empty_class, _load,
     (RuntimeError, ["no .png/.jpg images in {root}/cifar10/train/cat:", "each of the 10 CIFAR-10 class folders"])),
    ("every class folder empty", _all_empty, _load,
     (RuntimeError, ["no .png/.jpg images in any class folder", "{root}/cifar10/train"])),
    # item 5: a corrupt image failed deep in PIL without its name
    ("truncated JPEG", _truncated_jpeg, _load,
     (RuntimeError, ["cannot read the image {root}/cifar10/train/dog/000.jpg", "truncated"])),
    ("HTML saved as .png", _not_an_image, _load,
     (RuntimeError, ["cannot read the image {root}/cifar10/train/ship/000.png", "UnidentifiedImageError"])),
    ("16x16 image (already handled)", _wrong_size, _load,
     (RuntimeError, ["{root}/cifar10/train/frog/000.png is 16x16; CIFAR-10 images are 32x32"])),
    # item 5: SKIPLIB_DATA naming a file raised a bare FileExistsError
    ("SKIPLIB_DATA is a file", _data_is_a_file, lambda root: D.data_dir(),
     (ValueError, ["SKIPLIB_DATA={root}/data.txt must be a folder", "is a file", "unset it"])),
    ("SKIPLIB_DATA below a file", _data_under_a_file, lambda root: D.data_dir(),
     (RuntimeError, ["cannot create the data folder {root}/data.txt/skiplib (SKIPLIB_DATA=", "Set SKIPLIB_DATA"])),
    ("root= is a file", lambda root: (root / "x.pt").write_bytes(b""), lambda root: _load(root / "x.pt"),
     (ValueError, ["root must be a folder", "{root}/x.pt is a file"])),
    # item 5: the cache was keyed on the file count, so these two served stale tensors
    ("image replaced: same name, count and size", _replaced_image, _load,
     (_new_pixels, ["decoded in", "(the cache was made from other files)", "cached to"])),
    ("image moved to another class", _moved_image, _load, (_moved_label, ["(the cache was made from other files)"])),
    # item 5: a corrupt cache without its images said only "not found"
    ("corrupt cache, images gone", _corrupt_cache_images_gone, _load,
     (RuntimeError, ["CIFAR-10 train split not found (and a cache file is unreadable",
                     "{root}/cache/cifar10-image-folder-train.pt exists but is unreadable: corrupt", "delete it"])),
    # already handled, kept so
    ("torn cache, images present: rebuilt", _torn_cache, _load,
     (_same_images, ["(the cache was unreadable: corrupt", "cached to"])),
    ("images deleted, cache kept: served from it", _images_gone_cache_kept, _load,
     (_same_images, ["[cache {root}/cache/cifar10-image-folder-train.pt]"])),
    ("class folders misnamed", _wrong_classes, _load,
     (RuntimeError, ["must hold one folder per CIFAR-10 class", "'kitten'"])),
    ("nothing there", lambda root: None, _load,
     (RuntimeError, ["CIFAR-10 train split not found. Looked for:", "{root}/cifar10/train/<class>", "SKIPLIB_DATA",
                     "torchvision download: not tried (download=False)"])),
    ("unknown split", lambda root: None, lambda root: load_cifar10("val", root, download=False),
     (ValueError, ["split must be one of ('train', 'test'), got 'val'"])),
]


@pytest.mark.parametrize("arrange, act, expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_data_misuse(arrange, act, expected, tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    root.mkdir()
    needs_env = "monkeypatch" in arrange.__code__.co_varnames[:arrange.__code__.co_argcount]
    ctx = (arrange(root, monkeypatch) if needs_env else arrange(root)) or {}
    capsys.readouterr()
    what, needles = expected
    needles = [n.format(root=root) for n in needles]
    if isinstance(what, type):
        with pytest.raises(what) as err:
            act(root)
        for needle in needles:
            assert needle in str(err.value)
    else:
        what(act(root), ctx)
        out = capsys.readouterr().out
        for needle in needles:
            assert needle in out
