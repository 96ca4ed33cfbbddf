"""MedM-PLM: text tower + code tower + cross-modal module (paper Fig. 2, Eq. 1-7).

Batches are dicts with stable keys:
    input_ids, attention_mask (B, L_T)   note tokens, [CLS] first       (text modality)
    code_ids, code_mask (B, L_C)         [CLS] dx.. med.. code tokens    (code modality)
    code_labels (B, L_C)                 pre-training only: original id at masked positions
A missing modality is an absent key: the model then returns that tower's features only and
R = Ẑ for the present one (no cross-attention is possible).

`MedMPLM.forward` returns features; `MedMPLMForPretraining` adds the masked-code objectives
(Eq. 8-9) and sums them (Eq. 10).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn

from medmm.models.code_encoder import MASK_ID, CodeEncoder, CodeEncoderConfig
from medmm.models.cross_modal import CrossModal
from medmm.models.text import TextEncoderConfig, build_text_encoder
from medmm.objectives.masked_code import MaskedCodeObjective, sum_losses
from medmm.objectives.masking import mask_codes


@dataclass
class MedMPLMConfig:
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    code: CodeEncoderConfig = field(default_factory=CodeEncoderConfig)
    cross_modal: bool = True  # False: MedM-PLM-cross_modal ablation, R = Ẑ
    objective: Literal["ce", "bce"] = "ce"  # paper: CE at masked codes; "bce": authors' multi-hot
    dropout: float = 0.1  # before the pre-training heads
    mask_prob: float = 0.15

    def __post_init__(self):
        if isinstance(self.text, dict):
            self.text = TextEncoderConfig.from_dict(self.text)
        if isinstance(self.code, dict):
            self.code = CodeEncoderConfig.from_dict(self.code)
        if self.objective not in ("ce", "bce"):
            raise ValueError(f"objective must be 'ce' or 'bce', got {self.objective!r}")

    def to_dict(self) -> dict:
        return {"text": self.text.to_dict(), "code": self.code.to_dict(), "cross_modal": self.cross_modal,
                "objective": self.objective, "dropout": self.dropout, "mask_prob": self.mask_prob}

    @classmethod
    def from_dict(cls, d: dict) -> MedMPLMConfig:
        return cls(**d)


class MedMPLM(nn.Module):
    def __init__(self, cfg: MedMPLMConfig):
        super().__init__()
        self.config = cfg
        self.text = build_text_encoder(cfg.text)  # transformers.BertModel
        self.code = CodeEncoder(cfg.code)
        self.cross = CrossModal(self.text.config.hidden_size, cfg.code.hidden_size, enabled=cfg.cross_modal)

    @property
    def hidden_size(self) -> int:
        """Width d of R_text and R_code (the code tower's width)."""
        return self.config.code.hidden_size

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        feats: dict[str, torch.Tensor] = {}
        has_text, has_code = "input_ids" in batch, "code_ids" in batch
        if not (has_text or has_code):
            raise KeyError("batch has neither 'input_ids' (text) nor 'code_ids' (codes)")
        if has_text:
            text_mask = batch.get("attention_mask")
            if text_mask is None:
                text_mask = batch["input_ids"] != self.text.config.pad_token_id
            z_text = self.text(input_ids=batch["input_ids"], attention_mask=text_mask.long()).last_hidden_state
            feats["z_text"], feats["z_text_cls"] = z_text, z_text[:, 0]  # (B, L_T, H_T), (B, H_T)
        if has_code:
            code_mask = batch.get("code_mask")
            if code_mask is None:
                code_mask = batch["code_ids"] != 0
            feats["z_code"], feats["z_code_cls"] = self.code(batch["code_ids"], code_mask)  # (B, L_C, d), (B, d)
        if has_text and has_code:
            cm = self.cross(feats["z_text"], text_mask, feats["z_code"], code_mask)
            feats["r_text"], feats["r_code"] = cm.r_text, cm.r_code  # (B, d)
            if cm.attn_text_to_code is not None:
                feats["attn_text_to_code"] = cm.attn_text_to_code  # (B, L_C)
                feats["attn_code_to_text"] = cm.attn_code_to_text  # (B, L_T)
        elif has_text:
            feats["r_text"] = self.cross.text_proj(feats["z_text_cls"])
        else:
            feats["r_code"] = feats["z_code_cls"]
        return feats


class MedMPLMForPretraining(nn.Module):
    """MedM-PLM + Text-to-Code and Code-to-Code heads; `loss` = L_T2C + L_C2C (Eq. 10)."""

    def __init__(self, cfg: MedMPLMConfig):
        super().__init__()
        self.config = cfg
        self.model = MedMPLM(cfg)
        self.objective = MaskedCodeObjective(cfg.code.hidden_size, cfg.code.num_codes, cfg.code.dx_range[0],
                                             kind=cfg.objective, dropout=cfg.dropout)

    def mask(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None,
             min_one: bool = False) -> dict[str, torch.Tensor]:
        """A copy of `batch` with code_ids masked (15%, 80/10/10, same-system) and code_labels."""
        m = mask_codes(batch["code_ids"], self.config.code.code_ranges(), MASK_ID, prob=self.config.mask_prob,
                       min_one=min_one, generator=generator)
        return {**batch, "code_ids": m.input_ids, "code_labels": m.labels}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "code_labels" not in batch:
            raise KeyError("pre-training batch needs 'code_labels' (see MedMPLMForPretraining.mask)")
        feats = self.model(batch)
        out = self.objective(feats, batch)
        out["loss"] = sum_losses(out)
        return out
