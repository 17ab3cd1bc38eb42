"""Probes that look inside a network: per-layer gradient and activation norms (Chapters 1, 4 and 8).

He et al. (2016) argue that degradation is *not* vanishing gradients: with batch norm the
backward signal keeps a healthy norm in every layer. These probes let the reader check it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

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
