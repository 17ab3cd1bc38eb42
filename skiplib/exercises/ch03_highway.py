"""Chapter 3 (highway networks): the graders of its coding exercises.

:func:`check_highway_layer`: grades a learner's fully-connected highway layer against
  :class:`skiplib.blocks.HighwayLayer` on shared weights, naming the usual mistakes (gates
  swapped, a gate missing, a gate that is not a sigmoid, a gate bias that does not start negative).
:func:`check_free_carry_highway`: the chapter's exercise, the general layer y = H T + x C with a carry
  gate of its own, against :class:`skiplib.blocks.FreeCarryHighwayLayer`; it names the coupled
  shortcut C = 1 - T, swapped gates, an ungated carry and biases that start the wrong way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from skiplib.blocks.highway import FreeCarryHighwayLayer, HighwayLayer
from skiplib.exercises._runner import run_checks

# ---------------------------------------------------------------------------------------------
# The coding exercise: implement a fully-connected highway layer.

_FEATURES = 6


def _reference(seed: int, cls: type[HighwayLayer] = HighwayLayer) -> HighwayLayer:
    """skiplib's layer with random weights large enough that the gates spread over (0, 1)."""
    g = torch.Generator().manual_seed(seed)
    ref = cls(_FEATURES, gate_bias=0.0)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return ref


def _variant(ref: HighwayLayer, x: torch.Tensor, mistake: str) -> torch.Tensor:
    """What ``ref`` computes on ``x`` when written with one typical ``mistake``."""
    h = F.relu(ref.H(x))
    pre = ref.T(x)
    t = torch.sigmoid(pre)
    gates = {"tanh_gate": torch.tanh(pre), "relu_gate": F.relu(pre), "linear_gate": pre,
             "hardsigmoid_gate": F.hardsigmoid(pre)}
    if mistake in gates:
        t = gates[mistake]
        return h * t + x * (1 - t)
    return {
        "swapped": x * t + h * (1 - t),
        "residual": h + x,
        "no_carry": h * t,
        "carry_ungated": h * t + x,
        "only_H": h,
        "no_relu": ref.H(x) * t + x * (1 - t),
    }[mistake]


_HINTS = {
    "swapped": "the gates are swapped: H(x) must be weighted by T(x) and the carried x by 1 - T(x), "
               "so that a closed gate (T near 0, the negative bias) carries x through",
    "residual": "the gate is missing: y = H(x) + x is a residual layer; a highway layer computes "
                "H(x) * T(x) + x * (1 - T(x))",
    "no_carry": "the carry term is missing: y = H(x) * T(x) drops the input; add x * (1 - T(x))",
    "carry_ungated": "the carry gate is missing: the input must be weighted by 1 - T(x), not added as it is",
    "only_H": "the gates are missing: the output is just H(x), a plain layer; compute H(x) * T(x) + x * (1 - T(x))",
    "no_relu": "H(x) must be relu(self.H(x)); the ReLU is missing",
    "tanh_gate": "the transform gate must be a sigmoid, T(x) = sigmoid(self.T(x)), not tanh (a gate lives in (0, 1))",
    "relu_gate": "the transform gate must be a sigmoid, T(x) = sigmoid(self.T(x)), not relu (a gate lives in (0, 1))",
    "linear_gate": "the transform gate must be a sigmoid, T(x) = sigmoid(self.T(x)); the nonlinearity is missing",
    "hardsigmoid_gate": "the transform gate must be torch.sigmoid, not hardsigmoid",
}


def _compare_outputs(make, cls: type[HighwayLayer], seed_base: int, hints: dict, variant, formula: str) -> str | None:
    """Both graders' output check: the learner's layer, loaded with a reference ``cls``'s weights, must
    give its output on two random batches; a wrong output is named by the first ``hints`` mistake
    whose ``variant`` it equals, else by ``formula``."""
    for seed in range(2):
        ref = _reference(seed, cls)
        layer = make()
        layer.load_state_dict(ref.state_dict())
        x = torch.randn(5, _FEATURES, generator=torch.Generator().manual_seed(seed_base + seed))
        with torch.no_grad():
            want, got = ref(x), layer(x)
            if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(want.shape):
                shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
                return f"for x of shape {tuple(x.shape)} the output should have shape {tuple(want.shape)}, got {shape}"
            if not torch.allclose(got, want, atol=1e-5, rtol=1e-4):
                for mistake, hint in hints.items():
                    if torch.allclose(got, variant(ref, x, mistake), atol=1e-5, rtol=1e-4):
                        return hint
                return (f"the output differs from skiplib's (max difference {(got - want).abs().max().item():.3g}); "
                        f"compute {formula}")
    return None


def check_highway_layer(cls, *, verbose: bool = True) -> bool:
    """Chapter 3 exercise: ``cls(features, gate_bias=-2.0)`` must build a fully-connected highway
    layer equal to :class:`skiplib.blocks.HighwayLayer`: ``self.H`` and ``self.T`` are
    ``nn.Linear(features, features)``, ``self.T.bias`` starts at ``gate_bias`` (negative by
    default), and ``forward(x) = relu(H(x)) * T + x * (1 - T)`` with ``T = sigmoid(self.T(x))``.
    Prints what is right and what is not; returns True if all is."""

    def make(**kw) -> nn.Module:
        layer = cls(_FEATURES, **kw)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"{getattr(cls, '__name__', cls)}(...) returned a {type(layer).__name__}, not an nn.Module")
        return layer

    def parameters() -> str | None:
        layer = make()
        for name in ("H", "T"):
            m = getattr(layer, name, None)
            if not isinstance(m, nn.Linear):
                return f"self.{name} should be nn.Linear(features, features), got {type(m).__name__}"
            if (m.in_features, m.out_features) != (_FEATURES, _FEATURES) or m.bias is None:
                return (f"self.{name} should be nn.Linear({_FEATURES}, {_FEATURES}) with a bias, got "
                        f"nn.Linear({m.in_features}, {m.out_features}, bias={m.bias is not None})")
        extra = sorted(set(layer.state_dict()) - {"H.weight", "H.bias", "T.weight", "T.bias"})
        return f"unexpected parameters or buffers {extra}: only self.H and self.T hold weights" if extra else None

    def gate_bias_init() -> str | None:
        for gb in (-1.0, -3.0):
            bias = make(gate_bias=gb).T.bias.detach()
            if not torch.allclose(bias, torch.full_like(bias, gb)):
                sign = "negative" if bias.mean() < -0.5 else "not negative"
                return (f"the transform gate's bias is {sign} as asked: with gate_bias={gb} every entry of "
                        f"self.T.bias should be {gb} (got mean {bias.mean().item():.3g}); "
                        "hint: nn.init.constant_(self.T.bias, gate_bias)")
        default = make().T.bias.detach()
        if not (default.max() <= -1.0 + 1e-6 and default.min() >= -3.0 - 1e-6):
            return (f"the default gate_bias should be negative, in the paper's range -1 ... -3 (e.g. -2.0); "
                    f"with no gate_bias given, self.T.bias has mean {default.mean().item():.3g}, "
                    "so the bias init is not negative")
        return None

    def output() -> str | None:
        if parameters() is not None:
            return "skipped until self.H and self.T are right (see the check above)"
        return _compare_outputs(make, HighwayLayer, 100, _HINTS, _variant,
                                "relu(self.H(x)) * T + x * (1 - T) with T = torch.sigmoid(self.T(x))")

    def carries_when_closed() -> str | None:
        layer = make()
        with torch.no_grad():
            layer.T.bias.fill_(-30.0)
        x = torch.randn(4, _FEATURES)
        with torch.no_grad():
            y = layer(x)
        if not torch.allclose(y, x, atol=1e-5):
            return ("with the gate closed (self.T.bias = -30) the layer should return x unchanged; "
                    "check the carry term x * (1 - T(x))")
        return None

    def gradients() -> str | None:
        layer = make()
        layer.zero_grad()
        layer(torch.randn(4, _FEATURES)).square().mean().backward()
        missing = [n for n, p in layer.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
        return f"these parameters get no gradient: {missing}" if missing else None

    return run_checks("Highway layer", [
        ("self.H and self.T are nn.Linear(features, features)", parameters),
        ("transform-gate bias starts at gate_bias (negative)", gate_bias_init),
        ("same output as skiplib.blocks.HighwayLayer (shared weights)", output),
        ("a closed gate carries x unchanged", carries_when_closed),
        ("every parameter gets a gradient", gradients),
    ], verbose=verbose)


# ---------------------------------------------------------------------------------------------
# The chapter's exercise: the general highway layer, with a carry gate of its own.

_FREE_HINTS = {
    "coupled": "the carry gate is 1 - T(x): that is the simplified layer; here the carry gate is its own, "
               "C(x) = torch.sigmoid(self.C(x))",
    "swapped": "the gates are swapped: H(x) is weighted by T(x) and the carried x by C(x)",
    "carry_ungated": "the carry is not gated: x must be weighted by C(x), not added as it is",
    "no_carry": "the carry term is missing: add x * C(x)",
    "carry_not_sigmoid": "the carry gate must be a sigmoid, C(x) = torch.sigmoid(self.C(x)) (a gate lives in (0, 1))",
    "no_relu": "H(x) must be relu(self.H(x)); the ReLU is missing",
}


def _free_variant(ref: FreeCarryHighwayLayer, x: torch.Tensor, mistake: str) -> torch.Tensor:
    h, t, c = F.relu(ref.H(x)), torch.sigmoid(ref.T(x)), torch.sigmoid(ref.C(x))
    return {"coupled": h * t + x * (1 - t), "swapped": h * c + x * t, "carry_ungated": h * t + x,
            "no_carry": h * t, "carry_not_sigmoid": h * t + x * ref.C(x), "no_relu": ref.H(x) * t + x * c}[mistake]


def check_free_carry_highway(cls, *, verbose: bool = True) -> bool:
    """Chapter 3 exercise: ``cls(features, gate_bias=-2.0, carry_bias=2.0)`` must build the general
    highway layer of :class:`skiplib.blocks.FreeCarryHighwayLayer`: ``self.H``, ``self.T`` and
    ``self.C`` are ``nn.Linear(features, features)``; ``self.T.bias`` starts at ``gate_bias`` and
    ``self.C.bias`` at ``carry_bias``; ``forward(x) = relu(H(x)) * T + x * C`` with
    ``T = sigmoid(self.T(x))`` and ``C = sigmoid(self.C(x))``. Prints what is right and what is not;
    returns True if all is."""

    def make(**kw) -> nn.Module:
        layer = cls(_FEATURES, **kw)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"{getattr(cls, '__name__', cls)}(...) returned a {type(layer).__name__}, not an nn.Module")
        return layer

    def parameters() -> str | None:
        layer = make()
        for name in ("H", "T", "C"):
            m = getattr(layer, name, None)
            if not isinstance(m, nn.Linear) or (m.in_features, m.out_features) != (_FEATURES, _FEATURES) or m.bias is None:
                return f"self.{name} should be nn.Linear({_FEATURES}, {_FEATURES}) with a bias, got {m!r}"
        extra = sorted(set(layer.state_dict()) - {f"{n}.{w}" for n in "HTC" for w in ("weight", "bias")})
        return f"unexpected parameters or buffers {extra}: only self.H, self.T and self.C hold weights" if extra else None

    def biases() -> str | None:
        for gate, key, value in (("T", "gate_bias", -1.5), ("C", "carry_bias", 3.0)):
            bias = getattr(make(**{key: value}), gate).bias.detach()
            if not torch.allclose(bias, torch.full_like(bias, value)):
                return (f"with {key}={value} every entry of self.{gate}.bias should be {value} "
                        f"(got mean {bias.mean().item():.3g}); hint: nn.init.constant_(self.{gate}.bias, {key})")
        layer = make()
        if not (layer.T.bias.max() < 0 < layer.C.bias.min()):
            return ("by default the transform gate should start closed (gate_bias < 0) and the carry gate open "
                    "(carry_bias > 0), so that a fresh layer passes its input on")
        return None

    def output() -> str | None:
        if parameters() is not None:
            return "skipped until self.H, self.T and self.C are right (see the check above)"
        return _compare_outputs(make, FreeCarryHighwayLayer, 200, _FREE_HINTS, _free_variant,
                                "relu(self.H(x)) * T + x * C with T = sigmoid(self.T(x)), C = sigmoid(self.C(x))")

    def gates_decouple() -> str | None:
        x = torch.randn(4, _FEATURES)
        for carry, want, what in ((30.0, x, "x unchanged"), (-30.0, torch.zeros_like(x), "zero")):
            layer = make()
            with torch.no_grad():
                layer.T.bias.fill_(-30.0)
                layer.C.bias.fill_(carry)
                y = layer(x)
            if not torch.allclose(y, want, atol=1e-5):
                return (f"with T closed (self.T.bias = -30) and C {'open' if carry > 0 else 'closed'} "
                        f"(self.C.bias = {carry:+.0f}) the layer should return {what}: the carry must follow C alone")
        return None

    def gradients() -> str | None:
        layer = make(carry_bias=0.0)  # a half-open carry gate, so that C's weights get a gradient too
        layer.zero_grad()
        layer(torch.randn(4, _FEATURES)).square().mean().backward()
        missing = [n for n, p in layer.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
        return f"these parameters get no gradient: {missing}" if missing else None

    return run_checks("Highway layer with a carry gate", [
        ("self.H, self.T and self.C are nn.Linear(features, features)", parameters),
        ("gate biases start at gate_bias (T, closed) and carry_bias (C, open)", biases),
        ("same output as skiplib.blocks.FreeCarryHighwayLayer (shared weights)", output),
        ("the carry follows C alone: open carries x, closed carries nothing", gates_decouple),
        ("every parameter gets a gradient", gradients),
    ], verbose=verbose)
