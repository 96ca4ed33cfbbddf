"""Data parallelism: 2 gloo processes give the same run as 1 process with the same global batch."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import _ddp_worker as W
from medmm.train.distributed import all_reduce_mean, is_main_process, setup_distributed, world_size


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def losses(path: Path) -> list[tuple[int, float, float]]:
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    return [(r["step"], r["loss"], r["mae"]) for r in recs if r["type"] == "train"]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_processes_match_one(tmp_path: Path) -> None:
    # Reference: one process, global batch 16, no accumulation.
    ref = W.new_model()
    r1 = W.fit(ref, W.make_data(), W.config(), tmp_path / "one", collate_fn=W.collate, evaluate=W.evaluate)

    # Two ranks x 2 accumulation micro-batches of 4 = the same global batch of 16.
    mp.spawn(W.run, args=(2, free_port(), str(tmp_path / "two")), nprocs=2, join=True)

    ranks = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["params"] == ranks[1]["params"]  # replicas stay identical
    for p, q in zip(ref.parameters(), ranks[0]["params"]):
        torch.testing.assert_close(p.detach(), torch.tensor(q), atol=1e-5, rtol=0)
    assert ranks[0]["global_step"] == r1.global_step == 8 and ranks[0]["best_step"] == r1.best_step

    # Logged losses are all-reduced: the mean over the global batch, as in the 1-process run.
    one, two = losses(tmp_path / "one/metrics.jsonl"), losses(tmp_path / "two/metrics.jsonl")
    assert [s for s, *_ in one] == [s for s, *_ in two] == list(range(1, 9))
    for (_, l1, m1), (_, l2, m2) in zip(one, two):
        assert l1 == pytest.approx(l2, abs=1e-5) and m1 == pytest.approx(m2, abs=1e-5)
    # Only rank 0 wrote (one record per step, not two), and the checkpoint keeps both ranks' RNG streams.
    rng = torch.load(tmp_path / "two/checkpoints/last/rng.pt", weights_only=True)["ranks"]
    assert len(rng) == 2
    state = json.loads((tmp_path / "two/checkpoints/last/trainer_state.json").read_text())
    assert state["world_size"] == 2 and state["global_step"] == 8


def test_single_process_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = setup_distributed(device="cpu")
    assert (info.rank, info.world_size, info.initialized_here) == (0, 1, False)
    assert is_main_process() and world_size() == 1
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(all_reduce_mean(t), t)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(ValueError, match="launch with torchrun"):
        setup_distributed(device="cpu")
