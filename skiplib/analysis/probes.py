"""Probes that look inside a network: per-layer gradient and activation norms (Chapters 1, 4 and 8).

He et al. (2016) argue that degradation is *not* vanishing gradients: with batch norm the
backward signal keeps a healthy norm in every layer. These probes let the reader check it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skiplib.checks import check_positive_ints

_WEIGHTED = (nn.Conv2d, nn.Linear)


def weighted_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv and linear layers in registration order (forward order for the course's models)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, _WEIGHTED)]


def gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, train_mode: bool = True) -> dict[str, float]:
    """L2 norm of the cross-entropy loss gradient w.r.t. each conv/linear weight, for one batch.

    ``train_mode`` (default) uses batch statistics in BN, as during training; the model's
    mode and its existing ``.grad`` fields are restored afterwards, and BN running stats
    are not changed.
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
    layers = weighted_layers(model)
    if not layers:
        raise ValueError("the model has no Conv2d or Linear layers to probe")
    was_training = model.training
    saved_grads = {id(p): p.grad for p in model.parameters()}
    bn_state = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    try:
        model.train(train_mode)
        weights = [m.weight for _, m in layers]
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, weights)
    finally:
        model.train(was_training)
        model.load_state_dict(bn_state, strict=False)
        for p in model.parameters():
            p.grad = saved_grads[id(p)]
    return {name: g.norm().item() for (name, _), g in zip(layers, grads)}


@torch.no_grad()
def activation_norms(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Root-mean-square of each conv/linear layer's output for one batch (eval mode)."""
    out: dict[str, float] = {}
    handles = [
        m.register_forward_hook(lambda _m, _i, o, name=name: out.__setitem__(name, o.pow(2).mean().sqrt().item()))
        for name, m in weighted_layers(model)
    ]
    was_training = model.training
    model.eval()
    try:
        model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return out


# ---------------------------------------------------------------------------------------------
# Chapter 8: gradient flow per block, shattered gradients (Balduzzi et al. 2017), and the
# ensemble view (Veit et al. 2016; lesion and path tools live in skiplib.analysis.ensemble).


def block_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, train_mode: bool = True) -> list[float]:
    """Norm of the loss gradient w.r.t. all conv/linear weights of each block of
    ``model.blocks()`` (the root of the sum of squares of :func:`gradient_norms` over the block)."""
    if not hasattr(model, "blocks"):
        raise ValueError(f"{type(model).__name__} has no .blocks() method to group layers by block")
    per_layer = gradient_norms(model, x, y, train_mode=train_mode)
    names = {id(m): name for name, m in model.named_modules()}
    out = []
    for block in model.blocks():
        prefix = names[id(block)] + "."
        out.append(sum(v * v for k, v in per_layer.items() if k.startswith(prefix)) ** 0.5)
    return out


def block_output_gradient_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                                train_mode: bool = True) -> list[float]:
    """``||d loss / d x_l||`` for the output ``x_l`` of every block of ``model.blocks()``, input to
    output, on one batch (BN in training mode unless ``train_mode=False``): how the backward signal
    grows or shrinks from block to block, on tensors of comparable meaning (unlike weight gradients
    of layers with different shapes)."""
    if not hasattr(model, "blocks"):
        raise ValueError(f"{type(model).__name__} has no .blocks() method to find its blocks' outputs")
    outputs: list[torch.Tensor] = []
    hooks = [block.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for block in model.blocks()]
    was_training = model.training
    model.train(train_mode)
    try:
        loss = F.cross_entropy(model(x), y)
        grads = torch.autograd.grad(loss, outputs)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return [g.norm().item() for g in grads]


@torch.no_grad()
def calibrate_bn(model: nn.Module, x: torch.Tensor, batch_size: int | None = None) -> nn.Module:
    """Replace every BN layer's running statistics by their average over ``x`` (train-mode
    forward passes, no gradients), then return ``model`` in eval mode: each sample's output, and
    its input gradient, then depend on that sample alone (Chapters 2 and 8).

    ``batch_size=None`` passes ``x`` as one batch, so the statistics are exactly those of ``x``;
    a number passes it in chunks of that many samples (for more inputs than fit in memory at
    once) and averages the chunks' statistics."""
    if len(x) == 0:
        raise ValueError("x is empty: BN statistics need at least one batch of inputs")
    if batch_size is not None:
        check_positive_ints(batch_size=batch_size)
    step = len(x) if batch_size is None else batch_size
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches seen: after one batch, exactly its statistics
    model.train()
    for i in range(0, len(x), step):
        model(x[i:i + step])
    for m, mom in zip(bns, saved):
        m.momentum = mom
    return model.eval()


def line_gradients(model: nn.Module, start: torch.Tensor, end: torch.Tensor, points: int = 256,
                   *, seed: int = 0) -> torch.Tensor:
    """Derivative of the model's output along the segment ``start -> end``, at ``points``
    evenly spaced inputs (Balduzzi et al.'s probe, Chapter 8). A multi-output model is reduced to
    one number by a fixed random unit projection (``seed``). Run it in eval mode (see
    :func:`calibrate_bn`), so that samples do not interact."""
    if start.shape != end.shape:
        raise ValueError(f"start and end must have the same shape, got {tuple(start.shape)} and {tuple(end.shape)}")
    if points < 2:
        raise ValueError(f"need at least 2 points on the line, got {points}")
    t = torch.linspace(0, 1, points, device=start.device).view(-1, *[1] * start.dim())
    xs = (start + t * (end - start)).requires_grad_(True)
    out = model(xs).flatten(1)
    w = torch.randn(out.shape[1], generator=torch.Generator().manual_seed(seed)).to(out)
    g = torch.autograd.grad((out @ (w / w.norm())).sum(), xs)[0]
    return (g.flatten(1) * (end - start).flatten()).sum(1).detach()  # chain rule: df/dt = grad . (end - start)


def autocorrelation(series: torch.Tensor, max_lag: int = 20) -> list[float]:
    """Normalised autocorrelation of a 1-D series at lags 0..max_lag (1 at lag 0; about 0 at every
    other lag for white noise, near 1 for a smooth, 'brown-noise' series)."""
    s = torch.as_tensor(series, dtype=torch.float64).flatten()
    if len(s) <= max_lag:
        raise ValueError(f"series of length {len(s)} is too short for max_lag={max_lag}")
    s = s - s.mean()
    var = (s * s).mean()
    if var == 0:
        return [1.0] + [0.0] * max_lag
    return [1.0] + [float((s[:-k] * s[k:]).mean() / var) for k in range(1, max_lag + 1)]
