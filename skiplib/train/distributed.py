"""A sweep's independent runs spread over ``torchrun`` processes (the experiments CLI, Chapter 1 on).

``torchrun --nproc_per_node N python -m skiplib degradation ...`` (or ``python -m torch.distributed.run``)
starts N copies of the command with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each copy reads
its :class:`World` from them, trains every N-th run of the sweep's run list (:func:`shard`, round
robin, so the split depends only on the list), on ``cuda:LOCAL_RANK`` or the CPU (:func:`device_for`),
and :func:`gather` brings every rank's results to rank 0, which writes the one results file. The
runs never talk to each other while training: no DDP, so the numbers of a run do not depend on
which rank trained it or how many ranks there were.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")
# A rank that finishes its share early waits in gather() for the slowest one: a sweep's runs can
# differ by hours (ResNet-20 vs ResNet-110), far beyond torch's default 30-minute timeout.
GATHER_TIMEOUT = dt.timedelta(days=7)
_objects_group = None  # the gloo group results travel through (the default group on the CPU)


@dataclass(frozen=True)
class World:
    """This process's place among the ``size`` processes torchrun started (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """True on rank 0, the process that writes results."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env(env: Mapping[str, str] | None = None) -> World:
    """The :class:`World` that torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` describe; one
    process when ``WORLD_SIZE`` is unset. A ValueError names a malformed variable."""
    env = os.environ if env is None else env
    if "WORLD_SIZE" not in env:
        return World()
    values = {}
    for name, default in (("RANK", None), ("WORLD_SIZE", None), ("LOCAL_RANK", "0")):
        text = env.get(name, default)
        if text is None or not text.strip().isdigit():
            raise ValueError(f"${name} must be a non-negative int when WORLD_SIZE is set (torchrun sets both), got {text!r}")
        values[name] = int(text)
    world = World(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"])
    if world.size < 1 or world.rank >= world.size:
        raise ValueError(f"$RANK must be in 0 .. $WORLD_SIZE - 1, got RANK={world.rank}, WORLD_SIZE={world.size}")
    return world


def device_for(world: World, default: torch.device) -> torch.device:
    """The device this rank trains on: ``cuda:LOCAL_RANK`` under torchrun on a machine with CUDA
    GPUs (one GPU per process), the CPU under torchrun without; ``default`` for a single process."""
    if not world.distributed:
        return default
    if default.type == "cuda":
        count = torch.cuda.device_count()
        if world.local_rank >= count:
            raise ValueError(f"LOCAL_RANK {world.local_rank} has no GPU: this machine has {count}; "
                             f"start at most {count} processes per node (torchrun --nproc_per_node {count})")
        return torch.device("cuda", world.local_rank)
    return torch.device("cpu")


def setup(world: World, device: torch.device) -> None:
    """Join the process group torchrun prepared (nccl for CUDA, gloo on the CPU); nothing for one process.
    Results travel through a gloo group either way: pickled objects, on the CPU, with a long timeout."""
    global _objects_group
    if not world.distributed or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl")
        _objects_group = dist.new_group(backend="gloo", timeout=GATHER_TIMEOUT)
    else:
        dist.init_process_group("gloo", timeout=GATHER_TIMEOUT)
        _objects_group = None  # the default group is gloo already


def teardown(world: World, *, wait: bool = True) -> None:
    """Leave the process group (a no-op for one process). With ``wait``, every rank first waits for
    the others (rank 0 may still be writing the results): a rank that destroyed its gloo group while
    its peer still held it left the peer hanging at exit about one run in five on torch 2.3.
    Pass ``wait=False`` when leaving because of an error, where the others may never arrive."""
    global _objects_group
    if world.distributed and dist.is_initialized():
        if wait:
            dist.barrier(group=_objects_group)
        dist.destroy_process_group()
        _objects_group = None


def shard(items: Sequence[T], world: World) -> list[T]:
    """This rank's share of ``items``: every ``world.size``-th item from index ``world.rank``."""
    return list(items)[world.rank::world.size]


def gather(obj: object, world: World) -> list | None:
    """Every rank's ``obj`` (picklable), in rank order, on rank 0; None on the other ranks."""
    if not world.distributed:
        return [obj]
    out = [None] * world.size if world.main else None
    dist.gather_object(obj, out, dst=0, group=_objects_group)
    return out


class _Prefixed:
    """A text stream that starts every line (and every carriage-return redraw, as tqdm makes) with ``prefix``."""

    def __init__(self, stream, prefix: str) -> None:
        self.stream, self.prefix, self._at_start = stream, prefix, True

    def write(self, text: str) -> int:
        out = []
        for piece in re.split(r"([\r\n])", text):
            if piece in ("\r", "\n"):
                self._at_start = True
                out.append(piece)
            elif piece:
                if self._at_start:
                    out.append(self.prefix)
                    self._at_start = False
                out.append(piece)
        self.stream.write("".join(out))
        return len(text)

    def __getattr__(self, name: str):  # flush, isatty, encoding ...: the wrapped stream's
        return getattr(self.stream, name)


@contextlib.contextmanager
def rank_logs(world: World) -> Iterator[None]:
    """Under torchrun, prefix this process's stdout and stderr lines with ``[rank R/N]``, so the
    interleaved logs of a node say which process wrote what (torchrun's ``--log-dir`` and
    ``--redirects 3`` give a file per rank instead). Nothing changes for one process."""
    if not world.distributed:
        yield
        return
    prefix = f"[rank {world.rank}/{world.size}] "
    old = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Prefixed(sys.stdout, prefix), _Prefixed(sys.stderr, prefix)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = old


@contextlib.contextmanager
def session(world: World, device: torch.device) -> Iterator[None]:
    """A CLI command's distributed part: :func:`setup`, :func:`rank_logs` around the body, then
    :func:`teardown`, waiting for the other ranks on a normal exit but not on an error (they may never
    reach the barrier). Nothing but the body for one process."""
    setup(world, device)
    try:
        with rank_logs(world):
            yield
    except BaseException:
        teardown(world, wait=False)
        raise
    teardown(world)
