"""Where a batch goes: the one function that puts a batch on the model's device.

Every forward call on a batch -- the loop's training step, pre-training validation, fine-tuning
and NER prediction, a frozen tower's precomputed states -- moves its inputs with `to_device`,
so `device: auto` (the model on CUDA, batches collated on the CPU) works on every path:

    batch = to_device(collate(samples), model_device(model))
    out = model(batch)

`to_device` walks dicts, lists and tuples (named tuples too) and moves each tensor with
`move_tensor`; anything else (ints, strings, None) is returned as it is. tests/test_device.py
replaces `move_tensor` with one that returns recorded clones, and fails any forward call whose
input tensors are not such clones: a path that skipped `to_device` shows up even on a CPU-only
machine, where `.to("cpu")` returns the very same tensor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["to_device", "move_tensor", "model_device"]


def move_tensor(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One tensor onto `device`. Host-to-GPU copies are asynchronous (safe: they are ordered on the
    stream, and pinned batches overlap the copy with compute); copies back to the CPU are not,
    so the result can be read at once."""
    return t.to(device, non_blocking=device.type == "cuda")


def to_device(batch: Any, device: torch.device | str) -> Any:
    """`batch` (nested dicts / lists / tuples of tensors) with every tensor on `device`.

    Dicts come back as plain dicts, lists as lists, tuples (and named tuples) as their own type.
    """
    device = torch.device(device)
    if isinstance(batch, torch.Tensor):
        return move_tensor(batch, device)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple: positional constructor
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (else first buffer; the CPU for a stateless one)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
