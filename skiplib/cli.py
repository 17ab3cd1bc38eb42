"""The chapters' experiments as a CLI: ``python -m skiplib <command>``.

Benchmarks and the GPU check are book tooling: ``python -m skiplib.tools bench|gpu-check``.

Commands (each reference run writes ``<name>.json`` into ``--out-dir``, default the current folder;
the repository's reference runs are made with ``--out-dir results``). Before training, every reference
run checks that ``--out-dir`` and the checkpoint folder can be written; interrupted with Ctrl-C, it
writes the runs that finished to ``<name>.partial.json`` (marked ``"partial": true``) and stops:

* ``degradation [--profile gpu] [--epochs N] [--depths 20 56 ...] [--families resnet]``: Chapter 1's experiment; writes
  ``degradation-<profile>.json`` with provenance (command, commit, device, data source, date, seconds).
* ``highway [--profile gpu]``: Chapter 3's depth experiment (plain vs highway FC nets, best training
  loss per depth over a learning-rate sweep); writes ``highway-depth-<profile>.json``.
* ``dense-memory [--depths 6 12 24 48]``: Chapter 5's benchmark; peak memory and seconds per
  step of a dense block, naive vs memory-efficient, for several depths.
* ``compare [--profile gpu] [--epochs N] [--depths 8 32] [--seeds 0 1 2]``: Chapter 7; every skip
  family at one parameter budget across depths and seeds; writes ``compare-<profile>.json``.

``--tag T`` (every command that writes a reference run) names the file ``<experiment>-<profile>-T.json``
instead, so a run with overrides (a longer budget, more seeds) sits beside the profile's own.
* ``landscape [--bench] [--profile gpu] [--matched --epochs N]``: Chapter 8; ``--bench`` prints surface points
  per second and the seconds for a 21x21 surface (cpu profile); otherwise writes ``landscape-<profile>.json``;
  ``--matched`` compares the surfaces at matched training loss (``landscape-<profile>-matched.json``).
"""

from __future__ import annotations

import argparse
import re
import sys
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


def tag(text: str) -> str:
    """argparse type for ``--tag``: it becomes part of a file name."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}", text):
        raise argparse.ArgumentTypeError(
            f"must be 1-40 letters, digits, '.', '_' or '-' (starting with a letter or digit), got {text!r}")
    return text


def _run_options(p: argparse.ArgumentParser, *, epochs: bool = True, depths: bool = False,
                 seeds: bool = False) -> None:
    """The options reference-run commands share: profile, epochs (and depths, seeds where the
    experiment has them), a tag for the file name, the output folder."""
    p.add_argument("--profile", choices=["smoke", "cpu", "gpu"], default=None, help="run size (default: $SKIPLIB_PROFILE)")
    if epochs:
        p.add_argument("--epochs", type=positive_int, default=None, help="override the profile's epochs (>= 1)")
    if depths:
        p.add_argument("--depths", type=positive_int, nargs="+", default=None,
                       help="override the profile's depths, trained in this order (e.g. --depths 20 56 32 44)")
    if seeds:
        p.add_argument("--seeds", type=non_negative_int, nargs="+", default=None,
                       help="override the profile's seeds (e.g. --seeds 0 1 2)")
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
    from skiplib.chapters import ch03_highway as highway
    from skiplib.chapters import ch05_densenets as dense_memory
    from skiplib.chapters import ch07_comparison as compare
    from skiplib.chapters import ch08_why as landscape

    parser = argparse.ArgumentParser(prog="python -m skiplib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("degradation", help="Chapter 1: plain vs residual nets across depths")
    _run_options(p, depths=True)
    p.add_argument("--families", nargs="+", choices=degradation.FAMILIES, default=None,
                   help="train only these families (default: both); a net's checkpoint is the same either way")
    p.set_defaults(func=degradation.main)

    p = sub.add_parser("highway", help="Chapter 3: plain vs highway FC nets across depths (the paper's Fig. 1)")
    _run_options(p)
    p.set_defaults(func=highway.main)

    p = sub.add_parser("dense-memory", help="Chapter 5: peak memory and s/step of dense blocks, naive vs memory-efficient")
    dense_memory.add_arguments(p)
    p.set_defaults(func=dense_memory.main)

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
