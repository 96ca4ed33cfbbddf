"""Data parallelism under `torchrun`: process-group setup, rank helpers and collectives.

`torchrun --nproc_per_node=K medmm pretrain ...` sets RANK / WORLD_SIZE / LOCAL_RANK /
MASTER_ADDR / MASTER_PORT in each process; `setup_distributed()` reads them and joins the group
(NCCL on GPU, gloo on CPU). Without those variables everything here is a no-op and the training
loop runs as one process, so the same code serves a laptop and a multi-node job.

What a run writes outside the loop (an exported model, a recipe's config and summary) is written
by rank 0 alone: `on_main(fn)` calls `fn` on rank 0 while the other ranks wait for it, and hands
every rank its result, so they return the same object without writing anything.

`gather_features(x)` is the differentiable all-gather that a contrastive loss needs to score each
rank's rows against the whole global batch (`medmm.objectives.contrastive`).
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

__all__ = [
    "DistInfo", "setup_distributed", "cleanup", "distributed_session", "is_distributed", "is_main_process",
    "rank", "world_size", "local_rank", "barrier", "all_reduce_mean", "broadcast_object", "all_gather_object",
    "gather_features", "on_main",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    initialized_here: bool  # True when this call created the process group (so its owner destroys it)


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def setup_distributed(backend: str | None = None, device: str = "auto", timeout_s: float | None = None) -> DistInfo:
    """Join the process group described by the torchrun environment (idempotent).

    `device`: "auto" picks cuda:LOCAL_RANK when CUDA is available, else the CPU; "cpu" forces
    the CPU (and gloo). `timeout_s` bounds how long a collective waits for a missing rank
    (torch's default is 10-30 minutes). Returns the rank, world size and the device this process should use.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but CUDA is not available")
    initialized_here = False
    ws = _env_int("WORLD_SIZE", 1)
    if dist.is_available() and dist.is_initialized():
        r, ws = dist.get_rank(), dist.get_world_size()
        lr = _env_int("LOCAL_RANK", r)
    elif ws > 1:
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        for var in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise ValueError(f"WORLD_SIZE={ws} but {var} is not set; launch with torchrun")
        r, lr = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
        if use_cuda:
            torch.cuda.set_device(lr)  # before init so that NCCL binds this process to its GPU
        kw = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
        dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"), init_method="env://",
                                rank=r, world_size=ws, **kw)
        initialized_here = True
    else:
        r, lr, ws = 0, 0, 1
    dev = torch.device(f"cuda:{lr % max(torch.cuda.device_count(), 1)}") if use_cuda else torch.device("cpu")
    return DistInfo(rank=r, local_rank=lr, world_size=ws, device=dev, initialized_here=initialized_here)


def cleanup() -> None:
    """Destroy the process group if one exists (after a final barrier so no rank is left waiting)."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()


@contextlib.contextmanager
def distributed_session(backend: str | None = None, device: str = "auto",
                        timeout_s: float | None = None) -> Iterator[DistInfo]:
    """`with distributed_session() as info:` -- set up from the environment, always clean up."""
    info = setup_distributed(backend, device, timeout_s)
    try:
        yield info
    finally:
        if info.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank: the process group's, else torchrun's RANK (before the group is set up
    or after it is destroyed), else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def local_rank() -> int:
    return _env_int("LOCAL_RANK", rank())


def is_main_process() -> bool:
    """Rank 0 (or a single process): the one that writes checkpoints, metrics, progress bars and
    what a command prints."""
    return rank() == 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of `t` over ranks (a copy; `t` itself is left untouched)."""
    if not is_distributed():
        return t.clone()
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a picklable object from rank `src` to every rank (in-memory between our own processes)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def gather_features(x: torch.Tensor) -> torch.Tensor:
    """Every rank's `x` (B, ...) stacked in rank order: (world_size * B, ...), rank r's rows at
    [r * B, (r + 1) * B). The identity in a single process.

    Differentiable: the gradient reaching rank r's `x` is the SUM over ranks of the gradients of
    their losses with respect to their copy of rows r (torch.distributed.nn.functional.all_gather
    reduces them in its backward). Every rank must pass the same shape.
    """
    if not is_distributed():
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)` on rank 0 only; every rank returns its result.

    The other ranks wait (in a broadcast, a barrier) until rank 0 is done, then get a copy of its
    result. If `fn` raises on rank 0 the others raise too, instead of waiting forever.
    """
    if not is_distributed():
        return fn(*args, **kwargs)
    if is_main_process():
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            broadcast_object(("error", f"{type(e).__name__}: {e}"))
            raise
        return broadcast_object(("ok", result))[1]
    status, value = broadcast_object(None)
    if status == "error":
        raise RuntimeError(f"rank 0 failed: {value}")
    return value
