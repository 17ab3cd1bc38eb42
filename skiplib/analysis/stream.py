"""The Transformer's residual stream, measured (Chapter 9).

``layer_grad_norms``: the gradient norm of each layer's parameters on one batch, the quantity
Xiong et al. (2020) analyse at initialisation. ``stream_norms``: the stream's size after every
layer. ``stream_shares``: the final stream split exactly into what the embedding and each layer
added, each part's share measured along the final stream (the shares sum to 1).
``delete_layer_losses``: Veit et al.'s lesion of Chapter 8 in a Transformer, one layer skipped at a time.
"""

from __future__ import annotations

import torch

from skiplib.models.transformer import Transformer
from skiplib.train.sequence import masked_loss


def _check_transformer(model: object) -> Transformer:
    if not isinstance(model, Transformer):
        raise ValueError(f"expected a skiplib.models.transformer.Transformer, got {type(model).__name__}")
    return model


def layer_grad_norms(model: Transformer, inputs: torch.Tensor, targets: torch.Tensor,
                     mask: torch.Tensor) -> torch.Tensor:
    """``[n_layer]``: the L2 norm of the loss gradient with respect to all parameters of each layer,
    at the model's current weights (train mode, one batch). The model's ``.grad`` fields are left empty."""
    _check_transformer(model).train()
    model.zero_grad(set_to_none=True)
    masked_loss(model(inputs), targets, mask).backward()
    norms = []
    for block in model.h:
        squares = [p.grad.pow(2).sum() for p in block.parameters() if p.grad is not None]
        norms.append(torch.stack(squares).sum().sqrt() if squares else torch.tensor(0.0))
    model.zero_grad(set_to_none=True)
    return torch.stack(norms).detach().cpu()


@torch.no_grad()
def stream_norms(model: Transformer, inputs: torch.Tensor) -> torch.Tensor:
    """``[n_layer + 1]``: the mean L2 norm of a token's stream vector after the embedding and after each layer."""
    _check_transformer(model).eval()
    x = model.embed(inputs)
    norms = [x.norm(dim=-1).mean()]
    for block in model.h:
        x = block(x)
        norms.append(x.norm(dim=-1).mean())
    return torch.stack(norms).cpu()


@torch.no_grad()
def stream_shares(model: Transformer, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split the stream before the final LayerNorm, ``x_L = e + sum_l (a_l + m_l)``, exactly into the
    embedding ``e`` and what each layer's attention ``a_l`` and MLP ``m_l`` added, and measure each part's
    share along ``x_L``: ``share = <part, x_L> / <x_L, x_L>`` per token, averaged. The shares of the
    embedding and of all sublayers sum to 1. Only pre-LN and ReZero models add to a stream."""
    model = _check_transformer(model).eval()
    if model.config.wiring not in ("pre_ln", "rezero"):
        raise ValueError(f"a {model.config.wiring} model has no additive stream to split; use pre_ln or rezero")
    x = model.embed(inputs)
    parts = [x]
    for block in model.h:
        x, added_attn, added_mlp = block.branches(x)
        parts += [added_attn, added_mlp]
    final_sq = (x * x).sum(-1)

    def share(part: torch.Tensor) -> torch.Tensor:
        return ((part * x).sum(-1) / final_sq).mean()

    n = model.config.n_layer
    return {"embedding": share(parts[0]).cpu(),
            "attn": torch.stack([share(parts[1 + 2 * i]) for i in range(n)]).cpu(),
            "mlp": torch.stack([share(parts[2 + 2 * i]) for i in range(n)]).cpu(),
            "residual_error": (sum(parts) - x).abs().max().cpu()}


@torch.no_grad()
def delete_layer_losses(model: Transformer, inputs: torch.Tensor, targets: torch.Tensor,
                        mask: torch.Tensor) -> tuple[float, torch.Tensor]:
    """The scored loss of the whole model and ``[n_layer]`` losses with layer ``l`` replaced by the
    identity (its skip alone), the rest unchanged: how much the model leans on any one layer."""
    model = _check_transformer(model).eval()

    def loss_without(skip: int | None) -> float:
        x = model.embed(inputs)
        for i, block in enumerate(model.h):
            if i != skip:
                x = block(x)
        return masked_loss(model.lm_head(model.ln_f(x)), targets, mask).item()

    return loss_without(None), torch.tensor([loss_without(i) for i in range(model.config.n_layer)])
