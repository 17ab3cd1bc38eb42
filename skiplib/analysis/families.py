"""One harness for the whole family of skips (Chapter 7).

Each :class:`Family` knows which depths it accepts and how to build a net of a given depth and
*width* (the base channel count, or the growth rate for DenseNets). :func:`matched_width` picks,
per depth, the width whose parameter count is closest to a budget, so the families are compared
at equal parameters. :func:`compare` trains every (family, depth, seed) with the same data,
schedule, seeds and augmentation and returns one record per run: final train/test error,
parameters, FLOPs per image, training images per second and peak training memory.
:func:`summarise` gives mean and spread over seeds.

A new skip variant joins with :func:`register_family` (an exercise of Chapter 7).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from skiplib.analysis.stats import mean_std
from skiplib.checks import is_cifar_depth
from skiplib.models import count_parameters
from skiplib.models.cifar import CifarResNet
from skiplib.models.densenet import cifar_densenet, is_cifar_densenet_depth
from skiplib.models.highway import HighwayCifarNet
from skiplib.models.preact import PreActCifarResNet
from skiplib.profile import seed_everything

# Fields of a record that measure the machine, not the model: they differ between two runs.
TIMING_FIELDS = ("seconds", "img_per_s")


@dataclass(frozen=True)
class Family:
    """A kind of skip: how it combines (``skip``), which depths it takes, how to build it."""

    name: str
    skip: str
    depth_rule: str                                # e.g. "6n+2", for messages
    valid: Callable[[int], bool]
    build: Callable[[int, int], nn.Module]         # (depth, width) -> model for 10 classes
    widths: range = range(4, 1025)                 # the widths matched_width may choose from

    def nearest_depth(self, target: int) -> int:
        """The valid depth closest to ``target`` (the smaller one on a tie)."""
        for delta in range(0, 64):
            for d in (target - delta, target + delta):
                if d > 0 and self.valid(d):
                    return d
        raise ValueError(f"{self.name}: no valid depth ({self.depth_rule}) near {target}")


def _stage_widths(w: int) -> tuple[int, int, int]:
    # ``w`` is the widest (last) stage; the earlier stages keep the ResNet's 1:2:4 ratio. Steering
    # by the last stage, which holds most parameters, lets the budget be matched 4x more finely
    # than steering by the first.
    return (max(1, round(w / 4)), max(1, round(w / 2)), w)


FAMILIES: dict[str, Family] = {}


def register_family(family: Family, *, replace: bool = False) -> Family:
    """Add a family to :data:`FAMILIES`; its name must be new unless ``replace`` (handy when a
    notebook cell that registers a family runs again)."""
    if family.name in FAMILIES and not replace:
        raise ValueError(f"a family named {family.name!r} exists already: {', '.join(FAMILIES)}")
    FAMILIES[family.name] = family
    return family


register_family(Family("plain", "none", "6n+2", is_cifar_depth,
                       lambda d, w: CifarResNet(d, shortcut="none", widths=_stage_widths(w))))
register_family(Family("highway", "gate: H·T + x·(1−T)", "6n+2", is_cifar_depth,
                       lambda d, w: HighwayCifarNet(d, widths=_stage_widths(w))))
register_family(Family("residual", "addition: relu(F(x) + x)", "6n+2", is_cifar_depth,
                       lambda d, w: CifarResNet(d, shortcut="identity", widths=_stage_widths(w))))
register_family(Family("preact", "addition, pre-activation: x + F(x)", "6n+2", is_cifar_depth,
                       lambda d, w: PreActCifarResNet(d, widths=_stage_widths(w))))
register_family(Family("dense", "concatenation: [x, F(x)]", "6n+4",
                       lambda d: is_cifar_densenet_depth(d, bottleneck=True),
                       lambda d, w: cifar_densenet(d, growth_rate=w, bottleneck=True, compression=0.5),
                       widths=range(2, 129)))


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}: registered families are {', '.join(FAMILIES)}")
    return FAMILIES[name]


def matched_width(family: Family | str, depth: int, budget: int, tolerance: float = 0.05) -> tuple[int, int]:
    """``(width, parameters)`` of the ``family`` net of ``depth`` whose parameter count is closest
    to ``budget``. Parameters grow with width, so a bisection over ``family.widths`` finds it.
    Raises ValueError when even the closest is more than ``tolerance`` (relative) away."""
    family = get_family(family) if isinstance(family, str) else family
    if not family.valid(depth):
        raise ValueError(f"{family.name} depth must be {family.depth_rule}, got {depth}")
    if budget < 1:
        raise ValueError(f"the parameter budget must be positive, got {budget}")
    count = lambda w: count_parameters(family.build(depth, w))  # noqa: E731
    lo, hi = family.widths[0], family.widths[-1]
    while hi - lo > 1:  # invariant: the best width is in [lo, hi]
        mid = (lo + hi) // 2
        if count(mid) < budget:
            lo = mid
        else:
            hi = mid
    best = min((lo, hi), key=lambda w: abs(count(w) - budget))
    params = count(best)
    if abs(params / budget - 1) > tolerance:
        raise ValueError(f"{family.name}-{depth}: the closest width ({best}) has {params:,} parameters, "
                         f"{params / budget - 1:+.1%} from the budget {budget:,} (tolerance ±{tolerance:.0%}); "
                         "choose a larger budget or another depth")
    return best, params


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Floating-point operations of one forward pass for ONE image of ``input_shape`` (C, H, W):
    2 per multiply-add of every convolution and linear layer (normalisation, activations and
    pooling are left out, as papers do)."""
    macs = 0

    def conv(m: nn.Conv2d, inputs, out):
        nonlocal macs
        macs += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m: nn.Linear, inputs, out):
        nonlocal macs
        macs += out.numel() * m.in_features

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return 2 * macs


def peak_training_memory(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Bytes of the tensors alive at the peak of one training step (forward, cross-entropy,
    backward) on the batch ``(x, y)``; parameters and the batch itself are not counted. On
    CUDA this is the allocator's peak; elsewhere the storages created during the step."""
    from skiplib.analysis.memory import TensorMemory  # Chapter 5's measurement

    model.train()
    model.zero_grad(set_to_none=True)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        nn.functional.cross_entropy(model(x), y).backward()
        peak = torch.cuda.max_memory_allocated() - base
    else:
        with TensorMemory() as mem:
            nn.functional.cross_entropy(model(x), y).backward()
        peak = mem.peak
    model.zero_grad(set_to_none=True)
    return int(peak)


def compare(families: Iterable[str], depths: Sequence[int], budget: int, *, loaders: Callable[[int], tuple],
            epochs: int, seeds: Sequence[int] = (0,), fit_kwargs: dict | None = None,
            device: str | torch.device = "cpu", progress: bool = False, checkpoints: bool = False,
            data_config: dict | None = None, on_record: Callable[[dict], object] | None = None) -> list[dict]:
    """Train every family at every depth (the valid depth nearest each entry of ``depths``),
    width matched to ``budget`` parameters, once per seed, and return one record per run.

    ``loaders(seed)`` returns ``(train_loader, test_loader)`` or, better, ``(train_loader,
    test_loader, info)`` with ``info`` describing the data (as :func:`skiplib.data.cifar10_loaders`
    does), which each checkpoint then records; calling it with the same seed must give the same
    batches, so every family sees the same data in the same order. ``on_record`` is called with
    each record as soon as its run finishes (an interrupted caller can keep what finished). Everything
    else (epochs, optimiser, schedule) is shared too, through ``fit_kwargs``.

    With ``checkpoints`` every (family, depth, seed) run checkpoints each epoch to its own file
    from :func:`skiplib.train.run_checkpoint`, so an interrupted call resumes where it stopped.
    ``compare`` cannot see what ``loaders`` builds, so ``data_config`` (the data settings: subset
    sizes, image size, batch size …) is then required: it goes into the key with the families,
    budget, epochs and ``fit_kwargs``, and runs on other data or settings never resume each other."""
    from skiplib.train import fit, run_checkpoint

    families = list(families)
    if checkpoints and data_config is None:
        raise ValueError("checkpoints=True needs data_config (the settings of what loaders builds: subset sizes, "
                         "image size, batch size …), so that runs on other data never resume each other")
    key = {"families": families, "budget": budget, "epochs": epochs, "fit_kwargs": fit_kwargs or {},
           "data": data_config}
    records = []
    for name in families:
        family = get_family(name)
        for target in depths:
            depth = family.nearest_depth(target)
            width, params = matched_width(family, depth, budget)
            for seed in seeds:
                train_loader, test_loader, *info = loaders(seed)
                data = {**(info[0] if info else data_config or {}), "seed": seed}
                seed_everything(seed)
                model = family.build(depth, width).to(device)
                x0, y0 = next(iter(train_loader))
                flops = count_flops(model, tuple(x0.shape[1:]))
                memory = peak_training_memory(model, x0, y0)
                seed_everything(seed)  # the same initialisation and batches with or without the probes
                model = family.build(depth, width).to(device)
                ckpt = run_checkpoint("compare", key, f"{name}-{depth}-w{width}-s{seed}") if checkpoints else None
                history = fit(model, train_loader, test_loader, epochs=epochs, device=device, progress=progress,
                              desc=f"{name}-{depth} seed {seed}", checkpoint=ckpt, data=data, **(fit_kwargs or {}))
                # the epochs' own times, not this call's: a resumed run trained only its last epochs
                seconds = sum(history.column("seconds"))
                last = history.last
                records.append({
                    "family": name, "skip": family.skip, "target_depth": target, "depth": depth, "width": width,
                    "params": params, "budget": budget, "seed": seed, "epochs": epochs,
                    "train_err": last["train_err"], "test_err": last["test_err"],
                    "train_loss": last["train_loss"], "test_loss": last["test_loss"],
                    "flops_per_image": flops, "peak_memory_bytes": memory,
                    "seconds": seconds, "img_per_s": train_loader.num_samples * epochs / seconds,
                })
                if on_record is not None:
                    on_record(records[-1])
    return records


def summarise(records: Sequence[dict], keys: Sequence[str] = ("train_err", "test_err", "img_per_s")) -> list[dict]:
    """One row per (family, depth): the mean and the sample standard deviation over seeds of each
    of ``keys`` (``<key>_mean``, ``<key>_std``; std is 0 for a single seed), plus the shared fields."""
    groups: dict[tuple[str, int], list[dict]] = {}
    for r in records:
        groups.setdefault((r["family"], r["depth"]), []).append(r)
    rows = []
    for rs in groups.values():
        row = {k: rs[0][k] for k in ("family", "skip", "depth", "width", "params", "flops_per_image",
                                     "peak_memory_bytes")}
        row["seeds"] = len(rs)
        for k in keys:
            row[f"{k}_mean"], row[f"{k}_std"] = mean_std([r[k] for r in rs])
        rows.append(row)
    return rows
