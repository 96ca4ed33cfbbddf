"""Assets: the pre-built pieces a downstream model may start from (shared downstream contract).

    tokenizer       the note tokenizer (BertTokenizerFast); its vocabulary sizes the LR / CNN word bags
    code_config     the code vocabulary and ontology trees (`CodeEncoderConfig`); ids follow its `encode`
    text_path       a Hugging Face BERT directory: the "ClinicalBERT" text tower (a real ClinicalBERT
                    or the text-MLM stand-in written by `medmm pretrain text-mlm`)
    medm_plm_path   a pre-trained MedM-PLM directory (`medmm.models.pretrained.save_pretrained`)
    gbert_path      a pre-trained code-only G-BERT directory (a "medmm-code-encoder" checkpoint,
                    see `medmm.models.baselines.gbert.GBertForPretraining`)

Nothing is loaded here except the tokenizer and the code config; models load their own weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedTokenizerBase

from medmm.models.code_encoder import CodeEncoderConfig
from medmm.models.pretrained import MEDM_PLM, MEDM_PLM_PRETRAINING, read_config
from medmm.models.tokenizer import load_tokenizer


@dataclass
class Assets:
    tokenizer: PreTrainedTokenizerBase
    code_config: CodeEncoderConfig
    text_path: str | None = None
    medm_plm_path: str | None = None
    gbert_path: str | None = None

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
        return cls(tokenizer=load_tokenizer(path), code_config=CodeEncoderConfig.from_dict(code),
                   text_path=None if text_path is None else str(text_path), medm_plm_path=str(path),
                   gbert_path=None if gbert_path is None else str(gbert_path))
