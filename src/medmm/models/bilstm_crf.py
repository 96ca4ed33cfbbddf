"""BiLSTM-CRF tagger for the MedM-PLM NER probe (paper Table V).

    pieces ──embedding──▶ (B, T, E) ──BiLSTM──▶ (B, T, 2H) ──gather first pieces──▶ (B, W, 2H)
           ──linear──▶ emissions (B, W, K) ──CRF──▶ loss / Viterbi tags per word

The embedding layer is one of (registry `EMBEDDINGS`):

* ``"scratch"``: a trainable `nn.Embedding` over the tokenizer vocabulary (the plain
  BiLSTM-CRF baseline of Table V);
* ``"tower_frozen"``: the last hidden states of a `transformers.BertModel` text tower, frozen
  (no gradient, kept in eval mode so its dropout is off) — a probe of what the tower learnt;
* ``"tower_finetune"``: the same tower trained with the tagger (the paper fine-tunes with
  lr 3e-5).

Precomputed tower states. A frozen tower is a fixed function of the input, so its last hidden
states can be computed once per window (`tower_hidden_states`) and passed in the batch as
``hidden_states`` (B, T, E); the tower is then skipped. They equal what the tower computes in
eval mode, so training and decoding are the same as without them, only faster across epochs
and seeds. A fine-tuned tower changes every step, so it refuses them.

The BiLSTM runs over all word pieces, so a word's later pieces still inform its first-piece
state; the CRF then sees one position per word (the first piece, as labelled by
`medmm.tasks.ner`), gathered into a compact (B, W) sequence with a mask, so transitions are
learnt between words, not between pieces.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from torchcrf import CRF

from medmm.train.device import model_device, to_device

IGNORE_INDEX = -100


@dataclass
class BiLSTMCRFConfig:
    tags: list[str]                        # tag names; tag id = index (O, B-problem, I-problem, ...)
    embedding: str = "scratch"             # "scratch" | "tower_frozen" | "tower_finetune"
    vocab_size: int = 30522                # scratch only: tokenizer vocabulary size
    embed_dim: int = 100                   # scratch only: the tower uses its own hidden size
    pad_token_id: int = 0
    lstm_hidden: int = 128                 # per direction
    lstm_layers: int = 1
    dropout: float = 0.5
    tower_config: dict[str, Any] | None = field(default=None)  # BertConfig.to_dict(), set by the model

    @property
    def num_tags(self) -> int:
        return len(self.tags)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BiLSTMCRFConfig":
        return cls(**d)


class ScratchEmbedding(nn.Module):
    def __init__(self, config: BiLSTMCRFConfig, tower=None):
        super().__init__()
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim, padding_idx=config.pad_token_id)
        self.out_dim = config.embed_dim

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        if hidden_states is not None:
            raise ValueError("embedding 'scratch' learns its own vectors; the batch must not carry 'hidden_states'")
        if input_ids.max() >= self.embed.num_embeddings:
            raise ValueError(f"token id {int(input_ids.max())} >= vocab_size {self.embed.num_embeddings}; "
                             "set BiLSTMCRFConfig.vocab_size to len(tokenizer)")
        return self.embed(input_ids)  # (B, T, E)


class TowerEmbedding(nn.Module):
    """Last hidden states of a BertModel in place of the embedding layer."""

    def __init__(self, config: BiLSTMCRFConfig, tower=None):
        super().__init__()
        if tower is None:
            if config.tower_config is None:
                raise ValueError(f"embedding {config.embedding!r} needs a text tower (a transformers.BertModel)")
            from transformers import BertConfig, BertModel

            # Rebuilt from the saved config; its weights come from the tagger's safetensors file.
            tower = BertModel(BertConfig.from_dict(config.tower_config), add_pooling_layer=False)
        self.tower = tower
        self.frozen = config.embedding == "tower_frozen"
        self.out_dim = tower.config.hidden_size
        if self.frozen:
            self.tower.requires_grad_(False)
            self.tower.eval()

    def train(self, mode: bool = True) -> "TowerEmbedding":
        super().train(mode)
        if self.frozen:
            self.tower.eval()  # a frozen feature extractor keeps its dropout off
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                hidden_states: torch.Tensor | None = None) -> torch.Tensor:
        if hidden_states is not None:
            if not self.frozen:
                raise ValueError("precomputed 'hidden_states' need a frozen tower (embedding 'tower_frozen'); "
                                 "a fine-tuned tower must run on every step")
            want = (*input_ids.shape, self.out_dim)
            if tuple(hidden_states.shape) != want:
                raise ValueError(f"'hidden_states' has shape {tuple(hidden_states.shape)}, expected {want} "
                                 "(input_ids' (B, T) and the tower's hidden size)")
            return hidden_states                                                # (B, T, E)
        T, limit = input_ids.shape[1], self.tower.config.max_position_embeddings
        if T > limit:
            raise ValueError(f"sequence length {T} > the tower's max_position_embeddings {limit}; "
                             "build the NER windows with max_length <= that")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            return self.tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, E)


EMBEDDINGS = {"scratch": ScratchEmbedding, "tower_frozen": TowerEmbedding, "tower_finetune": TowerEmbedding}


@torch.no_grad()
def tower_hidden_states(tower: nn.Module, input_ids: list[list[int]], batch_size: int = 32,
                        pad_token_id: int = 0) -> list[torch.Tensor]:
    """Last hidden states (T_i, E) of an eval-mode tower for each unpadded sequence of ids, on the CPU.

    Sequences are batched by length (less padding) and run wherever the tower is; padding is
    masked out of attention and each result is cut back to its sequence's length.
    """
    was_training = tower.training
    tower.eval()
    device = model_device(tower)
    out: list[torch.Tensor | None] = [None] * len(input_ids)
    order = sorted(range(len(input_ids)), key=lambda i: len(input_ids[i]))
    try:
        for k in range(0, len(order), batch_size):
            idx = order[k:k + batch_size]
            T = max(len(input_ids[i]) for i in idx)
            ids = torch.full((len(idx), T), pad_token_id, dtype=torch.long)
            am = torch.zeros(len(idx), T, dtype=torch.long)
            for j, i in enumerate(idx):
                ids[j, :len(input_ids[i])] = torch.tensor(input_ids[i], dtype=torch.long)
                am[j, :len(input_ids[i])] = 1
            ids, am = to_device((ids, am), device)
            h = tower(input_ids=ids, attention_mask=am).last_hidden_state                 # (b, T, E)
            for j, i in enumerate(idx):
                out[i] = h[j, :len(input_ids[i])].to("cpu", copy=True)  # held with the CPU dataset
    finally:
        tower.train(was_training)
    return out  # type: ignore[return-value]


def gather_words(x: torch.Tensor, word_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack the first-piece positions of each row to the left.

    x (B, T, ...), word_mask (B, T) bool -> (B, W, ...) and a (B, W) bool mask, W = max words.
    """
    n = word_mask.sum(1)                                                   # (B,)
    W = int(n.max()) if n.numel() else 0
    # A stable sort of "not a word" puts the word positions first, in their original order.
    pos = torch.sort((~word_mask).to(torch.int8), dim=1, stable=True).indices[:, :W]   # (B, W)
    mask = torch.arange(W, device=x.device)[None, :] < n[:, None]                     # (B, W)
    idx = pos.view(*pos.shape, *([1] * (x.dim() - 2))).expand(*pos.shape, *x.shape[2:])
    return x.gather(1, idx), mask


class BiLSTMCRF(nn.Module):
    def __init__(self, config: BiLSTMCRFConfig, tower: nn.Module | None = None):
        super().__init__()
        if config.embedding not in EMBEDDINGS:
            raise ValueError(f"unknown embedding {config.embedding!r}; choose from {list(EMBEDDINGS)}")
        if config.embedding == "scratch" and tower is not None:
            raise ValueError("embedding 'scratch' takes no text tower; use 'tower_frozen' or 'tower_finetune'")
        if tower is not None:
            config.tower_config = tower.config.to_dict()
        self.config = config
        self.embedding = EMBEDDINGS[config.embedding](config, tower)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(self.embedding.out_dim, config.lstm_hidden, num_layers=config.lstm_layers,
                            batch_first=True, bidirectional=True,
                            dropout=config.dropout if config.lstm_layers > 1 else 0.0)
        self.emission = nn.Linear(2 * config.lstm_hidden, config.num_tags)
        self.crf = CRF(config.num_tags, batch_first=True)

    def _word_mask(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "word_mask" in batch:
            wm = batch["word_mask"].bool()
        elif "labels" in batch:
            wm = batch["labels"] != IGNORE_INDEX
        else:
            raise KeyError("batch needs 'word_mask' (first word pieces) or 'labels'")
        empty = (wm.sum(1) == 0).nonzero().flatten()
        if len(empty):
            raise ValueError(f"batch rows {empty.tolist()} have no word (no first-piece position)")
        return wm

    def emissions(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Word-level emission scores (B, W, K), their mask (B, W) and the word mask (B, T)."""
        ids, am = batch["input_ids"], batch["attention_mask"]               # (B, T)
        wm = self._word_mask(batch)
        h = self.dropout(self.embedding(ids, am, batch.get("hidden_states")))  # (B, T, E)
        lengths = am.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])  # (B, T, 2H)
        words, mask = gather_words(self.dropout(out), wm)                   # (B, W, 2H), (B, W)
        return self.emission(words), mask, wm                               # (B, W, K)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Negative CRF log-likelihood per sequence, averaged over the batch."""
        em, mask, wm = self.emissions(batch)
        if "labels" not in batch:
            raise KeyError("forward needs 'labels' (tag ids on first pieces); use decode() to predict")
        tags, _ = gather_words(batch["labels"], wm)                        # (B, W)
        bad = mask & ((tags < 0) | (tags >= self.config.num_tags))
        if bad.any():
            raise ValueError(f"labels at first-piece positions must be tag ids in [0, {self.config.num_tags}); "
                             f"got {tags[bad][:5].tolist()}")
        tags = tags.masked_fill(~mask, 0)                                   # CRF indexes every slot
        llh = self.crf(em, tags, mask=mask, reduction="mean")
        return {"loss": -llh, "emissions": em, "mask": mask}

    @torch.no_grad()
    def decode(self, batch: dict[str, torch.Tensor]) -> list[list[int]]:
        """Viterbi tag ids per sequence, one per word (first piece), in word order."""
        em, mask, _ = self.emissions(batch)
        return self.crf.decode(em, mask=mask)

    # -- persistence: config JSON + safetensors, no pickle -----------------------------------

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2, default=str))
        # The tower's pooler is never used here; it is left out so that the tower rebuilt by
        # from_pretrained (without a pooler) loads the file strictly.
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()
                 if not k.startswith("embedding.tower.pooler.")}
        save_file(state, str(path / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "BiLSTMCRF":
        path = Path(path)
        cfg_file = path / "config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{path}: no config.json (not a saved BiLSTMCRF)")
        model = cls(BiLSTMCRFConfig.from_dict(json.loads(cfg_file.read_text())))
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        return model
