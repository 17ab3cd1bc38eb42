"""The report of ``python -m skiplib.tools gpu-check``: its provenance, and its JSON and Markdown files.

:mod:`skiplib.tools.gpucheck` runs the items and calls :func:`save_report` after each one;
``results/README.md`` describes the fields.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path

import torch

from skiplib.results import device_name, git_commit

GiB = 2**30


def provenance(args, profile: str) -> dict:
    """The run's provenance: the command that reproduces it, commit, device, versions, budget."""
    cuda = torch.cuda.is_available()
    words = ["python -m skiplib.tools gpu-check", "--scaled-down" * args.scaled_down, f"--out {args.out}",
             f"--budget {args.budget:g} --notebook-timeout {args.notebook_timeout:g}",
             f"--experiment-timeout {args.experiment_timeout:g}", "--chapters " * bool(args.chapters)
             + " ".join(map(str, args.chapters or [])), f"--book {args.book}" * bool(args.book),
             "--no-experiments" * args.no_experiments,
             "--experiments " * bool(getattr(args, "experiments", None)) + " ".join(getattr(args, "experiments", None) or []),
             "--no-self-check" * args.no_self_check]
    return {
        "command": " ".join(filter(None, words)), "commit": git_commit(), "profile": profile,
        "scaled_down": bool(args.scaled_down),
        "device": torch.cuda.get_device_name(0) if cuda else device_name(torch.device("cpu")),
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / GiB, 1) if cuda else None,
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "python": platform.python_version(), "host_cpus": os.cpu_count(), "data_dir": os.environ.get("SKIPLIB_DATA"),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "budget_s": args.budget,
        "total_seconds": 0.0, "finished": False, "note": getattr(args, "note", None),
    }


def render_markdown(report: dict) -> str:
    """The report as a Markdown page: provenance, then one table row per item, then the errors."""
    p, items = report["provenance"], report["items"]
    counts = {s: sum(i["status"] == s for i in items) for s in ("pass", "fail", "skipped", "pending")}
    lines = [f"# gpu-check: {p['device']}", "",
             f"`{p['command']}` — profile `{p['profile']}`{' (scaled down)' if p['scaled_down'] else ''}, "
             f"commit `{p['commit']}`, {p['date']}, torch {p['torch']} (CUDA {p['cuda']}), "
             f"{p['total_seconds']:.0f} s in all{'' if p['finished'] else ' (unfinished: the run was stopped)'}.", "",
             *([f"Note: {p['note']}", ""] if p.get("note") else []),
             ", ".join(f"{n} {s}" for s, n in counts.items() if n), "",
             "| item | kind | status | seconds | peak GPU (GiB) | fits a T4 (15 GB) | error or note |",
             "|---|---|---|---:|---:|---|---|"]
    for i in items:
        fits = {True: "yes", False: "**no**", None: "—"}[i.get("fits_t4")]
        error = " ".join(filter(None, (i.get("error"), i.get("note")))).replace("|", "\\|").replace("\n", " ")
        seconds, peak = (("—" if i.get(k) is None else f"{i[k]:.{d}f}")
                         for k, d in (("seconds", 1), ("peak_gpu_gib", 2)))
        lines.append(f"| {i['name']} | {i['kind']} | {i['status']} | {seconds} | {peak} | {fits} | {error} |")
    for i in items:
        if i.get("traceback"):
            lines += ["", f"## {i['name']}: {i['error']}", "", "```", *i["traceback"], "```"]
    return "\n".join(lines) + "\n"


def save_report(report: dict, out: Path) -> None:
    """Write ``gpu-check.json`` and ``.md``, each replaced whole: a kill never leaves half a report."""
    out.mkdir(parents=True, exist_ok=True)
    texts = {"gpu-check.json": json.dumps(report, indent=1) + "\n", "gpu-check.md": render_markdown(report)}
    for name, text in texts.items():
        (out / f"{name}.tmp").write_text(text)
        os.replace(out / f"{name}.tmp", out / name)


def merge_reports(reports: list[dict], note: str | None = None) -> dict:
    """One report of several gpu-check runs made side by side (lanes sharing one GPU): the first's
    provenance (with ``lanes``, the longest ``total_seconds``, ``finished`` only if all finished and
    ``note``), then every lane's items in lane order."""
    if not reports:
        raise ValueError("merge_reports needs at least one gpu-check report")
    first = reports[0]["provenance"]
    prov = {**first, "lanes": [r["provenance"]["command"] for r in reports],
            "total_seconds": max(r["provenance"]["total_seconds"] for r in reports),
            "finished": all(r["provenance"]["finished"] for r in reports),
            "note": note if note is not None else first.get("note")}
    return {"schema": 1, "provenance": prov, "items": [i for r in reports for i in r["items"]]}
