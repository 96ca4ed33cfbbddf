"""Text tower: a Hugging Face BERT over note tokens (MedM-PLM Eq. 3-4).

The paper initialises it from ClinicalBERT (L=12, H=768, A=12) and trains only the last two
layers (embeddings and the first 10 layers frozen). Without such a directory at hand it is built
from `TextEncoderConfig` and, optionally, pre-trained with masked language modelling on the notes
(`TextMLM`, used by `medmm pretrain text-mlm`); its saved directory is a plain BERT directory that
`BertModel.from_pretrained` / `AutoTokenizer.from_pretrained` read, so it can stand in for
ClinicalBERT anywhere.

A tower loaded from a directory has a pooler exactly when the directory's weights do (a real
BERT / ClinicalBERT does), so saving it writes them back unchanged. MedM-PLM never uses the
pooler (Ẑ_T is the [CLS] hidden state), so it is kept frozen.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
import torch.nn as nn
from safetensors import safe_open
from transformers import BertConfig, BertForMaskedLM, BertModel, PreTrainedTokenizerBase

from medmm.models.tokenizer import save_tokenizer
from medmm.objectives.masking import MaskedTokens, bert_mask

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
# The pooler's weight as a BertModel saves it, and as BertFor* heads (ClinicalBERT's) save it.
_POOLER_KEYS = ("pooler.dense.weight", "bert.pooler.dense.weight")


@dataclass
class TextEncoderConfig:
    """Shape of the text BERT, or the local directory it is loaded from.

    When `pretrained_path` is set, the architecture fields are ignored (the directory's
    config.json wins) and only the freezing options apply.
    """

    pretrained_path: str | None = None
    vocab_size: int = 30522
    hidden_size: int = 768
    num_layers: int = 12
    num_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    dropout: float = 0.1
    freeze_embeddings: bool = False
    freeze_layers: int = 0  # paper: 10 of 12 frozen when starting from ClinicalBERT

    def to_bert_config(self) -> BertConfig:
        return BertConfig(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                          num_hidden_layers=self.num_layers, num_attention_heads=self.num_heads,
                          intermediate_size=self.intermediate_size,
                          max_position_embeddings=self.max_position_embeddings,
                          hidden_dropout_prob=self.dropout, attention_probs_dropout_prob=self.dropout,
                          pad_token_id=0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TextEncoderConfig:
        return cls(**d)


def check_bert_dir(path: str | Path) -> Path:
    """Raise a clear error unless `path` is a local Hugging Face BERT directory with weights."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"pretrained text encoder directory {path} does not exist "
                                "(set text.pretrained_path to a local ClinicalBERT-format directory)")
    cfg_file = path / "config.json"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{path} is not a BERT directory: no config.json")
    try:
        model_type = json.loads(cfg_file.read_text()).get("model_type")
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_file}: not valid JSON ({e})") from e
    if model_type != "bert":
        raise ValueError(f"{cfg_file}: model_type is {model_type!r}, expected 'bert'")
    if not any((path / f).is_file() for f in _WEIGHT_FILES):
        raise FileNotFoundError(f"{path} holds no weights (expected one of {', '.join(_WEIGHT_FILES)})")
    return path


def has_tokenizer(path: Path) -> bool:
    return (path / "tokenizer.json").is_file() or (path / "vocab.txt").is_file()


def _weight_names(path: Path) -> set[str] | None:
    """The weight names of a BERT directory, read without loading a tensor; None for a single
    pickled pytorch_model.bin (its names cannot be listed without unpickling it)."""
    if (path / "model.safetensors").is_file():
        with safe_open(str(path / "model.safetensors"), framework="pt") as f:
            return set(f.keys())
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).is_file():
            return set(json.loads((path / index).read_text())["weight_map"])
    return None


def load_bert(path: str | Path, add_pooling_layer: bool = False) -> BertModel:
    """The `BertModel` of a local BERT directory, with a pooler when its weights hold one (or
    `add_pooling_layer`: then a freshly initialised one where they do not)."""
    path = check_bert_dir(path)
    names = _weight_names(path)
    pooled = add_pooling_layer or names is None or any(k in names for k in _POOLER_KEYS)
    # Loads safetensors when present; transformers refuses to unpickle .bin without weights_only.
    model, info = BertModel.from_pretrained(str(path), add_pooling_layer=pooled, output_loading_info=True)
    if not add_pooling_layer and any(k.startswith("pooler.") for k in info["missing_keys"]):
        model.pooler = None  # a .bin without a pooler: drop the one transformers initialised
    return model


def save_bert(bert: BertModel, directory: Path, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
    """A plain BERT directory: config.json + model.safetensors (the pooler if it has one) [+ tokenizer]."""
    bert.save_pretrained(str(directory))
    if tokenizer is not None:
        save_tokenizer(tokenizer, directory)


def build_text_encoder(cfg: TextEncoderConfig, add_pooling_layer: bool = False) -> BertModel:
    """A `BertModel` from `cfg`, or loaded from `cfg.pretrained_path`; then frozen per `cfg`.

    A new tower has no pooler unless asked: MedM-PLM uses the [CLS] hidden state itself as Ẑ_T.
    A loaded one keeps its checkpoint's pooler (`load_bert`), so that saving it loses nothing;
    `freeze` keeps it out of training.
    """
    if cfg.pretrained_path:
        model = load_bert(cfg.pretrained_path, add_pooling_layer=add_pooling_layer)
    else:
        model = BertModel(cfg.to_bert_config(), add_pooling_layer=add_pooling_layer)
    freeze(model, cfg.freeze_embeddings, cfg.freeze_layers)
    return model


def freeze(bert: BertModel, embeddings: bool, layers: int) -> None:
    """Stop gradients to the embeddings and/or the first `layers` transformer layers, and always
    to the pooler: nothing here uses its output, and a trainable parameter that receives no
    gradient breaks DistributedDataParallel (and would sit in the optimiser doing nothing)."""
    n = len(bert.encoder.layer)
    if not 0 <= layers <= n:
        raise ValueError(f"freeze_layers={layers} but the text encoder has {n} layers")
    if bert.pooler is not None:
        bert.pooler.requires_grad_(False)
    if embeddings:
        bert.embeddings.requires_grad_(False)
    for layer in bert.encoder.layer[:layers]:
        layer.requires_grad_(False)


class TextMLM(nn.Module):
    """Masked language modelling on notes for the text tower (`medmm pretrain text-mlm`).

    Not part of MedM-PLM's objective (the paper has no text-to-text MLM; it starts from
    ClinicalBERT): this builds a ClinicalBERT stand-in when no such checkpoint exists.
    Saved, it is a BERT directory (model_type "bert"), which `medmm.models.pretrained.from_pretrained`
    reads back as its encoder, a `BertModel`; `TextMLM(TextEncoderConfig(pretrained_path=dir))`
    resumes MLM from it.
    """

    model_type: ClassVar[str] = "bert"  # medmm.models.pretrained.BERT

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        self.config = cfg
        if cfg.pretrained_path:
            self.mlm = BertForMaskedLM.from_pretrained(str(check_bert_dir(cfg.pretrained_path)))
        else:
            self.mlm = BertForMaskedLM(cfg.to_bert_config())

    def mask(self, input_ids: torch.Tensor, tokenizer: PreTrainedTokenizerBase, prob: float = 0.15,
             generator: torch.Generator | None = None) -> MaskedTokens:
        """BERT 80/10/10 masking of the non-special, non-pad tokens; random tokens are non-special."""
        special = torch.tensor(sorted(set(tokenizer.all_special_ids)), device=input_ids.device)
        candidate = ~torch.isin(input_ids, special)
        # Random replacements drawn from the ordinary vocabulary, i.e. ids above the specials
        # (train_wordpiece puts its 5 specials first, as BERT vocabularies do).
        low = int(special.max()) + 1
        high = self.mlm.config.vocab_size
        return bert_mask(input_ids, candidate, tokenizer.mask_token_id, low, high, prob=prob,
                         generator=generator)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """MLM loss over the masked positions only.

        The vocabulary projection runs on the ~15% masked positions rather than on every token
        (as NVIDIA's BERT recipe does): on CPU it is most of a small tower's cost, and the loss is
        the same mean cross-entropy over the masked positions. logits: (N_masked, V).
        """
        hidden = self.mlm.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        picked = labels != -100
        logits = self.mlm.cls(hidden[picked])  # (N, V)
        loss = F.cross_entropy(logits, labels[picked]) if picked.any() else hidden.sum() * 0.0
        return {"loss": loss, "logits": logits}

    def encoder(self) -> BertModel:
        return self.mlm.bert

    def save_pretrained(self, directory: str | Path, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        """Write a BERT directory (config.json + model.safetensors [+ tokenizer files]).

        The MLM head is kept so that MLM can resume from the directory; `BertModel.from_pretrained`
        drops it and initialises the (unused) pooler (`load_bert` leaves the pooler out).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.write_checkpoint(directory, tokenizer)

    def write_checkpoint(self, directory: Path, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        self.mlm.save_pretrained(str(directory))
        if tokenizer is not None:
            save_tokenizer(tokenizer, directory)
