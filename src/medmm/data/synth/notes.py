"""Discharge summaries written from the latent state, with the character span of every entity.

A note is what a clinician would dictate: it carries what codes lack (the reason for admission,
durations, severity words, doses, social facts such as "lives alone" or non-adherence) and it
carries noise. Conditions that drive readmission through the code side are seldom written (their
`note_p` is low), and the note's results show the abnormal values only of conditions the note
writes (the dictating clinician picks the pertinent ones; LABEVENTS keeps them all).

What makes the notes worth *reading* rather than counting words (MedM-PLM's premise):

* Structure like MIMIC-III discharge summaries: ~20 sections, eight of them in MIMIC's template
  spelling and always present, the others in several spellings ("Physical Exam:" / "PE:"),
  optional, and in varied order, with varied sub-headers; an exam from the latent state, results
  with numbers, a hospital course by problem, instructions.
* Every note-side readmission fact (lives alone, homeless, non-adherence this visit, no primary
  care physician, severe CHF/COPD/diabetes, disease durations over 15 years; latent.READMIT) is
  written in many wordings, some without the obvious keyword ("no one at home to help her",
  "stopped her pills because of cost"), sometimes far from its usual section. And the same
  keywords appear, often, in forms that do not count: negated ("denies living alone"),
  historical ("previously homeless, now housed"), about someone else ("her son lives alone"),
  hypothetical ("if she were to live alone"), ruled out ("no evidence of severe LV
  dysfunction"). A keyword is then a weak signal; the regression in card.complementarity
  recovers only part of the note-only oracle's margin (`note_margin_recovered`).
* Phrases are slot-filled templates with alternatives, abbreviations (CHF/HF, DM2/T2DM, h/o,
  s/p, c/o, SOB, DOE) and typos in ~3% of the plain words (never inside an entity), so the
  vocabulary grows with the number of notes.

Every entity mention is recorded as (start, end, label) with label in {problem, treatment, test}
(the i2b2 2010 concept classes the NER probe uses); negated and family-history problems are
problems too, as in i2b2. Entities never touch a letter or digit outside their span and never
overlap. Notes are ASCII and never start with whitespace, so medmm's length-preserving cleaning
(lower-case, each CR/LF -> one space) keeps every offset valid.

Templates (compiled once at import): `{a|b|}` picks one alternative (an empty one makes the
phrase optional), `{he}` is a slot, `{2-9}` a random integer, `{@name}` calls a writer from the
slots (lists with entities), `<P:...>` / `<T:...>` / `<X:...>` mark a problem / treatment / test
mention, `$NAME` is a macro expanded at compile time.
"""

from __future__ import annotations

import math
import random

import numpy as np

from medmm.data.synth import catalog as cat
from medmm.data.synth.latent import READMIT

# How a drug is named in a note (lower-case generic names, like dictated discharge medications).
NOTE_NAME = {d.key: d.generic or d.key.replace("_", " ") for d in cat.DRUGS}
NOTE_NAME.update({
    "pip_tazo": "piperacillin-tazobactam", "fluticasone_salmeterol": "fluticasone-salmeterol",
    "insulin_regular": "insulin sliding scale", "nicotine": "nicotine patch", "epoetin": "epoetin alfa",
    "ns": "normal saline", "d5w": "D5W", "sw": "sterile water",
})
NOTE_NAME.update({d.key: NOTE_NAME[d.key[:-4]] for d in cat.DRUGS if d.key.endswith("_alt")})
# Brand / short names a note uses as often as the generic one.
_ALIAS = {
    "furosemide": ("Lasix", "furosemide", "lasix"), "metoprolol": ("metoprolol", "Lopressor", "toprol"),
    "pip_tazo": ("Zosyn", "piperacillin-tazobactam", "pip/tazo"), "vancomycin": ("vancomycin", "vanc", "Vancomycin"),
    "ceftriaxone": ("ceftriaxone", "CTX", "Ceftriaxone"), "acetaminophen": ("Tylenol", "acetaminophen"),
    "atorvastatin": ("atorvastatin", "Lipitor"), "clopidogrel": ("Plavix", "clopidogrel"),
    "warfarin": ("coumadin", "warfarin", "Coumadin"), "insulin_glargine": ("glargine", "Lantus", "insulin glargine"),
    "pantoprazole": ("pantoprazole", "Protonix"), "levofloxacin": ("levofloxacin", "Levaquin"),
    "albuterol": ("albuterol", "albuterol nebs", "Albuterol"), "tiotropium": ("Spiriva", "tiotropium"),
    "fluticasone_salmeterol": ("Advair", "fluticasone-salmeterol"), "azithromycin": ("azithromycin", "azithro"),
    "methylprednisolone": ("solumedrol", "methylprednisolone", "IV steroids"), "lisinopril": ("lisinopril",),
    "heparin": ("heparin", "heparin gtt", "a heparin drip"), "oxycodone": ("oxycodone", "oxycodone prn"),
    "metronidazole": ("flagyl", "metronidazole", "PO flagyl"), "norepinephrine": ("levophed", "norepinephrine"),
}
# Conditions that drive readmission through the code side (latent.READMIT "code.*"): a note seldom
# writes them (their note_p), and then seldom lists the drugs only they explain.
_CODE_SIDE = tuple(k for k in dict.fromkeys(key.split(".", 1)[1] for key in READMIT if key.startswith("code."))
                   if k in cat.DISEASE_BY_KEY)

_PROC_TEXT = {k: v[1] for k, v in cat.PROCEDURES.items()}
_PROC_ALIAS = {"intubation": ("intubation", "endotracheal intubation"), "central_line": (
    "central line placement", "right IJ central line", "central venous catheter placement"),
    "art_line": ("arterial line placement", "A-line"), "egd": ("EGD", "upper endoscopy"),
    "cath": ("cardiac catheterization", "cardiac cath", "left heart catheterization"),
    "pci": ("PCI", "percutaneous coronary intervention", "drug-eluting stent placement"),
    "transfusion": ("transfusion of packed red blood cells", "pRBC transfusion"),
    "hip_repair": ("ORIF of the hip", "open reduction and internal fixation of the hip", "hemiarthroplasty")}

# Lower-case keywords of each note-side readmission fact (latent.READMIT "note.*"): the words a
# bag-of-words model would key on. They occur in counting forms and, often, in forms that do not
# count (tests check both).
FACT_KEYWORDS = {
    "lives_alone": ("alone",),
    "homeless": ("homeless", "shelter"),
    "nonadherent": ("adheren", "complian", "non-complian", "missed dose", "ran out", "run out", "stop taking",
                    "stopped taking", "skip"),
    "no_pcp": ("pcp", "primary care"),
    "severe_chronic": ("severe", "uncontrolled", "end-stage"),
    "long_duration": ("years", "long-standing", "decades"),
}

# ==============================================================================================
# Template engine
# ==============================================================================================


class _Lit(tuple):
    """A literal piece: (text, (start, end) of each word a typo may touch)."""
    __slots__ = ()


class _Ent:
    """An entity mention: its label and the template sequence that writes its text."""
    __slots__ = ("label", "seq")

    def __init__(self, label: str, seq: tuple) -> None:
        self.label, self.seq = label, seq


class _Call:
    """`{@name}`: the writer function in slot `name`, called with the doc at this point."""
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_LABELS = {"P": "problem", "T": "treatment", "X": "test"}
_BEFORE = frozenset(" (,;/\"\n")
_AFTER = frozenset(" ,.;:)/\"-\n")

_MACROS = {
    "$REL": "{son|daughter|brother|sister|niece|nephew|cousin|neighbor|friend|son-in-law|daughter-in-law}",
    "$KID": "{son|daughter}",
    "$HOSP": "[**Hospital{1|3|} {1-99}**]",
    "$DR": "Dr. [**Last Name (STitle) {100-9999}**]",
    "$FNAME": "[**First Name{4|8|11} (Name Pattern1) {100-9999}**]",
    "$NAME": "[**Name (NI) {100-9999}**]",
    "$LOC": "[**Location (un) {10-999}**]",
    "$STATE": "[**State {10-999}**]",
    "$PHONE": "[**Telephone/Fax (1) {100-9999}**]",
    "$DATE": "[**{date}**]",
    "$HOUSE": "{an apartment|a house|a condo|a two-family house|a {first|second|third}-floor apartment|senior housing"
              "|an elder housing complex|a mobile home|a studio apartment}",
    "$AWHILE": "{last year|{2-11} months ago|{2-9} years ago|recently|last spring|last fall|in [**{year}**]}",
    "$WEEKS": "{two|three|four|several|2|3|4|6|a few} weeks",
    "$PT": "{PT|Physical therapy|physical therapy}",
}


def _lit(text: str) -> _Lit:
    bounds = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isalpha():
            j = i
            while j < n and text[j].isalpha():
                j += 1
            if (j - i >= 4 and text[i:j].islower() and (i == 0 or text[i - 1] in _BEFORE)
                    and (j == n or text[j] in _AFTER)):
                bounds.append((i, j))
            i = j
        else:
            i += 1
    return _Lit((text, tuple(bounds)))


def _parse(src: str, i: int, stop: str) -> tuple[tuple, int, str]:
    items: list = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            items.append(_lit("".join(buf)))
            buf.clear()

    n = len(src)
    while i < n:
        ch = src[i]
        if ch in stop:
            flush()
            return tuple(items), i, ch
        if ch == "{":
            flush()
            j = src.find("}", i)
            inner = src[i + 1:j]
            if "{" not in inner and "|" not in inner and "<" not in inner:
                if inner[:1].isdigit():                       # {2-9}: an integer, both ends included
                    a, b = inner.split("-")
                    items.append(range(int(a), int(b) + 1))
                elif inner[:1] == "@":
                    items.append(_Call(inner[1:]))
                else:
                    items.append(inner)                       # a slot
                i = j + 1
                continue
            alts = []
            i += 1
            while True:
                seq, i, c = _parse(src, i, "|}")
                if not c:
                    raise ValueError(f"unclosed '{{' in template {src!r}")
                alts.append(seq)
                i += 1
                if c == "}":
                    break
            items.append(alts)
            continue
        if ch == "<" and src[i + 1:i + 3] in ("P:", "T:", "X:"):
            flush()
            label = _LABELS[src[i + 1]]
            seq, i, c = _parse(src, i + 3, ">")
            if c != ">":
                raise ValueError(f"unclosed entity in template {src!r}")
            items.append(_Ent(label, seq))
            i += 1
            continue
        buf.append(ch)
        i += 1
    flush()
    return tuple(items), i, ""


def _compile(src: str) -> tuple:
    for k in sorted(_MACROS, key=len, reverse=True):
        if k in src:
            src = src.replace(k, _MACROS[k])
    return _parse(src, 0, "")[0]


def _T(*srcs: str) -> tuple[tuple, ...]:
    """A phrase table: one of its compiled templates is picked per use."""
    return tuple(_compile(s) for s in srcs)


class _Doc:
    """Accumulates text and entity spans; offsets are character offsets into the final string.

    Typos: a countdown over typo-eligible words (lower-case words of >= 4 letters in template
    literals, never inside an entity) with geometric gaps, so ~`typo_rate` of them get one
    character swapped, dropped, doubled or replaced, at the cost of one subtraction per literal.
    """

    __slots__ = ("parts", "n", "spans", "slots", "rand", "left", "in_ent", "typo_rate")

    def __init__(self, r: random.Random, typo_rate: float) -> None:
        self.parts: list[str] = []
        self.n = 0
        self.spans: list[tuple[int, int, str]] = []
        self.slots: dict = {}
        self.rand = r.random
        self.typo_rate = typo_rate
        self.in_ent = False
        self.left = self._gap()

    def _gap(self) -> int:
        return int(-math.log(1.0 - self.rand()) / self.typo_rate) + 1

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.n += len(s)

    def ent(self, s: str, label: str) -> None:
        if self.rand() < self.typo_rate * 1.5:          # a misspelt drug or disease name: still the entity
            s = self._misspell(s)
        self.spans.append((self.n, self.n + len(s), label))
        self.add(s)

    def _misspell(self, s: str) -> str:
        words = s.split(" ")
        k = int(self.rand() * len(words))
        w = words[k]
        if len(w) >= 5 and w.isalpha() and w[1:].islower():
            words[k] = self._typo(w, (0, len(w)))
        return " ".join(words)

    def ents(self, items: list[str], label: str, sep: str = ", ", last: str = " and ") -> None:
        for i, s in enumerate(items):
            if i:
                self.add(last if i == len(items) - 1 else sep)
            self.ent(s, label)

    def say(self, table: tuple[tuple, ...]) -> None:
        self.emit(table[int(self.rand() * len(table))])

    def pick(self, seq):
        return seq[int(self.rand() * len(seq))]

    def emit(self, seq: tuple) -> None:
        parts = self.parts
        for it in seq:
            t = type(it)
            if t is _Lit:
                text, bounds = it
                if bounds and not self.in_ent:
                    self.left -= len(bounds)
                    if self.left <= 0:
                        text = self._typo(text, bounds[len(bounds) - 1 + self.left])
                        self.left = self._gap()
                parts.append(text)
                self.n += len(text)
            elif t is list:
                self.emit(it[int(self.rand() * len(it))])
            elif t is str:
                s = self.slots[it]
                parts.append(s)
                self.n += len(s)
            elif t is range:
                s = str(it[int(self.rand() * len(it))])
                parts.append(s)
                self.n += len(s)
            elif t is _Ent:
                start = self.n
                self.in_ent = True
                self.emit(it.seq)
                self.in_ent = False
                self.spans.append((start, self.n, it.label))
            else:
                self.slots[it.name](self)

    def _typo(self, text: str, b: tuple[int, int]) -> str:
        i, j = b
        w = text[i:j]
        u = self.rand()
        k = 1 + int(self.rand() * (len(w) - 2))                # an inner letter: first and last kept
        if u < 0.4:
            w = w[:k] + w[k + 1] + w[k] + w[k + 2:]
        elif u < 0.7:
            w = w[:k] + w[k + 1:]
        elif u < 0.85:
            w = w[:k] + w[k] + w[k:]
        else:
            w = w[:k] + "aeiou"[int(self.rand() * 5)] + w[k + 1:]
        return text[:i] + w + text[j:]

    def text(self) -> str:
        return "".join(self.parts)


def _weighted(*pairs: tuple[str, float]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    total = sum(w for _, w in pairs)
    acc, cum = 0.0, []
    for _, w in pairs:
        acc += w / total
        cum.append(acc)
    return tuple(s for s, _ in pairs), tuple(cum)


def _wpick(rand, table) -> str:
    names, cum = table
    u = rand()
    for s, c in zip(names, cum):
        if u < c:
            return s
    return names[-1]


# ==============================================================================================
# Section headers (spellings, weights)
# ==============================================================================================

# Eight sections keep MIMIC's template spelling and are always present (every MIMIC-III discharge
# summary has them, and tests/test_synth.py reads them); the others vary in spelling, presence and
# place, and the sections themselves carry varied sub-headers ("ADMISSION LABS:", "CHRONIC ISSUES:").
_CANON = {"cc": "Chief Complaint", "hpi": "History of Present Illness", "pmh": "Past Medical History",
          "social": "Social History", "family": "Family History", "course": "Brief Hospital Course",
          "dc_meds": "Discharge Medications", "dx": "Discharge Diagnosis"}
_H = {k: _weighted((v, 1)) for k, v in _CANON.items()} | {
    "proc": _weighted(("Major Surgical or Invasive Procedure", 80), ("Procedures", 8), ("Invasive Procedures", 5),
                      ("Procedures this admission", 7)),
    "ros": _weighted(("Review of Systems", 50), ("ROS", 35), ("Review of systems", 15)),
    "psh": _weighted(("Past Surgical History", 60), ("PSH", 30), ("Surgical History", 10)),
    "exam": _weighted(("Physical Exam", 58), ("Physical Examination", 10), ("PHYSICAL EXAM", 6),
                      ("Admission Physical Exam", 10), ("Exam on admission", 6), ("PE", 10)),
    "results": _weighted(("Pertinent Results", 70), ("Pertinent Labs/Studies", 8), ("Labs", 6), ("Laboratory Data", 6),
                         ("PERTINENT RESULTS", 4), ("Labs and Studies", 6)),
    "transitional": _weighted(("Transitional Issues", 60), ("TRANSITIONAL ISSUES", 25), ("Issues for follow-up", 15)),
    "adm_meds": _weighted(("Medications on Admission", 62), ("Home Medications", 12), ("Outpatient Medications", 6),
                          ("Meds on admission", 6), ("Preadmission Medications", 8), ("MEDICATIONS ON ADMISSION", 6)),
    "dispo": _weighted(("Discharge Disposition", 86), ("Disposition", 14)),
    "condition": _weighted(("Discharge Condition", 80), ("Condition at discharge", 10), ("Condition on Discharge", 10)),
    "dc_exam": _weighted(("Physical Exam on discharge", 40), ("Discharge Exam", 25), ("DISCHARGE PHYSICAL EXAM", 15),
                         ("Exam at discharge", 20)),
    "instr": _weighted(("Discharge Instructions", 80), ("Patient Instructions", 8), ("Instructions", 4),
                       ("DISCHARGE INSTRUCTIONS", 8)),
    "followup": _weighted(("Followup Instructions", 78), ("Follow-up Instructions", 8), ("Follow up", 5),
                          ("FOLLOWUP", 4), ("Follow-up Appointments", 5)),
}

# ==============================================================================================
# The note-side readmission facts: counting forms (kw: with the keyword, para: without) and
# non-counting forms (non: same keywords, but negated / historical / someone else / hypothetical)
# ==============================================================================================

def _S(*srcs: str) -> tuple[str, ...]:
    """Template sources, compiled later (the fact tables derive more forms from them)."""
    return srcs


_PRONOUNS_OTHER = (("{himself}", "{o_himself}"), ("{his}", "{o_his}"), ("{him}", "{o_him}"), ("{he}", "{o_he}"))


def _other_person(src: str) -> str | None:
    """'{He} ran out of {his} lasix...' -> '{His} {other} ran out of {o_his} lasix...': the same words
    about someone else (the patient's husband, daughter, roommate...)."""
    if not src.startswith("{He} "):
        return None
    body = src[5:]
    for a, b in _PRONOUNS_OTHER:
        body = body.replace(a, b)
    return "{His} {other} " + body


_STALE = "{Per prior notes|Per old records|Per {his} [**{oldyear}**] discharge summary|Per OMR|Old H&P}: \""


def _fact_tables(src: dict[str, tuple[str, ...]], current: tuple[str, ...]) -> dict[str, tuple]:
    """Compile a fact's tables and derive two non-counting families from its counting forms:
    `other` (the same sentence about someone else) and `stale` (the sentence quoted from an old
    note, then corrected: copied-forward text, as in real notes)."""
    out = {k: _T(*v) for k, v in src.items()}
    counting = src["kw"] + src["para"]
    out["other"] = _T(*[o for o in map(_other_person, counting) if o])
    out["stale"] = _T(*[_STALE + c + "\" {However,|But|Now|} " + cur for c in counting[::2] for cur in current])
    return out


_LIVES_ALONE_SRC = {
    "kw": _S(
        "Lives alone{| in $HOUSE}.",
        "{Widowed|Divorced|Single|Never married|Separated}, lives alone{| with {his} {cat|dog|cats}}.",
        "{He} lives alone and is {independent|mostly independent|independent but slow} with {ADLs|ADLs and IADLs}.",
        "{He} currently lives alone{| and manages {his} own medications| in $HOUSE}.",
        "Living situation: alone{| in $HOUSE}.",
        "{He} has lived alone {since {his} {divorce|spouse died|children moved out}|for {many|several|3-20} years}.",
        "Lives alone; {his} $KID checks in {daily|a few times a week|weekly|on weekends}.",
        "Pt lives alone{|, independent at baseline}.",
        "{He} lives alone and {climbs|is able to climb} {2-3} flights of stairs {with difficulty|without difficulty}.",
        "Lives alone, {has a $KID nearby|no family in the area|family out of state|limited support}.",
        "Lived with {his} {spouse|partner|$KID} until $AWHILE; now lives alone.",
        "Used to live with {his} $KID but now lives alone{| in $HOUSE}.",
        "Lives alone since {his} {spouse|husband|wife} moved to a nursing home.",
    ),
    "para": _S(
        "{He} lives by {himself}{| in $HOUSE}.",
        "There is no one at home to help {him}{| with {his} medications| after discharge| with meals}.",
        "{He} is {widowed|divorced} and {has no one|nobody} living with {him}.",
        "{He} resides by {himself} in $HOUSE.",
        "{His} {spouse|partner} passed away {last year|{2-9} years ago} and {he} has been on {his} own since.",
        "No other household members{| at home}.",
        "{He} manages at home by {himself}; {his} $KID lives {out of state|in $STATE} and calls {weekly|most days}.",
        "Single, no roommates; {he} does {his} own shopping and cooking.",
        "Home: $HOUSE, {he} is the only occupant.",
        "Nobody else lives in the home{| and {he} has no nearby family}.",
        "{He} was found on the floor by a {neighbor|friend|building manager} who had not heard from {him} in {2-3} days.",
        "{His} $KID, who lives with {his} own family {nearby|in $LOC}, checks on {him}; otherwise {he} is on {his} own.",
        "{He} used to live with {his} {spouse|partner|$KID} but now resides by {himself}.",
    ),
    "non": _S(
        "Does not live alone{|; lives with {his} {co}}.",
        "Denies living alone{|, lives with {his} {co}}.",
        "{He} is not living alone{| - {his} {co} moved in $AWHILE}.",
        "Lives alone: no{|, with {co}}.",
        "{He} does not live by {himself}; {his} {co} lives with {him}.",
        "Never lived alone{|; has lived with {his} {co} for {10-40} years}.",
        "{He} lived alone until {last year|{2-11} months ago|{his} fall in [**{year}**]|recently}, and now lives "
        "with {his} {co}.",
        "Previously lived alone, {moved in with|now lives with} {his} {co} {last year|after {his} last admission|"
        "{2-11} months ago}.",
        "{He} used to live by {himself} but moved in with {his} {co}{| {2-5} years ago}.",
        "Lived alone for many years after {his} divorce; now lives with {his} {co}.",
        "{His} $REL lives alone {nearby|in $LOC|upstairs|down the street} and {visits|checks on {him}} {daily|often}.",
        "{His} $REL, who lives alone, {is {his} health care proxy|helps with transportation|visits on weekends}.",
        "{His} elderly {mother|father} lives alone {in $STATE|nearby} and {he} {helps with|checks on} {her|him} "
        "{often|weekly}.",
        "$PT felt {he} would not be safe to live alone{| at this time}; {he} lives with {his} {co}, who {can assist|"
        "is able to provide supervision}.",
        "If {he} were living alone, {he} would need {more services|a higher level of care|VNA}; {his} {co} is home "
        "with {him}.",
        "{He} should not be left alone for {the first few days|long periods} after discharge; {his} {co} will stay "
        "with {him}.",
        "{He} will not be alone at home; {his} {co} {is retired|works from home} and {will be with {him}|is available}.",
        "Not safe to be home alone per $PT; {his} {co} will provide 24-hour supervision.",
    ),
    "plain": _S(
        "Lives with {his} {co}{| in $HOUSE}.",
        "Lives at home with {his} {co}{| and {grandchildren|two dogs|a cat}}.",
        "Resides with {his} {co}{| in $LOC}.",
        "{He} lives with {his} {co}, who is {very involved|supportive|{his} HCP}.",
        "Home with {his} {co}.",
    ),
}

_HOMELESS_SRC = {
    "kw": _S(
        "{Currently homeless|Homeless}{|, staying at shelters| for the past {2-11} months}.",
        "{He} is homeless{| and has been for {2-9} years| since losing {his} apartment $AWHILE}.",
        "Homeless; {sleeps in shelters|stays at a shelter {most nights|when beds are available}}.",
        "Pt is homeless and {has difficulty obtaining {his} medications|uses the ED for {his} care}.",
        "Housing: homeless.",
        "Undomiciled{|, homeless for {2-9} years}.",
    ),
    "para": _S(
        "{He} has been staying at a shelter{| in $LOC}{| for the past {2-11} months}.",
        "{He} lost {his} apartment $AWHILE and has been {couch surfing|staying with friends on and off|sleeping in "
        "{his} car}.",
        "{He} lives on the street{| and in {his} car}.",
        "No fixed address{| (uses a PO box)}.",
        "{He} currently sleeps in {his} car{| or at a friend's place}.",
        "No stable housing{| since {his} eviction $AWHILE}.",
        "Was evicted {2-11} months ago and has nowhere to stay.",
        "{He} stays at {a|the} {men's|women's} {shelter|residence} at night and spends days at {the library|a day "
        "program}.",
    ),
    "non": _S(
        "Not homeless{|; lives in $HOUSE with {his} {co}}.",
        "Denies homelessness.",
        "No history of homelessness.",
        "Housing: stable{|, not homeless}.",
        "{Previously|Formerly} homeless{| for several years}, now {housed with {his} {co}|lives in subsidized housing|"
        "lives in {his} own apartment}{| since [**{year}**]}.",
        "{He} was homeless {in {his} {20s|30s}|briefly in [**{oldyear}**]|many years ago} but has had stable housing "
        "for over {5-20} years.",
        "{He} {volunteers|works} at a {homeless|} shelter{| {2-4} days a week}.",
        "{His} $REL is homeless{| and struggles with addiction}{|, which has been a source of stress}.",
        "{He} is worried about {losing {his} housing|becoming homeless} if {he} cannot pay rent; currently lives in "
        "$HOUSE.",
        "{He} used to stay at a shelter {in [**{oldyear}**]|years ago} but has lived with {his} {co} since.",
    ),
}

_NO_PCP_SRC = {
    "kw": _S(
        "No PCP{| on file| currently}.",
        "{He} does not have a {PCP|primary care physician|primary care provider|primary care doctor}{| and has not "
        "seen a doctor in {2-10} years}.",
        "PCP: {none|None|none listed|does not have one}.",
        "{Has not had a|Has no} {PCP|primary care provider} {since {his} last doctor retired|for several years}.",
        "Not established with a {PCP|primary care physician}.",
    ),
    "para": _S(
        "{He} has not seen a doctor in {2-15} years{| and gets {his} care in the ED}.",
        "{He} is unable to name a {regular doctor|doctor {he} sees regularly}.",
        "{He} gets {his} {care|prescriptions} {only|mostly} from {the ED|urgent care|walk-in clinics}.",
        "{He} reports {his} last {routine|} {checkup|physical} was {over {3-20} years ago|in [**{oldyear}**]}.",
        "No regular outpatient follow-up{| for many years}.",
    ),
    "non": _S(
        "PCP: $DR{| at $HOSP}{| ($PHONE)}.",
        "{He} previously had no {PCP|primary care physician} but established care with $DR $AWHILE.",
        "{His} {PCP|primary care physician} {recently retired|moved practices} and {he} now sees a new {PCP|primary "
        "care doctor}, $DR.",
        "{His} $REL does not have a {PCP|primary care physician}{| and {he} has been encouraging them to find one}.",
        "{Sees|Follows with} {his} {PCP|primary care doctor} {every {2-6} months|regularly}{|, $DR}.",
        "Has a {PCP|primary care physician}, $DR, whom {he} sees {regularly|every few months}.",
    ),
}

_NONADHERENT_SRC = {
    "kw": _S(
        "{He} {reports|admits to} being {non-adherent|noncompliant|non-compliant|nonadherent} with {his} "
        "{medications|home medications|diuretics|insulin|inhalers}{| for the past $WEEKS| recently}.",
        "{He} has not been taking {his} {medications|meds|{drug}} {for $WEEKS|for the past several days|since {his} "
        "last admission}.",
        "{He} ran out of {his} {medications|{drug}} $WEEKS ago and did not {refill it|get a refill}.",
        "Per {his} {co}, {he} has been {noncompliant|non-adherent} with {his} medications.",
        "History notable for medication non-adherence{|, which {he} attributes to cost}.",
        "{He} has missed {multiple|several|many} doses of {his} {drug} {recently|this month}.",
        "Admits to {dietary and medication|medication} non-compliance{| over the past $WEEKS}.",
    ),
    "para": _S(
        "{He} stopped {his} {pills|medications|{drug}} $WEEKS ago because of {cost|side effects|the copay}.",
        "{He} could not afford {his} {medications|inhalers|insulin} {this month|after {his} insurance lapsed}.",
        "{He} says {he} only takes {his} {drug} \"when {he} feels like it\".",
        "{He} has not picked up {his} {prescriptions|refills} since {his} last discharge.",
        "Pharmacy fill history shows {his} last {drug} refill was {2-4} months ago.",
        "{He} has been {skipping|leaving out} {his} {evening|morning} {doses|pills}{| of {drug}} {to save money|"
        "because {he} forgets}.",
        "{He} did not take {his} {drug} for the past week {since it makes {him} urinate|because {he} was feeling "
        "well}.",
    ),
    "non": _S(
        "{He} reports {good|full} {adherence|compliance} {with|to} {his} medications{| and uses a pillbox}.",
        "{Denies|No} missed doses{| of {his} {drug}}.",
        "No history of medication non-adherence.",
        "Adherent to {his} {medications|regimen} per {his} {co}{| and pharmacy records}.",
        "{He} has a history of non-adherence {in the past|several years ago|in [**{oldyear}**]} but has been taking all "
        "{his} medications {for the past year|since {his} {co} began filling {his} pillbox|with VNA assistance}.",
        "{His} {co} {admits to being|is} non-adherent with {co_his} own medications, but {he} takes {his} as "
        "prescribed.",
        "Took all medications as prescribed{| per {his} {co}}.",
        "{He} has never run out of {his} medications{|, per {his} {co}}.",
        "{He} did not stop taking {his} {drug}{| despite the side effects}.",
        "Compliant with medications{| per {his} {co}|, confirmed with {his} pharmacy}.",
    ),
    "instr": _S(
        "It is very important that you {take all of your medications as prescribed|do not stop taking your "
        "medications without talking to your doctor}.",
        "If you run out of {your medications|any of your medications}, please call {your doctor|the clinic} for "
        "refills.",
        "Please do not skip doses of your {drug}{|, even if you feel well}.",
        "If you cannot afford your medications, please {tell us|call our social worker|let your doctor know}.",
        "Stopping your {drug} could cause {your symptoms|this problem} to come back.",
        "Non-adherence to your {medications|diet} can lead to another hospital stay{|, so please take them daily}.",
    ),
}

LIVES_ALONE = _fact_tables(_LIVES_ALONE_SRC, (
    "{he} now lives with {his} {co}.", "{he} moved in with {his} {co} $AWHILE.", "this is no longer accurate; {he} "
    "lives with {his} {co}."))
HOMELESS = _fact_tables(_HOMELESS_SRC, (
    "{he} has since been housed{| with {his} {co}| in $HOUSE}.", "{he} now has stable housing.",
    "{he} has lived in $HOUSE for {2-9} years."))
NO_PCP = _fact_tables(_NO_PCP_SRC, (
    "{he} has since established care with $DR.", "{he} now follows with $DR{| at $HOSP}.",
    "{he} has had a PCP since [**{year}**]."))
NONADHERENT = _fact_tables(_NONADHERENT_SRC, (
    "{he} reports taking all {his} medications since then.", "{his} {co} now fills {his} pillbox and {he} has "
    "missed no doses.", "{he} has been adherent for the past year per pharmacy records."))


# Where a fact sentence may go besides its usual section: HPI, hospital course (social work, case
# management), discharge planning.
_COURSE_FACT = {
    "lives_alone": _T(
        "Social work was consulted given that {he} lives alone{| and has limited support}.",
        "Case management {arranged|set up} VNA services as there is no one at home to help {him}.",
        "Discharge planning was complicated by {him} living alone{| without nearby family}.",
        "$PT recommended home with services; {he} lives by {himself} and {a life alert|a medical alert device} was "
        "ordered.",
    ),
    "lives_alone_non": _T(
        "Social work met with {him} and {his} {co}; {he} does not live alone and has good support.",
        "$PT felt {he} would not be safe living alone, but {his} {co} will be with {him} at home.",
        "Case management confirmed that {he} is not alone at home: {his} {co} is available.",
        "Home safety was reviewed; {his} $REL lives alone nearby and will also check in.",
    ),
    "homeless": _T(
        "Social work was consulted {for housing resources|given {his} homelessness|to assist with shelter placement}.",
        "Case management helped arrange a {respite|shelter} bed for discharge.",
        "{He} has no stable housing, so social work arranged a bed at a respite program.",
    ),
    "homeless_non": _T(
        "Social work screened for housing insecurity{|, which was negative}; {he} is not homeless.",
        "Social work confirmed stable housing{| - {he} was previously homeless but has been housed for years}.",
    ),
    "no_pcp": _T(
        "Social work helped {him} establish care with a primary care physician at $HOSP, as {he} has none.",
        "As {he} does not have a PCP, a new patient appointment was made.",
        "{He} has not seen a doctor in years; a new primary care appointment was scheduled.",
    ),
    "no_pcp_non": _T(
        "{His} PCP, $DR, was {updated|emailed|called} about the admission.",
        "Discussed with {his} primary care physician, who will see {him} next week.",
    ),
    "nonadherent": _T(
        "The admission was felt to be precipitated by medication non-adherence.",
        "{He} admitted to stopping {his} {drug} because of cost; social work helped with a prescription assistance "
        "program.",
        "Likely trigger: running out of {his} {drug} $WEEKS before admission.",
        "Medication adherence was reviewed at length as {he} had not been taking {his} medications.",
    ),
    "nonadherent_non": _T(
        "Non-adherence was considered but {he} {denied|denies} missed doses and pharmacy fills are up to date.",
        "No evidence of medication non-compliance{|; likely dietary indiscretion}.",
        "Not thought to be related to non-adherence, as {his} {co} fills {his} pillbox.",
    ),
}

# Discharge instructions and planning that mention a fact hypothetically, for anyone.
_INSTR_HYPO = _T(
    "If you live alone, consider a medical alert device in case you fall.",
    "Please do not stay home alone for the first few days if you can avoid it.",
    "If you do not have a primary care doctor, please call $PHONE to {establish care|find one}.",
    "If you are worried about your housing, our social workers can help.",
    "If you ever run out of your medications, call your doctor before stopping them.",
)

# ==============================================================================================
# Chronic conditions in the note: severity (counting for CHF/COPD/DM2 at severity 3) and duration
# (counting when > 15 years)
# ==============================================================================================

_SEVERE = {   # counting paraphrases of severity 3, without the catalog's severity word
    "chf": _T("<P:{CHF|HFrEF|systolic CHF|heart failure}> with an EF of {10-25}%",
              "<P:{end-stage heart failure|end-stage CHF|advanced systolic heart failure}>",
              "<P:{NYHA class IV heart failure|NYHA IV CHF|class IV CHF}>",
              "<P:ischemic cardiomyopathy> (EF {10-20}%)",
              "<P:{CHF|systolic heart failure}> (EF {10-25}%{|, on the transplant list|, AICD in place})"),
    "copd": _T("<P:COPD> on {2-4}L home <T:oxygen>",
               "<P:{end-stage COPD|GOLD stage IV COPD|very severe COPD}>",
               "<P:COPD> (FEV1 {18-30}% predicted{|, on home O2})",
               "<P:{oxygen-dependent COPD|O2-dependent COPD}>"),
    "dm2": _T("<P:{DM2|T2DM|type 2 diabetes|diabetes}> with an A1c of {10-14}.{1-9}%",
              "<P:{brittle diabetes|brittle DM2}>",
              "<P:{insulin-dependent DM2|insulin-dependent diabetes}>, very poorly controlled (last A1c {11-14}%)"),
}
_NOT_SEVERE = {   # the same keywords for CHF/COPD/DM2 at severity 1-2: historical or ruled out
    "chf": _T("<P:CHF> (EF {35-55}%), not felt to be severe",
              "<P:{CHF|heart failure}>, previously described as severe, now with recovered EF of {45-55}%",
              "<P:{diastolic CHF|HFpEF}> (EF {55-65}%), no evidence of severe systolic dysfunction"),
    "copd": _T("<P:COPD>, {mild|moderate} (FEV1 {55-80}% predicted), not on home O2",
               "<P:COPD>, not oxygen-dependent{|; severe exacerbation in [**{oldyear}**] but none since}"),
    "dm2": _T("<P:{DM2|T2DM|diabetes}>, previously uncontrolled, now well controlled (A1c {6-7}.{1-9}%)",
              "<P:{DM2|type 2 diabetes}> (A1c {6-8}.{1-9}%, not uncontrolled)"),
}
_LONG = _T("for {n} years", "x {n} years", "for {n}+ years", "({n} years)", "for over {n} years", "diagnosed {n} years ago",
           "for {n} yrs", "({n}-year history)")
_LONG_PARA = _T("long-standing", "since {his} {age_dx}s", "diagnosed in [**{dx_year}**]", "diagnosed at age {age_at}",
                "for over {decades} decades", "for many years", "since [**{dx_year}**]", "dx [**{dx_year}**]")
_SHORT = _T("for {n} years", "x {n} years", "diagnosed {n} years ago", "since [**{dx_year}**]", "dx [**{dx_year}**]",
            "diagnosed in [**{dx_year}**]", "({n} years)", "for {n} yrs")

# Filler history (not in the latent model): noise problems and past surgeries, some with the
# severity and duration keywords.
_FILLER_PMH = _T(
    "<P:{osteoarthritis|OA}>{| of the knees| of the hips}", "<P:severe osteoarthritis> of the {knees|hips|spine}",
    "<P:{BPH|benign prostatic hypertrophy}>", "<P:cataracts>", "<P:gout>", "<P:{chronic low back pain|LBP}>",
    "<P:long-standing back pain>", "<P:glaucoma>", "<P:hearing loss>", "<P:diverticulosis>", "<P:hemorrhoids>",
    "<P:vitamin D deficiency>", "<P:migraines>", "<P:anxiety>", "<P:insomnia>", "<P:BPPV>",
    "<P:{nephrolithiasis|kidney stones}>", "<P:h/o shingles>", "<P:severe spinal stenosis>", "<P:carpal tunnel syndrome>",
    "<P:{macular degeneration|AMD}>", "<P:restless legs>", "<P:{iron deficiency|B12 deficiency}>",
    "<P:{osteoporosis|osteopenia}>", "<P:{psoriasis|eczema}>", "<P:h/o {colon polyps|adenomatous polyps}>",
    "<P:{severe aortic stenosis|aortic stenosis|severe mitral regurgitation|mitral regurgitation}> ({mild|moderate} "
    "on last echo)",
    "<P:{sciatica|lumbar radiculopathy}>", "<P:{hypothyroidism|thyroid nodule}>{| for {3-30} years}",
)
_FILLER_PSH = _T(
    "s/p <T:appendectomy>{| [**{oldyear}**]}", "s/p <T:{cholecystectomy|lap chole}>{| in [**{oldyear}**]}",
    "s/p <T:{R|L} TKR>", "s/p <T:{R|L} THR>", "s/p <T:hernia repair>", "s/p <T:cataract surgery>",
    "s/p <T:tonsillectomy> as a child", "s/p <T:{TURP|cystoscopy}>", "s/p <T:{TAH|hysterectomy}>",
    "s/p <T:{CCY|cholecystectomy}> {10-40} years ago", "s/p <T:{lumbar laminectomy|L4-5 fusion}>",
    "s/p <T:{carpal tunnel release|rotator cuff repair}>",
)

# ==============================================================================================
# History of present illness
# ==============================================================================================

_HPI_OPEN = _T(
    "{Mr} [**Known lastname {100-9999}**] is a {age} year old {man} with {@hx} who {presents|presented|comes in|"
    "was brought in by EMS|was referred from clinic|was transferred from $HOSP} with {@sx}.",
    "{age}{M} with {@hx} {p/w|presents with|who presented with} {@sx}.",
    "This is a {age} yo {man} with {@hx} who {presents|presented} with {@sx}.",
    "{age} y/o {M} w/ {@hx} who {p/w|presents with|c/o} {@sx}.",
    "{Mr} [**Known lastname {100-9999}**] is a {age} y/o {man} {with|w/} {@hx}, admitted with {@sx}.",
    "Pt is a {age} yo {M} {with|w/} {@hx} who was {sent in|brought in} {by {his} {co}|by EMS|from home} with {@sx}.",
)
_HX_NONE = _T("no significant past medical history", "no known medical problems", "no PMH", "no prior medical history",
              "no significant PMH")
_HX_LEAD = _T("", "", "a history of ", "h/o ", "a PMH of ", "PMHx of ", "history notable for ")
_SX_TAIL = _T(" x {days} days", " for {days} days", " over the past {days} days", " of {days} days' duration",
              " since {weekday}", " for the past {days} days", "")
_HPI_MORE = _T(
    "{He} {endorses|reports|notes} {poor appetite|decreased energy|generalized weakness|poor sleep} {for about a "
    "week|over the past several days|since last weekend}.",
    "{His} symptoms {worsen|are worse} {with exertion|lying flat|at night|after meals} and {improve|are better} with "
    "{rest|sitting up|tylenol}.",
    "{Of note,|Notably,} {he} {had a|completed a} {course of antibiotics|dental procedure|colonoscopy} {last month|"
    "{2-4} weeks ago}.",
    "{He} reports {gradually worsening|progressive|acute onset of|intermittent} symptoms over this time{| and "
    "decreased PO intake}.",
    "Symptoms {began|started} {days} days ago and {have progressed|worsened} despite {rest|OTC medications}.",
    "{His} {co} noted that {he} {has been more tired|was not eating|seemed more confused than usual}.",
    "{He} {called|saw} {his} {doctor|PCP|clinic} {yesterday|two days ago} and was told to come to the ED.",
    "{He} was in {his} usual state of health until {days} days prior to admission.",
    "{He} reports {mild|some} <P:{fatigue|malaise|anorexia}> {as well|for the past week}.",
    "No recent travel{| or sick contacts}.",
    "{He} tried {Tylenol|ibuprofen|rest} at home without relief.",
)
_HPI_NEG = _T("{He} {denies|denies any} {@neg}.", "Denies {@neg}.", "ROS negative for {@neg}.",
              "{He} has not had {@neg}.", "No {@neg}.")
_RECENT_ADM = _T("Of note, {he} was recently admitted {to $HOSP|here|to an outside hospital} {for a similar "
                 "presentation|on [**{date}**]}.", "{He} was recently seen in clinic {for the same complaint|and discharged "
                 "home with {his} {co}}.",
                 "{He} was discharged from $HOSP {2-4} weeks ago.", "Recently hospitalized {2-5} weeks ago.")
_ED_VITALS = _T(
    "In the ED, initial vitals were {vitals}.", "ED vitals: {vitals}.", "In the ED {his} vitals were {vitals}.",
    "Initial VS in the ED: {vitals}.", "On arrival to the ED: {vitals}.")
_ED_END = _T(
    "{He} was admitted to {the floor|medicine|the MICU|the ICU} for further management.",
    "On arrival to the {floor|unit|ICU}, {he} {reports feeling better|is comfortable|is resting|endorses mild discomfort}.",
    "{He} was admitted for further {management|workup and management}.",
    "Vitals prior to transfer: {vitals2}.",
    "{He} was hemodynamically stable at the time of transfer.",
)
_HPI_DETAIL = {
    "pneumonia": _T("{He} has had <P:productive cough> with {yellow|green|rusty} sputum and <P:fevers> to {101-103}.",
                    "Reports <P:{pleuritic chest pain|chills}> and <P:{DOE|dyspnea on exertion}>."),
    "sepsis": _T("{He} was found to be <P:{febrile|hypotensive}> with <P:rigors> at home.",
                 "{His} {co} found {him} <P:confused> and <P:febrile>."),
    "uti": _T("{He} has had <P:{dysuria|urinary frequency}> and {his} {co} noted new <P:confusion>.",
              "Reports <P:{suprapubic pain|foul-smelling urine}>."),
    "cellulitis": _T("{He} noticed <P:redness> of the {side} {leg|shin} that has been spreading{| despite "
                     "<T:keflex> from urgent care}."),
    "cdiff": _T("{He} reports {6-15} episodes of <P:watery diarrhea> daily{| after a recent course of antibiotics}."),
    "chf_exac": _T("{He} reports {increasing|worsening} <P:{DOE|dyspnea on exertion}>, <P:orthopnea> ({2-4} pillows) "
                   "and <P:{LE edema|leg swelling}>.",
                   "Weight is up {5-15} lbs{| per {his} home scale}.", "Reports <P:PND> for the past week."),
    "copd_exac": _T("{He} reports {increased|worsening} <P:{SOB|shortness of breath}> and <P:{wheezing|cough}> "
                    "{with|and} increased sputum production.",
                    "{He} has been using {his} <T:albuterol> inhaler {every 2 hours|more often} without relief."),
    "ami": _T("{He} describes <P:{substernal chest pressure|chest pain|chest tightness}> radiating to the {left arm|jaw} "
              "with <P:diaphoresis>{| and <P:nausea>}.",
              "Chest pain began at rest and lasted {30-90} minutes."),
    "stroke": _T("{His} {co} noticed <P:{slurred speech|word-finding difficulty}> and <P:{side} sided weakness> "
                 "{this morning|last night}; last known well {2-10} hours prior."),
    "gi_bleed": _T("{He} reports {2-5} episodes of <P:{coffee-ground emesis|hematemesis}> and <P:{black tarry stools|"
                   "melena}>{| with <P:lightheadedness>}."),
    "hep_enceph": _T("{His} {co} reports increasing <P:confusion> and <P:somnolence> over {2-4} days."),
    "dka": _T("{He} reports <P:{polyuria|polydipsia}>, <P:nausea> and <P:vomiting>{| and <P:abdominal pain>}."),
    "pe": _T("{He} reports <P:{pleuritic chest pain|sudden onset shortness of breath}>{| after a long car ride}."),
    "hip_fx": _T("{He} {had a mechanical fall|tripped and fell} at home and was unable to bear weight, with "
                 "<P:{side} hip pain>."),
}

# ==============================================================================================
# Social and family history
# ==============================================================================================

_OCCUPATION = ("retired machinist", "retired teacher", "retired nurse", "retired police officer", "retired engineer",
               "former truck driver", "retired postal worker", "construction worker", "on disability",
               "retired accountant", "cashier", "retired secretary", "former longshoreman",
               "retired electrician", "works in IT", "retired bus driver", "former cook", "retired salesman",
               "home health aide", "retired mechanic", "unemployed", "retired professor", "works part-time")
_SOC_OCC = _T("{Occupation}{| for {10-40} years}.", "Occupation: {occupation}.", "{He} is {a_occupation}.",
              "Worked as a {machinist|teacher|carpenter|nurse|cook|laborer} for {15-40} years{|, now retired}.",
              "{He} is {a_occupation}; married {20-50} years ago.")
_SOC_TOB_CURRENT = _T("Tobacco: {1|1.5|2} ppd x {n} years.", "Current smoker, {1|2} ppd, {n} pack-years.",
                      "Smokes {1|2} pack per day{| for {n} years}.", "Tobacco: active, {20-80} pack-year history.",
                      "+tobacco, {1|1/2|1.5} ppd.")
_SOC_TOB_FORMER = _T("Former smoker, quit {5-40} years ago.", "Tobacco: quit {5-40} years ago{| ({10-50} pk-yrs)}.",
                     "Remote tobacco, quit [**{oldyear}**].", "Ex-smoker, quit {5-40} years ago.")
_SOC_TOB_NEVER = _T("Denies tobacco.", "Never smoker.", "Tobacco: never.", "No tobacco.", "Denies smoking.")
_SOC_ETOH = _T("Drinks {a pint of vodka|6-8 beers|a bottle of wine|a fifth of whiskey} daily{| for {n} years}.",
               "EtOH: {heavy|daily}, last drink {1-3} days prior to admission.",
               "Reports drinking {4-12} drinks per day{| since {his} 20s}; {h/o withdrawal|no h/o withdrawal seizures}.")
_SOC_ETOH_NONE = _T("Occasional alcohol.", "Denies alcohol or illicit drug use.", "No EtOH.", "EtOH: rare, socially.",
                    "Drinks {1-2} glasses of wine per week.", "Denies EtOH.", "Quit drinking {10-30} years ago.")
_SOC_DRUGS = _T("Denies IVDU.", "No illicit drugs.", "Remote marijuana use.", "Denies illicits.", "No drug use.")
_SOC_FUNC = _T("Ambulates with a {cane|walker|rolling walker}.", "Independent in ADLs{| and IADLs}.",
               "Walks without assistive device.", "{He} is able to {bathe|dress|walk} by {himself}.",
               "Drives{|; does {his} own shopping}.", "Uses a {walker|cane} outside the home.")

_FAM = _T("Mother had <P:{fam}>.", "Father died of <P:{fam}> at age {50-90}.", "{Brother|Sister} with <P:{fam}>.",
          "Mother with <P:{fam}>{|, died at {60-95}}.", "Father had <P:{fam}>.", "Family history of <P:{fam}>.",
          "{Maternal|Paternal} {aunt|uncle|grandmother} with <P:{fam}>.", "No family history of <P:{fam}>.",
          "Mother had <P:{fam}> and <P:{fam2}>.")
_FAM_SEVERE = _T("Mother had <P:severe {COPD|CHF|emphysema}>.", "Father with <P:severe {CHF|COPD}>{|, died at {60-85}}.",
                 "{Brother|Sister} with <P:uncontrolled diabetes>.", "Mother had <P:end-stage {CHF|renal disease}>.")
_FAM_NONE = _T("Non-contributory.", "Noncontributory.", "NC", "Unable to obtain.", "No family history of early MI or "
               "sudden cardiac death.", "Unknown; {he} was adopted.", "No significant family history.")

# ==============================================================================================
# Physical exam (findings from the latent state)
# ==============================================================================================

_EX_LABEL = {
    "vitals": ("Vitals", "VS", "Vital signs", "VS"), "gen": ("General", "Gen", "GEN", "General"),
    "heent": ("HEENT", "HEENT"), "neck": ("Neck", "NECK", "Neck"), "lungs": ("Lungs", "Pulm", "Chest", "Resp", "LUNGS"),
    "cv": ("CV", "Cardiac", "Heart", "CVS", "CV"), "abd": ("Abdomen", "Abd", "ABD", "Abdomen"),
    "ext": ("Ext", "Extremities", "EXT", "Extr"), "skin": ("Skin", "SKIN"), "neuro": ("Neuro", "Neurologic", "NEURO"),
    "psych": ("Psych", "Psych"),
}
_EX = {
    "gen": _T("{NAD|no acute distress|in no apparent distress|comfortable, NAD|well-appearing, NAD|alert, interactive, "
              "NAD|pleasant {elderly|} {man} in NAD}"),
    "gen_resp": _T("{in {mild|moderate} respiratory distress|tachypneic, speaking in short sentences|using accessory "
                   "muscles|dyspneic with conversation}"),
    "gen_sick": _T("{ill-appearing|lethargic but arousable|somnolent|toxic-appearing}"),
    "gen_pain": _T("{uncomfortable, in pain|in moderate distress due to pain|grimacing}"),
    "heent": _T("{NCAT, |}{PERRL|PERRLA}, EOMI, {sclera anicteric|anicteric sclera}, {MMM|moist mucous membranes}"
                "{, OP clear|, oropharynx clear|}"),
    "heent_dry": _T("{NCAT, |}PERRL, {dry mucous membranes|dry MM|MM dry}{, OP clear|}"),
    "heent_icteric": _T("{PERRL, |}<P:{scleral icterus|icteric sclera}>, MMM"),
    "neck": _T("{supple|supple, no LAD}, {JVP not elevated|no JVD|JVP flat|JVP at {5-7} cm}"),
    "neck_jvd": _T("{supple, |}<P:{JVP elevated to {9-15} cm|JVD to the angle of the jaw|+JVD}>"),
    "lungs": _T("{CTAB|CTA bilaterally|clear to auscultation bilaterally}{, no <P:wheezes>, <P:rales>, or <P:rhonchi>|"
                ", no w/r/r| without wheezes or crackles|}"),
    "lungs_chf": _T("<P:crackles> {at the bases bilaterally|halfway up bilaterally|at the bilateral bases}{, decreased "
                    "BS at bases|}"),
    "lungs_copd": _T("{diffuse|scattered} expiratory <P:wheezes>{, prolonged expiratory phase|, poor air movement|}"),
    "lungs_pna": _T("<P:{rhonchi|crackles}> at the {side} {base|lower lung field}{, <P:egophony>|, dullness to "
                    "percussion|}"),
    "lungs_resp": _T("{coarse breath sounds bilaterally|diffuse rhonchi|decreased breath sounds throughout}"),
    "cv": _T("{RRR|regular rate and rhythm}, {normal S1/S2|nl S1 S2|S1, S2 normal}, {no m/r/g|no murmurs, rubs or "
             "gallops|no MRG}"),
    "cv_afib": _T("<P:irregularly irregular>{, no murmurs|, nl S1 S2|}"),
    "cv_tachy": _T("<P:tachycardic>, regular, {no murmurs|no m/r/g}"),
    "cv_chf": _T("{RRR|regular}, {<P:+S3>|<P:S3 gallop> present}{, no murmurs|}"),
    "cv_murmur": _T("{RRR|regular rate and rhythm}, <P:{II/VI|III/VI} systolic murmur> at the {RUSB|LUSB|apex}"),
    "abd": _T("{soft, NT/ND|soft, non-tender, non-distended|soft, nontender, nondistended}, {+BS|normoactive BS|bowel "
              "sounds present}{, no HSM|, no rebound or guarding|}"),
    "abd_obese": _T("obese, soft, {NT|non-tender}, {+BS|BS present}"),
    "abd_cdiff": _T("{diffusely|mildly} <P:tender> {in the lower quadrants|diffusely}, hyperactive bowel sounds"),
    "abd_gi": _T("soft, mild <P:epigastric tenderness>, no rebound"),
    "abd_ascites": _T("<P:distended> with a fluid wave, non-tender{|, + caput}"),
    "ext": _T("{WWP|warm and well perfused}, {no c/c/e|no clubbing, cyanosis or edema|no LE edema}{, 2+ DP pulses "
              "bilaterally|, 2+ pulses|}"),
    "ext_edema": _T("{2+|3+|1+} pitting <P:edema> {to the knees|to mid-shin|bilaterally to the thighs}"),
    "ext_cellulitis": _T("{SLE} with <P:erythema>, warmth and tenderness {extending to mid-shin|from the ankle to the "
                         "knee}{, borders marked|}"),
    "ext_pvd": _T("{WWP|cool feet}, <P:diminished {DP|pedal} pulses> bilaterally"),
    "ext_hip": _T("{S} leg <P:shortened and externally rotated>, painful to ROM"),
    "skin": _T("{no rashes|warm, dry, no rash|intact|no lesions}"),
    "skin_jaundice": _T("<P:jaundiced>{, <P:spider angiomata>|}"),
    "neuro": _T("{A&Ox3|AOx3|alert and oriented x 3}, {CN II-XII intact|CNs grossly intact}, {strength 5/5 throughout|"
                "moving all extremities|MAE}{, sensation intact to light touch|, SILT|}"),
    "neuro_stroke": _T("{side} <P:facial droop>, <P:{side}-sided weakness> ({3/5|4-/5}) in the {arm and leg|"
                       "UE and LE}{, mild <P:dysarthria>|}"),
    "neuro_he": _T("oriented {to self only|x1}, + <P:asterixis>"),
    "neuro_delirium": _T("<P:inattentive>, oriented x{1|2}, {fluctuating|waxing and waning} attention"),
    "neuro_dementia": _T("oriented to self{ only|}, {pleasantly confused|at baseline per family}"),
    "neuro_dmn": _T("A&Ox3, <P:decreased sensation> {to light touch|to monofilament} in a stocking distribution"),
    "psych": _T("{appropriate mood and affect|normal mood and affect|calm, cooperative}"),
    "psych_dep": _T("<P:flat affect>{, cooperative|}"),
}

# ==============================================================================================
# Hospital course by problem
# ==============================================================================================

_COURSE_OPEN = _T(
    "{age} y/o {M} with {@hx_short} admitted with {@primary}.",
    "{Mr} [**Known lastname {100-9999}**] is a {age} year old {man} with {@hx_short} who was admitted to the "
    "{medicine service|MICU|floor|ICU} for management of {@primary}.",
    "In summary, this is a {age} yo {man} with {@hx_short} who presented with {@primary}.",
    "{age}{M} {with|w/} {@hx_short}, admitted for {@primary}. {His} hospital course is summarized by problem below.",
)
_COURSE = {
    "pneumonia": _T(
        "{He} presented with {fever, cough and hypoxia|productive cough and fevers|dyspnea and cough} and <X:{CXR|chest "
        "x-ray}> showed a {SLL|{side} lower lobe|multifocal} <P:{consolidation|infiltrate|opacity}>. "
        "{He was started on|Treated with} {@tx} {with {rapid|gradual} improvement|and defervesced within {24|48|72} "
        "hours}. <X:Blood cultures> {were negative|remained NGTD}. {He} will complete a {5|7|10}-day course of "
        "antibiotics.",
        "Treated for <P:{CAP|community acquired pneumonia}> with {@tx}. {O2 requirement resolved|Weaned to room air} by "
        "hospital day {2-4}. {<X:Legionella urinary antigen> was negative.|<X:Sputum culture> grew normal flora.|}"),
    "sepsis": _T(
        "{He} met SIRS criteria on admission with {fever|tachycardia|leukocytosis} {and hypotension|}. {He} received "
        "{2-5}L of <T:IV fluids>, <X:blood cultures> were drawn and {he} was started on {@tx}. {Lactate {peaked at "
        "{lactate} and normalized|cleared} with fluids.|} Antibiotics were narrowed based on culture data.",
        "Source felt to be {source}. Started empirically on {@tx} and narrowed once sensitivities returned. "
        "{Hemodynamics improved with fluid resuscitation.|}"),
    "septicemia": _T(
        "<X:Blood cultures> grew <P:{MSSA|E. coli|Klebsiella|GNRs|coag-negative staph}>{ in {1|2} of {2|4} bottles|}. "
        "{ID was consulted and recommended|Plan for} {a 14-day course|4 weeks of IV antibiotics}{| via PICC}. "
        "{Surveillance cultures were negative.|}"),
    "uti": _T(
        "<X:{UA|Urinalysis}> {was positive|showed pyuria} and <X:urine culture> grew <P:{E. coli|Klebsiella|Proteus|"
        "Enterococcus}>. Treated with {@tx}{ with resolution of symptoms|, and {his} mental status improved| for a "
        "{3|5|7}-day course}."),
    "cellulitis": _T(
        "{SLE} {erythema|cellulitis} {improved|receded} on {@tx}{; borders were marked on admission|}. "
        "{<X:LENIs> were negative for <P:DVT>.|No abscess was seen on <X:ultrasound>.|} Discharged on "
        "{<T:cephalexin>|<T:doxycycline>|<T:Bactrim>} to complete a {7|10}-day course."),
    "cdiff": _T(
        "<X:{C. diff toxin|C. diff PCR}> positive{ on admission|}. Started on {@tx} with improvement in {his} diarrhea. "
        "{Contact precautions were maintained.|} Will complete a {10|14}-day course."),
    "chf_exac": _T(
        "{He} presented {volume overloaded|with dyspnea, orthopnea and LE edema}{; BNP was {bnp}|}. Diuresed with "
        "{@tx} {with good effect|with net negative {2-5} L|to a discharge weight of {55-110} kg}. {@cause}",
        "Treated for <P:{acute on chronic CHF|ADHF}> with {@tx}. {Home carvedilol was held initially.|} {@cause} "
        "Discharge weight {55-110} kg."),
    "copd_exac": _T(
        "{He} presented with {increased|worsening} {dyspnea|SOB} and {wheezing|cough}. Treated with {@tx}{, standing "
        "nebulizers|} with improvement. {He} will complete a {5|7}-day <T:prednisone> {course|taper}. {Ambulatory O2 "
        "sat was {88-95}% on {RA|2L}.|} {@cause}"),
    "ami": _T(
        "<X:Troponin> peaked at {trop}. {He} was started on {@tx}. {@cath}",
        "<X:EKG> showed {ST depressions in the lateral leads|TWI in V4-V6|no ST elevations} and <X:troponins> "
        "{trended up|peaked at {trop}}. Treated with {@tx}. {@cath}"),
    "stroke": _T(
        "{Code stroke was called in the ED|{He} presented outside the tPA window}. <X:{MRI brain|MRI}> showed an acute "
        "infarct in the {side_brain} {MCA|PCA|lacunar} territory. Neurology {was consulted|followed}. Started on "
        "{@tx}. {<X:Carotid dopplers> showed no significant stenosis.|<X:TTE> with bubble study was negative.|"
        "<X:Telemetry> showed no <P:atrial fibrillation>.} {Speech and swallow evaluation|S&S eval} recommended "
        "{a regular diet|thin liquids}{ with supervision|}."),
    "gi_bleed": _T(
        "{He} presented with <P:{hematemesis|coffee-ground emesis|melena}> and a {Hct|hematocrit} of {hct}. Started "
        "on {@tx}. {@egd}"),
    "hep_enceph": _T(
        "Precipitant {unclear|felt to be {infection|constipation|a GI bleed}}. Treated with {@tx} titrated to {2-4} "
        "BMs per day with improvement in mental status."),
    "dka": _T(
        "Presented with glucose {glucose} and an anion gap of {gap}{ with positive ketones|}. Started on <T:insulin "
        "drip> and <T:IV fluids> per protocol with closure of the gap in {12|18|24|36} hours, then transitioned to "
        "{SC insulin|<T:glargine> and a sliding scale}. {@cause}"),
    "pe": _T(
        "<X:{CTA chest|CTA}> showed {segmental|subsegmental|bilateral} <P:pulmonary emboli>{ without RV strain|}. "
        "Started on {@tx}. <X:LENIs> {were negative|showed a {right|left} popliteal <P:DVT>}."),
    "hip_fx": _T(
        "After a {mechanical fall|fall at home}, {orthopedics|ortho} was consulted{ and {he} went to the OR|}. Pain was "
        "controlled with {@tx}. $PT recommended {rehab|home with services}."),
    "aki": _T(
        "Creatinine {peaked at|rose to} {cr} from a baseline of {cr0}{, felt to be prerenal|, likely ATN in the setting "
        "of hypotension|}. {Improved with IV fluids|Resolved after holding {his} diuretics and ACE inhibitor|Nephrology "
        "was consulted}. Discharge creatinine {crd}."),
    "resp_failure": _T(
        "{Required {@vent} for {2-5} days|Required <T:BiPAP> overnight|Required up to {4|6} L <T:oxygen> by nasal "
        "cannula}, {weaned to room air|weaned to {2|3}L} by discharge."),
    "septic_shock": _T("Required <T:{pressors|vasopressors|norepinephrine}> for {1-4} days in the {MICU|ICU}, weaned "
                       "off as {his} sepsis was treated."),
    "cardiogenic_shock": _T("Required <T:{inotropes|dobutamine|norepinephrine}> in the CCU; {a <T:PA catheter> guided "
                            "therapy|weaned over {2-4} days}."),
    "hyperkalemia": _T("K {6-7}.{0-9} on admission{ with peaked T waves|}; treated with <T:{calcium gluconate|insulin/"
                       "dextrose|kayexalate}> and resolved."),
    "hyponatremia": _T("Na {120-130} on admission; {fluid restricted|improved with IV fluids} to {133-138} at discharge."),
    "acidosis": _T("{Anion gap|Non-gap} acidosis{ with bicarbonate of {12-18}|}, resolved with treatment of the "
                   "underlying cause."),
    "delirium": _T("{Likely multifactorial|Felt secondary to infection|In the setting of acute illness}. {Managed with "
                   "reorientation and sleep hygiene|Required low-dose <T:haloperidol> once} and {improved|resolved} by "
                   "discharge{; {he} is at {his} baseline per {his} {co}|}."),
    "blood_loss_anemia": _T("Hct nadir {20-27}; transfused {1-3} units of <T:pRBCs> with appropriate bump."),
}
_COURSE_GENERIC = _T("{Treated with|Managed with} {@tx}{ with improvement|}.", "Improved with {@tx}.")
_CAUSE = {
    "count": _T("Precipitant felt to be medication non-adherence.", "Likely precipitated by {dietary and medication "
                "non-adherence|running out of {his} {drug}}.", "{He} had stopped {his} {drug} {2-3} weeks before "
                "admission{ because of cost|}, the likely trigger."),
    "non": _T("No clear precipitant; {he} denied missed doses.", "Precipitant unclear; adherence was confirmed with "
              "{his} {co}.", "Not felt to be due to non-adherence; likely {viral URI|dietary indiscretion}."),
    "plain": _T("Precipitant felt to be {dietary indiscretion|a viral infection|uncontrolled hypertension}.", "",
                "No clear precipitant."),
}
_CHRONIC_COURSE = {
    "htn": _T("{continued home {@home}|BP well controlled on home regimen|antihypertensives held initially for soft "
              "BPs and restarted}."),
    "dm2": _T("{home metformin held; covered with <T:insulin sliding scale>|continued <T:glargine> at a reduced dose "
              "with <T:ISS>|<X:HbA1c> {a1c}%; {@home} continued}.{@sev}"),
    "hld": _T("continued <T:{atorvastatin|statin}>."),
    "cad": _T("{continued <T:aspirin>, <T:statin> and <T:beta blocker>|no active ischemia; continued {@home}}."),
    "chf": _T("{appeared euvolemic|continued home {@home}|held diuretics initially then restarted}.{@sev}"),
    "afib": _T("{rate controlled on {@home}|CHADS2 score {2-5}, continued <T:warfarin> with INR goal 2-3|"
               "anticoagulation continued}."),
    "ckd": _T("creatinine at baseline; medications renally dosed."),
    "copd": _T("{continued home inhalers|no evidence of exacerbation; continued {@home}}.{@sev}"),
    "asthma": _T("continued home inhalers."), "osa": _T("continued home <T:CPAP> at night."),
    "tobacco": _T("counseled on cessation; <T:nicotine patch> provided."),
    "alcohol": _T("monitored on <T:CIWA> scale {without signs of withdrawal|and required <T:diazepam> for withdrawal}; "
                  "started <T:thiamine> and <T:folate>."),
    "depression": _T("continued <T:sertraline>; {mood stable|no SI}."), "dementia": _T("delirium precautions; "
                                                                                       "{at baseline|near baseline}."),
    "hypothyroid": _T("continued <T:levothyroxine>."), "gerd": _T("continued <T:PPI>."),
    "pvd": _T("continued <T:aspirin>{ and <T:plavix>|}."), "obesity": _T("nutrition consulted."),
    "dm_neuro": _T("continued <T:gabapentin>."),
}
_CHRONIC_GENERIC = _T("stable{; continued home medications|}.")
_CONSULT = _T(
    "{He} was {evaluated|seen} by {nutrition|the dietitian} and started on {Ensure|Boost|oral supplements} "
    "{TID|with meals}.",
    "Wound care {nursing|RN} {evaluated|assessed} a {stage 1|stage 2|small} sacral {ulcer|pressure injury} and "
    "recommended {barrier cream|frequent repositioning|a waffle cushion}.",
    "{Pharmacy|The pharmacist} reviewed {his} medication list and {simplified the regimen|recommended a blister pack|"
    "flagged a drug interaction}.",
    "Speech and swallow {evaluated|assessed} {him} and {cleared {him} for a regular diet|recommended nectar-thick "
    "liquids|recommended aspiration precautions}.",
    "{Palliative care|Geriatrics} {met with|was consulted to see} {him} {to discuss goals of care|for symptom "
    "management|regarding advance directives}.",
    "$PT {evaluated|saw} {him} and {recommended|felt {he} would benefit from} {home with services|home PT|short-term "
    "rehab|discharge home without services}.",
    "{Nutrition|Dietitian} was consulted {for poor PO intake|and recommended supplements}.",
    "Social work {was consulted|met with {him}} {for coping and support|to assist with discharge planning|regarding "
    "{his} insurance}.",
    "Case management {arranged|set up} {VNA services|home O2|a shower chair|outpatient PT}.",
    "{Cardiology|Nephrology|GI|ID|Pulmonary|Endocrine} was consulted and {recommended {medical management|outpatient "
    "follow-up|no further inpatient workup}|agreed with the plan}.",
    "Nursing {noted|reported} {he} was {ambulating in the halls|tolerating a regular diet|sleeping well}.",
    "{He} was seen by {occupational therapy|OT}, who recommended {a shower chair|a tub bench|supervision for ADLs}.",
    "{He} worked with $PT daily and was ambulating {independently|with a walker|with assistance} by discharge.",
)
_FEN = _T("# FEN: {cardiac|regular|diabetic|2g Na|heart healthy} diet, lytes repleted prn.",
          "# FEN/GI: {regular|cardiac|consistent carbohydrate} diet.",
          "# PPx: <T:{heparin SC|SC heparin|pneumoboots}>, <T:{bowel regimen|senna/colace}>.",
          "# PPx: <T:{SQ heparin|enoxaparin}>, {PPI|no PPI indicated}.")
_CODE = _T("# Code: {code}.", "# Code status: {code}.", "# CODE: {code}.", "Code status: {code}.")
_CONTACT = _T("# Contact: {his} {contact} $NAME ({HCP|health care proxy}) $PHONE.",
              "# Communication: with {his} {contact} ($PHONE).", "# Contact: {contact}, $PHONE.")
_DEATH = _T(
    "Despite maximal therapy {he} continued to decline. After a family meeting with {his} {contact}, care was "
    "transitioned to comfort measures{ only|} and {he} expired on [**{ddate}**].",
    "{His} condition worsened despite {pressors|escalating support}. {His} {contact} decided on comfort care, and "
    "{he} passed away peacefully{ with family at the bedside|} on [**{ddate}**].",
)

# ==============================================================================================
# Results, instructions, follow-up
# ==============================================================================================

_CXR_NORMAL = _T("No acute cardiopulmonary process.", "No evidence of pneumonia.", "Clear lungs; no effusion or "
                 "pneumothorax.", "No focal consolidation to suggest pneumonia.", "Low lung volumes, no acute process.")
_EKG_NORMAL = _T("sinus rhythm at {hr}, normal axis, no acute ST changes", "NSR {hr}, normal intervals, no ST-T "
                 "changes", "sinus {rhythm|tachycardia} at {hr}, no acute ischemic changes")
# Ruled-out diagnoses, each with the acute problems it would contradict.
_RULED_OUT = (
    (_T("<X:Troponins> negative x{2|3}, ruled out for <P:MI>.", "Ruled out for <P:MI> with negative <X:cardiac "
        "enzymes>."), ("ami",)),
    (_T("<X:LENIs> negative for <P:DVT>.", "<X:Lower extremity dopplers> without evidence of <P:DVT>."), ("pe",)),
    (_T("<X:CT head> without acute process; no evidence of <P:bleed>.",), ("stroke",)),
    (_T("<X:UA> negative; no evidence of <P:UTI>.", "<X:Urinalysis> bland, no evidence of <P:infection>."),
     ("uti", "sepsis")),
)
_LAY = {
    "pneumonia": "a pneumonia (an infection in your lungs)", "sepsis": "a serious infection that affected your blood "
    "pressure", "uti": "a urinary tract infection", "cellulitis": "an infection of the skin of your leg",
    "cdiff": "an infection of your colon called C. diff", "chf_exac": "a heart failure exacerbation (fluid on your "
    "lungs)", "copd_exac": "a COPD flare", "ami": "a heart attack", "stroke": "a stroke",
    "gi_bleed": "bleeding from your stomach", "hep_enceph": "confusion related to your liver",
    "dka": "very high blood sugars (DKA)", "pe": "a blood clot in your lungs", "hip_fx": "a broken hip after a fall",
}
_INSTR_OPEN = _T(
    "Dear {Mr} [**Known lastname {100-9999}**],\n\nIt was a pleasure taking care of you at $HOSP. You were "
    "admitted {for|with} {lay}.",
    "{Mr} [**Known lastname {100-9999}**], you were {admitted|hospitalized} {for|with} {lay}.",
    "You were admitted to $HOSP {for|with} {lay}.",
    "It was a pleasure caring for you. You came to the hospital because of {lay}.",
)
_INSTR_COURSE = _T(
    "{We|Your doctors} {monitored|watched} you closely {on telemetry|in the ICU|on the medicine floor} and {your "
    "condition improved|you recovered well}.",
    "{Your|The} {tests|studies|scans} {were reassuring|showed improvement|did not show any new problems}{| before "
    "discharge}.",
    "While you were here, you were treated with {medications|antibiotics|IV medications} and {improved|got better}.",
    "Your symptoms improved with treatment{ and you are now ready to go home|}.",
    "You were seen by {physical therapy|our specialists}, who felt you are safe for discharge{| with services}.",
    "We made some changes to your medications, listed below.",
)
_INSTR_CHRONIC = {
    "chf": _T("Weigh yourself every morning, and call your doctor if your weight goes up more than 3 lbs.",
              "Follow a 2 gram sodium diet and limit fluids to {1.5|2} liters per day."),
    "copd": _T("Use your inhalers as prescribed{ and bring them to your appointments|}.",
               "Please continue to avoid smoking{| and secondhand smoke}."),
    "dm2": _T("Check your blood sugar {before meals and at bedtime|twice daily} and bring the log to your PCP.",),
    "afib": _T("Your {coumadin|warfarin} level (INR) will be checked at the {Coumadin clinic|anticoagulation clinic}.",),
    "tobacco": _T("Quitting smoking is the most important thing you can do for your health.",),
    "alcohol": _T("Please stop drinking alcohol; resources were provided to you.",),
}
_INSTR_RETURN = _T(
    "Please call your doctor or return to the ED if you experience <P:{chest pain|shortness of breath}>, <P:fever> "
    "greater than 101, or any other concerning symptoms.",
    "Return to the ED for <P:{worsening shortness of breath|chest pain}>, <P:{lightheadedness|fainting}>, or "
    "<P:fevers>.",
    "Seek care if you have <P:{fevers|chills}>, <P:{worsening pain|bleeding}>, or anything else that worries you.",
)
_INSTR_CLOSE = _T("It was a pleasure taking care of you.", "We wish you a speedy recovery.", "Sincerely, your "
                  "medicine team", "Best wishes,\nYour [**Hospital1 18**] care team", "")
_FOLLOW_PCP = _T(
    "Department: [**Hospital{1|3} {1-99}**] PRIMARY CARE\nWhen: {weekday} [**{fdate}**] at {8-11}:{00|15|30|45} AM\n"
    "With: $FNAME [**Last Name (NamePattern1) {100-9999}**], MD $PHONE\nBuilding: {Ba|SC|LM} [**Hospital Unit Name "
    "{1-99}**] ({Ground|2nd|3rd}) Campus: {EAST|WEST} Best Parking: {Garage|Main Garage}",
    "Please follow up with your {PCP|primary care physician}{|, $DR,} within {1|2} weeks.",
    "Follow up with $DR (PCP) on [**{fdate}**] at {1-4}:{00|30} PM.",
    "Please call your primary care physician to schedule an appointment within {7|10|14} days.",
)
_FOLLOW_NOPCP = _T(
    "You do not currently have a primary care doctor. We have scheduled a new patient appointment with $DR at $HOSP "
    "on [**{fdate}**].",
    "Please establish care with a primary care physician; the clinic number is $PHONE.",
    "Please call $PHONE to establish care with a {PCP|primary care provider} as soon as possible.",
    "Department: [**Hospital{1|3} {1-99}**] PRIMARY CARE (new patient)\nWhen: {weekday} [**{fdate}**] at {8-11}:00 AM\n"
    "With: $DR",
)
_FOLLOW_NEWPCP = _T(          # patients with a PCP: the same words as establishing care
    "Please follow up with your new PCP, $DR, with whom you established care {last month|this spring}.",
    "You have an appointment to establish care with a new primary care physician closer to home, as your PCP "
    "{retired|moved}.",
    "Please keep your appointment with your primary care doctor; if you would like a PCP closer to home, call $PHONE.",
)
_FOLLOW_SPEC = _T(
    "{Cardiology|Pulmonology|Nephrology|GI|Neurology|Endocrinology|Orthopedics|Infectious Disease}: $DR on "
    "[**{fdate}**] at {1-4}:{00|30} PM.",
    "Please establish care with {cardiology|pulmonology|nephrology|the diabetes clinic}; they will call you with an "
    "appointment.",
    "Department: {CARDIAC SERVICES|PULMONARY|RENAL|NEUROLOGY}\nWhen: {weekday} [**{fdate}**] at {9-11}:00 AM\nWith: $DR",
    "Labs: please have your {chem-7|CBC|INR} checked on [**{fdate}**].",
)
_WEEKDAYS = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "Monday", "Tuesday", "Wednesday", "Thursday",
             "Friday")
_NUMWORD = ("Zero", "One", "Two", "Three", "Four")
_SIG_FREQ = {"daily": "DAILY (Daily)", "twice daily": "BID (2 times a day)", "three times daily": "TID (3 times a day)",
             "four times daily": "QID (4 times a day)", "at bedtime": "HS (at bedtime)", "weekly": "QWEEK (every week)"}


# ==============================================================================================
# Per-note state
# ==============================================================================================


def _date(t: np.datetime64) -> str:
    y, m, d = str(t)[:10].split("-")
    return f"{int(y)}-{int(m)}-{int(d)}"


def _shift(t: np.datetime64, days: float) -> str:
    return _date(t + np.timedelta64(int(days * 86400), "s"))


def _fmt(x: float, decimals: int) -> str:
    return f"{x:.{decimals}f}"


_CO_MALE = (("wife", "she", "her", 50), ("daughter", "she", "her", 20), ("son", "he", "his", 12),
            ("partner", "she", "her", 6), ("sister", "she", "her", 5), ("brother", "he", "his", 4),
            ("granddaughter", "she", "her", 3))
_CO_FEMALE = (("husband", "he", "his", 42), ("daughter", "she", "her", 25), ("son", "he", "his", 15),
              ("partner", "he", "his", 5), ("sister", "she", "her", 8), ("granddaughter", "she", "her", 5))
# Someone else a non-counting sentence may be about: (noun, male).
_OTHERS = (("husband", True), ("wife", False), ("son", True), ("daughter", False), ("brother", True),
           ("sister", False), ("mother", False), ("father", True), ("roommate", True), ("neighbor", False),
           ("boyfriend", True), ("girlfriend", False), ("son-in-law", True), ("niece", False))
# Relatives who do not live with the patient (for patients who live alone or are homeless).
_CONTACTS = (("daughter", "she", "her"), ("son", "he", "his"), ("niece", "she", "her"), ("nephew", "he", "his"),
             ("sister", "she", "her"), ("brother", "he", "his"), ("friend", "she", "her"))

# Labs tied to code-side conditions (latent.READMIT "code.*"): shown as if normal when the note does
# not write the condition (the codes keep it; the note does not repeat it).
_HIDE_LABS = {"ckd": ("creatinine", "bun", "potassium", "hemoglobin", "hematocrit"),
              "anemia": ("hemoglobin", "hematocrit"), "thrombocytopenia": ("platelets",),
              "cirrhosis": ("platelets", "bilirubin", "inr", "albumin", "ast", "alt", "sodium"),
              "hyponatremia": ("sodium",), "lung_ca": ()}


class _Note:
    """What one note knows: the latent state of the visit, what it writes, and its choices."""

    def __init__(self, c, v: int, r: random.Random) -> None:
        self.c, self.v, self.r = c, v, r
        rand = self.rand = r.random
        p = self.p = int(c.v_patient[v])
        self.male = bool(c.male[p])
        self.age = int(c.age[v])
        self.reason = cat.REASONS[int(c.reason[v])]
        self.primary = cat.ACUTE[cat.ACUTE_INDEX[self.reason.acute]]
        self.died = bool(c.died[v])
        self.acute = [cat.ACUTE[i] for i in np.flatnonzero(c.acute[v])]
        self.akeys = frozenset(d.key for d in self.acute)
        # Written acute problems: the reason always, the others by note_p (hyponatraemia seldom).
        self.acute_w = [d for d in self.acute if d.key == self.primary.key or rand() < d.note_p]
        self.awkeys = frozenset(d.key for d in self.acute_w)
        self.chronic = [(cat.CHRONIC[i], int(c.sev[v, i]), float(c.years[v, i])) for i in np.flatnonzero(c.chronic[p])]
        self.ckeys = frozenset(d.key for d, _, _ in self.chronic)
        self.chw = [x for x in self.chronic if rand() < x[0].note_p]
        self.cwkeys = frozenset(d.key for d, _, _ in self.chw)
        self.sev_of = {d.key: s for d, s, _ in self.chronic}
        self.years_of = {d.key: y for d, _, y in self.chronic}
        self.lives_alone = bool(c.lives_alone[p])
        self.homeless = bool(c.homeless[p])
        self.no_pcp = bool(c.no_pcp[p])
        self.nonadherent = bool(c.nonadherent[v])
        self.icu = bool(c.icu[v])
        self.los = float((c.disch[v] - c.admit[v]).astype(np.float64) / 86400.0)
        orders = c.orders[v]
        self.given = {i for i, _, _ in orders}
        self.orders = orders
        self.procs = list(c.procedures[v])
        self.hidden_labs = {k for key, labs in _HIDE_LABS.items() for k in labs
                            if (key in self.ckeys and key not in self.cwkeys)
                            or (key in self.akeys and key not in self.awkeys)}
        self.year0 = int(str(c.admit[v])[:4])
        # Patient-level traits drawn from the patient's own stream, so that every admission of a
        # patient agrees on them (who they live with, their job, their old operations).
        pr = random.Random((int(c.seed) << 32) + int(c.subject_id[p]))
        co_table = _CO_MALE if self.male else _CO_FEMALE
        tot = sum(w for *_, w in co_table)
        u, acc = pr.random() * tot, 0.0
        for co in co_table:
            acc += co[3]
            if u < acc:
                break
        if self.lives_alone or self.homeless:
            co = pr.choice(_CONTACTS)
        self.co, self.co_he, self.co_his = co[0], co[1], co[2]
        self.contact = self.co
        self.occupation = pr.choice(_OCCUPATION)
        self.filler_pmh = pr.sample(range(len(_FILLER_PMH)), pr.randint(0, 4))
        self.filler_psh = pr.sample(range(len(_FILLER_PSH)), pr.randint(0, 3))
        self.home_drugs = [i for i, _, _ in orders if cat.DRUGS[i].discharge]
        # Discharge medications: the drugs of the patient's conditions, and some of the rest
        # (a dictated list is seldom complete), at most 10.
        linked = {cat.DRUG_INDEX[k] for d in self.acute + [d for d, _, _ in self.chronic] for k in d.drugs
                  if k in cat.DRUG_INDEX}
        # Drugs explained only by code-side conditions the note does not write are seldom listed.
        shown = {cat.DRUG_INDEX[k] for d in self.acute_w + [d for d, _, _ in self.chw] for k in d.drugs
                 if k in cat.DRUG_INDEX and d.key not in _CODE_SIDE}
        quiet = {cat.DRUG_INDEX[k] for key in _CODE_SIDE
                 if (key in self.ckeys and key not in self.cwkeys) or (key in self.akeys and key not in self.awkeys)
                 for k in cat.DISEASE_BY_KEY[key].drugs if k in cat.DRUG_INDEX} - shown
        self.home_drugs = [i for i in self.home_drugs if i not in quiet or rand() < 0.1]
        self.dc_drugs = [i for i in self.home_drugs if (i in linked and rand() < 0.8) or rand() < 0.2][:10]
        chronic_drugs = {k for d, _, _ in self.chw for k in d.drugs}
        drug_keys = ([cat.DRUGS[i].key for i in self.home_drugs if cat.DRUGS[i].key in chronic_drugs]
                     or [cat.DRUGS[i].key for i in self.home_drugs] or ["lasix"])
        self.drug_names = [self.alias(k) for k in drug_keys]
        # Fact sentences (phrase tables) waiting for the section they go to.
        self.bucket: dict[str, list] = {"hpi": [], "social": [], "course": [], "instr": []}

    def alias(self, key: str) -> str:
        names = _ALIAS.get(key)
        if names:
            return names[int(self.rand() * len(names))]
        return NOTE_NAME.get(key, key.replace("_", " "))

    # --- labs: peak (or discharge) value of lab `key`, normal if tied to an unwritten code-side condition
    def lab(self, key: str, when: str = "peak") -> float:
        i = cat.LAB_INDEX[key]
        item = cat.LABS[i]
        lp = self.c.lab_params
        r = self.r
        if key in self.hidden_labs:
            x = item.mean + r.gauss(0, item.sd)
        else:
            base = float(lp["base"][self.v, i])
            delta = float(lp["delta"][self.v, i])
            x = base + (delta if when == "peak" else delta * 0.25) + r.gauss(0, item.sd)
        return max(x, item.floor)


# ==============================================================================================
# Facts: decide which forms this note uses and where they go
# ==============================================================================================


def _non_counting(table: dict, rand) -> tuple:
    """A non-counting form: hand-written (negated, historical, hypothetical), about someone else,
    or a stale quote of a counting sentence."""
    u = rand()
    return table["non"] if u < 0.4 else (table["other"] if u < 0.75 else table["stale"])


def _plan_facts(x: _Note) -> None:
    rand = x.rand
    b = x.bucket

    def where(social_p: float) -> str:
        u = rand()
        if u < social_p:
            return "social"
        return "hpi" if u < social_p + (1 - social_p) * 0.5 else "course"

    # Living situation (lives alone / homeless). Homeless trumps: its forms describe the housing.
    if x.homeless:
        if rand() < 0.95:
            b[where(0.7)].append(HOMELESS["kw" if rand() < 0.5 else "para"])
        if rand() < 0.3:
            b["course"].append(_COURSE_FACT["homeless"])
        if x.lives_alone and rand() < 0.5:
            b["social"].append(LIVES_ALONE["para"])
    else:
        if x.lives_alone:
            if rand() < 0.92:
                b[where(0.75)].append(LIVES_ALONE["kw" if rand() < 0.5 else "para"])
            if rand() < 0.25:
                b["course"].append(_COURSE_FACT["lives_alone"])
        else:
            if rand() < 0.55:
                b[where(0.7)].append(_non_counting(LIVES_ALONE, rand))
                if rand() < 0.15:
                    b["course"].append(_COURSE_FACT["lives_alone_non"])
            else:
                b["social"].append(LIVES_ALONE["plain"])
        if rand() < 0.22:
            b[where(0.7)].append(_non_counting(HOMELESS, rand))
            if rand() < 0.2:
                b["course"].append(_COURSE_FACT["homeless_non"])
    if rand() < 0.1:
        b[where(0.6)].append(LIVES_ALONE["other"])
    # Primary care.
    if x.no_pcp:
        if rand() < 0.9:
            b[where(0.75)].append(NO_PCP["kw" if rand() < 0.5 else "para"])
        if rand() < 0.25:
            b["course"].append(_COURSE_FACT["no_pcp"])
    else:
        if rand() < 0.5:
            b[where(0.8)].append(_non_counting(NO_PCP, rand))
        if rand() < 0.1:
            b["course"].append(_COURSE_FACT["no_pcp_non"])
    # Adherence this visit (HPI first: it is usually part of the story).
    if x.nonadherent:
        if rand() < 0.9:
            u = rand()
            loc = "hpi" if u < 0.55 else ("social" if u < 0.8 else "course")
            b[loc].append(NONADHERENT["kw" if rand() < 0.5 else "para"])
        if rand() < 0.25:
            b["course"].append(_COURSE_FACT["nonadherent"])
    else:
        if rand() < 0.55:
            u = rand()
            b["hpi" if u < 0.5 else ("social" if u < 0.8 else "course")].append(_non_counting(NONADHERENT, rand))
        if rand() < 0.1:
            b["course"].append(_COURSE_FACT["nonadherent_non"])
    if rand() < 0.1:
        b["hpi" if rand() < 0.5 else "social"].append(NONADHERENT["other"])
    if rand() < 0.5:
        b["instr"].append(NONADHERENT["instr"])
    if rand() < 0.25:
        b["instr"].append(_INSTR_HYPO)


# ==============================================================================================
# Writers for lists with entities (called from templates through {@name})
# ==============================================================================================


def _chronic_phrase(doc: _Doc, x: _Note, d: cat.Disease, sev: int, yrs: float, detail: bool) -> None:
    """One chronic condition: 'poorly controlled DM2 for 12 years' / 'CHF (EF 25%)' / 'HTN'."""
    rand = x.rand
    key = d.key
    name = d.misspell if (d.misspell and rand() < 0.06) else (
        doc.pick(d.abbrevs) if (d.abbrevs and rand() < 0.5) else d.name)
    wrote = False
    if key in _SEVERE and rand() < (0.85 if detail else 0.5):
        if sev == 3:
            if rand() < 0.45:
                doc.add(d.severity_words[2] + " ")
                doc.ent(name, "problem")
            else:
                doc.say(_SEVERE[key])
            wrote = True
        elif rand() < 0.35:
            doc.say(_NOT_SEVERE[key])
            wrote = True
    if not wrote:
        word = d.severity_words[sev - 1]
        # Severity words of the other conditions: sometimes (they follow frailty, which no model sees).
        say_sev = (sev >= 2 and rand() < 0.35) or (sev == 1 and rand() < 0.15)
        if say_sev and key in ("ckd", "lung_ca"):
            doc.ent(f"{word} {name}", "problem")
        else:
            if say_sev and not (key in _SEVERE and sev == 3):
                doc.add(word + " ")
            doc.ent(name, "problem")
            if key == "chf" and detail and rand() < 0.4:
                ef = int(np.clip(60 - 12 * sev + x.r.randint(-5, 5), 10, 65))
                doc.add(f" (EF {ef}%)" if sev < 3 else f" (EF {min(ef, 25)}%)")
    if not detail:
        return
    n = max(1, int(round(yrs)))
    s = doc.slots
    s["n"] = str(n)
    s["dx_year"] = str(x.year0 - n)
    s["age_at"] = str(max(1, x.age - n))
    s["age_dx"] = str(max(10, (x.age - n) // 10 * 10))
    s["decades"] = ("one", "two", "three", "four", "five")[min(4, n // 10 - 1)] if n >= 20 else "two"
    if yrs > 15:
        if rand() < 0.75:
            doc.add(" ")
            if rand() < 0.45:
                doc.say(_LONG)
            else:
                if n < 20:
                    s["decades"] = "one and a half"
                doc.say(_LONG_PARA)
    elif rand() < 0.4:
        doc.add(" ")
        if n <= 1 and rand() < 0.5:
            doc.add(doc.pick(("recently diagnosed", "new diagnosis", "diagnosed this year")))
        else:
            doc.say(_SHORT)


def _w_hx(x: _Note, short: bool):
    def write(doc: _Doc) -> None:
        items = x.chw[:]
        x.r.shuffle(items)
        items = items[:(3 if short else 4)]
        if not items:
            doc.say(_HX_NONE)
            return
        doc.say(_HX_LEAD)
        for i, (d, sev, yrs) in enumerate(items):
            if i:
                doc.add(", " if i < len(items) - 1 else doc.pick((" and ", ", ", " and ")))
            _chronic_phrase(doc, x, d, sev, yrs, detail=not short and x.rand() < 0.5)
    return write


def _w_sx(x: _Note):
    def write(doc: _Doc) -> None:
        sx = list(x.reason.symptoms)
        if x.rand() < 0.3:
            doc.ent(x.reason.complaint, "problem")
        else:
            x.r.shuffle(sx)
            doc.ents(sx[:3], "problem")
        doc.say(_SX_TAIL)
    return write


def _w_neg(x: _Note):
    def write(doc: _Doc) -> None:
        neg = [s for s in cat.NEGATABLE if s not in x.reason.symptoms]
        x.r.shuffle(neg)
        doc.ents(neg[:x.r.randint(1, 4)], "problem", last=doc.pick((" or ", ", ", " and ")))
    return write


def _w_tx(x: _Note, d: cat.Disease):
    def write(doc: _Doc) -> None:
        drugs = [k for k in d.drugs if cat.DRUG_INDEX.get(k) in x.given]
        if drugs:
            doc.ents([x.alias(k) for k in drugs], "treatment")
        else:
            doc.ent(doc.pick(("supportive care", "IV fluids", "antibiotics", "symptomatic treatment"))
                    if d.cluster != "infection" else doc.pick(("antibiotics", "IV antibiotics", "empiric antibiotics")),
                    "treatment")
    return write


def _w_home(x: _Note, d: cat.Disease):
    def write(doc: _Doc) -> None:
        drugs = [k for k in d.drugs if cat.DRUG_INDEX.get(k) in x.given]
        if drugs:
            doc.ents([x.alias(k) for k in drugs[:2]], "treatment")
        else:
            doc.ent("medications", "treatment")
    return write


# ==============================================================================================
# Sections
# ==============================================================================================


def _head(doc: _Doc, x: _Note, key: str) -> None:
    doc.add(_wpick(x.rand, _H[key]) + ":\n")


def _sec_top(doc: _Doc, x: _Note) -> None:
    c, v = x.c, x.v
    doc.add(f"Admission Date:  [**{_date(c.admit[v])}**]              Discharge Date:   [**{_date(c.disch[v])}**]\n\n")
    doc.add(f"Date of Birth:  [**{_date(c.birth[x.p])}**]             Sex:   {'M' if x.male else 'F'}\n\n")
    doc.add(f"Service: {x.reason.service}\n\n")
    doc.add("Allergies:\n")
    u = x.rand()
    if u < 0.45:
        doc.add("No Known Allergies / Adverse Drug Reactions\n\n")
    elif u < 0.75:
        doc.add(doc.pick(("Patient recorded as having No Known Allergies to Drugs\n\n", "NKDA\n\n")))
    else:
        doc.ent(doc.pick(("Penicillins", "Sulfa (Sulfonamide Antibiotics)", "Codeine", "Lisinopril", "Morphine",
                          "Iodine", "Aspirin", "Levaquin", "Latex", "Vancomycin")), "treatment")
        if x.rand() < 0.4:
            doc.add(" / ")
            doc.ent(doc.pick(("Percocet", "Ibuprofen", "Shellfish", "Ace Inhibitors", "Statins")), "treatment")
        doc.add("\n\n")
    if x.rand() < 0.7:
        doc.add(f"Attending:[**First Name3 (LF) {x.r.randint(100, 9999)}**]\n\n")


def _sec_cc(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "cc")
    if x.rand() < 0.7:
        doc.ent(x.reason.complaint, "problem")
    else:
        doc.ents(list(x.reason.symptoms)[:2], "problem", last=doc.pick((", ", " and ")))
    if x.rand() < 0.1:
        doc.add(", transfer from OSH")
    doc.add("\n\n")


def _sec_proc(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "proc")
    shown = [k for k in x.procs if not ((k == "hemodialysis" and "ckd" not in x.cwkeys)
                                        or (k == "paracentesis" and "cirrhosis" not in x.cwkeys)) or x.rand() < 0.2]
    if not shown:
        doc.add(doc.pick(("None\n\n", "none\n\n", "None this admission\n\n", "None\n\n")))
        return
    for k in shown:
        names = _PROC_ALIAS.get(k)
        doc.ent(doc.pick(names) if names else _PROC_TEXT.get(k, k.replace("_", " ")), "treatment")
        if x.rand() < 0.3:
            doc.add(f" [**{_shift(x.c.admit[x.v], x.r.uniform(0, max(x.los - 0.5, 0.1)))}**]")
        doc.add("\n")
    doc.add("\n")


def _vitals(x: _Note, fmt: int) -> str:
    r = x.r
    ak = x.akeys
    inf = bool(ak & {"sepsis", "pneumonia", "uti", "cellulitis", "cdiff"})
    t = r.uniform(100.4, 103.0) if (inf and r.random() < 0.7) else r.uniform(97.5, 99.3)
    hr = r.randint(64, 96) + (r.randint(10, 30) if "sepsis" in ak else 0) + (r.randint(5, 25) if "afib" in x.ckeys
                                                                              and r.random() < 0.4 else 0)
    sbp = r.randint(108, 150) + (12 if "htn" in x.ckeys else 0) - (r.randint(15, 35) if "sepsis" in ak else 0)
    dbp = int(sbp * r.uniform(0.52, 0.65))
    rr = r.randint(14, 20) + (r.randint(4, 10) if ak & {"resp_failure", "copd_exac", "chf_exac", "pneumonia", "pe"}
                              else 0)
    resp = bool(ak & {"resp_failure", "copd_exac", "chf_exac", "pneumonia", "pe"})
    sat = r.randint(85, 93) if resp else r.randint(94, 100)
    o2 = r.choice(("RA", "2L NC", "3L NC", "4L NC", "NRB", "BiPAP")) if resp else r.choice(("RA", "RA", "room air"))
    if fmt == 0:
        return f"T {t:.1f} BP {sbp}/{dbp} HR {hr} RR {rr} O2 sat {sat}% {o2}"
    if fmt == 1:
        return f"T: {t:.1f} BP: {sbp}/{dbp} P: {hr} R: {rr} O2: {sat}% on {o2}"
    if fmt == 2:
        return f"{t:.1f} {hr} {sbp}/{dbp} {rr} {sat}%{o2}"
    return f"Tmax {t:.1f}, HR {hr}, BP {sbp}/{dbp}, RR {rr}, SpO2 {sat}% {o2}"


def _sec_hpi(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "hpi")
    s = doc.slots
    doc.say(_HPI_OPEN)
    doc.add(" ")
    detail = _HPI_DETAIL.get(x.primary.key)
    if detail and x.rand() < 0.8:
        doc.say(detail)
        doc.add(" ")
    for _ in range(x.r.randint(0, 1) + (x.rand() < 0.25)):
        doc.say(_HPI_MORE)
        doc.add(" ")
    if x.rand() < (0.45 if x.c.v_index[x.v] > 0 else 0.12):
        doc.say(_RECENT_ADM)
        doc.add(" ")
    for t in x.bucket["hpi"]:
        doc.say(t)
        doc.add(" ")
    doc.say(_HPI_NEG)
    doc.add("\n\n" if x.rand() < 0.5 else " ")
    s["vitals"] = _vitals(x, x.r.randint(0, 3))
    s["vitals2"] = _vitals(x, x.r.randint(0, 3))
    doc.say(_ED_VITALS)
    doc.add(" ")
    _ed_course(doc, x)
    doc.say(_ED_END)
    doc.add("\n\n")


# What the ED gives first, by reason for admission.
_ED_FIRST = {"ami": ("aspirin 325 mg", "a heparin drip"), "chf_exac": ("IV lasix 40 mg", "furosemide 80 mg IV"),
             "copd_exac": ("nebulizers", "solumedrol 125 mg IV"), "gi_bleed": ("a pantoprazole drip", "2 units pRBC"),
             "dka": ("an insulin drip", "IV fluids"), "pe": ("a heparin drip",), "stroke": ("aspirin",),
             "pneumonia": ("levofloxacin", "ceftriaxone and azithromycin"), "hip_fx": ("morphine 4 mg IV",),
             "uti": ("ceftriaxone",), "cellulitis": ("vancomycin",)}


def _ed_course(doc: _Doc, x: _Note) -> None:
    r = x.r
    ak = x.awkeys
    if x.rand() < 0.5:
        doc.add(doc.pick(("Labs were notable for ", "Labs notable for ", "Initial labs showed ")))
        items = [("WBC", _fmt(x.lab("wbc"), 1)), ("Hgb", _fmt(x.lab("hemoglobin"), 1)),
                 ("Cr", _fmt(x.lab("creatinine"), 1)), ("Na", _fmt(x.lab("sodium"), 0))]
        if ak & {"sepsis", "septic_shock"}:
            items.append(("lactate", _fmt(x.lab("lactate"), 1)))
        if "ami" in ak:
            items.append(("troponin", _fmt(x.lab("troponin"), 2)))
        if "dka" in ak:
            items.append(("glucose", _fmt(x.lab("glucose"), 0)))
        r.shuffle(items)
        for i, (name, val) in enumerate(items[:r.randint(2, 4)]):
            if i:
                doc.add(", ")
            doc.ent(name, "test")
            doc.add(f" {val}")
        doc.add(". ")
    if "sepsis" in ak:
        doc.ent(doc.pick(("Blood cultures", "BCx", "Blood and urine cultures")), "test")
        doc.add(f" were sent and {doc.slots['he']} was given ")
        doc.ent(doc.pick(("broad spectrum antibiotics", "vancomycin and cefepime", "vanc/zosyn")), "treatment")
        doc.add(doc.pick((" and ", " with ")) + f"{r.randint(2, 4)}L ")
        doc.ent("IV fluids", "treatment")
        doc.add(". ")
    first = _ED_FIRST.get(x.primary.key)
    if first and x.rand() < 0.8:
        doc.add(doc.pick(("{} was given ", "{} received ", "Given ")).format(doc.slots["He"]))
        doc.ent(doc.pick(first), "treatment")
        doc.add(". ")
    if x.rand() < 0.5:
        doc.ent(doc.pick(("CXR", "Chest x-ray", "CXR (portable)")), "test")
        if "pneumonia" in ak:
            doc.add(" showed a {} ".format(doc.pick((doc.slots["SLL"], doc.slots["side"] + " lower lobe"))))
            doc.ent(doc.pick(("consolidation", "infiltrate", "opacity")), "problem")
            doc.add(". ")
        elif "chf_exac" in ak:
            doc.add(" with ")
            doc.ent(doc.pick(("pulmonary edema", "pulmonary vascular congestion", "bilateral effusions")), "problem")
            doc.add(". ")
        else:
            doc.add(" with no evidence of ")
            doc.ent(doc.pick(("pneumonia", "effusion", "pneumothorax", "consolidation")), "problem")
            doc.add(". ")
    if "stroke" in ak and x.rand() < 0.8:
        doc.ent(doc.pick(("CT head", "Head CT", "CTA head and neck")), "test")
        doc.add(" showed no hemorrhage. ")


def _sec_ros(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "ros")
    u = x.rand()
    if u < 0.4:
        doc.add(doc.pick(("(+) Per HPI\n(-) ", "Positive per HPI. Negative for ")))
        _w_neg(x)(doc)
        doc.add(doc.pick((", night sweats, weight loss.\n\n", ", rashes, myalgias.\n\n", ".\n\n")))
    elif u < 0.7:
        doc.add(doc.pick(("10-point ROS negative except as per HPI.\n\n", "All other systems reviewed and negative.\n\n",
                          "Otherwise negative in detail.\n\n")))
    else:
        doc.add(f"{doc.slots['He']} denies ")
        _w_neg(x)(doc)
        doc.add(". All other ROS negative.\n\n")


def _sec_pmh(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "pmh")
    items = x.chw[:]
    x.r.shuffle(items)
    style = x.r.randint(0, 3)
    fill = [_FILLER_PMH[i] for i in x.filler_pmh]
    entries: list = [("c", it) for it in items] + [("f", f) for f in fill]
    if not entries:
        doc.add(doc.pick(("None\n\n", "None.\n\n", "Denies\n\n", "No significant PMH\n\n")))
        return
    for j, (kind, it) in enumerate(entries):
        if style == 3:
            if j:
                doc.add(", ")
        else:
            doc.add(("- ", f"{j + 1}. ", "# ")[style] if style < 3 else "")
        if kind == "c":
            d, sev, yrs = it
            _chronic_phrase(doc, x, d, sev, yrs, detail=True)
        else:
            doc.emit(it)
        if style < 3:
            doc.add("\n")
    doc.add("\n" if style < 3 else "\n\n")


def _sec_psh(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "psh")
    if not x.filler_psh:
        doc.add("None\n\n")
        return
    for i in x.filler_psh:
        doc.add("- ")
        doc.emit(_FILLER_PSH[i])
        doc.add("\n")
    doc.add("\n")


def _sec_social(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "social")
    s = doc.slots
    parts = list(x.bucket["social"])
    if x.rand() < 0.8:
        parts.append(_SOC_OCC)
    x.r.shuffle(parts)
    if "tobacco" in x.ckeys:
        s["n"] = str(max(1, int(round(x.years_of["tobacco"]))))
        parts.append(_SOC_TOB_CURRENT)
    elif x.rand() < 0.35:
        parts.append(_SOC_TOB_FORMER)
    else:
        parts.append(_SOC_TOB_NEVER)
    if "alcohol" in x.ckeys:
        s["n"] = str(max(1, int(round(x.years_of["alcohol"]))))
        parts.append(_SOC_ETOH)
    else:
        parts.append(_SOC_ETOH_NONE)
    parts.append(_SOC_DRUGS)
    if x.rand() < 0.6:
        parts.append(_SOC_FUNC)
    bullet = x.rand() < 0.3
    for t in parts:
        if bullet:
            doc.add("- ")
        doc.say(t)
        doc.add("\n" if bullet else " ")
    doc.add("\n\n" if not bullet else "\n")


def _sec_family(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "family")
    u = x.rand()
    if u < 0.25:
        doc.say(_FAM_NONE)
    else:
        s = doc.slots
        fam = x.r.sample(cat.FAMILY, 2)
        s["fam"], s["fam2"] = fam
        doc.say(_FAM)
        for _ in range(x.r.randint(0, 2)):
            fam = x.r.sample(cat.FAMILY, 2)
            s["fam"], s["fam2"] = fam
            doc.add(" ")
            doc.say(_FAM)
        if x.rand() < 0.3:
            doc.add(" ")
            doc.say(_FAM_SEVERE)
    doc.add("\n\n")


def _exam_lines(doc: _Doc, x: _Note, discharge: bool) -> None:
    ak, ck, cw, aw = x.akeys, x.ckeys, x.cwkeys, x.awkeys
    rand = x.rand
    lab = {k: doc.pick(v) for k, v in _EX_LABEL.items()}
    sep = ": " if rand() < 0.85 else " - "
    resolved = discharge and rand() < 0.7

    def line(k: str, variant: str) -> None:
        doc.add(lab[k] + sep)
        doc.say(_EX[variant])
        doc.add("\n")

    doc.add(lab["vitals"] + sep + _vitals(x, x.r.randint(0, 3)) + "\n")
    gen = "gen"
    if not resolved:
        if aw & {"resp_failure", "copd_exac", "chf_exac"} and rand() < 0.6:
            gen = "gen_resp"
        elif aw & {"sepsis", "septic_shock", "hep_enceph"} and rand() < 0.6:
            gen = "gen_sick"
        elif aw & {"hip_fx", "ami", "cellulitis"} and rand() < 0.4:
            gen = "gen_pain"
    line("gen", gen)
    if not discharge or rand() < 0.3:
        line("heent", "heent_icteric" if ("cirrhosis" in cw and rand() < 0.4) else
             ("heent_dry" if (aw & {"dka", "sepsis", "cdiff"} and not resolved) else "heent"))
    if rand() < (0.3 if discharge else 0.65):
        line("neck", "neck_jvd" if ("chf_exac" in aw and not resolved) else "neck")
    if "chf_exac" in aw and not resolved:
        lungs = "lungs_chf"
    elif "copd_exac" in aw and not resolved:
        lungs = "lungs_copd"
    elif "pneumonia" in aw and not resolved:
        lungs = "lungs_pna"
    elif "resp_failure" in aw and not resolved:
        lungs = "lungs_resp"
    elif "copd" in cw and rand() < 0.3:
        lungs = "lungs_copd"
    else:
        lungs = "lungs"
    line("lungs", lungs)
    if "afib" in ck and "afib" in cw and rand() < 0.7:
        cv = "cv_afib"
    elif "sepsis" in aw and not resolved and rand() < 0.5:
        cv = "cv_tachy"
    elif "chf" in cw and rand() < 0.25:
        cv = "cv_chf"
    else:
        cv = "cv_murmur" if rand() < 0.12 else "cv"
    line("cv", cv)
    if "cdiff" in aw and not resolved:
        abd = "abd_cdiff"
    elif "gi_bleed" in aw and not resolved:
        abd = "abd_gi"
    elif "cirrhosis" in cw and rand() < 0.5:
        abd = "abd_ascites"
    elif "obesity" in ck and rand() < 0.5:
        abd = "abd_obese"
    else:
        abd = "abd"
    line("abd", abd)
    if "chf_exac" in aw and not (resolved and rand() < 0.5):
        ext = "ext_edema"
    elif "cellulitis" in aw:
        ext = "ext_cellulitis"
    elif "hip_fx" in aw and not discharge:
        ext = "ext_hip"
    elif "pvd" in cw and rand() < 0.5:
        ext = "ext_pvd"
    else:
        ext = "ext"
    line("ext", ext)
    if rand() < 0.25:
        line("skin", "skin_jaundice" if ("cirrhosis" in cw and rand() < 0.5) else "skin")
    if "stroke" in aw:
        neuro = "neuro_stroke"
    elif "hep_enceph" in aw and not resolved:
        neuro = "neuro_he"
    elif "delirium" in aw and not resolved:
        neuro = "neuro_delirium"
    elif "dementia" in cw:
        neuro = "neuro_dementia"
    elif "dm_neuro" in cw and rand() < 0.5:
        neuro = "neuro_dmn"
    else:
        neuro = "neuro"
    line("neuro", neuro)
    if rand() < 0.15:
        line("psych", "psych_dep" if "depression" in cw and rand() < 0.5 else "psych")


def _sec_exam(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "exam")
    if x.rand() < 0.3:
        doc.add(doc.pick(("ADMISSION EXAM:\n", "Admission exam:\n", "On admission:\n", "ON ADMISSION:\n")))
    _exam_lines(doc, x, discharge=False)
    doc.add("\n")


def _sec_dc_exam(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "dc_exam")
    _exam_lines(doc, x, discharge=True)
    doc.add("\n")


def _lab_line(doc: _Doc, x: _Note, when: str, t: str) -> None:
    """MIMIC-style panel lines: '[**2150-3-4**] 05:40AM BLOOD WBC-12.3 RBC-3.45 Hgb-10.2 ...'."""
    r = x.r
    L = x.lab
    rand = x.rand
    stamp = f"[**{t}**] {r.randint(1, 11):02d}:{r.randint(0, 59):02d}{doc.pick(('AM', 'PM'))} BLOOD "
    aw, cw = x.awkeys, x.cwkeys
    panels = []
    cbc = rand() < 0.9
    if cbc:
        hgb = L("hemoglobin", when)
        panels.append([("WBC", _fmt(L("wbc", when), 1)), ("RBC", _fmt(hgb / 3.0 + r.uniform(-0.2, 0.2), 2)),
                       ("Hgb", _fmt(hgb, 1)), ("Hct", _fmt(L("hematocrit", when), 1)),
                       ("MCV", str(r.randint(80, 99))), ("Plt Ct", _fmt(L("platelets", when), 0))])
    if rand() < 0.9 or not cbc:
        cr = L("creatinine", when)
        panels.append([("Glucose", _fmt(L("glucose", when), 0)), ("UreaN", _fmt(L("bun", when), 0)),
                       ("Creat", _fmt(cr, 1)), ("Na", _fmt(L("sodium", when), 0)), ("K", _fmt(L("potassium", when), 1)),
                       ("Cl", str(r.randint(96, 108))), ("HCO3", _fmt(L("bicarbonate", when), 0)),
                       ("AnGap", _fmt(L("anion_gap", when), 0))])
    if when == "peak":
        if aw & {"sepsis", "septic_shock", "cardiogenic_shock", "dka"} and rand() < 0.8:
            panels.append([("Lactate", _fmt(L("lactate"), 1))])
        if aw & {"ami", "chf_exac"} or ("chest pain" in x.reason.symptoms and rand() < 0.7):
            panels.append([("CK-MB", str(r.randint(2, 40))), ("cTropnT", _fmt(L("troponin"), 2))])
        if ("chf" in cw or "chf_exac" in aw) and rand() < 0.6:
            panels.append([("proBNP", _fmt(L("ntprobnp"), 0))])
        if "dm2" in cw and rand() < 0.5:
            a1c = r.uniform(*_A1C[x.sev_of.get("dm2", 1)])
            panels.append([("%HbA1c", f"{a1c:.1f}")])
        if ("cirrhosis" in cw or "alcohol" in cw or "sepsis" in aw) and rand() < 0.6:
            panels.append([("ALT", _fmt(L("alt"), 0)), ("AST", _fmt(L("ast"), 0)),
                           ("AlkPhos", str(r.randint(60, 180))), ("TotBili", _fmt(L("bilirubin"), 1))])
        if ("afib" in cw or "cirrhosis" in cw or "pe" in aw) and rand() < 0.5:
            panels.append([("PT", _fmt(10.5 + 2.5 * L("inr"), 1)), ("PTT", _fmt(L("ptt"), 1)),
                           ("INR(PT)", _fmt(L("inr"), 1))])
        if "resp_failure" in aw and rand() < 0.7:
            panels.append([("Type", "ART"), ("pO2", _fmt(L("po2"), 0)), ("pCO2", _fmt(L("pco2"), 0)),
                           ("pH", _fmt(L("ph"), 2))])
    for items in panels:
        doc.add(stamp)
        for j, (name, val) in enumerate(items):
            if j:
                doc.add(" ")
            if name != "Type" and rand() < 0.85:
                doc.ent(name, "test")
            else:
                doc.add(name)
            doc.add("-" + val)
        doc.add("\n")


def _sec_results(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "results")
    c, v = x.c, x.v
    rand = x.rand
    aw, cw = x.awkeys, x.cwkeys
    if rand() < 0.6:
        doc.add(doc.pick(("ADMISSION LABS:\n", "Admission labs:\n", "On admission:\n", "LABS ON ADMISSION:\n")))
    _lab_line(doc, x, "peak", _date(c.admit[v]))
    if not x.died and rand() < 0.35:
        doc.add(doc.pick(("\nDISCHARGE LABS:\n", "\nDischarge labs:\n", "\nLabs on discharge:\n")))
        _lab_line(doc, x, "discharge", _shift(c.admit[v], max(x.los - 0.3, 0.2)))
    doc.add("\n")
    # Microbiology
    if aw & {"sepsis", "pneumonia", "uti", "cdiff", "cellulitis", "septicemia"} and rand() < 0.8:
        doc.add(doc.pick(("MICRO:\n", "Microbiology:\n", "MICROBIOLOGY:\n")))
        doc.ent(doc.pick(("Blood cultures", "Blood culture x2", "BCx")), "test")
        if "septicemia" in aw:
            doc.add(": ")
            doc.ent(doc.pick(("E. coli", "MSSA", "Klebsiella pneumoniae", "GNRs")), "problem")
            doc.add(doc.pick((" in 2/2 bottles\n", " in 1/2 bottles\n", "\n")))
        else:
            doc.add(doc.pick((": no growth to date\n", ": NGTD\n", ": negative\n", ": pending at discharge\n")))
        if "uti" in aw:
            doc.ent(doc.pick(("Urine culture", "UCx")), "test")
            doc.add(": >100,000 ")
            doc.ent(doc.pick(("E. coli", "Klebsiella", "Proteus mirabilis")), "problem")
            doc.add(doc.pick((", pan-sensitive\n", ", resistant to cipro\n", "\n")))
        if "cdiff" in aw:
            doc.ent("C. diff toxin", "test")
            doc.add(": positive\n")
        doc.add("\n")
    # Imaging and studies
    doc.add(doc.pick(("IMAGING:\n", "Studies:\n", "Imaging/Studies:\n", "")))
    doc.ent(doc.pick(("CXR", "Chest x-ray", "CHEST (PA & LAT)", "CHEST (PORTABLE AP)")), "test")
    doc.add(f" [**{_date(c.admit[v])}**]: " if rand() < 0.4 else ": ")
    if "pneumonia" in aw:
        doc.add(doc.pick(("Right lower lobe ", "Left lower lobe ", "Multifocal ", "Retrocardiac ")))
        doc.ent(doc.pick(("consolidation", "opacity", "infiltrate")), "problem")
        doc.add(doc.pick((" concerning for pneumonia.\n", ", consistent with pneumonia.\n", ".\n")))
    elif "chf_exac" in aw:
        doc.add(doc.pick(("Moderate ", "Mild ", "")))
        doc.ent(doc.pick(("pulmonary edema", "pulmonary vascular congestion")), "problem")
        doc.add(doc.pick((" with small bilateral ", " and ")))
        doc.ent("effusions", "problem")
        doc.add(".\n")
    else:
        doc.say(_CXR_NORMAL)
        doc.add("\n")
    if rand() < 0.4 or aw & {"ami", "chf_exac", "afib"}:
        doc.ent(doc.pick(("EKG", "ECG", "EKG on admission")), "test")
        doc.add(": ")
        hr = x.r.randint(60, 110)
        doc.slots["hr"] = str(hr)
        if "afib" in cw and rand() < 0.6:
            doc.add(f"atrial fibrillation at {hr}, no acute ST changes")
        elif "ami" in aw:
            doc.add(doc.pick(("ST depressions in V4-V6", "TWI in the lateral leads", "1mm STD in II, III, aVF")))
        else:
            doc.say(_EKG_NORMAL)
        doc.add(".\n")
    if (("chf" in cw or "chf_exac" in aw) and rand() < 0.7) or rand() < 0.1:
        doc.ent(doc.pick(("TTE", "Echo", "ECHO", "Transthoracic echo")), "test")
        doc.add(": ")
        sev = x.sev_of.get("chf", 0) if "chf" in cw else 0
        if sev == 3:
            finding = doc.pick(("severe global hypokinesis", "severely dilated LV", "severe systolic dysfunction"))
            doc.add(f"LVEF {x.r.randint(10, 25)}%, {finding}.\n")
        elif sev:
            doc.add(f"LVEF {x.r.randint(30, 55)}%, {doc.pick(('moderate', 'mild'))} global hypokinesis; no evidence of "
                    f"severe systolic dysfunction.\n" if rand() < 0.5 else f"LVEF {x.r.randint(35, 55)}%.\n")
        else:
            doc.add(doc.pick(("LVEF >55%, no significant valvular disease.\n", "Normal biventricular function, "
                              "LVEF 60%; no severe valvular disease.\n", "Mild LVH, EF >55%.\n")))
    if "copd" in cw and rand() < 0.35:
        sev = x.sev_of["copd"]
        doc.ent("PFTs", "test")
        fev = {1: x.r.randint(60, 80), 2: x.r.randint(40, 59), 3: x.r.randint(18, 30)}[sev]
        doc.add(f" ([**{x.year0 - x.r.randint(1, 4)}**]): FEV1 {fev}% predicted, FEV1/FVC {x.r.randint(40, 65)}%.\n")
    if "stroke" in aw:
        doc.ent(doc.pick(("MRI brain", "MRI/MRA head")), "test")
        doc.add(": acute infarct in the {} territory.\n".format(doc.pick(("right MCA", "left MCA", "left PCA"))))
    if "pe" in aw:
        doc.ent("CTA chest", "test")
        doc.add(": ")
        doc.ent(doc.pick(("segmental pulmonary emboli", "bilateral pulmonary emboli", "right lower lobe PE")), "problem")
        doc.add(".\n")
    if "hip_fx" in aw:
        doc.ent(doc.pick(("Hip x-ray", "Pelvis/hip films")), "test")
        doc.add(": ")
        doc.ent(doc.pick(("displaced femoral neck fracture", "intertrochanteric fracture")), "problem")
        doc.add(".\n")
    if "cirrhosis" in cw and rand() < 0.6:
        doc.ent(doc.pick(("RUQ ultrasound", "Abdominal US")), "test")
        doc.add(": nodular liver, splenomegaly{}.\n".format(doc.pick((", moderate ascites", "", ", small ascites"))))
    if rand() < 0.3:
        table, against = _RULED_OUT[int(rand() * len(_RULED_OUT))]
        if not any(k in x.akeys for k in against):
            doc.say(table)
            doc.add("\n")
    doc.add("\n")


def _sec_course(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "course")
    s = doc.slots
    rand = x.rand
    s["hx_short"] = _w_hx(x, short=True)
    s["primary"] = lambda d: d.ent(d.pick(x.primary.abbrevs + (x.primary.name,)), "problem")
    doc.say(_COURSE_OPEN)
    doc.add("\n\n" if rand() < 0.6 else " ")
    if x.icu and (x.c.shock[x.v] or x.awkeys & {"sepsis", "resp_failure"}) and rand() < 0.7:
        doc.add(doc.pick(("{He} was admitted to the MICU ", "{He} was initially managed in the ICU ",
                          "ICU course: {He} required ICU level care ")).format(He=s["He"]))
        doc.add(doc.pick(("given hypotension.", "for close monitoring.", "for hemodynamic instability.",
                          "for hypoxia.")) + " ")
        doc.add(doc.pick(("Once stable, {he} was called out to the floor.\n\n", "{He} was transferred to the floor "
                          "on hospital day {d}.\n\n", "\n\n")).format(he=s["he"], He=s["He"], d=x.r.randint(2, 5)))
    numbered = rand() < 0.25
    k = 0
    for d in ([x.primary] + [d for d in x.acute_w if d.key != x.primary.key])[:3]:
        k += 1
        doc.add(f"{k}. " if numbered else doc.pick(("# ", "# ", "#")))
        names = (d.name,) + d.abbrevs
        doc.ent(doc.pick(names) if d.key != x.primary.key or rand() < 0.5 else d.name[:1].upper() + d.name[1:],
                "problem")
        doc.add(": ")
        s["tx"] = _w_tx(x, d)
        s["source"] = doc.pick(("pneumonia", "a urinary source", "a skin source", "unclear")) \
            if not (x.awkeys & {"pneumonia", "uti", "cellulitis"}) else \
            {"pneumonia": "pulmonary", "uti": "urinary", "cellulitis": "skin/soft tissue"}[
                next(k2 for k2 in ("pneumonia", "uti", "cellulitis") if k2 in x.awkeys)]
        s["cause"] = _w_cause(x)
        s["cath"] = _w_cath(x)
        s["egd"] = _w_egd(x)
        s["vent"] = lambda dd: (dd.ent("intubation", "treatment"), dd.add(" and "),
                                dd.ent("mechanical ventilation", "treatment")) if "intubation" in x.procs else \
            dd.ent(dd.pick(("BiPAP", "high-flow oxygen")), "treatment")
        s["lactate"] = _fmt(x.lab("lactate"), 1)
        s["bnp"] = _fmt(x.lab("ntprobnp"), 0)
        s["trop"] = _fmt(x.lab("troponin"), 2)
        s["hct"] = _fmt(x.lab("hematocrit"), 1)
        s["glucose"] = _fmt(x.lab("glucose"), 0)
        s["gap"] = _fmt(x.lab("anion_gap"), 0)
        cr = x.lab("creatinine")
        s["cr"], s["cr0"], s["crd"] = _fmt(cr, 1), _fmt(cr / x.r.uniform(1.8, 2.8), 1), _fmt(cr / x.r.uniform(1.3, 2.0), 1)
        doc.say(_COURSE.get(d.key, _COURSE_GENERIC))
        doc.add("\n\n" if rand() < 0.7 else "\n")
    chronic = [t for t in x.chw if rand() < 0.4][:4]
    if chronic:
        if rand() < 0.5:
            doc.add(doc.pick(("CHRONIC ISSUES:\n", "Chronic issues:\n", "# CHRONIC PROBLEMS:\n", "Chronic:\n")))
        for d, sev, yrs in chronic:
            k += 1
            doc.add(f"{k}. " if numbered else "# ")
            doc.ent(doc.pick(d.abbrevs + (d.name,)) if d.abbrevs else d.name, "problem")
            doc.add(": ")
            s["home"] = _w_home(x, d)
            s["a1c"] = f"{x.r.uniform(*_A1C[sev]):.1f}"
            s["sev"] = _w_sev(x, d, sev)
            doc.say(_CHRONIC_COURSE.get(d.key, _CHRONIC_GENERIC))
            doc.add("\n")
        doc.add("\n")
    for _ in range(1 if x.rand() < 0.7 else 2):
        doc.say(_CONSULT)
        doc.add(" ")
    for t in x.bucket["course"]:
        doc.say(t)
        doc.add(" ")
    doc.add("\n\n")
    if x.died:
        s["ddate"] = _date(x.c.disch[x.v])
        doc.say(_DEATH)
        doc.add("\n\n")
        return
    if rand() < 0.45:
        doc.say(_FEN)
        doc.add("\n")
    if rand() < 0.7:
        s["code"] = doc.pick(("DNR/DNI", "DNR, ok to intubate", "DNR/DNI (confirmed)")) if (x.age > 80 and rand() < 0.5) \
            else doc.pick(("Full code", "Full", "Full (confirmed)", "FULL"))
        doc.say(_CODE)
        doc.add("\n")
    if rand() < 0.4:
        doc.say(_CONTACT)
        doc.add("\n")
    doc.add("\n")


def _w_cause(x: _Note):
    def write(doc: _Doc) -> None:
        if x.nonadherent and x.rand() < 0.6:
            doc.say(_CAUSE["count"])
        elif not x.nonadherent and x.rand() < 0.35:
            doc.say(_CAUSE["non"])
        else:
            doc.say(_CAUSE["plain"])
    return write


def _w_cath(x: _Note):
    def write(doc: _Doc) -> None:
        if "cath" in x.procs:
            doc.add("Underwent ")
            doc.ent(doc.pick(("cardiac catheterization", "cardiac cath", "LHC")), "treatment")
            doc.add(" which showed {}-vessel ".format(doc.pick(("2", "3", "single", "two"))))
            doc.ent("CAD", "problem")
            if "pci" in x.procs:
                doc.add("; ")
                doc.ent(doc.pick(("a drug-eluting stent", "DES x1", "a bare metal stent")), "treatment")
                doc.add(" was placed to the {}.".format(doc.pick(("LAD", "RCA", "LCx", "OM1"))))
            else:
                doc.add(", managed medically.")
        else:
            doc.add(doc.pick(("Managed medically per cardiology.", "Cardiology recommended medical management.",
                              "Cath was deferred given {}.".format(doc.pick(("renal function", "patient preference",
                                                                             "comorbidities"))))))
    return write


def _w_egd(x: _Note):
    def write(doc: _Doc) -> None:
        if "egd" in x.procs:
            doc.ent(doc.pick(("EGD", "Upper endoscopy")), "treatment")
            doc.add(" showed ")
            doc.ent(doc.pick(("a bleeding duodenal ulcer", "a gastric ulcer with a visible vessel", "esophageal varices",
                              "erosive gastritis")), "problem")
            doc.add(doc.pick((", treated endoscopically. ", ". ", ", which was banded. ")))
        if "transfusion" in x.procs:
            doc.add("Received {} units of ".format(doc.pick(("1", "2", "3", "4"))))
            doc.ent(doc.pick(("pRBCs", "packed red cells")), "treatment")
            doc.add(".")
    return write


_A1C = {1: (6.0, 7.4), 2: (7.5, 9.8), 3: (10.0, 14.0)}
# Severity of CHF / COPD / DM2 restated in the hospital course: counting at severity 3, the same
# keywords negated or historical otherwise.
_SEV_COURSE = {
    ("chf", True): _T(" Last EF {10-25}%; severe systolic dysfunction.", " Known end-stage HF, EF {10-25}%.",
                      " EF {10-25}% on last TTE{|, NYHA IV}."),
    ("copd", True): _T(" Severe disease at baseline, on {2-4}L home O2.", " FEV1 {18-30}% predicted; oxygen-dependent "
                       "at home."),
    ("dm2", True): _T(" Uncontrolled, A1c {10-14}.{1-9}%.", " Very poorly controlled on insulin (A1c {11-14}%)."),
    ("chf", False): _T(" Not felt to be severe; last EF {40-55}%.", " No evidence of severe LV dysfunction (EF "
                       "{40-55}%)."),
    ("copd", False): _T(" Not oxygen-dependent; FEV1 {50-80}% predicted.", " Mild-moderate disease, no home O2."),
    ("dm2", False): _T(" Previously uncontrolled, now A1c {6-7}.{1-9}%.", " Not uncontrolled; A1c {6-8}.{1-9}%."),
}


def _w_sev(x: _Note, d: cat.Disease, sev: int):
    def write(doc: _Doc) -> None:
        if d.key in _SEVERE and x.rand() < 0.45:
            doc.say(_SEV_COURSE[d.key, sev == 3])
    return write


def _sec_transitional(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "transitional")
    items = ["- f/u {} at PCP visit".format(doc.pick(("blood cultures", "final read of imaging", "pending labs"))),
             "- recheck {} in 1 week".format(doc.pick(("chem-7", "CBC", "BMP", "electrolytes"))),
             "- code status: {}".format(doc.pick(("full", "full code", "DNR/DNI"))),
             "- consider outpatient {}".format(doc.pick(("sleep study", "colonoscopy", "PFTs", "echo")))]
    if "chf" in x.cwkeys or "chf_exac" in x.awkeys:
        items.append(f"- titrate diuretics to dry weight {x.r.randint(55, 105)} kg")
    if x.no_pcp and x.rand() < 0.5:
        items.append(doc.pick(("- needs a PCP", "- establish primary care", "- has no PCP; new patient appt made")))
    elif x.rand() < 0.25:
        items.append(doc.pick(("- PCP to follow up on pending studies", "- establish care with cardiology",
                               "- PCP: please reassess BP")))
    x.r.shuffle(items)
    doc.add("\n".join(items[:x.r.randint(2, 5)]) + "\n\n")


def _med_line(doc: _Doc, x: _Note, j: int, d: cat.Drug, mimic: bool) -> None:
    doc.add(f"{j}. ")
    name = d.drug if mimic else x.alias(d.key)
    doc.ent(name, "treatment")
    if mimic:
        n = int(float(d.form_val)) if d.form_val.replace(".", "", 1).isdigit() else 1
        n = max(1, min(n, 4))
        form = {"TAB": "Tablet", "CAP": "Capsule", "NEB": "Neb", "INH": "Disk with Device", "PTCH": "Patch 24 hr",
                "mL": "mL", "UDCUP": "Solution"}.get(d.form_unit, "Tablet")
        freq = _SIG_FREQ.get(d.freq, d.freq.upper() if d.freq else "DAILY (Daily)")
        doc.add(f" {d.dose} {d.unit} {form} Sig: {_NUMWORD[n]} ({n}) {form} {d.route} {freq}.\n")
        if x.rand() < 0.35:
            doc.add(f"Disp:*{x.r.choice((30, 60, 90, 14, 7))} {form}(s)* Refills:*{x.r.randint(0, 3)}*\n")
    else:
        freq = f" {d.freq}" if d.freq else ""
        doc.add(f" {d.dose} {d.unit.lower() if d.unit in ('mg', 'mcg') else d.unit} {d.route}{freq}\n")


def _sec_adm_meds(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "adm_meds")
    chronic_drugs = {cat.DRUG_INDEX[k] for d, _, _ in x.chronic for k in d.drugs if k in cat.DRUG_INDEX}
    meds = [cat.DRUGS[i] for i in x.home_drugs if i in chronic_drugs]
    if meds and x.rand() < 0.45:                        # the list lives elsewhere (pharmacy, OMR)
        doc.add(doc.pick(("Please see discharge medications below.\n\n", "Per OMR; reconciled with pharmacy.\n\n",
                          "Unable to obtain at the time of admission.\n\n", "As per the medication reconciliation.\n\n",
                          "See discharge medications (no changes except as noted).\n\n")))
        if x.nonadherent and x.rand() < 0.2:
            doc.add(doc.pick(("Of note, pt reports not taking any of {} home medications for several weeks.\n\n",
                              "** Has not been taking {} medications **\n\n")).format(doc.slots["his"]))
        return
    if x.rand() < 0.4:
        doc.add(doc.pick(("The Preadmission Medication list is accurate and complete.\n",
                          "Medications - Prescription\n", "Per OMR and patient:\n")))
    if not meds:
        doc.add(doc.pick(("None\n\n", "none\n\n", "No home medications.\n\n")))
        return
    for j, d in enumerate(meds, 1):
        _med_line(doc, x, j, d, mimic=False)
    if x.nonadherent and x.rand() < 0.2:
        doc.add(doc.pick(("(pt reports not taking any of the above for several weeks)\n",
                          "** Has not been taking {} medications **\n")).format(doc.slots["his"]))
    elif not x.nonadherent and x.rand() < 0.1:
        doc.add("(taking all of the above as prescribed, per pharmacy fill history)\n")
    doc.add("\n")


def _sec_dc_meds(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "dc_meds")
    meds = [cat.DRUGS[i] for i in x.dc_drugs]
    if x.died or not meds:
        doc.add("None\n\n")
        return
    mimic = x.rand() < 0.3
    for j, d in enumerate(meds, 1):
        _med_line(doc, x, j, d, mimic)
    doc.add("\n")


def _sec_dispo(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "dispo")
    if x.died:
        doc.add("Expired\n\n")
        return
    u = x.rand()
    if u < 0.45:
        doc.add("Home\n\n")
    elif u < 0.8:
        doc.add("Home With Service\n\n")
        if x.rand() < 0.6:
            doc.add(f"Facility:\n[**Location (un) {x.r.randint(10, 999)}**] VNA\n\n")
    else:
        doc.add("Extended Care\n\n")
        if x.rand() < 0.7:
            doc.add(f"Facility:\n[**Hospital{x.r.choice(('1', '3', ''))} {x.r.randint(1, 999)}**] "
                    f"{doc.pick(('Rehab', 'Nursing Home', 'Rehabilitation Center', 'for the Aged'))}\n\n")


def _sec_dx(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "dx")
    secondary = [d.name for d in x.acute_w if d.key != x.primary.key]
    secondary += [d.name for d, _, _ in x.chw if x.rand() < 0.35]
    style = x.r.randint(0, 2)
    if style == 0:
        doc.add("Primary:\n")
        doc.ent(x.primary.name, "problem")
        if secondary:
            doc.add("\n\nSecondary:\n")
            doc.ents(secondary, "problem", sep="\n", last="\n")
    elif style == 1:
        doc.add(doc.pick(("PRIMARY DIAGNOSIS:\n", "Primary diagnosis:\n")))
        doc.ent(x.primary.name, "problem")
        if secondary:
            doc.add(doc.pick(("\n\nSECONDARY DIAGNOSES:\n", "\n\nSecondary diagnoses:\n")))
            doc.ents(secondary, "problem", sep="\n", last="\n")
    else:
        doc.add("1. ")
        doc.ent(x.primary.name, "problem")
        for j, s in enumerate(secondary, 2):
            doc.add(f"\n{j}. ")
            doc.ent(s, "problem")
    doc.add("\n\n")


def _sec_condition(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "condition")
    if x.died:
        doc.add("Expired.\n\n")
        return
    if x.rand() < 0.55:
        doc.add("Mental Status: {}\nLevel of Consciousness: {}\nActivity Status: {}\n\n".format(
            doc.pick(("Clear and coherent.", "Confused - sometimes.", "Clear and coherent.")),
            doc.pick(("Alert and interactive.", "Lethargic but arousable.", "Alert and interactive.")),
            doc.pick(("Ambulatory - Independent.", "Ambulatory - requires assistance or aid (walker or cane).",
                      "Out of Bed with assistance to chair or wheelchair."))))
    else:
        doc.add(doc.pick(("Stable.\n\n", "Good.\n\n", "Fair, ambulating with a walker.\n\n", "Stable, afebrile.\n\n",
                          "Hemodynamically stable, tolerating PO.\n\n")))


def _sec_instr(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "instr")
    s = doc.slots
    s["lay"] = _LAY.get(x.primary.key, x.primary.name)
    doc.say(_INSTR_OPEN)
    doc.add(" ")
    for _ in range(1 if x.rand() < 0.85 else 2):
        doc.say(_INSTR_COURSE)
        doc.add(" ")
    doc.add("\n\n")
    for key in ("chf", "copd", "dm2", "afib", "tobacco", "alcohol"):
        if key in x.cwkeys and x.rand() < 0.45:
            doc.say(_INSTR_CHRONIC[key])
            doc.add(" ")
    for t in x.bucket["instr"]:
        doc.say(t)
        doc.add(" ")
    if x.rand() < 0.5 and x.home_drugs:
        doc.add(doc.pick(("\n\nThe following changes were made to your medications:\n",
                          "\n\nMedication changes:\n", "\n\nPlease note these medication changes:\n")))
        idx = x.r.sample(x.home_drugs, min(len(x.home_drugs), x.r.randint(1, 3)))
        for i in idx:
            doc.add(doc.pick(("- START ", "- STOP ", "- CHANGE ", "- CONTINUE ", "- INCREASE ")))
            doc.ent(x.alias(cat.DRUGS[i].key), "treatment")
            doc.add("\n")
    doc.add("\n")
    doc.say(_INSTR_RETURN)
    doc.add("\n\n")
    close = _INSTR_CLOSE[int(x.rand() * len(_INSTR_CLOSE))]
    doc.emit(close)
    doc.add("\n\n")


def _sec_followup(doc: _Doc, x: _Note) -> None:
    _head(doc, x, "followup")
    s = doc.slots
    s["fdate"] = _shift(x.c.disch[x.v], x.r.randint(3, 21))
    s["weekday"] = doc.pick(_WEEKDAYS)
    if x.no_pcp:
        doc.say(_FOLLOW_NOPCP if x.rand() < 0.4 else _FOLLOW_PCP)
    else:
        doc.say(_FOLLOW_NEWPCP if x.rand() < 0.12 else _FOLLOW_PCP)
    doc.add("\n\n")
    for _ in range(x.r.randint(0, 1)):
        s["fdate"] = _shift(x.c.disch[x.v], x.r.randint(5, 40))
        s["weekday"] = doc.pick(_WEEKDAYS)
        doc.say(_FOLLOW_SPEC)
        doc.add("\n\n")
    if x.rand() < 0.3:
        doc.add("Completed by:[**{}**]\n".format(_shift(x.c.disch[x.v], x.r.randint(0, 3))))


# ==============================================================================================
# The note
# ==============================================================================================


def _order(x: _Note) -> list:
    """Section writers in this note's order: MIMIC's usual order with optional sections and a few
    common swaps (social before the PMH, results before the exam, home medications up front...)."""
    rand = x.rand
    secs = [_sec_top, _sec_cc]
    proc_late = rand() < 0.1
    if rand() < 0.85 and not proc_late:
        secs.append(_sec_proc)
    secs.append(_sec_hpi)
    if proc_late:
        secs.append(_sec_proc)
    if rand() < 0.35:
        secs.append(_sec_ros)
    hist = [_sec_pmh]
    if rand() < 0.25:
        hist.append(_sec_psh)
    adm_early = rand() < 0.45
    if adm_early:
        hist.append(_sec_adm_meds)
    sf = [_sec_social, _sec_family] if rand() < 0.75 else [_sec_family, _sec_social]
    if rand() < 0.15:
        hist = sf + hist
    else:
        hist = hist + sf
    if adm_early and rand() < 0.3:                       # home medications right after the HPI
        hist.remove(_sec_adm_meds)
        hist.insert(0, _sec_adm_meds)
    secs += hist
    er = [_sec_exam, _sec_results] if rand() < 0.8 else [_sec_results, _sec_exam]
    if rand() < 0.07:
        er = [_sec_results]
    dc_exam = rand() < 0.2 and not x.died
    if dc_exam and rand() < 0.4:
        er.append(_sec_dc_exam)
        dc_exam = False
    secs += er
    secs.append(_sec_course)
    if rand() < 0.25 and not x.died:
        secs.append(_sec_transitional)
    if not adm_early:
        secs.append(_sec_adm_meds)
    secs.append(_sec_dc_meds)
    tail = [_sec_dispo, _sec_dx, _sec_condition]
    if rand() < 0.2:
        tail = [_sec_dispo, _sec_condition, _sec_dx]
    elif rand() < 0.1:
        tail = [_sec_dx, _sec_condition, _sec_dispo]
    if dc_exam:
        tail.insert(int(rand() * 4), _sec_dc_exam)
    secs += tail
    if not x.died:
        secs.append(_sec_instr)
        secs.append(_sec_followup)
    return secs


def discharge_summary(c, v: int, r: random.Random) -> tuple[str, list[tuple[int, int, str]]]:
    """One discharge summary for visit index `v` of cohort `c` -> (text, [(start, end, label)])."""
    x = _Note(c, v, r)
    doc = _Doc(r, typo_rate=0.03)
    male = x.male
    doc.slots.update({
        "he": "he" if male else "she", "He": "He" if male else "She", "his": "his" if male else "her",
        "His": "His" if male else "Her", "him": "him" if male else "her", "himself": "himself" if male else "herself",
        "man": "man" if male else "woman", "M": "M" if male else "F", "Mr": "Mr." if male else "Ms.",
        "age": str(x.age), "co": x.co, "co_he": x.co_he, "co_his": x.co_his, "contact": x.contact,
        "occupation": x.occupation, "Occupation": x.occupation[:1].upper() + x.occupation[1:],
        "a_occupation": x.occupation if x.occupation.split()[0] in ("on", "works", "unemployed") else
        ("an " if x.occupation[0] in "aeiou" else "a ") + x.occupation,
        "year": str(x.year0 - r.randint(1, 12)), "oldyear": str(x.year0 - r.randint(15, 40)),
        "date": _shift(c.admit[v], -r.randint(20, 400)), "days": str(r.choice((1, 2, 3, 3, 4, 5, 7, 10, 14))),
        "weekday": r.choice(_WEEKDAYS[5:]), "n": "5", "dx_year": "", "age_at": "", "age_dx": "", "decades": "two",
        "hx": _w_hx(x, short=False), "sx": _w_sx(x), "neg": _w_neg(x),
    })
    others = [o for o in _OTHERS if o[0] != x.co]                 # not the person the patient lives with
    other, o_male = others[int(x.rand() * len(others))]
    doc.slots.update({"other": other, "o_he": "he" if o_male else "she", "o_his": "his" if o_male else "her",
                      "o_him": "him" if o_male else "her", "o_himself": "himself" if o_male else "herself"})
    names = x.drug_names
    doc.slots["drug"] = names[int(x.rand() * len(names))]
    # One side per note: the cellulitis, the hip, the pneumonia and the stroke stay on it.
    right = x.rand() < 0.5
    doc.slots.update({"side": "right" if right else "left", "S": "R" if right else "L", "SLE": "RLE" if right else "LLE",
                      "SLL": "RLL" if right else "LLL", "side_brain": "left" if right else "right"})
    _plan_facts(x)
    for write in _order(x):
        write(doc, x)
    text = doc.text().rstrip() + "\n"
    return text, doc.spans
