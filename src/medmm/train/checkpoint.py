"""Training checkpoints that load without unpickling arbitrary objects.

A checkpoint directory (`out/checkpoints/last/`, `out/checkpoints/best/`) holds

    model.safetensors    model weights (tied tensors stored once; safetensors.torch.save_model)
    optimizer.pt         {"optimizer": state_dict, "scheduler": state_dict}   tensors + plain containers
    rng.pt               {"ranks": [per-rank RNG state]} torch / cuda / numpy / python, as tensors + ints
    trainer_state.json   loop position (epoch, step in epoch, global step), best metric, patience, ...

`.pt` files are written with torch.save and read back with `torch.load(weights_only=True)`,
which refuses anything but tensors and plain containers, so loading a checkpoint cannot run code.
Directories are written to a temporary path and renamed: a crash mid-save leaves the old one.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from medmm.data.io import atomic_dir

__all__ = [
    "MODEL_FILE", "OPTIM_FILE", "RNG_FILE", "STATE_FILE",
    "save_checkpoint", "load_checkpoint", "load_model_weights", "read_trainer_state",
    "capture_rng_state", "restore_rng_state", "seed_everything",
]

MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optimizer.pt"
RNG_FILE = "rng.pt"
STATE_FILE = "trainer_state.json"


# ----------------------------------------------------------------------------- RNG


def seed_everything(seed: int) -> None:
    """Seed python `random`, numpy's global generator and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def capture_rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors / ints / floats (safe for weights_only loading)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, mt, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(name), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(mt, dtype=torch.int64), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


# ----------------------------------------------------------------------------- save / load


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    trainer_state: dict[str, Any],
    rng_states: list[dict[str, Any]] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (replacing any previous one at `path`)."""
    path = Path(path)
    with atomic_dir(path, overwrite=True) as tmp:
        save_model(model, str(tmp / MODEL_FILE))
        if optimizer is not None:
            torch.save({"optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None},
                       tmp / OPTIM_FILE)
        if rng_states is not None:
            torch.save({"ranks": rng_states}, tmp / RNG_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def load_model_weights(model: nn.Module, path: str | Path, strict: bool = True) -> None:
    """Load `path/model.safetensors` (or a .safetensors file) into `model` in place."""
    path = Path(path)
    file = path / MODEL_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no model weights at {file}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    missing, unexpected = load_model(model, str(file), strict=False, device=str(device))
    if strict and (missing or unexpected):
        raise ValueError(f"{file}: weights do not match the model: missing {sorted(missing)[:10]}, "
                         f"unexpected {sorted(unexpected)[:10]}")


def read_trainer_state(path: str | Path) -> dict[str, Any]:
    file = Path(path) / STATE_FILE
    if not file.is_file():
        raise FileNotFoundError(f"no checkpoint at {path} (missing {STATE_FILE})")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{file}: corrupt trainer state: {e}") from None


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[dict[str, Any], list[dict[str, Any]] | None]:
    """Restore model (and optimizer / scheduler when given) from `path`.

    Returns (trainer_state, per-rank RNG states or None); the caller decides which RNG state to apply.
    """
    path = Path(path)
    state = read_trainer_state(path)
    load_model_weights(model, path)
    if optimizer is not None:
        file = path / OPTIM_FILE
        if not file.is_file():
            raise FileNotFoundError(f"no optimizer state at {file}")
        blob = torch.load(file, map_location=map_location, weights_only=True)
        optimizer.load_state_dict(blob["optimizer"])
        if scheduler is not None and blob.get("scheduler") is not None:
            scheduler.load_state_dict(blob["scheduler"])
    rng = None
    if (path / RNG_FILE).is_file():
        rng = torch.load(path / RNG_FILE, map_location="cpu", weights_only=True)["ranks"]
    return state, rng
