"""Benchmarks that print numbers (never pass/fail): ``python -m skiplib.tools bench``.

1. Execution seconds of each chapter notebook in the ``cpu`` profile (the book build's budget
   is 4 minutes each on 2 cores).
2. Training throughput of :func:`skiplib.train.fit` against a bare PyTorch loop on the same
   model, data and optimiser, measured in one run, and their ratio.
3. Per chapter, the training FLOPs of the ``cpu`` and ``gpu`` profiles
   (:mod:`skiplib.tools.workload`) and the ``gpu`` profile's estimated minutes on this CPU
   (from a measured training rate), a T4 and an H200 (from stated assumptions), and, when a
   ``gpu-check`` report of a GPU run ships in ``results/``, 10x its measured H200 seconds as the
   T4 estimate. ``--estimates-only`` prints just this table, as Markdown.
4. Training images/s of ResNet-20/56/110 train steps (32x32, batch 128) measured on this CPU, and
   the estimated time of Chapter 1's paper preset (He et al.'s 64k iterations) per net on this CPU
   and on one GPU (from counted FLOPs: :mod:`skiplib.chapters.ch01_paper`).
"""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from skiplib.analysis.families import count_flops
from skiplib.chapters import ch01_degradation as degradation
from skiplib.chapters import ch01_paper as paper
from skiplib.data import DeviceLoader, cifar10_loaders
from skiplib.models import create_model
from skiplib.profile import get_profile, seed_everything
from skiplib.results import REPO_ROOT, load_result
from skiplib.tools import workload
from skiplib.train import fit


def time_notebook(path: Path, profile: str = "cpu", timeout: int = 1800) -> float:
    """Execute a notebook (in a fresh kernel, ``SKIPLIB_PROFILE=profile``) and return its seconds."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("SKIPLIB_PROFILE")
    os.environ["SKIPLIB_PROFILE"] = profile  # the kernel inherits our environment
    try:
        t0 = time.perf_counter()
        NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
        return time.perf_counter() - t0
    finally:
        if old is None:
            os.environ.pop("SKIPLIB_PROFILE", None)
        else:
            os.environ["SKIPLIB_PROFILE"] = old


def _bare_loop(model, loader, steps: int, lr: float, device) -> float:
    """The minimal loop fit() must not be much slower than (channels_last, like fit's
    default on CPU and CUDA; no AMP): returns images per second."""
    model.to(device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    seen, t0, step = 0, time.perf_counter(), 0
    while step < steps:
        for x, y in loader:
            x = x.contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += y.numel()
            step += 1
            if step == steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def fit_vs_bare(steps: int = 60, model_name: str = "resnet20") -> dict:
    """Images/s of fit() and of a bare loop on the same model and batches, and fit/bare."""
    profile = get_profile()
    cfg = degradation.config(profile)
    train_loader, _, info = cifar10_loaders(
        train_subset=steps * cfg["batch_size"], test_subset=None if profile.name == "gpu" else 256,
        image_size=cfg["image_size"], batch_size=cfg["batch_size"], device=profile.device, seed=0,
        allow_synthetic=True, verbose=False,
    )
    epochs = max(1, steps // len(train_loader))
    seed_everything(0)
    base = create_model(model_name).to(profile.device)
    state = train_loader.state_dict()
    results = {}
    # alternate twice and keep the best of each, so a background blip does not decide the ratio
    for _ in range(2):
        model = copy.deepcopy(base)
        train_loader.load_state_dict(state)
        t0 = time.perf_counter()
        fit(model, train_loader, epochs=epochs, device=profile.device, progress=False, amp=False, channels_last=True)
        fit_ips = epochs * train_loader.num_samples / (time.perf_counter() - t0)
        model = copy.deepcopy(base)
        train_loader.load_state_dict(state)
        bare_ips = _bare_loop(model, train_loader, epochs * len(train_loader), cfg["lr"], profile.device)
        results["fit"] = max(results.get("fit", 0.0), fit_ips)
        results["bare"] = max(results.get("bare", 0.0), bare_ips)
    results.update(ratio=results["fit"] / results["bare"], model=model_name, image_size=cfg["image_size"],
                   batch_size=cfg["batch_size"], device=str(profile.device), data=info["source"])
    return results


def cpu_training_rate(steps: int = 6, batch: int = 128, model_name: str = "resnet20") -> dict:
    """Counted training FLOP/s (3x forward per image) of fit() on this CPU: a CIFAR ResNet at
    32x32 on random data, after a short warm-up (oneDNN prepares its kernels on first use)."""
    cpu = torch.device("cpu")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(steps * batch, 3, 32, 32, generator=g), torch.randint(0, 10, (steps * batch,), generator=g)
    seed_everything(0)
    model = create_model(model_name)
    fit(model, DeviceLoader(x[:2 * batch], y[:2 * batch], batch, device=cpu), epochs=1, device=cpu, progress=False)
    loader = DeviceLoader(x, y, batch, shuffle=True, augment=True, device=cpu, seed=0)
    t0 = time.perf_counter()
    fit(model, loader, epochs=1, device=cpu, progress=False)
    seconds = time.perf_counter() - t0
    flops = 3 * count_flops(model, (3, 32, 32)) * steps * batch
    return {"flops_per_s": flops / seconds, "img_per_s": steps * batch / seconds, "model": model_name,
            "batch": batch, "threads": torch.get_num_threads()}


PAPER_NETS = ("resnet20", "resnet56", "resnet110")


def paper_preset_lines(nets: tuple[str, ...] = PAPER_NETS, steps: int = 3) -> list[str]:
    """Measured training images/s of each net on this CPU, and the paper preset's estimated hours per
    net (one run of 64k iterations) on this CPU and on one T4 / H200."""
    cfg = paper.paper_config(get_profile("gpu", device="cpu"))
    lines = [f"training steps on this CPU ({torch.get_num_threads()} threads, 32x32, batch {cfg['batch_size']}, "
             f"fastest of {steps} steps after a warm-up), and the paper preset's time per net ({cfg['iterations']} "
             "iterations + a test pass per epoch): ESTIMATED from counted FLOPs, the CPU column at the rate measured "
             f"for that net, the GPU columns at an assumed {paper.T4_FLOPS / 1e12:g} TFLOP/s (T4) and "
             f"{paper.H200_SPEEDUP:g}x that (H200), plus per-layer host overhead",
             f"  {'net':>9} {'img/s':>8} {'GFLOP/s':>8} {'CPU, est.':>10} {'T4, est.':>10} {'H200, est.':>10}"]
    for name in nets:
        rate = paper.measure_rate(32, cfg["batch_size"], steps, "cpu", name=name)
        fwd, _ = paper.net_stats(name, 32)
        e = paper.estimate(cfg, [name], rate)[name]
        lines.append(f"  {name:>9} {rate / (3 * fwd):>8.0f} {rate / 1e9:>8.1f} {e['here'] / 3600:>8.1f} h "
                     f"{e['t4'] / 3600:>8.2f} h {e['h200'] / 3600:>8.2f} h")
    return lines


def _chapter_of(name: str) -> int | None:
    head = name.split("_", 1)[0]
    return int(head) if head.isdigit() else None


def measured_gpu_seconds(report: dict | None) -> tuple[dict, str | None]:
    """``{chapter number or experiment name: seconds}`` of the items that passed in a gpu-check
    report of the full ``gpu`` profile (not ``--scaled-down``, and without a ``note`` such as that
    other processes shared the GPU), and the device it ran on."""
    if not report or report.get("provenance", {}).get("scaled_down", True):
        return {}, None
    if report["provenance"].get("note"):  # e.g. lanes sharing one GPU: its seconds are upper bounds, not timings
        return {}, None
    seconds = {}
    for item in report.get("items", []):
        if item.get("status") == "pass" and not item.get("note"):
            key = _chapter_of(item["name"]) if item["kind"] == "chapter" else item["name"]
            seconds[key] = item["seconds"]
    return seconds, report["provenance"].get("device")


def estimate_rows(cpu_rate: float, measured_cpu: dict | None = None, gpu_report: dict | None = None) -> list[dict]:
    """One row per chapter and per reference experiment: FLOPs of both profiles and estimated
    seconds of the ``gpu`` profile (this CPU, T4 and H200 models, 10x a measured H200 run)."""
    cpu, gpu = get_profile("cpu", device="cpu"), get_profile("gpu", device="cpu")
    h200, _ = measured_gpu_seconds(gpu_report)
    entries = [(f"Chapter {n}", n, fn) for n, fn in workload.CHAPTERS.items()]
    entries += [(f"`{e}` experiment", e, lambda p, e=e: workload.experiment_jobs(e, p)) for e in workload.EXPERIMENTS]
    rows = []
    for label, key, jobs_of in entries:
        c, g = workload.summary(jobs_of(cpu)), workload.summary(jobs_of(gpu))
        row = {"item": label, "cpu_flops": c["flops"], "gpu_flops": g["flops"], "gpu_on_cpu_s": g["flops"] / cpu_rate,
               "t4_s": g["t4_s"], "h200_s": g["h200_s"], "cpu_measured_s": (measured_cpu or {}).get(key),
               "t4_from_h200_s": 10 * h200[key] if key in h200 else None}
        if row["cpu_measured_s"] is not None:
            row["gpu_on_cpu_scaled_s"] = row["cpu_measured_s"] * g["flops"] / c["flops"]
        rows.append(row)
    return rows


def _minutes(s: float | None) -> str:
    return "—" if s is None else f"{s / 60:,.1f}"


def estimate_table(rows: list[dict], rate: dict, gpu_report: dict | None = None) -> str:
    """The estimates as a Markdown table with the assumptions under it."""
    _, device = measured_gpu_seconds(gpu_report)
    lines = ["| item | TFLOP, `cpu` | TFLOP, `gpu` | `cpu` profile, measured (min) | `gpu` profile on this CPU (min) "
             "| T4, estimated (min) | H200, estimated (min) | T4 = 10 × H200 measured (min) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        on_cpu = _minutes(r["gpu_on_cpu_s"]) + (f" ({_minutes(r['gpu_on_cpu_scaled_s'])} scaled from measured)"
                                               if "gpu_on_cpu_scaled_s" in r else "")
        lines.append(f"| {r['item']} | {r['cpu_flops'] / 1e12:,.0f} | {r['gpu_flops'] / 1e12:,.0f} "
                     f"| {_minutes(r['cpu_measured_s'])} | {on_cpu} | {_minutes(r['t4_s'])} | {_minutes(r['h200_s'])} "
                     f"| {_minutes(r['t4_from_h200_s'])} |")
    chapters = [r for r in rows if r["item"].startswith("Chapter")]
    lines.append(f"| all chapters | {sum(r['cpu_flops'] for r in chapters) / 1e12:,.0f} "
                 f"| {sum(r['gpu_flops'] for r in chapters) / 1e12:,.0f} | | "
                 f"{_minutes(sum(r['gpu_on_cpu_s'] for r in chapters))} | {_minutes(sum(r['t4_s'] for r in chapters))} "
                 f"| {_minutes(sum(r['h200_s'] for r in chapters))} | |")
    lines.append(f"| gpu-check (chapters + experiments) | | | | | | {_minutes(sum(r['h200_s'] for r in rows))} | |")
    lines += ["", f"This CPU trains at {rate['flops_per_s'] / 1e9:.0f} GFLOP/s ({rate['model']} at 32×32, batch "
              f"{rate['batch']}, {rate['threads']} threads, {rate['img_per_s']:.0f} img/s), measured by a short fit(). "
              "FLOPs count 2 per multiply-add of conv and linear layers, 3× forward per trained image, 1× per scored "
              f"one. T4 and H200 columns are estimates, not measurements: a T4 is assumed to sustain "
              f"{workload.T4_FLOPS / 1e12:g} TFLOP/s on these small nets, an H200 {workload.H200_SPEEDUP:g}× that, and "
              f"both pay about {workload.TRAIN_OVERHEAD_S * 1e6:.0f} µs of host overhead per layer per training step. "
              + (f"The last column is 10 × the seconds a gpu-check run measured on {device} (DESIGN: a T4 is "
                 "about 10× slower than an H200)." if device else
                 "No gpu-check report of a GPU run ships in `results/` yet, so the last column is empty.")]
    return "\n".join(lines)


RUN_TIMES_FILE = REPO_ROOT / "book" / "_run_times.md"


def _measured_sentence(gpu_report: dict | None, device: str | None) -> str:
    """The run-time table's last sentence: where its last column comes from, or why it is empty."""
    if device:
        return f"The last column is 10 × the seconds `make gpu-check` measured on {device}."
    prov = (gpu_report or {}).get("provenance", {})
    if prov.get("note") and not prov.get("scaled_down", True):
        return (f"The GPU run stored in `results/gpu-check.json` ({prov.get('device')}) is not a timing: "
                f"{prov['note']}. The last column fills in from a lone `make gpu-check` run.")
    return ("No chapter has been timed on a GPU yet: the last column fills in when a "
            "`make gpu-check` report of a GPU run is stored in `results/`.")


def run_times_table(gpu_report: dict | None = None) -> str:
    """The run-time table the book's introduction includes (``book/_run_times.md``, made by
    ``python -m skiplib.tools bench --write-run-times``): per chapter, the ``gpu`` profile's counted
    training work and its estimated minutes on a Colab T4 and an H200. Nothing in it is measured
    on this machine, so it is the same wherever it is made (a test compares the committed file);
    when a gpu-check report of a GPU run ships, 10x its measured seconds stand beside the estimate."""
    gpu = get_profile("gpu", device="cpu")
    h200, device = measured_gpu_seconds(gpu_report)
    stems = {_chapter_of(p.stem): p.stem for p in (REPO_ROOT / "book").glob("[0-9][0-9]_*.ipynb")}
    lines = ["| chapter | training work, `gpu` profile (TFLOP) | Colab T4, estimated (min) "
             "| H200, estimated (min) | T4 from a measured H200 run (min) |",
             "|---|---:|---:|---:|---:|"]
    for n, jobs_of in workload.CHAPTERS.items():
        s = workload.summary(jobs_of(gpu))
        measured = _minutes(10 * h200[n]) if n in h200 else "—"
        lines.append(f"| {{doc}}`{stems[n]}` | {s['flops'] / 1e12:,.0f} | {_minutes(s['t4_s'])} "
                     f"| {_minutes(s['h200_s'])} | {measured} |")
    lines += ["", "The estimates count each chapter's training FLOPs in the `gpu` profile "
              "(`skiplib.tools.workload`) and assume a T4 sustains "
              f"{workload.T4_FLOPS / 1e12:g} TFLOP/s on these small networks, an H200 "
              f"{workload.H200_SPEEDUP:g}× that, both with about {workload.TRAIN_OVERHEAD_S * 1e6:.0f} µs of "
              "host overhead per layer and training step. "
              + _measured_sentence(gpu_report, device)]
    return "\n".join(lines) + "\n"


def main(args) -> int:
    """CLI entry point."""
    if args.write_run_times is not None:
        path = Path(args.write_run_times)
        path.write_text(run_times_table(load_result("gpu-check")), encoding="utf-8")
        print(f"wrote {path}")
        return 0
    measured: dict = {}
    if not args.estimates_only:
        if not args.no_notebooks:
            paths = args.notebooks or sorted((REPO_ROOT / "book").glob("*.ipynb"))
            print("notebook seconds, cpu profile")
            for path in paths:
                seconds = time_notebook(Path(path))
                measured[_chapter_of(Path(path).name)] = seconds
                print(f"  {path.name:<40} {seconds:7.1f} s", flush=True)
        r = fit_vs_bare(steps=args.steps)
        print(f"fit() vs bare loop, {r['model']} at {r['image_size']}x{r['image_size']}, batch {r['batch_size']}, "
              f"{r['device']}, {r['data']}")
        print(f"  fit: {r['fit']:.0f} img/s   bare loop: {r['bare']:.0f} img/s   ratio fit/bare: {r['ratio']:.3f}")
        print()
        print("\n".join(paper_preset_lines()))
        print()
    rate = cpu_training_rate()
    report = load_result("gpu-check")
    print(estimate_table(estimate_rows(rate["flops_per_s"], measured, report), rate, report))
    return 0
