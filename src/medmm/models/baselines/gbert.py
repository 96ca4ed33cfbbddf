"""G-BERT (Shang et al., 2019): the ontology-GAT code transformer (MedM-PLM Table III, row
"G-BERT"; Table VI, "G-BERT initialised from MedM-PLM's code tower" = registry name
"gbert-medm-init").

The encoder is MedM-PLM's own code tower (`medmm.models.code_encoder.CodeEncoder`: codes embedded
by the two-stage ontology GAT of Eq. 1-2, then a transformer; Ẑ_C = its [CLS] vector), so the
only difference from MedM-PLM is the missing text modality and cross-modal module.
Initialisation:
    "gbert"            from `assets.gbert_path` (a code-only pre-trained G-BERT written by
                       `GBertForPretraining` + `save_pretrained(model.encoder, dir)`) when given,
                       else random (G-BERT without pre-training)
    "gbert-medm-init"  from the code tower of the MedM-PLM checkpoint `assets.medm_plm_path`
A config field `checkpoint` overrides either path.

Downstream representation:
    readmission / ICD coding   Ẑ_C of the current visit's codes
    medication                 [mean over earlier visits of Ẑ_C(dx + med) ‖ Ẑ_C(current dx)],
                               MedM-PLM's Eq. 11 without its text part (G-BERT's own head
                               averages diagnosis and medication visit vectors separately; here a
                               visit's codes are one sequence, as in MedM-PLM)

`GBertForPretraining` is the code-only pre-training: masked-code prediction from the code [CLS]
vector (Code-to-Code, Eq. 9, with same-vocabulary random replacement). G-BERT's paper has four
heads (dx->dx, dx->med, med->dx, med->med) over separate dx / med sequences; with one sequence per
visit a single head over the joint vocabulary covers the same predictions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn

from medmm.models.code_encoder import MASK_ID, CodeEncoder, CodeEncoderConfig
from medmm.models.downstream import (MLPHead, encode_rows, make_config, masked_mean, require, task_output,
                                     uses_history)
from medmm.models.pretrained import load_code_encoder
from medmm.objectives.masked_code import CodeToCode, sum_losses
from medmm.objectives.masking import mask_codes

Init = Literal["gbert", "medm-plm"]


@dataclass
class GBertConfig:
    mlp_hidden: int | None = None  # None: the code tower's hidden size
    dropout: float = 0.1
    checkpoint: str | None = None  # overrides assets.gbert_path / assets.medm_plm_path


def load_gbert_encoder(assets, init: Init = "gbert", checkpoint: str | None = None) -> CodeEncoder:
    """The code tower for G-BERT: pre-trained per `init` (see module docstring) or random."""
    cc = assets.code_config
    if init == "gbert":
        path = checkpoint or assets.gbert_path
        if path is None:
            return CodeEncoder(cc)
    elif init == "medm-plm":
        path = checkpoint or assets.medm_plm_path
        if path is None:
            raise ValueError("gbert-medm-init needs assets.medm_plm_path (a pre-trained MedM-PLM directory) "
                             "or a 'checkpoint' override")
    else:
        raise ValueError(f"G-BERT init must be 'gbert' or 'medm-plm', got {init!r}")
    # Vocabularies must match the featurizer's (ids are positions in them).
    return load_code_encoder(path, dx_vocab=cc.dx_vocab, med_vocab=cc.med_vocab)


class GBertEncoder(nn.Module):
    """Batch -> code representation (B, out_dim); see the module docstring for what it holds."""

    def __init__(self, code: CodeEncoder, history: bool, name: str = "gbert"):
        super().__init__()
        self.code, self.history, self.name = code, history, name
        d = code.config.hidden_size
        self.out_dim = 2 * d if history else d

    def visit_vectors(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Ẑ_C per visit. (N, L) -> (N, d)"""
        return self.code(ids, mask)[1]

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        require(batch, ["code_ids"], self.name)
        ids = batch["code_ids"]
        current = self.visit_vectors(ids, batch.get("code_mask", ids != 0))  # (B, d)
        if not self.history:
            return current
        require(batch, ["hist_code_ids", "hist_code_mask", "hist_visit_mask"], self.name)
        rows = batch["hist_visit_mask"].bool()
        hist = encode_rows(self.visit_vectors, batch["hist_code_ids"], batch["hist_code_mask"], rows,
                           current.shape[-1])  # (B, V, d)
        return torch.cat([masked_mean(hist, rows), current], dim=-1)  # (B, 2d)


class GBert(nn.Module):
    def __init__(self, cfg: GBertConfig, spec, code: CodeEncoder, name: str = "gbert"):
        super().__init__()
        self.config, self.spec = cfg, spec
        self.encoder = GBertEncoder(code, uses_history(spec), name)
        hidden = cfg.mlp_hidden or code.config.hidden_size
        self.head = MLPHead(self.encoder.out_dim, hidden, spec.num_labels, cfg.dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return task_output(self.head(self.encoder(batch)), batch, self.spec)


def build(spec, assets, init: Init = "gbert", **overrides) -> GBert:
    name = "gbert" if init == "gbert" else "gbert-medm-init"
    cfg = make_config(GBertConfig, overrides, name)
    return GBert(cfg, spec, load_gbert_encoder(assets, init, cfg.checkpoint), name)


# ---- code-only pre-training ---------------------------------------------------------------------

@dataclass
class GBertPretrainConfig:
    code: CodeEncoderConfig = field(default_factory=CodeEncoderConfig)
    objective: Literal["ce", "bce"] = "ce"  # as MedMPLMConfig.objective
    dropout: float = 0.1
    mask_prob: float = 0.15

    def __post_init__(self):
        if isinstance(self.code, dict):
            self.code = CodeEncoderConfig.from_dict(self.code)


class GBertForPretraining(nn.Module):
    """Code tower + Code-to-Code head: masked codes predicted from Ẑ_C; `loss` = L_C2C.

    Save the tower for fine-tuning with `medmm.models.pretrained.save_pretrained(model.encoder, dir)`
    and pass `dir` as `Assets.gbert_path`.
    """

    def __init__(self, cfg: GBertPretrainConfig, encoder: CodeEncoder | None = None):
        super().__init__()
        self.config = cfg
        self.encoder = encoder if encoder is not None else CodeEncoder(cfg.code)
        cc = self.encoder.config
        self.objective = CodeToCode(cc.hidden_size, cc.num_codes, cc.dx_range[0], kind=cfg.objective,
                                    dropout=cfg.dropout)

    def mask(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None,
             min_one: bool = False) -> dict[str, torch.Tensor]:
        """A copy of `batch` with code_ids masked (15%, 80/10/10, same-system) and code_labels."""
        m = mask_codes(batch["code_ids"], self.encoder.config.code_ranges(), MASK_ID, prob=self.config.mask_prob,
                       min_one=min_one, generator=generator)
        return {**batch, "code_ids": m.input_ids, "code_labels": m.labels}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "code_labels" not in batch:
            raise KeyError("G-BERT pre-training batch needs 'code_labels' (see GBertForPretraining.mask)")
        ids = batch["code_ids"]
        _, z_cls = self.encoder(ids, batch.get("code_mask", ids != 0))  # (B, d)
        out = self.objective({"r_code": z_cls}, batch)
        out["loss"] = sum_losses(out)
        return out
