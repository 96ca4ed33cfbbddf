"""Checkpoints: config JSON + safetensors + vocabularies; loading never unpickles.

Layout of a MedM-PLM directory:
    config.json          {"model_type": "medm-plm" | "medm-plm-pretraining", "format_version", "config"}
    model.safetensors    every weight except the text tower's (code tower, cross-modal, heads)
    code_vocab.json      {"dx": [...], "med": [...], "tokens": [...]} (also inside config; for people)
    text/                a plain Hugging Face BERT directory (config.json, model.safetensors,
                         tokenizer files): `BertModel.from_pretrained(dir/text)` and
                         `AutoTokenizer.from_pretrained(dir/text)` read it.
A code-tower directory ("medmm-code-encoder") holds the first three files only. A text tower on
its own is saved as a plain BERT directory (config.json's model_type "bert").

Dispatch is the transformers shape: each saveable class carries its `model_type` and its own
`write_checkpoint(directory, tokenizer)` / classmethod `read_checkpoint(directory, data, dx_vocab,
med_vocab)` (`data`: the parsed config.json); `MODEL_TYPES` maps a directory's model_type to the
class that reads it. Adding a saveable model: the class with those three members, then one line
in `MODEL_TYPES`. transformers' own `BertModel` cannot carry the hooks, so `save_bert` /
`load_bert` (medmm.models.text) stand in for them.

Directories are written to a temporary sibling and renamed, so a crash never leaves half a
checkpoint behind.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch.nn as nn
from safetensors.torch import load_file, save_file
from transformers import BertModel, PreTrainedTokenizerBase

from medmm.data.io import atomic_dir
from medmm.models.text import load_bert, save_bert

if TYPE_CHECKING:
    from medmm.models.code_encoder import CodeEncoder, CodeEncoderConfig
    from medmm.models.medm_plm import MedMPLM, MedMPLMForPretraining

FORMAT_VERSION = 1
BERT = "bert"
CODE_ENCODER = "medmm-code-encoder"
MEDM_PLM = "medm-plm"
MEDM_PLM_PRETRAINING = "medm-plm-pretraining"
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
CODE_VOCAB = "code_vocab.json"

# model_type -> the class that reads it: a class, or "module:Class" imported on first use (so this
# file imports no model module that imports it, and those may use the helpers below).
MODEL_TYPES: dict[str, str | type] = {
    BERT: "transformers:BertModel",
    CODE_ENCODER: "medmm.models.code_encoder:CodeEncoder",
    MEDM_PLM: "medmm.models.medm_plm:MedMPLM",
    MEDM_PLM_PRETRAINING: "medmm.models.medm_plm:MedMPLMForPretraining",
}


class Checkpointable(Protocol):
    """What a saveable medmm model carries (see the module docstring)."""

    model_type: ClassVar[str]

    def write_checkpoint(self, directory: Path, tokenizer: PreTrainedTokenizerBase | None = None) -> None:
        """Write the checkpoint's files into `directory` (an empty temporary directory)."""

    @classmethod
    def read_checkpoint(cls, directory: Path, data: dict, dx_vocab: Sequence[str] | None = None,
                        med_vocab: Sequence[str] | None = None) -> nn.Module:
        """The model of `directory`, whose config.json (already checked by `read_config`) is `data`."""


def model_class(model_type: str, source: str | Path | None = None) -> type[nn.Module]:
    """The registered class for `model_type`; a ValueError naming the known ones otherwise."""
    if model_type not in MODEL_TYPES:
        where = f"{source}: " if source is not None else ""
        raise ValueError(f"{where}unknown model_type {model_type!r} (known: {', '.join(MODEL_TYPES)})")
    cls = MODEL_TYPES[model_type]
    if isinstance(cls, str):
        module, name = cls.split(":")
        cls = getattr(importlib.import_module(module), name)
    if cls is not BertModel and getattr(cls, "model_type", None) != model_type:
        raise TypeError(f"MODEL_TYPES[{model_type!r}] is {cls.__name__}, whose model_type is "
                        f"{getattr(cls, 'model_type', None)!r}")
    return cls


# ---- writing ------------------------------------------------------------------------------------

@contextmanager
def _atomic_dir(directory: Path) -> Iterator[Path]:
    """`medmm.data.io.atomic_dir`, refusing to replace a non-empty directory that is no checkpoint."""
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise FileExistsError(f"{directory} exists and is not a directory")
        if any(directory.iterdir()) and not (directory / CONFIG).is_file():
            raise FileExistsError(f"{directory} is a non-empty directory that is not a checkpoint; "
                                  "refusing to overwrite it")
    with atomic_dir(directory, overwrite=True) as tmp:
        yield tmp


def _write_json(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_config(directory: Path, model_type: str, config: dict[str, Any]) -> None:
    """directory/config.json = {"model_type", "format_version", "config"} (this key order)."""
    _write_json(Path(directory) / CONFIG, {"model_type": model_type, "format_version": FORMAT_VERSION,
                                           "config": config})


def write_code_vocab(directory: Path, cfg: CodeEncoderConfig) -> None:
    """directory/code_vocab.json: the code vocabularies, for people (the config holds them too)."""
    _write_json(Path(directory) / CODE_VOCAB, {"dx": cfg.dx_vocab, "med": cfg.med_vocab, "tokens": cfg.vocab()})


def save_weights(module: nn.Module, path: Path, skip_prefix: str | None = None) -> None:
    """`module`'s state dict (less the keys under `skip_prefix`) as a safetensors file."""
    sd = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()
          if skip_prefix is None or not k.startswith(skip_prefix)}
    save_file(sd, str(path), metadata={"format": "pt"})


def save_pretrained(model: nn.Module, directory: str | Path,
                    tokenizer: PreTrainedTokenizerBase | None = None) -> Path:
    """Save a MedMPLM, MedMPLMForPretraining, CodeEncoder, BertModel, TextMLM or any class with the
    checkpoint hooks (module docstring) to `directory`.

    `tokenizer` (the text tower's) is written beside the BERT weights so the text directory is
    self-contained.
    """
    bert = isinstance(model, BertModel)
    if not bert:
        model_type = getattr(type(model), "model_type", None)
        if not isinstance(model_type, str) or not hasattr(model, "write_checkpoint"):
            raise TypeError(f"save_pretrained: unsupported model type {type(model).__name__} "
                            "(saveable: BertModel and classes with model_type / write_checkpoint)")
        model_class(model_type)  # unregistered: fail before writing a directory nothing could read
    directory = Path(directory)
    with _atomic_dir(directory) as tmp:
        if bert:
            save_bert(model, tmp, tokenizer)
        else:
            model.write_checkpoint(tmp, tokenizer)
    return directory


# ---- reading ------------------------------------------------------------------------------------

def read_config(directory: str | Path) -> dict:
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory {directory} does not exist")
    path = directory / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a checkpoint: no config.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or "model_type" not in data:
        raise ValueError(f"{path}: no 'model_type' key")
    if data["model_type"] != BERT and data.get("format_version") != FORMAT_VERSION:
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


def load_weights(model: nn.Module, path: Path, skip_prefix: str | None = None,
                 rename: dict[str, str] | None = None, drop_prefixes: Sequence[str] = (),
                 only_prefix: str | None = None) -> None:
    """Load a safetensors file into `model`: every model key outside `skip_prefix` must be in the
    file and every file key in the model, shapes included, after the file's keys are narrowed to
    `only_prefix` (then stripped of it), renamed by prefix (`rename`) and `drop_prefixes` dropped."""
    if not path.is_file():
        raise FileNotFoundError(f"{path.parent}: no {path.name}")
    sd = load_file(str(path))  # safetensors: tensors only, nothing unpickled
    if only_prefix is not None:
        sd = {k[len(only_prefix):]: v for k, v in sd.items() if k.startswith(only_prefix)}
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


def _read(model_type: str, directory: str | Path, dx_vocab, med_vocab) -> nn.Module:
    """`directory` read by the class registered for `model_type` (which checks what it accepts)."""
    directory = Path(directory)
    return model_class(model_type).read_checkpoint(directory, read_config(directory), dx_vocab=dx_vocab,
                                                   med_vocab=med_vocab)


def load_medm_plm(directory: str | Path, dx_vocab: Sequence[str] | None = None,
                  med_vocab: Sequence[str] | None = None) -> MedMPLM:
    """A MedMPLM from a "medm-plm" or a "medm-plm-pretraining" checkpoint (heads dropped)."""
    return _read(MEDM_PLM, directory, dx_vocab, med_vocab)


def load_medm_plm_for_pretraining(directory: str | Path, dx_vocab: Sequence[str] | None = None,
                                  med_vocab: Sequence[str] | None = None) -> MedMPLMForPretraining:
    return _read(MEDM_PLM_PRETRAINING, directory, dx_vocab, med_vocab)


def load_code_encoder(directory: str | Path, dx_vocab: Sequence[str] | None = None,
                      med_vocab: Sequence[str] | None = None) -> CodeEncoder:
    """The code tower from a code-encoder checkpoint or from any checkpoint whose class declares
    `code_tower_prefix` (MedM-PLM's; Table VI: G-BERT initialised from MedM-PLM's code tower)."""
    return _read(CODE_ENCODER, directory, dx_vocab, med_vocab)


def load_text_encoder(directory: str | Path) -> BertModel:
    """The text BertModel of a BERT directory or of a MedM-PLM checkpoint (its text/), with a
    pooler exactly when the saved weights have one."""
    directory = Path(directory)
    if (directory / "text").is_dir() and read_config(directory)["model_type"] != BERT:
        directory = directory / "text"
    return load_bert(directory)


def from_pretrained(directory: str | Path, dx_vocab: Sequence[str] | None = None,
                    med_vocab: Sequence[str] | None = None) -> nn.Module:
    """Load whatever `save_pretrained` wrote, as the class `MODEL_TYPES` names for its model_type
    (BERT directories, a TextMLM's included -> BertModel)."""
    directory = Path(directory)
    data = read_config(directory)
    cls = model_class(data["model_type"], directory)
    if cls is BertModel:
        return load_text_encoder(directory)
    return cls.read_checkpoint(directory, data, dx_vocab=dx_vocab, med_vocab=med_vocab)


def find_model_dirs(root: str | Path, depth: int = 3) -> dict[str, list[Path]]:
    """model_type -> the directories whose config.json names it: `root` itself and up to `depth`
    levels below it, outside any checkpoints/ (the training loop's resume state), in path order.
    Unreadable config files are skipped. The one way recipes find pre-trained models in a run."""
    root = Path(root)
    found: dict[str, list[Path]] = {}
    files = [root / "config.json"] + [f for n in range(1, depth + 1) for f in root.glob("/".join(["*"] * n)
                                                                                     + "/config.json")]
    for f in sorted(files):
        if not f.is_file() or "checkpoints" in f.relative_to(root).parts:
            continue
        try:
            kind = json.loads(f.read_text(encoding="utf-8")).get("model_type")
        except (ValueError, OSError, AttributeError):
            continue
        if isinstance(kind, str):
            found.setdefault(kind, []).append(f.parent)
    return found


def find_model_dir(root: str | Path, kinds: Sequence[str], what: str) -> Path:
    """`root` itself if its config.json has one of `kinds`, else the one such directory below it
    (`find_model_dirs`); FileNotFoundError naming what was found otherwise."""
    root = Path(root)
    hits = [d for kind, dirs in find_model_dirs(root).items() if kind in kinds for d in dirs]
    if root in hits:
        return root
    if len(hits) != 1:
        raise FileNotFoundError(f"{root}: expected one {what} directory (config.json model_type "
                                f"{' or '.join(kinds)}), found {len(hits)}: {[str(h) for h in sorted(hits)]}")
    return hits[0]
