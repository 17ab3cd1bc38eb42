"""Chapter 5 (DenseNets): the run sizes the notebook uses, its measuring and plotting helpers
(cost of a network, feature-reuse maps, the efficiency and reuse figures), and the
``dense-memory`` command (``python -m skiplib dense-memory``): peak memory and seconds per step of
a dense block, naive vs memory-efficient, measured by :mod:`skiplib.analysis.memory`.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import colors
from torch import nn
from torchinfo import summary

from skiplib import plots
from skiplib.analysis.memory import TensorMemory, block_memory_curve, growth_exponent
from skiplib.analysis.reuse import ConnectionAblation
from skiplib.blocks.dense import feature_reuse

# the notebook's CIFAR-10 loaders are Chapter 1's, sized by this chapter's config
from skiplib.chapters.ch01_degradation import loaders as loaders
from skiplib.models import count_parameters, create_model
from skiplib.models.densenet import DenseNet, cifar_densenet
from skiplib.profile import Profile, seed_everything
from skiplib.train import History, fit, run_checkpoint


def config(profile: Profile) -> dict:
    """Sizes for Chapter 5. ``cpu``: DenseNet-BC-40 (k = 12) against ResNet-20 for 6 epochs on 5k
    CIFAR-10 images at 16x16 (the trained DenseNet also gives the feature-reuse heatmap and the
    connection ablation, scored on ``ablation_images`` test images: 10 s), and dense blocks of 6-48
    layers for the memory curves; the DenseNet's training is most of the notebook's time (the CI
    log's per-chapter seconds say how long, on 2 cores). ``smoke``: the same pipeline, tiny. ``gpu`` (sized for a
    Colab T4, see ``skiplib.tools.workload``): DenseNet-BC-100 against ResNet-110 on 15k
    CIFAR-10 images at 32x32."""
    recipe = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "onecycle", "batch_size": 64, "seed": 0}
    sizes = profile.choose(
        smoke={"dense_depth": 16, "resnet": "resnet20", "image_size": 16, "train_subset": 256, "test_subset": 128,
               "epochs": 1, "mem_depths": [3, 6, 12], "mem_batch": 2, "mem_image_size": 8, "time_steps": 1,
               "tv_image_size": 64, "download_weights": False, "ablation_images": 64},
        cpu={"dense_depth": 40, "resnet": "resnet20", "image_size": 16, "train_subset": 5_000, "test_subset": 1_000,
             "epochs": 6, "mem_depths": [6, 12, 24, 48], "mem_batch": 8, "mem_image_size": 16, "time_steps": 2,
             "tv_image_size": 224, "download_weights": True, "ablation_images": 500},
        gpu={"dense_depth": 100, "resnet": "resnet110", "image_size": 32, "train_subset": 15_000, "test_subset": 5_000,
             "epochs": 6, "mem_depths": [6, 12, 24, 48, 96], "mem_batch": 8, "mem_image_size": 32, "time_steps": 5,
             "tv_image_size": 224, "download_weights": True, "ablation_images": 1000},
    )
    return {**recipe, **sizes, "growth_rate": 12, "profile": profile.name}


def dense_net(cfg: dict) -> DenseNet:
    """The chapter's DenseNet-BC (depth ``cfg["dense_depth"]``, growth rate ``cfg["growth_rate"]``,
    bottleneck layers, compression 0.5), freshly initialised from the global seed."""
    return cifar_densenet(cfg["dense_depth"], cfg["growth_rate"], bottleneck=True, compression=0.5)


def train_models(cfg: dict, train_loader, test_loader, *, device: torch.device | str,
                 checkpoints: bool = True, verbose: bool = True) -> dict:
    """Train the chapter's pair, DenseNet-BC (:func:`dense_net`) and ``cfg["resnet"]``, each from seed
    ``cfg["seed"]`` on the same batches (the loader rewound to its state before the first), with
    ``cfg``'s recipe; with ``checkpoints`` each resumes from ``run_checkpoint("ch05", cfg, label)``.
    The notebook and ``python -m skiplib densenet`` both train through this. Returns ``labels``
    (DenseNet's, ResNet's), and per label ``models``, ``histories``, ``params``, ``init_states``;
    ``seconds``: the wall-clock time of both."""
    labels = (f"DenseNet-BC-{cfg['dense_depth']}", f"ResNet-{cfg['resnet'].removeprefix('resnet')}")
    builders = dict(zip(labels, (lambda: dense_net(cfg), lambda: create_model(cfg["resnet"]))))
    start_state = train_loader.state_dict()
    out = {"labels": labels, "models": {}, "histories": {}, "params": {}, "init_states": {}}
    t0 = time.perf_counter()
    for label, build in builders.items():
        seed_everything(cfg["seed"])
        train_loader.load_state_dict(start_state)
        model = out["models"][label] = build()
        out["init_states"][label] = copy.deepcopy(model.state_dict())
        out["params"][label] = count_parameters(model)
        ckpt = run_checkpoint("ch05", cfg, label.replace(" ", "_")) if checkpoints else None
        h = out["histories"][label] = fit(
            model, train_loader, test_loader, epochs=cfg["epochs"], lr=cfg["lr"], momentum=cfg["momentum"],
            weight_decay=cfg["weight_decay"], schedule=cfg["schedule"], device=device, progress=False,
            desc=label, checkpoint=ckpt)
        if verbose:
            print(f"{label}: {out['params'][label]:,} parameters, training error {h.last['train_err']:.1%}, "
                  f"test error {h.last['test_err']:.1%}, {sum(h.column('seconds')):.0f} s")
    out["seconds"] = time.perf_counter() - t0
    return out


def training_cost(model: nn.Module, size: int = 32, batch: int = 2) -> dict:
    """What one training step of ``model`` on ``size`` x ``size`` images costs: ``params``,
    ``macs`` (multiply-adds per image, by torchinfo), ``mem`` (MiB per image of the tensors alive after
    the forward pass: what backward will need) and ``peak`` (MiB per image at the step's peak)."""
    # torchinfo moves a model to CUDA when there is one unless told the device: count where it lives
    device = next(model.parameters()).device
    s = summary(model, input_size=(1, 3, size, size), verbose=0, device=device)
    x = torch.randn(batch, 3, size, size, device=device)
    with TensorMemory() as mem:
        model.train()
        out = model(x)
        kept = mem.current  # tensors alive after the forward pass: what backward will need
        out.sum().backward()
    return {"params": s.total_params, "macs": s.total_mult_adds, "mem": kept / batch / 2**20,
            "peak": mem.peak / batch / 2**20}


def plot_efficiency(histories: Mapping[str, History], params: Mapping[str, int], colors: Mapping[str, str],
                    reference: dict | None = None) -> plt.Figure:
    """The parameter-efficiency figure: error per epoch of each run (left; test solid, training
    dashed) and final test error against parameters (right), with the runs of a reference result
    (``{"runs": [{"model", "parameters", "test_err"}, ...]}``, as ``python -m skiplib densenet``
    writes it: one run per model and seed) as open squares, one legend entry per model."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.0), constrained_layout=True)
    for label, h in histories.items():
        color = colors[label]
        ax1.plot(h.column("epoch"), [100 * e for e in h.column("test_err")], color=color, marker="o",
                 label=f"{label} test")
        ax1.plot(h.column("epoch"), [100 * e for e in h.column("train_err")], color=color, marker="o", linestyle="--",
                 alpha=0.7, label=f"{label} train")
        ax2.scatter(params[label] / 1e6, 100 * h.last["test_err"], color=color, s=60, label=f"{label} (this run)")
    ax1.set_xticks(h.column("epoch"))
    ax2.set_xlim(0, 1.2 * max(params.values()) / 1e6)
    seen = set()
    for run in (reference or {}).get("runs", []):
        label = f"{run['model']} (reference)" if run["model"] not in seen else None
        seen.add(run["model"])
        ax2.scatter(run["parameters"] / 1e6, 100 * run["test_err"], marker="s", facecolors="none",
                    edgecolors=colors.get(run["model"], plots.color_for(run["model"])), label=label)
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("error (%)")
    ax1.legend()
    ax2.set_xlabel("parameters (millions)")
    ax2.set_ylabel("final test error (%)")
    ax2.legend()
    return fig


def reuse_maps(net: DenseNet) -> list[torch.Tensor]:
    """Huang et al.'s Fig. 5 for each of a CIFAR DenseNet's three dense blocks
    (:func:`skiplib.blocks.dense.feature_reuse`): the last target of a block is the layer that reads
    all of it, the next transition (for the last block, the classifier)."""
    blocks = net.dense_blocks()
    if len(blocks) != 3:
        raise ValueError(f"reuse_maps needs a CIFAR DenseNet (three dense blocks), got {len(blocks)} blocks")
    followers = [net.features.transition1, net.features.transition2, net.classifier]
    return [feature_reuse(b, f) for b, f in zip(blocks, followers)]


def _heatmaps(rows: Mapping[str, Sequence[torch.Tensor]], label: str, norm: colors.Normalize,
              faint: Mapping[str, Sequence[torch.Tensor]] | None = None) -> plt.Figure:
    ncols = max(len(maps) for maps in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(4 * ncols, 3.8 * len(rows)), constrained_layout=True,
                             squeeze=False)
    for row, (what, maps) in enumerate(rows.items()):
        for i, (ax, m) in enumerate(zip(axes[row], maps)):
            n = m.shape[1]
            im = ax.imshow(m.numpy(), cmap="viridis", norm=norm, origin="upper")
            marks = faint[what][i].nonzero().tolist() if faint and what in faint else []
            for s, t in marks:
                ax.plot(t, s, marker="x", color="white", markersize=5, linestyle="none")
            ax.set_xticks(range(n), [str(t + 1) for t in range(n - 1)] + ["T" if i < len(maps) - 1 else "C"])
            ax.set_yticks(range(m.shape[0]), ["in"] + [str(s) for s in range(1, m.shape[0])])
            ax.set_xlabel("target layer (T: transition, C: classifier)")
            ax.set_ylabel("source layer")
            ax.set_title(f"dense block {i + 1}: {what}")
            ax.grid(False)
    fig.colorbar(im, ax=axes, shrink=0.6, label=label)
    return fig


def plot_reuse(rows: Mapping[str, Sequence[torch.Tensor]]) -> plt.Figure:
    """Feature-reuse heatmaps: one row per entry of ``rows`` (title -> one map per dense block, as
    :func:`reuse_maps` gives), one column per block, on one colour scale from 0 to 1."""
    return _heatmaps(rows, "mean |weight| per source (max per target = 1)", colors.Normalize(0, 1))


def plot_ablation(result: ConnectionAblation, z: float = 2.0) -> plt.Figure:
    """The loss increase of each cut connection (:func:`skiplib.analysis.reuse.connection_ablation`),
    one panel per dense block, laid out like :func:`plot_reuse`, on one square-root colour scale from 0
    (a negative increase shows as 0) to the largest increase; a white x marks a cut whose increase is
    not above ``z`` standard errors: not told apart from the sampling noise of the images."""
    what = "loss increase when cut"
    faint = [(m <= z * e) & ~torch.isnan(m) for m, e in zip(result.increase, result.stderr)]
    top = max(float(np.nanmax(m.numpy())) for m in result.increase)
    # a square-root scale: the few large rises would otherwise leave every other cell dark
    shown = [m.clamp(min=0) for m in result.increase]  # NaN stays NaN (not connected)
    return _heatmaps({what: shown}, "test-loss increase (nats, sqrt scale)",
                     colors.PowerNorm(0.5, vmin=0, vmax=max(top, 1e-6)), {what: faint})


def far_mean(maps: Sequence[torch.Tensor]) -> float:
    """Mean normalised entry of feature-reuse maps on sources at least two layers back (not the
    block input, not the previous layer), over every target of every block."""
    return float(np.mean([m[s, t].item() for m in maps for t in range(m.shape[1]) for s in range(1, t)]))


def smallest(maps: Sequence[torch.Tensor]) -> float:
    """Smallest connected entry (NaN cells are not connected) of each map, averaged over the maps."""
    return float(np.mean([np.nanmin(m.numpy()) for m in maps]))


def ablation_images(loader, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded random draw of ``n`` images and labels of ``loader``'s set (a :class:`DeviceLoader`),
    to score :func:`~skiplib.analysis.reuse.connection_ablation` on. Random, not the first ``n``: the
    test subset keeps the stored order, and CIFAR-10 from class folders (the JPEG copy) is sorted by class."""
    idx = torch.randperm(loader.num_samples, generator=torch.Generator().manual_seed(seed))[:n]
    return loader.x[idx.to(loader.x.device)], loader.y[idx.to(loader.y.device)]


def _mean_and_se(rise: torch.Tensor) -> tuple[float, float]:
    return rise.mean().item(), (rise.std() / len(rise) ** 0.5).item()


def far_and_near(result: ConnectionAblation) -> list[dict]:
    """Does a deep layer need features from far back? For the deep dense layers of each block (the
    second half, layer l > L/2), the mean loss increase of cutting one source two or more layers back
    (``far``; the block input included), of cutting the previous layer (``near``) and their
    difference, each with its standard error over the images (``*_se``: per image, the cuts are
    averaged first, so the correlation of cuts scored on the same images counts). One row per block
    (``block`` 1, 2, ...), then the blocks pooled with equal weight (``block`` "all")."""
    rows, pooled = [], []
    for b, rise in enumerate(result.per_image):
        layers = rise.shape[1] - 1  # the last column is the transition or the classifier
        deep = [t for t in range(layers) if t + 1 > layers // 2 and t >= 1]  # column t: dense layer t + 1
        if not deep:
            raise ValueError(f"dense block {b + 1} has {layers} layer(s): no layer reads a source two layers back")
        far = torch.stack([rise[s, t] for t in deep for s in range(t)]).mean(0)
        near = torch.stack([rise[t, t] for t in deep]).mean(0)
        pooled.append((far, near))
        rows.append({"block": b + 1, "targets": [t + 1 for t in deep], "far_cuts": sum(deep), "far": far, "near": near})
    rows.append({"block": "all", "targets": None, "far_cuts": sum(r["far_cuts"] for r in rows),
                 "far": torch.stack([f for f, _ in pooled]).mean(0), "near": torch.stack([n for _, n in pooled]).mean(0)})
    for row in rows:
        far, near = row.pop("far"), row.pop("near")
        (row["far"], row["far_se"]), (row["near"], row["near_se"]) = _mean_and_se(far), _mean_and_se(near)
        row["diff"], row["diff_se"] = _mean_and_se(far - near)
    return rows


def largest_cut(result: ConnectionAblation) -> tuple[str, float]:
    """The cut connection that raised the loss most, in words ("dense layer 2 of block 1 cut from its
    transition"), and its loss increase."""
    b = max(range(len(result.increase)), key=lambda i: float(np.nanmax(result.increase[i].numpy())))
    m = result.increase[b]
    s, t = divmod(int(np.nanargmax(m.numpy())), m.shape[1])
    if t < m.shape[1] - 1:
        target = f"dense layer {t + 1}"
    else:
        target = "the classifier" if b == len(result.increase) - 1 else "its transition"
    source = "the input" if s == 0 else f"dense layer {s}"
    return f"{source} of block {b + 1} cut from {target}", m[s, t].item()


def rank_correlation(maps_a: Sequence[torch.Tensor], maps_b: Sequence[torch.Tensor]) -> float:
    """Spearman's rank correlation between the connected (not NaN) entries of two lists of maps laid
    out alike, e.g. the weight heatmaps of :func:`reuse_maps` and the loss increases of an ablation."""
    a = np.concatenate([m.numpy()[~np.isnan(m.numpy())] for m in maps_a])
    b = np.concatenate([m.numpy()[~np.isnan(m.numpy())] for m in maps_b])
    if a.shape != b.shape:
        raise ValueError(f"the maps connect {a.size} and {b.size} pairs: they are not laid out alike")
    ranks = [np.argsort(np.argsort(v, kind="stable"), kind="stable") for v in (a, b)]
    return float(np.corrcoef(*ranks)[0, 1])


def relative_change(trained: nn.Module, initial: nn.Module) -> float:
    """How far training moved the parameters: ``||W - W_init|| / ||W_init||`` over all parameters."""
    with torch.no_grad():
        moved = sum((p1 - p0).norm() ** 2 for p1, p0 in zip(trained.parameters(), initial.parameters())) ** 0.5
        return float(moved / sum(p0.norm() ** 2 for p0 in initial.parameters()) ** 0.5)


def main(args: argparse.Namespace) -> int:
    """Print peak memory and seconds per step, naive vs memory-efficient, for several depths."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.save:
        from skiplib.results import check_outputs

        check_outputs(args.out_dir, checkpoints=False)  # before the measurement, not after
    rows = block_memory_curve(args.depths, growth_rate=args.growth_rate, in_channels=2 * args.growth_rate,
                              batch=args.batch, image_size=args.image_size, steps=args.steps, device=device)
    print(f"Dense block (bottleneck, k={args.growth_rate}, k0={2 * args.growth_rate}), batch {args.batch} at "
          f"{args.image_size}x{args.image_size} on {device}, {torch.get_num_threads()} threads.\n"
          "peak = tensor memory allocated during one forward+backward (params and input excluded)")
    header = f"{'layers':>6} {'mode':>17} {'after fwd MiB':>13} {'peak MiB':>9}"
    header += " cuda peak MiB" if device.type == "cuda" else ""
    print(header + f" {'s/step':>8}")
    for r in rows:
        line = f"{r['depth']:>6} {r['mode']:>17} {r['forward_mib']:>13.1f} {r['peak_mib']:>9.1f}"
        line += f" {r['cuda_peak_mib']:>13.1f}" if "cuda_peak_mib" in r else ""
        print(line + f" {r.get('seconds', math.nan):>8.3f}")
    for mode in ("naive", "memory-efficient"):
        sel = [r for r in rows if r["mode"] == mode]
        top = sel[-2:] if len(sel) >= 2 else sel
        exponent = growth_exponent([r["depth"] for r in top], [r["peak_mib"] for r in top])
        print(f"{mode:>17}: peak memory grows like L^{exponent:.2f} between the two largest depths")
    naive = [r for r in rows if r["mode"] == "naive"]
    eff = [r for r in rows if r["mode"] == "memory-efficient"]
    for a, b in zip(naive, eff):
        t = f", time x{b['seconds'] / a['seconds']:.2f}" if "seconds" in a else ""
        print(f"L={a['depth']:>3}: memory-efficient needs {b['peak_mib'] / a['peak_mib']:.0%} of the naive peak{t}")
    if args.save:
        from skiplib.results import provenance, save_result

        payload = {"rows": rows, "settings": {k: v for k, v in vars(args).items() if k != "func"},
                   "provenance": provenance(device, "random tensors (no data)", 0.0, "bench")}
        print("wrote", save_result(f"dense-memory-{device.type}", payload, args.out_dir))
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``dense-memory`` subcommand's options."""
    p.add_argument("--depths", type=int, nargs="+", default=[6, 12, 24, 48], help="layers per dense block")
    p.add_argument("--growth-rate", type=int, default=12, help="k (the block input has 2k channels)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement (0: no timing)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--save", action="store_true", help="also write results/dense-memory-<device>.json")
    p.add_argument("--out-dir", default=None, help="where to write the JSON (default: results/)")

