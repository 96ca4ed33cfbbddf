"""Code tower: G-BERT-style transformer over a visit's diagnosis and medication codes (Eq. 5).

Token vocabulary (ids):
    0..4                      [PAD] [CLS] [MASK] [SEP] [UNK]   (learned embeddings)
    5 .. 5+n_dx               ICD-9 diagnosis codes            (ontology embedding, Eq. 1-2)
    5+n_dx .. 5+n_dx+n_med    ATC-3 medication codes           (ontology embedding, Eq. 1-2)
The two code ranges are contiguous so masking can draw a random replacement from the right one.

A visit is `[CLS] dx_1 .. dx_n med_1 .. med_m` (MedM-PLM: one code sequence with [CLS] first).
Codes are a set, so there are no position embeddings (as in G-BERT); a learned type embedding
(special / diagnosis / medication) tells the two systems apart. The encoder returns token-level
Z_C (B, L, H) and the visit-level [CLS] vector Ẑ_C (B, H).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from medmm.models.ontology_gat import OntologyEmbedding, restrict_tree
from medmm.models.pretrained import (CODE_ENCODER, WEIGHTS, check_vocab, load_weights, model_class, save_weights,
                                     write_code_vocab, write_config)

SPECIAL_TOKENS = ["[PAD]", "[CLS]", "[MASK]", "[SEP]", "[UNK]"]
PAD_ID, CLS_ID, MASK_ID, SEP_ID, UNK_ID = range(len(SPECIAL_TOKENS))


def tree_dict(tree: Any) -> dict[str, str | None]:
    """A child -> parent dict from a plain dict, a `CodeTree.to_json()` dict, or any object with
    `to_json()` (duck-typed so the model never imports the ontology package)."""
    if hasattr(tree, "to_json"):
        tree = tree.to_json()
    if isinstance(tree, Mapping) and "system" in tree and isinstance(tree.get("parent"), Mapping):
        tree = tree["parent"]
    if not isinstance(tree, Mapping):
        raise TypeError(f"expected a child -> parent mapping, got {type(tree).__name__}")
    return dict(tree)


@dataclass
class CodeEncoderConfig:
    """Everything needed to rebuild the code tower: vocabularies, their ontology trees, sizes.

    The trees are stored restricted to the vocabulary's codes and their ancestors, so a saved
    config stays small and a checkpoint loads without the ontology files.
    """

    dx_vocab: list[str] = field(default_factory=list)
    med_vocab: list[str] = field(default_factory=list)
    dx_tree: dict[str, str | None] = field(default_factory=dict)  # child -> parent, up to "ROOT"
    med_tree: dict[str, str | None] = field(default_factory=dict)
    embed_dim: int = 75  # per GAT head; hidden = embed_dim * gat_heads = 300
    gat_heads: int = 4
    num_layers: int = 2
    num_heads: int = 2  # paper: 2 (authors' code: 4)
    intermediate_size: int = 300
    dropout: float = 0.1
    max_codes: int = 61  # max sequence length, [CLS] included
    gat_dropout: float = 0.0

    def __post_init__(self):
        self.dx_vocab = [str(c) for c in self.dx_vocab]
        self.med_vocab = [str(c) for c in self.med_vocab]
        # Restricting also validates: every code must reach ROOT through the tree.
        self.dx_tree = restrict_tree(tree_dict(self.dx_tree), self.dx_vocab, "diagnosis")
        self.med_tree = restrict_tree(tree_dict(self.med_tree), self.med_vocab, "medication")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden size {self.hidden_size} is not divisible by num_heads={self.num_heads}")

    @property
    def hidden_size(self) -> int:
        return self.embed_dim * self.gat_heads

    # ---- vocabulary ---------------------------------------------------------------------------

    @property
    def dx_range(self) -> tuple[int, int]:
        s = len(SPECIAL_TOKENS)
        return s, s + len(self.dx_vocab)

    @property
    def med_range(self) -> tuple[int, int]:
        s = self.dx_range[1]
        return s, s + len(self.med_vocab)

    def code_ranges(self) -> list[tuple[int, int]]:
        """[start, end) id ranges of the code systems, for `objectives.masking.mask_codes`."""
        return [self.dx_range, self.med_range]

    @property
    def vocab_size(self) -> int:
        return self.med_range[1]

    @property
    def num_codes(self) -> int:
        return len(self.dx_vocab) + len(self.med_vocab)

    def vocab(self) -> list[str]:
        """Token strings by id. Codes carry a system prefix only here, for readability: `dx:`/`med:`."""
        return SPECIAL_TOKENS + [f"dx:{c}" for c in self.dx_vocab] + [f"med:{c}" for c in self.med_vocab]

    def encode(self, dx_codes: Sequence[str], med_codes: Sequence[str], truncate: bool = True) -> list[int]:
        """`[CLS] dx.. med..` ids; codes outside the vocabulary -> [UNK]; cut to `max_codes`.

        Truncation keeps the diagnoses first, as the sequence order does.
        """
        dx_index = {c: i + self.dx_range[0] for i, c in enumerate(self.dx_vocab)}
        med_index = {c: i + self.med_range[0] for i, c in enumerate(self.med_vocab)}
        ids = [CLS_ID] + [dx_index.get(c, UNK_ID) for c in dx_codes] + [med_index.get(c, UNK_ID) for c in med_codes]
        if len(ids) > self.max_codes:
            if not truncate:
                raise ValueError(f"visit has {len(ids) - 1} codes, more than max_codes - 1 = {self.max_codes - 1}")
            ids = ids[: self.max_codes]
        return ids

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CodeEncoderConfig:
        return cls(**d)


class CodeEncoder(nn.Module):
    """Ontology-embedded code tokens -> transformer encoder -> (Z_C, Ẑ_C).

    Visits differ a lot in length (a few codes to several dozen), and a padded batch costs its
    longest visit times its size. `forward` therefore runs the transformer on length buckets:
    rows sorted by their last real position, `bucket_rows` at a time, each bucket cut to its own
    longest row. Every row still attends only to its own real tokens, so the result is the same
    as one padded pass (up to float rounding); only padding positions differ (zeros beyond a
    bucket's length), and every consumer masks those. `bucket_rows = 0` runs one padded pass.
    """

    model_type: ClassVar[str] = CODE_ENCODER  # config.json's, see medmm.models.pretrained
    bucket_rows: int = 16  # an execution detail, not a model setting: not saved in the config

    def __init__(self, cfg: CodeEncoderConfig):
        super().__init__()
        self.config = cfg
        H = cfg.hidden_size
        self.special = nn.Embedding(len(SPECIAL_TOKENS), H)
        nn.init.normal_(self.special.weight, std=0.02)
        self.dx_ontology = OntologyEmbedding(cfg.dx_vocab, cfg.dx_tree, cfg.embed_dim, cfg.gat_heads,
                                             cfg.gat_dropout, system="diagnosis")
        self.med_ontology = OntologyEmbedding(cfg.med_vocab, cfg.med_tree, cfg.embed_dim, cfg.gat_heads,
                                              cfg.gat_dropout, system="medication")
        self.type_embedding = nn.Embedding(3, H)  # 0 special, 1 diagnosis, 2 medication
        nn.init.normal_(self.type_embedding.weight, std=0.02)
        self.norm = nn.LayerNorm(H, eps=1e-12)
        self.drop = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(H, cfg.num_heads, cfg.intermediate_size, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=False)
        # No nested-tensor fast path: it zeroes padded outputs in eval only, which would make
        # train/eval outputs differ at pad positions.
        self.encoder = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)

    def token_table(self) -> torch.Tensor:
        """Embedding of every token id. (V, H)

        The ontology GAT (Eq. 1-2) depends on the weights only, not on the batch. When no gradient
        is wanted (evaluation, or a frozen code tower) and the table is deterministic (eval mode or
        no GAT dropout), it is computed once and reused until a weight changes: the key holds each
        parameter's in-place version counter (bumped by optimizer steps and `load_state_dict`)
        and storage, so a stale table is never returned.
        """
        params = [self.special.weight, *self.dx_ontology.parameters(), *self.med_ontology.parameters()]
        deterministic = not self.training or self.config.gat_dropout == 0
        if (torch.is_grad_enabled() and any(p.requires_grad for p in params)) or not deterministic:
            return self._compute_table()
        key = tuple((p._version, p.data_ptr(), p.device) for p in params)
        cached = self.__dict__.get("_table_cache")  # plain attribute: never in the state dict
        if cached is None or cached[0] != key:
            with torch.no_grad():
                cached = (key, self._compute_table())
            self.__dict__["_table_cache"] = cached
        return cached[1]

    def _compute_table(self) -> torch.Tensor:
        return torch.cat([self.special.weight, self.dx_ontology(), self.med_ontology()], dim=0)

    def type_ids(self, code_ids: torch.Tensor) -> torch.Tensor:
        dx0, med0 = self.config.dx_range[0], self.config.med_range[0]
        return (code_ids >= dx0).long() + (code_ids >= med0).long()

    def forward(self, code_ids: torch.Tensor, code_mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """code_ids (B, L) with [CLS] at 0; code_mask (B, L), 1 = real token.

        Returns Z_C (B, L, H) and Ẑ_C = Z_C[:, 0] (B, H).
        """
        V = self.config.vocab_size
        if code_ids.numel() and (int(code_ids.min()) < 0 or int(code_ids.max()) >= V):
            raise ValueError(f"code id out of range [0, {V}): min {int(code_ids.min())}, max {int(code_ids.max())}")
        if code_mask is None:
            code_mask = code_ids != PAD_ID
        code_mask = code_mask.bool()
        x = F.embedding(code_ids, self.token_table()) + self.type_embedding(self.type_ids(code_ids))
        x = self.drop(self.norm(x))  # (B, L, H)
        z = self._encode(x, code_mask)  # (B, L, H)
        return z, z[:, 0]

    def _encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The transformer over (B, L, H) in length buckets (see the class docstring)."""
        B, L, _ = x.shape
        k = self.bucket_rows
        if k <= 0 or B <= k:
            return self.encoder(x, src_key_padding_mask=~mask)
        pos = torch.arange(1, L + 1, device=mask.device)
        ends = (mask * pos).amax(1)  # (B,) last real position + 1 (0 for an empty row)
        order = torch.argsort(ends, stable=True)
        z = x.new_zeros(x.shape)
        for i in range(0, B, k):
            idx = order[i:i + k]
            n = max(int(ends[idx].max()), 1)
            z[idx, :n] = self.encoder(x[idx, :n], src_key_padding_mask=~mask[idx, :n])
        return z

    # ---- checkpoint hooks (medmm.models.pretrained.save_pretrained / from_pretrained) ----------

    def write_checkpoint(self, directory: Path, tokenizer=None) -> None:
        """config.json + code_vocab.json + model.safetensors (`tokenizer`: no text tower, ignored)."""
        write_config(directory, self.model_type, self.config.to_dict())
        write_code_vocab(directory, self.config)
        save_weights(self, directory / WEIGHTS)

    @classmethod
    def read_checkpoint(cls, directory: Path, data: dict, dx_vocab: Sequence[str] | None = None,
                        med_vocab: Sequence[str] | None = None) -> CodeEncoder:
        """From a code-encoder checkpoint, or the code tower of one whose class declares
        `code_tower_prefix` (its weights' prefix; its config's "code" entry is the tower's)."""
        kind = data["model_type"]
        if kind == cls.model_type:
            cfg, prefix = CodeEncoderConfig.from_dict(data["config"]), None
        else:
            prefix = getattr(model_class(kind, directory), "code_tower_prefix", None)
            if prefix is None:
                raise ValueError(f"{directory}: model_type {kind!r} holds no code encoder")
            cfg = CodeEncoderConfig.from_dict(data["config"]["code"])
        check_vocab(cfg, dx_vocab, med_vocab, directory)
        model = cls(cfg)
        load_weights(model, directory / WEIGHTS, only_prefix=prefix)
        return model
