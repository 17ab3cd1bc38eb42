"""The lent GPU's plans (.ci/gpu-lanes*.txt): a GPU call is rare and short, so a lane that would
fail to parse must fail here, on the CPU, before the call is spent on it."""

from __future__ import annotations

import argparse
import importlib
import shlex

import pytest

from skiplib import cli
from skiplib.tools import gpucheck

from _paths import ROOT

LANE_FILES = sorted((ROOT / ".ci").glob("gpu-lanes*.txt"))
# the CLI subcommand -> the module whose main() it reaches
MODULES = {"degradation": "ch01_degradation", "highway": "ch03_highway", "densenet": "ch05_reference",
           "compare": "ch07_comparison", "landscape": "ch08_why"}


def lanes(path):
    """``(kind, name, args)`` of every lane of a lanes file (comments and blank lines skipped)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            kind, name, *args = shlex.split(line)
            out.append((kind, name, args))
    return out


def test_there_are_lane_files():
    assert {p.name for p in LANE_FILES} >= {"gpu-lanes.txt", "gpu-lanes-next.txt"}


@pytest.mark.parametrize("path", LANE_FILES, ids=[p.name for p in LANE_FILES])
def test_every_lane_parses_and_reaches_what_it_names(path, monkeypatch):
    plan = lanes(path)
    assert plan, f"{path.name} has no lanes"
    names = [name for _, name, _ in plan]
    assert len(set(names)) == len(names), f"{path.name}: lane names must be unique (their logs share a folder)"
    assert len(plan) <= 8, "16 cores, two threads a lane: more than 8 lanes oversubscribe the device's CPU"
    for kind, name, args in plan:
        assert kind in ("check", "reference"), (path.name, name, kind)
        if kind == "check":
            parser = argparse.ArgumentParser(prog="gpu-check")
            gpucheck.add_arguments(parser)
            parsed = parser.parse_args(args)
            if parsed.chapters:
                gpucheck.find_notebooks(chapters=parsed.chapters)  # every chapter it names exists
        else:  # what .ci/gpu-check-on-device runs: python -m skiplib ARGS --profile gpu --out-dir refs
            module = importlib.import_module(f"skiplib.chapters.{MODULES[args[0]]}")
            seen = []
            monkeypatch.setattr(module, "main", lambda a, seen=seen: seen.append(a) or 0)
            assert cli.main([*args, "--profile", "gpu", "--out-dir", "refs"]) == 0, (path.name, name)
            assert len(seen) == 1 and seen[0].profile == "gpu", (path.name, name)
