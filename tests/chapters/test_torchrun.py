"""``degradation`` under torchrun: the sweep's runs are dealt to the ranks and gathered to rank 0, with
the numbers of a single process (two gloo processes on the CPU, the smoke profile's synthetic data)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import pytest
import torch

from skiplib.train import distributed as D

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
                 "TORCHELASTIC_RUN_ID")
# two seeds at one depth: rank 1 trains only seed 1's runs, which a single process trains after seed 0's
SWEEP = ["degradation", "--profile", "smoke", "--depths", "20", "--seeds", "0", "1"]


def env_for(tmp_path, name: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    # one thread each: the same kernels (and rounding) in both processes and in the single one
    env.update(OMP_NUM_THREADS="1", SKIPLIB_PROFILE="smoke", SKIPLIB_DATA=str(tmp_path / "data"),
               SKIPLIB_CHECKPOINTS=str(tmp_path / f"checkpoints-{name}"))  # neither run resumes the other's
    return env


def untimed(histories: dict) -> dict:
    return {label: [{k: v for k, v in r.items() if k != "seconds"} for r in records] for label, records in histories.items()}


def test_torchrun_shards_the_sweep_and_gathers_a_single_process_numbers(tmp_path):
    single = subprocess.run([sys.executable, "-m", "skiplib", *SWEEP, "--out-dir", str(tmp_path / "single")],
                            env=env_for(tmp_path, "single"), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    ranks = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                            "-m", "skiplib", *SWEEP, "--out-dir", str(tmp_path / "ranks")],
                           env=env_for(tmp_path, "ranks"), capture_output=True, text=True, timeout=300)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    one = json.loads((tmp_path / "single" / "degradation-smoke.json").read_text())
    two = json.loads((tmp_path / "ranks" / "degradation-smoke.json").read_text())
    assert list(two["histories"]) == ["plain20-s0", "plain20-s1", "resnet20-s0", "resnet20-s1"]
    assert untimed(two["histories"]) == untimed(one["histories"])
    assert two["config"] == one["config"] and two["config"]["seeds"] == [0, 1]
    assert (one["provenance"]["world_size"], two["provenance"]["world_size"]) == (1, 2)
    assert sorted(p.name for p in (tmp_path / "ranks").iterdir()) == ["degradation-smoke.json"]  # rank 0 wrote it
    # round robin over the run list: rank 0 has runs 0 and 2, rank 1 runs 1 and 3; logs carry the rank
    log = ranks.stdout + ranks.stderr
    assert "[rank 0/2] plain20-s0 1/1" in log and "[rank 1/2] plain20-s1 1/1" in log
    assert "[rank 0/2] plain20-s1 1/1" not in log and "[rank 1/2] resnet20-s0 1/1" not in log
    assert "[rank 0/2] wrote" in log and "[rank 1/2] wrote" not in log


def test_world_comes_from_torchruns_variables():
    assert D.world_from_env({}) == D.World(0, 1, 0)
    world = D.world_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert world == D.World(3, 4, 1) and world.distributed and not world.main
    for env, message in (({"WORLD_SIZE": "2"}, r"\$RANK must be a non-negative int"),
                         ({"RANK": "2", "WORLD_SIZE": "2"}, r"\$RANK must be in 0 \.\. \$WORLD_SIZE - 1"),
                         ({"RANK": "0", "WORLD_SIZE": "two"}, r"\$WORLD_SIZE must be a non-negative int")):
        with pytest.raises(ValueError, match=message):
            D.world_from_env(env)


def test_round_robin_shards_cover_every_run_once():
    runs = list(range(11))
    shards = [D.shard(runs, D.World(r, 3)) for r in range(3)]
    assert shards == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
    assert D.shard(runs, D.World()) == runs and D.gather("x", D.World()) == ["x"]


def test_each_rank_gets_its_own_device():
    cpu = torch.device("cpu")
    assert D.device_for(D.World(1, 2, 1), cpu) == cpu
    assert D.device_for(D.World(), torch.device("cuda")) == torch.device("cuda")  # one process: the profile's
    if torch.cuda.device_count() == 0:
        with pytest.raises(ValueError, match="LOCAL_RANK 1 has no GPU"):
            D.device_for(D.World(1, 2, 1), torch.device("cuda"))


def test_rank_logs_prefix_every_line_and_redraw(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with D.rank_logs(D.World(1, 2)):
        print("first\nsecond")
        sys.stdout.write("bar 1\rbar 2")
        sys.stdout.write(" done\n")
    print("after")
    assert out.getvalue() == "[rank 1/2] first\n[rank 1/2] second\n[rank 1/2] bar 1\r[rank 1/2] bar 2 done\nafter\n"


@pytest.mark.parametrize("fails", [False, True])
def test_a_session_waits_for_the_other_ranks_only_on_a_normal_exit(monkeypatch, fails):
    calls = []
    monkeypatch.setattr(D, "setup", lambda world, device: calls.append("setup"))
    monkeypatch.setattr(D, "teardown", lambda world, wait=True: calls.append(f"teardown wait={wait}"))
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    with pytest.raises(RuntimeError) if fails else contextlib.nullcontext():
        with D.session(D.World(1, 2), torch.device("cpu")):
            print("inside")
            if fails:
                raise RuntimeError("a run failed")
    assert calls == ["setup", f"teardown wait={not fails}"]
    assert out.getvalue() == "[rank 1/2] inside\n"  # the body ran under the rank's log prefix
