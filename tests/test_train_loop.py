"""The training loop: exact resume, checkpoints, metrics log, early stopping, accumulation, bad input."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DistributedSampler

from medmm.config import load_config
from medmm.train import EpochSampler, TrainConfig, Trainer, fit
from medmm.train.loop import lr_lambda


class MLP(nn.Module):
    def __init__(self, d_in: int = 6, hidden: int = 16, dropout: float = 0.3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, batch):
        pred = self.net(batch["x"]).squeeze(-1)  # (B,)
        mse = F.mse_loss(pred, batch["y"])
        l1 = (pred - batch["y"]).abs().mean()
        return {"loss": mse + 0.1 * l1, "mse": mse, "l1": l1, "pred": pred}  # "pred" is not a scalar: not logged


def make_data(n: int = 100, d: int = 6, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.linspace(-1, 1, d) + 0.1 * torch.randn(n, generator=g)
    return [{"x": x[i], "y": y[i]} for i in range(n)]


def noisy_collate(samples: list[dict]) -> dict:
    """Draws from all three global generators, as a random-masking collate would."""
    x = torch.stack([s["x"] for s in samples])
    x = x + 0.01 * torch.randn_like(x) + 0.01 * float(np.random.randn()) + 0.01 * random.random()
    return {"x": x, "y": torch.stack([s["y"] for s in samples])}


def plain_collate(samples: list[dict]) -> dict:
    return {"x": torch.stack([s["x"] for s in samples]), "y": torch.stack([s["y"] for s in samples])}


VAL = plain_collate(make_data(40, seed=99))


def val_loss(model: nn.Module) -> dict[str, float]:
    assert not model.training and not torch.is_grad_enabled()
    torch.rand(3)  # an evaluation that consumes randomness must not shift training
    return {"loss": float(model(VAL)["mse"]), "neg": -float(model(VAL)["mse"])}


def model_with_seed(seed: int, **kw) -> MLP:
    torch.manual_seed(seed)
    return MLP(**kw)


def train_records(path: Path) -> list[dict]:
    keep = ("step", "epoch", "loss", "mse", "l1", "lr", "grad_norm")
    out = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        out.append({k: r[k] for k in keep if k in r} | {"type": r["type"]})
    return out


def base_cfg(**kw) -> TrainConfig:
    d = dict(epochs=3, batch_size=16, lr=1e-2, weight_decay=0.01, lr_schedule="linear", warmup_steps=3,
             eval_every=5, log_every=2, progress=False, seed=1, restore_best=False)
    d.update(kw)
    return TrainConfig(**d)


# ----------------------------------------------------------------------------- exact resume


@pytest.mark.parametrize("stop_at,accum", [(10, 1), (7, 1), (9, 2)])  # mid-epoch, epoch boundary, accumulation
def test_resume_is_bitwise_exact(tmp_path: Path, stop_at: int, accum: int) -> None:
    data = make_data()  # 100 samples, batch 16 -> 7 steps per epoch (the last one holds 4)
    cfg = base_cfg(grad_accum_steps=accum)

    a = model_with_seed(0)
    ra = fit(a, data, cfg, tmp_path / "a", collate_fn=noisy_collate, evaluate=val_loss)
    assert ra.global_step == 21 and not ra.interrupted

    b = model_with_seed(0)
    rb1 = fit(b, data, cfg, tmp_path / "b", collate_fn=noisy_collate, evaluate=val_loss, stop_after=stop_at)
    assert rb1.interrupted and rb1.global_step == stop_at
    assert json.loads((tmp_path / "b/checkpoints/last/trainer_state.json").read_text())["global_step"] == stop_at

    torch.manual_seed(123)  # a fresh process: different init and RNG; everything must come from the checkpoint
    np.random.seed(5)
    random.seed(5)
    b2 = MLP()
    rb2 = fit(b2, data, cfg, tmp_path / "b", collate_fn=noisy_collate, evaluate=val_loss, resume=True)
    assert rb2.global_step == 21 and rb2.steps_this_run == 21 - stop_at

    for (name, pa), pb in zip(a.named_parameters(), b2.parameters()):
        assert torch.equal(pa, pb), name
    wa, wb = load_file(tmp_path / "a/checkpoints/last/model.safetensors"), \
        load_file(tmp_path / "b/checkpoints/last/model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # Same log (the resumed run's records continue the interrupted one's, no duplicates).
    assert train_records(tmp_path / "a/metrics.jsonl") == train_records(tmp_path / "b/metrics.jsonl")
    assert (ra.best_step, ra.best_metric) == (rb2.best_step, rb2.best_metric)
    assert ra.best_step is not None


def test_evaluation_does_not_shift_training_randomness(tmp_path: Path) -> None:
    """Dropout + random collate: the same weights with or without (RNG-consuming) evaluations."""
    models = []
    for name, ev in (("with", val_loss), ("without", None)):
        m = model_with_seed(0)
        fit(m, make_data(), base_cfg(epochs=2, eval_every=3), tmp_path / name, collate_fn=noisy_collate, evaluate=ev)
        models.append(m)
    assert all(torch.equal(p, q) for p, q in zip(models[0].parameters(), models[1].parameters()))


def test_resume_changes_nothing_when_training_is_finished(tmp_path: Path) -> None:
    data = make_data(48)
    m = model_with_seed(0)
    fit(m, data, base_cfg(epochs=1), tmp_path, collate_fn=plain_collate)
    before = [p.clone() for p in m.parameters()]
    r = fit(m, data, base_cfg(epochs=1), tmp_path, collate_fn=plain_collate, resume=True)
    assert r.steps_this_run == 0 and r.global_step == 3
    assert all(torch.equal(p, q) for p, q in zip(before, m.parameters()))


# ----------------------------------------------------------------------------- outputs


def test_checkpoint_and_log_contents(tmp_path: Path) -> None:
    cfg = base_cfg(epochs=2, eval_every="epoch", log_every=3)
    r = fit(model_with_seed(0), make_data(), cfg, tmp_path, collate_fn=noisy_collate, evaluate=val_loss)
    for d in ("last", "best"):
        ck = tmp_path / "checkpoints" / d
        assert sorted(p.name for p in ck.iterdir()) == \
            ["model.safetensors", "optimizer.pt", "rng.pt", "trainer_state.json"]
        # Tensors and plain containers only: loadable with weights_only=True.
        opt = torch.load(ck / "optimizer.pt", weights_only=True)
        assert set(opt) == {"optimizer", "scheduler"} and opt["scheduler"]["last_epoch"] > 0
        rng = torch.load(ck / "rng.pt", weights_only=True)["ranks"]
        assert len(rng) == 1 and set(rng[0]) >= {"torch", "numpy", "python"}
    state = json.loads((tmp_path / "checkpoints/last/trainer_state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (2, 0, 14)
    assert state["best_step"] == r.best_step and state["patience_counter"] in (0, 1)

    assert load_config(tmp_path / "config.yaml", [], TrainConfig) == cfg
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["global_step"] == 14 and summary["best_metric"] == pytest.approx(r.best_metric)

    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in recs if x["type"] == "train"]
    evals = [x for x in recs if x["type"] == "eval"]
    assert [x["step"] for x in train] == [3, 6, 9, 12, 14]  # every log_every steps, and the last step
    assert [x["step"] for x in evals] == [7, 14]  # per epoch
    for x in train:
        assert {"epoch", "loss", "mse", "l1", "lr", "grad_norm", "samples_per_s", "time"} <= set(x)
        assert "pred" not in x
    assert train[0]["loss"] == pytest.approx(train[0]["mse"] + 0.1 * train[0]["l1"], rel=1e-5)
    assert evals[-1]["epoch"] == 2.0 and "neg" in evals[-1]


def test_lr_schedule() -> None:
    cfg = TrainConfig(lr=1.0, warmup_steps=4, lr_schedule="linear")
    f = lr_lambda(cfg, total_steps=14)
    assert [f(s) for s in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert f(4) == 1.0 and f(9) == pytest.approx(0.5) and f(14) == 0.0
    c = lr_lambda(TrainConfig(lr_schedule="cosine"), total_steps=10)
    assert c(0) == 1.0 and c(5) == pytest.approx(0.5) and c(10) == pytest.approx(0.0)


def test_max_steps_is_the_budget_and_is_evaluated(tmp_path: Path) -> None:
    calls = []

    def ev(model):
        calls.append(1)
        return {"loss": 1.0}

    r = fit(model_with_seed(0), make_data(), base_cfg(epochs=1, max_steps=10, eval_every=None), tmp_path,
            collate_fn=plain_collate, evaluate=ev)
    assert r.global_step == 10 and r.epoch == pytest.approx(10 / 7, abs=1e-3)  # epochs ignored
    assert len(calls) == 1 and r.best_step == 10  # evaluated once, after the last step


# ----------------------------------------------------------------------------- early stopping


def test_early_stopping_keeps_and_restores_best(tmp_path: Path) -> None:
    script = iter([1.0, 0.5, 0.7, 0.8, 0.9, 0.95])
    cfg = base_cfg(epochs=5, eval_every=1, early_stopping_patience=2, restore_best=True)
    m = model_with_seed(0)
    r = fit(m, make_data(), cfg, tmp_path, collate_fn=noisy_collate, evaluate=lambda model: {"loss": next(script)})
    assert r.stopped_early and r.global_step == 4 and r.best_step == 2 and r.best_metric == 0.5
    best = load_file(tmp_path / "checkpoints/best/model.safetensors")
    last = load_file(tmp_path / "checkpoints/last/model.safetensors")
    sd = m.state_dict()
    assert all(torch.equal(sd[k], best[k]) for k in best)  # the model in memory is the best one
    assert not all(torch.equal(last[k], best[k]) for k in best)
    assert json.loads((tmp_path / "checkpoints/best/trainer_state.json").read_text())["global_step"] == 2
    # Resuming a run that stopped early trains no further.
    r2 = fit(model_with_seed(3), make_data(), cfg, tmp_path, collate_fn=noisy_collate,
             evaluate=lambda model: {"loss": 0.0}, resume=True)
    assert r2.steps_this_run == 0 and r2.stopped_early


def test_early_stopping_mode_max(tmp_path: Path) -> None:
    script = iter([0.1, 0.3, 0.2, 0.25, 0.4])
    cfg = base_cfg(epochs=5, eval_every=2, early_stopping_patience=2, early_stopping_metric="auroc",
                   early_stopping_mode="max")
    r = fit(model_with_seed(0), make_data(), cfg, tmp_path, collate_fn=plain_collate,
            evaluate=lambda model: {"auroc": next(script)})
    assert r.best_metric == 0.3 and r.best_step == 4 and r.global_step == 8 and r.stopped_early


# ----------------------------------------------------------------------------- data order and accumulation


@pytest.mark.parametrize("n", [100, 101])
def test_epoch_sampler_matches_distributed_sampler(n: int) -> None:
    data = list(range(n))
    for rank in (0, 1):
        ours = EpochSampler(n, 16, num_replicas=2, rank=rank, seed=7)
        ref = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=7)
        for epoch in (0, 3):
            ours.set_epoch(epoch)
            ref.set_epoch(epoch)
            assert list(ours) == list(ref)
        ours.set_epoch(3, skip_steps=2)  # resume after 2 steps: skip 2 x 8 indices of this rank
        assert list(ours) == list(ref)[16:] and len(ours) == len(ref) - 16
    # Global step k is order[k*B:(k+1)*B] whatever the world size.
    one = EpochSampler(n, 16, seed=7)
    one.set_epoch(1)
    two = [EpochSampler(n, 16, num_replicas=2, rank=r, seed=7) for r in (0, 1)]
    for s in two:
        s.set_epoch(1)
    first = list(one)[:16]
    assert sorted(first) == sorted(list(two[0])[:8] + list(two[1])[:8])


def test_drop_last_and_epoch_shuffling() -> None:
    s = EpochSampler(100, 16, drop_last=True, seed=0)
    assert s.steps_per_epoch == 6 and len(list(s)) == 96
    s.set_epoch(1)
    e1 = list(s)
    s.set_epoch(2)
    assert e1 != list(s)
    assert EpochSampler(100, 16, shuffle=False).rank_indices() == list(range(100))
    with pytest.raises(ValueError, match="no complete batch"):
        EpochSampler(10, 16, drop_last=True)


def test_gradient_accumulation_matches_full_batch(tmp_path: Path) -> None:
    # Plain SGD without clipping or weight decay: a parameter update is exactly -lr x gradient, so a
    # gradient that is not averaged over the micro-batches (4x too large) shows in the weights.
    # (Adam normalises the scale away and clipping caps it: either would hide the bug.)
    data = make_data(96)  # 6 full steps per epoch
    start = model_with_seed(0, dropout=0.0)
    models = []
    for accum in (1, 4):
        m = model_with_seed(0, dropout=0.0)
        fit(m, data, base_cfg(epochs=2, grad_accum_steps=accum, eval_every=None, optimizer="sgd", lr=0.05,
                              grad_clip=None, weight_decay=0.0, warmup_steps=0, lr_schedule="constant"),
            tmp_path / str(accum), collate_fn=plain_collate)
        models.append(m)
    for p, q, p0 in zip(models[0].parameters(), models[1].parameters(), start.parameters()):
        torch.testing.assert_close(q - p0, p - p0, atol=1e-6, rtol=1e-4)  # the updates, not just the weights
    assert not torch.equal(models[0].net[0].weight, start.net[0].weight)  # it did train


def test_sgd_step_is_minus_lr_times_the_mean_gradient(tmp_path: Path) -> None:
    data = make_data(16)
    m = model_with_seed(0, dropout=0.0)
    ref = model_with_seed(0, dropout=0.0)
    ref(plain_collate(data))["loss"].backward()
    fit(m, data, base_cfg(epochs=1, batch_size=16, grad_accum_steps=4, eval_every=None, optimizer="sgd", lr=0.1,
                          grad_clip=None, weight_decay=0.0, warmup_steps=0, lr_schedule="constant", shuffle=False),
        tmp_path / "run", collate_fn=plain_collate)
    for p, q in zip(m.parameters(), ref.parameters()):
        torch.testing.assert_close(p, (q - 0.1 * q.grad).detach(), atol=1e-6, rtol=1e-5)


class TokenModel(nn.Module):
    """A loss that is a mean over tokens, as masked-code prediction's: samples hold 1-5 tokens."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 1)

    def forward(self, batch):
        pred = self.lin(batch["x"]).squeeze(-1)  # (B, L)
        m = batch["mask"]
        return {"loss": ((pred - batch["y"]) ** 2 * m).sum() / m.sum()}


def token_data(n: int = 16) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 5, 6, generator=g), torch.randn(n, 5, generator=g)
    lengths = torch.randint(1, 6, (n,), generator=g)
    return [{"x": x[i], "y": y[i], "mask": (torch.arange(5) < lengths[i]).float()} for i in range(n)]


def token_collate(samples):
    return {k: torch.stack([s[k] for s in samples]) for k in ("x", "y", "mask")}


def test_loss_weight_makes_accumulation_the_mean_over_all_tokens(tmp_path: Path) -> None:
    """SGD step = -lr x the gradient of the mean over ALL tokens of the global batch, however it is
    cut into micro-batches; without `loss_weight` it is the mean of the micro-batch means."""
    data = token_data()
    torch.manual_seed(0)
    ref = TokenModel()
    ref(token_collate(data))["loss"].backward()
    cfg = base_cfg(epochs=1, batch_size=16, grad_accum_steps=4, eval_every=None, optimizer="sgd", lr=0.1,
                   grad_clip=None, weight_decay=0.0, warmup_steps=0, lr_schedule="constant", shuffle=False,
                   log_every=1)
    runs = {}
    for name, weight in (("weighted", lambda b: b["mask"].sum()), ("plain", None)):
        torch.manual_seed(0)
        m = TokenModel()
        fit(m, data, cfg, tmp_path / name, collate_fn=token_collate, loss_weight=weight)
        runs[name] = m
    for p, q in zip(runs["weighted"].parameters(), ref.parameters()):
        torch.testing.assert_close(p, (q - 0.1 * q.grad).detach(), atol=1e-6, rtol=1e-5)
    off = max(float((p - (q - 0.1 * q.grad)).detach().abs().max()) for p, q in zip(runs["plain"].parameters(),
                                                                         ref.parameters()))
    assert off > 1e-3, off  # the test can tell the two apart
    # The logged loss is the weighted mean too: the full batch's loss before the step.
    rec = [r for r in train_records(tmp_path / "weighted" / "metrics.jsonl") if r["type"] == "train"]
    torch.manual_seed(0)
    with torch.no_grad():
        assert rec[0]["loss"] == pytest.approx(float(TokenModel()(token_collate(data))["loss"]), rel=1e-6)


def test_collate_set_epoch_is_called_each_epoch_and_on_resume(tmp_path: Path) -> None:
    class EpochCollate:
        def __init__(self) -> None:
            self.epoch, self.seen = None, []

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __call__(self, samples):
            self.seen.append(self.epoch)
            return plain_collate(samples)

    c = EpochCollate()
    fit(model_with_seed(0), make_data(32), base_cfg(epochs=3), tmp_path / "a", collate_fn=c)  # 2 steps / epoch
    assert c.seen == [0, 0, 1, 1, 2, 2]
    c = EpochCollate()
    fit(model_with_seed(0), make_data(32), base_cfg(epochs=3), tmp_path / "b", collate_fn=c, stop_after=3)
    c2 = EpochCollate()
    fit(model_with_seed(0), make_data(32), base_cfg(epochs=3), tmp_path / "b", collate_fn=c2, resume=True)
    assert c.seen + c2.seen == [0, 0, 1, 1, 2, 2]


# ----------------------------------------------------------------------------- determinism


class PutModel(MLP):
    """Uses `Tensor.put_`, which has no deterministic implementation (on any device)."""

    def forward(self, batch):
        out = super().forward(batch)
        z = torch.zeros(4).put_(torch.tensor([1]), torch.tensor([0.0]))
        return {**out, "loss": out["loss"] + z.sum()}


def test_deterministic_modes(tmp_path: Path) -> None:
    assert TrainConfig().deterministic == "strict"  # the default
    assert TrainConfig(deterministic=True).deterministic == "strict"  # older configs' true / false
    assert TrainConfig(deterministic=False).deterministic == "off"
    assert load_config(None, ["deterministic=warn"], TrainConfig).deterministic == "warn"
    assert load_config(None, ["deterministic=true"], TrainConfig).deterministic == "strict"
    with pytest.raises(ValueError, match="deterministic"):
        TrainConfig(deterministic="loose")  # type: ignore[arg-type]

    seen = {}

    class Probe(MLP):
        def forward(self, batch):
            seen[mode] = (torch.are_deterministic_algorithms_enabled(),
                          torch.is_deterministic_algorithms_warn_only_enabled())
            return super().forward(batch)

    for mode in ("strict", "warn", "off"):
        fit(Probe(), make_data(16), base_cfg(epochs=1, deterministic=mode), tmp_path / mode, collate_fn=plain_collate)
    assert seen == {"strict": (True, False), "warn": (True, True), "off": (False, False)}

    with pytest.raises(RuntimeError, match="(?s)put_ does not have a deterministic.*train.deterministic=warn"):
        fit(PutModel(), make_data(16), base_cfg(epochs=1), tmp_path / "p1", collate_fn=plain_collate)
    with pytest.warns(UserWarning, match="put_ does not have a deterministic"):
        r = fit(PutModel(), make_data(16), base_cfg(epochs=1, deterministic="warn"), tmp_path / "p2",
                collate_fn=plain_collate)
    assert r.global_step == 1
    assert fit(PutModel(), make_data(16), base_cfg(epochs=1, deterministic="off"), tmp_path / "p3",
               collate_fn=plain_collate).global_step == 1


def test_cublas_workspace_is_set_for_cuda_unless_given(monkeypatch: pytest.MonkeyPatch) -> None:
    from medmm.train.loop import _cublas_workspace

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for mode, device, want in (("strict", "auto", ":4096:8"), ("warn", "cuda", ":4096:8"), ("off", "auto", None),
                               ("strict", "cpu", None)):
        monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
        _cublas_workspace(mode, device)
        assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") == want, (mode, device)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")  # the environment's choice wins
    _cublas_workspace("strict", "cuda")
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


# ----------------------------------------------------------------------------- bad input


def test_bad_model_outputs(tmp_path: Path) -> None:
    class NoDict(MLP):
        def forward(self, batch):
            return super().forward(batch)["loss"]

    class NoLoss(MLP):
        def forward(self, batch):
            return {"mse": super().forward(batch)["mse"]}

    class NaN(MLP):
        def forward(self, batch):
            out = super().forward(batch)
            return {"loss": out["loss"] * float("nan")}

    cfg = base_cfg(epochs=1)
    with pytest.raises(TypeError, match="must return a dict"):
        fit(NoDict(), make_data(), cfg, tmp_path / "a", collate_fn=plain_collate)
    with pytest.raises(KeyError, match="no 'loss'.*mse"):
        fit(NoLoss(), make_data(), cfg, tmp_path / "b", collate_fn=plain_collate)
    with pytest.raises(FloatingPointError, match="non-finite loss at global step 1"):
        fit(NaN(), make_data(), cfg, tmp_path / "c", collate_fn=plain_collate)


def test_bad_config_and_setup(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eval_every"):
        TrainConfig(eval_every=0)
    with pytest.raises(ValueError, match="divisible by world_size 1 x grad_accum_steps 3"):
        fit(MLP(), make_data(), base_cfg(grad_accum_steps=3), tmp_path / "a", collate_fn=plain_collate)
    with pytest.raises(KeyError, match="'auc' is not among.*'loss'"):
        fit(MLP(), make_data(), base_cfg(early_stopping_metric="auc"), tmp_path / "b", collate_fn=plain_collate,
            evaluate=val_loss)
    fit(MLP(), make_data(32), base_cfg(epochs=1), tmp_path / "c", collate_fn=plain_collate)
    with pytest.raises(FileExistsError, match="resume=True"):
        fit(MLP(), make_data(32), base_cfg(epochs=1), tmp_path / "c", collate_fn=plain_collate)
    r = fit(MLP(), make_data(32), base_cfg(epochs=1), tmp_path / "c", collate_fn=plain_collate, overwrite=True)
    assert r.global_step == 2
    with pytest.raises(ValueError, match="trained on 32 samples"):
        fit(MLP(), make_data(40), base_cfg(epochs=3), tmp_path / "c", collate_fn=plain_collate, resume=True)


def test_trainer_restores_global_determinism_flag(tmp_path: Path) -> None:
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    Trainer(MLP(), make_data(32), base_cfg(epochs=1), tmp_path, collate_fn=plain_collate).fit()
    assert (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()) \
        == before
