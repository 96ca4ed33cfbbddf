"""ClinicalBERT (Alsentzer et al., 2019; Huang et al., 2019): the text tower alone, fine-tuned
(MedM-PLM Table III, row "ClinicalBERT").

The BERT directory `assets.text_path` (a real ClinicalBERT, or the text-MLM stand-in pre-trained on
the notes) is fine-tuned; its [CLS] hidden state feeds the MLP. Medication: the [CLS] vectors of
the earlier visits' notes are averaged (visits without a note left out; a patient with no earlier
note gets a zero vector). Notes that are absent (all-zero attention mask) are never run through
BERT: the history is flattened to (B*V, L_T) and only real notes are encoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from transformers import BertModel

from medmm.models.downstream import (FrozenTextTower, MLPHead, encode_rows, make_config, masked_mean, note_rows, require,
                                     task_output, uses_history)
from medmm.models.text import TextEncoderConfig, build_text_encoder


@dataclass
class ClinicalBERTConfig:
    freeze_embeddings: bool = False
    freeze_layers: int = 0  # the whole tower is fine-tuned by default
    mlp_hidden: int | None = None  # None: BERT's hidden size
    dropout: float = 0.1
    text_frozen: bool = False  # True: whole tower frozen (eval mode), [CLS] per note computed once and cached
    text_cache_dtype: str = "float32"  # "float16" halves the cache


def load_text_tower(assets, freeze_embeddings: bool = False, freeze_layers: int = 0,
                    model: str = "clinicalbert") -> BertModel:
    """The BERT of `assets.text_path`, checked against the tokenizer the featurizer uses."""
    if not assets.text_path:
        raise ValueError(f"model {model!r} needs assets.text_path (a ClinicalBERT-format BERT directory, "
                         "e.g. written by `medmm pretrain text-mlm`)")
    bert = build_text_encoder(TextEncoderConfig(pretrained_path=str(assets.text_path),
                                                freeze_embeddings=freeze_embeddings, freeze_layers=freeze_layers))
    if assets.text_vocab_size > bert.config.vocab_size:
        raise ValueError(f"{assets.text_path}: BERT vocabulary has {bert.config.vocab_size} entries but the "
                         f"tokenizer has {assets.text_vocab_size}; use the tokenizer saved with this BERT")
    return bert


class ClinicalBERTEncoder(nn.Module):
    """Batch -> note representation (B, H_T): the current note's [CLS], or the mean over earlier notes."""

    def __init__(self, bert: BertModel, history: bool, name: str = "clinicalbert", frozen: bool = False,
                 cache_dtype: str = "float32"):
        super().__init__()
        self.history, self.name = history, name
        self.out_dim = bert.config.hidden_size
        # Frozen: the tower is only reached through its cache wrapper (registered once, so the
        # state dict holds each weight once).
        self.frozen = FrozenTextTower(bert, tokens=False, cache_dtype=cache_dtype) if frozen else None
        self.bert = None if frozen else bert

    def cls(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(N, L) -> [CLS] hidden state (N, H_T)"""
        if self.frozen is not None:
            return self.frozen(ids, mask)
        return self.bert(input_ids=ids, attention_mask=mask.long()).last_hidden_state[:, 0]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.history:
            require(batch, ["hist_input_ids", "hist_attention_mask", "hist_visit_mask"], self.name)
            rows = note_rows(batch)  # (B, V)
            notes = encode_rows(self.cls, batch["hist_input_ids"], batch["hist_attention_mask"], rows, self.out_dim)
            return masked_mean(notes, rows)  # (B, H_T)
        require(batch, ["input_ids"], self.name)
        ids = batch["input_ids"]
        mask = batch.get("attention_mask", ids != 0)
        # As one "visit" per row, so a row without a note is skipped and gives zeros.
        return encode_rows(self.cls, ids[:, None], mask[:, None], mask.bool().any(-1)[:, None], self.out_dim)[:, 0]


class ClinicalBERT(nn.Module):
    def __init__(self, cfg: ClinicalBERTConfig, spec, bert: BertModel):
        super().__init__()
        self.config, self.spec = cfg, spec
        self.encoder = ClinicalBERTEncoder(bert, uses_history(spec), frozen=cfg.text_frozen,
                                           cache_dtype=cfg.text_cache_dtype)
        H = bert.config.hidden_size
        self.head = MLPHead(H, cfg.mlp_hidden or H, spec.num_labels, cfg.dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return task_output(self.head(self.encoder(batch)), batch, self.spec)


def build(spec, assets, **overrides) -> ClinicalBERT:
    cfg = make_config(ClinicalBERTConfig, overrides, "clinicalbert")
    return ClinicalBERT(cfg, spec, load_text_tower(assets, cfg.freeze_embeddings, cfg.freeze_layers))
