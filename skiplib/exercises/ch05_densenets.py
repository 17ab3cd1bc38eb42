"""Chapter 5 (DenseNets): the grader of its coding exercise.

:func:`check_dense_layer`: grades a learner's dense layer (its ``forward``) against
  :class:`skiplib.blocks.DenseLayer` on shared weights, and names the usual mistakes:
  concatenating on the wrong dimension, skipping the 1x1 bottleneck, conv-BN-ReLU instead of
  BN-ReLU-conv, a missing ReLU, returning the concatenation instead of the k new maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skiplib.blocks.dense import DenseLayer
from skiplib.exercises._runner import randomise_, run_checks

# ---------------------------------------------------------------------------------------------
# The coding exercise: a dense layer's forward.

_CASES = ((8, 8, 3), (16, 6, 2), (24, 4, 1))  # (block input k0, growth rate k, number of inputs)
_MODULES = ("norm1", "relu1", "conv1", "norm2", "relu2", "conv2")


def _inputs(k0: int, k: int, n: int, seed: int, batch: int = 4, size: int = 6) -> list[torch.Tensor]:
    """The block input (k0 channels) and the k new maps of each of the n - 1 earlier layers."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, k0 if i == 0 else k, size, size, generator=g) for i in range(n)]


def _reference(in_channels: int, k: int, seed: int) -> DenseLayer:
    """skiplib's layer with random BN scales, shifts and running statistics, so that a forgotten
    or swapped BN changes the output."""
    g = torch.Generator().manual_seed(seed)
    ref = DenseLayer(in_channels, k, bn_size=4)
    return randomise_(ref, g, bias_scale=0.5, mean_scale=0.3)


def _variant(ref: DenseLayer, inputs: list[torch.Tensor], mistake: str) -> torch.Tensor:
    """The reference's output (eval mode) with one typical ``mistake``, for a precise hint."""
    x = torch.cat(inputs[::-1] if mistake == "reversed" else inputs, 1)
    x = ref.norm1(x)
    x = x if mistake == "no_relu1" else F.relu(x)
    x = ref.norm2(ref.conv1(x))
    x = x if mistake == "no_relu2" else F.relu(x)
    return ref.conv2(x)


_HINTS = {
    "reversed": "concatenate in order: the block input first, then the earlier layers' maps (torch.cat(inputs, 1))",
    "no_relu1": "a ReLU is missing between norm1 and conv1 (BN-ReLU-Conv1x1)",
    "no_relu2": "a ReLU is missing between norm2 and conv2 (BN-ReLU-Conv3x3)",
}


def _trace(layer: nn.Module, inputs: list[torch.Tensor]):
    """Run ``layer(inputs)`` recording which of its submodules ran, in order, with input shapes.
    Returns (output or None, calls, exception or None)."""
    calls: list[tuple[str, tuple[int, ...]]] = []
    hooks = []
    for name in _MODULES:
        m = getattr(layer, name, None)
        if isinstance(m, nn.Module):
            hooks.append(m.register_forward_pre_hook(
                lambda mod, args, name=name: calls.append((name, tuple(args[0].shape)))))
    try:
        return layer(list(inputs)), calls, None
    except NotImplementedError:
        raise
    except Exception as e:  # judged by the checks below, from what ran before it failed
        return None, calls, e
    finally:
        for h in hooks:
            h.remove()


def check_dense_layer(cls, *, verbose: bool = True) -> bool:
    """Chapter 5 exercise: ``cls(in_channels, growth_rate, bn_size=4)`` must build a dense layer
    whose ``forward(inputs)`` takes the list of earlier feature maps, concatenates them along the
    channel dimension, applies BN-ReLU-Conv1x1 (to 4k channels) then BN-ReLU-Conv3x3 (to k) and
    returns only the k new maps, like :class:`skiplib.blocks.DenseLayer`. Prints what is right
    and what is not; returns True if all is."""
    built: dict[tuple[int, int], nn.Module] = {}

    def make(k0: int, k: int, n: int) -> nn.Module:
        key = (k0 + (n - 1) * k, k)
        if key not in built:
            layer = cls(key[0], k, bn_size=4)
            if not isinstance(layer, nn.Module):
                raise TypeError(f"{getattr(cls, '__name__', cls)}(...) returned a {type(layer).__name__}, not an nn.Module")
            built[key] = layer
        return built[key]

    def parameters() -> str | None:
        for k0, k, n in _CASES:
            c = k0 + (n - 1) * k
            mine = {key: tuple(v.shape) for key, v in make(k0, k, n).state_dict().items()}
            want = {key: tuple(v.shape) for key, v in DenseLayer(c, k, bn_size=4).state_dict().items()}
            if mine != want:
                return (f"for {c} input channels and k = {k} the parameters differ from skiplib's DenseLayer: "
                        f"expected {sorted({key.split('.')[0] for key in want})} with conv1 {want['conv1.weight']} "
                        f"and conv2 {want['conv2.weight']}; keep the __init__ given in the exercise")
        return None

    def run(case, train: bool = False):
        k0, k, n = case
        layer = make(k0, k, n)
        ref = _reference(k0 + (n - 1) * k, k, seed=n)
        layer.load_state_dict(ref.state_dict())
        layer.train(train)
        ref.train(train)
        inputs = _inputs(k0, k, n, seed=10 + n)
        with torch.no_grad():
            out, calls, err = _trace(layer, inputs)
            want = ref(inputs)
        return layer, ref, inputs, out, calls, err, want

    def concatenation() -> str | None:
        # three inputs of equal shape: concatenating on any dimension "works", so we can see which
        k0, k, n = _CASES[0]
        _, _, inputs, out, calls, err, _ = run(_CASES[0])
        first = next((shape for name, shape in calls if not name.startswith("relu")), None)
        if first is None:
            return (f"no layer received the concatenated input: your forward raised {type(err).__name__}: {err}" if err
                    else "norm1 is never called: the concatenation must go through norm1, relu, conv1 first")
        batch, _, h, w = inputs[0].shape
        if first == (batch, k0 + (n - 1) * k, h, w):
            return None
        for dim, name in enumerate(("0 (the batch)", "1", "2 (the height)", "3 (the width)")):
            stacked = list(inputs[0].shape)
            stacked[dim] *= n
            if dim != 1 and first == tuple(stacked):
                return (f"you concatenated along dimension {name}: feature maps are stacked along the channel "
                        "dimension, torch.cat(inputs, dim=1)")
        expected = (batch, k0 + (n - 1) * k, h, w)
        return f"the first layer received a tensor of shape {first}; expected {expected} = torch.cat(inputs, dim=1)"

    def structure() -> str | None:
        for case in _CASES:
            k0, k, n = case
            _, _, _, out, calls, err, _ = run(case)
            order = [name for name, _ in calls if name in ("norm1", "conv1", "norm2", "conv2")]
            if err is not None and not order:
                return f"your forward raised {type(err).__name__}: {err}"
            if "conv1" not in order:
                return ("the bottleneck is missing: conv1, the 1x1 conv to 4k channels, is never called "
                        "(BN-ReLU-Conv1x1 comes before BN-ReLU-Conv3x3)")
            if order[:4] != ["norm1", "conv1", "norm2", "conv2"]:
                seq = " → ".join(order) or "nothing"
                return (f"the modules ran in the order {seq}; a dense layer is pre-activation: "
                        "norm1 → relu → conv1 → norm2 → relu → conv2 (BN and ReLU come *before* each conv)")
            if err is not None:
                return f"your forward raised {type(err).__name__}: {err}"
        return None

    def returns_new_features() -> str | None:
        for case in _CASES:
            k0, k, n = case
            _, _, inputs, out, _, err, want = run(case)
            if err is not None:
                return f"your forward raised {type(err).__name__}: {err}"
            if not isinstance(out, torch.Tensor):
                return f"forward must return a tensor, got {type(out).__name__}"
            c = k0 + (n - 1) * k
            if out.shape[1] == c + k:
                return (f"you returned {c + k} channels, the concatenation of the inputs and the new maps; a dense "
                        f"layer returns only its k = {k} new feature maps (as torchvision's does): the block concatenates")
            if tuple(out.shape) != tuple(want.shape):
                return (f"for {c} input channels and k = {k} the output should have shape {tuple(want.shape)}, "
                        f"got {tuple(out.shape)}")
        return None

    def output(train: bool) -> str | None:
        for case in _CASES:
            _, ref, inputs, out, _, err, want = run(case, train)
            if err is not None or not isinstance(out, torch.Tensor) or out.shape != want.shape:
                return "skipped until the checks above pass"
            if not torch.allclose(out, want, atol=1e-5, rtol=1e-4):
                if not train:
                    with torch.no_grad():
                        for mistake, hint in _HINTS.items():
                            if torch.allclose(out, _variant(ref, inputs, mistake), atol=1e-5, rtol=1e-4):
                                return hint
                return (f"the output differs from skiplib's DenseLayer (max difference {(out - want).abs().max().item():.3g}); "
                        "check cat(inputs, 1) → norm1 → relu → conv1 → norm2 → relu → conv2")
        return None

    def gradients() -> str | None:
        k0, k, n = _CASES[0]
        layer = make(k0, k, n)
        layer.train()
        layer.zero_grad()
        inputs = [t.requires_grad_(True) for t in _inputs(k0, k, n, seed=0)]
        layer(inputs).square().mean().backward()
        missing = [name for name, p in layer.named_parameters() if p.grad is None]
        if missing:
            return f"these parameters get no gradient: {missing}"
        dead = [i for i, t in enumerate(inputs) if t.grad is None or t.grad.abs().sum() == 0]
        return f"no gradient reaches input(s) {dead}: every earlier feature map must be used" if dead else None

    return run_checks("Dense layer", [
        ("same parameters as skiplib.blocks.DenseLayer", parameters),
        ("concatenates along the channel dimension", concatenation),
        ("BN-ReLU-Conv1x1 bottleneck, then BN-ReLU-Conv3x3", structure),
        ("returns only the k new feature maps", returns_new_features),
        ("same output in eval mode (shared weights)", lambda: output(False)),
        ("same output in train mode (batch statistics)", lambda: output(True)),
        ("gradients reach every parameter and every input", gradients),
    ], verbose=verbose)
