"""Checkpoints: config JSON + safetensors + vocabularies; loading never unpickles.

Layout of a MedM-PLM directory:
    config.json          {"model_type": "medm-plm" | "medm-plm-pretraining", "format_version", "config"}
    model.safetensors    every weight except the text tower's (code tower, cross-modal, heads)
    code_vocab.json      {"dx": [...], "med": [...], "tokens": [...]} (also inside config; for people)
    text/                a plain Hugging Face BERT directory (config.json, model.safetensors,
                         tokenizer files): `BertModel.from_pretrained(dir/text)` and
                         `AutoTokenizer.from_pretrained(dir/text)` read it.
A code-tower directory ("medmm-code-encoder") holds the first three files only. A text tower on
its own is saved as a plain BERT directory.

Directories are written to a temporary sibling and renamed, so a crash never leaves half a
checkpoint behind.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch.nn as nn
from safetensors.torch import load_file, save_file
from transformers import BertModel, PreTrainedTokenizerBase

from medmm.data.io import atomic_dir
from medmm.models.code_encoder import CodeEncoder, CodeEncoderConfig
from medmm.models.medm_plm import MedMPLM, MedMPLMConfig, MedMPLMForPretraining
from medmm.models.text import TextMLM, check_bert_dir
from medmm.models.tokenizer import load_tokenizer, save_tokenizer

FORMAT_VERSION = 1
CODE_ENCODER = "medmm-code-encoder"
MEDM_PLM = "medm-plm"
MEDM_PLM_PRETRAINING = "medm-plm-pretraining"
WEIGHTS = "model.safetensors"


# ---- writing ------------------------------------------------------------------------------------

@contextmanager
def _atomic_dir(directory: Path) -> Iterator[Path]:
    """`medmm.data.io.atomic_dir`, refusing to replace a non-empty directory that is no checkpoint."""
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise FileExistsError(f"{directory} exists and is not a directory")
        if any(directory.iterdir()) and not (directory / "config.json").is_file():
            raise FileExistsError(f"{directory} is a non-empty directory that is not a checkpoint; "
                                  "refusing to overwrite it")
    with atomic_dir(directory, overwrite=True) as tmp:
        yield tmp


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _code_vocab_json(cfg: CodeEncoderConfig) -> dict:
    return {"dx": cfg.dx_vocab, "med": cfg.med_vocab, "tokens": cfg.vocab()}


def _save_weights(module: nn.Module, path: Path, skip_prefix: str | None = None) -> None:
    sd = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()
          if skip_prefix is None or not k.startswith(skip_prefix)}
    save_file(sd, str(path), metadata={"format": "pt"})


def _has_tokenizer(d: Path) -> bool:
    return (d / "tokenizer.json").is_file() or (d / "vocab.txt").is_file()


def _save_text(bert: BertModel, directory: Path, tokenizer: PreTrainedTokenizerBase | None) -> None:
    bert.save_pretrained(str(directory))  # config.json + model.safetensors
    if tokenizer is not None:
        save_tokenizer(tokenizer, directory)


def save_pretrained(model: nn.Module, directory: str | Path,
                    tokenizer: PreTrainedTokenizerBase | None = None) -> Path:
    """Save a MedMPLM, MedMPLMForPretraining, CodeEncoder, BertModel or TextMLM to `directory`.

    `tokenizer` (the text tower's) is written beside the BERT weights so the text directory is
    self-contained.
    """
    directory = Path(directory)
    with _atomic_dir(directory) as tmp:
        if isinstance(model, (MedMPLM, MedMPLMForPretraining)):
            plm = model if isinstance(model, MedMPLM) else model.model
            kind = MEDM_PLM if isinstance(model, MedMPLM) else MEDM_PLM_PRETRAINING
            cfg = plm.config.to_dict()
            # The text tower's architecture comes from its own saved config.json; record it
            # truthfully here and point the loader at text/ (set at load time).
            bc = plm.text.config
            cfg["text"].update(pretrained_path=None, vocab_size=bc.vocab_size, hidden_size=bc.hidden_size,
                               num_layers=bc.num_hidden_layers, num_heads=bc.num_attention_heads,
                               intermediate_size=bc.intermediate_size,
                               max_position_embeddings=bc.max_position_embeddings)
            _write_json(tmp / "config.json", {"model_type": kind, "format_version": FORMAT_VERSION, "config": cfg})
            _write_json(tmp / "code_vocab.json", _code_vocab_json(plm.config.code))
            text_prefix = "text." if kind == MEDM_PLM else "model.text."
            _save_weights(model, tmp / WEIGHTS, skip_prefix=text_prefix)
            src = plm.config.text.pretrained_path
            if tokenizer is None and src and _has_tokenizer(Path(src)):
                tokenizer = load_tokenizer(src)  # keep the text/ directory self-contained
            _save_text(plm.text, tmp / "text", tokenizer)
        elif isinstance(model, CodeEncoder):
            _write_json(tmp / "config.json", {"model_type": CODE_ENCODER, "format_version": FORMAT_VERSION,
                                              "config": model.config.to_dict()})
            _write_json(tmp / "code_vocab.json", _code_vocab_json(model.config))
            _save_weights(model, tmp / WEIGHTS)
        elif isinstance(model, TextMLM):
            model.save_pretrained(tmp, tokenizer)
        elif isinstance(model, BertModel):
            _save_text(model, tmp, tokenizer)
        else:
            raise TypeError(f"save_pretrained: unsupported model type {type(model).__name__}")
    return directory


# ---- reading ------------------------------------------------------------------------------------

def read_config(directory: str | Path) -> dict:
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
    path = directory / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a checkpoint: no config.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or "model_type" not in data:
        raise ValueError(f"{path}: no 'model_type' key")
    if data["model_type"] != "bert" and data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {data.get('format_version')!r}, this medmm reads {FORMAT_VERSION}")
    return data


def check_vocab(cfg: CodeEncoderConfig, dx_vocab: Sequence[str] | None, med_vocab: Sequence[str] | None,
                source: str | Path) -> None:
    """Raise if the given vocabularies differ from the checkpoint's (order matters: ids are positions)."""
    for system, saved, given in (("diagnosis", cfg.dx_vocab, dx_vocab), ("medication", cfg.med_vocab, med_vocab)):
        if given is None:
            continue
        given = [str(c) for c in given]
        if given == saved:
            continue
        msg = f"{source}: {system} vocabulary mismatch: checkpoint has {len(saved)} codes, given {len(given)}"
        for i, (a, b) in enumerate(zip(saved, given)):
            if a != b:
                msg += f"; first difference at index {i}: checkpoint {a!r} vs given {b!r}"
                break
        else:
            msg += "; one is a prefix of the other"
        missing = sorted(set(given) - set(saved))[:5]
        if missing:
            msg += f"; codes not in the checkpoint (first 5): {missing}"
        raise ValueError(msg)


def _load_weights(model: nn.Module, path: Path, skip_prefix: str | None = None,
                  rename: dict[str, str] | None = None, drop_prefixes: Sequence[str] = ()) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent}: no {path.name}")
    sd = load_file(str(path))  # safetensors: tensors only, nothing unpickled
    if rename:
        for old, new in rename.items():
            sd = {(new + k[len(old):] if k.startswith(old) else k): v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not any(k.startswith(p) for p in drop_prefixes)}
    expected = {k for k in model.state_dict() if skip_prefix is None or not k.startswith(skip_prefix)}
    missing, unexpected = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the model built from config.json "
                         f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    own = model.state_dict()
    for k, v in sd.items():
        if own[k].shape != v.shape:
            raise ValueError(f"{path}: weight {k} has shape {tuple(v.shape)}, model expects {tuple(own[k].shape)}")
    model.load_state_dict(sd, strict=False)


def _plm_config(directory: Path, data: dict) -> MedMPLMConfig:
    cfg = MedMPLMConfig.from_dict(data["config"])
    cfg.text.pretrained_path = str(check_bert_dir(directory / "text"))
    return cfg


def load_medm_plm(directory: str | Path, dx_vocab: Sequence[str] | None = None,
                  med_vocab: Sequence[str] | None = None) -> MedMPLM:
    """A MedMPLM from a "medm-plm" or a "medm-plm-pretraining" checkpoint (heads dropped)."""
    directory = Path(directory)
    data = read_config(directory)
    kind = data["model_type"]
    if kind not in (MEDM_PLM, MEDM_PLM_PRETRAINING):
        raise ValueError(f"{directory}: model_type {kind!r} is not a MedM-PLM checkpoint")
    cfg = _plm_config(directory, data)
    check_vocab(cfg.code, dx_vocab, med_vocab, directory)
    model = MedMPLM(cfg)
    if kind == MEDM_PLM:
        _load_weights(model, directory / WEIGHTS, skip_prefix="text.")
    else:
        _load_weights(model, directory / WEIGHTS, skip_prefix="text.", rename={"model.": ""},
                      drop_prefixes=("objective.",))
    return model


def load_medm_plm_for_pretraining(directory: str | Path, dx_vocab: Sequence[str] | None = None,
                                  med_vocab: Sequence[str] | None = None) -> MedMPLMForPretraining:
    directory = Path(directory)
    data = read_config(directory)
    if data["model_type"] != MEDM_PLM_PRETRAINING:
        raise ValueError(f"{directory}: model_type {data['model_type']!r}, expected {MEDM_PLM_PRETRAINING!r}")
    cfg = _plm_config(directory, data)
    check_vocab(cfg.code, dx_vocab, med_vocab, directory)
    model = MedMPLMForPretraining(cfg)
    _load_weights(model, directory / WEIGHTS, skip_prefix="model.text.")
    return model


def load_code_encoder(directory: str | Path, dx_vocab: Sequence[str] | None = None,
                      med_vocab: Sequence[str] | None = None) -> CodeEncoder:
    """The code tower from a code-encoder checkpoint or from a MedM-PLM checkpoint (Table VI:
    G-BERT initialised from MedM-PLM's code tower)."""
    directory = Path(directory)
    data = read_config(directory)
    kind = data["model_type"]
    if kind == CODE_ENCODER:
        cfg, prefix = CodeEncoderConfig.from_dict(data["config"]), None
    elif kind in (MEDM_PLM, MEDM_PLM_PRETRAINING):
        cfg = CodeEncoderConfig.from_dict(data["config"]["code"])
        prefix = "code." if kind == MEDM_PLM else "model.code."
    else:
        raise ValueError(f"{directory}: model_type {kind!r} holds no code encoder")
    check_vocab(cfg, dx_vocab, med_vocab, directory)
    model = CodeEncoder(cfg)
    if prefix is None:
        _load_weights(model, directory / WEIGHTS)
    else:
        sd = {k[len(prefix):]: v for k, v in load_file(str(directory / WEIGHTS)).items() if k.startswith(prefix)}
        missing = sorted(set(model.state_dict()) - set(sd))
        if missing:
            raise ValueError(f"{directory / WEIGHTS}: code tower weights missing: {missing[:5]}")
        model.load_state_dict(sd, strict=True)
    return model


def load_text_encoder(directory: str | Path) -> BertModel:
    """The text BertModel of a BERT directory or of a MedM-PLM checkpoint (its text/)."""
    directory = Path(directory)
    if (directory / "text").is_dir() and read_config(directory)["model_type"] != "bert":
        directory = directory / "text"
    return BertModel.from_pretrained(str(check_bert_dir(directory)))


def from_pretrained(directory: str | Path, dx_vocab: Sequence[str] | None = None,
                    med_vocab: Sequence[str] | None = None) -> nn.Module:
    """Load whatever `save_pretrained` wrote, as the same class (BERT directories -> BertModel)."""
    kind = read_config(directory)["model_type"]
    loaders = {MEDM_PLM: load_medm_plm, MEDM_PLM_PRETRAINING: load_medm_plm_for_pretraining,
               CODE_ENCODER: load_code_encoder}
    if kind == "bert":
        return load_text_encoder(directory)
    if kind not in loaders:
        raise ValueError(f"{directory}: unknown model_type {kind!r} (known: bert, {', '.join(loaders)})")
    return loaders[kind](directory, dx_vocab, med_vocab)

