"""Chapter 4 (ResNets on CIFAR and ImageNet): the run sizes the notebook uses.

Blocks: :mod:`skiplib.blocks`; models: :mod:`skiplib.models.cifar` and
:mod:`skiplib.models.imagenet`; grader: :mod:`skiplib.exercises.ch04_resnets`.
"""

from __future__ import annotations

from skiplib.profile import Profile


def config(profile: Profile) -> dict:
    """Sizes for Chapter 4. The ``cpu`` training run (plain-56 vs ResNet-56, 4 epochs on 8k
    CIFAR-10 images at 16x16, one recipe) is sized to take about two of the notebook's four
    minutes on 2 cores; ``smoke`` trains two 20-layer nets for one short epoch."""
    recipe = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "onecycle", "batch_size": 128, "seed": 0}
    sizes = profile.choose(
        smoke={"grad_batch": 32, "grad_image_size": 16, "train_depth": 20, "image_size": 16,
               "train_subset": 512, "test_subset": 256, "epochs": 1, "download_weights": False},
        cpu={"grad_batch": 128, "grad_image_size": 32, "train_depth": 56, "image_size": 16,
             "train_subset": 8_000, "test_subset": 1_000, "epochs": 4, "download_weights": True},
        gpu={"grad_batch": 128, "grad_image_size": 32, "train_depth": 56, "image_size": 32,
             "train_subset": 25_000, "test_subset": 5_000, "epochs": 8, "download_weights": True},
    )
    return {**recipe, **sizes, "grad_depth": 56, "summary_size": 224, "profile": profile.name}

