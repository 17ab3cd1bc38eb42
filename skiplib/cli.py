"""The chapters' experiments as a CLI: ``python -m skiplib <command>``.

Benchmarks and the GPU check are book tooling: ``python -m skiplib.tools bench|gpu-check``.

Commands (each reference run writes ``<name>.json`` into ``--out-dir``, default the current folder;
the repository's reference runs are made with ``--out-dir results``). Before training, every reference
run checks that ``--out-dir`` and the checkpoint folder can be written; interrupted with Ctrl-C, it
writes the runs that finished to ``<name>.partial.json`` (marked ``"partial": true``) and stops:

* ``degradation [--profile gpu] [--epochs N] [--depths 20 56 ...] [--families resnet] [--seeds 0 1 2]``: Chapter 1's
  experiment; writes ``degradation-<profile>.json`` with provenance (command, commit, device, data source, date,
  seconds, world size); ``--train-subset N|all`` and ``--image-size S`` change the profile's data (e.g. all 50k
  images at 16x16 on a CPU). ``--preset paper`` is He et al.'s full recipe instead of the profile's (all 50k CIFAR-10
  training images at 32x32, batch 128, SGD momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 32k and 48k
  iterations, 64k iterations, warm-up for depth 110; ``--depths 20,32,44,56,110``) and writes
  ``degradation-paper.json``; ``--iterations N`` and ``--lr-steps A B`` change its schedule. ``--dry-run`` prints
  the schedule and an estimated time here and on GPUs without training; ``--compile`` trains through torch.compile.
* ``highway [--profile gpu] [--epochs N]``: Chapter 3's depth experiment (plain vs highway FC nets, best
  training loss per depth over a learning-rate sweep); writes ``highway-depth-<profile>.json``.
  ``--part conv [--seeds 0 1 2]``: Chapter 3's ResNet against the highway conv net of the same layout
  and matched parameters, once per seed; writes ``highway-conv-<profile>.json``.
* ``dense-memory [--depths 6 12 24 48]``: Chapter 5's benchmark; peak memory and seconds per
  step of a dense block, naive vs memory-efficient, for several depths.
* ``densenet [--profile cpu] [--epochs N] [--seeds 0 1 2]``: Chapter 5; the chapter's DenseNet-BC
  against its ResNet once per seed, and the connection ablation of each trained DenseNet; writes
  ``densenet-<profile>.json``.
* ``compare [--profile gpu] [--epochs N] [--depths 8 32] [--seeds 0 1 2]``: Chapter 7; every skip
  family at one parameter budget across depths and seeds; writes ``compare-<profile>.json``.

``--tag T`` (every command that writes a reference run) names the file ``<experiment>-<profile>-T.json``
instead, so a run with overrides (a longer budget, more seeds) sits beside the profile's own.
* ``landscape [--bench] [--profile gpu] [--matched --epochs N]``: Chapter 8; ``--bench`` prints surface points
  per second and the seconds for a 21x21 surface (cpu profile); otherwise writes ``landscape-<profile>.json``;
  ``--matched`` compares the surfaces at matched training loss (``landscape-<profile>-matched.json``).

Every sweep shows a progress bar over its runs. Interrupted and started again with the same command,
``degradation``, ``highway`` and ``compare`` skip the runs that ``<name>.partial.json`` holds, and the
interrupted run resumes from its checkpoint (``landscape`` resumes its training from the checkpoints).

Many GPUs (``degradation``, ``compare``): start the same command under torchrun, e.g.
``torchrun --standalone --nproc_per_node 8 -m skiplib degradation --preset paper --out-dir results``.
The sweep's runs (depths x families x seeds, in a fixed order) are dealt round-robin to the ranks,
each on ``cuda:LOCAL_RANK`` (or the CPU, with gloo); rank 0 gathers them and writes the one file,
whose numbers equal a single process's. Log lines carry ``[rank R/N]``; torchrun's ``--log-dir DIR
--redirects 3`` writes a file per rank instead. Several machines: run the same command on each with
torchrun's own ``--nnodes 2 --node-rank 0|1 --rdzv-backend c10d --rdzv-endpoint HOST:29400
--rdzv-id JOB`` (instead of ``--standalone``). Rank 0 writes the file on its node; each node keeps its
own checkpoints, so an interrupted multi-node sweep resumes when restarted with the same nodes and ranks.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

# Commands that moved to the book tooling (skiplib.tools, which course code never imports).
MOVED = {"bench": "python -m skiplib.tools bench", "gpu-check": "python -m skiplib.tools gpu-check"}


def positive_int(text: str) -> int:
    """argparse type: a positive int, so that ``--epochs 0`` is refused instead of meaning "the profile's"."""
    from skiplib.checks import check_positive_ints

    try:
        value = int(text)
        check_positive_ints(value=value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive int (1, 2, 3, ...), got {text!r}") from None
    return value


def non_negative_int(text: str) -> int:
    """argparse type for seeds: 0, 1, 2, ..."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative int (0, 1, 2, ...), got {text!r}")
    return value


CIFAR_TRAIN_IMAGES = 50_000


def train_subset(text: str) -> int | str:
    """argparse type for ``--train-subset``: a number of CIFAR-10 training images, or ``all``."""
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= CIFAR_TRAIN_IMAGES:
        raise argparse.ArgumentTypeError(
            f"must be a number of training images from 1 to {CIFAR_TRAIN_IMAGES:,}, or 'all', got {text!r}")
    return value


def image_size(text: str) -> int:
    """argparse type for ``--image-size``: CIFAR-10's 32x32 images shrunk (or kept) to 8-32 pixels."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 8 <= value <= 32:
        raise argparse.ArgumentTypeError(f"must be 8 to 32 pixels (CIFAR-10's images are 32x32), got {text!r}")
    return value


def tag(text: str) -> str:
    """argparse type for ``--tag``: it becomes part of a file name."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}", text):
        raise argparse.ArgumentTypeError(
            f"must be 1-40 letters, digits, '.', '_' or '-' (starting with a letter or digit), got {text!r}")
    return text


def int_list(item: Callable[[str], int]) -> type[argparse.Action]:
    """An argparse action for ``nargs="+"`` int lists whose words may also hold comma-separated items
    (``--depths 20 56`` or ``--depths 20,32,44``), each checked by ``item`` (e.g. :func:`positive_int`)."""

    class IntList(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None) -> None:
            try:
                setattr(namespace, self.dest, [item(part) for word in values for part in word.split(",")])
            except argparse.ArgumentTypeError as e:
                raise argparse.ArgumentError(self, str(e)) from None

    return IntList


def _scale_options(p: argparse.ArgumentParser, presets: Sequence[str]) -> None:
    """``degradation``'s full-length options: the paper preset, its schedule, a dry run, torch.compile."""
    p.add_argument("--preset", choices=presets, default=None,
                   help="paper: He et al. 2016's CIFAR-10 recipe (Sec. 4.2) at full length instead of the profile's "
                        "sizes: all 50,000 training images (the paper's Table 6 setting; its 45k/5k split only chose "
                        "hyper-parameters), 32x32, 4-pixel pad + random crop + flip, batch 128, SGD momentum 0.9, "
                        "weight decay 1e-4, lr 0.1 / 10 at 32k and 48k iterations, 64k iterations, depth 110 warmed "
                        "up at lr 0.01 until training error < 80%%; depths 20,32,44,56,110. The profile still picks "
                        "the device. Writes degradation-paper.json")
    p.add_argument("--iterations", type=positive_int, default=None,
                   help="train this many optimiser steps instead of epochs (the preset's: 64000)")
    p.add_argument("--lr-steps", action=int_list(positive_int), nargs="+", default=None,
                   help="divide lr by 10 at these iterations (step schedule; the preset's: 32000 48000)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the schedule and an estimated time (here, measured rate; GPUs, assumed) and stop")
    p.add_argument("--compile", action="store_true", help="train through torch.compile (worth it on a GPU)")


def _run_options(p: argparse.ArgumentParser, *, epochs: bool = True, depths: bool = False,
                 seeds: bool = False) -> None:
    """The options reference-run commands share: profile, epochs (and depths, seeds where the
    experiment has them), a tag for the file name, the output folder."""
    p.add_argument("--profile", choices=["smoke", "cpu", "gpu"], default=None, help="run size (default: $SKIPLIB_PROFILE)")
    if epochs:
        p.add_argument("--epochs", type=positive_int, default=None, help="override the profile's epochs (>= 1)")
    if depths:
        p.add_argument("--depths", action=int_list(positive_int), nargs="+", default=None,
                       help="override the profile's depths, trained in this order (e.g. --depths 20 56 32 44 "
                            "or --depths 20,56,32,44)")
    if seeds:
        p.add_argument("--seeds", action=int_list(non_negative_int), nargs="+", default=None,
                       help="override the profile's seeds (e.g. --seeds 0 1 2 or --seeds 0,1,2)")
    p.add_argument("--tag", type=tag, default=None,
                   help="write <experiment>-<profile>-<tag>.json, so a run with overrides keeps the profile's file")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where to write the JSON (default: the current folder; reference runs go to results/)")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command."""
    args_list = sys.argv[1:] if argv is None else argv
    if args_list and args_list[0] in MOVED:
        print(f"`python -m skiplib {args_list[0]}` is now `{MOVED[args_list[0]]}` (book tooling)", file=sys.stderr)
        return 2
    from skiplib.chapters import ch01_degradation as degradation
    from skiplib.chapters import ch01_paper as paper
    from skiplib.chapters import ch03_highway as highway
    from skiplib.chapters import ch05_densenets as dense_memory
    from skiplib.chapters import ch05_reference as densenet
    from skiplib.chapters import ch07_comparison as compare
    from skiplib.chapters import ch08_why as landscape

    parser = argparse.ArgumentParser(prog="python -m skiplib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("degradation", help="Chapter 1: plain vs residual nets across depths (--preset paper: full length)",
                       epilog="Many GPUs: torchrun --standalone --nproc_per_node N -m skiplib degradation ... deals the runs "
                              "to N processes (one GPU each) and rank 0 writes the file; several machines: torchrun's "
                              "--nnodes, --node-rank and --rdzv-* options (python -m skiplib --help says more).")
    _run_options(p, depths=True, seeds=True)
    p.add_argument("--train-subset", type=train_subset, default=None,
                   help="override the profile's training images: N (a stratified subset) or all (the 50,000)")
    p.add_argument("--image-size", type=image_size, default=None,
                   help="override the profile's image size in pixels (8-32; CIFAR-10's images are 32x32)")
    p.add_argument("--families", nargs="+", choices=degradation.FAMILIES, default=None,
                   help="train only these families (default: both); a net's checkpoint is the same either way")
    _scale_options(p, paper.PRESETS)
    p.set_defaults(func=degradation.main)

    p = sub.add_parser("highway", help="Chapter 3: plain vs highway FC nets across depths (the paper's Fig. 1); "
                                       "--part conv: ResNet vs highway conv net, per seed")
    _run_options(p, seeds=True)
    p.add_argument("--part", choices=["depth", "conv"], default="depth",
                   help="depth (default): the FC depth sweep, writes highway-depth-<profile>.json; conv: ResNet "
                        "vs highway conv net at matched parameters, writes highway-conv-<profile>.json")

    def run_highway(args, p=p):
        if args.part == "depth" and args.seeds is not None:
            p.error("--seeds applies to --part conv only (the depth sweep trains one seed per run)")
        return highway.main(args)

    p.set_defaults(func=run_highway)

    p = sub.add_parser("dense-memory", help="Chapter 5: peak memory and s/step of dense blocks, naive vs memory-efficient")
    dense_memory.add_arguments(p)
    p.set_defaults(func=dense_memory.main)

    p = sub.add_parser("densenet", help="Chapter 5: DenseNet-BC vs ResNet and the connection ablation, per seed")
    _run_options(p, seeds=True)
    p.set_defaults(func=densenet.main)

    p = sub.add_parser("compare", help="Chapter 7: plain/highway/residual/pre-act/dense nets at one parameter budget")
    _run_options(p, depths=True, seeds=True)
    p.set_defaults(func=compare.main)

    p = sub.add_parser("landscape", help="Chapter 8: loss surfaces, lesion curves; --bench: surface points/s")
    p.add_argument("--bench", action="store_true", help="only time a surface in the cpu profile's setting")
    p.add_argument("--points", type=positive_int, default=21, help="grid points per axis for --bench (default 21)")
    p.add_argument("--matched", action="store_true",
                   help="surfaces at matched training loss: plain-d for --epochs, ResNet-d until it reaches the same loss")
    _run_options(p)
    p.set_defaults(func=landscape.main)

    args = parser.parse_args(argv)
    return args.func(args)
