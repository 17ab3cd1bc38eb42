"""Chapter 5 (DenseNets): the run sizes the notebook uses, and the ``dense-memory`` command
(``python -m skiplib dense-memory``): peak memory and seconds per step of a dense block,
naive vs memory-efficient, measured by :mod:`skiplib.analysis.memory`.
"""

from __future__ import annotations

import argparse
import math

import torch

from skiplib.analysis.memory import block_memory_curve, growth_exponent
from skiplib.profile import Profile


def config(profile: Profile) -> dict:
    """Sizes for Chapter 5. ``cpu``: DenseNet-BC-40 (k = 12) against ResNet-20 for 6 epochs on 5k
    CIFAR-10 images at 16x16 (the trained DenseNet also gives the feature-reuse heatmap), and
    dense blocks of 6-48 layers for the memory curves; the notebook took 131 s on 2 cores, the
    DenseNet's training most of it. ``smoke``: the same pipeline, tiny. ``gpu`` (sized for a
    Colab T4, see ``skiplib.tools.workload``): DenseNet-BC-100 against ResNet-110 on 15k
    CIFAR-10 images at 32x32."""
    recipe = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "schedule": "onecycle", "batch_size": 64, "seed": 0}
    sizes = profile.choose(
        smoke={"dense_depth": 16, "resnet": "resnet20", "image_size": 16, "train_subset": 256, "test_subset": 128,
               "epochs": 1, "mem_depths": [3, 6, 12], "mem_batch": 2, "mem_image_size": 8, "time_steps": 1,
               "tv_image_size": 64, "download_weights": False},
        cpu={"dense_depth": 40, "resnet": "resnet20", "image_size": 16, "train_subset": 5_000, "test_subset": 1_000,
             "epochs": 6, "mem_depths": [6, 12, 24, 48], "mem_batch": 8, "mem_image_size": 16, "time_steps": 2,
             "tv_image_size": 224, "download_weights": True},
        gpu={"dense_depth": 100, "resnet": "resnet110", "image_size": 32, "train_subset": 15_000, "test_subset": 5_000,
             "epochs": 6, "mem_depths": [6, 12, 24, 48, 96], "mem_batch": 8, "mem_image_size": 32, "time_steps": 5,
             "tv_image_size": 224, "download_weights": True},
    )
    return {**recipe, **sizes, "growth_rate": 12, "profile": profile.name}



def main(args: argparse.Namespace) -> int:
    """Print peak memory and seconds per step, naive vs memory-efficient, for several depths."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.save:
        from skiplib.results import check_outputs

        check_outputs(args.out_dir, checkpoints=False)  # before the measurement, not after
    rows = block_memory_curve(args.depths, growth_rate=args.growth_rate, in_channels=2 * args.growth_rate,
                              batch=args.batch, image_size=args.image_size, steps=args.steps, device=device)
    print(f"Dense block (bottleneck, k={args.growth_rate}, k0={2 * args.growth_rate}), batch {args.batch} at "
          f"{args.image_size}x{args.image_size} on {device}, {torch.get_num_threads()} threads.\n"
          "peak = tensor memory allocated during one forward+backward (params and input excluded)")
    header = f"{'layers':>6} {'mode':>17} {'after fwd MiB':>13} {'peak MiB':>9}"
    header += " cuda peak MiB" if device.type == "cuda" else ""
    print(header + f" {'s/step':>8}")
    for r in rows:
        line = f"{r['depth']:>6} {r['mode']:>17} {r['forward_mib']:>13.1f} {r['peak_mib']:>9.1f}"
        line += f" {r['cuda_peak_mib']:>13.1f}" if "cuda_peak_mib" in r else ""
        print(line + f" {r.get('seconds', math.nan):>8.3f}")
    for mode in ("naive", "memory-efficient"):
        sel = [r for r in rows if r["mode"] == mode]
        top = sel[-2:] if len(sel) >= 2 else sel
        print(f"{mode:>17}: peak memory grows like L^{growth_exponent([r['depth'] for r in top], [r['peak_mib'] for r in top]):.2f}"
              f" between the two largest depths")
    naive = [r for r in rows if r["mode"] == "naive"]
    eff = [r for r in rows if r["mode"] == "memory-efficient"]
    for a, b in zip(naive, eff):
        t = f", time x{b['seconds'] / a['seconds']:.2f}" if "seconds" in a else ""
        print(f"L={a['depth']:>3}: memory-efficient needs {b['peak_mib'] / a['peak_mib']:.0%} of the naive peak{t}")
    if args.save:
        from skiplib.results import provenance, save_result

        payload = {"rows": rows, "settings": {k: v for k, v in vars(args).items() if k != "func"},
                   "provenance": provenance(device, "random tensors (no data)", 0.0, "bench")}
        print("wrote", save_result(f"dense-memory-{device.type}", payload, args.out_dir))
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``dense-memory`` subcommand's options."""
    p.add_argument("--depths", type=int, nargs="+", default=[6, 12, 24, 48], help="layers per dense block")
    p.add_argument("--growth-rate", type=int, default=12, help="k (the block input has 2k channels)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement (0: no timing)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.add_argument("--save", action="store_true", help="also write results/dense-memory-<device>.json")
    p.add_argument("--out-dir", default=None, help="where to write the JSON (default: results/)")

