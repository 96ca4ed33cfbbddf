"""MedM-PLM cross-modal module (Eq. 6-7): each modality's visit vector queries the other's tokens.

    R_code = softmax(Ẑ_C Z_Tᵀ / √d) Z_T + Ẑ_C        (Eq. 6)
    R_text = softmax(Ẑ_T Z_Cᵀ / √d) Z_C + Ẑ_T        (Eq. 7)

There are no query/key/value projections in the paper's equations, so none here. The two towers
have different widths (BERT 768, code tower 300), so the TEXT side is projected to the code width
d = H_C by one learned linear map applied to both Z_T and Ẑ_T (`text_proj`; identity when the
widths already agree). Projecting the text down rather than the codes up keeps the code tower's
ontology-embedded space as the common space and the module small. Padding keys are masked out.

Eq. 6 never needs the projected text tokens themselves. With text_proj(z) = W z + b,
    Ẑ_C · (W z_l + b) = (Wᵀ Ẑ_C) · z_l + Ẑ_C · b      (the last term is the same for every l: softmax drops it)
    Σ_l a_l (W z_l + b) = text_proj(Σ_l a_l z_l)        (the weights sum to one)
so the query is mapped into the text width once and only the attended sum is projected:
O(L_T·H_T + H_T·d) per visit instead of O(L_T·H_T·d), the same numbers up to rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass
class CrossModalOutput:
    r_text: torch.Tensor  # (B, d)  R_text, Eq. 7
    r_code: torch.Tensor  # (B, d)  R_code, Eq. 6
    attn_text_to_code: torch.Tensor | None  # (B, L_C)  weights of Ẑ_T over the codes
    attn_code_to_text: torch.Tensor | None  # (B, L_T)  weights of Ẑ_C over the words
    z_text_cls: torch.Tensor  # (B, d)


def visit_attention(query: torch.Tensor, keys: torch.Tensor, key_mask: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q Kᵀ / √d) K over the unmasked keys. query (B, d), keys (B, L, d), key_mask (B, L)."""
    d = query.shape[-1]
    scores = torch.einsum("bd,bld->bl", query, keys) / math.sqrt(d)  # (B, L)
    scores = scores.masked_fill(~key_mask.bool(), float("-inf"))
    attn = scores.softmax(-1)  # (B, L); a row with no valid key would be NaN: checked by caller
    return torch.einsum("bl,bld->bd", attn, keys), attn


class CrossModal(nn.Module):
    """Eq. 6-7 with a residual; `enabled=False` is the MedM-PLM-cross_modal ablation (R = Ẑ)."""

    def __init__(self, text_hidden: int, code_hidden: int, enabled: bool = True):
        super().__init__()
        self.enabled = enabled
        self.text_proj = nn.Linear(text_hidden, code_hidden) if text_hidden != code_hidden else nn.Identity()

    def forward(self, z_text: torch.Tensor, text_mask: torch.Tensor, z_code: torch.Tensor,
                code_mask: torch.Tensor) -> CrossModalOutput:
        """z_text (B, L_T, H_T) with [CLS] at 0, text_mask (B, L_T); z_code (B, L_C, H_C), code_mask (B, L_C)."""
        zt_cls, zc_cls = self.text_proj(z_text[:, 0]), z_code[:, 0]  # Ẑ_T, Ẑ_C: (B, d)
        if not self.enabled:
            return CrossModalOutput(zt_cls, zc_cls, None, None, zt_cls)
        if not bool(text_mask.bool().any(1).all()) or not bool(code_mask.bool().any(1).all()):
            raise ValueError("cross-modal attention: a visit has no unmasked text or code token")
        ctx_code, attn_c2t = self.attend_text(zc_cls, z_text, text_mask)  # Eq. 6
        ctx_text, attn_t2c = visit_attention(zt_cls, z_code, code_mask)  # Eq. 7
        return CrossModalOutput(r_text=ctx_text + zt_cls, r_code=ctx_code + zc_cls,
                                attn_text_to_code=attn_t2c, attn_code_to_text=attn_c2t, z_text_cls=zt_cls)

    def attend_text(self, query: torch.Tensor, z_text: torch.Tensor, text_mask: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`visit_attention(query, text_proj(z_text), text_mask)` without projecting every token
        (module docstring). query (B, d), z_text (B, L_T, H_T) -> ((B, d), (B, L_T))."""
        q = query @ self.text_proj.weight if isinstance(self.text_proj, nn.Linear) else query  # (B, H_T)
        scores = torch.einsum("bh,blh->bl", q, z_text) / math.sqrt(query.shape[-1])  # (B, L_T)
        attn = scores.masked_fill(~text_mask.bool(), float("-inf")).softmax(-1)
        return self.text_proj(torch.einsum("bl,blh->bh", attn, z_text)), attn
