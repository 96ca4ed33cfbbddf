"""G-BERT (Shang et al., 2019): the ontology-GAT code transformer (MedM-PLM Table III, row
"G-BERT"; Table VI, "G-BERT initialised from MedM-PLM's code tower" = registry name
"gbert-medm-init").

The encoder is MedM-PLM's own code tower (`medmm.models.code_encoder.CodeEncoder`: codes embedded
by the two-stage ontology GAT of Eq. 1-2, then a transformer; Ẑ_C = its [CLS] vector), so the
only difference from MedM-PLM is the missing text modality and cross-modal module.
Initialisation:
    "gbert"            from `assets.gbert_path` (a code-only pre-trained G-BERT: RUN/model of
                       `medmm pretrain gbert`, the experiment's `--gbert`) when given, else random
                       (G-BERT without pre-training; the report then says so)
    "gbert-medm-init"  from the code tower of the MedM-PLM checkpoint `assets.medm_plm_path`
A config field `checkpoint` overrides either path.

Downstream representation:
    readmission / ICD coding   Ẑ_C of the current visit's codes
    medication                 [mean over earlier visits of Ẑ_C(dx + med) ‖ Ẑ_C(current dx)],
                               MedM-PLM's Eq. 11 without its text part (G-BERT's own head
                               averages diagnosis and medication visit vectors separately; here a
                               visit's codes are one sequence, as in MedM-PLM)

`GBertForPretraining` is G-BERT's code-only pre-training (Shang et al. 2019, §3.3; their
`GBERT_Pretrain`), written by `medmm pretrain gbert`. A visit is encoded as TWO sequences by the
same tower, `[CLS] dx..` and `[CLS] med..` (15 % of the codes masked, 80/10/10, random codes from
the same system), giving v_d and v_m; four heads predict the visit's full code sets from them:
    self-prediction   L_se = BCE(f_dd(v_d), y_dx) + BCE(f_mm(v_m), y_med)
    dual-prediction   L_du = BCE(f_dm(v_d), y_med) + BCE(f_md(v_m), y_dx)
    L = L_se + L_du
(y_*: multi-hot of ALL the visit's codes of that system, masked or not; BCE averaged over visits
and codes, as G-BERT's code). The dual terms are what the medication task needs: the current
visit's diagnoses alone (`[CLS] dx..`) must carry its medications.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from medmm.models.code_encoder import CLS_ID, MASK_ID, PAD_ID, CodeEncoder, CodeEncoderConfig
from medmm.models.downstream import (MLPHead, encode_rows, make_config, masked_mean, require, task_output,
                                     uses_history)
from medmm.models.pretrained import load_code_encoder
from medmm.objectives.masked_code import CodeHead, sum_losses, visit_multi_hot
from medmm.objectives.masking import IGNORE_INDEX, mask_codes

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
    dropout: float = 0.1  # of the four prediction heads
    mask_prob: float = 0.15

    def __post_init__(self):
        if isinstance(self.code, dict):
            self.code = CodeEncoderConfig.from_dict(self.code)


# (source sequence, predicted system): self-prediction dx->dx, med->med; dual-prediction med->dx, dx->med
HEADS = (("dx", "dx"), ("med", "dx"), ("dx", "med"), ("med", "med"))


def split_systems(code_ids: torch.Tensor, code_labels: torch.Tensor, cfg: CodeEncoderConfig
                  ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A (masked) visit `[CLS] dx.. med..` -> G-BERT's two sequences `[CLS] dx..`, `[CLS] med..`.

    A position belongs to the system of its ORIGINAL code (its label where masked; masking keeps
    random replacements in their system). [UNK] positions -- a code outside the vocabulary, whose
    system the joint sequence does not record -- go to neither. Order within a system is kept.
    Returns ((dx_ids, dx_labels), (med_ids, med_labels)), each (B, 1 + most codes of that system).
    """
    orig = torch.where(code_labels != IGNORE_INDEX, code_labels, code_ids)
    out = []
    for lo, hi in (cfg.dx_range, cfg.med_range):
        sel = (orig >= lo) & (orig < hi)  # (B, L)
        width = 1 + (int(sel.sum(1).max()) if sel.numel() else 0)
        ids = code_ids.new_zeros(code_ids.shape[0], width)
        ids[:, 0] = CLS_ID
        labels = torch.full_like(ids, IGNORE_INDEX)
        rows, cols = sel.nonzero(as_tuple=True)
        dest = sel.long().cumsum(1)[rows, cols]  # 1-based slot among the row's codes of this system
        ids[rows, dest] = code_ids[rows, cols]
        labels[rows, dest] = code_labels[rows, cols]
        out.append((ids, labels))
    return out[0], out[1]


def _bce_over(logits: torch.Tensor, target: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits averaged over the selected visits and all codes. (B, n), (B, n), (B,) bool"""
    if not bool(rows.any()) or logits.shape[1] == 0:
        return logits.sum() * 0.0  # nothing to predict: zero loss, graph kept for DDP
    return F.binary_cross_entropy_with_logits(logits[rows], target[rows])


class GBertForPretraining(nn.Module):
    """Code tower + G-BERT's four heads (module docstring); `loss` = L_se + L_du.

    Batches are the joint layout every code model reads (`code_ids` = `[CLS] dx.. med..`, from
    `CodeEncoderConfig.encode`); `mask` masks it and `forward` splits it into G-BERT's two
    sequences. A term is averaged over the visits that have codes of both its source and its
    target system (G-BERT's cohort has both in every visit). Outputs, besides the four
    `loss_<src>2<tgt>`: `logits_self` = [f_dd(v_d) ‖ f_mm(v_m)] and `logits_dual` =
    [f_md(v_m) ‖ f_dm(v_d)], each (B, n_codes) over the joint code vocabulary, for the masked-code
    top-k of `medmm.recipes.pretrain`.

    Save the tower with `medmm.models.pretrained.save_pretrained(model.encoder, dir)` (what
    `medmm pretrain gbert` writes to RUN/model) and pass `dir` as `Assets.gbert_path`.
    """

    def __init__(self, cfg: GBertPretrainConfig, encoder: CodeEncoder | None = None):
        super().__init__()
        self.config = cfg
        self.encoder = encoder if encoder is not None else CodeEncoder(cfg.code)
        cc = self.encoder.config
        size = {"dx": len(cc.dx_vocab), "med": len(cc.med_vocab)}
        self.heads = nn.ModuleDict({f"{src}2{tgt}": CodeHead(cc.hidden_size, size[tgt], cfg.dropout)
                                    for src, tgt in HEADS})

    def mask(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None,
             min_one: bool = False) -> dict[str, torch.Tensor]:
        """A copy of `batch` with code_ids masked (15%, 80/10/10, same-system) and code_labels."""
        m = mask_codes(batch["code_ids"], self.encoder.config.code_ranges(), MASK_ID, prob=self.config.mask_prob,
                       min_one=min_one, generator=generator)
        return {**batch, "code_ids": m.input_ids, "code_labels": m.labels}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if "code_labels" not in batch:
            raise KeyError("G-BERT pre-training batch needs 'code_labels' (see GBertForPretraining.mask)")
        cc = self.encoder.config
        ids, labels = batch["code_ids"], batch["code_labels"]
        (dx_ids, _), (med_ids, _) = split_systems(ids, labels, cc)
        B, width = ids.shape[0], max(dx_ids.shape[1], med_ids.shape[1])
        both = torch.cat([F.pad(dx_ids, (0, width - dx_ids.shape[1])),
                          F.pad(med_ids, (0, width - med_ids.shape[1]))])  # (2B, W), one pass of the tower
        _, pooled = self.encoder(both, both != PAD_ID)  # (2B, d)
        v = {"dx": pooled[:B], "med": pooled[B:]}
        target = visit_multi_hot(ids, labels, cc.dx_range[0], cc.num_codes)  # (B, n_codes)
        n_dx = len(cc.dx_vocab)
        y = {"dx": target[:, :n_dx], "med": target[:, n_dx:]}
        has = {k: t.any(1) for k, t in y.items()}
        logits = {f"{src}2{tgt}": self.heads[f"{src}2{tgt}"](v[src]) for src, tgt in HEADS}  # (B, n_tgt)
        out = {f"loss_{src}2{tgt}": _bce_over(logits[f"{src}2{tgt}"], y[tgt], has[src] & has[tgt])
               for src, tgt in HEADS}
        out["logits_self"] = torch.cat([logits["dx2dx"], logits["med2med"]], 1)
        out["logits_dual"] = torch.cat([logits["med2dx"], logits["dx2med"]], 1)
        out["loss"] = sum_losses(out)
        return out
