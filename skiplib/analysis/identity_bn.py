"""The identity construction in the regime training works in (Chapter 2).

:func:`skiplib.analysis.identity.deepen` makes a plain block pass its input through by setting
each BN's *stored* statistics to mean 0 and variance 1, which is exact in eval mode only. During
training BN normalises with each batch's own statistics, and then a BN with the hand-set
γ = √(1 + ε), β = 0 standardises its input instead of passing it through. This module measures
the copy in that regime and builds the version of the construction that survives it: each
inserted BN's γ and β set to the standard deviation and mean of its own input over the data
(:func:`fit_identity_bn`), so batch normalisation undoes itself up to batch-to-batch
fluctuation.

A residual net needs none of this: its inserted blocks switch the branch off with γ = 0 on
the last BN, which multiplies whatever statistics the batch has.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from skiplib.analysis.identity import exact_math


def _named_bns(model: nn.Module, names: list[str]) -> list[nn.modules.batchnorm._BatchNorm]:
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"no module named {missing[0]!r} in the model (blocks are named like 'layer2.3')")
    bns = [m for n in names for m in modules[n].modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        raise ValueError(f"the blocks {names[:3]} hold no BatchNorm layer: nothing to fit")
    return bns


@torch.no_grad()
def fit_identity_bn(model: nn.Module, names: list[str], x: torch.Tensor, batch_size: int = 500) -> nn.Module:
    """A copy of ``model`` in which every BN of the named blocks has its γ, β and running statistics
    set from its own input over ``x``: β = running mean = the input's per-channel mean, γ² − ε =
    running variance = its (biased) variance. In eval mode such a BN computes its input again (up
    to rounding); in training mode it does so up to how far a batch's statistics stray from the data's.

    The statistics are those of the inputs ``model`` itself gives these BNs in eval mode, so for a
    copy made by :func:`~skiplib.analysis.identity.deepen` (whose inserted blocks pass x through)
    they are the statistics of the activations entering each inserted block."""
    if len(x) == 0:
        raise ValueError("x is empty: the BN statistics need at least one input")
    out = copy.deepcopy(model).eval()
    bns = _named_bns(out, names)
    stats: dict[int, tuple] = {}

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        z = inputs[0].double().transpose(0, 1).flatten(1)  # channels x (batch * pixels)
        total, squares, count = stats.get(id(module), (0.0, 0.0, 0))
        stats[id(module)] = (total + z.sum(1), squares + (z * z).sum(1), count + z.shape[1])

    hooks = [bn.register_forward_pre_hook(record) for bn in bns]
    try:
        device = next(out.parameters()).device
        for i in range(0, len(x), batch_size):
            out(x[i:i + batch_size].to(device))
    finally:
        for h in hooks:
            h.remove()
    for bn in bns:
        total, squares, count = stats[id(bn)]
        mean = total / count
        var = (squares / count - mean * mean).clamp_min(0)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)
        bn.weight.copy_((var + bn.eps).sqrt())
        bn.bias.copy_(mean)
    return out


@torch.no_grad()
def train_mode_loss(model: nn.Module, loader) -> dict:
    """Mean cross-entropy and error of ``model`` over ``loader`` with every BN normalising by its
    batch's statistics, as in a training step (float32, no AMP or TF32). Runs on a copy: ``model``,
    its running statistics included, is left as it was."""
    net = copy.deepcopy(model).train()
    device = next(net.parameters()).device
    total_loss, wrong, n = 0.0, 0, 0
    with exact_math():
        for x, y in loader:
            if len(y) < 2:
                raise ValueError("a batch of one: training-mode BN needs at least two samples per batch")
            x, y = x.to(device), y.to(device)
            logits = net(x)
            total_loss += F.cross_entropy(logits.float(), y, reduction="sum").item()
            wrong += (logits.argmax(1) != y).sum().item()
            n += y.numel()
    if n == 0:
        raise ValueError("train_mode_loss() got an empty loader: no batches to score")
    return {"loss": total_loss / n, "err": wrong / n}
