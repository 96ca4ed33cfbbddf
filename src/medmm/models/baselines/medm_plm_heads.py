"""MedM-PLM fine-tuned on the downstream tasks (MedM-PLM Table III, rows "MedM-PLM" and
"MedM-PLM-cross_modal"), starting from a pre-trained MedM-PLM checkpoint
(`medmm.models.pretrained.load_medm_plm(assets.medm_plm_path)`).

Per visit the pre-trained model gives R_text and R_code (Eq. 6-7: each modality's [CLS] vector
attends over the other modality's tokens, plus a residual). The task heads:

    Eq. 11-12  medication    sigmoid(MLP([mean_{τ<t} R_text(τ) ‖ mean_{τ<t} R_code(τ) ‖ R_dx(t)]))
               R_text / R_code of each earlier visit τ from its note and its dx + med codes; R_dx(t)
               = Ẑ_C of the current visit's diagnoses (the current visit has no note in the
               batch, so no cross-attention is possible and R = Ẑ, as in `MedMPLM.forward`).
    Eq. 14     readmission   sigmoid(MLP(R_text ‖ R_code)), codes = the visit's dx + med
    Eq. 16     ICD coding    sigmoid(MLP(R_text ‖ R_C_med)), codes = the visit's medications only
    Eq. 13     loss          BCE (`downstream.task_output`)

"medm-plm-cross_modal" is the ablation without the cross-modal module: `cross_modal=False`,
R_text = Ẑ_T (projected to d), R_code = Ẑ_C. The builder disables the module of whichever
checkpoint it loads; for the paper's ablation, point `checkpoint` (or `assets.medm_plm_path`) at a
MedM-PLM pre-trained with `MedMPLMConfig.cross_modal=False`.

A visit without a note (all-zero attention mask) gets R_code = Ẑ_C and no R_text: it is left out
of the historical mean of R_text (Eq. 11), and in the single-visit tasks its R_text is a zero
vector. Only visits with a note go through the text tower (flattened (B*V, L_T), padding cut).

`text_frozen=True` freezes the WHOLE text tower (eval mode, no gradient) and memoises each
note's token-level Z_T (`downstream.FrozenTextTower`, shared by both variants and every seed, as
they load the same checkpoint); the code tower, the cross-modal `text_proj` and the head still
learn. The paper froze 10 of 12 text layers; the CPU demo freezes all of them
(configs/demo_experiment.yaml). The default keeps the checkpoint's freezing and fine-tunes the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from medmm.models.downstream import (FrozenTextTower, MLPHead, make_config, masked_mean, require, task_output, trim_padding,
                                     uses_history)
from medmm.models.medm_plm import MedMPLM
from medmm.models.pretrained import load_medm_plm
from medmm.models.text import freeze

Variant = Literal["medm-plm", "medm-plm-cross_modal"]


@dataclass
class MedMPLMHeadConfig:
    mlp_hidden: int | None = None  # None: d, the width of R
    dropout: float = 0.1
    checkpoint: str | None = None  # overrides assets.medm_plm_path
    cross_modal: bool | None = None  # None: True for "medm-plm", False for "medm-plm-cross_modal"
    text_freeze_embeddings: bool | None = None  # None: keep the checkpoint's text freezing
    text_freeze_layers: int | None = None
    text_frozen: bool = False  # True: whole text tower frozen (eval mode), Z_T per note computed once and cached
    text_cache_dtype: str = "float32"  # "float16" halves the cache


def visit_features(plm: MedMPLM, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                   code_ids: torch.Tensor, code_mask: torch.Tensor,
                   text_fn: FrozenTextTower | None = None) -> dict[str, torch.Tensor]:
    """R_text and R_code of N visits, cross-modal where a visit has both a note and codes.

    input_ids / attention_mask (N, L_T) or None; code_ids / code_mask (N, L_C).
    Returns r_text (N, d) (zeros where no note), r_code (N, d), has_text (N,) bool, and, when the
    cross-modal module ran, attn_text_to_code (N, L_C) and attn_code_to_text (N, L_T) (zero rows
    for visits without a note). `text_fn` (ids, mask) -> Z_T replaces the live `plm.text` (the
    frozen, cached tower).
    """
    code_mask = code_mask.bool()
    if not bool(code_mask.any(1).all()):
        raise ValueError("MedM-PLM: a visit has an all-zero code_mask (expected [CLS] at least)")
    z_code, zc_cls = plm.code(code_ids, code_mask)  # (N, L_C, d), (N, d)
    N, d = zc_cls.shape
    has_text = (attention_mask.bool().any(1) if input_ids is not None
                else torch.zeros(N, dtype=torch.bool, device=code_ids.device))
    out = {"r_text": zc_cls.new_zeros(N, d), "r_code": zc_cls, "has_text": has_text}
    if not bool(has_text.any()):
        return out
    idx = has_text.nonzero().squeeze(1)
    ids, mask = trim_padding(input_ids[idx], attention_mask[idx])
    if text_fn is not None:
        z_text = text_fn(ids, mask)  # (n, L, H_T), from the cache
    else:
        z_text = plm.text(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (n, L, H_T)
    cm = plm.cross(z_text, mask, z_code[idx], code_mask[idx])  # Eq. 6-7
    out["r_text"] = out["r_text"].index_copy(0, idx, cm.r_text)
    out["r_code"] = zc_cls.index_copy(0, idx, cm.r_code)
    if cm.attn_text_to_code is not None:
        L_T = input_ids.shape[1]
        out["attn_text_to_code"] = zc_cls.new_zeros(N, code_ids.shape[1]).index_copy(0, idx, cm.attn_text_to_code)
        c2t = F.pad(cm.attn_code_to_text, (0, L_T - cm.attn_code_to_text.shape[1]))  # undo the trim
        out["attn_code_to_text"] = zc_cls.new_zeros(N, L_T).index_copy(0, idx, c2t)
    return out


class MedMPLMDownstream(nn.Module):
    def __init__(self, cfg: MedMPLMHeadConfig, spec, plm: MedMPLM, name: str = "medm-plm"):
        super().__init__()
        self.config, self.spec, self.name = cfg, spec, name
        self.plm = plm
        self.history = uses_history(spec)
        d = plm.hidden_size
        self.head = MLPHead((3 if self.history else 2) * d, cfg.mlp_hidden or d, spec.num_labels, cfg.dropout)
        # Held in a tuple, not registered: plm.text is already a submodule (each weight saved once).
        self._frozen_text = (FrozenTextTower(plm.text, tokens=True, cache_dtype=cfg.text_cache_dtype),
                             ) if cfg.text_frozen else ()

    @property
    def text_fn(self) -> FrozenTextTower | None:
        return self._frozen_text[0] if self._frozen_text else None

    def train(self, mode: bool = True) -> MedMPLMDownstream:
        super().train(mode)
        if self._frozen_text:
            self.plm.text.eval()  # a frozen tower never runs dropout
        return self

    def representation(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The head's input "x" (Eq. 11, 14 or 16) and the current visit's attention maps."""
        require(batch, ["code_ids"], self.name)
        code_ids = batch["code_ids"]
        code_mask = batch.get("code_mask", code_ids != 0)
        if not self.history:
            require(batch, ["input_ids"], self.name)
            ids = batch["input_ids"]
            f = visit_features(self.plm, ids, batch.get("attention_mask", ids != 0), code_ids, code_mask,
                               self.text_fn)
            out = {"x": torch.cat([f["r_text"], f["r_code"]], dim=-1)}  # (B, 2d): Eq. 14 / Eq. 16
            for k in ("attn_text_to_code", "attn_code_to_text"):
                if k in f:
                    out[k] = f[k]
            return out
        require(batch, ["hist_input_ids", "hist_attention_mask", "hist_code_ids", "hist_code_mask",
                        "hist_visit_mask"], self.name)
        B, V = batch["hist_visit_mask"].shape
        rows = batch["hist_visit_mask"].bool()  # (B, V)
        idx = rows.reshape(-1).nonzero().squeeze(1)  # real earlier visits only
        h_ids, h_mask = (batch[k].reshape(B * V, -1)[idx] for k in ("hist_input_ids", "hist_attention_mask"))
        c_ids, c_mask = trim_padding(batch["hist_code_ids"].reshape(B * V, -1)[idx],
                                     batch["hist_code_mask"].reshape(B * V, -1)[idx])
        f = visit_features(self.plm, h_ids, h_mask, c_ids, c_mask, self.text_fn)

        def grid(v: torch.Tensor) -> torch.Tensor:  # (N, ...) -> (B, V, ...)
            return v.new_zeros(B * V, *v.shape[1:]).index_copy(0, idx, v).view(B, V, *v.shape[1:])

        r_text = masked_mean(grid(f["r_text"]), grid(f["has_text"]))  # mean over earlier notes (B, d)
        r_code = masked_mean(grid(f["r_code"]), rows)  # mean over earlier visits (B, d)
        _, r_dx = self.plm.code(code_ids, code_mask.bool())  # current diagnoses: R = Ẑ_C (B, d)
        return {"x": torch.cat([r_text, r_code, r_dx], dim=-1)}  # (B, 3d): Eq. 11

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        rep = self.representation(batch)
        out = task_output(self.head(rep.pop("x")), batch, self.spec)
        out.update(rep)
        return out


def build(spec, assets, variant: Variant = "medm-plm", **overrides) -> MedMPLMDownstream:
    if variant not in ("medm-plm", "medm-plm-cross_modal"):
        raise ValueError(f"MedM-PLM variant must be 'medm-plm' or 'medm-plm-cross_modal', got {variant!r}")
    cfg = make_config(MedMPLMHeadConfig, overrides, variant)
    path = cfg.checkpoint or assets.medm_plm_path
    if not path:
        raise ValueError(f"model {variant!r} needs assets.medm_plm_path (a pre-trained MedM-PLM directory) "
                         "or a 'checkpoint' override")
    cc = assets.code_config
    plm = load_medm_plm(path, dx_vocab=cc.dx_vocab, med_vocab=cc.med_vocab)
    if assets.text_vocab_size > plm.text.config.vocab_size:
        raise ValueError(f"{path}: text vocabulary has {plm.text.config.vocab_size} entries but the tokenizer has "
                         f"{assets.text_vocab_size}; use the tokenizer saved with this checkpoint")
    enabled = cfg.cross_modal if cfg.cross_modal is not None else variant == "medm-plm"
    plm.cross.enabled = enabled
    plm.config.cross_modal = enabled
    if cfg.text_freeze_embeddings is not None or cfg.text_freeze_layers is not None:
        # An override replaces the checkpoint's freezing; an unset field keeps the checkpoint's value.
        t = plm.config.text
        emb = t.freeze_embeddings if cfg.text_freeze_embeddings is None else cfg.text_freeze_embeddings
        layers = t.freeze_layers if cfg.text_freeze_layers is None else cfg.text_freeze_layers
        plm.text.requires_grad_(True)
        freeze(plm.text, emb, layers)
    return MedMPLMDownstream(cfg, spec, plm, variant)
