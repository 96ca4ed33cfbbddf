"""RNN: a GRU over codes (MedM-PLM Table III, row "RNN").

Single-visit tasks (readmission, ICD coding): the GRU reads the current visit's code tokens in
recorded order, `[CLS]` first as a start token (so a visit with no code is still a sequence of
length 1). Medication (G-BERT protocol): each visit is one step whose input is the sum of its
code embeddings (a bag: codes within a visit are a set); the GRU reads the earlier visits oldest
first and then the current visit (its diagnoses only). The last hidden state goes to the MLP.
Code embeddings are learned from scratch (no ontology, unlike G-BERT).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.nn.utils.rnn import pack_padded_sequence

from medmm.models.code_encoder import CLS_ID
from medmm.models.downstream import MLPHead, make_config, require, task_output, uses_history


@dataclass
class RNNConfig:
    embed_dim: int = 100
    hidden_size: int = 100
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.1
    mlp_hidden: int = 100


def compact_left(x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move the valid steps of x (B, T, E) to the front of each row, keeping their order.

    Returns the reordered x (B, T, E) and lengths (B,). Padded history visits may sit anywhere in
    the batch layout; the GRU needs each sequence contiguous from step 0.
    """
    order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices  # valid steps first
    x = torch.gather(x, 1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    return x, valid.sum(1)


class CodeGRU(nn.Module):
    def __init__(self, cfg: RNNConfig, spec, code_vocab: int):
        super().__init__()
        self.config, self.spec = cfg, spec
        self.history = uses_history(spec)
        self.embed = nn.Embedding(code_vocab, cfg.embed_dim, padding_idx=0)
        self.drop = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.embed_dim, cfg.hidden_size, cfg.num_layers, batch_first=True,
                          bidirectional=cfg.bidirectional, dropout=cfg.dropout if cfg.num_layers > 1 else 0.0)
        out = cfg.hidden_size * (2 if cfg.bidirectional else 1)
        self.head = MLPHead(out, cfg.mlp_hidden, spec.num_labels, cfg.dropout)

    def visit_bags(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sum of code embeddings per visit, [CLS] and padding left out. ids, mask (..., L) -> (..., E)"""
        keep = (mask.bool() & (ids != CLS_ID)).unsqueeze(-1)
        return (self.embed(ids) * keep).sum(-2)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        require(batch, ["code_ids"], "rnn")
        ids = batch["code_ids"]
        mask = batch.get("code_mask", ids != 0).bool()
        if self.history:
            require(batch, ["hist_code_ids", "hist_code_mask", "hist_visit_mask"], "rnn")
            steps = torch.cat([self.visit_bags(batch["hist_code_ids"], batch["hist_code_mask"]),
                               self.visit_bags(ids, mask).unsqueeze(1)], dim=1)  # (B, V+1, E)
            valid = torch.cat([batch["hist_visit_mask"].bool(), mask.new_ones(ids.shape[0], 1)], dim=1)
            x, lengths = compact_left(steps, valid)
        else:
            x, lengths = compact_left(self.embed(ids), mask)  # (B, L_C, E)
        if bool((lengths == 0).any()):
            raise ValueError("rnn: a sample has no code token (code_mask all zero; expected [CLS] at least)")
        packed = pack_padded_sequence(self.drop(x), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)  # h (layers * dirs, B, H)
        dirs = 2 if self.config.bidirectional else 1
        last = h[-dirs:].transpose(0, 1).reshape(ids.shape[0], -1)  # (B, dirs * H) of the top layer
        return task_output(self.head(last), batch, self.spec)


def build(spec, assets, **overrides) -> CodeGRU:
    return CodeGRU(make_config(RNNConfig, overrides, "rnn"), spec, assets.code_config.vocab_size)
