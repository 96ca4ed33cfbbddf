"""The loop's hooks for contrastive pre-training: a custom batch sampler (with exact resume),
bf16 autocast, and the gathered-feature InfoNCE under 2 gloo processes."""

from __future__ import annotations

import functools
import json
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from medmm.config import load_config
from medmm.objectives import contrastive
from medmm.objectives.contrastive import InfoNCELoss, info_nce
from medmm.train import EpochSampler, TrainConfig, fit
from medmm.train.distributed import all_reduce_mean, cleanup, gather_features, setup_distributed
from medmm.train.loop import EpochBatchSampler, GroupedBatchSampler
from test_distributed import free_port, launch
from test_train_loop import MLP, VAL, base_cfg, make_data, model_with_seed, noisy_collate, train_records, val_loss

# ----------------------------------------------------------------------------- batch samplers


def grouped_data(n: int = 100) -> tuple[list[dict], list[int]]:
    """make_data's samples with their index, in groups of 1-4 consecutive samples."""
    g = torch.Generator().manual_seed(0)
    groups: list[int] = []
    while len(groups) < n:
        groups += [len(set(groups))] * int(torch.randint(1, 5, (1,), generator=g))
    groups = groups[:n]
    return [{**s, "i": i} for i, s in enumerate(make_data(n))], groups


class RecordingCollate:
    """noisy_collate, noting each micro-batch's sample indices."""

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def __call__(self, samples: list[dict]) -> dict:
        self.seen.append([s["i"] for s in samples])
        return noisy_collate(samples)


def assert_grouped(batch: list[int], groups: list[int]) -> None:
    members = {g: {i for i, h in enumerate(groups) if h == g} for g in {groups[i] for i in batch}}
    for g, idx in members.items():
        assert idx <= set(batch), f"group {g} split: {sorted(idx - set(batch))} not in the batch"


@pytest.mark.parametrize("stop_at,accum", [(10, 1), (9, 2)])  # mid-epoch; with accumulation
def test_grouped_sampler_resume_is_bitwise_exact(tmp_path: Path, stop_at: int, accum: int) -> None:
    data, groups = grouped_data()
    sampler = functools.partial(GroupedBatchSampler, groups=groups)
    cfg = base_cfg(grad_accum_steps=accum)

    a, ca = model_with_seed(0), RecordingCollate()
    ra = fit(a, data, cfg, tmp_path / "a", collate_fn=ca, evaluate=val_loss, batch_sampler=sampler)
    b, cb = model_with_seed(0), RecordingCollate()
    rb = fit(b, data, cfg, tmp_path / "b", collate_fn=cb, evaluate=val_loss, batch_sampler=sampler,
             stop_after=stop_at)
    assert rb.interrupted and rb.global_step == stop_at
    torch.manual_seed(123)  # a fresh process: everything must come from the checkpoint
    np.random.seed(5)
    random.seed(5)
    b2, cb2 = MLP(), RecordingCollate()
    rb2 = fit(b2, data, cfg, tmp_path / "b", collate_fn=cb2, evaluate=val_loss, batch_sampler=sampler, resume=True)
    assert rb2.global_step == ra.global_step and rb2.steps_this_run == ra.global_step - stop_at

    assert cb.seen + cb2.seen == ca.seen  # the same micro-batches, in the same order
    for (name, pa), pb in zip(a.named_parameters(), b2.parameters()):
        assert torch.equal(pa, pb), name
    wa, wb = (load_file(tmp_path / d / "checkpoints/last/model.safetensors") for d in ("a", "b"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert train_records(tmp_path / "a/metrics.jsonl") == train_records(tmp_path / "b/metrics.jsonl")
    assert (ra.best_step, ra.best_metric) == (rb2.best_step, rb2.best_metric)

    if accum == 1:  # one micro-batch per step: each is a global batch
        spe = ra.global_step // cfg.epochs
        assert spe == 7 and len(ca.seen) == 3 * spe
        epochs = [ca.seen[e * spe : (e + 1) * spe] for e in range(cfg.epochs)]
        for batches in epochs:
            for batch in batches:
                assert_grouped(batch, groups)
            assert sorted(i for batch in batches for i in batch) == list(range(100))  # one world: no padding
            assert [len(x) for x in batches[:-1]] == [16] * (spe - 1)
        assert epochs[0] != epochs[1]  # reshuffled per epoch


def test_grouped_sampler_on_two_ranks() -> None:
    _, groups = grouped_data()
    ranks = [GroupedBatchSampler(100, 16, groups=groups, micro_batch=4, num_replicas=2, rank=r, seed=3)
             for r in (0, 1)]
    ref = ranks[0]
    assert ref.steps_per_epoch == 7 and [ref.step_samples(k) for k in range(7)] == [16] * 6 + [4]
    assert [ref.micro_batches(k) for k in range(7)] == [2] * 6 + [1]
    orders = []
    for epoch in (0, 1):
        for s in ranks:
            s.set_epoch(epoch)
        shares = [list(s) for s in ranks]
        assert len(shares[0]) == len(shares[1]) == len(ranks[0]) == 13
        assert [len(x) for x in shares[0]] == [len(x) for x in shares[1]]  # ranks stay in step
        pos = 0
        for k, batch in enumerate(ref.global_batches()):
            m = ref.micro_batches(k)
            got = [i for r in (0, 1) for mb in shares[r][pos : pos + m] for i in mb]
            assert sorted(got) == sorted(batch)  # a step's micro-batches on both ranks = the global batch
            assert_grouped(batch, groups)
            pos += m
        orders.append(ref.global_batches())
        assert sorted(i for b in orders[-1] for i in b) == list(range(100))
    assert orders[0] != orders[1]
    # Resume after 2 steps: the rest of the same epoch.
    ranks[1].set_epoch(1, skip_steps=2)
    assert list(ranks[1]) == shares[1][4:]
    # drop_last drops the incomplete batch. Batches of 15 leave two incomplete ones (14 and 11
    # samples), each padded to a multiple of a world of 3 with its own first samples.
    assert GroupedBatchSampler(100, 16, groups=groups, drop_last=True).steps_per_epoch == 6
    s3 = GroupedBatchSampler(100, 15, groups=groups, num_replicas=3, seed=3)
    assert [s3.step_samples(k) for k in range(7)] == [15] * 6 + [12]
    for batch, size in zip(s3.global_batches()[5:], (14, 11)):
        assert batch[size:] == batch[: len(batch) - size] and len(set(batch)) == size
        assert_grouped(batch, groups)
    with pytest.raises(ValueError, match="more than the global batch"):
        GroupedBatchSampler(4, 2, groups=[0, 0, 0, 1])
    with pytest.raises(ValueError, match="3 ids for 4 samples"):
        GroupedBatchSampler(4, 2, groups=[0, 1, 2])


def test_default_batch_sampler_is_epoch_sampler_in_micro_batches() -> None:
    for n, drop_last in ((100, False), (101, False), (100, True)):
        order = EpochSampler(n, 16, num_replicas=2, rank=1, seed=7, drop_last=drop_last)
        batches = EpochBatchSampler(n, 16, micro_batch=4, num_replicas=2, rank=1, seed=7, drop_last=drop_last)
        for epoch, skip in ((0, 0), (2, 3)):
            order.set_epoch(epoch, skip)
            batches.set_epoch(epoch, skip)
            idx = list(order)
            assert list(batches) == [idx[i : i + 4] for i in range(0, len(idx), 4)]
        n_micro = sum(batches.micro_batches(k) for k in range(batches.steps_per_epoch))
        assert n_micro == math.ceil(order.rank_len / 4)


def test_mid_epoch_resume_under_another_sampler_is_an_error(tmp_path: Path) -> None:
    data, groups = grouped_data()
    fit(model_with_seed(0), data, base_cfg(), tmp_path, collate_fn=noisy_collate, stop_after=3,
        batch_sampler=functools.partial(GroupedBatchSampler, groups=groups))
    assert json.loads((tmp_path / "checkpoints/last/trainer_state.json").read_text())["batch_sampler"] \
        == "GroupedBatchSampler"
    with pytest.raises(ValueError, match="different batch sampler.*GroupedBatchSampler -> EpochBatchSampler"):
        fit(model_with_seed(0), data, base_cfg(), tmp_path, collate_fn=noisy_collate, resume=True)


# ----------------------------------------------------------------------------- precision


def test_bf16_autocast_trains_on_cpu(tmp_path: Path) -> None:
    data = make_data()
    full = noisy_collate(data)
    m = model_with_seed(0)
    seen: list[tuple[bool, torch.dtype]] = []
    m.net[0].register_forward_hook(lambda mod, inp, out: seen.append((mod.training, out.dtype)))
    with torch.no_grad():
        m.eval()
        before = float(m(full)["mse"])
    seen.clear()
    r = fit(m, data, base_cfg(precision="bf16", lr=3e-2), tmp_path, collate_fn=noisy_collate, evaluate=val_loss)
    assert {d for training, d in seen if training} == {torch.bfloat16}  # the forward pass ran in bf16
    assert {d for training, d in seen if not training} == {torch.float32}  # evaluation as the user wrote it
    assert all(p.dtype == torch.float32 for p in m.parameters())
    opt = torch.load(tmp_path / "checkpoints/last/optimizer.pt", weights_only=True)["optimizer"]["state"]
    assert all(v.dtype == torch.float32 for st in opt.values() for k, v in st.items() if k != "step")
    losses = [x["loss"] for x in train_records(tmp_path / "metrics.jsonl") if x["type"] == "train"]
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    m.eval()
    with torch.no_grad():
        assert float(m(full)["mse"]) < 0.2 * before, (before, r.train_loss)  # fp32 gets the same: 2.72 -> 0.26
    state = json.loads((tmp_path / "checkpoints/last/trainer_state.json").read_text())
    assert state["train_config"]["precision"] == "bf16"
    assert load_config(tmp_path / "config.yaml", [], TrainConfig).precision == "bf16"


def test_precision_config() -> None:
    assert TrainConfig().precision == "fp32"
    assert load_config(None, ["precision=bf16"], TrainConfig).precision == "bf16"
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16', got 'fp16'"):
        TrainConfig(precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="precision.*'fp32', 'bf16'"):
        load_config(None, ["precision=fp16"], TrainConfig)


# ----------------------------------------------------------------------------- contrastive loss


def test_info_nce_matches_a_hand_computation() -> None:
    # Two orthonormal pairs, perfectly aligned, temperature 1: each row's logits are (1, 0).
    eye = torch.eye(2)
    assert float(info_nce(3 * eye, eye, 1.0)) == pytest.approx(math.log(1 + math.e) - 1, abs=1e-6)
    # Random views: rows for a -> b, columns for b -> a.
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    s = (a / a.norm(dim=1, keepdim=True)) @ (b / b.norm(dim=1, keepdim=True)).T / 0.2
    rows = (s.logsumexp(1) - s.diag()).mean()
    cols = (s.logsumexp(0) - s.diag()).mean()
    assert float(info_nce(a, b, 0.2)) == pytest.approx(float(rows + cols) / 2, abs=1e-6)
    loss = InfoNCELoss("za", "zb", temperature=0.2, learn_temperature=True)
    out = loss({"za": a, "zb": b})["loss_contrastive"]
    assert float(out.detach()) == pytest.approx(float(rows + cols) / 2, abs=1e-5)
    out.backward()
    assert loss.log_scale.grad is not None
    with pytest.raises(ValueError, match="same shape"):
        info_nce(a, b[:3])


class TwoTower(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(5, 4), nn.Linear(3, 4)

    def forward(self, xa: torch.Tensor, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.a(xa), self.b(xb)  # (B, 4) each


def two_tower() -> TwoTower:
    torch.manual_seed(0)
    return TwoTower()


def views(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, generator=g), torch.randn(n, 3, generator=g)


def _contrastive_rank(rank: int, world: int, port: int, out: str) -> None:
    """One rank: its share of the pairs through DDP, the gathered InfoNCE, DDP-averaged gradients;
    then the same with a gather that does not carry gradients, to show the test can tell."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    setup_distributed(device="cpu", timeout_s=60)
    xa, xb = views()
    n = len(xa) // world
    xa, xb = xa[rank * n : (rank + 1) * n], xb[rank * n : (rank + 1) * n]
    res: dict = {"gathered_in_rank_order": torch.equal(gather_features(xa), views()[0])}

    def step(name: str) -> None:
        model = DDP(two_tower())
        loss = info_nce(*model(xa, xb), temperature=0.1)
        loss.backward()
        res[name] = {"loss": float(loss), "mean_loss": float(all_reduce_mean(loss.detach())),
                     "grads": {k: p.grad.tolist() for k, p in model.module.named_parameters()}}

    step("gathered")

    def detached_gather(x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.detach())
        parts[rank] = x
        return torch.cat(parts)

    contrastive.gather_features = detached_gather
    step("detached")
    Path(out, f"rank{rank}.json").write_text(json.dumps(res))
    cleanup()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed unavailable")
def test_gathered_info_nce_on_two_ranks_equals_one_process(tmp_path: Path) -> None:
    ref = two_tower()
    loss = info_nce(*ref(*views()), temperature=0.1)
    loss.backward()
    loss = loss.detach()
    launch(_contrastive_rank, 2, free_port(), str(tmp_path))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["gathered_in_rank_order"] for r in ranks)
    for r in ranks:
        got = r["gathered"]
        assert got["mean_loss"] == pytest.approx(float(loss), abs=1e-5)  # mean over ranks = global loss
        assert abs(got["loss"] - float(loss)) > 1e-3  # ... while each rank's own loss is not
        for name, p in ref.named_parameters():
            torch.testing.assert_close(torch.tensor(got["grads"][name]), p.grad, atol=1e-5, rtol=0)
    assert ranks[0]["gathered"]["grads"] == ranks[1]["gathered"]["grads"]
    # Without gradients through the gather the loss is the same but the gradients are wrong.
    det = ranks[0]["detached"]
    assert det["mean_loss"] == pytest.approx(float(loss), abs=1e-5)
    off = max(float((torch.tensor(det["grads"][k]) - p.grad).abs().max()) for k, p in ref.named_parameters())
    assert off > 1e-3, off
