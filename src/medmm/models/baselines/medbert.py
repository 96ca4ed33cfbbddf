"""Med-BERT (Rasmy et al., 2021): a transformer over the serialized code sequence (MedM-PLM
Table III, row "Med-BERT").

Each code token's input is the sum of three learned embeddings, as in Med-BERT:
    code embedding            the code id (own table; no ontology, unlike G-BERT)
    serialization embedding   the code's order inside its visit (1, 2, ...; [CLS] = 0)
    visit embedding           the visit's index in the patient's sequence (1, 2, ...; [CLS] = 0)
The sequence is `[CLS]` then the codes of every visit, oldest first; the [CLS] output feeds the
MLP. Readmission / ICD coding: one visit (the current one). Medication: the earlier visits' codes
(dx + med) then the current visit's diagnoses; when longer than `max_len`, the oldest codes are
dropped.

Initialisation is random: Med-BERT's own pre-training (masked codes + prolonged length of stay
on a large claims database) is not reproduced here; Table III's Med-BERT row is therefore this
architecture trained from scratch on the task (documented deviation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from medmm.models.code_encoder import CLS_ID
from medmm.models.downstream import MLPHead, make_config, require, task_output, uses_history


@dataclass
class MedBERTConfig:
    hidden_size: int = 192  # Med-BERT's width
    num_layers: int = 6
    num_heads: int = 6
    intermediate_size: int = 768
    dropout: float = 0.1
    max_len: int = 512  # codes per patient sequence, [CLS] included
    max_visits: int = 64  # visit embedding rows; later visits share the last row
    max_codes_per_visit: int = 64  # serialization embedding rows
    mlp_hidden: int | None = None  # None: hidden_size


def serialize(batch: dict[str, torch.Tensor], history: bool, max_len: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flatten a batch's visits into one code sequence per patient.

    Returns ids, serialization index, visit index and mask, each (B, L) with L <= max_len,
    [CLS] at position 0. Visit and code [CLS] / padding tokens of the batch layout are dropped.
    """
    ids = batch["code_ids"]  # (B, L_C)
    B = ids.shape[0]
    keep = batch.get("code_mask", ids != 0).bool() & (ids != CLS_ID)
    # Parts as (ids, keep, visit index), each (B, visits, codes); history and current may be
    # padded to different lengths.
    parts = [(ids[:, None], keep[:, None], torch.ones_like(ids)[:, None])]
    if history:
        h_ids = batch["hist_code_ids"]  # (B, V, L_H)
        vis = batch["hist_visit_mask"].bool()  # (B, V)
        h_keep = batch["hist_code_mask"].bool() & (h_ids != CLS_ID) & vis.unsqueeze(-1)
        rank = vis.long().cumsum(1)  # 1-based index among real visits (B, V)
        current = (vis.sum(1) + 1)[:, None, None].expand_as(ids[:, None])  # the current visit comes last
        parts = [(h_ids, h_keep, rank.unsqueeze(-1).expand_as(h_ids)), (ids[:, None], keep[:, None], current)]
    seqs_ids, seqs_keep, sers, seqs_visit = [], [], [], []
    for p_ids, p_keep, p_vis in parts:
        seqs_ids.append(p_ids.reshape(B, -1))
        seqs_keep.append(p_keep.reshape(B, -1))
        # Serialization index: order of the code within its visit, 1-based.
        sers.append((p_keep.long().cumsum(-1) * p_keep).reshape(B, -1))
        seqs_visit.append(p_vis.reshape(B, -1))
    all_ids, all_keep = torch.cat(seqs_ids, 1), torch.cat(seqs_keep, 1)
    all_ser, all_vis = torch.cat(sers, 1), torch.cat(seqs_visit, 1)
    # Keep the most recent max_len - 1 codes: count kept tokens from the end.
    from_end = all_keep.flip(1).long().cumsum(1).flip(1)  # 1 for the last kept token
    all_keep = all_keep & (from_end <= max_len - 1)
    order = torch.sort((~all_keep).to(torch.int8), dim=1, stable=True).indices  # kept tokens first
    n = int(all_keep.sum(1).max()) if all_keep.numel() else 0

    def take(t: torch.Tensor) -> torch.Tensor:
        return torch.gather(t, 1, order)[:, :n]

    mask = take(all_keep)
    cls = torch.full_like(ids[:, :1], CLS_ID)
    zero = torch.zeros_like(cls)
    out_ids = torch.cat([cls, take(all_ids) * mask], 1)
    out_ser = torch.cat([zero, take(all_ser) * mask], 1)
    out_vis = torch.cat([zero, take(all_vis) * mask], 1)
    out_mask = torch.cat([torch.ones_like(cls, dtype=torch.bool), mask], 1)
    return out_ids, out_ser, out_vis, out_mask


class MedBERTEncoder(nn.Module):
    """Batch -> [CLS] vector (B, hidden_size)."""

    def __init__(self, cfg: MedBERTConfig, code_vocab: int, history: bool):
        super().__init__()
        self.config, self.history = cfg, history
        H = cfg.hidden_size
        self.code_embedding = nn.Embedding(code_vocab, H, padding_idx=0)
        self.serialization_embedding = nn.Embedding(cfg.max_codes_per_visit + 1, H)
        self.visit_embedding = nn.Embedding(cfg.max_visits + 1, H)
        for emb in (self.code_embedding, self.serialization_embedding, self.visit_embedding):
            nn.init.normal_(emb.weight, std=0.02)
        self.norm = nn.LayerNorm(H, eps=1e-12)
        self.drop = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(H, cfg.num_heads, cfg.intermediate_size, cfg.dropout,
                                           activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.out_dim = H

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        require(batch, ["code_ids"] + (["hist_code_ids", "hist_code_mask", "hist_visit_mask"] if self.history else []),
                "medbert")
        ids, ser, vis, mask = serialize(batch, self.history, self.config.max_len)  # (B, L) each
        x = (self.code_embedding(ids) + self.serialization_embedding(ser.clamp(max=self.config.max_codes_per_visit))
             + self.visit_embedding(vis.clamp(max=self.config.max_visits)))
        z = self.encoder(self.drop(self.norm(x)), src_key_padding_mask=~mask)  # (B, L, H)
        return z[:, 0]


class MedBERT(nn.Module):
    def __init__(self, cfg: MedBERTConfig, spec, code_vocab: int):
        super().__init__()
        self.config, self.spec = cfg, spec
        self.encoder = MedBERTEncoder(cfg, code_vocab, uses_history(spec))
        self.head = MLPHead(cfg.hidden_size, cfg.mlp_hidden or cfg.hidden_size, spec.num_labels, cfg.dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return task_output(self.head(self.encoder(batch)), batch, self.spec)


def build(spec, assets, **overrides) -> MedBERT:
    return MedBERT(make_config(MedBERTConfig, overrides, "medbert"), spec, assets.code_config.vocab_size)
