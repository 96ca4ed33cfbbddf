"""Clinical concept extraction (the MedM-PLM NER probe, Table V): BIO samples from character spans.

Clinical definition (i2b2/VA 2010 concept task): mark every mention of a medical *problem*
(diseases, symptoms, findings: "chest pain", "type 2 diabetes"), *treatment* (drugs, procedures,
interventions: "aspirin 81 mg", "cabg") and *test* (examinations, labs, imaging: "chest x-ray",
"creatinine") in a note. Scored by strict entity F1 (`medmm.eval.ner_metrics`): type and exact
span must match.

Input: documents as (text, spans) with spans = character offsets (start, end exclusive, label)
into the text — from the synthetic generator's ``entities.parquet`` joined with the canonical
``notes`` table (`documents_from_frames`), or from the i2b2 2010 release (`read_i2b2`).

Labelling (`bio_tags`): the text is tokenised by a Hugging Face fast tokenizer. A *word* is a
pre-tokenizer word (BERT: split on whitespace and punctuation, so "x-ray" is three words x, -,
ray). A word overlapping a span gets ``B-<label>`` if it is the span's first word, else
``I-<label>``; other words get ``O`` (IOB2). The word's tag id sits on its FIRST word piece;
its other pieces and the special tokens get -100 (ignored by the loss, skipped by the CRF).

Long notes are cut into windows of at most ``max_length`` pieces ([CLS] + pieces + [SEP]),
at word boundaries (a word is never split across windows): each window is packed greedily and,
when the note goes on, is cut after the last sentence end ('.', '!', '?' or a line break)
in its second half, else after the last word that fits. Windows do not overlap, so every word
is tagged in exactly one window and `NERDataset.document_tags` stitches the window predictions
back into one tag sequence per note — entities cut by a window edge are scored whole. Window
edges never look at the gold tags, so evaluation windows are the same with or without labels.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl
import torch

from medmm.eval.ner_metrics import entities_from_tags

NAME = "ner"
METRICS = ("strict_entity_f1",)
ENTITY_TYPES = ("problem", "treatment", "test")
IGNORE_INDEX = -100
_SENTENCE_END = frozenset(".!?")


def tag_names(entity_types: Sequence[str] = ENTITY_TYPES) -> list[str]:
    """The tag vocabulary: O, B-problem, I-problem, B-treatment, I-treatment, B-test, I-test."""
    return ["O"] + [f"{p}-{t}" for t in entity_types for p in ("B", "I")]


class Span(NamedTuple):
    start: int   # character offset, inclusive
    end: int     # character offset, exclusive
    label: str


@dataclass
class NERDocument:
    doc_id: Any                        # note_id (MIMIC ROW_ID) or the i2b2 file stem
    text: str
    spans: list[Span]
    patient_id: int | None = None      # for splitting by patient (`medmm.tasks.splits`)


def as_spans(spans: Any, text: str | None = None, entity_types: Sequence[str] = ENTITY_TYPES,
             where: str = "document") -> list[Span]:
    """Normalise spans given as Span / (start, end, label) / {"start", "end", "label"} / a polars
    frame with those columns; check labels and bounds; sort by start."""
    if isinstance(spans, pl.DataFrame):
        missing = [c for c in ("start", "end", "label") if c not in spans.columns]
        if missing:
            raise ValueError(f"{where}: span frame lacks columns {missing}")
        spans = spans.select("start", "end", "label").rows()
    out = []
    for i, s in enumerate(spans):
        if isinstance(s, dict):
            try:
                s = (s["start"], s["end"], s["label"])
            except KeyError as e:
                raise ValueError(f"{where}: span {i} lacks key {e}") from None
        start, end, label = s
        if label not in entity_types:
            raise ValueError(f"{where}: span {i} has label {label!r}, expected one of {list(entity_types)}")
        if not (0 <= start < end) or (text is not None and end > len(text)):
            n = "?" if text is None else len(text)
            raise ValueError(f"{where}: span {i} [{start}, {end}) is empty or outside the text (length {n})")
        out.append(Span(int(start), int(end), str(label)))
    return sorted(out)


# ---------------------------------------------------------------------------------------------
# Words and BIO tags


@dataclass
class _Encoded:
    """One document tokenised without special tokens."""

    piece_ids: list[int]
    piece_word: list[int]                 # word index of each piece
    word_spans: list[tuple[int, int]]     # (char start, char end) of each word


def _encode(texts: Sequence[str], tokenizer) -> list[_Encoded]:
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError(f"{type(tokenizer).__name__} is not a fast (Rust) tokenizer: character offsets "
                        "and word ids need one (e.g. BertTokenizerFast)")
    if not texts:
        return []
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True,
                    truncation=False, verbose=False)
    out = []
    for i in range(len(texts)):
        ids, offsets, wids = enc["input_ids"][i], enc["offset_mapping"][i], enc.word_ids(i)
        piece_word: list[int] = []
        word_spans: list[tuple[int, int]] = []
        last = None
        for (s, e), w in zip(offsets, wids):
            if w != last:                      # a new word starts at this piece
                word_spans.append((s, e))
                last = w
            else:
                word_spans[-1] = (word_spans[-1][0], e)
            piece_word.append(len(word_spans) - 1)
        out.append(_Encoded(list(ids), piece_word, word_spans))
    return out


def word_tags(text: str, word_spans: Sequence[tuple[int, int]], spans: Iterable[Span],
              where: str = "document") -> list[str]:
    """IOB2 tag per word: the first word overlapping a span gets B-, the others I-."""
    tags = ["O"] * len(word_spans)
    starts = [s for s, _ in word_spans]
    ends = [e for _, e in word_spans]
    owner: dict[int, Span] = {}
    for sp in spans:
        first = bisect.bisect_right(ends, sp.start)          # first word ending after span start
        last = bisect.bisect_left(starts, sp.end)            # words starting before span end
        if first >= last:
            raise ValueError(f"{where}: span [{sp.start}, {sp.end}) {text[sp.start:sp.end]!r} "
                             f"({sp.label}) covers no word")
        for w in range(first, last):
            if w in owner:
                o = owner[w]
                raise ValueError(f"{where}: spans [{o.start}, {o.end}) {o.label} and [{sp.start}, {sp.end}) "
                                 f"{sp.label} share the word {text[slice(*word_spans[w])]!r}; "
                                 "BIO tags cannot hold overlapping entities")
            owner[w] = sp
            tags[w] = ("B-" if w == first else "I-") + sp.label
    return tags


def tags_to_spans(tags: Sequence[str], word_spans: Sequence[tuple[int, int]]) -> list[Span]:
    """Character spans of the (strict IOB2) entities in a word-level tag sequence."""
    if len(tags) != len(word_spans):
        raise ValueError(f"{len(tags)} tags for {len(word_spans)} words")
    return [Span(word_spans[s][0], word_spans[e - 1][1], t) for t, s, e in entities_from_tags(tags)]


@dataclass
class NERWindow:
    """One model input: [CLS] pieces [SEP] covering words first_word .. first_word + n_words - 1."""

    input_ids: list[int]
    attention_mask: list[int]
    labels: list[int]               # tag id on each word's first piece, -100 elsewhere
    word_ids: list[int | None]      # document word index of each piece; None for [CLS] / [SEP]
    first_word: int
    n_words: int


def _window_bounds(n_pieces: Sequence[int], boundary: Sequence[bool], body: int) -> list[tuple[int, int]]:
    """Cut words into [start, end) runs of at most `body` pieces, preferring sentence ends."""
    bounds, i, n = [], 0, len(n_pieces)
    while i < n:
        used, j = 0, i
        while j < n and used + n_pieces[j] <= body:
            used += n_pieces[j]
            j += 1
        if j == i:                               # one word longer than a window: keep it alone
            j = i + 1                            # (its trailing pieces are dropped, see _windows)
        elif j < n:
            half = i + (j - i) // 2
            for k in range(j - 1, half - 1, -1):
                if boundary[k]:
                    j = k + 1
                    break
        bounds.append((i, j))
        i = j
    return bounds


def _windows(text: str, enc: _Encoded, tag_ids: Sequence[int] | None, tokenizer,
             max_length: int) -> list[NERWindow]:
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        raise ValueError(f"{type(tokenizer).__name__} has no [CLS]/[SEP] token; the text tower is BERT")
    if max_length < 3:
        raise ValueError(f"max_length must be >= 3 ([CLS] word [SEP]), got {max_length}")
    n_words = len(enc.word_spans)
    pieces: list[list[int]] = [[] for _ in range(n_words)]
    for pid, w in zip(enc.piece_ids, enc.piece_word):
        pieces[w].append(pid)
    # A sentence ends after a word that is '.', '!' or '?', or that a line break follows.
    boundary = []
    for w, (s, e) in enumerate(enc.word_spans):
        nxt = enc.word_spans[w + 1][0] if w + 1 < n_words else len(text)
        boundary.append(text[s:e] in _SENTENCE_END or "\n" in text[e:nxt])
    body = max_length - 2
    out = []
    for ws, we in _window_bounds([len(p) for p in pieces], boundary, body):
        ids, labels, wids = [cls_id], [IGNORE_INDEX], [None]
        for w in range(ws, we):
            p = pieces[w][:body]
            ids += p
            labels += [tag_ids[w] if tag_ids is not None else IGNORE_INDEX] + [IGNORE_INDEX] * (len(p) - 1)
            wids += [w] * len(p)
        ids.append(sep_id)
        labels.append(IGNORE_INDEX)
        wids.append(None)
        out.append(NERWindow(ids, [1] * len(ids), labels, wids, ws, we - ws))
    return out


def bio_tags(text: str, spans: Any, tokenizer, max_length: int = 512,
             entity_types: Sequence[str] = ENTITY_TYPES, where: str = "document") -> list[NERWindow]:
    """Tokenise one note and label its words with IOB2 tags from character spans.

    Returns the note's windows (one unless it is longer than ``max_length`` pieces); each holds
    ``input_ids``, ``attention_mask``, ``labels`` (tag id on first pieces, -100 elsewhere) and
    ``word_ids``. Tag ids index ``tag_names(entity_types)``.
    """
    enc = _encode([text], tokenizer)[0]
    tags = word_tags(text, enc.word_spans, as_spans(spans, text, entity_types, where), where)
    tag2id = {t: i for i, t in enumerate(tag_names(entity_types))}
    return _windows(text, enc, [tag2id[t] for t in tags], tokenizer, max_length)


# ---------------------------------------------------------------------------------------------
# Dataset


class NERDataset(torch.utils.data.Dataset):
    """Windows of labelled notes, ready for `BiLSTMCRF` (`collate` pads a batch).

    Item keys: input_ids (T,), attention_mask (T,), labels (T,) tag ids on first pieces and -100
    elsewhere, word_mask (T,) True on first pieces, doc_index and first_word (ints) to stitch
    window predictions back into notes (`document_tags`).
    """

    def __init__(self, documents: Iterable[NERDocument | tuple[str, Any]], tokenizer, max_length: int = 512,
                 entity_types: Sequence[str] = ENTITY_TYPES):
        self.entity_types = tuple(entity_types)
        self.tags = tag_names(self.entity_types)
        self.tag2id = {t: i for i, t in enumerate(self.tags)}
        self.max_length = max_length
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        docs = []
        for i, d in enumerate(documents):
            if not isinstance(d, NERDocument):
                text, spans = d
                d = NERDocument(i, text, spans)
            spans = as_spans(d.spans, d.text, self.entity_types, where=f"document {d.doc_id!r}")
            docs.append(NERDocument(d.doc_id, d.text, spans, d.patient_id))
        self.documents = docs
        self.word_spans: list[list[tuple[int, int]]] = []
        self.gold: list[list[str]] = []          # word-level gold tags per document
        self.windows: list[NERWindow] = []
        self.window_doc: list[int] = []
        for di, (d, enc) in enumerate(zip(docs, _encode([d.text for d in docs], tokenizer))):
            tags = word_tags(d.text, enc.word_spans, d.spans, where=f"document {d.doc_id!r}")
            self.word_spans.append(enc.word_spans)
            self.gold.append(tags)
            # A note with no word (empty or blank) yields no window: there is nothing to tag.
            for w in _windows(d.text, enc, [self.tag2id[t] for t in tags], tokenizer, max_length):
                self.windows.append(w)
                self.window_doc.append(di)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        w = self.windows[i]
        # first piece of each word: its word id differs from the previous piece's
        first = [x is not None and (j == 0 or x != w.word_ids[j - 1]) for j, x in enumerate(w.word_ids)]
        return {
            "input_ids": torch.tensor(w.input_ids, dtype=torch.long),
            "attention_mask": torch.tensor(w.attention_mask, dtype=torch.long),
            "labels": torch.tensor(w.labels, dtype=torch.long),
            "word_mask": torch.tensor(first, dtype=torch.bool),
            "doc_index": self.window_doc[i],
            "first_word": w.first_word,
        }

    def collate(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Right-pad a list of items: (B, T) tensors plus doc_index, first_word (B,)."""
        T = max(len(b["input_ids"]) for b in batch)
        out = {
            "input_ids": torch.full((len(batch), T), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros(len(batch), T, dtype=torch.long),
            "labels": torch.full((len(batch), T), IGNORE_INDEX, dtype=torch.long),
            "word_mask": torch.zeros(len(batch), T, dtype=torch.bool),
        }
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            for k in ("input_ids", "attention_mask", "labels", "word_mask"):
                out[k][i, :n] = b[k]
        out["doc_index"] = torch.tensor([b["doc_index"] for b in batch], dtype=torch.long)
        out["first_word"] = torch.tensor([b["first_word"] for b in batch], dtype=torch.long)
        return out

    def document_tags(self, window_predictions: Sequence[Sequence[int]]) -> list[list[str]]:
        """Stitch per-window word-level tag ids (dataset order) into one tag list per document."""
        if len(window_predictions) != len(self.windows):
            raise ValueError(f"{len(window_predictions)} window predictions for {len(self.windows)} windows")
        out = [["O"] * len(g) for g in self.gold]
        for i, (w, pred) in enumerate(zip(self.windows, window_predictions)):
            if len(pred) != w.n_words:
                raise ValueError(f"window {i}: {len(pred)} predicted tags for {w.n_words} words")
            out[self.window_doc[i]][w.first_word:w.first_word + w.n_words] = [self.tags[int(t)] for t in pred]
        return out

    def predicted_spans(self, doc_tags: Sequence[Sequence[str]]) -> list[list[Span]]:
        """Character spans per document from word-level tags (e.g. `document_tags` output)."""
        return [tags_to_spans(t, ws) for t, ws in zip(doc_tags, self.word_spans)]


# ---------------------------------------------------------------------------------------------
# Sources of (text, spans)


def _clean(s: str) -> str:
    # The canonical notes text is lower-cased with \r and \n replaced by spaces (length-preserving).
    return s.lower().replace("\r", " ").replace("\n", " ")


def documents_from_frames(notes: pl.DataFrame, entities: pl.DataFrame, keep_empty: bool = True,
                          entity_types: Sequence[str] = ENTITY_TYPES,
                          source: str = "entities") -> list[NERDocument]:
    """Join the canonical ``notes`` table (note_id, patient_id, text) with ground-truth entity
    spans (ROW_ID = note_id, start, end, label[, text]) into documents.

    ``keep_empty`` keeps notes without any entity as all-O documents (the generator records
    every mention it writes, so such a note truly has none). Entities of notes absent from
    ``notes`` (e.g. dropped at prepare time) are skipped; `count_orphan_entities` counts them
    so the caller can report them.
    When ``entities`` has a ``text`` column it must equal the note text under the span.
    """
    for col in ("note_id", "text"):
        if col not in notes.columns:
            raise ValueError(f"notes: missing column {col!r}")
    for col in ("ROW_ID", "start", "end", "label"):
        if col not in entities.columns:
            raise ValueError(f"{source}: missing column {col!r}")
    note_text = dict(zip(notes["note_id"].to_list(), notes["text"].to_list()))
    patient = (dict(zip(notes["note_id"].to_list(), notes["patient_id"].to_list()))
               if "patient_id" in notes.columns else {})
    by_note: dict[int, list[Span]] = {}
    has_text = "text" in entities.columns
    cols = ["ROW_ID", "start", "end", "label"] + (["text"] if has_text else [])
    for row_no, row in enumerate(entities.select(cols).iter_rows()):
        nid, start, end, label = row[:4]
        if nid not in note_text:
            continue
        text = note_text[nid]
        where = f"{source} row {row_no} (ROW_ID {nid})"
        if label not in entity_types:
            raise ValueError(f"{where}: column 'label' is {label!r}, expected one of {list(entity_types)}")
        if start is None or end is None or not (0 <= start < end <= len(text)):
            raise ValueError(f"{where}: columns 'start'/'end' = [{start}, {end}) outside the note "
                             f"(length {len(text)})")
        if has_text and row[4] is not None and _clean(row[4]) != _clean(text[start:end]):
            raise ValueError(f"{where}: column 'text' is {row[4]!r} but the note holds "
                             f"{text[start:end]!r} at [{start}, {end})")
        by_note.setdefault(nid, []).append(Span(int(start), int(end), label))
    docs = []
    for nid, text in note_text.items():
        if nid in by_note or keep_empty:
            docs.append(NERDocument(nid, text, sorted(by_note.get(nid, [])), patient.get(nid)))
    return docs


def count_orphan_entities(notes: pl.DataFrame, entities: pl.DataFrame) -> int:
    """Entity rows whose ROW_ID has no note in ``notes`` (skipped by `documents_from_frames`)."""
    return entities.filter(~pl.col("ROW_ID").is_in(notes["note_id"].implode())).height


_CON_LINE = re.compile(r'^c="(.*)" (\d+):(\d+) (\d+):(\d+)\|\|t="(.*)"$')


def read_i2b2(txt_path: str | Path, con_path: str | Path,
              entity_types: Sequence[str] = ENTITY_TYPES) -> tuple[str, list[Span]]:
    """Read one i2b2/VA 2010 note and its concept file into (text, character spans).

    The .txt holds one sentence per line, tokens separated by spaces; the text returned is the
    file's lines joined by "\\n" (a trailing "\\r" dropped), so character offsets index it. A
    .con line ``c="chest pain" 12:3 12:4||t="problem"`` names line 12 (1-based) tokens 3..4
    (0-based, end inclusive). The concept text must equal the covered tokens, lower-cased and
    joined by one space; any mismatch raises ValueError naming the .con file and line.
    """
    txt_path, con_path = Path(txt_path), Path(con_path)
    lines = txt_path.read_text(encoding="utf-8").split("\n")
    lines = [ln[:-1] if ln.endswith("\r") else ln for ln in lines]
    text = "\n".join(lines)
    # tokens[l] = [(char start, char end)] in `text` for line l (0-based)
    tokens, pos = [], 0
    for ln in lines:
        tokens.append([(pos + m.start(), pos + m.end()) for m in re.finditer(r"\S+", ln)])
        pos += len(ln) + 1
    spans = []
    for no, raw in enumerate(con_path.read_text(encoding="utf-8").splitlines(), start=1):
        raw = raw.strip()
        if not raw:
            continue
        where = f"{con_path}, line {no}"
        m = _CON_LINE.match(raw)
        if not m:
            raise ValueError(f'{where}: not a concept line c="..." L:T L:T||t="...": {raw!r}')
        concept, l1, t1, l2, t2, label = m.group(1), *map(int, m.group(2, 3, 4, 5)), m.group(6)
        if label not in entity_types:
            raise ValueError(f"{where}: concept type {label!r}, expected one of {list(entity_types)}")
        if not (1 <= l1 <= l2 <= len(lines)):
            raise ValueError(f"{where}: lines {l1}..{l2} outside {txt_path} ({len(lines)} lines)")
        if t1 >= len(tokens[l1 - 1]) or t2 >= len(tokens[l2 - 1]) or (l1 == l2 and t2 < t1):
            raise ValueError(f"{where}: tokens {l1}:{t1} {l2}:{t2} outside {txt_path} "
                             f"(line {l1} has {len(tokens[l1 - 1])} tokens, line {l2} has {len(tokens[l2 - 1])})")
        start, end = tokens[l1 - 1][t1][0], tokens[l2 - 1][t2][1]
        covered = " ".join(text[start:end].split()).lower()
        if covered != " ".join(concept.split()).lower():
            raise ValueError(f"{where}: concept text {concept!r} but {txt_path} holds {covered!r} "
                             f"at {l1}:{t1} {l2}:{t2}")
        spans.append(Span(start, end, label))
    return text, sorted(spans)


def read_i2b2_dir(txt_dir: str | Path, con_dir: str | Path,
                  entity_types: Sequence[str] = ENTITY_TYPES) -> list[NERDocument]:
    """All notes of an i2b2 2010 folder pair (``txt/NAME.txt`` with ``concept/NAME.con``)."""
    txt_dir, con_dir = Path(txt_dir), Path(con_dir)
    txts = sorted(txt_dir.glob("*.txt"))
    if not txts:
        raise FileNotFoundError(f"{txt_dir}: no .txt notes")
    docs = []
    for t in txts:
        c = con_dir / f"{t.stem}.con"
        if not c.is_file():
            raise FileNotFoundError(f"{t}: no concept file {c}")
        text, spans = read_i2b2(t, c, entity_types)
        docs.append(NERDocument(t.stem, text, spans))
    return docs


__all__ = [
    "ENTITY_TYPES", "IGNORE_INDEX", "Span", "NERDocument", "NERWindow", "NERDataset", "tag_names", "as_spans",
    "word_tags", "tags_to_spans", "bio_tags", "documents_from_frames", "count_orphan_entities",
    "read_i2b2", "read_i2b2_dir",
]
