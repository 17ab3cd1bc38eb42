"""Chapter 1 at the paper's length: ``python -m skiplib degradation --preset paper``.

He et al. (2016, Sec. 4.2) on CIFAR-10: all 50,000 training images at 32x32 (the paper held 5k of
them out only to choose hyper-parameters; its Table 6 nets train on the whole training set, as
here), test error on the 10,000 test images, a 4-pixel zero pad + random 32x32 crop + horizontal
flip, batch 128, SGD with momentum 0.9 (not Nesterov) and weight decay 1e-4, lr 0.1 divided by 10
at 32k and 48k iterations, stop at 64k; ResNet-110 (and plain-110) warm up at lr 0.01 until the
training error is below 80% (the paper: about 400 iterations), then 0.1. The chapter's profiles
shorten this to minutes; the preset is the recipe itself, for GPUs (hours per net on one GPU, or
shard the runs over several with torchrun).

:func:`describe` is what ``--dry-run`` prints: the schedule and an *estimated* time on this machine
(from a measured training rate) and on GPUs (from counted FLOPs and stated assumptions).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from skiplib.analysis.families import count_flops
from skiplib.models import create_model
from skiplib.profile import Profile, seed_everything
from skiplib.train.schedule import check_lr_steps

PRESETS = ("paper",)
CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000
# ASSUMPTIONS, not measurements, the same as the book's run-time table (skiplib.tools.workload, which
# course code may not import; a test keeps the two equal): a T4 sustains 1.5 TFLOP/s of counted
# training work on these narrow nets, an H200 10x that, and both pay ~40 us of host overhead per
# layer per training step (12 us per forward-only batch), which no GPU hides.
T4_FLOPS = 1.5e12
H200_SPEEDUP = 10.0
TRAIN_OVERHEAD_S = 40e-6
FORWARD_OVERHEAD_S = 12e-6


def paper_config(profile: Profile) -> dict:
    """The preset's settings (the profile only picks the device and whether synthetic data may stand in)."""
    return {"preset": "paper", "lr": 0.1, "momentum": 0.9, "nesterov": False, "weight_decay": 1e-4,
            "schedule": "multistep", "lr_steps": [32_000, 48_000], "iterations": 64_000, "batch_size": 128, "seed": 0,
            "image_size": 32, "train_subset": None, "test_subset": None, "depths": [20, 32, 44, 56, 110],
            "warmup": {"depths": [110], "lr": 0.01, "until_err": 0.8, "window": 20}, "profile": profile.name}


def apply_overrides(cfg: dict, args: argparse.Namespace) -> dict:
    """``--iterations`` (replaces the epochs) and ``--lr-steps`` (switches to the step schedule) on ``cfg``;
    a ValueError for combinations that cannot run."""
    if getattr(args, "iterations", None) is not None:
        if getattr(args, "epochs", None) is not None:
            raise ValueError("give --epochs or --iterations, not both")
        cfg["iterations"] = args.iterations
        cfg.pop("epochs", None)
    if getattr(args, "lr_steps", None):
        cfg.update(schedule="multistep", lr_steps=list(args.lr_steps))
    if "iterations" in cfg and "epochs" in cfg:
        raise ValueError(f"--preset {cfg.get('preset')} counts iterations: use --iterations N instead of --epochs")
    if "iterations" in cfg and cfg["schedule"] == "multistep":
        check_lr_steps(cfg["schedule"], cfg["lr_steps"], cfg["iterations"])
    return cfg


def fit_kwargs(cfg: dict, depth: int) -> dict:
    """The :func:`skiplib.train.fit` recipe of ``cfg`` for a net of ``depth``: the chapter's keys, and the
    preset's (iterations, lr steps, Nesterov, warm-up for the depths that get it) only where ``cfg`` has them."""
    kw = {k: cfg[k] for k in ("lr", "momentum", "weight_decay", "schedule")}
    kw.update({"iterations": cfg["iterations"]} if "iterations" in cfg else {"epochs": cfg["epochs"]})
    kw.update({k: cfg[k] for k in ("nesterov", "lr_steps") if k in cfg})
    warm = cfg.get("warmup")
    if warm and depth in warm["depths"]:
        kw["warmup"] = {k: v for k, v in warm.items() if k != "depths"}
    return kw


def steps_per_epoch(images: int, batch: int) -> int:
    """Optimiser steps per epoch as :func:`skiplib.data.cifar10_loaders` batches (a last batch of one waits)."""
    return images // batch if images % batch == 1 and images > 1 else -(-images // batch)


def schedule_numbers(cfg: dict) -> dict:
    """Iterations, steps per epoch, epochs (as a fraction and as started) and images of ``cfg`` on CIFAR-10."""
    images = cfg["train_subset"] or CIFAR_TRAIN
    per_epoch = steps_per_epoch(images, cfg["batch_size"])
    iterations = cfg.get("iterations") or cfg["epochs"] * per_epoch
    return {"images": images, "test_images": cfg["test_subset"] or CIFAR_TEST, "steps_per_epoch": per_epoch,
            "iterations": iterations, "epochs": iterations / per_epoch, "epochs_started": -(-iterations // per_epoch)}


def measure_rate(image_size: int = 32, batch: int = 128, steps: int = 3, device: str | torch.device = "cpu",
                 name: str = "resnet20") -> float:
    """Counted training FLOP/s (3x the forward FLOPs per image) of train steps of the net ``name`` on
    ``device``: the fastest of ``steps`` steps after one warm-up step (oneDNN and cuDNN prepare their
    kernels on first use; the fastest step is the one least disturbed by other work on a shared machine)."""
    device = torch.device(device)
    seed_everything(0)
    model = create_model(name).to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, image_size, image_size, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    best = float("inf")
    for i in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            best = min(best, time.perf_counter() - t0)
    return 3 * count_flops(model, (3, image_size, image_size)) * batch / best


def net_stats(name: str, image_size: int) -> tuple[int, int]:
    """Forward FLOPs per image and leaf modules of the net ``name`` (built on the meta device: shapes only)."""
    with torch.device("meta"):
        model = create_model(name)
    leaves = sum(1 for m in model.modules() if not list(m.children()))
    return count_flops(model, (3, image_size, image_size)), leaves


def estimate(cfg: dict, nets: list[str], rate: float) -> dict[str, dict]:
    """Estimated seconds of one run of each net of ``nets`` with ``cfg``: on a device training at ``rate``
    counted FLOP/s (``here``), on a T4 and on an H200 (the assumptions above); plus its counted FLOPs."""
    n = schedule_numbers(cfg)
    out = {}
    for name in nets:
        fwd, leaves = net_stats(name, cfg["image_size"])
        flops = fwd * (3 * n["iterations"] * cfg["batch_size"] + n["epochs_started"] * n["test_images"])
        overhead = leaves * (n["iterations"] * TRAIN_OVERHEAD_S
                             + n["epochs_started"] * -(-n["test_images"] // cfg["batch_size"]) * FORWARD_OVERHEAD_S)
        out[name] = {"flops": flops, "here": flops / rate, "t4": flops / T4_FLOPS + overhead,
                     "h200": flops / (T4_FLOPS * H200_SPEEDUP) + overhead}
    return out


def _hours(s: float) -> str:
    if s < 60:
        return f"{s:.0f} s"
    return f"{s / 3600:,.1f} h" if s >= 3600 else f"{s / 60:,.1f} min"


def describe(cfg: dict, runs: list[tuple[str, str, int, int]], *, rate: float, where: str) -> str:
    """What ``--dry-run`` prints: the schedule of ``cfg`` and the estimated time of ``runs`` (the sweep's
    ``(label, family, depth, seed)`` list) here (training at ``rate``, measured on ``where``) and on GPUs."""
    n = schedule_numbers(cfg)
    size, batch = cfg["image_size"], cfg["batch_size"]
    data = ("all 50,000 CIFAR-10 training images (He et al.'s Table 6 setting: the 45k/5k split only chose "
            "hyper-parameters)" if cfg["train_subset"] is None else f"a stratified {cfg['train_subset']:,}-image "
            "subset of the CIFAR-10 training images")
    if cfg["schedule"] == "multistep":
        at = ", ".join(f"{s} (epoch {s / n['steps_per_epoch']:.1f})" for s in cfg["lr_steps"])
        lr = f"lr {cfg['lr']:g}, divided by 10 at iterations {at}"
    else:
        lr = f"{cfg['schedule']} schedule peaking at lr {cfg['lr']:g}"
    lines = [f"Chapter 1, {'preset ' + cfg['preset'] if cfg.get('preset') else cfg['profile'] + ' profile'}: "
             "plain nets and ResNets (He et al. 2016, CIFAR-10, Sec. 4.2)",
             f"  data: {data}, at {size}x{size}; test error on {n['test_images']:,} test images after every epoch",
             f"  augmentation: {4 * size // 32}-pixel zero pad + random {size}x{size} crop + horizontal flip",
             f"  optimiser: SGD, batch {batch}, momentum {cfg['momentum']:g}"
             f"{' (plain, not Nesterov)' if cfg.get('nesterov') is False else ' (Nesterov)'}, "
             f"weight decay {cfg['weight_decay']:g}",
             f"  schedule: {n['iterations']} iterations = {n['epochs']:.1f} epochs of {n['steps_per_epoch']} steps; {lr}"]
    depths = sorted({r[2] for r in runs})
    families = list(dict.fromkeys(r[1] for r in runs))
    seeds = list(dict.fromkeys(r[3] for r in runs))
    warm = cfg.get("warmup")
    warmed = [d for d in depths if warm and d in warm["depths"]]
    if warmed:
        lines.append(f"  warm-up: depth {', '.join(map(str, warmed))} at lr {warm['lr']:g} until the training "
                     f"error (mean of the last {warm['window']} batches) is below {warm['until_err']:.0%}, then "
                     f"lr {cfg['lr']:g}")
    lines.append(f"  runs: depths {', '.join(map(str, depths))} x {', '.join(families)} x seeds "
                 f"{', '.join(map(str, seeds))} = {len(runs)} runs")
    est = estimate(cfg, list(dict.fromkeys(f"{r[1]}{r[2]}" for r in runs)), rate)
    per_run = [est[f"{r[1]}{r[2]}"] for r in runs]
    lines += ["", "ESTIMATED time (not measured: counted FLOPs x 3 per trained image, 1 per test image, divided by a "
              f"training rate; here: {rate / 1e9:.1f} GFLOP/s measured on {where} with ResNet-20 train steps; "
              f"GPUs: a T4 assumed to sustain {T4_FLOPS / 1e12:g} TFLOP/s, an H200 {H200_SPEEDUP:g}x that, both "
              f"plus {TRAIN_OVERHEAD_S * 1e6:.0f} us host overhead per layer per step):",
              f"  {'net':>10} {'GFLOP/img':>10} {'here':>10} {'T4':>10} {'H200':>10}"]
    for name, e in est.items():
        fwd = e["flops"] / (3 * n["iterations"] * batch + n["epochs_started"] * n["test_images"])
        lines.append(f"  {name:>10} {fwd / 1e9:>10.3f} {_hours(e['here']):>10} {_hours(e['t4']):>10} {_hours(e['h200']):>10}")
    total = {k: sum(e[k] for e in per_run) for k in ("here", "t4", "h200")}
    lines.append(f"  {'all runs':>10} {'':>10} {_hours(total['here']):>10} {_hours(total['t4']):>10} "
                 f"{_hours(total['h200']):>10}   (one device, runs one after another)")
    for gpus in (g for g in (2, 4, 8) if g <= len(runs)):
        slowest = max(sum(e["h200"] for e in per_run[r::gpus]) for r in range(gpus))
        lines.append(f"  torchrun --nproc_per_node {gpus} (runs dealt round-robin): about {_hours(slowest)} on H200s")
    return "\n".join(lines)


def dry_run_rate(image_size: int, device: torch.device) -> tuple[float, str]:
    """The training rate :func:`describe` divides by, measured on ``device`` in about a second, and its name."""
    rate = measure_rate(image_size, device=device)
    where = f"this machine's {device.type.upper()}" + (f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else "")
    return rate, where
