"""Batches on the device: :class:`DeviceLoader` and :func:`cifar10_loaders`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from skiplib.data.cifar import SOURCE_SYNTHETIC, data_dir, load_cifar10, subset, to_float


class DeviceLoader:
    """Batches from tensors living on the device, with vectorised per-sample random crop (zero-pad
    ``pad``, crop back) and horizontal flip. Random numbers come from its own CPU generator seeded
    with ``seed``, so batches match across devices; ``state_dict`` taken between epochs resumes the
    exact next epoch. Used from Chapter 1 onward."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False,
                 augment: bool = False, pad: int = 4, drop_last: bool = False,
                 device: str | torch.device | None = None, seed: int = 0) -> None:
        if len(x) != len(y):
            raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        if augment and x.dim() != 4:
            raise ValueError(f"augment needs images [N, C, H, W], got shape {tuple(x.shape)}")
        self.device = torch.device(device) if device is not None else x.device
        # channels_last is what cuDNN's fast convolutions want; on the CPU keep the caller's layout.
        cuda4d = x.dim() == 4 and self.device.type == "cuda"
        self._format = torch.channels_last if cuda4d else torch.contiguous_format
        self.x = x.to(self.device, memory_format=torch.channels_last if cuda4d else torch.preserve_format)
        self.y = y.to(self.device)
        self.batch_size, self.shuffle, self.augment, self.pad = batch_size, shuffle, augment, pad
        self.drop_last, self.seed = drop_last, seed
        self.generator = torch.Generator().manual_seed(seed)
        self.epoch = 0  # epochs started

    @property
    def num_samples(self) -> int:
        """Number of samples (all of them, including any that drop_last leaves out)."""
        return len(self.y)

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, b, g, dev = self.num_samples, self.batch_size, self.generator, self.device
        self.epoch += 1
        # All of the epoch's random numbers are drawn here, on the CPU, then moved once.
        order = torch.randperm(n, generator=g).to(dev) if self.shuffle else None
        if self.augment:
            flips = (torch.rand(n, generator=g) < 0.5).to(dev)
            shifts = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=g).to(dev)
        stop = n - n % b if self.drop_last else n
        for i in range(0, stop, b):
            if order is None:
                xb, yb = self.x[i:i + b], self.y[i:i + b]
            else:
                xb, yb = self.x[order[i:i + b]], self.y[order[i:i + b]]
            if self.augment:
                xb = self._crop_flip(xb, flips[i:i + b], shifts[i:i + b])
            yield xb, yb

    def _crop_flip(self, xb: torch.Tensor, flip: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        b, _, h, w = xb.shape
        if self.pad:
            xb = F.pad(xb, (self.pad,) * 4)
        rows = shift[:, :1] + torch.arange(h, device=xb.device)  # [B, H] rows of the padded image
        cols = torch.arange(w, device=xb.device).expand(b, w)
        cols = torch.where(flip[:, None], cols.flip(-1), cols) + shift[:, 1:]  # a flip reads columns backwards
        batch = torch.arange(b, device=xb.device)[:, None, None]
        out = xb[batch, :, rows[:, :, None], cols[:, None, :]]  # one gather: [B, H, W, C]
        return out.permute(0, 3, 1, 2).contiguous(memory_format=self._format)

    def state_dict(self) -> dict:
        """The generator state (and epoch count), so a checkpoint resumes the same batch order."""
        return {"generator": self.generator.get_state(), "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.generator.set_state(state["generator"].cpu())  # a checkpoint may be mapped to CUDA
        self.epoch = int(state.get("epoch", 0))


_FLOAT_CACHE: dict[tuple, tuple] = {}
_FLOAT_CACHE_SIZE = 4  # a notebook rebuilds loaders often; a few entries cover it without hoarding memory


def cifar10_loaders(*, train_subset: int | None, test_subset: int | None, image_size: int = 32,
                    batch_size: int = 128, device: str | torch.device | None = None, seed: int = 0,
                    allow_synthetic: bool = False, root: str | os.PathLike | None = None, augment: bool = True,
                    verbose: bool = True, download: bool = True) -> tuple[DeviceLoader, DeviceLoader, dict]:
    """Train loader (shuffled, crop+flip, ``pad = 4 * image_size // 32``), test loader, and an info dict.

    Subsets are stratified and seeded; float tensors stay in memory for repeated calls. ``info`` has
    "source", "train_size", "test_size", "image_size". Used from Chapter 1 onward."""
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    root_path = (Path(root).expanduser() if root is not None else data_dir()).resolve()
    key = (str(root_path), train_subset, test_subset, image_size, seed, allow_synthetic)
    parts = _FLOAT_CACHE.get(key)
    if parts is None:
        parts = []
        for split, n in (("train", train_subset), ("test", test_subset)):
            ds = load_cifar10(split, root_path, download=download, allow_synthetic=allow_synthetic, verbose=verbose)
            ds = subset(ds, n, seed)
            parts.append((to_float(ds.images, image_size), ds.labels, ds.source))
        # A synthetic stand-in is not kept, so data extracted later is picked up by the next call.
        if all(p[2] != SOURCE_SYNTHETIC for p in parts):
            _FLOAT_CACHE[key] = parts
            while len(_FLOAT_CACHE) > _FLOAT_CACHE_SIZE:
                _FLOAT_CACHE.pop(next(iter(_FLOAT_CACHE)))
    elif verbose:
        print(f"CIFAR-10: reusing {parts[0][2]} tensors from memory")
    (x_tr, y_tr, src_tr), (x_te, y_te, src_te) = parts
    # A last batch of one sample would break BatchNorm in train mode, so that one sample waits.
    drop_last = len(y_tr) % batch_size == 1 and len(y_tr) > 1
    train = DeviceLoader(x_tr, y_tr, batch_size, shuffle=True, augment=augment, pad=4 * image_size // 32,
                         drop_last=drop_last, device=device, seed=seed)
    test = DeviceLoader(x_te, y_te, batch_size, device=device, seed=seed)
    source = src_tr if src_tr == src_te else f"{src_tr} (train) / {src_te} (test)"
    info = {"source": source, "train_size": len(y_tr), "test_size": len(y_te), "image_size": image_size}
    return train, test, info

