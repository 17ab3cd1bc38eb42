"""``python -m skiplib``: the chapters' experiments; the book tooling's commands point to their new home."""

import subprocess
import sys

import pytest

from skiplib.cli import MOVED, main


@pytest.mark.parametrize("command", sorted(MOVED))
def test_moved_commands_say_where_they_went(command, capsys):
    assert main([command]) == 2
    assert f"python -m skiplib.tools {command}" in capsys.readouterr().err


def test_experiment_commands_are_listed_in_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for command in ("degradation", "highway", "dense-memory", "densenet", "compare", "landscape"):
        assert command in out
    assert "gpu-check" not in out.split("positional arguments")[-1]


def test_module_entry_points_run():
    for module in ("skiplib", "skiplib.tools"):
        done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "usage: python -m " + module in done.stdout
