"""Data parallelism: 2 gloo processes give the same run as 1 process with the same global batch --
on a toy MLP and on the MedM-PLM pre-training recipe -- and only rank 0 writes."""

from __future__ import annotations

import json
import multiprocessing
import shutil
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


def launch(fn, *args, nprocs: int = 2) -> None:
    """`fn(rank, *args)` in `nprocs` processes, as torchrun would start them.

    Forked from a server that has imported the worker and medmm once (~10 s of imports on this
    machine), instead of each spawned process importing them again. (If another test started the
    forkserver first, the preload is skipped: slower, the same result.)
    """
    multiprocessing.get_context("forkserver").set_forkserver_preload(["_ddp_worker", "medmm.recipes.pretrain",
                                                                      "medmm.cli"])
    mp.start_processes(fn, args=args, nprocs=nprocs, join=True, start_method="forkserver")


def losses(path: Path) -> list[tuple[int, float, float]]:
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    return [(r["step"], r["loss"], r["mae"]) for r in recs if r["type"] == "train"]


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_two_processes_match_one(tmp_path: Path) -> None:
    # Reference: one process, global batch 16, no accumulation.
    ref = W.new_model()
    r1 = W.fit(ref, W.make_data(), W.config(), tmp_path / "one", collate_fn=W.collate, evaluate=W.evaluate)

    # Two ranks x 2 accumulation micro-batches of 4 = the same global batch of 16.
    launch(W.run, 2, free_port(), str(tmp_path / "two"))

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


# ----------------------------------------------------------------------------- MedM-PLM pre-training


PLM_ARGS = ["code.embed_dim=8", "code.gat_heads=2", "code.num_layers=1", "code.num_heads=2",
            "code.intermediate_size=32", "code.dropout=0.0", "dropout=0.0", "text.freeze_layers=0",
            "data.max_text_len=48", "train.batch_size=16", "train.max_steps=4", "train.eval_every=2",
            "train.early_stopping_patience=null", "train.log_every=1", "train.progress=false",
            "train.device=cpu"]


@pytest.fixture(scope="module")
def pretrain_runs(tmp_path_factory, make_tiny_world) -> dict:
    """`medmm pretrain medm-plm` on tiny data: once in this process, once as 2 gloo ranks."""
    from medmm.recipes import pretrain as P

    root = tmp_path_factory.mktemp("ddp-plm")
    w = make_tiny_world(root, 100, dict(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32,
                                        max_position_embeddings=64))
    # A pretrained text tower keeps its own config.json, dropout included: a copy without dropout.
    text = root / "text-nodrop"
    shutil.copytree(w["root"] / "text-mlm" / "text", text)
    cfg = json.loads((text / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (text / "config.json").write_text(json.dumps(cfg))
    args = [*PLM_ARGS, f"text.pretrained_path={text}"]

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = P.run("medm-plm", str(w["data"]), str(root / "one"), None, args)
    finally:
        torch.set_num_threads(n)
    two = root / "two"
    argv = ["pretrain", "medm-plm", "--data", str(w["data"]), "--out", str(two), *args]
    launch(W.run_pretrain, 2, free_port(), str(two), argv)
    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    return {"one": root / "one", "two": two, "summary": one, "ranks": ranks}


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_medm_plm_pretraining_on_two_ranks_matches_one_process(pretrain_runs) -> None:
    """2 ranks x 8 visits = one process's global batch of 16, to float rounding.

    What makes it so: masks drawn per visit from (seed, epoch, visit index), not from a rank's
    RNG stream; the token-weighted gradient (`loss_weight`: a step's gradient is the mean over
    the global batch's masked codes, not the mean of each rank's mean); and dropout 0 -- rank r's
    dropout stream is seeded with seed + r, so with dropout the ranks draw other dropout masks than
    the single process does, and no equality is possible. What still differs is the order of float
    sums (each rank pads and reduces its own 8 visits; gloo adds two gradients): the losses agree
    to ~1e-6 (tolerance 1e-5) and the weights to 6.5e-7 -- except the key bias of the code
    tower's attention, 9e-6: softmax ignores a constant added to every key score, so that
    gradient is zero up to rounding, and Adam turns rounding into lr-sized steps. Tolerance on
    the weights: 1e-4. Measured against it: without `loss_weight` the weights differ by 2.3e-3
    (and the logged step-1 loss by 8e-3), with masks drawn from each rank's RNG by 3.9e-3.
    """
    from safetensors.torch import load_file

    r = pretrain_runs
    assert [x["rc"] for x in r["ranks"]] == [0, 0]
    a = load_file(str(r["one"] / "checkpoints" / "last" / "model.safetensors"))
    b = load_file(str(r["two"] / "checkpoints" / "last" / "model.safetensors"))
    assert a.keys() == b.keys()
    diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert diff <= 1e-4, diff
    # Validation (rank 0, the same fixed masks) at steps 2 and 4, and the all-reduced train losses.
    evals = [[x for x in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())] for d in (r["one"], r["two"])]
    for kind, keys in (("eval", ("loss", "loss_t2c", "loss_c2c", "top5_t2c", "top5_c2c")),
                       ("train", ("loss", "loss_t2c", "loss_c2c"))):
        one, two = ([x for x in e if x["type"] == kind] for e in evals)
        assert [x["step"] for x in one] == [x["step"] for x in two] == ([2, 4] if kind == "eval" else [1, 2, 3, 4])
        for x, y in zip(one, two):
            for k in keys:
                assert x[k] == pytest.approx(y[k], abs=1e-5), (kind, x["step"], k)
    s1, s2 = r["summary"], r["ranks"][0]["summary"]
    assert s1["steps"] == s2["steps"] == 4 and s1["best_val"].keys() == s2["best_val"].keys()
    for k, v in s1["best_val"].items():
        assert v == pytest.approx(s2["best_val"][k], abs=1e-5), k


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_only_rank_0_writes_the_model_recipe_and_summary(pretrain_runs) -> None:
    r0, r1 = pretrain_runs["ranks"]
    two = pretrain_runs["two"]
    assert r1["writes"] == []  # rank 1 called no writer: no model, recipe, config, checkpoint or summary
    written = {(name, Path(t).relative_to(two).as_posix()) for name, t in r0["writes"]}
    for expected in [("save_config", "recipe.yaml"), ("save_config", "config.yaml"), ("save_pretrained", "model"),
                     ("save_checkpoint", "checkpoints/last"), ("write_text", "pretrain_summary.json"),
                     ("write_text", "summary.json")]:
        assert expected in written, expected
    assert sum(1 for name, t in r0["writes"] if name == "save_pretrained") == 1
    # Every rank returns rank 0's summary; rank 0 prints it.
    assert r0["summary"] == r1["summary"] and r0["summary"]["model_dir"] == str(two / "model")
    assert json.loads(r0["stdout"]) == r0["summary"]


def test_only_rank_0_prints(pretrain_runs) -> None:
    assert pretrain_runs["ranks"][1]["stdout"] == ""
