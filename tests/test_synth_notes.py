"""Tests of the discharge-summary writer (medmm.data.synth.notes) and the card's note-only oracle.

What they pin down: notes look like MIMIC-III discharge summaries (length, headers, vocabulary);
every entity span is valid; each note-side readmission fact is written both in forms that count
and, for patients without it, in forms that do not (same keywords), so that a bag of words reads
the facts only partly; the writer is deterministic. The 2,000-patient, 5-seed figure of
`note_margin_recovered` is too noisy for a test (about 70 positive held-out admissions per seed):
benchmarks/bench_notes.py prints it.
"""

from __future__ import annotations

import json
import random
import re
import statistics

import numpy as np
import pytest

from medmm.data.synth import catalog as cat
from medmm.data.synth import notes as notes_mod
from medmm.data.synth.card import Complementarity
from medmm.data.synth.latent import draw_cohort
from medmm.data.synth.notes import FACT_KEYWORDS, discharge_summary
from medmm.data.synth.realism import line_headers

_SECTIONS = {name for names, _ in notes_mod._H.values() for name in names}
_headers = line_headers


def _notes(c, visits) -> list[tuple[str, list]]:
    return [discharge_summary(c, int(v), random.Random(1000 + int(v))) for v in visits]


@pytest.fixture(scope="module")
def big():
    """~1,500 admissions: enough patients with each fact (homeless is ~4%)."""
    c = draw_cohort(1200, 5)
    return c, [t for t, _ in _notes(c, range(c.n_visits))]


def _facts(c) -> dict[str, np.ndarray]:
    p = c.v_patient

    def sev(k):
        return c.sev[:, cat.CHRONIC_INDEX[k]] * c.present(k)

    return {"lives_alone": c.lives_alone[p], "homeless": c.homeless[p], "no_pcp": c.no_pcp[p],
            "nonadherent": c.nonadherent, "severe_chronic": (sev("chf") == 3) | (sev("copd") == 3) | (sev("dm2") == 3),
            "long_duration": ((c.years * c.chronic[p]) > 15).any(1)}


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_note_statistics_meet_targets(seed):
    c = draw_cohort(120, seed)
    texts = [t for t, _ in _notes(c, range(100))]
    words = [len(t.split()) for t in texts]
    assert statistics.median(words) >= 380, statistics.median(words)
    assert 400 <= statistics.median(words) <= 750
    assert len({w for t in texts for w in t.lower().split()}) >= 2500
    assert len({w for t in texts for w in re.findall("[a-z]+", t.lower())}) >= 2000     # words, not numbers
    assert len({_headers(t) for t in texts}) >= 25
    # The section headers alone (not the exam's "Lungs:" lines) vary too: spelling, presence, order.
    sections = {tuple(h for h in _headers(t) if h in _SECTIONS) for t in texts}
    assert len(sections) >= 25, len(sections)
    spellings = {h for t in texts for h in _headers(t) if h in _SECTIONS}
    assert {"Physical Exam", "PE", "Pertinent Results", "Physical Exam on discharge", "Medications on Admission",
            "Discharge Instructions"} & spellings and len(spellings) >= 30
    # MIMIC's template headers that every note keeps (tests/test_synth.py reads them).
    for t in texts:
        for h in notes_mod._CANON.values():
            assert f"\n{h}:\n" in t, h


def test_vocabulary_grows_with_the_number_of_notes():
    c = draw_cohort(900, 3)
    texts = [t for t, _ in _notes(c, range(1000))]
    v100 = len({w for t in texts[:100] for w in t.lower().split()})
    v1000 = len({w for t in texts for w in t.lower().split()})
    assert v1000 > 2.5 * v100
    a100 = len({w for t in texts[:100] for w in re.findall("[a-z]+", t.lower())})
    a1000 = len({w for t in texts for w in re.findall("[a-z]+", t.lower())})
    assert a1000 > 1.5 * a100                        # typos and paraphrases keep adding words


def test_spans_valid_and_labelled():
    c = draw_cohort(150, 7)
    labels = {"problem", "treatment", "test"}
    seen = set()
    for text, spans in _notes(c, range(c.n_visits)):
        assert text.isascii() and not text[0].isspace()
        assert spans
        prev_end = 0
        for s, e, label in sorted(spans):
            mention = text[s:e]
            assert label in labels and 0 <= s < e <= len(text)
            assert mention == mention.strip() and "\n" not in mention
            assert s >= prev_end, "overlapping entities"
            # An entity never runs into a letter or digit outside it (the NER words stay whole).
            assert (s == 0 or not text[s - 1].isalnum()) and (e == len(text) or not text[e].isalnum()), mention
            cleaned = text.lower().replace("\r", " ").replace("\n", " ")
            assert cleaned[s:e] == mention.lower()
            prev_end = e
            seen.add(label)
    assert seen == labels


def test_deterministic_given_r():
    c = draw_cohort(40, 2)
    for v in range(0, c.n_visits, 7):
        a = discharge_summary(c, v, random.Random(42))
        b = discharge_summary(c, v, random.Random(42))
        assert a == b
        assert discharge_summary(c, v, random.Random(43))[0] != a[0]


# Minimum keyword rates (share of admissions whose note contains one of FACT_KEYWORDS[fact]),
# with the fact and without it; measured ~0.1-0.2 above these bounds.
_RATES = {"lives_alone": (0.4, 0.25), "homeless": (0.35, 0.08), "no_pcp": (0.7, 0.7), "nonadherent": (0.45, 0.45),
          "severe_chronic": (0.7, 0.4), "long_duration": (0.75, 0.7)}


def test_each_fact_in_counting_and_non_counting_forms(big):
    c, texts = big
    low = [t.lower() for t in texts]
    for fact, y in _facts(c).items():
        assert 10 <= y.sum() < len(y), fact
        kw = np.array([any(k in t for k in FACT_KEYWORDS[fact]) for t in low])
        with_fact, without = kw[y].mean(), kw[~y].mean()
        lo_with, lo_without = _RATES[fact]
        assert with_fact >= lo_with, (fact, with_fact)
        assert without >= lo_without, (fact, without)      # the keyword, in forms that do not count
        assert with_fact / without < 4.0, fact               # a keyword is a weak signal
    # Counting forms without the obvious keyword ("no one at home to help her", "staying at a shelter").
    facts = _facts(c)
    for fact, word in (("lives_alone", "alone"), ("homeless", "homeless"), ("nonadherent", "adheren")):
        y = facts[fact]
        assert np.mean([word not in t for t, f in zip(low, y) if f]) >= 0.2, fact


def test_non_counting_forms_of_each_kind(big):
    c, texts = big
    facts = _facts(c)
    la = facts["lives_alone"] | facts["homeless"]
    neg = [t for t, f in zip(texts, la) if not f]
    joined = "\n".join(neg)
    # negated, historical, someone else's, hypothetical, copied-forward and corrected
    assert re.search(r"(Does not live alone|Denies living alone|not living alone|Lives alone: no)", joined)
    assert re.search(r"lived alone until|Previously lived alone|used to live by", joined)
    assert re.search(r"(His|Her) [a-z-]+ lives alone", joined)
    assert re.search(r"(would not be safe to live alone|If (he|she) were living alone)", joined)
    assert re.search(r"(Per prior notes|Per old records|Per OMR|Old H&P|discharge summary): \"", joined)
    adherent = "\n".join(t for t, f in zip(texts, facts["nonadherent"]) if not f)
    assert re.search(r"(No history of medication non-adherence|history of non-adherence|(Denies|No) missed doses)",
                     adherent)
    housed = "\n".join(t for t, f in zip(texts, facts["homeless"]) if not f)
    assert re.search(r"(Not homeless|Denies homelessness|(Previously|Formerly) homeless|homeless shelter)", housed)
    assert re.search(r"ruled out for|no evidence of", "\n".join(texts), flags=re.I)
    assert re.search(r"no evidence of severe|previously uncontrolled|not uncontrolled|not felt to be severe",
                     "\n".join(texts), flags=re.I)
    assert re.search(r"(Mother had|Father with) severe", "\n".join(texts))


def test_bag_of_words_reads_the_facts_only_partly(big):
    """A TF-IDF (1-2 grams) logistic regression predicting the fact itself from the note: informative
    (the facts are written) but far from perfect (the template notes before gave ~1.0)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    c, texts = big
    docs = [t.replace("\n", " ").lower() for t in texts]
    test = np.isin(c.v_patient, np.random.default_rng(0).permutation(c.n_patients)[: c.n_patients * 3 // 10])
    tf = TfidfVectorizer(ngram_range=(1, 2), min_df=3, max_features=30000, sublinear_tf=True)
    xtr = tf.fit_transform([d for d, t in zip(docs, test) if not t])
    xte = tf.transform([d for d, t in zip(docs, test) if t])
    facts = _facts(c)
    for fact in ("lives_alone", "nonadherent", "no_pcp"):
        y = facts[fact]
        m = LogisticRegression(C=1.0, max_iter=2000).fit(xtr, y[~test])
        auc = roc_auc_score(y[test], m.predict_proba(xte)[:, 1])
        assert 0.55 < auc < 0.9, (fact, auc)


def test_code_side_conditions_seldom_written(big):
    c, texts = big
    low = [t.lower() for t in texts]
    for key, words in (("ckd", ("ckd", "chronic kidney disease")), ("cirrhosis", ("cirrhosis", "cirrhossis", "esld")),
                       ("lung_ca", ("nsclc", "lung cancer", "non-small cell"))):
        has = c.present(key)
        if has.sum() < 10:
            continue
        written = np.mean([any(w in t for w in words) for t, h in zip(low, has) if h])
        assert written < 0.4, (key, written)
    for drug in ("sevelamer", "epoetin"):
        given = np.array([cat.DRUG_INDEX[drug] in {i for i, _, _ in o} for o in c.orders])
        if given.sum() >= 10:
            assert np.mean([drug in t for t, g in zip(low, given) if g]) < 0.3, drug


def test_note_margin_recovered_and_card_fields(tmp_path):
    comp = Complementarity(100, 50, 0.1, auroc_codes=0.7, auroc_note=0.65, auroc_both=0.72, auroc_oracle=0.85,
                           auroc_note_oracle=0.75)
    assert comp.note_margin_recovered == pytest.approx(0.6)
    js = comp.to_json()
    assert js["auroc_note_oracle"] == 0.75 and js["note_margin_recovered"] == 0.6 and js["holds"] is True
    assert np.isnan(Complementarity(1, 1, 0.1, 0.6, 0.6, 0.6, 0.7, 0.5).note_margin_recovered)

    from medmm.data.synth import generate

    out = generate(tmp_path / "s", n_patients=500, seed=0)
    meta = json.loads((out / "synth.json").read_text())["complementarity"]
    assert 0.5 < meta["auroc_note_oracle"] < 1.0
    assert meta["note_margin_recovered"] == pytest.approx(
        (meta["auroc_note"] - 0.5) / (meta["auroc_note_oracle"] - 0.5), abs=2e-3)
    card = (out / "data_card.md").read_text()
    assert f"| note-only oracle (note part of the true logit) | {meta['auroc_note_oracle']:.3f} |" in card
    assert f"recovers {meta['note_margin_recovered']:.0%} of the note-only oracle's margin" in card
