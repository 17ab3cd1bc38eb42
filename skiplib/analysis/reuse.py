"""Feature reuse in a DenseNet, tested by ablation (Chapter 5).

Huang et al.'s Fig. 5 (:func:`skiplib.blocks.dense.feature_reuse`) reads reuse from the *size* of
the weights a layer puts on each earlier layer's maps. Large weights need not matter, and small
ones can: a heatmap of weight norms cannot fail. :func:`connection_ablation` asks the network
instead. For every connection of a dense block (a *source*: the block input or an earlier dense
layer; a *target*: a later dense layer, or the transition / classifier that reads the whole block)
it zeroes the source's channels in the target's input *for that target only* and measures how much
the evaluation loss rises. The channels are zeroed where the heatmap's weights read them: at the
input of the target's first convolution (after its BN-ReLU), of the transition's convolution, or of
the classifier (after ``norm5``, ReLU and pooling). Zeroing them is the same as setting those
weights to zero: the connection is cut, every other layer still sees the source.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skiplib.blocks.dense import DenseBlock, Transition
from skiplib.models.densenet import DenseNet


@dataclass(frozen=True)
class ConnectionAblation:
    """What :func:`connection_ablation` measured. ``increase[b][s, t]``: mean rise of the per-image
    cross-entropy when connection source s -> target t of dense block b is cut (rows: source 0 =
    the block input, s >= 1 = dense layer s; columns: dense layers 1..L, then the transition or, for
    the last block, the classifier), NaN where s does not feed t: the layout of
    :func:`skiplib.blocks.dense.feature_reuse`. ``stderr``: the standard error of that mean over the
    images (the spread of the per-image rises / sqrt(images)), so a rise can be told from sampling
    noise. ``per_image[b][s, t, i]``: the rise on image i, from which the standard error of any
    combination of cuts follows (the cuts are scored on the same images, so their rises are
    correlated). ``base_loss``: the intact network's mean loss on the same images."""

    increase: list[Tensor]
    stderr: list[Tensor]
    per_image: list[Tensor]
    base_loss: float
    images: int


def reuse_targets(net: DenseNet) -> list[tuple[DenseBlock, list[nn.Module]]]:
    """For each dense block, the modules whose input holds the connections that the heatmap shows:
    each dense layer's first convolution, then the conv of the transition after the block or, after
    the last block, the classifier."""
    if not isinstance(net, DenseNet):
        raise ValueError(f"connection_ablation needs a skiplib DenseNet (skiplib.models.densenet.DenseNet), "
                         f"got {type(net).__name__}")
    out: list[tuple[DenseBlock, list[nn.Module]]] = []
    for m in net.features:
        if isinstance(m, DenseBlock):
            out.append((m, [layer.conv1 for layer in m.values()]))
        elif isinstance(m, Transition):
            out[-1][1].append(m.conv)
    out[-1][1].append(net.classifier)
    for block, targets in out:
        if len(targets) != len(block) + 1:  # a transition per block but the last: torchvision's layout
            raise ValueError("every dense block but the last must be followed by a transition")
    return out


def _zero_channels(lo: int, hi: int):
    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0].clone()  # out of place: the caller's tensor (the block's concatenation) stays intact
        x[:, lo:hi] = 0
        return (x, *args[1:])

    return hook


def _batches(data) -> list[tuple[Tensor, Tensor]]:
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        return [(data[0], data[1])]  # one batch (x, y)
    if not isinstance(data, Iterable):
        raise ValueError(f"data must be a batch (x, y) or an iterable of them (a loader), got {type(data).__name__}")
    # materialised once, so every cut connection is scored on exactly the same images
    return [(x, y) for x, y in data]


def _head(net: DenseNet, features: Tensor) -> Tensor:
    # DenseNet.forward after ``features``; _staged_logits checks that the two agree
    out = F.relu(features)
    out = F.adaptive_avg_pool2d(out, (1, 1))
    return net.classifier(torch.flatten(out, 1))


def _tail(net: DenseNet, stages: list[nn.Module], start: int, h: Tensor) -> Tensor:
    for m in stages[start:]:
        h = m(h)
    return _head(net, h)


def _staged_logits(net: DenseNet, stages: list[nn.Module], x: Tensor) -> tuple[Tensor, dict[int, list[Tensor]]]:
    """The network's logits, computed stage by stage, and every dense block's list of features
    (its input, then each layer's new maps), keyed by the block's index in ``net.features``."""
    cache: dict[int, list[Tensor]] = {}
    h = x
    for i, m in enumerate(stages):
        if isinstance(m, DenseBlock):
            features = [h]
            for layer in m.values():
                features.append(layer(features))
            cache[i] = features
            h = torch.cat(features, 1)
        else:
            h = m(h)
    logits = _head(net, h)
    reference = net(x)
    if not torch.allclose(logits, reference, rtol=1e-4, atol=1e-5 * float(reference.abs().max()) + 1e-6):
        raise ValueError(f"{type(net).__name__}.forward is not a DenseNet's stage by stage forward; "
                         "connection_ablation cannot cut its connections")
    return logits, cache


def _cut_logits(net: DenseNet, stages: list[nn.Module], i: int, features: list[Tensor], t: int, target: nn.Module,
                lo: int, hi: int) -> Tensor:
    """Logits with channels ``lo:hi`` zeroed in the input of ``target`` (column ``t`` of the dense
    block ``stages[i]``, whose intact ``features`` are given): the layers before the target are
    not affected, so the block is rerun from dense layer t + 1 on."""
    handle = target.register_forward_pre_hook(_zero_channels(lo, hi))
    try:
        features = features[:t + 1]  # a new list: the block input and the new maps of layers 1..t
        for layer in list(stages[i].values())[t:]:
            features.append(layer(features))
        return _tail(net, stages, i + 1, torch.cat(features, 1))
    finally:
        handle.remove()


def connection_ablation(net: DenseNet, data) -> ConnectionAblation:
    """Cut each connection of each dense block of ``net`` in turn and measure the loss increase on
    ``data`` (a batch ``(x, y)`` or an iterable of batches, e.g. a test loader on a fixed subset);
    see :class:`ConnectionAblation` for the layout. Runs in eval mode without gradients on the
    model's device. The intact features of the layers before a target are computed once and
    reused, so a cut reruns the network only from its target on. The model is left as it was:
    hooks removed (even on error) and its train/eval mode restored. Chapter 5."""
    blocks = reuse_targets(net)
    stages = list(net.features.children())
    where = [i for i, m in enumerate(stages) if isinstance(m, DenseBlock)]
    device = next(net.parameters()).device
    batches = [(x.to(device), y.to(device)) for x, y in _batches(data)]
    if not batches or sum(len(y) for _, y in batches) == 0:
        raise ValueError("connection_ablation got no images to evaluate on")
    base, rises = [], {}
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for x, y in batches:
                logits, cache = _staged_logits(net, stages, x)
                loss = F.cross_entropy(logits.float(), y, reduction="none")
                base.append(loss)
                for b, (i, (block, targets)) in enumerate(zip(where, blocks)):
                    k0, k = block.in_channels, next(iter(block.values())).growth_rate
                    for t, target in enumerate(targets):
                        for s in range(t + 1):  # target t (0-based) reads the block input and layers 1..t
                            lo, hi = (0, k0) if s == 0 else (k0 + (s - 1) * k, k0 + s * k)
                            cut = _cut_logits(net, stages, i, cache[i], t, target, lo, hi)
                            rise = F.cross_entropy(cut.float(), y, reduction="none") - loss
                            rises.setdefault((b, s, t), []).append(rise)
    finally:
        net.train(was_training)
    base_loss = torch.cat(base).cpu()
    per_image = []
    for b, (block, targets) in enumerate(blocks):
        rise = torch.full((len(block) + 1, len(targets), len(base_loss)), float("nan"))
        for t in range(len(targets)):
            for s in range(t + 1):
                rise[s, t] = torch.cat(rises[b, s, t]).cpu()
        per_image.append(rise)
    increase = [r.mean(-1) for r in per_image]
    n = len(base_loss)
    stderr = [r.std(-1) / n ** 0.5 if n > 1 else torch.full_like(r[..., 0], float("nan")) for r in per_image]
    return ConnectionAblation(increase, stderr, per_image, base_loss.mean().item(), len(base_loss))
