"""Graders for the coding exercises: ``check_…(learner_object)`` prints, per hidden test, a
pass or a sentence saying what is wrong plus a hint, and returns True only if all pass.

A grader never raises because of the learner's code: an exception inside their function is
reported as a failed test, and each test is bounded in time. A function that still raises
``NotImplementedError`` (the student notebooks' placeholder, see ``skiplib.tools.student``) is
reported as "not attempted".

:func:`run_checks` also keeps a record, ``{"exercise": ..., "passed": n, "total": m,
"attempted": ...}``, in the kernel's memory. ``python -m skiplib.tools.student grade`` collects the
records after each cell through the kernel protocol (:mod:`skiplib.tools.grading`), never from what
a cell prints, so a printed line cannot pose as a result; learners and the website see nothing
of it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

import torch

Check = tuple[str, Callable[[], "str | None"]]  # (what is tested, test returning None if ok or a message)

NOT_ATTEMPTED = "not attempted"
# The grader drains this after every cell; bounded so a long session that never grades
# cannot grow it without end.
_RECORDS: deque[dict] = deque(maxlen=1000)


def _drain_records() -> str:
    """The check records since the last call, as JSON, and forget them (called by the grader)."""
    out = json.dumps(list(_RECORDS))
    _RECORDS.clear()
    return out


# Seconds each check may run: a learner's endless loop is stopped and reported, not waited for.
TIME_LIMIT = 20.0
# Code that is not the learner's: a traceback is reported at the learner's innermost line, not here.
_LIBRARY_DIRS = tuple(str(Path(m).resolve().parent) + os.sep for m in (torch.__file__, Path(__file__).parent))


class _Timeout(BaseException):
    """Raised by the time limit. A BaseException, so that a grader's own ``except Exception``
    (which turns a learner's error into a hint) cannot swallow it and report "raised _Timeout"."""


@contextmanager
def _time_limit(seconds: float):
    # SIGALRM only works in the main thread on Unix; elsewhere run unbounded rather than fail
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def handler(signum, frame):
        raise _Timeout()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _check_name(title: str) -> str:
    """The name of the ``check_…`` function that called :func:`run_checks` (the exercise id
    used by the grader), or ``title`` when it was called directly."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name.startswith("check_"):
            return frame.f_code.co_name
        frame = frame.f_back
    return title


def _is_placeholder(problem: str) -> bool:
    # Some graders catch the learner's exception themselves and report it as text
    # ("your function raised NotImplementedError: ..."): that is still the untouched placeholder.
    return "raised NotImplementedError" in problem


def _is_library(filename: str) -> bool:
    return str(Path(filename).resolve()).startswith(_LIBRARY_DIRS)


def _describe_error(e: Exception) -> str:
    """What a learner reads when a check raised: at their own innermost line if the error arose in
    their code (also when torch raised it for them); if it arose in the grader, the grader could not
    use what their code gave back (a tuple or None instead of a tensor, say)."""
    # Only the frames still active when it was raised are in the traceback: none of the learner's
    # means the grader itself failed, on a value their code had already returned.
    learner = [f for f in traceback.extract_tb(e.__traceback__) if not _is_library(f.filename)]
    if not learner:
        return (f"the check could not use what your code gave back ({type(e).__name__}: {e}); "
                "does it return what the exercise asks for (e.g. a tensor, not a tuple or None)?")
    where = f" (line {learner[-1].lineno} in {learner[-1].name})" if learner else ""
    return f"your code raised {type(e).__name__}: {e}{where}"


def run_checks(title: str, checks: Iterable[Check], *, time_limit: float | None = None, verbose: bool = True) -> bool:
    """Run each check, print ✓/✗ lines and a summary; return True if every check passed.

    A check whose code raises ``NotImplementedError`` counts as "not attempted": the summary
    says so instead of listing a failure the learner has not had a chance to make.
    """
    time_limit = TIME_LIMIT if time_limit is None else time_limit
    passed = total = placeholders = 0
    lines = []
    for what, test in checks:
        total += 1
        try:
            with _time_limit(time_limit):
                problem = test()
        except _Timeout:
            problem = (f"stopped after {time_limit:g} seconds, the time limit of a check: is there an endless "
                       "loop, or work that does not depend on the input's size?")
        except NotImplementedError:
            problem = "your code raised NotImplementedError"
        except Exception as e:  # the learner's code failed: report, don't crash the notebook
            problem = _describe_error(e)
        if problem is None:
            passed += 1
            lines.append(f"  ✓ {what}")
        elif _is_placeholder(problem):
            placeholders += 1
            lines.append(f"  · {what}: {NOT_ATTEMPTED} ({problem.rstrip(': ')})")
        else:
            lines.append(f"  ✗ {what}: {problem}")
    attempted = placeholders == 0
    if verbose:
        if attempted:
            print(f"{title}: {passed}/{total} checks passed")
        else:
            print(f"{title}: {NOT_ATTEMPTED} yet ({passed}/{total} checks passed): replace "
                  "`raise NotImplementedError` with your answer, run that cell, then this one again")
        print("\n".join(lines))
        if passed == total:
            print("Well done!")
    _RECORDS.append({"exercise": _check_name(title), "title": title, "passed": passed, "total": total,
                     "attempted": attempted})
    return passed == total


@torch.no_grad()
def randomise_(module: torch.nn.Module, g: torch.Generator, *, bias_scale: float, mean_scale: float) -> torch.nn.Module:
    """He-scaled random conv weights and random BN scales, shifts and running statistics, in place
    (then eval mode): a reference a grader compares with, on which forgetting or swapping a BN
    layer changes the output."""
    for m in module.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / m.weight[0].numel()) ** 0.5)
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.copy_(torch.randn(m.num_features, generator=g) * bias_scale)
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * mean_scale)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return module.eval()
