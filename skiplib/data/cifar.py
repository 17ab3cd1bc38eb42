"""CIFAR-10 for the course: find it, decode it once, cache it, batch it on the device.

Looks for torchvision's pickled batches, then an image-folder copy, then tries torchvision's
download; only the ``smoke`` profile may fall back to a synthetic stand-in. The source travels
with the data and is printed, because every result must say what it was computed from.

Batching on the device is in :mod:`skiplib.data.loader`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CIFAR10_CLASSES: tuple[str, ...] = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                     "horse", "ship", "truck")
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
SPLITS: tuple[str, ...] = ("train", "test")

SOURCE_BATCHES = "CIFAR-10 (torchvision batches)"
SOURCE_JPEG = "CIFAR-10 (JPEG copy)"
SOURCE_FOLDER = "CIFAR-10 (image folder)"
SOURCE_SYNTHETIC = "synthetic CIFAR-shaped stand-in (not CIFAR-10)"

_BATCH_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_IMAGE_EXTS = (".png", ".jpg", ".jpeg")
_SYNTHETIC_SIZES = {"train": 5000, "test": 1000}  # big enough to learn, quick to generate
_CHUNK = 4096  # images per step in to_float/synthetic_cifar10: bounds temporary memory


def data_dir() -> Path:
    """``$SKIPLIB_DATA`` if set, else ``~/.cache/skiplib``; created if missing. Used from Chapter 1 onward."""
    env = os.environ.get("SKIPLIB_DATA")
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "skiplib"
    what = f"SKIPLIB_DATA={env}" if env else "the default data folder"
    _require_folder(path, what, "point SKIPLIB_DATA at a folder, or unset it to use ~/.cache/skiplib")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a parent that is a file, no permission, read-only disk: say which setting to change
        raise RuntimeError(f"cannot create the data folder {path} ({what}): {type(e).__name__}: {e}. "
                           "Set SKIPLIB_DATA to a folder you can write to") from e
    return path


def _require_folder(path: Path, what: str, fix: str) -> None:
    # mkdir on a file raises FileExistsError, which does not say what is wrong; say it here.
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} must be a folder (CIFAR-10 and its cache live in it), but {path} is a file; {fix}")


@dataclass
class ImageSet:
    """Images (uint8 ``[N, 3, H, W]``), labels (int64 ``[N]``) and their source. Used from Chapter 1 onward."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    classes: tuple[str, ...] = CIFAR10_CLASSES

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must be [N] = [{len(self.images)}], got {tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return len(self.labels)


# ---------------------------------------------------------------- reading the sources
def _read_batches(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for name in _BATCH_FILES[split]:
        with open(folder / name, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.extend(d[b"labels"])
    return torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.int64)


def _list_folder(folder: Path) -> tuple[list[str], list[int], str]:
    """Image paths and labels in torchvision's class order, and a digest of the listing."""
    # Hidden folders (.ipynb_checkpoints on Colab) are not classes.
    found = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if set(found) != set(CIFAR10_CLASSES):
        raise RuntimeError(f"{folder} must hold one folder per CIFAR-10 class {CIFAR10_CLASSES}; found {found}")
    files, labels, empty = [], [], []
    # Names, sizes and modification times key the tensor cache: a replaced or re-extracted image
    # changes the digest, so the cache never serves pixels the folder no longer holds.
    digest = hashlib.sha256()
    for label, name in enumerate(CIFAR10_CLASSES):  # labels follow torchvision's order
        d = os.path.join(folder, name)  # plain strings: 50k Path objects cost more than the listing
        entries = sorted((e for e in os.scandir(d) if e.is_file() and e.name.lower().endswith(_IMAGE_EXTS)),
                         key=lambda e: e.name)
        if not entries:
            empty.append(d)
        for e in entries:
            st = e.stat()
            digest.update(f"{name}/{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            files.append(os.path.join(d, e.name))
        labels += [label] * len(entries)
    if empty:
        # A class with no images would silently train a 9-class problem (or none at all).
        which = "any class folder" if len(empty) == len(CIFAR10_CLASSES) else ", ".join(empty)
        raise RuntimeError(f"no .png/.jpg images in {which}: each of the 10 CIFAR-10 class folders under "
                           f"{folder} needs its images (an interrupted copy or extraction? extract the data again)")
    return files, labels, digest.hexdigest()[:16]


def _decode(files: list[str]) -> torch.Tensor:
    from PIL import Image

    out = np.empty((len(files), 32, 32, 3), dtype=np.uint8)
    for i, path in enumerate(files):  # a plain loop: ~40k tiny images/s, no worker start-up cost
        try:
            with Image.open(path) as im:
                size = im.size
                rgb = np.asarray(im.convert("RGB")) if size == (32, 32) else None
        except Exception as e:  # truncated, corrupt or not an image: PIL's error does not name the file
            raise RuntimeError(f"cannot read the image {path} ({type(e).__name__}: {e}); it is corrupt or "
                               "truncated: replace or delete it, or extract the data again") from e
        if rgb is None:
            raise RuntimeError(f"{path} is {size[0]}x{size[1]}; CIFAR-10 images are 32x32")
        out[i] = rgb
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def _local_source(root: Path, split: str) -> tuple[str, str, Callable[[], tuple]] | None:
    """(source, fingerprint, reader) of the first local copy found, else None."""
    batches = root / "cifar-10-batches-py"
    paths = [batches / n for n in _BATCH_FILES[split]]
    if all(p.is_file() for p in paths):
        fingerprint = ",".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths)
        return SOURCE_BATCHES, fingerprint, lambda: _read_batches(batches, split)
    folder = root / "cifar10" / split
    if folder.is_dir():
        files, labels, digest = _list_folder(folder)
        jpeg = all(f.lower().endswith((".jpg", ".jpeg")) for f in files)
        fingerprint = f"{len(files)} files, listing {digest}"
        return (SOURCE_JPEG if jpeg else SOURCE_FOLDER), fingerprint, lambda: (
            _decode(files), torch.tensor(labels, dtype=torch.int64))
    return None


def _cache_path(root: Path, source: str, split: str) -> Path:
    # The slug names the source, so a cache never outlives a change of source.
    slug = re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-").removeprefix("cifar-10-")
    return root / "cache" / f"cifar10-{slug}-{split}.pt"


def _read_cache(path: Path, fingerprint: str | None = None) -> tuple[ImageSet | None, str | None]:
    """(the cached set or None, why an existing cache file was not usable or None)."""
    if not path.is_file():
        return None, None
    try:
        d = torch.load(path, weights_only=True)
        if fingerprint is not None and d.get("fingerprint") != fingerprint:
            return None, "made from other files"
        return ImageSet(d["images"], d["labels"], d["source"]), None
    except Exception as e:  # torn or foreign: decode again rather than fail, but remember why
        return None, f"unreadable: corrupt or from another version ({type(e).__name__}: {str(e)[:120]})"


def _write_cache(path: Path, ds: ImageSet, fingerprint: str) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # atomic: readers never see half a file
        torch.save({"images": ds.images, "labels": ds.labels, "source": ds.source,
                    "fingerprint": fingerprint}, tmp)
        os.replace(tmp, path)
        return True
    except OSError as e:  # a read-only data directory still works, just without a cache
        warnings.warn(f"could not write the CIFAR-10 cache {path}: {e}", stacklevel=2)
        return False


def load_cifar10(split: str = "train", root: str | os.PathLike | None = None, *, download: bool = True,
                 allow_synthetic: bool = False, verbose: bool = True) -> ImageSet:
    """A CIFAR-10 split as uint8 tensors, decoded once and cached under ``root`` (default :func:`data_dir`).

    Used from Chapter 1 onward."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if root is not None:
        root = Path(root).expanduser()
        _require_folder(root, "root", "pass the folder that holds cifar10/ or cifar-10-batches-py/")
    else:
        root = data_dir()
    t0 = time.perf_counter()

    def done(ds: ImageSet, note: str) -> ImageSet:
        if verbose:
            print(f"CIFAR-10 {split}: {len(ds):,} images from {ds.source} [{note}]")
        return ds

    found = _local_source(root, split)
    download_note = "not tried (download=False)"
    bad_caches = []  # (path, why): the "not found" message says them, or it would hide a corrupt cache
    if found is None:
        # The source files may have been deleted to save space while their cache remains.
        for source in (SOURCE_BATCHES, SOURCE_JPEG, SOURCE_FOLDER):
            ds, why = _read_cache(path := _cache_path(root, source, split))
            if ds is not None:
                return done(ds, f"cache {path}")
            if why is not None:
                bad_caches.append((path, why))
        if download:
            try:
                from torchvision.datasets import CIFAR10

                CIFAR10(str(root), train=split == "train", download=True)
                download_note = "succeeded"
            except Exception as e:  # no internet, proxy, disk full, ...: report below
                download_note = f"failed ({type(e).__name__}: {e})"
            found = _local_source(root, split)
    if found is not None:
        source, fingerprint, read = found
        ds, why = _read_cache(path := _cache_path(root, source, split), fingerprint)
        if ds is not None:
            return done(ds, f"cache {path}")
        ds = ImageSet(*read(), source)
        note = f"decoded in {time.perf_counter() - t0:.1f} s" + (f" (the cache was {why})" if why else "")
        return done(ds, note + (f", cached to {path}" if _write_cache(path, ds, fingerprint) else ""))
    if allow_synthetic:
        ds = synthetic_cifar10(_SYNTHETIC_SIZES[split], seed=SPLITS.index(split))
        return done(ds, "generated")
    raise RuntimeError(
        f"CIFAR-10 {split} split not found{' (and a cache file is unreadable, see below)' if bad_caches else ''}. "
        "Looked for:\n"
        f"  {root / 'cifar-10-batches-py'}/{{{','.join(_BATCH_FILES[split])}}}  (torchvision's batches)\n"
        f"  {root / 'cifar10' / split}/<class>/*.png|jpg  (image folder)\n"
        f"  {root / 'cache'}/cifar10-*-{split}.pt  (decoded cache)\n"
        + "".join(f"    {p} exists but is {why}: delete it\n" for p, why in bad_caches) +
        f"  torchvision download: {download_note}\n"
        "To get the data: set SKIPLIB_DATA to a directory that holds it (or pass root=...), run once\n"
        "with internet access so torchvision downloads it there, or extract an image-folder copy:\n"
        '  tar xzf cifar10-jpeg.tar.gz -C "$SKIPLIB_DATA"\n'
        "Only the smoke profile (SKIPLIB_PROFILE=smoke) may use a synthetic stand-in (allow_synthetic=True).")


def synthetic_cifar10(n: int, seed: int = 0) -> ImageSet:
    """A learnable CIFAR-shaped stand-in: each class has its own colour and stripe orientation.

    ``seed`` drives per-image phase, colour jitter and noise, not the class looks, so train and
    test sets made with different seeds share them. Used by the ``smoke`` profile (Chapter 1 on)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    g = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
    k = torch.arange(10, dtype=torch.float32)
    colour = torch.stack([0.5 + 0.3 * torch.cos(2 * torch.pi * (k / 10 + c / 3)) for c in range(3)], 1)
    angle = torch.pi * k / 10 + (k % 2) * torch.pi / 2  # neighbours in colour differ most in angle
    period = 4.0 + (k % 3) * 2.0
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    images = torch.empty(n, 3, 32, 32, dtype=torch.uint8)
    for i in range(0, n, _CHUNK):
        lab = labels[i:i + _CHUNK]; m = len(lab)  # noqa: E702
        phase = torch.rand(m, 1, 1, generator=g) * 2 * torch.pi
        jitter = (torch.rand(m, 3, generator=g) - 0.5) * 0.3
        a = angle[lab].view(-1, 1, 1)
        proj = xx * torch.cos(a) + yy * torch.sin(a)
        stripes = torch.sin(2 * torch.pi * proj / period[lab].view(-1, 1, 1) + phase)
        img = (colour[lab] + jitter).view(m, 3, 1, 1) + 0.25 * stripes.unsqueeze(1)
        img = img + 0.1 * torch.randn(m, 3, 32, 32, generator=g)
        images[i:i + m] = (img.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageSet(images, labels, SOURCE_SYNTHETIC)


def subset(ds: ImageSet, n: int | None, seed: int = 0) -> ImageSet:
    """A stratified random subset of ``n`` images, seeded; ``n`` None or ``>= len(ds)`` gives ``ds``.

    Used from Chapter 1 onward."""
    if n is None or n >= len(ds):
        return ds
    classes = torch.unique(ds.labels)
    if n <= 0 or n < len(classes):
        raise ValueError(f"subset size must be at least the number of classes ({len(classes)}) "
                         f"so every class is represented, or None for all; got {n}")
    counts = torch.bincount(ds.labels)[classes]
    exact = counts.double() * n / len(ds)
    quota = exact.floor().long()
    # Largest remainder: the images lost to rounding go to the classes that lost the most.
    order = torch.argsort(exact - quota, descending=True, stable=True)
    quota[order[: n - int(quota.sum())]] += 1
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        idx = (ds.labels == c).nonzero().squeeze(1)
        picked.append(idx[torch.randperm(len(idx), generator=g)[:q]])
    idx = torch.cat(picked).sort().values  # keep the original order
    return ImageSet(ds.images[idx], ds.labels[idx], ds.source, ds.classes)


def to_float(images: torch.Tensor, size: int | None = None, mean: tuple[float, ...] = CIFAR10_MEAN,
             std: tuple[float, ...] = CIFAR10_STD) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` to normalised float32, resized (bilinear, antialiased) to ``size``.

    Used from Chapter 1 onward."""
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    n, c, h, w = images.shape
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean and std need one value per channel ({c}), got {len(mean)} and {len(std)}")
    if size is not None and size < 1:
        raise ValueError(f"size must be a positive number of pixels or None, got {size}")
    hw = (h, w) if size is None else (size, size)
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, c, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, c, 1, 1)
    out = torch.empty((n, c, *hw), dtype=torch.float32, device=images.device)
    for i in range(0, n, _CHUNK):
        x = images[i:i + _CHUNK].float().div_(255)
        if hw != (h, w):
            x = F.interpolate(x, size=hw, mode="bilinear", antialias=True, align_corners=False)
        out[i:i + _CHUNK] = (x - m) / s
    return out
