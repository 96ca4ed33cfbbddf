"""BERT-style masking of code sequences for MedM-PLM pre-training (paper section F).

15% of the code tokens of a visit are selected; of those 80% become [MASK], 10% stay unchanged
and 10% become a random code. The random code is drawn from the SAME code system as the one it
replaces (a diagnosis for a diagnosis, a medication for a medication); G-BERT's code draws from
the other vocabulary, which we do not copy. Special tokens and padding are never selected.
Everything draws from an explicit `torch.Generator`, so a seed fixes the masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

IGNORE_INDEX = -100  # label of unselected positions (torch cross_entropy's ignore_index)


@dataclass
class MaskedTokens:
    input_ids: torch.Tensor  # (B, L) ids after masking
    labels: torch.Tensor  # (B, L) original id at selected positions, IGNORE_INDEX elsewhere


def bert_mask(ids: torch.Tensor, candidate: torch.Tensor, mask_token_id: int,
              rand_low: int | torch.Tensor, rand_high: int | torch.Tensor, prob: float = 0.15,
              mask_frac: float = 0.8, random_frac: float = 0.1, min_one: bool = False,
              generator: torch.Generator | None = None) -> MaskedTokens:
    """Select each candidate position with probability `prob`; replace per BERT's 80/10/10.

    Args:
        ids: (B, L) token ids.
        candidate: (B, L) bool, positions that may be selected.
        rand_low, rand_high: random replacements are uniform in [rand_low, rand_high); scalars or
            (B, L) tensors, so each position can draw from its own vocabulary range.
        min_one: select one random candidate in rows where none was selected (rows with at least
            one candidate), so that every visit contributes to a visit-level loss.
    """
    if not 0.0 < prob <= 1.0:
        raise ValueError(f"mask prob must be in (0, 1], got {prob}")
    if mask_frac < 0 or random_frac < 0 or mask_frac + random_frac > 1:
        raise ValueError(f"mask_frac={mask_frac}, random_frac={random_frac} must be >= 0 and sum to <= 1")
    if candidate.shape != ids.shape:
        raise ValueError(f"candidate mask shape {tuple(candidate.shape)} != ids shape {tuple(ids.shape)}")
    dev = ids.device

    def rand(*shape: int) -> torch.Tensor:
        # Drawn on CPU from the caller's generator (CPU generators are the portable kind).
        return torch.rand(*shape, generator=generator).to(dev)

    candidate = candidate.bool()
    selected = (rand(*ids.shape) < prob) & candidate
    if min_one:
        empty = candidate.any(1) & ~selected.any(1)
        if empty.any():
            # A uniformly random candidate per empty row: argmax of noise over candidates.
            noise = rand(*ids.shape).masked_fill(~candidate, -1.0)
            pick = noise.argmax(1)
            selected[empty, pick[empty]] = True
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))

    u = rand(*ids.shape)
    to_mask = selected & (u < mask_frac)
    to_random = selected & (u >= mask_frac) & (u < mask_frac + random_frac)
    low = torch.as_tensor(rand_low, device=dev).expand_as(ids)
    high = torch.as_tensor(rand_high, device=dev).expand_as(ids)
    if bool(((high <= low) & to_random).any()):
        raise ValueError("an empty random-replacement range [rand_low, rand_high) at a selected position")
    # Uniform integer in [low, high): floor(low + u * (high - low)), clamped against u -> 1 rounding.
    r = (low + (rand(*ids.shape) * (high - low).to(torch.float64)).floor().long()).minimum(high - 1)
    out = torch.where(to_mask, torch.full_like(ids, mask_token_id), ids)
    out = torch.where(to_random, r.to(ids.dtype), out)
    return MaskedTokens(out, labels)


def mask_codes(code_ids: torch.Tensor, ranges: Sequence[tuple[int, int]], mask_token_id: int,
               prob: float = 0.15, mask_frac: float = 0.8, random_frac: float = 0.1,
               min_one: bool = False, generator: torch.Generator | None = None) -> MaskedTokens:
    """Mask a batch of code sequences (MedM-PLM pre-training).

    Args:
        code_ids: (B, L) ids in the code encoder's vocabulary.
        ranges: the [start, end) id range of each code system, e.g.
            `CodeEncoderConfig.code_ranges()` = [(dx_start, dx_end), (med_start, med_end)].
            Only ids inside a range are maskable; a random replacement stays inside its range.
    """
    low = torch.zeros_like(code_ids)
    high = torch.zeros_like(code_ids)
    candidate = torch.zeros_like(code_ids, dtype=torch.bool)
    for start, end in ranges:
        if end <= start:
            continue  # an empty vocabulary has no ids to mask
        inside = (code_ids >= start) & (code_ids < end)
        candidate |= inside
        low = torch.where(inside, torch.full_like(low, start), low)
        high = torch.where(inside, torch.full_like(high, end), high)
    return bert_mask(code_ids, candidate, mask_token_id, low, high, prob=prob, mask_frac=mask_frac,
                     random_frac=random_frac, min_one=min_one, generator=generator)
