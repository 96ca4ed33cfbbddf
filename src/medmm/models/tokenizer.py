"""WordPiece tokenizer for clinical notes.

When no ClinicalBERT directory is at hand (the synthetic demo, CI), the text tower is trained from
scratch and needs a vocabulary: `train_wordpiece` fits a BERT-style uncased WordPiece on the
notes themselves (MedM-PLM lower-cases notes and removes line breaks; the BERT normaliser does
both). The result is a `transformers.BertTokenizerFast`, so `save_pretrained(dir)` writes the
same files a Hugging Face BERT directory holds and `AutoTokenizer.from_pretrained(dir)` reads them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerBase

# BERT's special tokens; [PAD] first so that pad id 0 matches BertConfig.pad_token_id.
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_wordpiece(texts: Iterable[str], vocab_size: int = 30522, min_frequency: int = 2,
                    model_max_length: int = 512) -> BertTokenizerFast:
    """Train an uncased WordPiece vocabulary on `texts` (an iterable of note strings).

    Encodings are `[CLS] text [SEP]` (pairs `[CLS] a [SEP] b [SEP]`), as BERT expects.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size={vocab_size} leaves no room beside the {len(SPECIAL_TOKENS)} special tokens")
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    # BertNormalizer: clean control chars, lower-case, strip accents, pad CJK; line breaks -> spaces.
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                        special_tokens=SPECIAL_TOKENS)
    n_seen = 0

    def _iter():
        nonlocal n_seen
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"train_wordpiece: text #{n_seen} is {type(t).__name__}, not str")
            n_seen += 1
            yield t

    tok.train_from_iterator(_iter(), trainer=trainer)
    if n_seen == 0:
        raise ValueError("train_wordpiece: no texts given")
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=tok, do_lower_case=True, model_max_length=model_max_length)


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, directory: str | Path) -> None:
    """`save_pretrained` plus a `vocab.txt` (the file older BERT loaders look for)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    # Always (re)written from the tokenizer itself, so vocab.txt never disagrees with tokenizer.json.
    vocab = tokenizer.get_vocab()
    ordered = sorted(vocab, key=vocab.__getitem__)
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in ordered), encoding="utf-8")


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerBase:
    """Load the tokenizer of a BERT directory, or of a MedM-PLM checkpoint (its `text/` subdir)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"tokenizer directory {directory} does not exist")
    if (directory / "text").is_dir() and not _has_tokenizer_files(directory):
        directory = directory / "text"
    if not _has_tokenizer_files(directory):
        raise FileNotFoundError(
            f"{directory} holds no tokenizer (expected tokenizer.json or vocab.txt)")
    return AutoTokenizer.from_pretrained(str(directory))


def _has_tokenizer_files(d: Path) -> bool:
    return (d / "tokenizer.json").is_file() or (d / "vocab.txt").is_file()
