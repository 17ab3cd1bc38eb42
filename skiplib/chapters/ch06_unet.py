"""Chapter 6 (U-Net): the run sizes the notebook uses.

The task: :mod:`skiplib.data.cells`; the model: :mod:`skiplib.models.unet`; training:
:mod:`skiplib.train.segmentation`; grader: :mod:`skiplib.exercises.ch06_unet`.
"""

from __future__ import annotations

from skiplib.profile import Profile


def config(profile: Profile) -> dict:
    """Sizes for Chapter 6. ``cpu``: a U-Net of base width 8 and depth 3 (64x64 images, 8x8 at the
    bottleneck), trained with and without long skips and with each single skip removed, 6 epochs
    of 640 images each: about two of the notebook's four minutes on 2 cores."""
    recipe = {"lr": 3e-3, "batch_size": 32, "weight": (1.0, 3.0), "batch_norm": True, "seed": 0}
    sizes = profile.choose(
        smoke={"train_n": 96, "test_n": 32, "size": 32, "base": 4, "depth": 3, "epochs": 1, "ablation_epochs": 1},
        cpu={"train_n": 640, "test_n": 200, "size": 64, "base": 8, "depth": 3, "epochs": 6, "ablation_epochs": 6},
        gpu={"train_n": 2000, "test_n": 500, "size": 96, "base": 16, "depth": 4, "epochs": 12, "ablation_epochs": 6},
    )
    return {**recipe, **sizes, "train_seed": 1, "test_seed": 2, "profile": profile.name}

