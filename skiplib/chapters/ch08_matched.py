"""Chapter 8's surfaces at matched training loss, as the chapter reads them from ``results/``.

``python -m skiplib landscape --matched --profile P`` writes ``landscape-P-matched.json``
(:func:`skiplib.chapters.ch08_why.run_matched`). :func:`pick` chooses which stored run the chapter
shows and :func:`facts` says, from the file alone, what that run did: its command, data, device and
what it leaves unsettled, so the chapter's prose fits whichever run it shows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from skiplib.chapters.ch08_why import PAPER_IMAGE_SIZE, PAPER_IMAGES
from skiplib.results import device_label


def is_matched(name: str) -> bool:
    """True for a stored matched-loss run's name, ``landscape-<profile>-matched``."""
    return re.fullmatch(r"landscape-[a-z]+-matched", name) is not None


def pick(results: Mapping[str, Mapping]) -> str | None:
    """Of the stored matched-loss runs (name to result), the one closest to Li et al.'s setting: the
    largest images, then the most training images; None if there is none."""
    def rank(name: str) -> tuple[int, int]:
        cfg = results[name]["config"]
        return cfg["image_size"], cfg.get("train_subset") or PAPER_IMAGES
    return max(results, key=rank, default=None)


def facts(result: Mapping) -> dict[str, str]:
    """What a matched-loss run did, in words for the chapter: ``command`` (as a reader would type it,
    without the folder it wrote to), ``data``, ``device`` and ``caveats`` (what one such run cannot
    settle), all from the file."""
    cfg, prov = result["config"], result.get("provenance", {})
    size, images = cfg["image_size"], cfg.get("train_subset") or PAPER_IMAGES
    data = f"{images:,} training images at {size}×{size}"
    command = re.sub(r"\s+--out-dir\s+\S+", "", prov.get("command", "python -m skiplib landscape --matched"))
    plain, res = result["surfaces"]  # labels as the run wrote them, plain first
    epochs = {label: result["matched"][label]["epochs"] for label in (plain, res)}
    caveats = ["it is one seed and one pair of random directions"]
    if images < PAPER_IMAGES or size < PAPER_IMAGE_SIZE:
        caveats.append(f"{data}, not all of CIFAR-10 at {PAPER_IMAGE_SIZE}×{PAPER_IMAGE_SIZE}")
    caveats.append(f"the loss is matched on the {cfg['surface_images']:,} images of the surface batch, "
                   "not on the whole training set")
    nets = (f"the two nets differ in more than their shortcuts even at equal loss, since the ResNet got there in "
            f"{epochs[res]} epochs against the plain net's {epochs[plain]}")
    if epochs[res] < epochs[plain]:
        nets += " and so moved less far from its initialisation"
    return {"command": f"`{command}`", "data": data, "device": _machine(prov),
            "caveats": "; ".join(caveats) + "; and " + nets + "."}


def _machine(prov: Mapping) -> str:
    """The machine a run recorded, for "it took N minutes on ...": "a 2-core CPU (x86_64 CPU, 1 thread)"."""
    device = device_label(prov.get("device") or "")
    if not device:
        return "an unrecorded machine"
    if "CPU" in device:
        cores = f"{prov['host_cpus']}-core " if prov.get("host_cpus") else ""
        return f"a {cores}CPU ({device})"
    return f"a GPU ({device})"
