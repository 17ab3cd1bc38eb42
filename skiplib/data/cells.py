"""Chapter 6's segmentation task: procedural "EM-like" cell images, masks and metrics.

:func:`make_cells` draws images in the spirit of the ISBI EM task of Ronneberger et al. (2015):
the plane is tiled by touching cells (a Voronoi tessellation of random seeds, gently warped) and
neighbouring cells are separated by a **one-pixel** membrane. Each image has textured cell
interiors, dark "vesicles" that look like membrane locally but are not, a slightly blurred
membrane and Gaussian noise. The target has two classes: ``INTERIOR`` (0) and ``BOUNDARY`` (1).
Finding the boundary needs context (vesicle or membrane?) *and* full-resolution detail (which
pixel?), which is what the encoder and the long skips of a U-Net provide.

Metrics (all on label maps, computed over the whole set): Dice and IoU of the boundary class,
boundary F1 with a one-pixel tolerance, and cell F1: the fraction of cells recovered as separate
objects (4-connected components of the predicted interior matched to true cells at IoU > 0.5),
which drops when a missing piece of boundary merges two cells. Connected components are computed
in torch (no scipy needed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from skiplib.checks import check_non_negative_ints

INTERIOR, BOUNDARY = 0, 1
CLASSES: tuple[str, ...] = ("interior", "boundary")
_CHUNK = 128  # images per vectorised step: bounds the [chunk, cells, H, W] distance tensor


@dataclass
class CellSet:
    """Images (float32 ``[N, 1, H, W]``, roughly in [0, 1]), masks (int64 ``[N, H, W]``:
    0 interior, 1 boundary) and the cell id of every pixel (int64 ``[N, H, W]``). Chapter 6."""

    images: torch.Tensor
    masks: torch.Tensor
    cells: torch.Tensor
    seed: int

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, idx) -> CellSet:
        return CellSet(self.images[idx], self.masks[idx], self.cells[idx], self.seed)


def _chunk(rng: np.random.Generator, b: int, size: int, cells: tuple[int, int], noise: float,
           vesicles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = w = size
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    kmax = cells[1]
    # cell seeds; images with fewer cells park the unused seeds far away
    seeds = rng.uniform(-0.05 * size, 1.05 * size, (b, kmax, 2)).astype(np.float32)
    count = rng.integers(cells[0], cells[1] + 1, b)
    seeds[np.arange(kmax)[None, :] >= count[:, None]] = 1e6
    # a smooth random warp bends the straight Voronoi edges into membrane-like curves
    amp = rng.uniform(0.5, 2.5, (b, 2, 1, 1)).astype(np.float32)
    freq = rng.uniform(0.5, 1.5, (b, 2, 1, 1)).astype(np.float32) * 2 * np.pi / size
    phase = rng.uniform(0, 2 * np.pi, (b, 2, 1, 1)).astype(np.float32)
    wy = yy + amp[:, 0] * np.sin(freq[:, 0] * xx + phase[:, 0])
    wx = xx + amp[:, 1] * np.sin(freq[:, 1] * yy + phase[:, 1])
    # anisotropic weights make cells of different sizes (a multiplicatively weighted Voronoi diagram)
    weight = rng.uniform(0.8, 1.25, (b, kmax, 1, 1)).astype(np.float32)
    d = ((wy[:, None] - seeds[:, :, 0, None, None]) ** 2 + (wx[:, None] - seeds[:, :, 1, None, None]) ** 2) * weight
    label = d.argmin(1)  # [b, h, w] cell id
    # a pixel is membrane if its right or lower neighbour belongs to another cell: one pixel wide,
    # and every 4-neighbour pair from two different cells has one membrane pixel between them
    edge = np.zeros_like(label, dtype=bool)
    edge[:, :, :-1] |= label[:, :, 1:] != label[:, :, :-1]
    edge[:, :-1, :] |= label[:, 1:, :] != label[:, :-1, :]
    # the image: per-cell brightness, a low-frequency texture, dark vesicles, dark membrane, blur, noise
    level = rng.uniform(0.45, 0.9, (b, kmax)).astype(np.float32)
    img = np.take_along_axis(level, label.reshape(b, -1), 1).reshape(b, h, w)
    tex_f = rng.uniform(2, 6, (b, 2, 1, 1)).astype(np.float32) * 2 * np.pi / size
    tex_p = rng.uniform(0, 2 * np.pi, (b, 2, 1, 1)).astype(np.float32)
    img += 0.06 * np.sin(tex_f[:, 0] * yy + tex_p[:, 0]) * np.sin(tex_f[:, 1] * xx + tex_p[:, 1])
    if vesicles:
        centres = rng.uniform(0, size, (b, vesicles, 2)).astype(np.float32)
        radius = rng.uniform(0.8, 1.8, (b, vesicles, 1, 1)).astype(np.float32)
        dv = (yy - centres[:, :, 0, None, None]) ** 2 + (xx - centres[:, :, 1, None, None]) ** 2
        dark = (dv < radius**2).any(1) & ~edge
        img = np.where(dark, rng.uniform(0.1, 0.35, (b, 1, 1)).astype(np.float32), img)
    membrane = rng.uniform(0.05, 0.3, (b, 1, 1)).astype(np.float32)
    img = np.where(edge, membrane, img)
    k = np.array([0.25, 0.5, 0.25], dtype=np.float32)  # a light [1 2 1]/4 blur, like a microscope's
    pad = np.pad(img, ((0, 0), (1, 1), (1, 1)), mode="edge")
    img = sum(k[i] * pad[:, i:i + h, 1:-1] for i in range(3))
    pad = np.pad(img, ((0, 0), (0, 0), (1, 1)), mode="edge")
    img = sum(k[i] * pad[:, :, i:i + w] for i in range(3))
    img = img + rng.normal(0, noise, img.shape).astype(np.float32)
    return img.astype(np.float32), edge.astype(np.int64), label.astype(np.int64)


def make_cells(n: int, size: int = 64, seed: int = 0, *, cells: tuple[int, int] = (8, 16), noise: float = 0.06,
               vesicles: int = 6) -> CellSet:
    """``n`` procedural cell images of ``size`` x ``size`` pixels, deterministic given ``seed``.

    ``cells``: (min, max) number of cells per image; ``noise``: std of the Gaussian pixel noise;
    ``vesicles``: dark distractor dots per image. Use different seeds for train and test. Chapter 6."""
    check_non_negative_ints(n=n)
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8 pixels, got {size!r}")
    if len(cells) != 2 or not 2 <= cells[0] <= cells[1]:
        raise ValueError(f"cells must be (min, max) with 2 <= min <= max, got {cells!r}")
    if noise < 0 or vesicles < 0:
        raise ValueError(f"noise and vesicles must be >= 0, got {noise!r} and {vesicles!r}")
    rng = np.random.default_rng(seed)
    parts = [_chunk(rng, min(_CHUNK, n - i), size, cells, noise, vesicles) for i in range(0, n, _CHUNK)]
    if not parts:
        empty = torch.zeros(0, size, size, dtype=torch.int64)
        return CellSet(torch.zeros(0, 1, size, size), empty, empty.clone(), seed)
    img, mask, label = (np.concatenate(p) for p in zip(*parts))
    return CellSet(torch.from_numpy(img).unsqueeze(1), torch.from_numpy(mask), torch.from_numpy(label), seed)


# ---------------------------------------------------------------------------------------------- metrics
def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(f"pred and target must be label maps of the same shape [N, H, W], got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")


def dice_iou(pred: torch.Tensor, target: torch.Tensor, cls: int = BOUNDARY) -> tuple[float, float]:
    """Dice 2|P∩T|/(|P|+|T|) and IoU |P∩T|/|P∪T| of class ``cls``, pooled over all images
    (1.0 when the class is absent from both). Chapter 6."""
    _check_pair(pred, target)
    p, t = pred == cls, target == cls
    inter, total = (p & t).sum().item(), p.sum().item() + t.sum().item()
    if total == 0:
        return 1.0, 1.0
    return 2 * inter / total, inter / (total - inter)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius == 0:
        return mask
    k = 2 * radius + 1
    return F.max_pool2d(mask[:, None].float(), k, stride=1, padding=radius)[:, 0] > 0


def boundary_f1(pred: torch.Tensor, target: torch.Tensor, tolerance: int = 1) -> float:
    """F1 of boundary pixels where a predicted pixel counts as right if a true boundary pixel lies
    within ``tolerance`` pixels (3x3 neighbourhood for 1), and a true one as found if a predicted
    one does. Chapter 6."""
    _check_pair(pred, target)
    p, t = pred == BOUNDARY, target == BOUNDARY
    if p.sum() == 0 and t.sum() == 0:
        return 1.0
    precision = (p & _dilate(t, tolerance)).sum().item() / max(p.sum().item(), 1)
    recall = (t & _dilate(p, tolerance)).sum().item() / max(t.sum().item(), 1)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def label_components(mask: torch.Tensor) -> torch.Tensor:
    """4-connected components of a boolean ``[N, H, W]`` mask: int64 labels, 0 for background,
    components numbered by an arbitrary positive id. Repeated max-propagation, vectorised. Chapter 6."""
    if mask.dim() != 3:
        raise ValueError(f"mask must be [N, H, W], got shape {tuple(mask.shape)}")
    mask = mask.bool()
    n, h, w = mask.shape
    ids = torch.arange(1, n * h * w + 1, dtype=torch.int64).view(n, h, w)
    labels = torch.where(mask, ids, torch.zeros_like(ids))
    while True:
        m = labels.clone()
        m[:, 1:] = torch.maximum(m[:, 1:], labels[:, :-1])
        m[:, :-1] = torch.maximum(m[:, :-1], labels[:, 1:])
        m[:, :, 1:] = torch.maximum(m[:, :, 1:], labels[:, :, :-1])
        m[:, :, :-1] = torch.maximum(m[:, :, :-1], labels[:, :, 1:])
        m = torch.where(mask, m, torch.zeros_like(m))
        if torch.equal(m, labels):
            return labels
        labels = m


def cell_f1(pred: torch.Tensor, target: torch.Tensor, iou: float = 0.5, min_size: int = 4) -> float:
    """Instance F1 = 2·matched / (true cells + predicted cells), where cells are 4-connected
    components of the interior class and a true and a predicted cell match when their IoU exceeds
    ``iou`` (> 0.5 makes matches unique). Cells under ``min_size`` pixels (corners cut off by the
    image border, predicted specks) are ignored on both sides.
    Two cells merged by a missing boundary match neither. Chapter 6."""
    _check_pair(pred, target)
    n, h, w = pred.shape
    true_lab = label_components(target == INTERIOR).view(n, -1)
    pred_lab = label_components(pred == INTERIOR).view(n, -1)
    n_true = n_pred = matched = 0
    for t, p in zip(true_lab, pred_lab):
        tu, ti = torch.unique(t, return_inverse=True)  # index 0 is background (0) whenever present
        pu, pi = torch.unique(p, return_inverse=True)
        t_size = torch.bincount(ti, minlength=len(tu))
        p_size = torch.bincount(pi, minlength=len(pu))
        inter = torch.bincount(ti * len(pu) + pi, minlength=len(tu) * len(pu)).view(len(tu), len(pu))
        t_ok = (tu > 0) & (t_size >= min_size)
        p_ok = (pu > 0) & (p_size >= min_size)
        union = t_size[:, None] + p_size[None, :] - inter
        good = (inter.double() / union.clamp(min=1).double() > iou) & t_ok[:, None] & p_ok[None, :]
        n_true += int(t_ok.sum())
        n_pred += int(p_ok.sum())
        matched += int(good.sum())
    return 1.0 if n_true + n_pred == 0 else 2 * matched / (n_true + n_pred)
