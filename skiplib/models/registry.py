"""The model registry: ``create_model(name, **kw)`` builds any model of the course by name."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make a model constructor available as ``create_model(name)``."""

    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"model name {name!r} is registered twice")
        _REGISTRY[name] = fn
        return fn

    return add


def fixed_by_name(model: str, kwargs: dict, hint: str, **fixed) -> dict:
    """``kwargs`` plus the settings that the name ``model`` fixes (``resnet20``: ``depth=20``); a
    ValueError when ``kwargs`` asks for another value, because a model called ``resnet20`` that is
    56 layers deep would mislabel every result made with it. ``hint`` says what to use instead."""
    for key, value in fixed.items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"{model} has {key}={value!r} fixed by its name, got {key}={kwargs[key]!r}; {hint}")
    return {**kwargs, **fixed}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a registered model, e.g. ``create_model("plain56")`` or ``create_model("resnet20", shortcut="projection")``."""
    try:
        fn = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}") from None
    return fn(**kwargs)


def count_parameters(model, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
