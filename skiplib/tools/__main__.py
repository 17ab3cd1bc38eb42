"""``python -m skiplib.tools bench|gpu-check``: the book's benchmarks and the GPU check."""

from __future__ import annotations

import argparse
from pathlib import Path

from skiplib.tools import bench, gpucheck


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one tool."""
    parser = argparse.ArgumentParser(prog="python -m skiplib.tools", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("bench", help="notebook seconds (cpu profile) and fit() vs a bare loop")
    p.add_argument("--no-notebooks", action="store_true", help="skip timing the notebooks")
    p.add_argument("--write-run-times", nargs="?", const=bench.RUN_TIMES_FILE, default=None, type=Path,
                   metavar="PATH", help="only write the introduction's run-time table (default: book/_run_times.md)")
    p.add_argument("--notebooks", nargs="*", type=Path, default=None, help="notebooks to time (default: book/*.ipynb)")
    p.add_argument("--steps", type=int, default=60, help="training steps per throughput measurement")
    p.add_argument("--estimates-only", action="store_true",
                   help="only print the per-chapter FLOPs and gpu-profile time estimates as Markdown")
    p.set_defaults(func=bench.main)

    p = sub.add_parser("gpu-check", help="every chapter in the gpu profile + the reference experiments, with a report")
    gpucheck.add_arguments(p)
    p.set_defaults(func=gpucheck.main)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
