"""Chapter 8's loss-landscape experiment and its benchmark: ``python -m skiplib landscape``.

* ``--bench``: surface points per second and the seconds for one 21x21 surface in the ``cpu``
  profile's setting (ResNet-56 and plain-56, 16x16 images, 256 images as one batch, BN in eval
  mode), and the cost of Li et al.'s setting in the same units.
* ``--matched [--epochs N]``: surfaces at matched training loss: plain-d trained for N epochs, ResNet-d
  for as few epochs as reach the same loss (:func:`run_matched`); writes ``landscape-<profile>-matched.json``.
* ``--profile gpu``: trains plain-d and ResNet-d (d = 56), computes their 2-D surfaces on the
  profile's grid (31x31 in ``gpu``; Li et al. use 51x51), the 1-D slices and the lesion curves, and writes
  ``results/landscape-<profile>.json`` with provenance; Chapter 8 plots it when present.

The notebook calls the same functions (:func:`train_pair`, :func:`surface_batch`,
:func:`surfaces`, :func:`lesion_curve`), so live and reference runs differ only by profile.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from torch import nn
from tqdm.auto import tqdm

from skiplib import plots
from skiplib.analysis import ensemble as paths
from skiplib.analysis import landscape as L
from skiplib.chapters.ch01_degradation import loaders, profile_and_config, result_name, train_families
from skiplib.data import DeviceLoader
from skiplib.models import create_model
from skiplib.profile import Profile, get_profile, seed_everything
from skiplib.results import run_and_save
from skiplib.train import History, evaluate

# Li et al. (2018): ResNet-56 on CIFAR-10, a 51x51 grid, every point on the 50k training images
PAPER_GRID, PAPER_IMAGES, PAPER_IMAGE_SIZE = 51, 50_000, 32

# The settings that change a trained net (the data and the recipe); the checkpoint key hashes only
# these, so changing the surface grid or the probes does not retrain.
TRAIN_KEYS = ("lr", "momentum", "weight_decay", "schedule", "batch_size", "seed", "image_size",
              "train_subset", "test_subset", "epochs", "profile")


def config(profile: Profile) -> dict:
    """Sizes for Chapter 8.

    ``cpu`` (2 cores, <= 4 minutes for the whole page): plain-56 and ResNet-56 trained on 2,000
    CIFAR-10 images at 16x16 for 8 epochs, surfaces on an 11x11 grid spanning [-0.5, 0.5]^2 over
    256 of those training images held as one batch; the lesion study uses plain-20/ResNet-20
    (plain-56 does not leave chance level in this budget, so deleting its blocks shows nothing).
    ``gpu`` is Li et al.'s setting shortened to minutes on a Colab T4: 32x32 images, 12k training
    images, a 31x31 grid (theirs is 51x51) on a 1,000-image training subset (one batch). ``smoke``
    only checks that everything runs.
    """
    recipe = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "onecycle", "batch_size": 128, "seed": 0}
    sizes = profile.choose(
        smoke={"depth": 20, "image_size": 16, "train_subset": 512, "test_subset": 256, "epochs": 1, "span": 0.5,
               "lesion_depth": 20,
               "grid_points": 5, "surface_images": 64, "surface_batch": None, "slice_points": 11,
               "grad_depth": 20, "grad_batch": 32,
               "shatter_depths": [1, 4, 12], "shatter_width": 64, "path_samples": 1, "path_images": 16},
        cpu={"depth": 56, "image_size": 16, "train_subset": 2_000, "test_subset": 500, "epochs": 8, "span": 0.5,
             "lesion_depth": 20, "grid_points": 11, "surface_images": 256, "surface_batch": None, "slice_points": 41,
             "grad_depth": 56, "grad_batch": 64,
             "shatter_depths": [1, 2, 5, 10, 24, 50], "shatter_width": 200, "path_samples": 4, "path_images": 64},
        gpu={"depth": 56, "image_size": 32, "train_subset": 12_000, "test_subset": 5_000, "epochs": 8, "span": 1.0,
             "lesion_depth": 56,
             "grid_points": 31, "surface_images": 1_000, "surface_batch": 1_000, "slice_points": 101,
             "grad_depth": 110, "grad_batch": 128,
             "shatter_depths": [1, 2, 5, 10, 24, 50, 100], "shatter_width": 200, "path_samples": 16,
             "path_images": 256},
    )
    return {**recipe, **sizes, "direction_seeds": [1, 2], "shatter_points": 256, "profile": profile.name}


def surface_batch(loader, n: int | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random (seeded) un-augmented training images and labels, kept on the loader's device
    (the loader's tensors may be sorted by class, so a prefix would be one class)."""
    total = len(loader.y)
    n = total if n is None else min(n, total)
    idx = torch.randperm(total, generator=torch.Generator().manual_seed(seed))[:n].to(loader.y.device)
    return loader.x[idx].contiguous(), loader.y[idx]


def train_pair(cfg: dict, train_loader: DeviceLoader, test_loader: DeviceLoader, *,
               device: torch.device | str | None, depth: int | None = None, progress: bool = False,
               checkpoints: bool = False, data: dict | None = None,
               histories: dict | None = None) -> tuple[dict, dict]:
    """Train plain-d and ResNet-d (d = ``depth``, default ``cfg["depth"]``) from the same seed on
    the same batches (Chapter 1's :func:`~skiplib.chapters.ch01_degradation.train_families`); return
    ``(models, histories)`` keyed ``plain56``, ``resnet56`` …. With ``checkpoints`` each net
    checkpoints every epoch to ``run_checkpoint("landscape", ...)``, keyed by the training settings
    and the depth only (so a new surface grid does not retrain), and an interrupted call resumes where
    it stopped; the checkpoints also record ``data`` (the loaders' info dict). ``histories`` (a dict),
    if given, receives each net's history as soon as it is trained.
    """
    depth = depth or cfg["depth"]
    key = {**{k: cfg[k] for k in TRAIN_KEYS if k in cfg}, "depth": depth}
    return train_families(cfg, train_loader, test_loader, device=device, depths=[depth],
                          experiment="landscape" if checkpoints else None, key=key, progress=progress, data=data,
                          histories=histories)


def surfaces(models: dict, x: torch.Tensor, y: torch.Tensor, cfg: dict, progress: bool = True) -> dict:
    """2-D loss/error surface of each model on ``cfg``'s grid, with the direction spec and the
    seconds it took; ``{label: {"xs", "ys", "loss", "err", "directions", "seconds", "roughness"}}``.
    ``progress`` shows a bar over the grid points of all surfaces."""
    coords = L.grid(cfg["span"], cfg["grid_points"])
    spec = L.direction_spec(cfg["direction_seeds"])
    out = {}
    with tqdm(total=len(models) * len(coords) ** 2, desc="loss surfaces", unit="point", disable=not progress) as bar:
        for label, model in models.items():
            d1, d2 = L.directions_from_spec(model, spec)
            bar.set_postfix_str(label)
            t0 = time.perf_counter()
            s = L.surface_2d(model, x, y, d1, d2, coords, coords, batch_size=cfg["surface_batch"],
                             on_point=lambda: bar.update(1))
            s.update(directions=spec, seconds=time.perf_counter() - t0, roughness=L.roughness(s["loss"]))
            out[label] = s
    return out


def lesion_curve(model: nn.Module, test_loader) -> dict:
    """Test error of ``model`` and of each copy with one block deleted (Veit et al. 2016):
    ``{"full": err, "deleted": {block_index: err}}``; blocks a plain net cannot lose are absent."""
    full = evaluate(model, test_loader)["err"]
    deleted = {i: evaluate(paths.delete_block(model, i), test_loader)["err"] for i in paths.deletable_blocks(model)}
    return {"full": full, "deleted": deleted}


def bench(points: int = 21, repeats: int = 1) -> dict:
    """Seconds for one ``points`` x ``points`` surface and points per second in the ``cpu``
    profile's setting, for its plain and residual net (untrained weights: the cost is the same)."""
    profile = get_profile("cpu")
    cfg = config(profile)
    n, size = cfg["surface_images"], cfg["image_size"]
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, size, size, generator=g), torch.randint(0, 10, (n,), generator=g)
    coords = L.grid(cfg["span"], points)
    result = {"points": points * points, "images": n, "image_size": size, "device": str(profile.device)}
    for family in ("plain", "resnet"):
        label = f"{family}{cfg['depth']}"
        seed_everything(0)
        model = create_model(label).to(profile.device, memory_format=torch.channels_last).eval()
        xd, yd = x.to(profile.device).contiguous(memory_format=torch.channels_last), y.to(profile.device)
        d1, d2 = L.random_direction(model, 1), L.random_direction(model, 2)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            L.surface_2d(model, xd, yd, d1, d2, coords, coords)
            best = min(best, time.perf_counter() - t0)
        result[label] = {"seconds": best, "points_per_second": points * points / best,
                         "images_per_second": points * points * n / best}
    return result


def paper_cost_ratio(points: int, images: int, image_size: int) -> float:
    """How many times more image forward passes Li et al.'s surface needs than ours (pixels
    counted too: a 32x32 image costs about 4x a 16x16 one)."""
    ours = points * points * images * image_size**2
    return PAPER_GRID**2 * PAPER_IMAGES * PAPER_IMAGE_SIZE**2 / ours


def run(cfg: dict, profile: Profile, progress: bool = True, checkpoints: bool = False,
        partial: dict | None = None) -> dict:
    """The whole experiment for one profile: train (checkpointed per epoch with ``checkpoints``),
    surfaces, 1-D slices, lesion curves. ``partial`` (a dict) receives each part as it finishes
    (``info``, ``histories`` per net, ``surfaces``, ``slices``, ``lesions``), so an interrupted
    caller can save them."""
    t0 = time.perf_counter()
    part = {} if partial is None else partial
    train_loader, test_loader, info = loaders(cfg, profile.device, allow_synthetic=profile.allow_synthetic)
    part.update(config=cfg, info=info, histories={})
    models, _ = train_pair(cfg, train_loader, test_loader, device=profile.device, progress=progress,
                           checkpoints=checkpoints, data=info, histories=part["histories"])
    x, y = surface_batch(train_loader, cfg["surface_images"], seed=cfg["seed"])
    part["surfaces"] = surfaces(models, x, y, cfg, progress=progress)
    alphas = L.grid(cfg["span"], cfg["slice_points"])
    part["slices"] = {}
    for label, model in models.items():
        d1 = L.directions_from_spec(model, L.direction_spec(cfg["direction_seeds"][:1]))[0]
        part["slices"][label] = L.surface_1d(model, x, y, d1, alphas, batch_size=cfg["surface_batch"])
    if cfg["lesion_depth"] != cfg["depth"]:
        lesion_models, _ = train_pair(cfg, train_loader, test_loader, device=profile.device, depth=cfg["lesion_depth"],
                                      progress=progress, checkpoints=checkpoints, data=info,
                                      histories=part["histories"])
    else:
        lesion_models = models
    part["lesions"] = {label: lesion_curve(m, test_loader) for label, m in lesion_models.items()}
    return {**part, "histories": {k: h.records for k, h in part["histories"].items()},
            "seconds": time.perf_counter() - t0}


@torch.no_grad()
def batch_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Cross-entropy of ``model`` (BN in eval mode) on ``(x, y)`` as one batch: the centre of its surface."""
    was_training = model.training
    loss = F.cross_entropy(model.eval()(x).float(), y).item()
    model.train(was_training)
    return loss


def train_to_loss(cfg: dict, train_loader: DeviceLoader, test_loader: DeviceLoader, target: float,
                  x: torch.Tensor, y: torch.Tensor, *, device: torch.device | str | None, label: str,
                  max_epochs: int, progress: bool = False) -> tuple[nn.Module, dict, list[dict]]:
    """Train ``label`` (e.g. ``"resnet56"``) with ``cfg``'s recipe for 1, 2, 3 ... epochs, each a full
    schedule from the same seed on the same batches, until its loss on ``(x, y)`` falls to ``target``;
    return whichever of the last two nets is closer to ``target``, its ``{"epochs", "loss"}`` and every one tried.
    A net matched this way has finished its learning-rate schedule, as the net it is matched to has,
    instead of being stopped half-way down a slope."""
    family, depth = label.rstrip("0123456789"), int(label[len(label.rstrip("0123456789")):])
    tried, previous, start = [], None, train_loader.state_dict()
    for epochs in range(1, max_epochs + 1):
        train_loader.load_state_dict(start)  # every schedule sees the same batches in the same order
        models, _ = train_families({**cfg, "epochs": epochs}, train_loader, test_loader, device=device,
                                   families=(family,), depths=[depth], progress=progress)
        model = models[label].eval()
        tried.append({"epochs": epochs, "loss": batch_loss(model, x, y)})
        if tried[-1]["loss"] <= target:
            if previous is not None and abs(tried[-2]["loss"] - target) < abs(tried[-1]["loss"] - target):
                return previous, tried[-2], tried
            return model, tried[-1], tried
        previous = model
    raise ValueError(f"{label} did not reach the target loss {target:.3f} in {max_epochs} epochs "
                     f"(it got to {tried[-1]['loss']:.3f}): give it more epochs or a higher target")


def run_matched(cfg: dict, profile: Profile, progress: bool = True, checkpoints: bool = False,
                partial: dict | None = None) -> dict:
    """Surfaces at matched training loss: plain-d trained for ``cfg["epochs"]`` epochs, then ResNet-d
    trained for as few epochs as it needs to reach the same loss on the surface batch
    (:func:`train_to_loss`), and both surfaces on ``cfg``'s grid. With ``checkpoints`` the long plain run
    checkpoints every epoch (as :func:`train_pair`'s do); ``partial`` receives each part as it finishes."""
    t0 = time.perf_counter()
    part = {} if partial is None else partial
    train_loader, test_loader, info = loaders(cfg, profile.device, allow_synthetic=profile.allow_synthetic)
    part.update(config=cfg, info=info, histories={})
    plain_label, res_label = f"plain{cfg['depth']}", f"resnet{cfg['depth']}"
    key = {**{k: cfg[k] for k in TRAIN_KEYS if k in cfg}, "depth": cfg["depth"]}
    start = train_loader.state_dict()
    models, _ = train_families(cfg, train_loader, test_loader, device=profile.device, families=("plain",),
                               depths=[cfg["depth"]], experiment="landscape" if checkpoints else None, key=key,
                               progress=progress, data=info, histories=part["histories"])
    x, y = surface_batch(train_loader, cfg["surface_images"], seed=cfg["seed"])
    target = batch_loss(models[plain_label], x, y)
    train_loader.load_state_dict(start)  # the ResNet sees the batches the plain net saw, in the same order
    models[res_label], chosen, tried = train_to_loss(cfg, train_loader, test_loader, target, x, y,
                                                     device=profile.device, label=res_label,
                                                     max_epochs=cfg["epochs"], progress=progress)
    part["matched"] = {plain_label: {"epochs": cfg["epochs"], "loss": target}, res_label: chosen, "tried": tried}
    part["surfaces"] = surfaces(models, x, y, cfg, progress=progress)
    return {**part, "histories": {k: h.records for k, h in part["histories"].items()},
            "seconds": time.perf_counter() - t0}


def plot_reference(result: dict, axes: Sequence[Axes]) -> None:
    """Draw a ``landscape-<profile>`` reference run: the contours of its surfaces, one per axis
    (:func:`skiplib.plots.show_reference` with as many axes as surfaces)."""
    for ax, (label, surface) in zip(axes, result["surfaces"].items()):
        plots.plot_landscape_contour(surface, ax=ax, levels="quantile", title=f"{label} (reference run)")


def main(args: argparse.Namespace) -> int:
    """CLI entry point: ``--bench`` prints the benchmark; otherwise run and save the profile."""
    if args.bench:
        r = bench(points=args.points)
        ratio = paper_cost_ratio(args.points, r["images"], r["image_size"])
        print(f"surface benchmark, cpu profile: {args.points}x{args.points} grid, {r['images']} images of "
              f"{r['image_size']}x{r['image_size']} as one batch, BN in eval mode, {r['device']}, "
              f"{torch.get_num_threads()} threads")
        for label in (k for k in r if k.startswith(("plain", "resnet"))):
            v = r[label]
            print(f"  {label:>9}: {v['seconds']:6.1f} s per surface, {v['points_per_second']:6.2f} points/s, "
                  f"{v['images_per_second']:7.0f} images/s")
        print(f"  Li et al.'s surface (51x51 grid, 50k images at 32x32) is {ratio:,.0f}x this much work")
        return 0
    profile, cfg = profile_and_config(args, config)
    matched = getattr(args, "matched", False)
    if matched and args.tag is None:
        args.tag = "matched"  # a matched run never overwrites the profile's own surfaces
    experiment = run_matched if matched else run

    def body(out: dict) -> dict:
        histories = {k: (h.records if isinstance(h, History) else h) for k, h in out.get("histories", {}).items()}
        return {"experiment": "landscape", **{k: v for k, v in out.items() if k not in ("seconds", "info")},
                "histories": histories}

    out, path = run_and_save(result_name("landscape", profile, args), body=body, device=profile.device, profile=profile.name,
                             out_dir=args.out_dir,
                             run=lambda partial: experiment(cfg, profile, checkpoints=True, partial=partial))
    if matched:
        print("matched training losses:", {k: v for k, v in out["matched"].items() if k != "tried"})
    for label, s in out["surfaces"].items():
        print(f"{label:>9}: roughness {s['roughness']}, surface {s['seconds']:.0f} s")
    print(f"wrote {path}")
    return 0
