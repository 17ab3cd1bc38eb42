"""The ensemble view of residual networks (Veit et al. 2016), taught in Chapter 8.

Unrolled, a stack of n residual blocks x_{l+1} = x_l + F_l(x_l) is a sum over 2^n paths from
input to output: at each block a path either goes through the branch F_l or along the
shortcut. A path through k branches has *length* k, and there are C(n, k) of them. This module
gives the reader three tools to test that view:

* :func:`delete_block` / :func:`swap_blocks`: lesion a trained net at test time;
* :func:`path_length_counts`: the binomial distribution of path lengths;
* :func:`path_gradient_norms`: how much gradient reaches the input along single paths of
  length k (Veit et al., Sec. 6), for nets of post-activation basic blocks (CifarResNet).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from math import comb

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from skiplib.blocks import BasicBlock, Bottleneck
from skiplib.checks import check_non_negative_ints


def _blocks(model: nn.Module) -> list[nn.Module]:
    if not hasattr(model, "blocks"):
        raise ValueError(f"{type(model).__name__} has no .blocks() method; lesion and path probes need one")
    return list(model.blocks())


def _block_names(model: nn.Module) -> list[str]:
    names = {id(m): name for name, m in model.named_modules()}
    return [names[id(b)] for b in _blocks(model)]


def changes_shape(block: nn.Module) -> bool:
    """True if the block's output shape differs from its input's (a stride or a channel change)."""
    convs = [m for name, m in block.named_modules() if isinstance(m, nn.Conv2d) and "downsample" not in name]
    if not convs:
        return False
    strided = any(c.stride != (1, 1) for c in convs)
    return strided or convs[0].in_channels != convs[-1].out_channels


class SkipOnly(nn.Module):
    """What a residual block computes once its branch is deleted: its shortcut (with the
    block's final ReLU for post-activation blocks)."""

    def __init__(self, shortcut: nn.Module | None, post_relu: bool) -> None:
        super().__init__()
        self.shortcut = shortcut
        self.post_relu = post_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out) if self.post_relu else out


def _skip_for(block: nn.Module, index: int) -> nn.Module:
    residual = getattr(block, "shortcut", "none") != "none"
    if changes_shape(block) and not (residual and getattr(block, "downsample", None) is not None):
        raise ValueError(f"block {index} changes the shape and has no shortcut to replace it with "
                         "(a plain net's downsampling block cannot be deleted); see deletable_blocks(model)")
    if not residual:
        return nn.Identity()  # plain block: deleting it leaves the identity, which is not what it computed
    return SkipOnly(block.downsample, post_relu=isinstance(block, (BasicBlock, Bottleneck)))


def deletable_blocks(model: nn.Module) -> list[int]:
    """Indices of the blocks :func:`delete_block` accepts: all blocks of a residual net; the
    shape-preserving ones of a plain net."""
    out = []
    for i, b in enumerate(_blocks(model)):
        try:
            _skip_for(b, i)
            out.append(i)
        except ValueError:
            pass
    return out


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def delete_block(model: nn.Module, index: int) -> nn.Module:
    """A copy of ``model`` with block ``index`` (in ``model.blocks()`` order) replaced by its
    shortcut: the identity where shapes match, option A/B's shortcut where they change.
    Veit et al.'s lesion at test time; ``model`` itself is unchanged."""
    names = _block_names(model)
    if not isinstance(index, int) or not 0 <= index < len(names):
        raise ValueError(f"block index must be an int in [0, {len(names)}), got {index!r}")
    skip = _skip_for(_blocks(model)[index], index)
    out = copy.deepcopy(model)
    _replace(out, names[index], copy.deepcopy(skip))
    return out


def swap_blocks(model: nn.Module, i: int, j: int) -> nn.Module:
    """A copy of ``model`` with blocks ``i`` and ``j`` swapped (both must keep the shape, Veit
    et al.'s reordering experiment)."""
    names, blocks = _block_names(model), _blocks(model)
    for k in (i, j):
        if not isinstance(k, int) or not 0 <= k < len(names):
            raise ValueError(f"block index must be an int in [0, {len(names)}), got {k!r}")
        if changes_shape(blocks[k]):
            raise ValueError(f"block {k} changes the shape; only shape-preserving blocks can be swapped")
    width = lambda b: next(m for m in b.modules() if isinstance(m, nn.Conv2d)).in_channels  # noqa: E731
    if width(blocks[i]) != width(blocks[j]):
        raise ValueError(f"blocks {i} and {j} work on different widths ({width(blocks[i])} vs {width(blocks[j])} channels)")
    out = copy.deepcopy(model)
    bi, bj = copy.deepcopy(blocks[i]), copy.deepcopy(blocks[j])
    _replace(out, names[i], bj)
    _replace(out, names[j], bi)
    return out


def path_length_counts(n: int) -> list[int]:
    """Number of paths of length k = 0..n through n residual blocks: C(n, k); they sum to 2^n."""
    check_non_negative_ints(**{"n (the number of blocks)": n})
    return [comb(n, k) for k in range(n + 1)]


def _stem(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.relu(model.bn1(model.conv1(x)))


def _head(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model.fc(torch.flatten(model.avgpool(x), 1))


def path_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, samples: int = 8,
                        lengths: list[int] | None = None, seed: int = 0) -> dict[int, float]:
    """Mean norm of the loss gradient at the first block's input carried by *one* path of
    length k, for each k in ``lengths`` (default 0..n), over ``samples`` random paths each.

    Veit et al. (2016, Sec. 6): one forward pass (eval mode), then backward passes that at each
    block follow either the branch or the shortcut, never both. Needs a CifarResNet-like model
    (``conv1``/``bn1``/``relu`` stem, ``avgpool``/``fc`` head) of residual :class:`BasicBlock`\\ s.
    Multiply by ``path_length_counts(n)[k]`` for the total over all paths of length k.
    """
    blocks = _blocks(model)
    if not all(isinstance(b, BasicBlock) and b.shortcut != "none" for b in blocks):
        raise ValueError("path_gradient_norms needs a residual net of BasicBlocks (a plain net has a single path)")
    n = len(blocks)
    lengths = list(range(n + 1)) if lengths is None else lengths
    if any(not 0 <= k <= n for k in lengths):
        raise ValueError(f"path lengths must lie in [0, {n}], got {lengths}")
    was_training = model.training
    model.eval()
    try:
        inputs, branches, shortcuts, outs = [], [], [], []
        h = _stem(model, x).detach()
        for b in blocks:  # one forward; each block's input is a leaf, so every step can be replayed
            h = h.detach().requires_grad_(True)
            f = b.bn2(b.conv2(b.relu(b.bn1(b.conv1(h)))))
            s = h if b.downsample is None else b.downsample(h)
            inputs.append(h)
            branches.append(f)
            shortcuts.append(s)
            h = F.relu(f + s)
            outs.append(h)
        last = outs[-1].detach().requires_grad_(True)
        g_top = torch.autograd.grad(F.cross_entropy(_head(model, last), y), last)[0]
        gen = torch.Generator().manual_seed(seed)
        result: dict[int, float] = {}
        for k in lengths:
            norms = []
            for _ in range(samples):
                through = set(torch.randperm(n, generator=gen)[:k].tolist())
                g = g_top
                for i in reversed(range(n)):
                    g = g * (outs[i] > 0)  # the block's final ReLU is on every path
                    target = branches[i] if i in through else shortcuts[i]
                    if target is inputs[i]:
                        continue  # identity shortcut: the gradient passes unchanged
                    g = torch.autograd.grad(target, inputs[i], g, retain_graph=True)[0]
                norms.append(g.norm().item())
            result[k] = sum(norms) / len(norms)
    finally:
        model.train(was_training)
    return result


def geometric_decay(lengths: Sequence[int], norms: Sequence[float]) -> dict[str, float]:
    """Least-squares line through ``log(norms)`` against ``lengths``: ``factor`` is the change per
    extra block on a path (below 1: the norm falls geometrically with length, as Veit et al. find),
    ``scale`` the fitted norm at length 0, and ``r2`` how well one geometric rate describes all
    lengths (1: exactly)."""
    k = np.asarray(lengths, dtype=float)
    g = np.asarray(norms, dtype=float)
    if k.shape != g.shape or k.ndim != 1 or len(k) < 3:
        raise ValueError(f"need matching 1-D lengths and norms of at least 3 points, got {k.shape} and {g.shape}")
    if not np.all(np.isfinite(g)) or np.any(g <= 0):
        raise ValueError("gradient norms must be positive and finite to fit a geometric rate")
    slope, intercept = np.polyfit(k, np.log(g), 1)
    residual = np.log(g) - (slope * k + intercept)
    spread = np.log(g) - np.log(g).mean()
    r2 = 1.0 - float(residual @ residual) / float(spread @ spread) if spread.any() else 1.0
    return {"factor": float(np.exp(slope)), "scale": float(np.exp(intercept)), "r2": r2}
