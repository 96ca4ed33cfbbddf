"""Strict entity-level precision / recall / F1 for BIO (IOB2) tag sequences.

The MedM-PLM NER probe (Table V, i2b2 2010 concepts) reports the *strict* entity F1: a predicted
entity counts as a true positive only when its type AND its exact word span (first and last
word) equal a gold entity. A prediction that overlaps a gold entity but misses or adds a word
is both a false positive and a false negative.

Decoding rule (IOB2, as seqeval's strict mode): an entity starts at ``B-X`` and extends over
the following ``I-X`` tags of the same type; an ``I-X`` that does not continue an entity of
type X (after ``O``, after ``B-Y``/``I-Y``, or at the start) is invalid and starts nothing.

    precision = TP / predicted, recall = TP / gold, F1 = 2PR / (P + R)   (0 when undefined)

Micro scores count entities over all sequences and types; macro F1 is the unweighted mean of
the per-type F1 over the types present in the gold or the predicted tags (seqeval's
``macro avg``).
"""

from __future__ import annotations

from collections.abc import Sequence

Entity = tuple[str, int, int]   # (type, first word, last word + 1)


def _check_tag(tag: str, where: str) -> None:
    if tag != "O" and not (len(tag) > 2 and tag[:2] in ("B-", "I-")):
        raise ValueError(f"{where}: tag {tag!r} is not 'O', 'B-<type>' or 'I-<type>'")


def entities_from_tags(tags: Sequence[str]) -> list[Entity]:
    """Entities of one IOB2 tag sequence as (type, start, end) word indices, end exclusive."""
    out: list[Entity] = []
    cur_type, cur_start = None, 0
    for i, tag in enumerate(tags):
        _check_tag(tag, f"position {i}")
        if tag.startswith("I-") and tag[2:] == cur_type:
            continue                                  # the open entity goes on
        if cur_type is not None:                      # anything else closes it
            out.append((cur_type, cur_start, i))
            cur_type = None
        if tag.startswith("B-"):
            cur_type, cur_start = tag[2:], i
        # an I-X that continues nothing is invalid in strict IOB2: no entity
    if cur_type is not None:
        out.append((cur_type, cur_start, len(tags)))
    return out


def _prf(tp: int, n_pred: int, n_true: int) -> dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "support": n_true, "predicted": n_pred, "tp": tp}


def _as_tags(seqs, id2tag: Sequence[str] | None, name: str) -> list[list[str]]:
    out = []
    for i, s in enumerate(seqs):
        s = list(s)
        if s and not isinstance(s[0], str):
            if id2tag is None:
                raise ValueError(f"{name}[{i}] holds tag ids; pass id2tag to name them")
            s = [id2tag[int(t)] for t in s]
        out.append(s)
    return out


def strict_entity_scores(y_true: Sequence[Sequence[str | int]], y_pred: Sequence[Sequence[str | int]],
                         id2tag: Sequence[str] | None = None) -> dict:
    """Strict entity scores of predicted vs gold tag sequences (one list of tags per sequence).

    Returns ``{"precision", "recall", "f1", "support", "predicted", "tp", "macro_f1",
    "per_type": {type: {"precision", "recall", "f1", "support", "predicted", "tp"}}}``.
    Tags may be strings or ids (then ``id2tag`` names them).
    """
    y_true = _as_tags(y_true, id2tag, "y_true")
    y_pred = _as_tags(y_pred, id2tag, "y_pred")
    if len(y_true) != len(y_pred):
        raise ValueError(f"y_true has {len(y_true)} sequences, y_pred has {len(y_pred)}")
    gold: set[tuple[int, str, int, int]] = set()
    pred: set[tuple[int, str, int, int]] = set()
    for i, (t, p) in enumerate(zip(y_true, y_pred)):
        if len(t) != len(p):
            raise ValueError(f"sequence {i}: {len(t)} gold tags but {len(p)} predicted tags")
        try:
            gold.update((i, *e) for e in entities_from_tags(t))
        except ValueError as e:
            raise ValueError(f"y_true[{i}] {e}") from None
        try:
            pred.update((i, *e) for e in entities_from_tags(p))
        except ValueError as e:
            raise ValueError(f"y_pred[{i}] {e}") from None
    tp = gold & pred
    types = sorted({e[1] for e in gold} | {e[1] for e in pred})
    per_type = {
        k: _prf(sum(e[1] == k for e in tp), sum(e[1] == k for e in pred), sum(e[1] == k for e in gold))
        for k in types
    }
    out = _prf(len(tp), len(pred), len(gold))
    out["macro_f1"] = sum(v["f1"] for v in per_type.values()) / len(per_type) if per_type else 0.0
    out["per_type"] = per_type
    return out


def strict_entity_f1(y_true, y_pred, id2tag: Sequence[str] | None = None) -> float:
    """Micro strict entity F1 (the number the MedM-PLM paper reports)."""
    return strict_entity_scores(y_true, y_pred, id2tag)["f1"]
