"""Chapter 9's chapter module: sizes per profile, the sweep's records, the figures."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest
import torch

from skiplib.chapters import ch09_transformer as ch
from skiplib.profile import get_profile

PROFILES = {name: get_profile(name, device="cpu") for name in ("smoke", "cpu", "gpu")}
TINY = {**ch.config(PROFILES["smoke"]), "depths": [1, 2], "steps": 4, "log_every": 2}


@pytest.mark.parametrize("name", PROFILES)
def test_every_profile_has_the_same_keys_and_a_consistent_task(name):
    cfg = ch.config(PROFILES[name])
    assert set(cfg) == set(ch.config(PROFILES["cpu"]))
    assert cfg["n_embd"] % cfg["n_head"] == 0
    assert cfg["warmup_steps"] < cfg["steps"]
    assert ch.task(cfg).block_size == 2 * cfg["length"]


def test_the_gpu_profile_contains_the_cpu_profiles_depths():
    # the notebook's asserts are about the cpu profile's deepest stack; the gpu profile must train it too
    cpu, gpu = ch.config(PROFILES["cpu"]), ch.config(PROFILES["gpu"])
    assert set(cpu["depths"]) <= set(gpu["depths"]) and set(cpu["grad_depths"]) <= set(gpu["grad_depths"])


def test_build_is_deterministic_per_seed():
    a, b = ch.build(TINY, "pre_ln", 2), ch.build(TINY, "pre_ln", 2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = ch.build(TINY, "pre_ln", 2, seed=1)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_sweep_trains_every_wiring_at_every_depth_and_the_figure_shows_them():
    models, records = ch.depth_sweep(TINY, progress=False)
    assert sorted(models) == sorted((w, d) for w in ch.SWEEP_WIRINGS for d in (1, 2))
    assert [(r["wiring"], r["depth"]) for r in records] == [(w, d) for d in (1, 2) for w in ch.SWEEP_WIRINGS]
    assert all(r["steps"] == [2, 4] and r["warmup_steps"] == 0 for r in records)
    fig = ch.plot_sweep(records, TINY)
    assert len(fig.axes) == 2 and all(len(ax.get_lines()) == 3 + 1 for ax in fig.axes)  # 3 wirings + chance
    plt.close(fig)


def test_final_loss_and_chance():
    assert ch.final_loss({"diverged": True, "train_loss": [1.0]}) == math.inf
    assert ch.final_loss({"diverged": False, "train_loss": [2.0, 0.5]}) == 0.5
    assert ch.chance_loss({"n_symbols": 10}) == pytest.approx(math.log(10))


def test_grad_and_stream_figures_draw_one_line_or_bar_per_part():
    fig, ax = plt.subplots()
    ch.plot_grad_norms({("pre_ln", 2): torch.ones(2), ("post_ln", 4): torch.ones(4)}, ax)
    assert len(ax.get_lines()) == 2
    plt.close(fig)
    fig, axes = plt.subplots(1, 2)
    shares = {"embedding": torch.tensor(0.4), "attn": torch.tensor([0.1, 0.1]), "mlp": torch.tensor([0.2, 0.2])}
    ch.plot_stream(torch.tensor([1.0, 2.0, 3.0]), shares, axes)
    assert len(axes[0].get_lines()) == 1 and len(axes[1].patches) == 1 + 2 + 2
    plt.close(fig)
