"""The course's data, both generated or read without a download where possible.

``cifar``: CIFAR-10, found on disk (torchvision batches or the JPEG copy), decoded once and
cached, or a synthetic stand-in in the ``smoke`` profile (Chapters 1-5, 7, 8).
``loader``: :class:`DeviceLoader` (batches, crops and flips on the device) and
:func:`cifar10_loaders`, the one call the chapters make.
``cells``: Chapter 6's procedural segmentation task (touching cells, thin boundaries) and its scores.
``sequences``: Chapter 9's sorting task, generated from a seed (``skiplib.data.sequences.SortTask``).
"""

from skiplib.data.cells import BOUNDARY, INTERIOR, CellSet, boundary_f1, cell_f1, dice_iou, label_components, make_cells
from skiplib.data.cifar import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    SOURCE_BATCHES,
    SOURCE_FOLDER,
    SOURCE_JPEG,
    SOURCE_SYNTHETIC,
    SPLITS,
    ImageSet,
    data_dir,
    load_cifar10,
    subset,
    synthetic_cifar10,
    to_float,
)
from skiplib.data.loader import DeviceLoader, cifar10_loaders

__all__ = [
    "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "SPLITS", "SOURCE_BATCHES", "SOURCE_FOLDER", "SOURCE_JPEG",
    "SOURCE_SYNTHETIC", "ImageSet", "data_dir", "load_cifar10", "subset", "synthetic_cifar10", "to_float",
    "DeviceLoader", "cifar10_loaders",
    "BOUNDARY", "INTERIOR", "CellSet", "make_cells", "dice_iou", "boundary_f1", "cell_f1", "label_components",
]
