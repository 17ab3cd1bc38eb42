"""``python -m skiplib.tools gpu-check``: run every chapter and reference experiment on one GPU, and report.

Made for a rarely lent GPU with a hard time limit: one command runs

1. two self-checks: CIFAR-10 is found (and decoded once), and ``fit`` interrupted after epoch 1
   resumes correctly on this device;
2. every chapter notebook of the checkout's ``book/`` in a fresh kernel (``SKIPLIB_PROFILE=gpu``,
   or ``smoke`` with ``--scaled-down`` so that the harness itself is tested on a CPU), with a
   last cell appended in memory that prints the kernel's peak CUDA memory;
3. the reference experiments (``python -m skiplib <experiment>``), each in a subprocess;

and writes ``OUT/gpu-check.json`` and ``OUT/gpu-check.md`` (:mod:`skiplib.tools.gpureport`) after
every item, so a run killed from outside still leaves a report. A global ``--budget`` stops new
items from starting (they are recorded as skipped); one failure never stops the rest. The exit
code is 0 only if everything that ran passed. ``results/README.md`` describes the report's fields.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from skiplib.results import REPO_ROOT
from skiplib.tools.gpureport import GiB, provenance, save_report
from skiplib.tools.workload import EXPERIMENTS

MARKER = "SKIPLIB-GPU-CHECK-MEMORY"
# A T4's global memory as CUDA reports it (15,110 MiB: "15 GB", 16 GB less ECC); the CUDA context
# (~0.3-0.5 GiB) comes out of it but is not in the allocator's peak, so it is added.
T4_TOTAL_BYTES = 15_843_721_216
CUDA_CONTEXT_BYTES = GiB // 2
MEMORY_CELL_GRACE_S = 15  # the memory cell may run this long after a notebook's time is up
# Prints the process's peak CUDA memory on one marked line: the last cell appended to each notebook,
# and the end of each experiment's run (the wrapper runs the CLI as ``python -m skiplib`` does, with
# the same sys.argv, so the results' provenance names the real command).
_PRINT_PEAK = f"""\
import json as _json, torch as _torch
_c = _torch.cuda.is_available()
print("{MARKER} " + _json.dumps({{"allocated": _torch.cuda.max_memory_allocated() if _c else None,
    "reserved": _torch.cuda.max_memory_reserved() if _c else None,
    "device": _torch.cuda.get_device_name() if _c else None}}), flush=True)
"""
MEMORY_CELL = "# appended by `python -m skiplib.tools gpu-check`: the kernel's peak CUDA memory\n" + _PRINT_PEAK
EXPERIMENT_WRAPPER = ("import runpy\ntry:\n    runpy.run_module('skiplib', run_name='__main__', alter_sys=True)\n"
                      "finally:\n" + "".join("    " + line + "\n" for line in _PRINT_PEAK.splitlines()))
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def add_arguments(p) -> None:
    p.add_argument("--scaled-down", action="store_true",
                   help="run every size in the smoke profile (tests the harness on a CPU)")
    p.add_argument("--out", type=Path, default=Path("gpu-check"), help="report folder (default: ./gpu-check)")
    p.add_argument("--budget", type=float, default=570.0,
                   help="seconds (from the first item) after which no item starts; a running one is stopped "
                        "(default 570)")
    p.add_argument("--notebook-timeout", type=float, default=300.0, help="seconds per notebook (default 300)")
    p.add_argument("--experiment-timeout", type=float, default=300.0, help="seconds per experiment (default 300)")
    p.add_argument("--chapters", type=int, nargs="+", default=None, help="chapter numbers to run (default: all)")
    p.add_argument("--no-experiments", action="store_true", help="skip the reference experiments")
    p.add_argument("--experiments", nargs="+", choices=EXPERIMENTS, default=None,
                   help="reference experiments to run, in this order (default: all)")
    p.add_argument("--note", default=None,
                   help="recorded in the report, e.g. that other runs shared the GPU (their timings are then not a lone run's)")
    p.add_argument("--no-self-check", action="store_true", help="skip the self-checks (data, resume)")
    p.add_argument("--book", type=Path, default=None,
                   help="folder of chapter notebooks (default: the checkout's book/)")


def find_notebooks(book: Path | None = None, chapters: list[int] | None = None) -> list[Path]:
    """The chapter notebooks ``NN_*.ipynb`` of ``book`` (default: ``book/`` of this checkout)."""
    folder = Path(book) if book is not None else REPO_ROOT / "book"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no notebook folder at {folder}: gpu-check runs the notebooks of a source checkout "
            "(git clone the course and `pip install -e .`), or pass --book DIR")
    found = {int(m.group(1)): p for p in sorted(folder.glob("*.ipynb")) if (m := re.match(r"(\d+)_", p.name))}
    if chapters is None:
        return [found[c] for c in sorted(found)]
    missing = sorted(set(chapters) - set(found))
    if missing:
        raise ValueError(f"no notebook for chapter(s) {missing} in {folder}: found {sorted(found)}")
    return [found[c] for c in chapters]


def _memory_fields(m: dict | None) -> dict:
    allocated, reserved = (m or {}).get("allocated"), (m or {}).get("reserved")
    needed = reserved if reserved is not None else allocated
    return {"peak_gpu_gib": None if allocated is None else round(allocated / GiB, 3),
            "peak_gpu_reserved_gib": None if reserved is None else round(reserved / GiB, 3),
            "fits_t4": None if needed is None else needed + CUDA_CONTEXT_BYTES <= T4_TOTAL_BYTES}


def _parse_marker(text: str) -> dict | None:
    for line in reversed(text.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    return None


def _tail(text: str, lines: int = 12) -> list[str]:
    return [ln.rstrip() for ln in ANSI.sub("", text).splitlines() if ln.strip()][-lines:]


async def _execute(nb, cwd: Path, env: dict, deadline: float) -> tuple[Exception | None, dict | None]:
    """Run every cell but the last (stopping at the first error), then the appended memory cell."""
    from nbclient import NotebookClient

    state = {"deadline": deadline}
    client = NotebookClient(nb, kernel_name="python3", shutdown_kernel="immediate", interrupt_on_timeout=True,
                            timeout_func=lambda cell: max(1, int(state["deadline"] - time.monotonic())),
                            error_on_timeout={"ename": "TimeoutError", "evalue": "the notebook ran out of time",
                                              "traceback": []})
    error = None
    client.reset_execution_trackers()
    async with client.async_setup_kernel(env=env, cwd=str(cwd)):
        try:
            for index, cell in enumerate(nb.cells[:-1]):
                await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
        except Exception as exc:  # noqa: BLE001  (recorded, never raised: the next item must run)
            error = exc
        state["deadline"] = max(state["deadline"], time.monotonic()) + MEMORY_CELL_GRACE_S
        try:
            await client.async_execute_cell(nb.cells[-1], len(nb.cells) - 1)
        except Exception:  # noqa: BLE001  (a dead kernel cannot report its memory)
            pass
    text = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []) if o.get("output_type") == "stream")
    return error, _parse_marker(text)


def run_notebook(path: Path, env: dict, timeout: float, out: Path) -> dict:
    """Execute a working copy of ``path`` with ``env``; the executed copy goes to ``out/notebooks``."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(MEMORY_CELL))
    t0 = time.monotonic()
    try:
        error, memory = asyncio.run(_execute(nb, path.parent, env, t0 + timeout))
    except Exception as exc:  # noqa: BLE001  (the kernel did not start, or died)
        error, memory = exc, None
    item = {"seconds": round(time.monotonic() - t0, 1), **_memory_fields(memory)}
    if error is None:
        item.update(status="pass", error=None, traceback=[])
    else:
        ename = getattr(error, "ename", None) or type(error).__name__
        evalue = ((getattr(error, "evalue", None) or str(error)).strip().splitlines() or [""])[0]  # its first line
        if ename == "TimeoutError":
            evalue = f"stopped after {item['seconds']:.0f} s (time limit {timeout:.0f} s)"
        tb = getattr(error, "traceback", None)
        tb = tb if isinstance(tb, str) else "".join(traceback.format_exception(error))
        item.update(status="fail", error=f"{ename}: {evalue}"[:500], traceback=_tail(tb))
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / "notebooks" / path.name)
    item["log"] = f"notebooks/{path.name}"
    return item


def run_experiment(name: str, env: dict, timeout: float, out: Path) -> dict:
    """``python -m skiplib <name> --profile $SKIPLIB_PROFILE --out-dir OUT/results`` in a subprocess."""
    args = [name, "--profile", env["SKIPLIB_PROFILE"], "--out-dir", str(out / "results")]
    log = out / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-c", EXPERIMENT_WRAPPER, *args], stdout=fh, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only this run and its children
            proc.wait()
            rc = None
    seconds = round(time.monotonic() - t0, 1)
    text = log.read_text(errors="replace")
    item = {"seconds": seconds, **_memory_fields(_parse_marker(text)), "command": "python -m skiplib " + " ".join(args),
            "log": f"logs/{name}.log", "traceback": []}
    reused = len(re.findall(r"^(finished run loaded|resumed) from ", text, re.M))
    if reused:  # the chapters checkpoint the same runs: the experiment picked them up, not retrained
        item["note"] = f"{reused} run(s) taken from the checkpoints of earlier items: seconds are not a full run"
    if rc == 0:
        return {**item, "status": "pass", "error": None}
    if rc is None:
        error = f"TimeoutError: stopped after {seconds:.0f} s (time limit {timeout:.0f} s)"
        return {**item, "status": "fail", "error": error, "traceback": _tail(text)}
    tail = _tail("\n".join(ln for ln in text.splitlines() if not ln.startswith(MARKER)))
    errors = [ln for ln in tail if re.match(r"^[\w.]+(Error|Exception|Interrupt|Exit)\b", ln)]
    error = errors[-1] if errors else f"exit code {rc}" + (f": {tail[-1]}" if tail else "")
    return {**item, "status": "fail", "error": error[:500], "traceback": tail}


def _fields(h: dict) -> dict:
    return {k: v for k, v in h.items() if k not in ("seconds", "lr")}


class _Interrupted(Exception):
    """Stands in for a Colab disconnect in the resume self-check."""


class _StopsInEpoch:
    """``loader``, except that its ``epoch``-th epoch raises after one batch (a disconnect)."""

    def __init__(self, loader, epoch: int) -> None:
        self.loader, self.epoch, self.started = loader, epoch, 0
        self.state_dict, self.load_state_dict = loader.state_dict, loader.load_state_dict

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        self.started += 1
        for i, batch in enumerate(self.loader):
            if self.started == self.epoch and i == 1:
                raise _Interrupted(f"interrupted in epoch {self.epoch}")
            yield batch


def resume_check() -> dict:
    """Train ResNet-20 for 2 epochs uninterrupted, then again interrupted in epoch 2 and resumed
    from the epoch-1 checkpoint in a fresh model and loader; the histories must agree (exactly on
    the CPU, to 1e-3 on CUDA, whose kernels need not be deterministic)."""
    from skiplib.data import DeviceLoader
    from skiplib.models import create_model
    from skiplib.profile import seed_everything
    from skiplib.train import fit

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(320, 3, 16, 16, generator=g), torch.randint(0, 10, (320,), generator=g)
    xt, yt = torch.randn(64, 3, 16, 16, generator=g), torch.randint(0, 10, (64,), generator=g)

    def attempt(seed: int, checkpoint=None, stop: int | None = None):
        seed_everything(seed)
        loader = DeviceLoader(x, y, 64, shuffle=True, augment=True, pad=2, device=device, seed=0)
        test = DeviceLoader(xt, yt, 64, device=device)
        return fit(create_model("resnet20"), loader if stop is None else _StopsInEpoch(loader, stop), test, epochs=2,
                   device=device, checkpoint=checkpoint, progress=False).records

    reference = attempt(0)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "resume.pt"
        try:
            attempt(0, ckpt, stop=2)
            raise RuntimeError("the simulated interruption did not happen")
        except _Interrupted:
            pass
        resumed = attempt(1, ckpt)  # another seed: everything must come from the checkpoint
    tol = 0.0 if device.type == "cpu" else 1e-3
    diff = max((abs(a[k] - b[k]) for a, b in zip(reference, resumed) for k in _fields(a)), default=float("inf"))
    if len(resumed) != 2 or diff > tol * max(1.0, max(abs(v) for r in reference for v in _fields(r).values())):
        raise AssertionError(f"the resumed run differs from the uninterrupted one by {diff:.3g} (device {device})")
    return {"detail": f"on {device}: resumed history matches (max difference {diff:.2g})"}


def data_check(profile: str) -> dict:
    """Find (and on first use decode and cache) CIFAR-10 once, before any chapter needs it: a
    missing copy shows here, and the decoding time is not charged to the first chapter."""
    from skiplib.data import load_cifar10

    sets = [load_cifar10(split, allow_synthetic=profile == "smoke", verbose=False) for split in ("train", "test")]
    return {"detail": f"{sets[0].source}: {len(sets[0].labels):,} training, {len(sets[1].labels):,} test images"}


def run_self_check(check=resume_check) -> dict:
    """Run ``check`` in this process; its dict is the item's ``detail``, an exception its failure."""
    t0 = time.monotonic()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        item = {**check(), "status": "pass", "error": None, "traceback": []}
    except Exception as exc:  # noqa: BLE001  (reported, never raised)
        item = {"status": "fail", "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"[:500],
                "traceback": _tail("".join(traceback.format_exception(exc)))}
    memory = None
    if torch.cuda.is_available():
        memory = {"allocated": torch.cuda.max_memory_allocated(), "reserved": torch.cuda.max_memory_reserved()}
    return {**item, "seconds": round(time.monotonic() - t0, 1), **_memory_fields(memory)}


def main(args) -> int:
    """CLI entry point; returns 0 only if every item that ran passed."""
    profile = "smoke" if args.scaled_down else "gpu"
    notebooks = find_notebooks(args.book, args.chapters)
    out = Path(args.out)
    # one fresh checkpoint folder for the whole run, outside OUT (it comes back from the device):
    # nothing is resumed from an earlier run, and an experiment reuses a chapter's identical runs
    checkpoints = Path(tempfile.mkdtemp(prefix="skiplib-gpu-check-"))
    env = {**os.environ, "SKIPLIB_PROFILE": profile, "SKIPLIB_CHECKPOINTS": str(checkpoints)}
    plan = [] if args.no_self_check else [("data", "self-check", lambda: data_check(profile)),
                                          ("resume", "self-check", resume_check)]
    plan += [(nb.stem, "chapter", nb) for nb in notebooks]
    experiments = [] if args.no_experiments else (args.experiments or EXPERIMENTS)
    plan += [(name, "experiment", name) for name in experiments]
    report = {"schema": 1, "provenance": provenance(args, profile),
              "items": [{"name": name, "kind": kind, "status": "pending"} for name, kind, _ in plan]}
    save_report(report, out)
    start = time.monotonic()
    deadline = start + args.budget
    try:
        for item, (name, kind, what) in zip(report["items"], plan):
            left = deadline - time.monotonic()
            if left <= 0:
                item.update(status="skipped", error="skipped (out of time)", seconds=None)
            else:
                print(f"[gpu-check] {kind} {name} ({left:.0f} s of the budget left)", flush=True)
                if kind == "self-check":
                    item.update(run_self_check(what))
                elif kind == "chapter":
                    item.update(run_notebook(what, env, min(args.notebook_timeout, left), out))
                else:
                    item.update(run_experiment(what, env, min(args.experiment_timeout, left), out))
                print(f"[gpu-check]   {item['status']} in {item['seconds']:.1f} s"
                      + (f": {item['error']}" if item.get("error") else ""), flush=True)
            report["provenance"]["total_seconds"] = round(time.monotonic() - start, 1)
            save_report(report, out)
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)
    report["provenance"]["finished"] = True
    save_report(report, out)
    print(f"[gpu-check] report: {out / 'gpu-check.md'}")
    return 1 if any(i["status"] == "fail" for i in report["items"]) else 0
