"""What each chapter computes, per profile: its training jobs and their FLOPs, for run-time estimates.

Each chapter function reads the chapter's own config (the one its notebook reads) and lists the
jobs its notebook runs: model, input shape, images per epoch, epochs, batch size, and the images
scored without gradients (test-set evaluation, loss surfaces, lesions). Training costs 3x the
forward FLOPs per image (forward + backward), scoring 1x; forward FLOPs come from
:func:`skiplib.analysis.families.count_flops` (2 per multiply-add of conv and linear layers). Small side
work (one-batch gradient probes, torchinfo summaries, CPU-only cells) is left out; where a
chapter's extra work is approximated, the function says so. ``python -m skiplib.tools bench`` turns the
FLOPs into minutes on this CPU (measured rate), a T4 and an H200 (the assumptions below).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from skiplib.analysis import families as C
from skiplib.analysis.identity import block_stack
from skiplib.analysis.variance import norm_free_resnet
from skiplib.blocks.orders import ORDERS
from skiplib.chapters import ch01_degradation as ch1
from skiplib.chapters import ch07_comparison as ch7
from skiplib.chapters import ch09_transformer as ch9
from skiplib.chapters.ch02_identity import config as ch2_config
from skiplib.chapters.ch03_highway import config as ch3_config
from skiplib.chapters.ch04_resnets import config as ch4_config
from skiplib.chapters.ch05_densenets import config as ch5_config
from skiplib.chapters.ch06_unet import config as ch6_config
from skiplib.chapters.ch08_why import config as ch8_config
from skiplib.models import count_parameters, create_model
from skiplib.models.cifar import cifar_resnet, plain_net
from skiplib.models.densenet import cifar_densenet
from skiplib.models.highway import HighwayCifarNet
from skiplib.models.orders import OrderNet
from skiplib.models.unet import UNet
from skiplib.profile import Profile
from skiplib.tools.token_model import TokenModel

CIFAR_TRAIN, CIFAR_TEST = 50_000, 10_000

# ASSUMPTION, not a measurement: sustained training throughput of a Colab T4 on this course's
# small CIFAR nets (16-64 channels, batch 64-128, AMP, channels_last) in FLOP/s of the counted
# forward+backward work. A T4 peaks at 65 TFLOP/s (fp16 tensor cores) and 8 (fp32), but nets
# this narrow keep it far from peak; 1.5 TFLOP/s (ResNet-56 at ~2,000 img/s) is deliberately on
# the slow side. Replace it by 10x the H200 seconds once a gpu-check report exists.
T4_FLOPS = 1.5e12
# DESIGN.md: a T4 is about 10x slower than an H200 (for the compute part; see below).
H200_SPEEDUP = 10.0
# ASSUMPTION: eager PyTorch pays a host-side cost per layer call that no GPU hides (kernel
# launches, autograd, optimizer): about 40 us per leaf module per training step, 12 us per
# forward-only batch. It dominates thin FC nets and small batches, and is the same on a T4 and
# an H200, which is why an H200 is not 10x faster on them.
TRAIN_OVERHEAD_S = 40e-6
FORWARD_OVERHEAD_S = 12e-6


@dataclass(frozen=True)
class Job:
    """One model's work in a chapter: ``epochs`` x (``images`` trained + ``eval_images`` scored)."""

    label: str
    key: str                          # identifies the architecture (FLOPs are counted once per key)
    build: Callable[[], nn.Module] = field(repr=False, compare=False)
    input_shape: tuple[int, ...]      # one image, e.g. (3, 32, 32)
    images: int                       # trained per epoch (0 for forward-only jobs)
    epochs: int = 1
    batch_size: int = 128
    eval_images: int = 0              # scored without gradients per epoch (test set, surfaces)
    eval_batch: int | None = None     # batch for scoring (default: batch_size)


@dataclass(frozen=True)
class ModelStats:
    forward_flops: int                # per image
    leaf_modules: int
    parameters: int


_STATS: dict[tuple, ModelStats] = {}
_WIDTHS: dict[tuple, tuple[int, int]] = {}


def model_stats(job: Job) -> ModelStats:
    """Forward FLOPs per image, leaf modules and parameters of ``job``'s model (cached per key)."""
    k = (job.key, job.input_shape)
    if k not in _STATS:
        with torch.device("meta"):  # shapes only: no weights initialised, no arithmetic done
            model = job.build()
        _STATS[k] = ModelStats(C.count_flops(model, job.input_shape),
                               sum(1 for m in model.modules() if not list(m.children())), count_parameters(model))
    return _STATS[k]


def job_flops(job: Job) -> float:
    """Counted FLOPs of the job: 3x forward per trained image, 1x per scored image."""
    return float(model_stats(job).forward_flops) * job.epochs * (3 * job.images + job.eval_images)


def job_overhead_s(job: Job) -> float:
    """The per-layer host overhead of the job's steps (see TRAIN_OVERHEAD_S)."""
    steps = job.epochs * math.ceil(job.images / job.batch_size)
    eval_steps = job.epochs * math.ceil(job.eval_images / (job.eval_batch or job.batch_size))
    return model_stats(job).leaf_modules * (steps * TRAIN_OVERHEAD_S + eval_steps * FORWARD_OVERHEAD_S)


def gpu_seconds(jobs: list[Job], t4_flops: float = T4_FLOPS, speedup: float = 1.0) -> float:
    """Estimated seconds of ``jobs`` on a GPU ``speedup`` times a T4 (compute), plus host overhead."""
    return sum(job_flops(j) / (t4_flops * speedup) + job_overhead_s(j) for j in jobs)


def _n(subset: int | None, total: int) -> int:
    return total if subset is None else min(subset, total)


def _cifar(label: str, size: int, train: int, epochs: int, batch: int, test: int = 0,
           build: Callable[[], nn.Module] | None = None, key: str | None = None) -> Job:
    return Job(label, key or label, build or (lambda: create_model(label)), (3, size, size), train, epochs, batch, test)


def _scoring(label: str, size: int, images: int, batch: int = 500, key: str | None = None,
             build: Callable[[], nn.Module] | None = None) -> Job:
    """Forward-only work on ``images`` images (a surface, a lesion sweep, a dataset loss)."""
    return Job(label, key or label, build or (lambda: create_model(label)), (3, size, size), 0, 1, batch, images, batch)


# ---------------------------------------------------------------------------------------------
# One function per chapter: the jobs its notebook runs in ``profile``.

def chapter1(profile: Profile) -> list[Job]:
    """Plain and residual nets at every depth (the notebook trains plain, then residual)."""
    cfg = ch1.config(profile)
    n, t = _n(cfg["train_subset"], CIFAR_TRAIN), _n(cfg["test_subset"], CIFAR_TEST)
    return [_cifar(f"{f}{d}", cfg["image_size"], n, cfg["epochs"], cfg["batch_size"], t)
            for d in cfg["depths"] for f in ("plain", "resnet")]


def chapter2(profile: Profile) -> list[Job]:
    """Shallow and deep plain nets, dataset losses of the copy, zero-init curves, identity fits, the noise
    sweep, the short runs with and without BN (shrink curves, zero-init checks, variance stacks: left out)."""
    cfg = ch2_config(profile)
    size, b = cfg["image_size"], cfg["batch_size"]
    n, t = _n(cfg["train_subset"], CIFAR_TRAIN), _n(cfg["test_subset"], CIFAR_TEST)
    S, D = cfg["shallow_depth"], cfg["deep_depth"]
    plain = lambda d: (lambda: plain_net(d))  # noqa: E731  (the smoke profile's depths are not all registered)
    jobs = [_cifar(f"plain{S}", size, n, cfg["epochs"], b, t, plain(S), f"plain{S}"),
            _cifar(f"plain{D}", size, n, cfg["epochs"], b, t, plain(D), f"plain{D}"),
            # training loss of the shallow net, its deep copy and the deep net from scratch (no augmentation)
            _scoring(f"plain{S}", size, n, build=plain(S)),
            _scoring(f"plain{D}", size, 2 * n, build=plain(D)),
            # the first SGD steps of ResNet-D with and without zero-init
            _cifar(f"resnet{D}", size, 2 * cfg["zero_init_steps"] * b, 1, b,
                   build=lambda: cifar_resnet(D), key=f"resnet{D}"),
            # loss of the noisy copy: one clean and one per sigma
            _scoring(f"plain{D}", size, (len(cfg["sigmas"]) + 1) * min(cfg["noise_images"], n), build=plain(D))]
    crop = cfg["identity_crop"]
    for k in cfg["identity_layers"]:  # block stacks fit to the identity, plain and residual, batch 32
        jobs.append(Job(f"stack{k}", f"stack{k}", lambda k=k: block_stack(16, k), (16, crop, crop),
                        2 * cfg["identity_steps"] * 32, 1, 32))
    nf = cfg["nf_depth"]  # ResNet-nf with and without BN (a diverged run stops early, counted in full)
    jobs += [_cifar(f"nf_{r}{nf}", size, _n(cfg["nf_train"], CIFAR_TRAIN), cfg["nf_epochs"], b, build=(
        lambda r=r: cifar_resnet(nf) if r == "bn" else norm_free_resnet(nf, r)), key=f"{r}{nf}") for r in cfg["nf_runs"]]
    return jobs


def chapter3(profile: Profile) -> list[Job]:
    """The FC depth sweep (every kind x depth x lr; a diverged run stops early, counted in full),
    the gate-bias runs and the two conv nets."""
    cfg = ch3_config(profile)
    f = 3 * cfg["fc_image_size"] ** 2
    n_fc, b = _n(cfg["fc_train_subset"], CIFAR_TRAIN), cfg["batch_size"]

    def fc(kind: str, depth: int, runs: int, epochs: int) -> Job:
        return Job(f"{kind}_fc{depth}", f"{kind}_fc{depth}",
                   lambda: create_model(f"{kind}_fc", depth=depth, in_features=f), (f,), runs * n_fc, epochs, b)

    jobs = [fc(kind, d, len(cfg["fc_lrs"]), cfg["fc_epochs"]) for kind in ("plain", "highway") for d in cfg["depths"]]
    jobs.append(fc("highway", cfg["bias_depth"], len(cfg["gate_biases"]), cfg["bias_epochs"]))
    d, s = cfg["conv_depth"], cfg["conv_image_size"]
    n, t = _n(cfg["conv_train_subset"], CIFAR_TRAIN), _n(cfg["conv_test_subset"], CIFAR_TEST)
    jobs.append(_cifar(f"resnet{d}", s, n, cfg["conv_epochs"], b, t, lambda: cifar_resnet(d), f"resnet{d}"))
    jobs.append(_cifar(f"highway{d}", s, n, cfg["conv_epochs"], b, t, lambda: HighwayCifarNet(d), f"highway{d}"))
    return jobs


def chapter4(profile: Profile) -> list[Job]:
    """Plain vs residual training and the five activation orders (the gradient probes are one batch
    each and the ResNet-34 summaries and comparisons run on the CPU at batch 1-2: left out)."""
    cfg = ch4_config(profile)
    n, t = _n(cfg["train_subset"], CIFAR_TRAIN), _n(cfg["test_subset"], CIFAR_TEST)
    jobs = [_cifar(f"{f}{cfg['train_depth']}", cfg["image_size"], n, cfg["epochs"], cfg["batch_size"], t)
            for f in ("plain", "resnet")]
    d, n_orders = cfg["order_depth"], _n(cfg["order_subset"], CIFAR_TRAIN)
    return jobs + [_cifar(f"order-{o}-{d}", cfg["image_size"], n_orders, cfg["order_epochs"], cfg["batch_size"], t,
                          lambda o=o: OrderNet(d, o)) for o in ORDERS]


def chapter5(profile: Profile) -> list[Job]:
    """DenseNet-BC vs ResNet training and the dense-block memory curve (naive and memory-efficient
    steps, counted once each: the recomputation of the efficient block is left out)."""
    cfg = ch5_config(profile)
    n, t = _n(cfg["train_subset"], CIFAR_TRAIN), _n(cfg["test_subset"], CIFAR_TEST)
    k, s, b = cfg["growth_rate"], cfg["image_size"], cfg["batch_size"]
    depth = cfg["dense_depth"]
    jobs = [_cifar(f"densenet_bc{depth}", s, n, cfg["epochs"], b, t,
                   lambda: cifar_densenet(depth, k, bottleneck=True, compression=0.5), f"densenet_bc{depth}_k{k}"),
            _cifar(cfg["resnet"], s, n, cfg["epochs"], b, t)]
    from skiplib.blocks.dense import DenseBlock
    ms = cfg["mem_image_size"]
    for L in cfg["mem_depths"]:
        jobs.append(Job(f"denseblock{L}", f"denseblock{L}_k{k}", lambda L=L: DenseBlock(L, 2 * k, k, 4), (2 * k, ms, ms),
                        2 * (cfg["time_steps"] + 1) * cfg["mem_batch"], 1, cfg["mem_batch"]))
    return jobs


def _unet_jobs(cfg: dict, variants: dict[str, dict], epochs: int, per_epoch_eval: bool) -> list[Job]:
    s = cfg["size"]
    jobs = []
    for label, kw in variants.items():
        build = lambda kw=kw: UNet(1, 2, base=cfg["base"], depth=cfg["depth"], batch_norm=cfg["batch_norm"], **kw)  # noqa: E731
        key = f"unet-b{cfg['base']}-d{cfg['depth']}-{label}"
        eval_images = cfg["test_n"] if per_epoch_eval else 0
        jobs.append(Job(label, key, build, (1, s, s), cfg["train_n"], epochs, cfg["batch_size"], eval_images, 128))
        if not per_epoch_eval:  # one final evaluation
            jobs.append(Job(label, key, build, (1, s, s), 0, 1, cfg["batch_size"], cfg["test_n"], 128))
    return jobs


def chapter6(profile: Profile) -> list[Job]:
    """U-Net with and without long skips, then the skip ablation and the two controls (detached and
    gradient-only skips), each variant's cost counted as the full U-Net's: a missing skip saves one
    3x3 conv's input channels."""
    cfg = ch6_config(profile)
    depth = cfg["depth"]
    jobs = _unet_jobs(cfg, {"unet": {"skips": True}, "unet-noskip": {"skips": False}}, cfg["epochs"], True)
    variants = 2 * depth + 2 + (0 if cfg["ablation_epochs"] == cfg["epochs"] else 2)
    ablation = _unet_jobs(cfg, {"unet": {"skips": True}}, cfg["ablation_epochs"], True)[0]
    jobs.append(Job("ablation", ablation.key, ablation.build, ablation.input_shape, variants * ablation.images,
                    ablation.epochs, ablation.batch_size, variants * ablation.eval_images, 128))
    return jobs


def compare_jobs(cfg: dict, families=None, seeds=None) -> list[Job]:
    """Chapter 7's side-by-side runs: every family x depth x seed at the matched width."""
    jobs = []
    n, t = _n(cfg["train_subset"], CIFAR_TRAIN), _n(cfg["test_subset"], CIFAR_TEST)
    for name in families or cfg["families"]:
        fam = C.get_family("residual" if name == "rezero" else name)
        for target in cfg["depths"]:
            d = fam.nearest_depth(target)
            key = (fam.name, d, cfg["budget"])
            if key not in _WIDTHS:
                _WIDTHS[key] = C.matched_width(fam, d, cfg["budget"])
            w = _WIDTHS[key][0]
            runs = len(seeds if seeds is not None else cfg["seeds"])
            jobs.append(Job(f"{name}-{d}", f"{fam.name}-{d}-w{w}", lambda fam=fam, d=d, w=w: fam.build(d, w),
                            (3, cfg["image_size"], cfg["image_size"]), runs * n, cfg["epochs"], cfg["batch_size"],
                            runs * t))
    return jobs


def chapter7(profile: Profile) -> list[Job]:
    """The family comparison, the ReZero family (one seed, costed as the residual net) and three
    U-Nets (no long skips, long skips, long + residual short skips; scored once at the end)."""
    cfg = ch7.config(profile)
    seg = ch6_config(profile)
    jobs = compare_jobs(cfg) + compare_jobs(cfg, families=["rezero"], seeds=cfg["seeds"][:1])
    variants = {"unet-noskip": {"skips": False}, "unet": {"skips": True},
                "unet-residual": {"skips": True, "residual_encoder": True}}
    return jobs + _unet_jobs(seg, variants, seg["epochs"], False)


def _landscape_jobs(cfg: dict, slices: bool, paths_probe: bool) -> list[Job]:
    s, b = cfg["image_size"], cfg["batch_size"]
    n, t = _n(cfg["train_subset"], CIFAR_TRAIN), _n(cfg["test_subset"], CIFAR_TEST)
    jobs = [_cifar(f"{f}{cfg['depth']}", s, n, cfg["epochs"], b, t) for f in ("plain", "resnet")]
    surf_n = min(cfg["surface_images"], n)
    surf_b = cfg["surface_batch"] or surf_n
    points = cfg["grid_points"] ** 2 + (cfg["slice_points"] if slices else 0)
    jobs += [_scoring(f"{f}{cfg['depth']}", s, points * surf_n, surf_b) for f in ("plain", "resnet")]
    L = cfg["lesion_depth"]
    if L != cfg["depth"]:
        jobs += [_cifar(f"{f}{L}", s, n, cfg["epochs"], b, t) for f in ("plain", "resnet")]
    blocks = 3 * ((L - 2) // 6)
    # lesion: the full net plus one copy per deletable block (all of a ResNet's, most of a plain net's)
    jobs += [_scoring(f"{f}{L}", s, (blocks + 1) * t, b) for f in ("plain", "resnet")]
    if paths_probe:
        # Veit et al.'s path gradients: per sample and path length one backward through the net
        # (about twice a forward pass) on path_images images; approximated as forward passes
        nb = 3 * ((cfg["depth"] - 2) // 6)
        jobs.append(_scoring(f"resnet{cfg['depth']}", s, 2 * cfg["path_samples"] * (nb + 1) * cfg["path_images"], b))
    return jobs


def chapter8(profile: Profile) -> list[Job]:
    """Plain vs residual training, the 2-D surfaces, the lesion sweep and the path gradients
    (the one-batch gradient probes and the tiny FC nets of the shattering cell are left out)."""
    return _landscape_jobs(ch8_config(profile), slices=False, paths_probe=True)


def chapter9(profile: Profile) -> list[Job]:
    """Every wiring at every depth, the warmed-up post-LN and the ReZero run at the deepest depth, and
    the two one-layer lesion sweeps; a "sample" is one sorting sequence. The one-batch gradient probes
    and the widget are left out."""
    cfg = ch9.config(profile)
    shape = (ch9.task(cfg).block_size,)
    samples, held_out, deep = cfg["steps"] * cfg["batch_size"], 1000, max(cfg["depths"])  # score(): 1,000 samples

    def job(wiring: str, depth: int, images: int, eval_images: int) -> Job:
        key = f"transformer-{wiring}-{depth}"
        return Job(key, key, lambda: TokenModel(ch9.build(cfg, wiring, depth)), shape, images, 1, cfg["batch_size"],
                   eval_images, held_out)

    runs = [(w, d) for d in cfg["depths"] for w in ch9.SWEEP_WIRINGS] + [("post_ln", deep), ("rezero", deep)]
    lesions = [job(w, deep, 0, (deep + 1) * cfg["probe_batch"]) for w in ("pre_ln", "post_ln")]
    return [job(w, d, samples, held_out) for w, d in runs] + lesions


CHAPTERS: dict[int, Callable[[Profile], list[Job]]] = {
    1: chapter1, 2: chapter2, 3: chapter3, 4: chapter4, 5: chapter5, 6: chapter6, 7: chapter7, 8: chapter8,
    9: chapter9,
}


def experiment_jobs(name: str, profile: Profile) -> list[Job]:
    """The jobs of ``python -m skiplib <name>``: the chapter's reference run without its side cells."""
    if name == "degradation":
        return chapter1(profile)
    if name == "highway":
        return [j for j in chapter3(profile) if "_fc" in j.key][:-1]  # the depth sweep, not the gate-bias runs
    if name == "compare":
        return compare_jobs(ch7.config(profile))
    if name == "landscape":
        return _landscape_jobs(ch8_config(profile), slices=True, paths_probe=False)
    raise ValueError(f"unknown experiment {name!r}: allowed are degradation, highway, compare, landscape")


EXPERIMENTS = ("degradation", "highway", "compare", "landscape")


def summary(jobs: list[Job]) -> dict:
    """FLOPs, and estimated seconds on a T4 and an H200 (see the assumptions above)."""
    return {"flops": sum(job_flops(j) for j in jobs), "t4_s": gpu_seconds(jobs),
            "h200_s": gpu_seconds(jobs, speedup=H200_SPEEDUP)}
