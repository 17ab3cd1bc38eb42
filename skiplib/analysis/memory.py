"""The memory price of dense connectivity, measured (Chapter 5): ``python -m skiplib dense-memory``.

A naive dense layer stores its own concatenation of all earlier features (and the BN and ReLU
outputs of it) for the backward pass, so a dense block of L layers keeps O(L^2) feature maps.
The memory-efficient layer (gradient checkpointing, Pleiss et al. 2017) stores only O(1) maps
per layer and recomputes the rest during the backward pass: O(L) memory, some extra time.

What is measured, on any device (CPU included): :class:`TensorMemory` counts the bytes of every
tensor storage that is created while it is active and still alive, op by op (a
``TorchDispatchMode`` that sees each new storage and a finaliser that sees it freed). The
*peak* of that count over one training step (forward + backward) is the extra memory the step
needs beyond the parameters and the input batch: activations kept for backward, gradients and
temporaries. On CUDA the caching allocator's ``max_memory_allocated`` is printed beside it.
"""

from __future__ import annotations

import time
import weakref

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from skiplib.blocks.dense import DenseBlock

MiB = 2**20


class TensorMemory(TorchDispatchMode):
    """Live bytes of tensor storages created inside the ``with`` block: ``.current`` and ``.peak``.

    Tensors that existed before (parameters, the input) are not counted; a storage counts once
    however many views share it.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _free(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type != "meta":
                storage = t.untyped_storage()
                key, size = id(storage), storage.nbytes()
                if size and key not in self._live:
                    self._live[key] = size
                    self.current += size
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(storage, self._free, key)
        return out


def step_memory(module: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """One forward + backward of ``module`` on ``x`` (loss: mean of the output); returns the
    tensor bytes alive after the forward pass and the peak over the step, in MiB."""
    module.zero_grad(set_to_none=True)
    x = x.detach().requires_grad_(True)
    with TensorMemory() as mem:
        y = module(x)
        loss = y.float().mean()
        after_forward = mem.current
        loss.backward()
    module.zero_grad(set_to_none=True)
    return {"forward_mib": after_forward / MiB, "peak_mib": mem.peak / MiB}


def seconds_per_step(module: torch.nn.Module, x: torch.Tensor, steps: int = 3) -> float:
    """Median wall-clock seconds of one forward + backward (after one warm-up step)."""
    x = x.detach().requires_grad_(True)
    times = []
    for i in range(steps + 1):
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        module(x).float().mean().backward()
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first step warms up the allocator and oneDNN
            times.append(time.perf_counter() - t0)
        module.zero_grad(set_to_none=True)
    return float(np.median(times))


def block_memory_curve(depths, *, growth_rate: int = 12, in_channels: int = 24, bn_size: int | None = 4,
                       batch: int = 8, image_size: int = 16, steps: int = 0, device: str | torch.device = "cpu",
                       seed: int = 0) -> list[dict]:
    """For each depth L: a dense block of L layers, naive and memory-efficient (same weights),
    one training step each; rows with depth, mode, forward_mib, peak_mib (and seconds if steps > 0)."""
    rows = []
    for depth in depths:
        torch.manual_seed(seed)
        block = DenseBlock(depth, in_channels, growth_rate, bn_size).to(device)
        x = torch.randn(batch, in_channels, image_size, image_size, device=device)
        for mode, efficient in (("naive", False), ("memory-efficient", True)):
            block.set_memory_efficient(efficient)
            row = {"depth": depth, "mode": mode, **step_memory(block, x)}
            if torch.device(device).type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
                block(x.detach().requires_grad_(True)).mean().backward()
                row["cuda_peak_mib"] = (torch.cuda.max_memory_allocated(device) - base) / MiB
                block.zero_grad(set_to_none=True)
            if steps:
                row["seconds"] = seconds_per_step(block, x, steps)
            rows.append(row)
    return rows


def growth_exponent(depths, values) -> float:
    """Slope of log(value) against log(depth) over the given points: 2 for quadratic, 1 for linear growth."""
    if len(depths) < 2:
        raise ValueError("need at least two depths to fit a growth exponent")
    return float(np.polyfit(np.log(np.asarray(depths, float)), np.log(np.asarray(values, float)), 1)[0])
