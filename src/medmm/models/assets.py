"""Assets: the pre-built pieces a downstream model may start from (shared downstream contract).

    tokenizer       the note tokenizer (BertTokenizerFast); its vocabulary sizes the LR / CNN word bags
    code_config     the code vocabulary and ontology trees (`CodeEncoderConfig`); ids follow its `encode`
    models          a named set of pre-trained model directories, each read by the models that
                    start from it:
        "text"      a Hugging Face BERT directory: the "ClinicalBERT" text tower (a real
                    ClinicalBERT or the text-MLM stand-in written by `medmm pretrain text-mlm`)
        "medm-plm"  a pre-trained MedM-PLM directory (`medmm.models.pretrained.save_pretrained`)
        "gbert"     a pre-trained code-only G-BERT directory (a "medmm-code-encoder" checkpoint,
                    see `medmm.models.baselines.gbert.GBertForPretraining`)
                    (MedCSP's encoders will add their own names.)
    `text_path`, `medm_plm_path` and `gbert_path` read the three names above (None when absent).

Nothing is loaded here except the tokenizer and the code config; models load their own weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from medmm.models.code_encoder import CodeEncoderConfig
from medmm.models.pretrained import MEDM_PLM, MEDM_PLM_PRETRAINING, read_config
from medmm.models.tokenizer import load_tokenizer

TEXT, MEDM_PLM_DIR, GBERT = "text", "medm-plm", "gbert"  # the names in `Assets.models` used today


@dataclass
class Assets:
    tokenizer: PreTrainedTokenizerBase
    code_config: CodeEncoderConfig
    models: dict[str, str]  # name -> directory

    def __init__(self, tokenizer: PreTrainedTokenizerBase, code_config: CodeEncoderConfig,
                 models: dict[str, str | Path] | None = None, *, text_path: str | Path | None = None,
                 medm_plm_path: str | Path | None = None, gbert_path: str | Path | None = None):
        self.tokenizer, self.code_config = tokenizer, code_config
        named = {TEXT: text_path, MEDM_PLM_DIR: medm_plm_path, GBERT: gbert_path}
        merged = {**(models or {}), **{k: v for k, v in named.items() if v is not None}}
        self.models = {k: str(v) for k, v in merged.items() if v is not None}

    def model_dir(self, name: str) -> str | None:
        """The directory of pre-trained model `name` (None when the set has none of that name)."""
        return self.models.get(name)

    @property
    def text_path(self) -> str | None:
        return self.model_dir(TEXT)

    @property
    def medm_plm_path(self) -> str | None:
        return self.model_dir(MEDM_PLM_DIR)

    @property
    def gbert_path(self) -> str | None:
        return self.model_dir(GBERT)

    @property
    def text_vocab_size(self) -> int:
        return len(self.tokenizer)

    @classmethod
    def from_medm_plm(cls, path: str | Path, text_path: str | Path | None = None,
                      gbert_path: str | Path | None = None) -> Assets:
        """Tokenizer (from `path`/text) and code config (from `path`/config.json) of a MedM-PLM
        checkpoint; `medm_plm_path` = `path`."""
        path = Path(path)
        data = read_config(path)
        if data["model_type"] not in (MEDM_PLM, MEDM_PLM_PRETRAINING):
            raise ValueError(f"{path / 'config.json'}: model_type {data['model_type']!r} is not a MedM-PLM "
                             "checkpoint")
        code = data.get("config", {}).get("code")
        if not isinstance(code, dict):
            raise ValueError(f"{path / 'config.json'}: no 'config.code' section")
        return cls(load_tokenizer(path), CodeEncoderConfig.from_dict(code),
                   {MEDM_PLM_DIR: path, TEXT: text_path, GBERT: gbert_path})
