"""Downstream models of MedM-PLM's Table III / Table VI: the registry and the parts they share.

Every model takes the batch dict of the downstream contract and returns
    {"logits": (B,) for a binary task or (B, K) for a multi-label one,
     "loss":   BCE-with-logits against batch["labels"] when the batch has labels (Eq. 13 and the
               binary/multi-label BCE of Eq. 14-16)}.

Batch layouts (padding id 0; keys present only for the modalities the model reads, see
`model_inputs`):
    readmission   input_ids / attention_mask (B, L_T); code_ids / code_mask (B, L_C) = [CLS] dx.. med..
    icd_coding    input_ids / attention_mask (B, L_T); code_ids / code_mask (B, L_C) = [CLS] med..
    medication    code_ids / code_mask (B, L_C) = [CLS] current dx..;
                  hist_input_ids / hist_attention_mask (B, V, L_T), hist_code_ids / hist_code_mask
                  (B, V, L_C), hist_visit_mask (B, V): the visits before the current one, oldest first.
A note that is absent (a visit without a discharge summary) is a row whose attention mask is all
zero; models then leave that visit out of their mean over notes.

The registry (`MODELS`, at the end) is one table: each model's module, config class, the
modalities it reads and its relative cost (`ModelEntry`).
"""

from __future__ import annotations

import hashlib
import importlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:
    from medmm.models.assets import Assets
    from medmm.tasks.spec import TaskSpec

C = TypeVar("C")

# ---- configs and task layout --------------------------------------------------------------------

def make_config(cls: type[C], overrides: dict[str, Any], model: str) -> C:
    """`cls(**overrides)` with a clear error naming the unknown keys."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"model {model!r}: unknown config override(s) {unknown}; {cls.__name__} has {sorted(known)}")
    return cls(**overrides)


def uses_history(spec: TaskSpec) -> bool:
    """True when the task's batches hold the patient's earlier visits (`TaskSpec.history`: the
    medication task's G-BERT protocol, next-visit diagnosis)."""
    return bool(spec.history)


def require(batch: dict[str, torch.Tensor], keys: Iterable[str], model: str) -> None:
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"model {model!r}: batch lacks {missing} (has {sorted(batch)})")


# ---- head and loss ------------------------------------------------------------------------------

class MLPHead(nn.Module):
    """The task MLP of Eq. 12 / 14 / 16: dropout -> Linear -> ReLU -> dropout -> Linear. (B, D) -> (B, K)"""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def task_output(logits: torch.Tensor, batch: dict[str, torch.Tensor], spec: TaskSpec) -> dict[str, torch.Tensor]:
    """(B, K) scores -> {"logits", "loss"}; binary tasks squeeze to (B,). The loss is the mean
    element-wise BCE-with-logits (sigmoid per label, Eq. 13), present when the batch has labels."""
    if logits.shape[-1] != spec.num_labels:
        raise ValueError(f"task {spec.name!r}: model produced {logits.shape[-1]} scores, spec has {spec.num_labels}")
    if spec.kind == "binary":
        logits = logits.squeeze(-1)  # (B,)
    out = {"logits": logits}
    if "labels" in batch:
        labels = batch["labels"]
        if labels.shape != logits.shape:
            raise ValueError(f"task {spec.name!r} ({spec.kind}): batch['labels'] has shape {tuple(labels.shape)}, "
                             f"expected {tuple(logits.shape)}")
        out["loss"] = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    return out


# ---- history pooling ----------------------------------------------------------------------------

def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of x (B, V, D) where mask (B, V); a row with nothing to average gives zeros
    (a patient whose earlier visits have no note contributes no text)."""
    m = mask.to(x.dtype).unsqueeze(-1)  # (B, V, 1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1.0)


def trim_padding(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut the trailing columns that are padding in every row (right-padded batches): the text
    tower's cost grows with L, and history notes are padded to the longest note of the batch."""
    cols = mask.bool().any(0).nonzero()
    L = int(cols.max()) + 1 if cols.numel() else 1
    return ids[:, :L], mask[:, :L]


def encode_rows(encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ids: torch.Tensor,
                mask: torch.Tensor, rows: torch.Tensor, out_dim: int) -> torch.Tensor:
    """Run `encode(ids (N, L), mask (N, L)) -> (N, D)` on the selected rows only; zeros elsewhere.

    ids, mask (B, V, L); rows (B, V) bool. Returns (B, V, D). Flattening (B*V, L) and skipping
    padded visits keeps the expensive text tower to the notes that exist.
    """
    B, V, L = ids.shape
    idx = rows.reshape(-1).nonzero().squeeze(1)  # (N,)
    if idx.numel() == 0:
        return torch.zeros(B, V, out_dim, device=ids.device)
    flat, fmask = trim_padding(ids.reshape(B * V, L)[idx], mask.reshape(B * V, L)[idx])
    values = encode(flat, fmask)  # (N, D)
    out = values.new_zeros(B * V, values.shape[-1]).index_copy(0, idx, values)
    return out.view(B, V, -1)


def note_rows(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, V) history visits that are real AND have a note (some attention-mask entry set)."""
    return batch["hist_visit_mask"].bool() & batch["hist_attention_mask"].bool().any(-1)


# ---- frozen text towers and their note features, computed once -----------------------------------

def note_key(ids: Iterable[int]) -> bytes:
    """The key of a note's features: its token ids (int64 bytes)."""
    return np.asarray(list(ids), dtype=np.int64).tobytes()


class NoteFeatures:
    """One frozen text tower's output for a set of notes, computed once before training and then
    read as plain arrays: `flat` holds every note's features back to back (float32, or float16 at
    half the memory and ~1e-3 relative error), `index[note_key(ids)] = (offset, shape)`.

    `tokens=True` keeps the token-level last hidden state Z_T (L_i, H) of every note (MedM-PLM's
    cross-modal module attends over it); `tokens=False` the [CLS] vector (H,) (ClinicalBERT and the
    concatenation baselines read nothing else). Written to a directory (`save`: features.npy +
    index.npz) and read back memory-mapped (`load`), so that worker processes share one copy
    through the page cache instead of each receiving it down a pipe.
    """

    def __init__(self, tokens: bool, flat: np.ndarray, index: dict[bytes, tuple[int, tuple[int, ...]]]):
        self.tokens, self.flat, self.index = tokens, flat, index

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, key: bytes) -> bool:
        return key in self.index

    def get(self, key: bytes) -> torch.Tensor:
        off, shape = self.index[key]
        return torch.from_numpy(np.array(self.flat[off:off + math.prod(shape)], dtype=np.float32)).view(shape)

    @classmethod
    @torch.no_grad()
    def compute(cls, tower: FrozenTextTower, notes: Iterable[Sequence[int]], dtype: str = "float32",
                batch_size: int = 64) -> NoteFeatures:
        """Run `tower` once over every distinct non-empty note, in batches of similar length."""
        if dtype not in ("float32", "float16"):
            raise ValueError(f"text cache dtype must be 'float32' or 'float16', got {dtype!r}")
        todo = {note_key(n): list(n) for n in notes if len(n)}
        order = sorted(todo.values(), key=len)
        parts, index, off = [], {}, 0
        for i in range(0, len(order), batch_size):
            chunk = order[i:i + batch_size]
            ids = torch.zeros(len(chunk), len(chunk[-1]), dtype=torch.long)
            for j, n in enumerate(chunk):
                ids[j, : len(n)] = torch.tensor(n, dtype=torch.long)
            out = tower.live(*trim_padding(ids, ids != 0))
            for j, n in enumerate(chunk):
                v = (out[j, : len(n)] if tower.tokens else out[j]).to(getattr(torch, dtype)).numpy()
                index[note_key(n)] = (off, tuple(v.shape))
                parts.append(v.reshape(-1))
                off += v.size
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
        return cls(tower.tokens, flat, index)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "features.npy", self.flat)
        keys = list(self.index)
        np.savez(directory / "index.npz", tokens=np.array(self.tokens),
                 lengths=np.array([len(k) // 8 for k in keys], dtype=np.int64),
                 ids=np.frombuffer(b"".join(keys), dtype=np.int64),
                 offsets=np.array([self.index[k][0] for k in keys], dtype=np.int64),
                 shapes=np.array([self.index[k][1] + (0,) * (2 - len(self.index[k][1])) for k in keys],
                                 dtype=np.int64).reshape(len(keys), 2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> NoteFeatures:
        directory = Path(directory)
        flat = np.load(directory / "features.npy", mmap_mode="r" if mmap else None)
        z = np.load(directory / "index.npz")
        tokens = bool(z["tokens"])
        ids, ends = z["ids"], np.cumsum(z["lengths"])
        index = {}
        for k, (end, n, off, shape) in enumerate(zip(ends, z["lengths"], z["offsets"], z["shapes"])):
            index[ids[end - n:end].tobytes()] = (int(off), tuple(int(d) for d in (shape if tokens else shape[:1])))
        return cls(tokens, flat, index)


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-1 of a module's state (names, shapes, bytes): two towers share features only if equal."""
    h = hashlib.sha1()
    for k, v in module.state_dict().items():
        t = v.detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


class FrozenTextTower(nn.Module):
    """A BERT text tower used frozen: no gradient, ALWAYS in eval mode (no dropout), so its output
    for a note is a fixed function of the note's token ids, computed once (`NoteFeatures`) and
    handed to the model as data (`attach_note_features`).

    (N, L) ids + mask -> last hidden state (N, L, H) (tokens=True; zeros at padding, which every
    consumer masks) or the [CLS] vector (N, H) (tokens=False). Rows are assumed right-padded
    (the Collator's layout); an all-padding row gives zeros. A note without attached features
    runs through the tower itself (the same numbers). The BERT stays a submodule, so its weights
    are still saved with the model. `key` names the features this tower reads: (weights, tokens,
    the features' dtype).
    """

    def __init__(self, bert: nn.Module, tokens: bool, cache_dtype: str = "float32"):
        super().__init__()
        if cache_dtype not in ("float32", "float16"):
            raise ValueError(f"text cache dtype must be 'float32' or 'float16', got {cache_dtype!r}")
        self.bert = bert
        bert.requires_grad_(False)
        bert.eval()
        self.tokens, self.cache_dtype = tokens, cache_dtype
        self.key = (weights_fingerprint(bert), tokens, cache_dtype)
        self.features: NoteFeatures | None = None
        self.hits = self.misses = 0

    def train(self, mode: bool = True) -> FrozenTextTower:
        super().train(mode)
        self.bert.eval()  # frozen means no dropout either: the output must not depend on the mode
        return self

    @torch.no_grad()
    def live(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The tower itself on (N, L): (N, L, H) or (N, H)."""
        h = self.bert(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (N, L, H)
        return h if self.tokens else h[:, 0]

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lengths = mask.bool().sum(1).tolist()  # right-padded: row i is ids[i, :lengths[i]]
        feats = self.features
        cpu = ids.cpu()
        keys = [cpu[i, :n].numpy().astype(np.int64).tobytes() for i, n in enumerate(lengths)]
        todo = [i for i, k in enumerate(keys) if lengths[i] and (feats is None or k not in feats)]
        self.hits += sum(1 for n in lengths if n) - len(todo)
        self.misses += len(todo)
        H = self.bert.config.hidden_size
        N, L = ids.shape
        out = torch.zeros((N, L, H) if self.tokens else (N, H), device=ids.device)
        if todo:
            sub_ids, sub_mask = trim_padding(ids[todo], mask[todo])
            fresh = self.live(sub_ids, sub_mask).to(getattr(torch, self.cache_dtype)).float()
            for j, i in enumerate(todo):
                if self.tokens:
                    out[i, : lengths[i]] = fresh[j, : lengths[i]]
                else:
                    out[i] = fresh[j]
        done = set(todo)
        for i, (k, n) in enumerate(zip(keys, lengths)):
            if n and i not in done:
                v = feats.get(k).to(ids.device)  # type: ignore[union-attr]
                if self.tokens:
                    out[i, :n] = v
                else:
                    out[i] = v
        return out


def frozen_text_towers(model: nn.Module) -> list[FrozenTextTower]:
    """The frozen text towers a downstream model reads (registered or held aside)."""
    found = [m for m in model.modules() if isinstance(m, FrozenTextTower)]
    found += [m.text_fn for m in model.modules() if isinstance(getattr(m, "text_fn", None), FrozenTextTower)]
    return list({id(t): t for t in found}.values())


def attach_note_features(model: nn.Module, features: Mapping[tuple, NoteFeatures]) -> int:
    """Give each frozen text tower of `model` its precomputed `NoteFeatures` (by `tower.key`);
    returns how many towers got features."""
    n = 0
    for tower in frozen_text_towers(model):
        if tower.key in features:
            tower.features = features[tower.key]
            n += 1
    return n


def compute_note_features(models: Iterable[nn.Module], notes: Sequence[Sequence[int]],
                          have: Mapping[tuple, NoteFeatures] | None = None) -> dict[tuple, NoteFeatures]:
    """The `NoteFeatures` of every distinct frozen tower of `models` over `notes`, each computed
    once (towers with equal weights share them); `have`'s are kept, not recomputed."""
    out = dict(have or {})
    for model in models:
        for tower in frozen_text_towers(model):
            if tower.key not in out:
                out[tower.key] = NoteFeatures.compute(tower, notes, tower.cache_dtype)
    return out


# ---- registry ----------------------------------------------------------------------------------

NOTE, DX, MED = "note", "dx_codes", "med_codes"  # `medmm.modalities` names
TEXT_AND_CODES, CODES_ONLY, TEXT_ONLY = frozenset({NOTE, DX, MED}), frozenset({DX, MED}), frozenset({NOTE})


@dataclass(frozen=True)
class ModelEntry:
    """One downstream model of the registry: where it is built, from which config, what it reads.

    Built by `medmm.models.baselines.<module>.build(spec, assets, **fixed, **overrides)`, imported
    when first used (so importing this file stays cheap and the baseline files can import the
    helpers above without a cycle); `overrides` (`finetune.model_overrides.<model>`) are fields of
    the module's `config` dataclass. `reads`: the modalities (`medmm.modalities`) its batches must
    carry, and all that the collator builds for it. `cost`: relative fine-tuning cost per sample,
    for scheduling runs over worker processes.
    """

    title: str  # the model's name in the papers and in reports
    module: str
    config: str
    reads: frozenset[str]
    fixed: tuple[tuple[str, Any], ...] = ()
    cost: float = 1.0

    def build(self, spec: TaskSpec, assets: Assets, **overrides: Any) -> nn.Module:
        module = importlib.import_module("medmm.models.baselines." + self.module)
        return module.build(spec, assets, **dict(self.fixed), **overrides)

    def config_class(self) -> type:
        return getattr(importlib.import_module("medmm.models.baselines." + self.module), self.config)


MODELS: dict[str, ModelEntry] = {
    "lr": ModelEntry("LR", "lr", "LRConfig", TEXT_AND_CODES, cost=0.05),
    "rnn": ModelEntry("RNN", "rnn", "RNNConfig", CODES_ONLY),
    "cnn": ModelEntry("CNN", "cnn", "CNNConfig", TEXT_ONLY),
    "gbert": ModelEntry("G-BERT", "gbert", "GBertConfig", CODES_ONLY, (("init", "gbert"),)),
    "medbert": ModelEntry("Med-BERT", "medbert", "MedBERTConfig", CODES_ONLY),
    "clinicalbert": ModelEntry("ClinicalBERT", "clinicalbert", "ClinicalBERTConfig", TEXT_ONLY),
    "gbert+clinicalbert": ModelEntry("G-BERT+ClinicalBERT", "combos", "ComboConfig", TEXT_AND_CODES,
                                     (("codes", "gbert"),)),
    "medbert+clinicalbert": ModelEntry("Med-BERT+ClinicalBERT", "combos", "ComboConfig", TEXT_AND_CODES,
                                       (("codes", "medbert"),)),
    "medm-plm": ModelEntry("MedM-PLM", "medm_plm_heads", "MedMPLMHeadConfig", TEXT_AND_CODES,
                           (("variant", "medm-plm"),)),
    "medm-plm-cross_modal": ModelEntry("MedM-PLM w/o cross-modal", "medm_plm_heads", "MedMPLMHeadConfig",
                                       TEXT_AND_CODES, (("variant", "medm-plm-cross_modal"),)),
    "gbert-medm-init": ModelEntry("G-BERT (MedM-PLM code tower)", "gbert", "GBertConfig", CODES_ONLY,
                                  (("init", "medm-plm"),)),
}


def _check_name(name: str) -> None:
    if name not in MODELS:
        raise KeyError(f"unknown downstream model {name!r}; known: {', '.join(MODELS)}")


def model_inputs(name: str) -> frozenset[str]:
    """The modalities the model reads (`medmm.modalities` names: note, dx_codes, med_codes)."""
    _check_name(name)
    return MODELS[name].reads


def model_title(name: str) -> str:
    """The model's name in the papers (G-BERT, ClinicalBERT, MedM-PLM, ...), for reports."""
    _check_name(name)
    return MODELS[name].title


def model_cost(name: str) -> float:
    _check_name(name)
    return MODELS[name].cost


def build_model(name: str, spec: TaskSpec, assets: Assets, **overrides: Any) -> nn.Module:
    """The downstream model `name` for task `spec`, initialised from `assets`."""
    _check_name(name)
    return MODELS[name].build(spec, assets, **overrides)
