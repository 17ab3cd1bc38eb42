"""Training: one loop for classification, one for segmentation, and the checkpoints both keep.

``loop``: :func:`fit` and :func:`evaluate` (Chapters 1-5, 7, 8), with :class:`History`.
``segmentation``: :func:`fit_segmentation` and its evaluation (Chapters 6 and 7).
``checkpoints``: where checkpoints live (:func:`checkpoint_dir`, :func:`run_checkpoint`), what
they are for (fingerprints) and how a run resumes from one.
"""

from skiplib.train.checkpoints import checkpoint_dir, run_checkpoint
from skiplib.train.loop import SCHEDULES, History, evaluate, fit
from skiplib.train.segmentation import evaluate_segmentation, fit_segmentation, predict, predict_logits

__all__ = ["SCHEDULES", "History", "evaluate", "fit", "checkpoint_dir", "run_checkpoint",
           "fit_segmentation", "evaluate_segmentation", "predict", "predict_logits"]
