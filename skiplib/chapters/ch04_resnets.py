"""Chapter 4 (ResNets on CIFAR and ImageNet): the run sizes the notebook uses, and the photos
that the pretrained ResNet-34 classifies with the figure that shows its answers.

Blocks: :mod:`skiplib.blocks`; models: :mod:`skiplib.models.cifar` and
:mod:`skiplib.models.imagenet`; grader: :mod:`skiplib.exercises.ch04_resnets`; the residual
block's picture: :func:`skiplib.diagrams.residual_block`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure

from skiplib.blocks.orders import ORDERS
from skiplib.data import load_cifar10
from skiplib.profile import Profile

# He et al. (2016b), Table 2: CIFAR-10 test error (%) of each residual unit of their Fig. 4
# (ResNet-110 with basic units, ResNet-164 with bottleneck units), as the paper states them.
PAPER_ORDER_ERRORS = {
    "original": (6.61, 5.93), "bn_after_add": (8.17, 6.50), "relu_before_add": (7.84, 6.14),
    "relu_only_preact": (6.71, 5.91), "full_preact": (6.37, 5.46),
}
ORDER_LABELS = {"original": "original", "bn_after_add": "BN after addition", "relu_before_add": "ReLU before addition",
                "relu_only_preact": "ReLU-only pre-activation", "full_preact": "full pre-activation"}
assert set(PAPER_ORDER_ERRORS) == set(ORDER_LABELS) == set(ORDERS)


def config(profile: Profile) -> dict:
    """Sizes for Chapter 4. The ``cpu`` training run (plain-56 vs ResNet-56, 4 epochs on 8k
    CIFAR-10 images at 16x16, one recipe) takes a bit over a minute on 2 cores, the five
    activation orders (``order_*``: depth 32, 3 epochs on 4k images) about as long; ``smoke``
    trains two 20-layer nets and five 8-layer ones for one short epoch."""
    recipe = {"lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "schedule": "onecycle", "batch_size": 128, "seed": 0}
    sizes = profile.choose(
        smoke={"grad_batch": 32, "grad_image_size": 16, "train_depth": 20, "image_size": 16,
               "train_subset": 512, "test_subset": 256, "epochs": 1, "download_weights": False,
               "order_depth": 8, "order_subset": 512, "order_epochs": 1, "order_grad_depth": 20},
        cpu={"grad_batch": 128, "grad_image_size": 32, "train_depth": 56, "image_size": 16,
             "train_subset": 8_000, "test_subset": 1_000, "epochs": 4, "download_weights": True,
             "order_depth": 32, "order_subset": 4_000, "order_epochs": 3, "order_grad_depth": 110},
        gpu={"grad_batch": 128, "grad_image_size": 32, "train_depth": 56, "image_size": 32,
             "train_subset": 25_000, "test_subset": 5_000, "epochs": 8, "download_weights": True,
             "order_depth": 56, "order_subset": 25_000, "order_epochs": 8, "order_grad_depth": 110},
    )
    return {**recipe, **sizes, "grad_depth": 56, "summary_size": 224, "profile": profile.name}


def example_photos(n_cifar: int = 5, *, allow_synthetic: bool = False) -> list[torch.Tensor]:
    """A photo that ships with matplotlib (Grace Hopper, so nothing is downloaded) followed by the
    first ``n_cifar`` CIFAR-10 test images, each a uint8 tensor ``[3, H, W]`` of its own size."""
    # imported here: only this function needs PIL and torchvision's conversion
    from matplotlib import cbook
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor

    if isinstance(n_cifar, bool) or not isinstance(n_cifar, int) or n_cifar < 0:
        raise ValueError(f"n_cifar must be an int >= 0, got {n_cifar!r}")
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        photos = [pil_to_tensor(Image.open(f).convert("RGB"))]
    cifar_test = load_cifar10("test", allow_synthetic=allow_synthetic, verbose=False)
    return photos + list(cifar_test.images[:n_cifar])


def plot_top1(photos: Sequence[torch.Tensor], probs: torch.Tensor, categories: Sequence[str]) -> Figure:
    """One panel per photo (uint8 ``[3, H, W]``), titled with the most probable of ``categories``
    and its probability; ``probs`` is ``[len(photos), len(categories)]``."""
    if probs.shape != (len(photos), len(categories)):
        raise ValueError(f"probs must have shape ({len(photos)}, {len(categories)}) (photos, categories), "
                         f"got {tuple(probs.shape)}")
    fig, axes = plt.subplots(1, len(photos), figsize=(2.2 * len(photos), 2.8), squeeze=False)
    for ax, img, p in zip(axes[0], photos, probs):
        top = p.argmax().item()
        ax.imshow(img.permute(1, 2, 0))
        ax.set_title(f"{categories[top]}\n{p[top]:.0%}", fontsize=9)
        ax.axis("off")
    fig.suptitle("ResNet-34 (ImageNet weights): top-1 class and probability")
    return fig


def order_table(final: Mapping[str, Mapping[str, float]], depth: int) -> str:
    """A Markdown table: each activation order's final training and test error here beside the paper's
    test errors (:data:`PAPER_ORDER_ERRORS`); ``final`` maps an order to its last History record."""
    rows = [f"| {ORDER_LABELS[o]} | {final[o]['train_err']:.1%} | {final[o]['test_err']:.1%} "
            f"| {PAPER_ORDER_ERRORS[o][0]:.2f} % | {PAPER_ORDER_ERRORS[o][1]:.2f} % |" for o in ORDERS]
    return (f"| residual unit | training error, depth {depth} (here) | test error (here) | ResNet-110 (paper) "
            "| ResNet-164 (paper) |\n|---|---:|---:|---:|---:|\n" + "\n".join(rows))


def order_verdict(final: Mapping[str, Mapping[str, float]], *, margin: float = 0.03) -> str:
    """One sentence, from the numbers: which orders ended more than ``margin`` above or below the
    original unit's training error, and which within it."""
    base = final["original"]["train_err"]
    groups = {"worse": [], "better": [], "close": []}
    for o in ORDERS[1:]:
        gap = final[o]["train_err"] - base
        groups["worse" if gap > margin else "better" if gap < -margin else "close"].append(ORDER_LABELS[o])
    parts = [f"{' and '.join(names)} ended {word} the original unit's {base:.1%}"
             for key, word in (("worse", f"more than {margin:.0%} above"), ("better", f"more than {margin:.0%} below"),
                               ("close", f"within {margin:.0%} of"))
             if (names := groups[key])]
    return "; ".join(parts) + "."
