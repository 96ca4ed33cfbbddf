"""Worker for tests/test_distributed.py: one rank of a 2-process gloo run on 127.0.0.1.

Kept in its own module so that torch.multiprocessing's spawned children can import it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from medmm.train import TrainConfig, fit
from medmm.train.distributed import cleanup, is_main_process, setup_distributed, world_size


class Net(nn.Module):
    """Deterministic (no dropout) so that 1 and 2 processes must agree."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 1))

    def forward(self, batch):
        pred = self.net(batch["x"]).squeeze(-1)  # (B,)
        return {"loss": F.mse_loss(pred, batch["y"]), "mae": (pred - batch["y"]).abs().mean()}


def make_data(n: int = 64) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    y = torch.sin(x.sum(-1))
    return [{"x": x[i], "y": y[i]} for i in range(n)]


def collate(samples):
    return {"x": torch.stack([s["x"] for s in samples]), "y": torch.stack([s["y"] for s in samples])}


VAL = collate(make_data(32))


def evaluate(model):
    return {"loss": float(model(VAL)["loss"])}


def config(grad_accum_steps: int = 1) -> TrainConfig:
    return TrainConfig(epochs=2, batch_size=16, grad_accum_steps=grad_accum_steps, lr=5e-3, optimizer="adamw",
                       weight_decay=0.01, warmup_steps=2, lr_schedule="cosine", eval_every=2, log_every=1,
                       progress=False, device="cpu", seed=3)


def new_model() -> Net:
    torch.manual_seed(0)
    return Net()


def run(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    info = setup_distributed(timeout_s=60)
    assert info.world_size == world == world_size() and info.rank == rank
    assert is_main_process() == (rank == 0)
    # A different init on rank 1: DistributedDataParallel must broadcast rank 0's weights.
    model = new_model() if rank == 0 else Net()
    res = fit(model, make_data(), config(grad_accum_steps=2), out, collate_fn=collate, evaluate=evaluate)
    Path(out, f"rank{rank}.json").write_text(json.dumps({
        "params": [p.detach().tolist() for p in model.parameters()],
        "global_step": res.global_step, "best_step": res.best_step,
    }))
    cleanup()


# ----------------------------------------------------------------------------- the real recipe


def run_pretrain(rank: int, world: int, port: int, out: str, argv: list[str]) -> None:
    """One rank of `medmm pretrain medm-plm` (`medmm.cli.main(argv)`), as under torchrun.

    Records every file write (`Path.write_text` and the save functions of the recipe and the
    loop, by target) and what the command printed, and the summary `run` returned; all to
    out/rank{rank}.json, written after the command.
    """
    import contextlib
    import io

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    setup_distributed(timeout_s=120)  # a bounded wait if the other rank dies; the recipe finds it set up

    import medmm.train.loop as L
    from medmm import cli
    from medmm.recipes import pretrain as P

    writes: list[list[str]] = []

    def recorded(name, fn, target):
        def f(*args, **kwargs):
            writes.append([name, str(target(*args, **kwargs))])
            return fn(*args, **kwargs)
        return f

    real_write_text = Path.write_text
    P.save_pretrained = recorded("save_pretrained", P.save_pretrained, lambda m, d, **k: d)
    P.save_config = recorded("save_config", P.save_config, lambda c, p: p)
    L.save_config = recorded("save_config", L.save_config, lambda c, p: p)
    L.save_checkpoint = recorded("save_checkpoint", L.save_checkpoint, lambda p, *a, **k: p)
    Path.write_text = recorded("write_text", real_write_text, lambda self, *a, **k: self)
    summaries = []
    real_run = P.run

    def run(*args, **kwargs):
        summaries.append(real_run(*args, **kwargs))
        return summaries[-1]

    P.run = run
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            rc = cli.main(argv)
    finally:
        Path.write_text = real_write_text
    Path(out, f"rank{rank}.json").write_text(json.dumps({
        "rc": rc, "stdout": stdout.getvalue(), "summary": summaries[0] if summaries else None, "writes": writes}))
    cleanup()
