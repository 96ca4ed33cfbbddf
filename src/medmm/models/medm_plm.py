"""MedM-PLM: text tower + code tower + cross-modal module (paper Fig. 2, Eq. 1-7).

Batches are dicts with stable keys:
    input_ids, attention_mask (B, L_T)   note tokens, [CLS] first       (text modality)
    code_ids, code_mask (B, L_C)         [CLS] dx.. med.. code tokens    (code modality)
    code_labels (B, L_C)                 pre-training only: original id at masked positions
A missing modality is an absent key: the model then returns that tower's features only and
R = Ẑ for the present one (no cross-attention is possible).

`MedMPLM.forward` returns features; `MedMPLMForPretraining` adds the masked-code objectives
(Eq. 8-9) and sums them (Eq. 10). Both save and load through `medmm.models.pretrained` (layout
there): the text tower as a plain BERT directory text/, every other weight in model.safetensors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
import torch.nn as nn
from transformers import PreTrainedTokenizerBase

from medmm.models.code_encoder import MASK_ID, CodeEncoder, CodeEncoderConfig
from medmm.models.cross_modal import CrossModal
from medmm.models.pretrained import (MEDM_PLM, MEDM_PLM_PRETRAINING, WEIGHTS, check_vocab, load_weights,
                                     save_weights, write_code_vocab, write_config)
from medmm.models.text import TextEncoderConfig, build_text_encoder, check_bert_dir, has_tokenizer, save_bert
from medmm.models.tokenizer import load_tokenizer
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


def _write_plm(model: MedMPLM | MedMPLMForPretraining, directory: Path,
               tokenizer: PreTrainedTokenizerBase | None) -> None:
    """config.json, code_vocab.json, model.safetensors (all but the text tower), text/."""
    plm = model if isinstance(model, MedMPLM) else model.model
    cfg = plm.config.to_dict()
    # The text tower's architecture comes from its own saved config.json; record it truthfully
    # here and point the loader at text/ (set at load time).
    bc = plm.text.config
    cfg["text"].update(pretrained_path=None, vocab_size=bc.vocab_size, hidden_size=bc.hidden_size,
                       num_layers=bc.num_hidden_layers, num_heads=bc.num_attention_heads,
                       intermediate_size=bc.intermediate_size, max_position_embeddings=bc.max_position_embeddings)
    write_config(directory, model.model_type, cfg)
    write_code_vocab(directory, plm.config.code)
    save_weights(model, directory / WEIGHTS, skip_prefix=model.text_prefix)
    src = plm.config.text.pretrained_path
    if tokenizer is None and src and has_tokenizer(Path(src)):
        tokenizer = load_tokenizer(src)  # keep the text/ directory self-contained
    save_bert(plm.text, directory / "text", tokenizer)


def _plm_config(directory: Path, data: dict, dx_vocab: Sequence[str] | None,
                med_vocab: Sequence[str] | None) -> MedMPLMConfig:
    cfg = MedMPLMConfig.from_dict(data["config"])
    cfg.text.pretrained_path = str(check_bert_dir(directory / "text"))
    check_vocab(cfg.code, dx_vocab, med_vocab, directory)
    return cfg


class MedMPLM(nn.Module):
    # Checkpoint: config.json's model_type, and where the towers' weights sit in the state dict.
    model_type: ClassVar[str] = MEDM_PLM
    text_prefix: ClassVar[str] = "text."
    code_tower_prefix: ClassVar[str] = "code."  # read by CodeEncoder.read_checkpoint

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

    def write_checkpoint(self, directory: Path, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        _write_plm(self, directory, tokenizer)

    @classmethod
    def read_checkpoint(cls, directory: Path, data: dict, dx_vocab: Sequence[str] | None = None,
                        med_vocab: Sequence[str] | None = None) -> MedMPLM:
        """From a "medm-plm" checkpoint, or a "medm-plm-pretraining" one with its heads dropped."""
        kind = data["model_type"]
        if kind not in (MEDM_PLM, MEDM_PLM_PRETRAINING):
            raise ValueError(f"{directory}: model_type {kind!r} is not a MedM-PLM checkpoint")
        model = cls(_plm_config(directory, data, dx_vocab, med_vocab))
        if kind == MEDM_PLM:
            load_weights(model, directory / WEIGHTS, skip_prefix=cls.text_prefix)
        else:
            load_weights(model, directory / WEIGHTS, skip_prefix=cls.text_prefix, rename={"model.": ""},
                         drop_prefixes=("objective.",))
        return model


class MedMPLMForPretraining(nn.Module):
    """MedM-PLM + Text-to-Code and Code-to-Code heads; `loss` = L_T2C + L_C2C (Eq. 10)."""

    model_type: ClassVar[str] = MEDM_PLM_PRETRAINING
    text_prefix: ClassVar[str] = "model.text."
    code_tower_prefix: ClassVar[str] = "model.code."

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

    def write_checkpoint(self, directory: Path, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        _write_plm(self, directory, tokenizer)

    @classmethod
    def read_checkpoint(cls, directory: Path, data: dict, dx_vocab: Sequence[str] | None = None,
                        med_vocab: Sequence[str] | None = None) -> MedMPLMForPretraining:
        if data["model_type"] != cls.model_type:
            raise ValueError(f"{directory}: model_type {data['model_type']!r}, expected {cls.model_type!r}")
        model = cls(_plm_config(directory, data, dx_vocab, med_vocab))
        load_weights(model, directory / WEIGHTS, skip_prefix=cls.text_prefix)
        return model
