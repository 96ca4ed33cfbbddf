"""MedM-PLM pre-training objectives: masked-code prediction from the visit vectors (Eq. 8-10).

    L_T2C = -log P(C_mask | R_text)      (Eq. 8, Text-to-Code)
    L_C2C = -log P(C_mask | R_code)      (Eq. 9, Code-to-Code)
    L     = L_T2C + L_C2C                (Eq. 10)

R_text and R_code are one vector per visit, not one per token, so a visit vector must predict
every masked code of its visit. The paper calls both losses cross-entropies over the masked
tokens; we read Eq. 8-9 as: a head maps the visit vector R to logits over the code vocabulary
(diagnoses and medications, one softmax), and each masked position i of visit b contributes
CE(head(R_b), c_{b,i}). The loss is the mean over all masked positions of the batch, so a visit
with k masked codes weighs k times (each masked code is one term of -log P(C_mask | R)). Visits
with no masked code contribute nothing.

Variant `"bce"` (the authors' public code, G-BERT's pre-training): the same head scores every
code and the target is the multi-hot set of ALL the visit's (original, unmasked) codes, with
element-wise binary cross-entropy averaged over visits and codes.

Heads follow G-BERT's `ClsHead`: Linear(d, d) -> ReLU -> Linear(d, n_codes). Each objective owns
its head; the encoders only return features.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from medmm.objectives.masking import IGNORE_INDEX

Kind = Literal["ce", "bce"]


class CodeHead(nn.Module):
    """Visit vector -> logits over the n_codes code vocabulary. (B, d) -> (B, n_codes)"""

    def __init__(self, hidden: int, num_codes: int, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, num_codes))

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return self.net(r)


def masked_positions(labels: torch.Tensor, code_offset: int, num_codes: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(visit index, code index) of every masked position; labels are token ids or IGNORE_INDEX."""
    sel = labels != IGNORE_INDEX  # (B, L)
    rows = sel.nonzero(as_tuple=True)[0]  # (N,)
    target = labels[sel] - code_offset  # (N,)
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_codes):
        raise ValueError(f"masked label outside the code range [{code_offset}, {code_offset + num_codes})")
    return rows, target


def masked_code_ce(logits: torch.Tensor, labels: torch.Tensor, code_offset: int) -> torch.Tensor:
    """Mean over masked positions of CE(logits[visit], code). logits (B, n_codes), labels (B, L)."""
    rows, target = masked_positions(labels, code_offset, logits.shape[1])
    if rows.numel() == 0:
        return logits.sum() * 0.0  # no masked code in the batch: zero loss, graph kept for DDP
    return F.cross_entropy(logits[rows], target)


def visit_multi_hot(code_ids: torch.Tensor, labels: torch.Tensor, code_offset: int, num_codes: int
                    ) -> torch.Tensor:
    """Multi-hot (B, n_codes) of each visit's original codes (masked positions restored from labels)."""
    orig = torch.where(labels != IGNORE_INDEX, labels, code_ids)  # (B, L)
    idx = orig - code_offset
    valid = (idx >= 0) & (idx < num_codes)  # specials/pad/[UNK] fall outside
    target = torch.zeros(code_ids.shape[0], num_codes + 1, device=code_ids.device)
    # Invalid positions scatter into a spare column that is dropped.
    target.scatter_(1, torch.where(valid, idx, torch.full_like(idx, num_codes)), 1.0)
    return target[:, :num_codes]


def masked_code_topk(logits: torch.Tensor, labels: torch.Tensor, code_offset: int, k: int = 5
                     ) -> tuple[int, int]:
    """(hits, total): masked positions whose true code is among the visit's top-k logits."""
    rows, target = masked_positions(labels, code_offset, logits.shape[1])
    if rows.numel() == 0:
        return 0, 0
    topk = logits.topk(min(k, logits.shape[1]), dim=1).indices[rows]  # (N, k)
    hits = (topk == target[:, None]).any(1)
    return int(hits.sum()), int(rows.numel())


class MaskedCodePrediction(nn.Module):
    """Predict the masked codes of a visit from one named visit vector; returns a named loss.

    features: dict with `feature` -> (B, d). batch: `code_labels` (B, L) token id at masked
    positions and IGNORE_INDEX elsewhere; the "bce" variant also reads `code_ids` (B, L).
    """

    feature: str = ""
    name: str = ""

    def __init__(self, hidden: int, num_codes: int, code_offset: int, kind: Kind = "ce",
                 dropout: float = 0.1):
        super().__init__()
        if kind not in ("ce", "bce"):
            raise ValueError(f"masked-code objective must be 'ce' or 'bce', got {kind!r}")
        self.kind = kind
        self.num_codes = num_codes
        self.code_offset = code_offset
        self.head = CodeHead(hidden, num_codes, dropout)

    def logits(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(features[self.feature])  # (B, n_codes)

    def forward(self, features: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        logits = self.logits(features)
        labels = batch["code_labels"]
        if self.kind == "ce":
            loss = masked_code_ce(logits, labels, self.code_offset)
        else:
            target = visit_multi_hot(batch["code_ids"], labels, self.code_offset, self.num_codes)
            loss = F.binary_cross_entropy_with_logits(logits, target)
        return {self.name: loss, f"logits_{self.name[len('loss_'):]}": logits}


class TextToCode(MaskedCodePrediction):
    """Eq. 8: masked codes from R_text."""

    feature, name = "r_text", "loss_t2c"


class CodeToCode(MaskedCodePrediction):
    """Eq. 9: masked codes from R_code."""

    feature, name = "r_code", "loss_c2c"


class MaskedCodeObjective(nn.Module):
    """Both Eq. 8 and Eq. 9 as `loss_t2c`, `loss_c2c`; `sum_losses` gives Eq. 10."""

    def __init__(self, hidden: int, num_codes: int, code_offset: int, kind: Kind = "ce",
                 dropout: float = 0.1):
        super().__init__()
        self.t2c = TextToCode(hidden, num_codes, code_offset, kind, dropout)
        self.c2c = CodeToCode(hidden, num_codes, code_offset, kind, dropout)

    def forward(self, features: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]
                ) -> dict[str, torch.Tensor]:
        return {**self.t2c(features, batch), **self.c2c(features, batch)}


def sum_losses(outputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of every `loss_*` entry, e.g. Eq. 10 L = L_T2C + L_C2C."""
    losses = [v for k, v in outputs.items() if k.startswith("loss_")]
    if not losses:
        raise ValueError(f"no loss_* entries among {sorted(outputs)}")
    return torch.stack(losses).sum()
