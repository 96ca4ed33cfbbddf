"""Code model + ClinicalBERT with concatenated representations (MedM-PLM Table III, rows
"G-BERT+ClinicalBERT" and "Med-BERT+ClinicalBERT").

The two encoders run side by side, with no interaction between them (the point of comparison
with MedM-PLM's cross-modal module); their representations are concatenated and fed to the MLP:
    readmission / ICD coding   [code repr of the current visit ‖ [CLS] of the current note]
    medication                 G-BERT: [mean Ẑ_C of earlier visits ‖ Ẑ_C of current dx ‖ mean [CLS]
                               of earlier notes]; Med-BERT: [its patient [CLS] ‖ mean [CLS] of
                               earlier notes]
Encoders and their initialisation are exactly those of the single-modality baselines
(`gbert.py`, `medbert.py`, `clinicalbert.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn as nn

from medmm.models.baselines.clinicalbert import ClinicalBERTEncoder, load_text_tower
from medmm.models.baselines.gbert import GBertEncoder, load_gbert_encoder
from medmm.models.baselines.medbert import MedBERTConfig, MedBERTEncoder
from medmm.models.downstream import MLPHead, make_config, task_output, uses_history


@dataclass
class ComboConfig:
    mlp_hidden: int = 300
    dropout: float = 0.1
    text_freeze_embeddings: bool = False
    text_freeze_layers: int = 0
    text_frozen: bool = False  # whole text tower frozen, [CLS] per note cached (see clinicalbert.py)
    text_cache_dtype: str = "float32"
    gbert_checkpoint: str | None = None  # overrides assets.gbert_path
    medbert: dict[str, Any] = field(default_factory=dict)  # MedBERTConfig overrides


class CodeTextConcat(nn.Module):
    def __init__(self, cfg: ComboConfig, spec, code_encoder: nn.Module, text_encoder: ClinicalBERTEncoder):
        super().__init__()
        self.config, self.spec = cfg, spec
        self.code_encoder, self.text_encoder = code_encoder, text_encoder
        self.head = MLPHead(code_encoder.out_dim + text_encoder.out_dim, cfg.mlp_hidden, spec.num_labels,
                            cfg.dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        rep = torch.cat([self.code_encoder(batch), self.text_encoder(batch)], dim=-1)  # (B, D_code + H_T)
        return task_output(self.head(rep), batch, self.spec)


def build(spec, assets, codes: Literal["gbert", "medbert"], **overrides) -> CodeTextConcat:
    name = f"{codes}+clinicalbert"
    cfg = make_config(ComboConfig, overrides, name)
    history = uses_history(spec)
    if codes == "gbert":
        code_encoder: nn.Module = GBertEncoder(load_gbert_encoder(assets, "gbert", cfg.gbert_checkpoint), history,
                                               name)
    elif codes == "medbert":
        code_encoder = MedBERTEncoder(make_config(MedBERTConfig, cfg.medbert, name), assets.code_config.vocab_size,
                                      history)
    else:
        raise ValueError(f"code encoder must be 'gbert' or 'medbert', got {codes!r}")
    bert = load_text_tower(assets, cfg.text_freeze_embeddings, cfg.text_freeze_layers, name)
    return CodeTextConcat(cfg, spec, code_encoder, ClinicalBERTEncoder(bert, history, name, frozen=cfg.text_frozen,
                                                                       cache_dtype=cfg.text_cache_dtype))
