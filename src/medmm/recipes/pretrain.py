"""Pre-training recipes: text-tower MLM (the ClinicalBERT stand-in) and MedM-PLM (T2C + C2C).

    medmm pretrain text-mlm  --data DATASET --out RUN [--config FILE] [key=value ...]
    medmm pretrain medm-plm  --data DATASET --out RUN [--config FILE] [key=value ...] [--resume]

Pre-training data (MedM-PLM §III-C): every visit with a discharge summary and at least one
code is a single-visit record. Patients come from the split owned by `medmm.tasks.splits`:
the `train` patients pre-train, the `val` patients validate, and the `test` patients -- held
out by every downstream task -- never appear here.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch
from torch.utils.data import Dataset

from medmm.config import load_config, save_config
from medmm.data.schema import load_dataset
from medmm.models.code_encoder import MASK_ID, CodeEncoderConfig
from medmm.models.medm_plm import MedMPLMConfig, MedMPLMForPretraining
from medmm.models.pretrained import save_pretrained
from medmm.models.text import TextEncoderConfig, TextMLM
from medmm.models.tokenizer import load_tokenizer, train_wordpiece
from medmm.objectives.masked_code import masked_code_topk
from medmm.objectives.masking import mask_codes
from medmm.ontology.atc import atc_tree
from medmm.ontology.icd9 import icd9_dx_subtree
from medmm.tasks.splits import with_split
from medmm.tasks.visits import visit_records
from medmm.train.checkpoint import seed_everything
from medmm.train.loop import Trainer, TrainConfig

# ----------------------------------------------------------------------------- configs


@dataclass
class PretrainDataConfig:
    split_seed: int = 0
    max_text_len: int = 256  # paper: 512; the demo uses 256 on CPU
    min_code_count: int = 1  # codes seen fewer times among training visits become [UNK]


@dataclass
class TextMLMRecipe:
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    text: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(
        vocab_size=4000, hidden_size=128, num_layers=2, num_heads=2, intermediate_size=256,
        max_position_embeddings=512))
    tokenizer_min_frequency: int = 2
    mlm_prob: float = 0.15
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=4, batch_size=32, lr=5e-4, eval_every="epoch", log_every=10))


@dataclass
class CodeTowerRecipe:
    embed_dim: int = 75  # x gat_heads = 300, the paper's width
    gat_heads: int = 4
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 300
    dropout: float = 0.1
    max_codes: int = 61


@dataclass
class MedMPLMRecipe:
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    # The text tower: a local BERT directory (ClinicalBERT, or `medmm pretrain text-mlm`'s out/text).
    # Demo: embeddings and the first of 2 layers frozen (the paper freezes 10 of ClinicalBERT's 12).
    text: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(freeze_embeddings=True,
                                                                              freeze_layers=1))
    code: CodeTowerRecipe = field(default_factory=CodeTowerRecipe)
    cross_modal: bool = True
    objective: str = "ce"  # paper: CE at masked codes; "bce": the authors' multi-hot variant
    dropout: float = 0.1
    mask_prob: float = 0.15
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        epochs=8, batch_size=32, lr=5e-4, optimizer="adam", eval_every="epoch",
        early_stopping_patience=2, early_stopping_metric="loss", log_every=10))


# ----------------------------------------------------------------------------- data


def pretraining_visits(data_dir: str | Path, split_seed: int) -> pl.DataFrame:
    """Single-visit records with a note and at least one code, with their `split`; test excluded."""
    recs = visit_records(load_dataset(data_dir))
    recs = recs.filter(pl.col("text").is_not_null() & ((pl.col("dx").list.len() + pl.col("med").list.len()) > 0))
    recs = with_split(recs, seed=split_seed)
    return recs.filter(pl.col("split") != "test")


def code_vocabularies(train: pl.DataFrame, min_count: int) -> tuple[list[str], list[str]]:
    """Diagnosis and ATC-3 vocabularies from training visits, most frequent first."""
    def vocab(col: str) -> list[str]:
        counts = Counter(c for codes in train[col].to_list() for c in codes)
        return [c for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count]
    return vocab("dx"), vocab("med")


def code_encoder_config(dx_vocab: list[str], med_vocab: list[str], r: CodeTowerRecipe) -> CodeEncoderConfig:
    return CodeEncoderConfig(
        dx_vocab=dx_vocab, med_vocab=med_vocab,
        dx_tree=icd9_dx_subtree(dx_vocab).to_json()["parent"], med_tree=atc_tree(med_vocab).to_json()["parent"],
        embed_dim=r.embed_dim, gat_heads=r.gat_heads, num_layers=r.num_layers, num_heads=r.num_heads,
        intermediate_size=r.intermediate_size, dropout=r.dropout, max_codes=r.max_codes)


class VisitDataset(Dataset):
    """Pre-tokenised visits: note token ids and code token ids (lists of ints)."""

    def __init__(self, text_ids: list[list[int]], code_ids: list[list[int]]):
        assert len(text_ids) == len(code_ids)
        self.text_ids, self.code_ids = text_ids, code_ids

    def __len__(self) -> int:
        return len(self.text_ids)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.text_ids[i], "code_ids": self.code_ids[i]}


def pad(seqs: list[list[int]], pad_id: int = 0) -> torch.Tensor:
    out = torch.full((len(seqs), max(len(s) for s in seqs)), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def collate_visits(samples: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
    batch: dict[str, torch.Tensor] = {}
    if "input_ids" in samples[0]:
        batch["input_ids"] = pad([s["input_ids"] for s in samples])
        batch["attention_mask"] = batch["input_ids"] != 0
    if "code_ids" in samples[0]:
        batch["code_ids"] = pad([s["code_ids"] for s in samples])
        batch["code_mask"] = batch["code_ids"] != 0
    return batch


def _tokenize(tokenizer, texts: list[str], max_len: int) -> list[list[int]]:
    return tokenizer(texts, truncation=True, max_length=max_len)["input_ids"]


# ----------------------------------------------------------------------------- text MLM


class _MaskingCollate:
    """Pads, then masks with the GLOBAL torch RNG (saved in checkpoints, so resume is exact)."""

    def __init__(self, model: TextMLM | MedMPLMForPretraining, tokenizer=None, prob: float = 0.15):
        self.model, self.tokenizer, self.prob = model, tokenizer, prob

    def __call__(self, samples):
        batch = collate_visits(samples)
        if isinstance(self.model, TextMLM):
            m = self.model.mask(batch["input_ids"], self.tokenizer, prob=self.prob)
            return {"input_ids": m.input_ids, "attention_mask": batch["attention_mask"], "labels": m.labels}
        return self.model.mask(batch)


def _fixed_eval_batches(ds: Dataset, collate, batch_size: int, seed: int = 1234) -> list[dict]:
    """Validation batches masked once with a fixed seed, so every evaluation sees the same masks."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        return [collate([ds[j] for j in range(i, min(i + batch_size, len(ds)))])
                for i in range(0, len(ds), batch_size)]
    finally:
        torch.random.set_rng_state(state)


def pretrain_text_mlm(data_dir: str | Path, out_dir: str | Path, cfg: TextMLMRecipe,
                      resume: bool = False) -> dict[str, Any]:
    """Train a WordPiece tokenizer and a BERT MLM on the training patients' notes; save out/text."""
    out = Path(out_dir)
    visits = pretraining_visits(data_dir, cfg.data.split_seed)
    train, val = visits.filter(pl.col("split") == "train"), visits.filter(pl.col("split") == "val")
    if cfg.text.pretrained_path:
        tokenizer = load_tokenizer(cfg.text.pretrained_path)
    else:
        tokenizer = train_wordpiece(train["text"].to_list(), vocab_size=cfg.text.vocab_size,
                                    min_frequency=cfg.tokenizer_min_frequency)
        cfg.text.vocab_size = len(tokenizer)
    seed_everything(cfg.train.seed)  # initialisation is part of the run: same seed, same weights
    model = TextMLM(cfg.text)
    text_train = _TextOnly(_tokenize(tokenizer, train["text"].to_list(), cfg.data.max_text_len))
    text_val = _TextOnly(_tokenize(tokenizer, val["text"].to_list(), cfg.data.max_text_len))
    collate = _MaskingCollate(model, tokenizer, cfg.mlm_prob)
    val_batches = _fixed_eval_batches(text_val, collate, cfg.train.batch_size)

    def evaluate(m: TextMLM) -> dict[str, float]:
        tot, n = 0.0, 0
        for b in val_batches:
            k = int((b["labels"] != -100).sum())
            tot += float(m(**b)["loss"]) * k
            n += k
        loss = tot / max(n, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50))}

    result = Trainer(_KwargsAdapter(model), text_train, cfg.train, out, collate_fn=collate,
                     evaluate=lambda m: evaluate(m.inner), run_config=cfg).fit(resume=resume, overwrite=not resume)
    save_pretrained(model, out / "text", tokenizer=tokenizer)
    summary = {"train_visits": train.height, "val_visits": val.height, "vocab_size": len(tokenizer),
               "best_val": result.best_metrics, "steps": result.global_step, "wall_time_s": result.wall_time_s,
               "text_dir": str(out / "text")}
    (out / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


class _TextOnly(Dataset):
    def __init__(self, ids: list[list[int]]):
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.ids[i]}


class _KwargsAdapter(torch.nn.Module):
    """The loop calls model(batch); TextMLM takes keyword tensors."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.inner(**batch)


# ----------------------------------------------------------------------------- MedM-PLM


def build_medm_plm(cfg: MedMPLMRecipe, dx_vocab: list[str], med_vocab: list[str]) -> MedMPLMForPretraining:
    if not cfg.text.pretrained_path:
        raise ValueError("text.pretrained_path is not set: give a local BERT directory (ClinicalBERT, or "
                         "the out/text directory of `medmm pretrain text-mlm`)")
    return MedMPLMForPretraining(MedMPLMConfig(
        text=cfg.text, code=code_encoder_config(dx_vocab, med_vocab, cfg.code), cross_modal=cfg.cross_modal,
        objective=cfg.objective, dropout=cfg.dropout, mask_prob=cfg.mask_prob))


def pretrain_medm_plm(data_dir: str | Path, out_dir: str | Path, cfg: MedMPLMRecipe,
                      resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    """Pre-train MedM-PLM with L = L_T2C + L_C2C (Eq. 10); save out/model (save_pretrained).

    `stop_after` interrupts at that global step as a pre-emption would (checkpoint `last`
    written, no model exported); `resume=True` continues exactly from it.
    """
    out = Path(out_dir)
    t0 = time.perf_counter()
    visits = pretraining_visits(data_dir, cfg.data.split_seed)
    train, val = visits.filter(pl.col("split") == "train"), visits.filter(pl.col("split") == "val")
    dx_vocab, med_vocab = code_vocabularies(train, cfg.data.min_code_count)
    seed_everything(cfg.train.seed)  # initialisation is part of the run: same seed, same weights
    model = build_medm_plm(cfg, dx_vocab, med_vocab)
    tokenizer = load_tokenizer(cfg.text.pretrained_path)
    code_cfg = model.config.code

    def mk(df: pl.DataFrame) -> VisitDataset:
        codes = [code_cfg.encode(dx, med) for dx, med in zip(df["dx"].to_list(), df["med"].to_list())]
        return VisitDataset(_tokenize(tokenizer, df["text"].to_list(), cfg.data.max_text_len), codes)

    train_ds, val_ds = mk(train), mk(val)
    collate = _MaskingCollate(model)
    lo, n_codes = code_cfg.dx_range[0], code_cfg.num_codes

    def eval_collate(samples):
        # Validation masks: every picked code becomes [MASK] (no 10% kept / 10% random, which
        # would leave the answer visible) and every visit has at least one masked code.
        batch = collate_visits(samples)
        m = mask_codes(batch["code_ids"], code_cfg.code_ranges(), MASK_ID, prob=cfg.mask_prob,
                       mask_frac=1.0, random_frac=0.0, min_one=True)
        return {**batch, "code_ids": m.input_ids, "code_labels": m.labels}

    val_batches = _fixed_eval_batches(val_ds, eval_collate, cfg.train.batch_size)
    counts = code_counts(train_ds, lo, n_codes)
    baseline = sum(topk_unseen(counts.expand(b["code_ids"].shape[0], -1), b, lo)[0] for b in val_batches) / max(
        sum(int((b["code_labels"] != -100).sum()) for b in val_batches), 1)

    def evaluate(m: MedMPLMForPretraining) -> dict[str, float]:
        sums = {"loss_t2c": 0.0, "loss_c2c": 0.0}
        hits = {"t2c": 0, "c2c": 0}
        n_masked = 0
        for b in val_batches:
            o = m(b)
            k = int((b["code_labels"] != -100).sum())
            for key in sums:
                sums[key] += float(o[key]) * k
            for side in hits:
                hits[side] += topk_unseen(o[f"logits_{side}"], b, lo)[0]
            n_masked += k
        res = {k: v / max(n_masked, 1) for k, v in sums.items()}
        res["loss"] = res["loss_t2c"] + res["loss_c2c"]
        res.update({f"top5_{s}": hits[s] / max(n_masked, 1) for s in hits})
        res["top5_frequency_baseline"] = baseline
        return res

    result = Trainer(model, train_ds, cfg.train, out, collate_fn=collate, evaluate=evaluate,
                     run_config=cfg).fit(resume=resume, overwrite=not resume, stop_after=stop_after)
    if result.interrupted:
        return {"interrupted_at_step": result.global_step}
    save_pretrained(model.model, out / "model", tokenizer=tokenizer)
    summary = {"train_visits": train.height, "val_visits": val.height, "dx_vocab": len(dx_vocab),
               "med_vocab": len(med_vocab), "steps": result.global_step, "best_val": result.best_metrics,
               "first_val": _first_eval(out), "top5_frequency_baseline": baseline,
               "top5_note": "top-5 among codes not visible in the masked visit; val masks all [MASK]",
               "wall_time_s": round(time.perf_counter() - t0, 1), "model_dir": str(out / "model")}
    (out / "pretrain_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def code_counts(train_ds: VisitDataset, offset: int, n_codes: int) -> torch.Tensor:
    """How often each code occurs among the training visits: the frequency baseline's scores."""
    counts = torch.zeros(n_codes)
    for ids in train_ds.code_ids:
        for t in ids:
            if offset <= t < offset + n_codes:
                counts[t - offset] += 1
    return counts


def topk_unseen(logits: torch.Tensor, batch: dict[str, torch.Tensor], offset: int, k: int = 5) -> tuple[int, int]:
    """Masked-code top-k hits, ranking only codes NOT visible in the visit's (masked) input.

    Codes are unique within a visit, so a visible code cannot be a masked one; leaving them in the
    ranking would reward predicting what the input already shows. Applied alike to the model and
    to the frequency baseline.
    """
    ids = batch["code_ids"]
    visible = (ids >= offset) & (ids < offset + logits.shape[1])
    scores = logits.clone().float()
    rows = torch.arange(ids.shape[0])[:, None].expand_as(ids)[visible]
    scores[rows, ids[visible] - offset] = float("-inf")
    return masked_code_topk(scores, batch["code_labels"], offset, k=k)


def _first_eval(out: Path) -> dict[str, float]:
    for line in (out / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("type") == "eval":
            return rec
    return {}


# ----------------------------------------------------------------------------- CLI glue


RECIPES = {"text-mlm": (TextMLMRecipe, pretrain_text_mlm), "medm-plm": (MedMPLMRecipe, pretrain_medm_plm)}


def run(kind: str, data_dir: str, out_dir: str, config: str | None, overrides: list[str],
        resume: bool = False) -> dict[str, Any]:
    if kind not in RECIPES:
        raise KeyError(f"unknown pre-training recipe {kind!r}; choose from {sorted(RECIPES)}")
    cls, fn = RECIPES[kind]
    cfg = load_config(config, overrides, cls)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    save_config(cfg, Path(out_dir) / "recipe.yaml")
    return fn(data_dir, out_dir, cfg, resume=resume)
