"""Chapter 8's matched-loss section reads its words from the stored run it shows."""

from __future__ import annotations

import copy

from skiplib.chapters import ch08_matched
from skiplib.results import load_result


def _run(size: int, images: int | None, *, res_epochs: int = 6, device: str = "NVIDIA H200") -> dict:
    return {"config": {"image_size": size, "train_subset": images, "surface_images": 1_000},
            "provenance": {"command": "python -m skiplib landscape --matched --profile gpu --epochs 30 --tag matched "
                                      "--out-dir /tmp/gpu-session/refs", "device": device, "host_cpus": 16},
            "surfaces": {"plain56": {}, "resnet56": {}},
            "matched": {"plain56": {"epochs": 30}, "resnet56": {"epochs": res_epochs}}}


def test_only_matched_runs_are_candidates():
    assert ch08_matched.is_matched("landscape-cpu-matched") and ch08_matched.is_matched("landscape-gpu-matched")
    assert not ch08_matched.is_matched("landscape-gpu") and not ch08_matched.is_matched("landscape-cpu-matched-old")


def test_pick_prefers_larger_images_then_more_training_images():
    runs = {"landscape-cpu-matched": _run(16, 2_000), "landscape-gpu-matched": _run(32, 12_000)}
    assert ch08_matched.pick(runs) == "landscape-gpu-matched"
    runs["landscape-paper-matched"] = _run(32, None)  # the whole training set
    assert ch08_matched.pick(runs) == "landscape-paper-matched"
    assert ch08_matched.pick({}) is None


def test_facts_of_the_shipped_cpu_run_say_what_it_did():
    facts = ch08_matched.facts(load_result("landscape-cpu-matched"))
    assert facts["command"] == "`python -m skiplib landscape --matched --profile cpu --epochs 40 --tag matched`"
    assert facts["data"] == "2,000 training images at 16×16"
    assert facts["device"] == "a 2-core CPU (x86_64 CPU, 1 thread)"
    assert facts["caveats"] == (
        "it is one seed and one pair of random directions; 2,000 training images at 16×16, not all of CIFAR-10 "
        "at 32×32; the loss is matched on the 256 images of the surface batch, not on the whole training set; "
        "and the two nets differ in more than their shortcuts even at equal loss, since the ResNet got there in "
        "6 epochs against the plain net's 40 and so moved less far from its initialisation.")


def test_facts_claim_only_what_the_run_shows():
    full = ch08_matched.facts(_run(32, None, res_epochs=30))
    assert "not all of CIFAR-10" not in full["caveats"]  # it was all of CIFAR-10 at 32x32
    assert "30 epochs against the plain net's 30" in full["caveats"] and "moved less far" not in full["caveats"]
    assert full["device"] == "a GPU (NVIDIA H200)" and "--out-dir" not in full["command"]
    unrecorded = copy.deepcopy(_run(32, 12_000))
    del unrecorded["provenance"]["device"]
    assert ch08_matched.facts(unrecorded)["device"] == "an unrecorded machine"
