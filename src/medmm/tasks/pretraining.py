"""Pre-training data: visits -> vocabularies -> datasets -> (masked) batches.

    train, val, dx_vocab, med_vocab = split_visits(DATASET, PretrainDataConfig())
    code_cfg = code_encoder_config(dx_vocab, med_vocab, tower)         # tower: the recipe's CodeTowerRecipe
    ds = VisitDataset(note_ids(train, tokenizer, 256), encode_codes(train, code_cfg))
    loader = DataLoader(ds, collate_fn=MaskingCollate(model, seed=0))   # per-visit seeded masks

Visits (MedM-PLM §III-C): every visit with a discharge summary and at least one code is a
single-visit record. Patients come from the split owned by `medmm.tasks.splits`: the `train`
patients pre-train, the `val` patients validate, and the `test` patients -- held out by every
downstream task -- never appear here. MedM-PLM and G-BERT pre-train on the same visits, with the
same vocabulary rule, so their code towers share vocabularies.

Notes are tokenised by `medmm.tasks.featurize.NoteTokens`, batches padded by its `pad_2d` and
codes encoded by `CodeEncoderConfig.encode`, as fine-tuning does. What is pre-training's own:
a dataset item carries its row `index`, which seeds its training masks (`MaskingCollate`), and
labels are padded with -100 (ignored by the losses). The masking rules are the models' `mask`
(`medmm.objectives.masking`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import torch
from torch.utils.data import Dataset

from medmm.data.schema import load_dataset
from medmm.models.code_encoder import MASK_ID, CodeEncoderConfig
from medmm.models.text import TextMLM
from medmm.objectives.masking import mask_codes
from medmm.ontology.atc import atc_tree
from medmm.ontology.icd9 import icd9_dx_subtree
from medmm.tasks.featurize import NoteTokens, pad_2d
from medmm.tasks.splits import with_split
from medmm.tasks.visits import visit_records

if TYPE_CHECKING:
    from medmm.models.baselines.gbert import GBertForPretraining
    from medmm.models.medm_plm import MedMPLMForPretraining


@dataclass
class PretrainDataConfig:
    split_seed: int = 0
    max_text_len: int = 256  # paper: 512; the demo uses 256 on CPU
    min_code_count: int = 1  # codes seen fewer times among training visits become [UNK]


# ----------------------------------------------------------------------------- visits and vocabularies


def pretraining_visits(data_dir: str | Path, split_seed: int) -> pl.DataFrame:
    """Single-visit records with a note and at least one code, with their `split`; test excluded."""
    recs = visit_records(load_dataset(data_dir))
    recs = recs.filter(pl.col("text").is_not_null() & ((pl.col("dx").list.len() + pl.col("med").list.len()) > 0))
    recs = with_split(recs, seed=split_seed)
    return recs.filter(pl.col("split") != "test")


def train_val(visits: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    return visits.filter(pl.col("split") == "train"), visits.filter(pl.col("split") == "val")


def with_vocabularies(visits: pl.DataFrame, min_code_count: int
                      ) -> tuple[pl.DataFrame, pl.DataFrame, list[str], list[str]]:
    """Train and validation visits and the code vocabularies built from the training ones."""
    train, val = train_val(visits)
    return (train, val, *code_vocabularies(train, min_code_count))


def split_visits(data_dir: str | Path, data: PretrainDataConfig
                 ) -> tuple[pl.DataFrame, pl.DataFrame, list[str], list[str]]:
    """`with_vocabularies` of the dataset's `pretraining_visits`."""
    return with_vocabularies(pretraining_visits(data_dir, data.split_seed), data.min_code_count)


def code_vocabularies(train: pl.DataFrame, min_count: int) -> tuple[list[str], list[str]]:
    """Diagnosis and ATC-3 vocabularies from training visits, most frequent first."""
    def vocab(col: str) -> list[str]:
        counts = Counter(c for codes in train[col].to_list() for c in codes)
        return [c for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count]
    return vocab("dx"), vocab("med")


def code_encoder_config(dx_vocab: list[str], med_vocab: list[str], tower: Any) -> CodeEncoderConfig:
    """The code tower's config for these vocabularies: their ICD-9 and ATC trees, and the shape
    (embed_dim, gat_heads, num_layers, num_heads, intermediate_size, dropout, max_codes) read from
    `tower`, a recipe's `CodeTowerRecipe`."""
    return CodeEncoderConfig(
        dx_vocab=dx_vocab, med_vocab=med_vocab,
        dx_tree=icd9_dx_subtree(dx_vocab).to_json()["parent"], med_tree=atc_tree(med_vocab).to_json()["parent"],
        embed_dim=tower.embed_dim, gat_heads=tower.gat_heads, num_layers=tower.num_layers,
        num_heads=tower.num_heads, intermediate_size=tower.intermediate_size, dropout=tower.dropout,
        max_codes=tower.max_codes)


# ----------------------------------------------------------------------------- datasets


def note_ids(visits: pl.DataFrame, tokenizer: Any, max_text_len: int) -> list[list[int]]:
    """Each visit's note token ids ([CLS] .. [SEP], truncated), in row order: `NoteTokens.build`
    keyed by row number, since the datasets index visits by row (and a planted frame may have no
    visit_id)."""
    rows = visits.select(pl.int_range(pl.len()).alias("visit_id"), "text")
    notes = NoteTokens.build(rows, tokenizer, max_text_len)
    return [notes[i] for i in range(rows.height)]


def encode_codes(df: pl.DataFrame, code_cfg: CodeEncoderConfig) -> list[list[int]]:
    """Each visit's `[CLS] dx.. med..` ids."""
    return [code_cfg.encode(dx, med) for dx, med in zip(df["dx"].to_list(), df["med"].to_list())]


class VisitDataset(Dataset):
    """Pre-tokenised visits: note token ids and code token ids (lists of ints), and the visit's
    index (which seeds its training masks)."""

    def __init__(self, text_ids: list[list[int]], code_ids: list[list[int]]):
        assert len(text_ids) == len(code_ids)
        self.text_ids, self.code_ids = text_ids, code_ids

    def __len__(self) -> int:
        return len(self.text_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"input_ids": self.text_ids[i], "code_ids": self.code_ids[i], "index": i}


class Column(Dataset):
    """One pre-tokenised field per sample: {key: ids[i], "index": i} (notes for text-mlm, codes for gbert)."""

    def __init__(self, key: str, ids: list[list[int]]):
        self.key, self.ids = key, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {self.key: self.ids[i], "index": i}


# ----------------------------------------------------------------------------- collation


def pad(seqs: list[list[int]] | list[torch.Tensor], pad_id: int = 0) -> torch.Tensor:
    """(B, L_max) long tensor of the sequences (lists or 1-d tensors), right-padded with pad_id:
    `pad_2d`, with its zeros past each row's end replaced (labels pad with -100)."""
    out = pad_2d(seqs)
    if pad_id != 0:
        lengths = torch.tensor([len(s) for s in seqs])
        out[torch.arange(out.shape[1]) >= lengths[:, None]] = pad_id
    return out


def collate_visits(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Notes and codes of `VisitDataset` / `Column` items, padded with 0, and their masks."""
    batch: dict[str, torch.Tensor] = {}
    if "input_ids" in samples[0]:
        batch["input_ids"] = pad_2d([s["input_ids"] for s in samples])  # (B, L_T)
        batch["attention_mask"] = batch["input_ids"] != 0
    if "code_ids" in samples[0]:
        batch["code_ids"] = pad_2d([s["code_ids"] for s in samples])  # (B, L_C)
        batch["code_mask"] = batch["code_ids"] != 0
    return batch


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """A CPU generator seeded by (seed, epoch, sample index) alone: a sample's draws do not depend
    on the rank, the batch or anything drawn before them."""
    digest = hashlib.blake2b(f"{seed},{epoch},{index}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


class MaskingCollate:
    """Masks each sample with its own `sample_generator(seed, epoch, sample["index"])`, then pads.

    Masks change every epoch (the loop calls `set_epoch`) and are the same on any number of ranks
    or micro-batches, after a resume, and in DataLoader workers; the global RNG is not touched.
    `prob` is the text MLM's rate; the code models mask at their own config's `mask_prob`.
    """

    def __init__(self, model: TextMLM | MedMPLMForPretraining | GBertForPretraining, tokenizer: Any = None,
                 prob: float = 0.15, seed: int = 0):
        self.model, self.tokenizer, self.prob, self.seed = model, tokenizer, prob, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if any("index" not in s for s in samples):
            raise KeyError("masking needs each sample's 'index' (VisitDataset / Column items carry it)")
        gens = [sample_generator(self.seed, self.epoch, s["index"]) for s in samples]
        batch = collate_visits(samples)
        if isinstance(self.model, TextMLM):
            ms = [self.model.mask(torch.tensor([s["input_ids"]]), self.tokenizer, prob=self.prob, generator=g)
                  for s, g in zip(samples, gens)]
            return {"input_ids": pad([m.input_ids[0] for m in ms]), "attention_mask": batch["attention_mask"],
                    "labels": pad([m.labels[0] for m in ms], pad_id=-100)}
        ms = [self.model.mask({"code_ids": torch.tensor([s["code_ids"]])}, generator=g) for s, g in zip(samples, gens)]
        return {**batch, "code_ids": pad([m["code_ids"][0] for m in ms]),
                "code_labels": pad([m["code_labels"][0] for m in ms], pad_id=-100)}


class EvalMasking:
    """Validation masks: every picked code becomes [MASK] (no 10% kept / 10% random, which would
    leave the answer visible) and every visit has at least one masked code. Draws from the
    global RNG: use it through `fixed_eval_batches`."""

    def __init__(self, code_cfg: CodeEncoderConfig, prob: float):
        self.ranges, self.prob = code_cfg.code_ranges(), prob

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = collate_visits(samples)
        m = mask_codes(batch["code_ids"], self.ranges, MASK_ID, prob=self.prob, mask_frac=1.0, random_frac=0.0,
                       min_one=True)
        return {**batch, "code_ids": m.input_ids, "code_labels": m.labels}


def fixed_eval_batches(ds: Dataset, collate: Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]],
                       batch_size: int, seed: int = 1234) -> list[dict[str, torch.Tensor]]:
    """Validation batches masked once with a fixed seed, so every evaluation sees the same masks
    (a collate that draws from the global RNG gets it seeded; `MaskingCollate` has its own seed)."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return [collate([ds[j] for j in range(i, min(i + batch_size, len(ds)))])
                for i in range(0, len(ds), batch_size)]
    finally:
        torch.random.set_rng_state(state)


def masked_token_count(key: str) -> Callable[[dict[str, torch.Tensor]], torch.Tensor]:
    """`loss_weight` of a loss that is the mean over the masked positions of `batch[key]`."""
    def count(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return (batch[key] != -100).sum()
    return count


__all__ = ["PretrainDataConfig", "pretraining_visits", "train_val", "with_vocabularies", "split_visits",
           "code_vocabularies", "code_encoder_config", "note_ids", "encode_codes", "VisitDataset", "Column", "pad",
           "collate_visits", "sample_generator", "MaskingCollate", "EvalMasking", "fixed_eval_batches",
           "masked_token_count"]
