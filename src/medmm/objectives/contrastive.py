"""Symmetric InfoNCE (CLIP) between two views, exact under data parallelism.

For a global batch of N pairs (a_i, b_i), L2-normalised, with s_ij = a_i . b_j / temperature:

    L = 1/2 [ mean_i CE(s_i., i) + mean_j CE(s_.j, j) ]     (a -> b over the rows, b -> a over the columns)

Under DDP (W ranks, B = N / W pairs each) every rank gathers both views of the global batch with
`medmm.train.distributed.gather_features` and scores only ITS B rows against all N columns:

    L_r = 1/2 [ 1/B sum_{i in r} CE(a_i . b_all / t, i) + 1/B sum_{i in r} CE(b_i . a_all / t, i) ]

Each row of the global batch is scored on exactly one rank, so mean_r L_r = L: the mean over ranks
of the logged losses is the single-process loss.

Gradients. DDP averages the ranks' parameter gradients, dividing by W. Rank s's features f_s enter
its own L_s (as rows) and every rank's L_r (as columns of the gathered copy); the gather's backward
sums the gradients of the copies over ranks, so the gradient reaching f_s is d(sum_r L_r)/df_s =
W dL/df_s. Rank s back-propagates that through its encoder, and DDP's mean over s gives
sum_s dL/df_s . df_s/dtheta = dL/dtheta: the single-process gradient, with no rescaling. (A
non-differentiable gather -- `dist.all_gather` with the local rows put back -- keeps only the rows
term of rank s's own loss: the gradient is then wrong, not merely scaled.)

What this assumes: every rank holds the same number of pairs (the loop's samplers pad to make it
so), and one micro-batch per step -- with grad_accum_steps > 1 the negatives are those of the
micro-batch on every rank (W x micro-batch), and the step's loss is the mean of those InfoNCEs,
not the InfoNCE of the global batch. A plain mean: give the loop no `loss_weight` for it.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from medmm.train.distributed import gather_features, is_distributed, rank


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float | torch.Tensor = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE of paired views a, b (B, d): pair i of this rank is positive, every other
    pair of the global batch negative. A scalar; its mean over ranks is the global batch's loss."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"info_nce expects two (B, d) views of the same shape, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    a_all, b_all = gather_features(a), gather_features(b)  # (W*B, d)
    offset = rank() * a.shape[0] if is_distributed() else 0
    target = torch.arange(a.shape[0], device=a.device) + offset  # this rank's rows among the W*B
    logits_ab = a @ b_all.T / temperature  # (B, W*B)
    logits_ba = b @ a_all.T / temperature  # (B, W*B)
    return 0.5 * (F.cross_entropy(logits_ab, target) + F.cross_entropy(logits_ba, target))


class InfoNCELoss(nn.Module):
    """`info_nce` between two named (B, d) features; returns {name: loss}.

    learn_temperature: CLIP's learnable logit scale, log(1 / temperature), the scale capped at 100.
    """

    def __init__(self, view_a: str, view_b: str, name: str = "loss_contrastive", temperature: float = 0.07,
                 learn_temperature: bool = False) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.view_a, self.view_b, self.name = view_a, view_b, name
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)

    @property
    def temperature(self) -> torch.Tensor:
        return 1.0 / self.log_scale.exp().clamp(max=100.0)

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {self.name: info_nce(features[self.view_a], features[self.view_b], self.temperature)}
