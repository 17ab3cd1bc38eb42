"""Graders for the coding exercises, one module per chapter; every ``check_…`` is importable from
here: ``from skiplib.exercises import check_dense_layer``.

A grader prints, per hidden test, a pass or a sentence saying what is wrong plus a hint, and returns
True only if all pass; it never raises because of the learner's code (:mod:`skiplib.exercises._runner`).
"""

from skiplib.exercises._runner import NOT_ATTEMPTED, run_checks
from skiplib.exercises.ch01_degradation import check_option_a_shortcut, check_pad_shortcut
from skiplib.exercises.ch02_identity import check_dirac_init, check_fixup_init
from skiplib.exercises.ch03_highway import check_free_carry_highway, check_highway_layer
from skiplib.exercises.ch04_resnets import check_bottleneck
from skiplib.exercises.ch05_densenets import check_dense_layer
from skiplib.exercises.ch06_unet import check_up_step
from skiplib.exercises.ch07_comparison import check_rezero_block
from skiplib.exercises.ch08_why import check_filter_normalize, check_normalize_direction
from skiplib.exercises.ch09_transformer import check_pre_ln_block

__all__ = ["NOT_ATTEMPTED", "run_checks", "check_option_a_shortcut", "check_pad_shortcut", "check_dirac_init", "check_fixup_init",
           "check_highway_layer", "check_free_carry_highway", "check_bottleneck", "check_dense_layer", "check_up_step",
           "check_rezero_block", "check_filter_normalize", "check_normalize_direction", "check_pre_ln_block"]
