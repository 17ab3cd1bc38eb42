"""Chapter 2's variance section: its figure and the sentence that reports the training runs."""

import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from skiplib.analysis.variance import KINDS  # noqa: E402
from skiplib.chapters import ch02_identity as ch  # noqa: E402
from skiplib.profile import get_profile  # noqa: E402


def test_plot_variance_draws_one_line_per_kind_on_a_log_axis():
    profiles = {k: np.linspace(1, 2 + i, 9) for i, k in enumerate(KINDS)}
    fig = ch.plot_variance(profiles)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == list(KINDS.values())
    with pytest.raises(ValueError, match="profiles needs kinds among"):
        ch.plot_variance({"batchnorm": [1, 2]})


def test_verdict_reports_each_run_from_the_numbers():
    text = ch.norm_free_verdict({"he": {"diverged": True, "loss": math.nan},
                                 "fixup": {"diverged": False, "loss": 2.1},
                                 "bn": {"diverged": False, "loss": 2.4}}, math.log(10))
    assert "no BN, He init: diverged" in text
    assert "no BN, Fixup: trains, last-epoch loss 2.100" in text
    assert "stalled at a loss of 2.400" in text
    with pytest.raises(ValueError, match="results needs runs among"):
        ch.norm_free_verdict({"plain": {"diverged": True}}, 2.3)


@pytest.mark.parametrize("name", ["smoke", "cpu", "gpu"])
def test_config_sizes_the_section(name):
    cfg = ch.config(get_profile(name, device="cpu"))
    assert (cfg["nf_depth"] - 2) % 6 == 0
    assert {"he", "fixup", "bn"} <= set(cfg["nf_runs"]) <= set(ch.NORM_FREE_RUNS)
    assert cfg["var_depth"] >= (100 if name != "smoke" else 8)
