"""train_wordpiece is deterministic across processes and still a BERT-style WordPiece.

Hugging Face's WordPieceTrainer breaks merge ties in hash-map order (huggingface/tokenizers
#1794), so medmm learns the merges itself; these tests pin that down: same notes -> same vocabulary
in processes with different hash seeds, a hand-worked merge sequence, and WordPiece behaviour.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from medmm.models.tokenizer import SPECIAL_TOKENS, train_wordpiece, wordpiece_vocab

# Notes drawn from a small clinical lexicon: many words share a count, so merge ties abound and an
# order-dependent trainer would show it. Run as-is in this process and in the subprocesses.
NOTES_SNIPPET = """
import random
r = random.Random(0)
lexicon = ("patient admitted with chf exacerbation started furosemide iv history of diabetes "
           "mellitus nephropathy denies chest pain discharge summary pneumonia treated ceftriaxone "
           "afebrile family cad social tobacco creatinine elevated aki resolved hypertension "
           "metoprolol lisinopril cirrhosis ascites paracentesis sepsis vancomycin zosyn").split()
NOTES = [" ".join(r.choice(lexicon) + r.choice(["", "s", "ed", ".", ","]) for _ in range(r.randint(50, 150)))
         for _ in range(200)]
"""
_ns: dict = {}
exec(NOTES_SNIPPET, _ns)
NOTES: list[str] = _ns["NOTES"]

VOCAB_DIGEST = NOTES_SNIPPET + """
import hashlib, json
from medmm.models.tokenizer import train_wordpiece
tok = train_wordpiece(NOTES, vocab_size=300, min_frequency=2)
print(hashlib.sha256(json.dumps(sorted(tok.get_vocab().items())).encode()).hexdigest())
"""


def vocab_digest(tok) -> str:
    return hashlib.sha256(json.dumps(sorted(tok.get_vocab().items())).encode()).hexdigest()


def test_same_vocabulary_in_separate_processes():
    # Two processes at once (importing transformers takes most of their time), different hash seeds.
    procs = [subprocess.Popen([sys.executable, "-c", VOCAB_DIGEST], env={**os.environ, "PYTHONHASHSEED": seed},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in ("1", "2")]
    digests = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        digests.append(out.strip().splitlines()[-1])
    assert digests[0] == digests[1] == vocab_digest(train_wordpiece(NOTES, vocab_size=300, min_frequency=2))


def test_merges_match_a_hand_worked_example():
    # Pieces: hug = h ##u ##g (x10), pug = p ##u ##g (x5), pun = p ##u ##n (x12), bun = b ##u ##n (x4),
    # hugs = h ##u ##g ##s (x5). Pair counts: (##u,##g) 20 -> "##ug"; then (##u,##n) 16 -> "##un";
    # (h,##ug) 15 -> "hug"; (p,##un) 12 -> "pun"; then a tie at 5 between (hug,##s) and (p,##ug),
    # taken in lexicographic order ("hug" < "p"): "hugs", "pug"; last (b,##un) 4 -> "bun".
    counts = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}
    base = SPECIAL_TOKENS + list("bghnpsu") + ["##g", "##n", "##s", "##u"]
    merges = ["##ug", "##un", "hug", "pun", "hugs", "pug", "bun"]

    def tokens(vocab: dict[str, int]) -> list[str]:
        assert sorted(vocab.values()) == list(range(len(vocab)))
        return sorted(vocab, key=vocab.__getitem__)

    assert tokens(wordpiece_vocab(counts, vocab_size=100, min_frequency=1)) == base + merges
    assert tokens(wordpiece_vocab(counts, vocab_size=len(base) + 4, min_frequency=1)) == base + merges[:4]
    assert tokens(wordpiece_vocab(counts, vocab_size=100, min_frequency=5)) == base + merges[:6]
    assert tokens(wordpiece_vocab(counts, vocab_size=100, min_frequency=6)) == base + merges[:4]


def test_tokenizes_as_bert_wordpiece():
    tok = train_wordpiece(NOTES, vocab_size=2000, min_frequency=2)
    assert [tok.convert_ids_to_tokens(i) for i in range(5)] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (0, 1, 2, 3, 4)
    backend = tok.backend_tokenizer
    assert type(backend.normalizer).__name__ == "BertNormalizer"
    assert type(backend.pre_tokenizer).__name__ == "BertPreTokenizer"
    assert type(backend.decoder).__name__ == "WordPiece"
    # Frequent words are whole tokens, lower-cased, punctuation split off.
    assert tok.tokenize("Furosemide, Ceftriaxone.") == ["furosemide", ",", "ceftriaxone", "."]
    # An unseen word falls into pieces: a word-initial piece, then "##" continuations.
    assert "sepsistobacco" not in tok.get_vocab()
    pieces = tok.tokenize("sepsistobacco")
    assert len(pieces) > 1 and not pieces[0].startswith("##") and all(p.startswith("##") for p in pieces[1:])
    assert pieces[0] + "".join(p[2:] for p in pieces[1:]) == "sepsistobacco"
    # A character never seen in training makes its word unknown.
    assert tok.tokenize("sepsis ☃") == ["sepsis", "[UNK]"]
    enc = tok("sepsis treated")["input_ids"]
    assert enc[0] == tok.cls_token_id and enc[-1] == tok.sep_token_id
    assert tok.decode(enc, skip_special_tokens=True) == "sepsis treated"


def test_vocab_size_and_min_frequency_are_honoured():
    tok = train_wordpiece(NOTES, vocab_size=120, min_frequency=2)
    assert len(tok) == 120
    # "alpha" and "beta" occur 3 times, "gamma" once: with min_frequency=2 none of its pairs merges.
    notes = ["alpha beta", "alpha beta", "alpha beta gamma"]
    strict, loose = train_wordpiece(notes, min_frequency=2), train_wordpiece(notes, min_frequency=1)
    assert {"alpha", "beta"} <= set(strict.get_vocab()) and "gamma" not in strict.get_vocab()
    assert strict.tokenize("gamma") == ["g", "##a", "##m", "##m", "##a"]
    assert loose.tokenize("gamma") == ["gamma"]
    with pytest.raises(ValueError, match="leaves no room"):
        train_wordpiece(notes, vocab_size=5)
    with pytest.raises(TypeError, match="text #1 is NoneType"):
        train_wordpiece(["alpha", None])
