"""LR: one-vs-rest logistic regression (MedM-PLM Table III, row "LR").

Features are a bag of codes and a bag of word pieces: counts of every code id and every note
token id of the input. One linear layer scores each label from those counts and a sigmoid per
label makes it one-vs-rest (K independent logistic regressions fit jointly). A linear layer over
counts is an `EmbeddingBag(mode="sum")` with one column per label, which never builds the
(B, vocab) count matrix.

Inputs per task: readmission / ICD coding: the current visit's codes and note. Medication: the
current visit's diagnoses plus every code and every note token of the earlier visits (the LR
has no notion of time, so the history is one bag).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from medmm.models.downstream import make_config, require, task_output, uses_history


@dataclass
class LRConfig:
    use_text: bool = True
    use_codes: bool = True


def _bag_ids(ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ids with unmasked entries set to the padding id 0, flattened to (B, N)."""
    out = torch.where(mask.bool(), ids, torch.zeros_like(ids)).reshape(ids.shape[0], -1)
    return out if out.shape[1] else out.new_zeros(out.shape[0], 1)  # an empty bag is one [PAD]


class LogisticRegression(nn.Module):
    def __init__(self, cfg: LRConfig, spec, text_vocab: int, code_vocab: int):
        super().__init__()
        if not (cfg.use_text or cfg.use_codes):
            raise ValueError("LR needs use_text or use_codes")
        self.config, self.spec = cfg, spec
        self.history = uses_history(spec)
        K = spec.num_labels
        # padding_idx=0: [PAD] never counts. Zero init, as a logistic regression usually starts.
        self.words = nn.EmbeddingBag(text_vocab, K, mode="sum", padding_idx=0) if cfg.use_text else None
        self.codes = nn.EmbeddingBag(code_vocab, K, mode="sum", padding_idx=0) if cfg.use_codes else None
        for bag in (self.words, self.codes):
            if bag is not None:
                nn.init.zeros_(bag.weight)
        self.bias = nn.Parameter(torch.zeros(K))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.bias
        if self.codes is not None:
            if self.history:
                require(batch, ["code_ids", "hist_code_ids", "hist_code_mask", "hist_visit_mask"], "lr")
                hist_mask = batch["hist_code_mask"].bool() & batch["hist_visit_mask"].bool().unsqueeze(-1)
                ids = torch.cat([_bag_ids(batch["code_ids"], batch.get("code_mask", batch["code_ids"] != 0)),
                                 _bag_ids(batch["hist_code_ids"], hist_mask)], dim=1)  # (B, L_C + V*L_C)
            else:
                require(batch, ["code_ids"], "lr")
                ids = _bag_ids(batch["code_ids"], batch.get("code_mask", batch["code_ids"] != 0))
            logits = logits + self.codes(ids)  # (B, K)
        if self.words is not None:
            if self.history:
                require(batch, ["hist_input_ids", "hist_attention_mask", "hist_visit_mask"], "lr")
                mask = batch["hist_attention_mask"].bool() & batch["hist_visit_mask"].bool().unsqueeze(-1)
                ids = _bag_ids(batch["hist_input_ids"], mask)  # (B, V*L_T)
            else:
                require(batch, ["input_ids"], "lr")
                ids = _bag_ids(batch["input_ids"], batch.get("attention_mask", batch["input_ids"] != 0))
            logits = logits + self.words(ids)
        return task_output(logits, batch, self.spec)  # at least one bag ran, so logits is (B, K)


def build(spec, assets, **overrides) -> LogisticRegression:
    cfg = make_config(LRConfig, overrides, "lr")
    return LogisticRegression(cfg, spec, assets.text_vocab_size, assets.code_config.vocab_size)
