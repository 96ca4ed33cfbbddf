"""The one training loop, for pre-training and fine-tuning alike.

The loop knows nothing about models, tasks or objectives. It is given

* a model: an `nn.Module` whose `forward(batch)` returns a dict holding a scalar "loss" (the
  quantity minimised) and optionally other scalar named losses, which are logged;
* a map-style train `Dataset` and the `collate_fn` that turns a list of its samples into a batch
  (on the CPU; the loop moves it to the model's device with `medmm.train.device.to_device`);
  a collate_fn with a `set_epoch(epoch)` method is told each epoch before it runs, as the sampler is;
* optionally `loss_weight(batch)`: how many terms the model's "loss" averages over in that batch
  (masked tokens, say). Then a step's gradient is the mean over every term of the global batch,
  summed over micro-batches and ranks, instead of the mean of the per-micro-batch means; the two
  differ when micro-batches hold different numbers of terms (see "Data parallelism" below);
* optionally `evaluate(model) -> {name: float}`, called with the unwrapped model in eval mode
  under `torch.no_grad()` (in fp32 whatever `precision` says); its `early_stopping_metric` drives
  early stopping and `best/`;
* optionally `batch_sampler`, a factory of the epoch's batches (see "Batch samplers" below);
* a `TrainConfig` and an output directory.

Output directory:

    config.yaml                 the resolved run config (the caller's, else this TrainConfig)
    metrics.jsonl               one JSON object per logged step ("type": "train") or evaluation ("eval")
    summary.json                the returned FitResult
    checkpoints/last/           model.safetensors, optimizer.pt, rng.pt, trainer_state.json
    checkpoints/best/           the same, at the best evaluation

Exact resume. Data order is a permutation drawn from a generator seeded with `seed + epoch`
(`EpochSampler`, the same order as torch's `DistributedSampler`), so the position in an epoch
is just "steps consumed"; a resumed run skips those batches of the same permutation. Every
other source of randomness (dropout, random masking in a collate_fn) draws from the global
torch / numpy / python generators, whose states are saved with each checkpoint and restored,
and evaluation runs between a save and a restore of those states so that it never shifts the
training stream. The DataLoader gets its own generator, so creating an iterator consumes no
global randomness. With `deterministic: strict`, num_workers=0 and the same world size, N steps,
an interruption, and a resumed run give bitwise the same weights as one uninterrupted run.
(With num_workers > 0 a random collate_fn runs in workers seeded per epoch; a mid-epoch resume
then reproduces the data order but not those workers' draws -- unless, like the pre-training
masking collate, it draws from generators seeded by (seed, epoch, sample index).)

Batch samplers. Which samples form each step's global batch is the batch sampler's choice. The
default, `EpochBatchSampler`, cuts `EpochSampler`'s order into micro-batches; a recipe that needs
other batches (`GroupedBatchSampler`: a patient's samples from every source in one global batch)
passes `Trainer(..., batch_sampler=factory)`. The loop calls

    factory(num_samples, global_batch, micro_batch=, num_replicas=, rank=, shuffle=, seed=, drop_last=)

(the class itself, or a `functools.partial` of it binding its own arguments) once per `fit`, and
asks of what it returns:

    steps_per_epoch         optimizer steps in an epoch, the same for every epoch (the schedule and
                            `epochs` are planned from it)
    set_epoch(epoch, skip_steps=0)
                            the epoch to yield next, starting after its first `skip_steps` steps
    __iter__()              this rank's micro-batches (lists of dataset indices) from that step on
    micro_batches(step)     how many of them make step `step` of an epoch, 1 to grad_accum_steps:
                            the same on every rank, since the ranks synchronise at the last one
    step_samples(step)      the global number of samples in step `step` (counting padding)

Exact resume holds for any sampler whose epochs are pure functions of (seed, epoch), as the
default's are, drawing from no global generator: the loop resumes by `set_epoch(epoch,
skip_steps=steps done)`. The sampler's class name is saved with each checkpoint, and a mid-epoch
resume under another one is an error.

Precision (`TrainConfig.precision`): `fp32` (default), or `bf16`, which runs the model's forward
pass -- the loss included -- under `torch.autocast(<the device's type>, torch.bfloat16)`. The
parameters, gradients and optimizer state stay fp32, and the backward pass runs outside autocast;
scalar losses the model returns in bf16 are upcast to fp32 before they are weighted and logged.

Determinism (`TrainConfig.deterministic`), in force during `fit` and restored afterwards:

    strict (default; `true` in older configs)  torch.use_deterministic_algorithms(True): an op with
            no deterministic kernel raises. On CUDA also CUBLAS_WORKSPACE_CONFIG=:4096:8 (set, unless
            the environment already sets it, before the loop touches CUDA; cuBLAS reads it once per
            process, so a process that ran cuBLAS before `fit` must export it itself), cuDNN
            deterministic and no cuDNN benchmarking.
    warn    the same, but such an op only warns (warn_only=True): it runs, and bitwise exact resume
            is then not guaranteed. The explicit choice for a model that needs such an op.
    off     (`false`) torch's defaults.

Data parallelism (`torchrun`, see `medmm.train.distributed`): rank r takes every world_size-th
sample of the epoch's order and DDP averages the ranks' gradients, so with equal-sized shards and
a per-sample mean loss a step equals one process's step over the same global batch. A loss that
is a mean over tokens (masked codes, say) is a mean over each rank's tokens; DDP then averages
those means, weighting ranks equally however many tokens each holds. Give `loss_weight` and the
loop instead back-propagates each micro-batch's loss times its token count, all-reduces the
step's total count and scales the gradients by world_size / total (as torchtune does): the
gradient of the mean over the global batch's tokens, whatever the split. The logged losses are
weighted the same way. Dropout and any other draw from the global generators differ per rank
(rank r is seeded with seed + r), so only a run without them can match one process exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from medmm.config import save_config, to_dict
from medmm.train import distributed as D
from medmm.train.checkpoint import (
    capture_rng_state,
    load_checkpoint,
    load_model_weights,
    read_trainer_state,
    restore_rng_state,
    save_checkpoint,
    seed_everything,
)
from medmm.train.device import to_device

__all__ = ["TrainConfig", "Trainer", "FitResult", "EpochSampler", "EpochBatches", "EpochBatchSampler",
           "GroupedBatchSampler", "fit", "build_optimizer", "lr_lambda"]

EvalFn = Callable[[nn.Module], Mapping[str, float]]
LossWeightFn = Callable[[Any], "int | float | torch.Tensor"]
DETERMINISTIC_MODES = ("strict", "warn", "off")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """Optimisation and loop settings shared by pre-training and fine-tuning."""

    epochs: int = 1
    max_steps: int | None = None  # optimizer steps; when set it is the budget and `epochs` is ignored
    batch_size: int = 32  # GLOBAL batch (samples per optimizer step, summed over ranks and accumulation)
    grad_accum_steps: int = 1  # micro-batches per optimizer step; per-rank micro-batch = batch / (world * accum)
    lr: float = 1e-3
    weight_decay: float = 0.0  # applied to weight matrices only, not to biases / norms / 1-d params
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"  # sgd: plain, no momentum (probes, tests)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float | None = 1.0  # max global L2 norm of the gradients; null disables
    lr_schedule: Literal["constant", "linear", "cosine"] = "constant"  # after the warmup
    warmup_steps: int = 0  # linear warmup from 0 to lr
    eval_every: int | Literal["epoch"] | None = "epoch"  # steps, "epoch", or null (only after training)
    early_stopping_patience: int | None = None  # evaluations without improvement before stopping
    early_stopping_metric: str = "loss"  # a key of evaluate()'s dict
    early_stopping_mode: Literal["min", "max"] = "min"
    early_stopping_min_delta: float = 0.0
    restore_best: bool = True  # load best/ weights into the model when training ends
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = False  # drop the last incomplete global batch of each epoch
    num_workers: int = 0
    checkpoint_every: int | None = None  # steps between `last/` saves (it is saved every epoch end anyway)
    # strict | warn | off (module docstring); true / false, as older configs say, mean strict / off
    deterministic: bool | Literal["strict", "warn", "off"] = "strict"
    log_every: int = 10  # steps between metrics.jsonl train records
    progress: bool = True  # tqdm bars (shown only on a TTY, on rank 0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: the forward pass under autocast (module docstring)
    ddp_find_unused_parameters: bool = False  # needed when some parameters get no gradient in a step

    def __post_init__(self) -> None:
        def positive(name: str, allow_none: bool = False) -> None:
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer{' or null' if allow_none else ''}, got {v!r}")

        for name in ("epochs", "batch_size", "grad_accum_steps", "log_every"):
            positive(name)
        for name in ("max_steps", "early_stopping_patience", "checkpoint_every"):
            positive(name, allow_none=True)
        if self.eval_every != "epoch":
            positive("eval_every", allow_none=True)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.optimizer not in ("adam", "adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.lr_schedule not in ("constant", "linear", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant', 'linear' or 'cosine', got {self.lr_schedule!r}")
        if self.early_stopping_mode not in ("min", "max"):
            raise ValueError(f"early_stopping_mode must be 'min' or 'max', got {self.early_stopping_mode!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or null, got {self.grad_clip!r}")
        if self.warmup_steps < 0 or self.num_workers < 0:
            raise ValueError("warmup_steps and num_workers must be >= 0")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.deterministic is True or self.deterministic is False:
            self.deterministic = "strict" if self.deterministic else "off"
        if self.deterministic not in DETERMINISTIC_MODES:
            raise ValueError(f"deterministic must be 'strict', 'warn' or 'off' (or true / false), "
                             f"got {self.deterministic!r}")
        self.betas = tuple(self.betas)  # type: ignore[assignment]


@dataclass
class FitResult:
    global_step: int
    epoch: float  # epochs completed, fractional
    best_metric: float | None  # value of early_stopping_metric at the best evaluation
    best_step: int | None
    best_metrics: dict[str, float] = field(default_factory=dict)
    last_metrics: dict[str, float] = field(default_factory=dict)  # last evaluation
    train_loss: float | None = None  # mean loss over the last logging window
    stopped_early: bool = False
    interrupted: bool = False  # stopped by fit(stop_after=...), to be resumed
    steps_this_run: int = 0
    wall_time_s: float = 0.0  # summed over resumed runs
    out_dir: str = ""


# ----------------------------------------------------------------------------- data order


class EpochSampler(Sampler[int]):
    """Seeded, epoch-dependent order split across ranks, that can start mid-epoch.

    The order of epoch e is `randperm(n, generator seeded with seed + e)` -- the same as torch's
    `DistributedSampler(seed=seed).set_epoch(e)` -- padded by repetition to a multiple of the world
    size (or, with drop_last, cut to a multiple of the global batch); rank r takes every
    world_size-th index from r. Global step k of the epoch is therefore order[k*B:(k+1)*B] for any
    world size, and resuming after k steps means skipping k * B / world_size indices on each rank.
    """

    def __init__(self, num_samples: int, global_batch: int, *, num_replicas: int = 1, rank: int = 0,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_samples < 1:
            raise ValueError("the training dataset is empty")
        if global_batch % num_replicas:
            raise ValueError(f"global batch {global_batch} is not divisible by world size {num_replicas}")
        self.n, self.global_batch = num_samples, global_batch
        self.num_replicas, self.rank = num_replicas, rank
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.per_rank_step = global_batch // num_replicas
        self.epoch, self.skip_steps = 0, 0
        if self.steps_per_epoch < 1:
            raise ValueError(f"{num_samples} samples make no complete batch of {global_batch} with drop_last=True")

    def set_epoch(self, epoch: int, skip_steps: int = 0) -> None:
        self.epoch, self.skip_steps = epoch, skip_steps

    def global_order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.drop_last:
            return order[: self.n - self.n % self.global_batch]
        pad = (-self.n) % self.num_replicas
        if pad:  # as DistributedSampler: repeat the head of the order
            order += (order * math.ceil(pad / self.n))[:pad]
        return order

    def rank_indices(self) -> list[int]:
        return self.global_order()[self.rank :: self.num_replicas]

    @property
    def rank_len(self) -> int:
        if self.drop_last:
            return (self.n - self.n % self.global_batch) // self.num_replicas
        return math.ceil(self.n / self.num_replicas)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.rank_len / self.per_rank_step)

    def step_samples(self, step: int) -> int:
        """Global number of samples in step `step` of an epoch (counting padding)."""
        return min(self.per_rank_step, self.rank_len - step * self.per_rank_step) * self.num_replicas

    def __iter__(self) -> Iterator[int]:
        return iter(self.rank_indices()[self.skip_steps * self.per_rank_step :])

    def __len__(self) -> int:
        return max(self.rank_len - self.skip_steps * self.per_rank_step, 0)


class EpochBatches(Protocol):
    """What the loop asks of a batch sampler (module docstring, "Batch samplers")."""

    @property
    def steps_per_epoch(self) -> int: ...

    def set_epoch(self, epoch: int, skip_steps: int = 0) -> None: ...

    def micro_batches(self, step: int) -> int: ...

    def step_samples(self, step: int) -> int: ...

    def __iter__(self) -> Iterator[list[int]]: ...


BatchSamplerFactory = Callable[..., EpochBatches]


def _permutation(n: int, g: torch.Generator | None) -> list[int]:
    """A seeded permutation of range(n); no generator: range(n) itself (shuffle=False)."""
    return torch.randperm(n, generator=g).tolist() if g is not None else list(range(n))


def _micro_batches(share: list[int], micro_batch: int) -> Iterator[list[int]]:
    for i in range(0, len(share), micro_batch):
        yield share[i : i + micro_batch]


class EpochBatchSampler(Sampler[list[int]]):
    """The loop's default: `EpochSampler`'s order on this rank, cut into micro-batches.

    The same batches as a DataLoader with `sampler=EpochSampler(...)`, `batch_size=micro_batch`: a
    step's per-rank share is a multiple of micro_batch except in the epoch's last step.
    """

    def __init__(self, num_samples: int, global_batch: int, *, micro_batch: int | None = None,
                 num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False) -> None:
        self.order = EpochSampler(num_samples, global_batch, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                                  seed=seed, drop_last=drop_last)
        self.micro_batch = micro_batch or self.order.per_rank_step

    @property
    def steps_per_epoch(self) -> int:
        return self.order.steps_per_epoch

    def set_epoch(self, epoch: int, skip_steps: int = 0) -> None:
        self.order.set_epoch(epoch, skip_steps)

    def step_samples(self, step: int) -> int:
        return self.order.step_samples(step)

    def micro_batches(self, step: int) -> int:
        return math.ceil((self.step_samples(step) // self.order.num_replicas) / self.micro_batch)

    def __iter__(self) -> Iterator[list[int]]:
        return _micro_batches(list(self.order), self.micro_batch)

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.micro_batch)


class GroupedBatchSampler(Sampler[list[int]]):
    """Global batches that never split a group: e.g. a patient's samples from every source, so that
    a cross-source contrastive loss finds each patient's pairs within the batch.

    `groups[i]` is sample i's group id (`functools.partial(GroupedBatchSampler, groups=ids)` is the
    loop's `batch_sampler`). Packing happens once: first fit of the groups, in an order seeded with
    `seed`, into global batches of `global_batch` samples -- a layout of group sizes per batch,
    mixing sizes. Each epoch then deals the groups of each size to that size's places in an order
    seeded with seed + epoch, and shuffles the full batches: so the number and sizes of the batches,
    and steps_per_epoch, are the same every epoch. Batches the packing leaves incomplete come last;
    drop_last drops them, else each is padded to a multiple of the world size by repeating its
    own first samples (as `EpochSampler` pads, but within the batch, so no group is split).
    Rank r takes every num_replicas-th sample of a global batch from r and cuts it into
    micro-batches. shuffle=False: groups in order of first appearance, batches in packing order.
    """

    def __init__(self, num_samples: int, global_batch: int, *, groups: Sequence[Hashable],
                 micro_batch: int | None = None, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False) -> None:
        if len(groups) != num_samples:
            raise ValueError(f"groups has {len(groups)} ids for {num_samples} samples")
        if num_samples < 1:
            raise ValueError("the training dataset is empty")
        if global_batch % num_replicas:
            raise ValueError(f"global batch {global_batch} is not divisible by world size {num_replicas}")
        members: dict[Hashable, list[int]] = {}
        for i, g in enumerate(groups):
            members.setdefault(g, []).append(i)
        for g, idx in members.items():
            if len(idx) > global_batch:
                raise ValueError(f"group {g!r} has {len(idx)} samples, more than the global batch {global_batch}")
        self.global_batch, self.num_replicas, self.rank = global_batch, num_replicas, rank
        self.micro_batch = micro_batch or global_batch // num_replicas
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.groups = list(members.values())
        self.layout = self._pack()  # per batch, the sizes of the groups it holds; full batches first
        self.n_full = sum(1 for b in self.layout if sum(b) == global_batch)
        if drop_last:
            self.layout = self.layout[: self.n_full]
        self.epoch, self.skip_steps = 0, 0
        if self.steps_per_epoch < 1:
            raise ValueError(f"{num_samples} samples make no complete batch of {global_batch} with drop_last=True")

    def _pack(self) -> list[list[int]]:
        """First fit of the group sizes into batches of global_batch; full batches first."""
        g = torch.Generator().manual_seed(self.seed) if self.shuffle else None
        batches: list[list[int]] = []
        room: list[int] = []
        open_: list[int] = []  # batches with room left
        for gi in _permutation(len(self.groups), g):
            size = len(self.groups[gi])
            b = next((b for b in open_ if room[b] >= size), None)
            if b is None:
                b = len(batches)
                batches.append([])
                room.append(self.global_batch)
                open_.append(b)
            batches[b].append(size)
            room[b] -= size
            if room[b] == 0:
                open_.remove(b)
        return [x for x, r in zip(batches, room) if r == 0] + [x for x, r in zip(batches, room) if r > 0]

    def set_epoch(self, epoch: int, skip_steps: int = 0) -> None:
        self.epoch, self.skip_steps = epoch, skip_steps

    def global_batches(self) -> list[list[int]]:
        """This epoch's global batches of sample indices (padded), in step order."""
        g = torch.Generator().manual_seed(self.seed + self.epoch) if self.shuffle else None
        by_size: dict[int, list[list[int]]] = {}
        for idx in self.groups:
            by_size.setdefault(len(idx), []).append(idx)
        dealt = {size: iter([gs[i] for i in _permutation(len(gs), g)]) for size, gs in sorted(by_size.items())}
        batches = [[i for size in sizes for i in next(dealt[size])] for sizes in self.layout]
        batches = [batches[i] for i in _permutation(self.n_full, g)] + batches[self.n_full :]
        for b in batches[self.n_full :]:
            pad = (-len(b)) % self.num_replicas
            b += (b * math.ceil(pad / len(b)))[:pad]
        return batches

    @property
    def steps_per_epoch(self) -> int:
        return len(self.layout)

    def step_samples(self, step: int) -> int:
        n = sum(self.layout[step])
        return n + (-n) % self.num_replicas

    def micro_batches(self, step: int) -> int:
        return math.ceil((self.step_samples(step) // self.num_replicas) / self.micro_batch)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.global_batches()[self.skip_steps :]:
            yield from _micro_batches(batch[self.rank :: self.num_replicas], self.micro_batch)

    def __len__(self) -> int:
        return sum(self.micro_batches(k) for k in range(self.skip_steps, self.steps_per_epoch))


# ----------------------------------------------------------------------------- optimiser


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam / AdamW / SGD over the trainable parameters; weight decay on matrices only (as nanoGPT)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    if not decay and not no_decay:
        raise ValueError("the model has no trainable parameters")
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    # foreach=False: the per-parameter path, identical on every machine and easy to reason about.
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, foreach=False)
    cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, foreach=False)


def lr_lambda(cfg: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Multiplier of cfg.lr at optimizer step `s` (0-based): linear warmup, then the schedule."""
    warm = cfg.warmup_steps

    def f(s: int) -> float:
        if s < warm:
            return (s + 1) / (warm + 1)
        if cfg.lr_schedule == "constant":
            return 1.0
        progress = min((s - warm) / max(total_steps - warm, 1), 1.0)
        if cfg.lr_schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


# ----------------------------------------------------------------------------- helpers


def _scalar_losses(out: Any, step: int) -> dict[str, torch.Tensor]:
    """The "loss" and the other scalar entries of a model output (non-scalar entries are features)."""
    if not isinstance(out, Mapping):
        raise TypeError(f"model.forward(batch) must return a dict with a 'loss' entry, got {type(out).__name__}")
    if "loss" not in out:
        raise KeyError(f"model.forward(batch) returned no 'loss' at step {step}; keys: {sorted(out)}")
    loss = out["loss"]
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ValueError(f"model output 'loss' must be a scalar tensor, got {shape}")
    scalars = {}
    for k, v in out.items():
        if isinstance(v, torch.Tensor) and v.dim() == 0 and v.is_floating_point():
            # A bf16 loss (autocast) would round the weights it is multiplied by and the logged sums.
            scalars[k] = v.float() if v.dtype in (torch.bfloat16, torch.float16) else v
        elif isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool)):
            scalars[k] = torch.tensor(float(v), device=loss.device)
    return scalars


def _cublas_workspace(mode: str, device: str) -> None:
    """Deterministic cuBLAS needs a fixed workspace, read when cuBLAS starts: set it before the
    loop's first CUDA call (an explicit setting in the environment wins)."""
    if mode != "off" and device != "cpu" and torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


@contextlib.contextmanager
def _deterministic(mode: str) -> Iterator[None]:
    prev_alg = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_bench, prev_det = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    if mode != "off":
        torch.use_deterministic_algorithms(True, warn_only=mode == "warn")
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    try:
        yield
    except RuntimeError as e:
        if mode == "strict" and "does not have a deterministic implementation" in str(e):
            raise RuntimeError(f"{e}\n\ntrain.deterministic is 'strict': set train.deterministic=warn to run "
                               "this op with a warning instead (bitwise exact resume is then not "
                               "guaranteed), or off") from e
        raise
    finally:
        torch.use_deterministic_algorithms(prev_alg, warn_only=prev_warn)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = prev_bench, prev_det


# Settings whose change makes a resumed run a different experiment (data order / batch composition).
_RESUME_KEYS = ("batch_size", "seed", "shuffle", "drop_last")


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """Epochs, evaluation, early stopping, exact-resume checkpoints, metrics, progress, DDP.

    Example:
        trainer = Trainer(model, train_ds, cfg, "runs/x", collate_fn=collate, evaluate=val_fn)
        result = trainer.fit()              # or fit(resume=True) to continue runs/x/checkpoints/last
    """

    def __init__(self, model: nn.Module, train_dataset: Dataset, cfg: TrainConfig, out_dir: str | Path, *,
                 collate_fn: Callable[[list[Any]], Any] | None = None, evaluate: EvalFn | None = None,
                 run_config: Any | None = None, loss_weight: LossWeightFn | None = None,
                 batch_sampler: BatchSamplerFactory | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        if not hasattr(train_dataset, "__len__") or not hasattr(train_dataset, "__getitem__"):
            raise TypeError("train_dataset must be a map-style Dataset (with __len__ and __getitem__)")
        self.model, self.train_dataset, self.cfg = model, train_dataset, cfg
        self.out_dir = Path(out_dir)
        self.collate_fn, self.evaluate_fn, self.run_config = collate_fn, evaluate, run_config
        self.loss_weight = loss_weight
        self.batch_sampler = batch_sampler or EpochBatchSampler
        self.ckpt_dir = self.out_dir / "checkpoints"
        self.last_dir, self.best_dir = self.ckpt_dir / "last", self.ckpt_dir / "best"
        self.metrics_path = self.out_dir / "metrics.jsonl"

    # -- public ---------------------------------------------------------------------------------

    def fit(self, resume: bool = False, *, stop_after: int | None = None, overwrite: bool = False) -> FitResult:
        """Train; return the summary (also written to out/summary.json on rank 0).

        resume: continue from out/checkpoints/last exactly (a fresh start when there is none).
        stop_after: interrupt once the global step reaches this value, writing `last` as a
            preemption would; nothing else (schedule, evaluation) changes, so a resumed run
            continues as if never stopped.
        overwrite: start fresh even if out/ holds a previous run's checkpoints and metrics.
        """
        _cublas_workspace(self.cfg.deterministic, self.cfg.device)
        info = D.setup_distributed(device=self.cfg.device)
        try:
            with _deterministic(self.cfg.deterministic):
                return self._fit(info, resume, stop_after, overwrite)
        finally:
            if info.initialized_here:
                D.cleanup()

    # -- setup ----------------------------------------------------------------------------------

    def _fit(self, info: D.DistInfo, resume: bool, stop_after: int | None, overwrite: bool) -> FitResult:
        cfg, W, main = self.cfg, info.world_size, info.rank == 0
        if cfg.batch_size % (W * cfg.grad_accum_steps):
            raise ValueError(f"batch_size {cfg.batch_size} (global) must be divisible by world_size {W} x "
                             f"grad_accum_steps {cfg.grad_accum_steps}")
        micro_bs = cfg.batch_size // (W * cfg.grad_accum_steps)
        self.device, self.rank, self.world, self.main = info.device, info.rank, W, main
        n = len(self.train_dataset)
        sampler = self.batch_sampler(n, cfg.batch_size, micro_batch=micro_bs, num_replicas=W, rank=info.rank,
                                     shuffle=cfg.shuffle, seed=cfg.seed, drop_last=cfg.drop_last)
        self.sampler = sampler
        spe = sampler.steps_per_epoch
        if not isinstance(spe, int) or spe < 1:
            raise ValueError(f"batch sampler {type(sampler).__name__}: steps_per_epoch must be a positive "
                             f"integer, got {spe!r}")
        total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * spe

        # Previous run in out/?
        has_last = (self.last_dir / "trainer_state.json").is_file()
        if has_last and not resume and not overwrite:
            raise FileExistsError(f"{self.out_dir} already holds a run (checkpoints/last); pass resume=True to "
                                  "continue it, overwrite=True to start again, or choose another output directory")
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if not (resume and has_last):
                shutil.rmtree(self.ckpt_dir, ignore_errors=True)
                self.metrics_path.unlink(missing_ok=True)
            save_config(self.run_config if self.run_config is not None else cfg, self.out_dir / "config.yaml")
        D.barrier()

        model = self.model.to(self.device)
        self.raw_model = model
        optimizer = build_optimizer(model, cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
        self.optimizer, self.scheduler = optimizer, scheduler

        st: dict[str, Any] = {
            "epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_metric": None, "best_step": None,
            "best_metrics": {}, "last_metrics": {}, "last_eval_step": None, "patience_counter": 0,
            "stopped_early": False, "samples_seen": 0, "wall_time_s": 0.0, "train_loss": None, "log_window": None,
        }
        if resume and has_last:
            saved = read_trainer_state(self.last_dir)
            self._check_resume(saved, n, type(sampler).__name__)
            saved_state, rng = load_checkpoint(self.last_dir, model, optimizer, scheduler, map_location=self.device)
            st.update({k: v for k, v in saved_state.items() if k in st})
            if rng:
                if len(rng) != W and main:
                    print(f"resume: checkpoint was written by {len(rng)} process(es), now {W}; data order is "
                          "preserved, per-rank random streams are not", file=sys.stderr)
                restore_rng_state(rng[info.rank % len(rng)])
            if main:
                self._truncate_metrics(st["global_step"])
        else:
            # Training randomness starts from the seed, whatever the model's initialisation consumed;
            # ranks get different streams so that dropout masks differ across data shards.
            seed_everything(cfg.seed + info.rank)
        self.st = st

        if W > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            train_model: nn.Module = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                         find_unused_parameters=cfg.ddp_find_unused_parameters)
        else:
            train_model = model
        self.train_model = train_model

        loader_gen = torch.Generator()
        loader = DataLoader(self.train_dataset, batch_sampler=sampler, collate_fn=self.collate_fn,
                            num_workers=cfg.num_workers, generator=loader_gen, pin_memory=self.device.type == "cuda")
        self._metrics_file = open(self.metrics_path, "a", encoding="utf-8") if main else None
        try:
            return self._run(loader, loader_gen, stop_after, total_steps)
        finally:
            if self._metrics_file is not None:
                self._metrics_file.close()

    def _check_resume(self, saved: Mapping[str, Any], n: int, sampler: str) -> None:
        old = saved.get("train_config", {})
        mid_epoch = saved.get("step_in_epoch", 0) > 0
        for k in _RESUME_KEYS:
            if k in old and old[k] != to_dict(getattr(self.cfg, k)) and mid_epoch:
                raise ValueError(f"{self.last_dir}: cannot resume mid-epoch with a different {k} "
                                 f"({old[k]!r} -> {getattr(self.cfg, k)!r})")
        # Checkpoints from before the batch_sampler hook were written under the default.
        old_sampler = saved.get("batch_sampler", EpochBatchSampler.__name__)
        if mid_epoch and old_sampler != sampler:
            raise ValueError(f"{self.last_dir}: cannot resume mid-epoch with a different batch sampler "
                             f"({old_sampler} -> {sampler})")
        if saved.get("num_samples", n) != n:
            raise ValueError(f"{self.last_dir}: the checkpoint was trained on {saved['num_samples']} samples, the "
                             f"dataset now has {n}; the data order cannot be resumed")

    # -- the loop -------------------------------------------------------------------------------

    def _done(self, total_steps: int) -> bool:
        st = self.st
        return st["stopped_early"] or st["global_step"] >= total_steps

    def _run(self, loader: DataLoader, loader_gen: torch.Generator, stop_after: int | None,
             total_steps: int) -> FitResult:
        cfg, st, sampler = self.cfg, self.st, self.sampler
        spe, accum = sampler.steps_per_epoch, cfg.grad_accum_steps
        t_start, wall0 = time.perf_counter(), st["wall_time_s"]
        steps_this_run, interrupted = 0, False
        self.raw_model.train()
        self.window = self._new_window(st.pop("log_window", None), self.device)
        show = cfg.progress and self.main and sys.stderr.isatty()

        while not self._done(total_steps) and not interrupted:
            epoch, start = st["epoch"], st["step_in_epoch"]
            sampler.set_epoch(epoch, skip_steps=start)
            if hasattr(self.collate_fn, "set_epoch"):  # before iter(): workers get the collate_fn as it is then
                self.collate_fn.set_epoch(epoch)
            loader_gen.manual_seed(cfg.seed + epoch)  # worker seeds for this epoch; untouched global RNG
            it = iter(loader)
            bar = tqdm(total=spe, initial=start, desc=f"epoch {epoch + 1}", disable=not show, leave=False,
                       dynamic_ncols=True)
            for k in range(start, spe):
                n_micro = sampler.micro_batches(k)
                if not 1 <= n_micro <= accum:
                    raise ValueError(f"batch sampler {type(sampler).__name__}: step {k} has {n_micro} micro-batches, "
                                     f"expected 1 to grad_accum_steps={accum}")
                lr = self.optimizer.param_groups[0]["lr"]
                losses, grad_norm = self._train_step(it, n_micro, st["global_step"])
                self.scheduler.step()
                st["global_step"] += 1
                st["step_in_epoch"] += 1
                steps_this_run += 1
                st["samples_seen"] += sampler.step_samples(k)
                bar.update(1)
                self._accumulate(self.window, losses, grad_norm, lr, sampler.step_samples(k))
                end_of_epoch = st["step_in_epoch"] == spe
                if end_of_epoch:
                    st["epoch"] += 1
                    st["step_in_epoch"] = 0
                gs = st["global_step"]
                last_step = gs >= total_steps
                st["wall_time_s"] = wall0 + time.perf_counter() - t_start
                if gs % cfg.log_every == 0 or last_step:
                    rec = self._log_train(self.window, spe)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}")
                    self.window = self._new_window()
                if self.evaluate_fn is not None and (
                    (cfg.eval_every == "epoch" and end_of_epoch)
                    or (isinstance(cfg.eval_every, int) and gs % cfg.eval_every == 0)
                    or (last_step and st["last_eval_step"] != gs)
                ):
                    self._run_eval(spe)
                interrupted = stop_after is not None and gs >= stop_after and not last_step
                if (end_of_epoch or last_step or st["stopped_early"] or interrupted
                        or (cfg.checkpoint_every and gs % cfg.checkpoint_every == 0)):
                    st["wall_time_s"] = wall0 + time.perf_counter() - t_start
                    self._save(self.last_dir)
                if last_step or st["stopped_early"] or interrupted:
                    break
            bar.close()
            del it  # shut down workers before the next epoch's iterator

        if self.evaluate_fn is not None and self.cfg.restore_best and not interrupted and self.best_dir.is_dir():
            D.barrier()
            load_model_weights(self.raw_model, self.best_dir)
        result = FitResult(
            global_step=st["global_step"], epoch=round(st["global_step"] / spe, 4), best_metric=st["best_metric"],
            best_step=st["best_step"], best_metrics=dict(st["best_metrics"]), last_metrics=dict(st["last_metrics"]),
            train_loss=st["train_loss"], stopped_early=st["stopped_early"], interrupted=interrupted,
            steps_this_run=steps_this_run, wall_time_s=round(wall0 + time.perf_counter() - t_start, 3),
            out_dir=str(self.out_dir),
        )
        if self.main:
            (self.out_dir / "summary.json").write_text(json.dumps(dataclasses.asdict(result), indent=2) + "\n",
                                                       encoding="utf-8")
        D.barrier()
        return result

    def _forward_precision(self) -> contextlib.AbstractContextManager:
        if self.cfg.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _train_step(self, it: Iterator[Any], n_micro: int, step: int) -> tuple[dict[str, torch.Tensor], Any]:
        """One optimizer step over `n_micro` micro-batches: the gradient of the mean of their losses,
        or -- with `loss_weight`, on more than one micro-batch or rank -- of the mean over all terms
        of the global batch (each micro-batch's loss times its weight, gradients then scaled by
        world_size / the step's total weight: DDP has already divided by world_size)."""
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, torch.Tensor] = {}
        ddp = self.train_model is not self.raw_model
        weighted = self.loss_weight is not None and (self.world > 1 or n_micro > 1)
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for i in range(n_micro):
            try:
                batch = next(it)
            except StopIteration:
                raise RuntimeError(f"the data loader ran out at step {step} (micro-batch {i}); the dataset "
                                   "length changed during training?") from None
            batch = to_device(batch, self.device)
            sync = ddp is False or i == n_micro - 1
            ctx = contextlib.nullcontext() if sync else self.train_model.no_sync()  # type: ignore[operator]
            with ctx:
                with self._forward_precision():
                    out = self.train_model(batch)
                losses = _scalar_losses(out, step)
                loss = losses["loss"]
                if not torch.isfinite(loss):
                    vals = {k: float(v.detach()) for k, v in losses.items()}
                    raise FloatingPointError(f"non-finite loss at global step {step + 1} "
                                             f"(epoch {self.st['epoch']}): {vals}")
                if weighted:
                    w = torch.as_tensor(self.loss_weight(batch), device=loss.device).detach()  # type: ignore[misc]
                    total += w.to(torch.float64)
                    (loss * w.to(loss.dtype)).backward()
                else:
                    (loss / n_micro).backward()
            for k, v in losses.items():
                v = v.detach().float() * w.float() if weighted else v.detach().float() / n_micro
                sums[k] = sums[k] + v if k in sums else v
        if weighted:
            if self.world > 1:
                import torch.distributed as dist

                dist.all_reduce(total)
            # No term at all in the global batch: every loss was 0 * (a graph), so were the gradients.
            scale = self.world / total.clamp(min=1.0)
            for p in self.raw_model.parameters():
                if p.grad is not None:
                    p.grad.mul_(scale.to(p.grad.dtype))
            # Each rank's share of the global mean, times world_size: the log's mean over ranks is
            # then the global batch's weighted mean.
            sums = {k: v * scale.float() for k, v in sums.items()}
        grad_norm = None
        if self.cfg.grad_clip is not None:
            params = [p for p in self.raw_model.parameters() if p.grad is not None]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.grad_clip, foreach=False)
        self.optimizer.step()
        return sums, grad_norm

    # -- logging --------------------------------------------------------------------------------

    @staticmethod
    def _new_window(saved: Mapping[str, Any] | None = None, device: torch.device | None = None) -> dict[str, Any]:
        """Running sums of the named losses since the last train record (restored on resume, so that
        the record after an interruption averages the same steps as an uninterrupted run's)."""
        w: dict[str, Any] = {"sums": {}, "counts": {}, "steps": 0, "samples": 0, "t0": time.perf_counter(),
                             "lr": None, "grad_norm": None}
        if saved:
            w.update(counts=dict(saved["counts"]), steps=saved["steps"], samples=saved["samples"], lr=saved["lr"])
            w["sums"] = {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in saved["sums"].items()}
            if saved["grad_norm"] is not None:
                w["grad_norm"] = torch.tensor(saved["grad_norm"], dtype=torch.float32, device=device)
        return w

    @staticmethod
    def _window_state(w: Mapping[str, Any]) -> dict[str, Any]:
        # float32 -> python float is exact, so the round trip through JSON is too.
        return {"sums": {k: float(v) for k, v in w["sums"].items()}, "counts": dict(w["counts"]),
                "steps": w["steps"], "samples": w["samples"], "lr": w["lr"],
                "grad_norm": None if w["grad_norm"] is None else float(w["grad_norm"])}

    @staticmethod
    def _accumulate(w: dict[str, Any], losses: Mapping[str, torch.Tensor], grad_norm: Any, lr: float,
                    samples: int) -> None:
        for k, v in losses.items():
            w["sums"][k] = w["sums"][k] + v if k in w["sums"] else v
            w["counts"][k] = w["counts"].get(k, 0) + 1
        if grad_norm is not None:
            w["grad_norm"] = grad_norm.detach()
        w["steps"] += 1
        w["samples"] += samples
        w["lr"] = lr

    def _log_train(self, w: dict[str, Any], spe: int) -> dict[str, Any]:
        """Window means of the named losses, all-reduced over ranks; rank 0 writes the record."""
        keys = sorted(w["sums"])
        if self.world > 1:  # ranks may see different optional losses: reduce over the union of keys
            keys = sorted({k for ks in D.all_gather_object(keys) for k in ks})
        vec = torch.zeros(2 * len(keys) + 1, dtype=torch.float64, device=self.device)
        for i, k in enumerate(keys):
            if k in w["sums"]:
                vec[2 * i] = w["sums"][k].to(torch.float64)
                vec[2 * i + 1] = w["counts"][k]
        if w["grad_norm"] is not None:
            vec[-1] = w["grad_norm"].to(torch.float64)
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(vec)
            vec[-1] /= self.world
        vals = vec.cpu().tolist()
        elapsed = max(time.perf_counter() - w["t0"], 1e-9)
        st = self.st
        rec: dict[str, Any] = {"type": "train", "step": st["global_step"],
                               "epoch": round(st["global_step"] / spe, 4)}
        for i, k in enumerate(keys):
            if vals[2 * i + 1] > 0:
                rec[k] = vals[2 * i] / vals[2 * i + 1]
        rec["lr"] = w["lr"]
        if w["grad_norm"] is not None:
            rec["grad_norm"] = vals[-1]
        rec["samples_per_s"] = round(w["samples"] / elapsed, 2)
        rec["time"] = round(st["wall_time_s"], 3)
        st["train_loss"] = rec.get("loss")
        self._write_record(rec)
        return rec

    def _write_record(self, rec: Mapping[str, Any]) -> None:
        if self._metrics_file is not None:
            self._metrics_file.write(json.dumps(rec) + "\n")
            self._metrics_file.flush()

    def _truncate_metrics(self, step: int) -> None:
        """Drop records written after the checkpoint we resume from (they will be written again)."""
        if not self.metrics_path.is_file():
            return
        kept = []
        for line in self.metrics_path.read_text(encoding="utf-8").splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
        tmp = self.metrics_path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(x + "\n" for x in kept), encoding="utf-8")
        os.replace(tmp, self.metrics_path)

    # -- evaluation, early stopping, checkpoints --------------------------------------------------

    def _run_eval(self, spe: int) -> None:
        cfg, st = self.cfg, self.st
        metrics: Any = None
        error: str | None = None
        if self.main:
            rng = capture_rng_state()  # evaluation must not shift the training random stream
            self.raw_model.eval()
            try:
                with torch.no_grad():
                    raw = self.evaluate_fn(self.raw_model)  # type: ignore[misc]
                if not isinstance(raw, Mapping):
                    raise TypeError(f"evaluate(model) must return a dict of floats, got {type(raw).__name__}")
                metrics = {str(k): float(v) for k, v in raw.items()}
                if cfg.early_stopping_metric not in metrics:
                    raise KeyError(f"early_stopping_metric {cfg.early_stopping_metric!r} is not among the "
                                   f"evaluation metrics: {sorted(metrics)}")
            except Exception as e:  # tell the other ranks before raising, so that none of them hangs
                error = f"{type(e).__name__}: {e}"
                if self.world > 1:
                    D.broadcast_object(("error", error))
                raise
            finally:
                self.raw_model.train()
                restore_rng_state(rng)
        metrics = D.broadcast_object(metrics)
        if isinstance(metrics, tuple) and metrics and metrics[0] == "error":
            raise RuntimeError(f"evaluation failed on rank 0: {metrics[1]}")

        gs = st["global_step"]
        value = metrics[cfg.early_stopping_metric]
        best = st["best_metric"]
        d = cfg.early_stopping_min_delta
        improved = not math.isnan(value) and (
            best is None or (value < best - d if cfg.early_stopping_mode == "min" else value > best + d))
        st["last_metrics"], st["last_eval_step"] = metrics, gs
        if improved:
            st.update(best_metric=value, best_step=gs, best_metrics=metrics, patience_counter=0)
        else:
            st["patience_counter"] += 1
            if cfg.early_stopping_patience is not None and st["patience_counter"] >= cfg.early_stopping_patience:
                st["stopped_early"] = True
        rec = {"type": "eval", "step": gs, "epoch": round(gs / spe, 4), **metrics,
               "best": st["best_metric"], "best_step": st["best_step"], "improved": improved,
               "time": round(st["wall_time_s"], 3)}
        self._write_record(rec)
        if self.main and cfg.progress:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
            tqdm.write(f"step {gs}: {shown}" + (" (best)" if improved else "")
                       + (" -- early stop" if st["stopped_early"] else ""))
        if improved:
            self._save(self.best_dir)

    def _trainer_state(self) -> dict[str, Any]:
        s = dict(self.st)
        s.update(num_samples=len(self.train_dataset), world_size=self.world, train_config=to_dict(self.cfg),
                 batch_sampler=type(self.sampler).__name__, log_window=self._window_state(self.window))
        return s

    def _save(self, path: Path) -> None:
        rng_states = D.all_gather_object(capture_rng_state())  # every rank's stream, for exact resume
        if self.main:
            save_checkpoint(path, self.raw_model, self.optimizer, self.scheduler, self._trainer_state(), rng_states)
        D.barrier()


def fit(model: nn.Module, train_dataset: Dataset, cfg: TrainConfig, out_dir: str | Path, *,
        collate_fn: Callable[[list[Any]], Any] | None = None, evaluate: EvalFn | None = None,
        run_config: Any | None = None, resume: bool = False, stop_after: int | None = None,
        overwrite: bool = False, loss_weight: LossWeightFn | None = None,
        batch_sampler: BatchSamplerFactory | None = None) -> FitResult:
    """Functional form of `Trainer(...).fit(...)`."""
    return Trainer(model, train_dataset, cfg, out_dir, collate_fn=collate_fn, evaluate=evaluate,
                   run_config=run_config, loss_weight=loss_weight,
                   batch_sampler=batch_sampler).fit(resume, stop_after=stop_after, overwrite=overwrite)
