"""Chapter 2 (the identity-mapping construction): the run sizes the notebook uses.

The construction itself (exact deepening, noise, shrinking, identity fitting) lives in
:mod:`skiplib.analysis.identity`; its grader in :mod:`skiplib.exercises.ch02_identity`.
"""

from __future__ import annotations

from skiplib.profile import Profile


def config(profile: Profile) -> dict:
    """Every size Chapter 2's notebook uses, for the active profile."""
    p = profile.choose
    return {
        "image_size": p(smoke=16, cpu=16, gpu=32),
        "train_subset": p(smoke=512, cpu=10_000, gpu=25_000),
        "test_subset": p(smoke=256, cpu=2_000, gpu=5_000),
        "batch_size": 128,
        "epochs": p(smoke=1, cpu=6, gpu=6),
        "lr": 0.1,
        "weight_decay": 5e-4,
        "shallow_depth": p(smoke=8, cpu=14, gpu=20),
        "deep_depth": p(smoke=14, cpu=32, gpu=56),
        "zero_init_steps": p(smoke=4, cpu=80, gpu=400),
        "identity_layers": p(smoke=(2, 4), cpu=(2, 4, 8, 16), gpu=(2, 4, 8, 16, 32)),
        "identity_images": p(smoke=(32, 16), cpu=(512, 256), gpu=(2048, 512)),
        "identity_crop": p(smoke=8, cpu=8, gpu=16),
        "identity_steps": p(smoke=5, cpu=200, gpu=1000),
        "identity_lr": 0.05,
        "sigmas": p(smoke=(0.01, 0.1), cpu=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3),
                    gpu=(0.001, 0.003, 0.01, 0.03, 0.1, 0.3)),
        "noise_images": p(smoke=256, cpu=2_000, gpu=5_000),
        "shrink_points": p(smoke=6, cpu=25, gpu=25),
    }

