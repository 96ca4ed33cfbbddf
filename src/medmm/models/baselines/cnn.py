"""CNN: a 1-D convolutional network over note word pieces (MedM-PLM Table III, row "CNN";
Kim, 2014, "Convolutional Neural Networks for Sentence Classification").

Word-piece embeddings (learned from scratch, the note tokenizer's vocabulary) -> parallel
Conv1d filters of widths 3, 4, 5 -> ReLU -> max over time -> concatenation -> MLP. Padding
positions are excluded from the max. Medication: each earlier visit's note is encoded the same
way and the note vectors are averaged (visits without a note left out).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from medmm.models.downstream import (MLPHead, encode_rows, make_config, masked_mean, note_rows, require,
                                     task_output, uses_history)


@dataclass
class CNNConfig:
    embed_dim: int = 100
    num_filters: int = 100
    kernel_sizes: list[int] = field(default_factory=lambda: [3, 4, 5])
    dropout: float = 0.5  # Kim's value
    mlp_hidden: int = 100


class TextCNN(nn.Module):
    """Note (N, L) -> (N, num_filters * len(kernel_sizes)) by max-pooled convolutions."""

    def __init__(self, cfg: CNNConfig, vocab_size: int):
        super().__init__()
        self.kernel_sizes = list(cfg.kernel_sizes)
        self.embed = nn.Embedding(vocab_size, cfg.embed_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(cfg.embed_dim, cfg.num_filters, k) for k in self.kernel_sizes)
        self.out_dim = cfg.num_filters * len(self.kernel_sizes)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pad = max(self.kernel_sizes) - ids.shape[1]
        if pad > 0:  # a note shorter than the widest filter still gets one window per filter
            ids, mask = F.pad(ids, (0, pad)), F.pad(mask, (0, pad))
        x = self.embed(ids).transpose(1, 2)  # (N, E, L)
        mask = mask.bool()
        feats = []
        for k, conv in zip(self.kernel_sizes, self.convs):
            h = F.relu(conv(x))  # (N, F, L - k + 1)
            start_ok = mask[:, : h.shape[-1]].unsqueeze(1)  # windows that start on a real token
            h = h.masked_fill(~start_ok, float("-inf")).amax(-1)  # (N, F)
            feats.append(torch.where(torch.isinf(h), torch.zeros_like(h), h))  # empty note -> 0
        return torch.cat(feats, dim=-1)


class NoteCNN(nn.Module):
    def __init__(self, cfg: CNNConfig, spec, vocab_size: int):
        super().__init__()
        self.config, self.spec = cfg, spec
        self.history = uses_history(spec)
        self.cnn = TextCNN(cfg, vocab_size)
        self.head = MLPHead(self.cnn.out_dim, cfg.mlp_hidden, spec.num_labels, cfg.dropout)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.history:
            require(batch, ["hist_input_ids", "hist_attention_mask", "hist_visit_mask"], "cnn")
            rows = note_rows(batch)  # (B, V)
            notes = encode_rows(self.cnn, batch["hist_input_ids"], batch["hist_attention_mask"], rows,
                                self.cnn.out_dim)  # (B, V, D)
            rep = masked_mean(notes, rows)  # (B, D)
        else:
            require(batch, ["input_ids"], "cnn")
            rep = self.cnn(batch["input_ids"], batch.get("attention_mask", batch["input_ids"] != 0))
        return task_output(self.head(rep), batch, self.spec)


def build(spec, assets, **overrides) -> NoteCNN:
    return NoteCNN(make_config(CNNConfig, overrides, "cnn"), spec, assets.text_vocab_size)
