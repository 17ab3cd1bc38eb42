"""Reference runs and their provenance: every result JSON says how it was made.

The reference runs live in the repository's top-level ``results/`` folder, which installs as
the package data of ``skiplib.reference`` (see ``pyproject.toml``), so :func:`load_result`
reads them through ``importlib.resources`` from a wheel (Colab) or an editable checkout
alike. New runs are written where the user says (:func:`save_result`, the CLI's
``--out-dir``, default the current folder), never into the installed package.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import torch

import skiplib
from skiplib.train.checkpoints import checkpoint_dir, writable_dir
from skiplib.train.distributed import World

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

# The checkout this file sits in, when it is one (git_commit, bench's default notebooks);
# for an installed skiplib it is just a folder above site-packages.
REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = Path(skiplib.__file__).resolve().parent

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
PARTIAL = ".partial"  # file-name suffix of an interrupted run's results
_PROFILES = ("smoke", "cpu", "gpu")
# Result-name prefix -> the ``python -m skiplib`` subcommand whose ``--profile P`` run writes
# ``<prefix>-P.json`` (each experiment's main() calls save_result(f"<prefix>-{profile.name}")).
_MADE_BY = {"degradation": "degradation", "highway-depth": "highway", "highway-conv": "highway --part conv",
            "compare": "compare", "landscape": "landscape",
            "densenet": "densenet"}


def git_commit() -> str:
    """The checkout's commit, with ``-dirty`` if tracked files changed; ``unknown`` outside git.

    Only skiplib's own checkout counts: an installed skiplib (whose folder may sit inside some
    other git repository, e.g. a virtual environment in a project) reports ``unknown``.
    """
    if not (REPO_ROOT / ".git").exists() or not (REPO_ROOT / "pyproject.toml").is_file():
        return "unknown"
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def device_name(device: torch.device) -> str:
    """A human-readable name of the device a run used."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"{platform.processor() or platform.machine()} CPU, {threads} thread{'' if threads == 1 else 's'}"


def device_label(device: str) -> str:
    """A stored device name as a caption shows it: files written before :func:`device_name` learnt
    the singular say "1 threads"; the file keeps what it recorded, the caption reads "1 thread"."""
    return re.sub(r"\b1 threads\b", "1 thread", device)


def provenance(device: torch.device, data_source: str, seconds: float, profile: str,
               commit: str | None = None, world_size: int = 1) -> dict:
    """Command, commit, device, data source, date, seconds and versions of a run. Pass ``commit`` as
    read when the run *started* (the checkout may change while a long run trains); default: now.
    ``world_size``: how many processes (torchrun ranks, each on its own ``device``) shared the runs."""
    from_cli = sys.argv and sys.argv[0].endswith("__main__.py")
    return {
        "command": " ".join(["python -m skiplib"] + sys.argv[1:]) if from_cli else " ".join(sys.argv),
        "commit": commit if commit is not None else git_commit(),
        "device": device_name(device),
        "data_source": data_source,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "profile": profile,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host_cpus": os.cpu_count(),
        "world_size": world_size,
    }


def _check_name(name: str) -> str:
    """``name`` if it is a plain file stem such as ``degradation-gpu``; ValueError otherwise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.endswith(".json"):
        raise ValueError(f"result name {name!r} is not a plain file stem such as 'degradation-gpu' "
                         "(letters, digits, '-', '_', '.'; no folder, no '.json')")
    return name


def _reference_dir() -> Traversable | None:
    """The shipped reference runs: the package data of ``skiplib.reference``.

    Where that package is not importable (a checkout put on ``sys.path`` by hand, or an editable
    install made before ``skiplib.reference`` existed) the checkout's ``results/`` folder, which
    is the same package's source; None if there is neither.
    """
    try:
        return resources.files("skiplib.reference")
    except ModuleNotFoundError:
        fallback = REPO_ROOT / "results"
        return fallback if (fallback / "__init__.py").is_file() else None


def available_results() -> list[str]:
    """Names (file stems) of the reference runs shipped with this skiplib, sorted."""
    ref = _reference_dir()
    if ref is None:
        return []
    return sorted(p.name[: -len(".json")] for p in ref.iterdir()
                  if p.name.endswith(".json") and not p.name.endswith(PARTIAL + ".json") and p.is_file())


def load_result(name: str, directory: str | os.PathLike | None = None) -> dict | None:
    """The reference run ``<name>.json``, or None if there is none.

    With ``directory``, read ``directory/<name>.json``; otherwise the run shipped with skiplib
    (``results/`` in the repository, installed as ``skiplib.reference``). When it is None,
    :func:`missing_result_message` says so and how to make one.
    """
    _check_name(name)
    base = Path(directory) if directory is not None else _reference_dir()
    if base is None:
        return None
    path = base / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def result_command(name: str) -> str | None:
    """The ``python -m skiplib`` command that writes ``results/<name>.json``; None if no command does."""
    _check_name(name)
    for prefix, command in _MADE_BY.items():
        profile = name[len(prefix) + 1:] if name.startswith(prefix + "-") else None
        if profile in _PROFILES:
            return f"python -m skiplib {command} --profile {profile} --out-dir results"
    if name == "degradation-paper":  # He et al.'s full schedule (skiplib.chapters.ch01_paper)
        return "python -m skiplib degradation --preset paper --out-dir results"
    device = name[len("dense-memory-"):] if name.startswith("dense-memory-") else None
    if device in ("cpu", "cuda"):
        return f"python -m skiplib dense-memory --device {device} --save --out-dir results"
    return None


def _tagged_command(name: str) -> str | None:
    """For a tagged run ``<prefix>-<profile>-<tag>`` (``--tag``: a longer run beside the profile's own),
    the command that makes such runs, without the settings that made this one; None otherwise."""
    for prefix, command in _MADE_BY.items():
        profile, _, tag = name[len(prefix) + 1:].partition("-") if name.startswith(prefix + "-") else ("", "", "")
        if profile in _PROFILES and tag:
            return f"python -m skiplib {command} --profile {profile} --tag {tag}"
    return None


def missing_result_message(name: str) -> str:
    """What a notebook prints when :func:`load_result` gives None: what is missing, how to make it."""
    _check_name(name)
    # no absolute path: the message also appears in the website's prose
    text = (f"No reference run `{name}` is shipped with skiplib {skiplib.__version__} (no `{name}.json` in the "
            "repository's `results/` folder, which installs as `skiplib.reference`).")
    command = result_command(name)
    tagged = _tagged_command(name)
    if command is None and tagged is not None:
        return text + (f" It is a longer run of `{tagged}` (with the settings `results/README.md` "
                       "lists for it).")
    if command is None:
        return text + f" No `python -m skiplib` command makes `{name}` yet."
    on = " on a GPU" if name.endswith(("-gpu", "-cuda", "-paper")) else ""
    return text + f" To make one, run `{command}`{on}."


def _short_commit(commit: str) -> str:
    """``commit 0123456789ab``, saying so when the tree had uncommitted changes (``-dirty``)."""
    dirty = " with uncommitted changes" if commit.endswith("-dirty") else ""
    return f"commit {commit.removesuffix('-dirty')[:12]}{dirty}"


def describe_provenance(prov: Mapping) -> str:
    """One line for a caption: profile, device, data, date, minutes and commit of a run, as far as
    its provenance (:func:`provenance`) records them."""
    parts = [f"{prov['profile']} profile" if prov.get("profile") else None, device_label(prov.get("device") or ""),
             prov.get("data_source"), str(prov["date"])[:10] if prov.get("date") else None,
             f"{prov['seconds'] / 60:.0f} min" if isinstance(prov.get("seconds"), (int, float)) else None,
             _short_commit(str(prov["commit"])) if prov.get("commit") else None]
    return ", ".join(p for p in parts if p)


def reference_run(name: str) -> tuple[dict | None, str]:
    """``(result, note)`` for the reference run ``name`` shipped with skiplib, as a chapter shows it
    beside its live run: the result and a one-line caption of where it came from, or ``None`` and
    :func:`missing_result_message` (what is missing and how to make it). Plotted by
    :func:`skiplib.plots.show_reference` (Chapters 1, 7, 8); Chapter 5 overlays it on its own figure."""
    result = load_result(name)
    if result is None:
        return None, missing_result_message(name)
    partial = " (partial: stopped before every run finished)" if result.get("partial") else ""
    return result, f"Reference run {name}{partial}: {describe_provenance(result.get('provenance', {}))}"


def _inside_installation(path: Path) -> bool:
    """True if ``path`` is inside the skiplib package or any site-packages/dist-packages folder."""
    return path.is_relative_to(PACKAGE_DIR) or any(part in ("site-packages", "dist-packages") for part in path.parts)


def _result_dir(directory: str | os.PathLike | None, what: str) -> Path:
    """``directory`` (default: the current folder), resolved; refused inside an installed package."""
    directory = Path(directory if directory is not None else os.getcwd()).expanduser().resolve()
    if _inside_installation(directory):
        raise ValueError(f"refusing to write {what} into {directory}: that is inside an installed package "
                         "(skiplib or site-packages). Pass --out-dir (or directory=) with a folder of your own, "
                         "e.g. --out-dir results in a skiplib checkout.")
    return directory


def check_outputs(directory: str | os.PathLike | None, *, checkpoints: bool = True) -> Path:
    """Before a CLI command trains for minutes: the folder its result goes to (``--out-dir``) and,
    with ``checkpoints``, the checkpoint folder must take a file; a ValueError saying which folder
    and how to fix it otherwise, so a finished run is never lost at the last step. Returns the
    result folder."""
    out = writable_dir(_result_dir(directory, "the results"), "the output folder (--out-dir)",
                       "pass --out-dir with a folder you can write")
    if checkpoints:
        checkpoint_dir()  # refuses an unwritable $SKIPLIB_CHECKPOINTS; moves off a read-only data folder
    return out


def save_result(name: str, payload: dict, directory: str | os.PathLike | None = None) -> Path:
    """Write ``<directory>/<name>.json`` (pretty, stable key order) atomically; return its path.
    A leftover ``<name>.partial.json`` of an interrupted run (:func:`save_partial`) is removed.

    ``directory`` defaults to the current folder. Writing inside the installed package (or any
    site-packages) is refused: reference runs are made in a checkout, into its ``results/``.
    """
    _check_name(name)
    directory = _result_dir(directory, f"{name}.json")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    tmp = directory / f".{name}.json.{os.getpid()}.tmp"
    try:
        tmp.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if not name.endswith(PARTIAL):
        (directory / f"{name}{PARTIAL}.json").unlink(missing_ok=True)  # the whole run supersedes it
    return path


def save_partial(name: str, payload: dict, directory: str | os.PathLike | None = None) -> Path:
    """What an interrupted (Ctrl-C) CLI run calls before re-raising: write the parts that finished to
    ``<name>.partial.json``, marked ``"partial": true``. Its own file, so a complete reference run of
    the same name is never overwritten by a partial one; the next complete run removes it."""
    path = save_result(name + PARTIAL, {**payload, "partial": True}, directory)
    print(f"interrupted: wrote what finished so far to {path} (marked partial); the same command resumes "
          "from the checkpoints", file=sys.stderr)
    return path


def load_partial(name: str, directory: str | os.PathLike | None) -> dict | None:
    """What an interrupted run of ``name`` saved (``<directory>/<name>.partial.json``, see
    :func:`save_partial`), or None; the next run of the same command skips the runs it holds."""
    return load_result(name + PARTIAL, _result_dir(directory, f"{name}{PARTIAL}.json"))


def reusable_partial(previous: dict | None, config: dict, data_source: str) -> dict | None:
    """``previous`` (a :func:`load_partial` result) when it was made with ``config`` (compared as
    JSON) on ``data_source``, so its finished runs can stand in for training them again; else None,
    with a note saying why it is not used."""
    if previous is None:
        return None
    why = None
    if previous.get("config") != json.loads(json.dumps(config, sort_keys=True, default=str)):
        why = "its settings differ from this run's"
    elif previous.get("provenance", {}).get("data_source") != data_source:
        why = f"it was trained on {previous.get('provenance', {}).get('data_source')!r}, not {data_source!r}"
    if why:
        print(f"note: not resuming from the partial results of an earlier run: {why}", file=sys.stderr)
        return None
    return previous


def run_and_save(name: str, run: Callable[[dict], dict], body: Callable[[dict], dict], *, device: torch.device,
                 profile: str, out_dir: str | os.PathLike | None, world: World | None = None) -> tuple[dict, Path | None]:
    """What every reference-run command does around its training (``python -m skiplib degradation``,
    ``compare``, ``landscape``): check that ``out_dir`` and the checkpoint folder take files *before*
    minutes of training; ``out = run(partial)``, where ``run`` fills the dict ``partial`` as pieces
    finish; on Ctrl-C write what finished to ``<name>.partial.json`` (:func:`save_partial`) and re-raise;
    otherwise write ``<name>.json``. ``body(out)`` (applied to ``partial`` on Ctrl-C) gives the JSON
    payload; the provenance is added here, with the data source from ``out["info"]["source"]`` and the
    seconds from ``out["seconds"]`` (on Ctrl-C: those elapsed). Returns ``(out, path)``.

    Under torchrun (``world`` of several ranks) ``run`` gathers every rank's runs to rank 0 itself;
    only rank 0 writes (the result and, on Ctrl-C, the partial file of its own finished runs), the
    provenance records the world size, and the other ranks get ``(out, None)``."""
    world = world or World()
    check_outputs(out_dir)  # before minutes of training, not after
    partial, t0 = {}, time.perf_counter()
    commit = git_commit()  # the code that trains is the code at the start, whatever the checkout becomes

    def payload(out: dict, seconds: float) -> dict:
        source = out.get("info", {}).get("source", "not loaded yet")
        return {**body(out), "provenance": provenance(device, source, seconds, profile, commit, world.size)}

    try:
        out = run(partial)
    except KeyboardInterrupt:
        if world.main:
            save_partial(name, payload(partial, time.perf_counter() - t0), out_dir)
        raise
    if not world.main:
        return out, None
    return out, save_result(name, payload(out, out["seconds"]), out_dir)
