"""The degradation experiment of Chapter 1 (He et al. 2016, Figs. 1 and 6).

Plain nets and ResNets of several depths, trained with one recipe on CIFAR-10. The chapter
notebook and ``python -m skiplib degradation`` call the same :func:`run`, with sizes from
:func:`config`, so the live run and the reference run differ only by profile.

Shared with later chapters: :func:`train_families` (plain and residual nets from one seed on the
same batches) also trains Chapter 8's pairs, :func:`loaders` gives Chapters 5 and 8 their CIFAR-10
loaders, and :func:`profile_and_config` starts the CLI entries of Chapters 7 and 8.

The paper's full-length recipe (``--preset paper``, ``--dry-run``) lives in :mod:`skiplib.chapters.ch01_paper`,
the gap between plain-56 and plain-20 at growing budgets in :mod:`skiplib.chapters.ch01_budget`;
under torchrun, :func:`run` trains this rank's share of the runs and gathers them to rank 0
(:mod:`skiplib.train.distributed`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping, Sequence

import torch
from matplotlib.axes import Axes
from torch import nn
from tqdm.auto import tqdm

from skiplib import plots
from skiplib.chapters.ch01_paper import fit_kwargs
from skiplib.data import DeviceLoader, cifar10_loaders
from skiplib.models import create_model
from skiplib.profile import Profile, get_profile, seed_everything
from skiplib.results import load_partial, reusable_partial, run_and_save
from skiplib.train import History, fit, run_checkpoint
from skiplib.train.distributed import World, gather, shard

FAMILIES = ("plain", "resnet")


def config(profile: Profile) -> dict:
    """Run sizes per profile. ``cpu`` is tuned so that, on 2 cores within the 4-minute budget,
    plain-56 ends with clearly higher training error than plain-20 (16x16 images, an 8k subset)."""
    recipe = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "onecycle", "batch_size": 128, "seed": 0}
    sizes = profile.choose(
        smoke={"image_size": 16, "train_subset": 512, "test_subset": 256, "epochs": 1, "depths": [20, 56]},
        cpu={"image_size": 16, "train_subset": 8_000, "test_subset": 2_000, "epochs": 6, "depths": [20, 56]},
        gpu={"image_size": 32, "train_subset": None, "test_subset": None, "epochs": 6, "depths": [20, 56]},
    )
    return {**recipe, **sizes, "profile": profile.name}


def loaders(cfg: dict, device: torch.device | str | None, allow_synthetic: bool = False,
            verbose: bool = True) -> tuple[DeviceLoader, DeviceLoader, dict]:
    """The chapter's CIFAR-10 train and test loaders and their info dict, sized by ``cfg``
    (``train_subset``, ``test_subset``, ``image_size``, ``batch_size``, ``seed``); Chapters 1, 5 and 8."""
    return cifar10_loaders(train_subset=cfg["train_subset"], test_subset=cfg["test_subset"],
                           image_size=cfg["image_size"], batch_size=cfg["batch_size"], device=device,
                           seed=cfg["seed"], allow_synthetic=allow_synthetic, verbose=verbose)


def train_one(cfg: dict, family: str, depth: int, train_loader: DeviceLoader, test_loader: DeviceLoader,
              start: dict, *, device: torch.device | str | None, label: str | None = None,
              experiment: str | None = None, key: dict | None = None, progress: bool = True,
              data: dict | None = None, compile: bool = False) -> tuple[nn.Module, History]:
    """Train the net ``f"{family}{depth}"`` from seed ``cfg["seed"]`` with ``cfg``'s recipe, the loader
    rewound to ``start`` (its state before the first run), so the run depends on nothing trained before
    it; return ``(model, history)``. With ``experiment`` it checkpoints every epoch to
    ``run_checkpoint(experiment, key or cfg, label)`` (``label`` defaults to the net's name)."""
    name = f"{family}{depth}"
    label = label or name
    seed_everything(cfg["seed"])
    train_loader.load_state_dict(start)
    model = create_model(name)
    ckpt = run_checkpoint(experiment, cfg if key is None else key, label) if experiment else None
    data = None if data is None else {**data, "seed": cfg["seed"]}  # synthetic runs never resume as CIFAR-10
    history = fit(model, train_loader, test_loader, **fit_kwargs(cfg, depth), device=device, checkpoint=ckpt,
                  progress=progress, desc=label, data=data, **({"compile": True} if compile else {}))
    return model, history


def train_families(cfg: dict, train_loader: DeviceLoader, test_loader: DeviceLoader, *,
                   device: torch.device | str | None, families: Sequence[str] = FAMILIES,
                   depths: Sequence[int] | None = None, experiment: str | None = None, key: dict | None = None,
                   progress: bool = True, data: dict | None = None,
                   histories: dict | None = None) -> tuple[dict[str, nn.Module], dict[str, History]]:
    """Train the net ``f"{family}{depth}"`` (``plain20``, ``resnet56`` …) for every depth of ``depths``
    (default ``cfg["depths"]``) and family of ``families``, depth by depth, with ``cfg``'s recipe; return
    ``(models, histories)`` keyed by label. Every net starts from seed ``cfg["seed"]`` and sees the same
    batches in the same order (the loader is rewound to its state at the call), so only the
    architecture differs: Chapter 1's experiment, and Chapter 8's plain/ResNet pair.

    With ``experiment``, each net checkpoints every epoch to ``run_checkpoint(experiment, key, label)``
    (``key`` defaults to ``cfg``), so an interrupted call resumes where it stopped; ``data`` (the
    loaders' info dict) is recorded in every checkpoint, with the seed. ``histories`` (a dict), if
    given, receives each net's history as soon as it is trained.
    """
    depths = cfg["depths"] if depths is None else depths
    start = train_loader.state_dict()
    finished = {} if histories is None else histories
    models: dict[str, nn.Module] = {}
    for depth in depths:
        for family in families:
            label = f"{family}{depth}"
            models[label], finished[label] = train_one(
                cfg, family, depth, train_loader, test_loader, start, device=device, experiment=experiment, key=key,
                progress=progress, data=data)
    return models, {label: finished[label] for label in models}


def run_list(cfg: dict, families: Sequence[str] = FAMILIES) -> list[tuple[str, str, int, int]]:
    """Every run of ``cfg`` as ``(label, family, depth, seed)``, in training order: depth by depth, then
    family, then seed (``cfg["seeds"]``, else ``cfg["seed"]``). Labels are ``plain20`` …, with ``-s<seed>``
    when there are several seeds. torchrun's ranks deal this list out round-robin."""
    seeds = cfg.get("seeds") or [cfg["seed"]]
    suffix = len(seeds) > 1
    return [(f"{family}{depth}" + (f"-s{seed}" if suffix else ""), family, depth, seed)
            for depth in cfg["depths"] for family in families for seed in seeds]


def run(cfg: dict, *, device: torch.device | str | None = None, families: Sequence[str] = FAMILIES,
        allow_synthetic: bool = False, checkpoints: bool = False, progress: bool = True,
        partial: dict | None = None, previous: dict | None = None, world: World | None = None,
        compile: bool = False) -> dict:
    """Train every run of :func:`run_list` (family x depth x seed); return the per-run histories and trained
    models (``{"histories": {label: History}, "models": {label: nn.Module}, "info": ..., "seconds": ...}``).

    Labels are ``plain20``, ``resnet56`` …; each net starts from its seed on its seed's batches, whatever
    ran before it (see :func:`train_one`). With ``checkpoints`` each run checkpoints every epoch to
    ``run_checkpoint("degradation", cfg, label)`` (see :func:`skiplib.train.checkpoint_dir`), so that an
    interrupted call resumes where it stopped. ``partial`` (a dict) receives ``"info"`` and each run's
    ``"histories"`` entry as soon as it finishes, so a caller that is interrupted can save what finished;
    ``previous`` (such a partial result, saved as JSON) supplies the runs it finished, which are not trained
    again when it was made with the same ``cfg`` and data. ``progress`` shows a bar over the runs (and
    per epoch). Under torchrun (``world``), this rank trains its share (:func:`skiplib.train.distributed.shard`)
    and rank 0 returns every rank's histories; ``models`` holds only the nets trained in this process.
    ``compile`` trains through ``torch.compile``.
    """
    unknown = set(families) - set(FAMILIES)
    if unknown:
        raise ValueError(f"unknown families {sorted(unknown)}: allowed values are {', '.join(FAMILIES)}")
    device = torch.device(device) if device is not None else get_profile().device
    world = world or World()
    runs = run_list(cfg, families)
    data: dict[int, tuple] = {}  # seed -> train and test loaders, info, the train loader's fresh state

    def data_for(seed: int) -> tuple:
        if seed not in data:
            train, test, info = loaders({**cfg, "seed": seed}, device, allow_synthetic=allow_synthetic, verbose=not data)
            data[seed] = (train, test, info, train.state_dict())
        return data[seed]

    info = data_for(runs[0][3])[2]
    previous = reusable_partial(previous, cfg, info["source"])
    done = previous["histories"] if previous else {}
    partial = {} if partial is None else partial
    partial.update(info=info, histories={})
    t0 = time.perf_counter()
    models: dict[str, nn.Module] = {}
    mine = shard(runs, world)
    with tqdm(total=len(mine), desc="degradation runs", unit="run", disable=not progress) as bar:
        for label, family, depth, seed in mine:
            if label in done:  # finished before an interruption: read back, not trained again
                partial["histories"][label] = History(records=list(done[label]))
            else:
                train, test, info_s, start = data_for(seed)
                models[label], partial["histories"][label] = train_one(
                    {**cfg, "seed": seed}, family, depth, train, test, start, device=device, label=label,
                    experiment="degradation" if checkpoints else None, key=cfg, progress=progress, data=info_s,
                    compile=compile)
            bar.update(1)
    records = {label: h.records for label, h in partial["histories"].items()}
    merged = {k: v for part in (gather(records, world) or [records]) for k, v in part.items()}
    histories = {label: History(records=merged[label]) for label, *_ in runs if label in merged}
    return {"histories": histories, "models": models, "info": info, "seconds": time.perf_counter() - t0}


def plot_families(histories: Mapping[str, object], axes: Sequence[Axes], *, key: str = "train_err",
                  note: str = "") -> None:
    """Chapter 1's two panels: ``key`` per epoch of the plain nets on ``axes[0]``, of the ResNets on
    ``axes[1]`` (``histories`` maps labels to :class:`History` objects or lists of records)."""
    for ax, family, title in zip(axes, FAMILIES, ("plain", "residual (option A shortcuts)")):
        plots.plot_curves({k: h for k, h in histories.items() if k.startswith(family)}, key, ax=ax)
        ax.set_title(title + note)


def plot_reference(result: dict, axes: Sequence[Axes]) -> None:
    """Draw a ``degradation-<profile>`` reference run (:func:`skiplib.plots.show_reference`, two axes)."""
    plot_families(result["histories"], axes, note=" (reference run)")


def profile_and_config(args: argparse.Namespace, make_config: Callable[[Profile], dict]) -> tuple[Profile, dict]:
    """The chapters' CLI entries: the profile of ``args.profile`` and its config; ``--epochs``,
    ``--depths``, ``--seeds``, ``--train-subset`` (``all``: None, the whole training set) and
    ``--image-size``, where a command has them and they are given, override the profile's."""
    profile = get_profile(args.profile)
    cfg = make_config(profile)
    for option in ("epochs", "depths", "seeds", "train_subset", "image_size"):
        value = getattr(args, option, None)
        if value is not None:
            cfg[option] = list(value) if option in ("depths", "seeds") else None if value == "all" else value
    return profile, cfg


def result_name(experiment: str, profile: Profile, args: argparse.Namespace) -> str:
    """``<experiment>-<profile>`` (``<experiment>-<preset>`` with ``--preset``), with ``-<tag>`` after it
    when ``--tag`` is given: the results file's name."""
    tag, preset = getattr(args, "tag", None), getattr(args, "preset", None)
    return f"{experiment}-{preset or profile.name}" + (f"-{tag}" if tag else "")


def main(args: argparse.Namespace) -> int:
    """CLI entry: run the experiment in ``args.profile`` (or ``args.preset``) and write
    ``degradation-<profile>.json``; ``--dry-run`` prints the schedule and an estimated time instead.
    Under torchrun the runs are shared among the ranks and rank 0 writes the file."""
    from skiplib.chapters import ch01_paper as paper
    from skiplib.train import distributed as dist

    world = dist.world_from_env()
    preset = getattr(args, "preset", None)
    profile, cfg = profile_and_config(args, paper.paper_config if preset else config)
    paper.apply_overrides(cfg, args)
    if cfg.get("seeds"):
        cfg["seed"] = cfg["seeds"][0]
    families = getattr(args, "families", None) or FAMILIES
    device = dist.device_for(world, profile.device)
    if getattr(args, "dry_run", False):
        if world.main:
            rate, where = paper.dry_run_rate(cfg["image_size"], device)
            print(paper.describe(cfg, run_list(cfg, families), rate=rate, where=where))
        return 0

    def body(out: dict) -> dict:
        histories = {label: h.records for label, h in out.get("histories", {}).items()}
        return {"experiment": "degradation", "config": cfg, "histories": histories}

    name = result_name("degradation", profile, args)
    with dist.session(world, device):
        previous = load_partial(name, args.out_dir)
        out, path = run_and_save(
            name, body=body, device=device, profile=profile.name, out_dir=args.out_dir, world=world,
            run=lambda partial: run(cfg, device=device, families=families, allow_synthetic=profile.allow_synthetic,
                                    checkpoints=True, partial=partial, previous=previous, world=world,
                                    compile=getattr(args, "compile", False)))
        if world.main:
            for label, h in out["histories"].items():
                print(f"{label:>10}: final train error {h.last['train_err']:.1%}, test error {h.last['test_err']:.1%}")
            print(f"wrote {path}")
    return 0
