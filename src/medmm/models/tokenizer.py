"""WordPiece tokenizer for clinical notes.

When no ClinicalBERT directory is at hand (the synthetic demo, CI), the text tower is trained from
scratch and needs a vocabulary: `train_wordpiece` fits a BERT-style uncased WordPiece on the
notes themselves (MedM-PLM lower-cases notes and removes line breaks; the BERT normaliser does
both). The result is a `transformers.BertTokenizerFast`, so `save_pretrained(dir)` writes the
same files a Hugging Face BERT directory holds and `AutoTokenizer.from_pretrained(dir)` reads them.

medmm learns the vocabulary itself (`wordpiece_vocab`) rather than with `tokenizers`'
WordPieceTrainer: that trainer breaks ties between equally frequent merges in hash-map order, so
the same notes give a different vocabulary in every process, even single-threaded
(huggingface/tokenizers issue #1794). `tokenizers` still normalises, pre-tokenises and runs the
final WordPiece model; only the merge learning is ours, with every tie broken by a fixed order.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import AutoTokenizer, BertTokenizerFast, PreTrainedTokenizerBase

# BERT's special tokens; [PAD] first so that pad id 0 matches BertConfig.pad_token_id.
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# WordPiece marks a piece that continues a word ("##ing"), BERT's convention.
CONTINUATION = "##"
_BERT_SPACE = re.compile(r"[ \t\n\r]+")


def train_wordpiece(texts: Iterable[str], vocab_size: int = 30522, min_frequency: int = 2,
                    model_max_length: int = 512) -> BertTokenizerFast:
    """Train an uncased WordPiece vocabulary on `texts` (an iterable of note strings).

    Deterministic: the same texts give the same vocabulary, ids included, in any process.
    Encodings are `[CLS] text [SEP]` (pairs `[CLS] a [SEP] b [SEP]`), as BERT expects.
    See `wordpiece_vocab` for what `vocab_size` and `min_frequency` bound.
    """
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size={vocab_size} leaves no room beside the {len(SPECIAL_TOKENS)} special tokens")
    # BertNormalizer: clean control chars, lower-case, strip accents, pad CJK; line breaks -> spaces.
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    # Count the chunks between spaces, tabs and line breaks, then normalise + pre-tokenise each
    # distinct chunk once (5x faster than per note). The words are the same: the BERT normaliser
    # and pre-tokeniser act character by character and make those four characters word boundaries.
    chunks: Counter[str] = Counter()
    n_seen = 0
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"train_wordpiece: text #{n_seen} is {type(t).__name__}, not str")
        n_seen += 1
        chunks.update(_BERT_SPACE.split(t))
    if n_seen == 0:
        raise ValueError("train_wordpiece: no texts given")
    word_counts: Counter[str] = Counter()
    for chunk, n in chunks.items():
        for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(chunk)):
            word_counts[w] += n
    vocab = wordpiece_vocab(word_counts, vocab_size, min_frequency)
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", continuing_subword_prefix=CONTINUATION))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece(prefix=CONTINUATION)
    return BertTokenizerFast(tokenizer_object=tok, do_lower_case=True, model_max_length=model_max_length)


def wordpiece_vocab(word_counts: Mapping[str, int], vocab_size: int, min_frequency: int = 2,
                    special_tokens: Iterable[str] = SPECIAL_TOKENS) -> dict[str, int]:
    """Learn a WordPiece vocabulary (token -> id) from pre-tokenised word counts.

    The algorithm of WordPieceTrainer, which is a BPE trainer whose non-initial pieces carry the
    "##" prefix: the vocabulary starts as the special tokens, every character seen (code-point
    order) and the "##" form of every character seen inside a word; then, while it holds fewer
    than `vocab_size` tokens, the most frequent adjacent pair of pieces (counted over words
    weighted by their counts) is merged into a new token ("ab" + "##c" -> "abc"). Ties go to the
    lexicographically smallest (left, right) pair, so the result depends on the counts alone.
    Merging stops early when the best pair occurs fewer than `min_frequency` times. The
    characters are never dropped, so an alphabet larger than `vocab_size` gives a larger vocabulary.
    """
    tokens: list[str] = []
    ids: dict[str, int] = {}

    def add(token: str) -> int:
        if token not in ids:
            ids[token] = len(tokens)
            tokens.append(token)
        return ids[token]

    for t in special_tokens:
        add(t)
    words = sorted((w, n) for w, n in word_counts.items() if w and n > 0)
    for c in sorted({c for w, _ in words for c in w}):
        add(c)
    for c in sorted({c for w, _ in words for c in w[1:]}):
        add(CONTINUATION + c)
    # Each word as a list of piece ids, merged in place as the vocabulary grows.
    pieces = [[ids[w[0]]] + [ids[CONTINUATION + c] for c in w[1:]] for w, _ in words]
    counts = [n for _, n in words]
    pair_count: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}  # pair -> words that hold (or held) it
    for i, (p, n) in enumerate(zip(pieces, counts)):
        for pair in zip(p, p[1:]):
            pair_count[pair] = pair_count.get(pair, 0) + n
            where.setdefault(pair, set()).add(i)
    # Max-heap on (count, then smallest pair); entries go stale as counts change and are
    # re-pushed with the current count when popped, so each merge costs only the words it touches.
    heap = [(-n, tokens[a], tokens[b], a, b) for (a, b), n in pair_count.items()]
    heapq.heapify(heap)
    floor = max(min_frequency, 1)
    while len(tokens) < vocab_size and heap:
        neg_count, _, _, a, b = heapq.heappop(heap)
        n = pair_count.get((a, b), 0)
        if n != -neg_count:
            if n > 0:
                heapq.heappush(heap, (-n, tokens[a], tokens[b], a, b))
            continue
        if n < floor:
            break
        new = add(tokens[a] + tokens[b].removeprefix(CONTINUATION))
        touched: set[tuple[int, int]] = set()
        for i in where.pop((a, b)):
            _merge_word(pieces[i], a, b, new, counts[i], i, pair_count, where, touched)
        del pair_count[(a, b)]  # greedy left-to-right merging leaves no (a, b) behind
        touched.discard((a, b))
        for pair in touched:
            n = pair_count.get(pair, 0)
            if n > 0:
                heapq.heappush(heap, (-n, tokens[pair[0]], tokens[pair[1]], *pair))
    return ids


def _merge_word(p: list[int], a: int, b: int, new: int, n: int, i: int,
                pair_count: dict[tuple[int, int], int], where: dict[tuple[int, int], set[int]],
                touched: set[tuple[int, int]]) -> None:
    """Replace every (a, b) in word `p` (count `n`, index `i`) by `new`, updating the pair counts."""

    def bump(pair: tuple[int, int], d: int) -> None:
        pair_count[pair] = pair_count.get(pair, 0) + d
        if d > 0:
            where.setdefault(pair, set()).add(i)
            touched.add(pair)

    j = 0
    while j < len(p) - 1:
        if p[j] == a and p[j + 1] == b:
            if j > 0:
                bump((p[j - 1], a), -n)
                bump((p[j - 1], new), n)
            if j + 2 < len(p):
                bump((b, p[j + 2]), -n)
                bump((new, p[j + 2]), n)
            p[j:j + 2] = [new]
        j += 1


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
