"""Task samples + visit records -> tensors: the batch layout of the downstream contract.

    notes = NoteTokens.build(records, tokenizer, max_text_len=256)     # every note tokenised ONCE
    task = build_task("medication", finetune_config)                  # medmm.tasks.registry
    samples, spec = task.samples(records)
    data = featurize(samples, records, spec, task, assets, notes)      # {"train": TaskDataset, ...}
    loader = DataLoader(data["train"], collate_fn=Collator(spec, reads=model_inputs("medm-plm")))

Inputs per task (each task's file builds its own, `Task.features`; MedM-PLM §III-D; codes via
`CodeEncoderConfig.encode`, `[CLS]` first):

    readmission  current note (input_ids)          + current dx + med (code_ids)          Eq. 14
    icd_coding   current note (input_ids)          + current med only (code_ids, dx = [])   Eq. 16
    medication   current dx only (code_ids, med = []) + the visits before t: their notes
                 (hist_input_ids) and dx + med codes (hist_code_ids), oldest first, at most
                 `max_history` most recent ones                                           Eq. 11
    next_visit_dx  current dx + med (code_ids) + the visits up to and INCLUDING t, the same
                 hist_* keys (nothing of visit t + 1)

Padding id 0 everywhere; batches are padded to their own longest row (dynamic padding). A visit
without a discharge summary has an EMPTY token list, so its attention-mask row is all zero
(models leave it out; see `medmm.models.downstream`), never a fake "[CLS] [SEP]" note.
Masks are bool tensors. Labels: (B,) float for a binary task, (B, K) float multi-hot otherwise.

Everything heavy (tokenising notes, encoding codes, multi-hot labels) happens once here; the
per-sample dicts hold references into shared lists, so a dataset for every model and seed of an
experiment costs one pass over the notes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset

from medmm.modalities import CODES, MODALITIES, check_modalities
from medmm.tasks.spec import TaskSpec

SPLITS = ("train", "val", "test")
MAX_HISTORY = 3  # demo default: the 3 most recent earlier visits (G-BERT keeps all; notes make V costly)


# ---------------------------------------------------------------------------------------------
# Notes, tokenised once


@dataclass
class NoteTokens:
    """visit_id -> note token ids ([CLS] .. [SEP], truncated to max_text_len); [] when no note."""

    ids: dict[int, list[int]]
    max_text_len: int

    @classmethod
    def build(cls, records: pl.DataFrame, tokenizer: Any, max_text_len: int = 256,
              batch_size: int = 1024) -> NoteTokens:
        """Tokenise every visit's note in batches with the fast tokenizer (truncation on)."""
        if max_text_len < 2:
            raise ValueError(f"max_text_len must be >= 2 ([CLS] and [SEP]), got {max_text_len}")
        for col in ("visit_id", "text"):
            if col not in records.columns:
                raise ValueError(f"visit records: missing column {col!r} (expected medmm.tasks.visits.visit_records)")
        if not getattr(tokenizer, "is_fast", False):
            raise TypeError(f"{type(tokenizer).__name__} is not a fast tokenizer; batch tokenisation needs one")
        with_text = records.filter(pl.col("text").is_not_null())
        vids, texts = with_text["visit_id"].to_list(), with_text["text"].to_list()
        ids: dict[int, list[int]] = {v: [] for v in records["visit_id"].to_list()}
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], truncation=True, max_length=max_text_len,
                            add_special_tokens=True, return_attention_mask=False,
                            return_token_type_ids=False)["input_ids"]
            for v, t in zip(vids[i:i + batch_size], enc):
                ids[v] = list(t)
        return cls(ids, max_text_len)

    def __getitem__(self, visit_id: int) -> list[int]:
        try:
            return self.ids[visit_id]
        except KeyError:
            raise KeyError(f"visit_id {visit_id} has no entry in the tokenised notes (not in the visit "
                           "records the notes were built from)") from None


# ---------------------------------------------------------------------------------------------
# Per-sample features


class TaskDataset(Dataset):
    """Map-style dataset of per-sample dicts of python lists (collated by `Collator`).

    Keys per sample: input_ids (list[int]) for text tasks; code_ids (list[int]); for medication
    hist_input_ids / hist_code_ids (list[list[int]], oldest first); labels (float or (K,) array).
    `meta` is a frame (patient_id, visit_id) aligned with the samples, for saving predictions.
    """

    def __init__(self, spec: TaskSpec, features: dict[str, list], labels: np.ndarray, meta: pl.DataFrame):
        n = len(labels)
        for k, v in features.items():
            if len(v) != n:
                raise ValueError(f"feature {k!r} has {len(v)} rows for {n} labels")
        self.spec, self.features, self.labels, self.meta = spec, features, labels, meta

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        out = {k: v[i] for k, v in self.features.items()}
        out["labels"] = self.labels[i]
        return out

    def subset(self, indices: Sequence[int]) -> TaskDataset:
        idx = list(indices)
        feats = {k: [v[i] for i in idx] for k, v in self.features.items()}
        return TaskDataset(self.spec, feats, self.labels[idx], self.meta[idx])


def multi_hot(label_lists: Sequence[Sequence[str]], label_names: Sequence[str]) -> np.ndarray:
    """(N, K) float32 multi-hot; labels outside `label_names` are ignored (not in the output space)."""
    index = {c: j for j, c in enumerate(label_names)}
    out = np.zeros((len(label_lists), len(label_names)), dtype=np.float32)
    for i, labs in enumerate(label_lists):
        for c in labs:
            j = index.get(c)
            if j is not None:
                out[i, j] = 1.0
    return out


def history_features(samples: pl.DataFrame, records: pl.DataFrame, encode: Any, notes: NoteTokens,
                     max_history: int | None, task: str) -> tuple[list[list[list[int]]], list[list[list[int]]]]:
    """The earlier visits of each sample (`history_visit_ids`, oldest first, the `max_history`
    most recent kept): their notes and their `[CLS] dx.. med..` codes, as (hist_input_ids,
    hist_code_ids). `records` holds every visit a history names."""
    for col in ("visit_id", "dx", "med"):
        if col not in records.columns:
            raise ValueError(f"visit records: missing column {col!r}; has {records.columns}")
    # Codes of every visit once; histories index into them.
    visit_codes = {v: encode(dx, med) for v, dx, med in zip(records["visit_id"].to_list(), records["dx"].to_list(),
                                                              records["med"].to_list())}
    hist_text, hist_codes = [], []
    for v, hist in zip(samples["visit_id"].to_list(), samples["history_visit_ids"].to_list()):
        if not hist:
            raise ValueError(f"{task} samples: visit_id {v} has an empty history_visit_ids")
        if max_history:
            hist = hist[-max_history:]  # most recent visits; still oldest first
        try:
            hist_codes.append([visit_codes[h] for h in hist])
        except KeyError as e:
            raise ValueError(f"{task} samples: history visit {e.args[0]} of visit_id {v} is not in the "
                             "visit records") from None
        hist_text.append([notes[h] for h in hist])
    return hist_text, hist_codes


def featurize(samples: pl.DataFrame, records: pl.DataFrame, spec: TaskSpec, task: Any, assets: Any,
              notes: NoteTokens) -> dict[str, TaskDataset]:
    """Split a task's samples into train / val / test `TaskDataset`s in the contract layout.

    samples: the task's `samples(records)` (with `split`); task: the `medmm.tasks.base.Task`
    that builds the per-sample features; records: `visit_records(ds)` (the visits that
    histories name); notes: `NoteTokens` of those records.
    """
    for col in ("patient_id", "visit_id", "split"):
        if col not in samples.columns:
            raise ValueError(f"{spec.name} samples: missing column {col!r}; has {samples.columns}")
    bad = samples.filter(~pl.col("split").is_in(SPLITS))
    if bad.height:
        raise ValueError(f"{spec.name} samples: column 'split' has {bad['split'][0]!r} at visit_id "
                         f"{bad['visit_id'][0]}; expected one of {SPLITS}")
    feats, labels = task.features(samples, records, spec, assets.code_config.encode, notes)
    split = samples["split"].to_numpy()
    meta = samples.select("patient_id", "visit_id")
    out = {}
    for s in SPLITS:
        idx = np.flatnonzero(split == s).tolist()
        out[s] = TaskDataset(spec, {k: [v[i] for i in idx] for k, v in feats.items()}, labels[idx], meta[idx])
    return out


# ---------------------------------------------------------------------------------------------
# Collation


def pad_2d(seqs: Sequence[Sequence[int]], min_len: int = 1) -> torch.Tensor:
    """(N, L) long, right-padded with 0 to the longest row (at least `min_len`)."""
    L = max([min_len] + [len(s) for s in seqs])
    out = torch.zeros(len(seqs), L, dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def pad_3d(seqs: Sequence[Sequence[Sequence[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V, L) long and the (B, V) visit mask from B lists of V_b token lists."""
    V = max([1] + [len(h) for h in seqs])
    L = max([1] + [len(t) for h in seqs for t in h])
    out = torch.zeros(len(seqs), V, L, dtype=torch.long)
    visit_mask = torch.zeros(len(seqs), V, dtype=torch.bool)
    for b, h in enumerate(seqs):
        visit_mask[b, : len(h)] = True
        for v, t in enumerate(h):
            if len(t):
                out[b, v, : len(t)] = torch.as_tensor(t, dtype=torch.long)
    return out, visit_mask


class Collator:
    """List of `TaskDataset` samples -> contract batch dict, with only the modalities asked for.

    reads: the modalities the model reads (`medmm.models.downstream.model_inputs`; names of
    `medmm.modalities`); the keys of the others are left out, so no tensor is built that nothing
    reads. Notes are `note`; the one code sequence is built for `dx_codes` or `med_codes`; the
    ICU tasks' `timeseries` and `demographics` are stacked from their memory-mapped rows.
    """

    def __init__(self, spec: TaskSpec, reads: Iterable[str] = frozenset(MODALITIES)):
        reads = check_modalities(reads, "Collator")
        built = {m for m in reads if MODALITIES[m].built}
        if not built:
            raise ValueError(f"Collator: no modality that is collated yet among {sorted(reads)}; built: "
                             f"{sorted(m for m, x in MODALITIES.items() if x.built)}")
        self.spec, self.text, self.codes = spec, "note" in reads, bool(reads & CODES)
        self.dense = [m for m in ("timeseries", "demographics") if m in reads]

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {}
        first = samples[0]
        if self.text and "input_ids" in first:
            batch["input_ids"] = pad_2d([s["input_ids"] for s in samples])  # (B, L_T)
            batch["attention_mask"] = batch["input_ids"] != 0
        if self.codes and "code_ids" in first:
            batch["code_ids"] = pad_2d([s["code_ids"] for s in samples])  # (B, L_C)
            batch["code_mask"] = batch["code_ids"] != 0
        if "hist_code_ids" in first:
            if self.text:
                batch["hist_input_ids"], vm = pad_3d([s["hist_input_ids"] for s in samples])  # (B, V, L_T)
                batch["hist_attention_mask"] = batch["hist_input_ids"] != 0
            if self.codes:
                batch["hist_code_ids"], vm = pad_3d([s["hist_code_ids"] for s in samples])  # (B, V, L_C)
                batch["hist_code_mask"] = batch["hist_code_ids"] != 0
            batch["hist_visit_mask"] = vm  # (B, V)
        for m in self.dense:                 # FIDDLE one-hots: (B, T/dt, F) and (B, F_s); every stay has them
            if m in first:
                key, mask = MODALITIES[m].keys
                batch[key] = torch.from_numpy(np.stack([np.asarray(s[m]) for s in samples])).float()
                batch[mask] = torch.ones(len(samples), dtype=torch.bool)
        if self.spec.kind == "binary":
            batch["labels"] = torch.tensor([float(s["labels"]) for s in samples], dtype=torch.float32)  # (B,)
        else:
            batch["labels"] = torch.from_numpy(np.stack([s["labels"] for s in samples])).float()  # (B, K)
        return batch


__all__ = ["NoteTokens", "TaskDataset", "Collator", "featurize", "history_features", "multi_hot", "pad_2d", "pad_3d",
           "MAX_HISTORY"]
