"""Training: one loop for classification, one for segmentation, the checkpoints both keep, and
Chapter 9's small loop for a sequence model.

``loop``: :func:`fit` and :func:`evaluate` (Chapters 1-5, 7, 8), with :class:`History`.
``segmentation``: :func:`fit_segmentation` and its evaluation (Chapters 6 and 7).
``checkpoints``: where checkpoints live (:func:`checkpoint_dir`, :func:`run_checkpoint`), what
they are for (fingerprints) and how a run resumes from one.
``schedule``: fit's learning-rate schedules, with He et al.'s step schedule and :class:`Warmup` rule.
``distributed``: a sweep's runs dealt to torchrun's ranks and gathered to rank 0 (the experiments CLI).
``sequence``: :func:`~skiplib.train.sequence.fit_sequence` (Adam, optional warm-up, divergence reported,
not raised) and its held-out score, for Chapter 9's Transformers.
"""

from skiplib.train.checkpoints import checkpoint_dir, run_checkpoint
from skiplib.train.loop import SCHEDULES, History, evaluate, fit
from skiplib.train.schedule import Warmup
from skiplib.train.segmentation import evaluate_segmentation, fit_segmentation, predict, predict_logits

__all__ = ["SCHEDULES", "History", "Warmup", "evaluate", "fit", "checkpoint_dir", "run_checkpoint",
           "fit_segmentation", "evaluate_segmentation", "predict", "predict_logits"]
