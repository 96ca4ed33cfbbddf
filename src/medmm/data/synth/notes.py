"""Discharge summaries written from the latent state, with the character span of every entity.

A note is what a clinician would dictate: it carries what codes lack (the reason for admission,
durations, severity words, doses, social facts such as "lives alone" or non-adherence) and it
carries noise (family history, negated findings, abbreviations, misspellings). Conditions that
drive readmission through the code side are seldom written (their `note_p` is low).

Every entity mention is recorded as (start, end, label) with label in {problem, treatment, test}
(the i2b2 2010 concept classes the NER probe uses); negated and family-history problems are
problems too, as in i2b2. Notes are ASCII and never start with whitespace, so medmm's
length-preserving cleaning (lower-case, each CR/LF -> one space) keeps every offset valid.
"""

from __future__ import annotations

import random

import numpy as np

from medmm.data.synth import catalog as cat

# How a drug is named in a note (lower-case generic names, like dictated discharge medications).
NOTE_NAME = {d.key: d.key.replace("_", " ") for d in cat.DRUGS}
NOTE_NAME.update({
    "pip_tazo": "piperacillin-tazobactam", "fluticasone_salmeterol": "fluticasone-salmeterol",
    "insulin_regular": "insulin sliding scale", "nicotine": "nicotine patch", "epoetin": "epoetin alfa",
    "ns": "normal saline", "d5w": "D5W", "sw": "sterile water",
})
# Drugs a note seldom lists: they belong to the code-side conditions (see latent.READMIT).
_QUIET_DRUGS = {cat.DRUG_INDEX[k] for k in ("sevelamer", "calcitriol", "epoetin", "ferrous_sulfate", "lactulose")}

_PROC_TEXT = {k: v[1] for k, v in cat.PROCEDURES.items()}


class _Doc:
    """Accumulates text and entity spans; offsets are character offsets into the final string."""

    __slots__ = ("parts", "n", "spans")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.n = 0
        self.spans: list[tuple[int, int, str]] = []

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.n += len(s)

    def ent(self, s: str, label: str) -> None:
        self.spans.append((self.n, self.n + len(s), label))
        self.add(s)

    def ents(self, items: list[str], label: str, sep: str = ", ", last: str = " and ") -> None:
        for i, s in enumerate(items):
            if i:
                self.add(last if i == len(items) - 1 else sep)
            self.ent(s, label)

    def text(self) -> str:
        return "".join(self.parts)


def _date(t: np.datetime64) -> str:
    y, m, d = str(t)[:10].split("-")
    return f"{int(y)}-{int(m)}-{int(d)}"


def _disease_phrase(d: cat.Disease, r: random.Random) -> str:
    if d.misspell and r.random() < 0.06:
        return d.misspell
    if d.abbrevs and r.random() < 0.45:
        return r.choice(d.abbrevs)
    return d.name


def _chronic_mention(doc: _Doc, d: cat.Disease, sev: int, years: float, r: random.Random) -> None:
    """'poorly controlled DM2 for 12 years' / 'CHF (EF 25%)' / 'hypertension'."""
    word = d.severity_words[sev - 1]
    say_sev = sev >= 2 and r.random() < 0.85 or sev == 1 and r.random() < 0.2
    if say_sev and d.key in ("ckd", "lung_ca"):
        doc.ent(f"{word} {_disease_phrase(d, r)}", "problem")
    else:
        if say_sev:
            doc.add(word + " ")
        doc.ent(_disease_phrase(d, r), "problem")
    if d.key == "chf" and r.random() < 0.7:
        doc.add(f" (EF {int(np.clip(60 - 12 * sev + r.randint(-5, 5), 10, 65))}%)")
    if d.key == "copd" and sev == 3 and r.random() < 0.8:
        doc.add(f" on {r.choice([2, 3, 4])}L home ")
        doc.ent("oxygen", "treatment")
    if r.random() < (0.8 if years > 15 else 0.4):
        doc.add(f" for {max(1, int(round(years)))} years")


def discharge_summary(c, v: int, r: random.Random) -> tuple[str, list[tuple[int, int, str]]]:
    """One discharge summary for visit index `v` of cohort `c` -> (text, [(start, end, label)])."""
    p = int(c.v_patient[v])
    doc = _Doc()
    male = bool(c.male[p])
    he, his, Him = ("he", "his", "He") if male else ("she", "her", "She")
    reason = cat.REASONS[int(c.reason[v])]
    died = bool(c.died[v])
    chronic = [(cat.CHRONIC[i], int(c.sev[v, i]), float(c.years[v, i])) for i in np.flatnonzero(c.chronic[p])]
    written = [x for x in chronic if r.random() < x[0].note_p]
    acute = [cat.ACUTE[i] for i in np.flatnonzero(c.acute[v])]
    acute_keys = {d.key for d in acute}

    doc.add(f"Admission Date:  [**{_date(c.admit[v])}**]              Discharge Date:   [**{_date(c.disch[v])}**]\n\n")
    doc.add(f"Date of Birth:  [**{_date(c.birth[p])}**]             Sex:   {'M' if male else 'F'}\n\n")
    doc.add(f"Service: {reason.service}\n\n")
    doc.add("Allergies:\n")
    if r.random() < 0.2:
        doc.ent(r.choice(["Penicillins", "Sulfa (Sulfonamide Antibiotics)", "Codeine"]), "treatment")
        doc.add("\n\n")
    else:
        doc.add("No Known Allergies / Adverse Drug Reactions\n\n")

    # ---- Chief complaint and HPI
    doc.add("Chief Complaint:\n")
    doc.ent(reason.complaint, "problem")
    doc.add("\n\nHistory of Present Illness:\n")
    age = int(c.age[v])
    doc.add(f"{age} year old {'man' if male else 'woman'} ")
    if written:
        doc.add("with a history of ")
        order = written[:]
        r.shuffle(order)
        for i, (d, sev, yrs) in enumerate(order[:6]):
            if i:
                doc.add(", " if i < min(len(order), 6) - 1 else " and ")
            _chronic_mention(doc, d, sev, yrs, r)
        doc.add(" ")
    days = r.choice([1, 2, 3, 3, 4, 5, 7, 10, 14])
    doc.add(f"who presents with {days} days of ")
    doc.ents(list(reason.symptoms), "problem")
    doc.add(". ")
    if c.v_index[v] > 0 and r.random() < 0.7:
        doc.add("Of note, recently admitted to this hospital. ")
    if c.nonadherent[v] and r.random() < 0.9:
        doc.add(r.choice([
            f"{Him} reports that {he} has not been taking {his} medications for the past {r.randint(1, 6)} weeks. ",
            f"{Him} admits to being non-adherent to medications. ",
            f"{Him} ran out of {his} medications and did not refill them. ",
            f"Per family, {he} is noncompliant with {his} medications. ",
        ]))
    elif r.random() < 0.5:
        doc.add(f"{Him} reports taking all medications as prescribed. ")
    neg = [s for s in cat.NEGATABLE if s not in reason.symptoms]
    r.shuffle(neg)
    k = r.randint(1, 3)
    doc.add(f"{Him} {r.choice(['denies', 'denies any'])} ")
    doc.ents(neg[:k], "problem", last=" or ")
    doc.add(". ")
    if "sepsis" in acute_keys:
        doc.add("In the ED was febrile and hypotensive, ")
        doc.ent("blood cultures", "test")
        doc.add(" were drawn and ")
        doc.ent("broad spectrum antibiotics", "treatment")
        doc.add(" were started. ")
    if c.icu[v]:
        doc.add("Admitted to the ICU for closer monitoring. ")
    doc.add("\n\n")

    # ---- PMH
    doc.add("Past Medical History:\n")
    if not written:
        doc.add("None\n")
    for d, sev, yrs in written:
        doc.add("- ")
        _chronic_mention(doc, d, sev, yrs, r)
        doc.add("\n")
    doc.add("\n")

    # ---- Social history
    doc.add("Social History:\n")
    if c.homeless[p]:
        doc.add("Currently homeless, staying at shelters. ")
    elif c.lives_alone[p] and r.random() < 0.95:
        doc.add(r.choice(["Lives alone. ", "Lives alone in an apartment. ", "Widowed, lives alone. "]))
    else:
        doc.add(r.choice([f"Lives with {his} {'wife' if male else 'husband'}. ", f"Lives with {his} daughter. ",
                          "Lives with family. "]))
    if c.no_pcp[p] and r.random() < 0.9:
        doc.add("Does not have a primary care physician. ")
    keys = {d.key for d, _, _ in chronic}
    if "tobacco" in keys:
        doc.add(f"Smokes {r.choice([1, 1, 2])} pack per day. ")
    elif r.random() < 0.3:
        doc.add(f"Former smoker, quit {r.randint(2, 30)} years ago. ")
    else:
        doc.add("Denies tobacco. ")
    if "alcohol" in keys:
        doc.add(f"Drinks {r.choice(['a pint of vodka', '6-8 beers', 'a bottle of wine'])} daily. ")
    else:
        doc.add(r.choice(["Occasional alcohol. ", "Denies alcohol or illicit drug use. ", "No EtOH. "]))
    doc.add("\n\nFamily History:\n")
    if r.random() < 0.35:
        doc.add("Non-contributory.\n\n")
    else:
        fam = r.sample(cat.FAMILY, 2)
        doc.add(f"{r.choice(['Mother', 'Father'])} had ")
        doc.ent(fam[0], "problem")
        doc.add(". ")
        if r.random() < 0.5:
            doc.add(f"{r.choice(['Brother', 'Sister'])} with ")
            doc.ent(fam[1], "problem")
            doc.add(".")
        doc.add("\n\n")

    # ---- Pertinent results (tests)
    doc.add("Pertinent Results:\n")
    lp = c.lab_params
    li = cat.LAB_INDEX
    if "aki" in acute_keys or r.random() < 0.15:
        cr = lp["base"][v, li["creatinine"]]
        peak = cr + lp["delta"][v, li["creatinine"]]
        doc.ent("Creatinine", "test")
        doc.add(f" peaked at {peak:.1f}. " if "aki" in acute_keys else f" {cr:.1f}. ")
    if c.shock[v] or "sepsis" in acute_keys:
        lac = lp["base"][v, li["lactate"]] + lp["delta"][v, li["lactate"]]
        doc.ent("Lactate", "test")
        doc.add(f" {lac:.1f}. ")
    if "dm2" in keys and r.random() < 0.7:
        g = lp["base"][v, li["glucose"]] + lp["delta"][v, li["glucose"]]
        name = r.choice(["Glucose", "Blood sugar", "HbA1c"])
        doc.ent(name, "test")
        doc.add(f" {min(14.0, 4 + g / 40):.1f}%. " if name == "HbA1c" else f" {int(g)}. ")
    if "hyponatremia" in acute_keys and r.random() < 0.25:
        doc.ent("Sodium", "test")
        doc.add(f" {int(lp['base'][v, li['sodium']])}. ")
    if "ami" in acute_keys:
        doc.ent("Troponin", "test")
        doc.add(" elevated. ")
        doc.ent("EKG", "test")
        doc.add(" with ST depressions. ")
    if "pneumonia" in acute_keys:
        doc.ent(r.choice(["Chest x-ray", "CXR"]), "test")
        doc.add(" showed a right lower lobe ")
        doc.ent("consolidation", "problem")
        doc.add(". ")
    elif r.random() < 0.5:
        doc.ent(r.choice(["Chest x-ray", "CXR"]), "test")
        doc.add(" with no evidence of ")
        doc.ent(r.choice(["pneumonia", "effusion", "pneumothorax"]), "problem")
        doc.add(". ")
    if "chf" in keys and r.random() < 0.5:
        doc.ent("Echocardiogram", "test")
        doc.add(" showed reduced ejection fraction. ")
    if "stroke" in acute_keys:
        doc.ent("CT scan of the head", "test")
        doc.add(" showed an acute infarct. ")
    doc.add("\n\n")

    # ---- Hospital course: one paragraph per acute problem
    doc.add("Brief Hospital Course:\n")
    orders = c.orders[v]
    given = {i for i, _, _ in orders}
    for d in acute:
        if d.key in ("hyponatremia",) and r.random() > d.note_p:
            continue
        if d.key not in (reason.acute,) and r.random() > d.note_p:
            continue
        doc.add("# ")
        doc.ent(_disease_phrase(d, r), "problem")
        drugs = [NOTE_NAME[k] for k in d.drugs if cat.DRUG_INDEX[k] in given]
        if drugs:
            doc.add(": treated with ")
            doc.ents(drugs, "treatment")
            doc.add(". ")
        else:
            doc.add(": managed supportively. ")
        if d.key == "resp_failure" and "intubation" in c.procedures[v]:
            doc.add("Required ")
            doc.ent("intubation", "treatment")
            doc.add(" and ")
            doc.ent("mechanical ventilation", "treatment")
            doc.add(". ")
        if d.key in ("septic_shock", "cardiogenic_shock"):
            doc.add("Required ")
            doc.ent("vasopressors", "treatment")
            doc.add(". ")
        doc.add("\n")
    for pk in c.procedures[v]:
        if pk in ("intubation", "vent_short", "vent_long") or r.random() < 0.5:
            continue
        doc.add("Underwent ")
        doc.ent(_PROC_TEXT[pk], "treatment")
        doc.add(".\n")
    if died:
        doc.add(f"Despite maximal therapy {he} continued to decline. After discussion with family, care was "
                f"transitioned to comfort measures and {he} expired.\n\n")
    doc.add("\n")

    # ---- Discharge medications (with doses)
    doc.add("Discharge Medications:\n")
    meds = [cat.DRUGS[i] for i, _, _ in orders if cat.DRUGS[i].discharge
            and (i not in _QUIET_DRUGS or r.random() < 0.15)]
    if died or not meds:
        doc.add("None\n")
    for j, d in enumerate(meds, 1):
        doc.add(f"{j}. ")
        doc.ent(NOTE_NAME[d.key], "treatment")
        freq = f" {d.freq}" if d.freq else ""
        doc.add(f" {d.dose} {d.unit} {d.route}{freq}\n")
    doc.add("\nDischarge Disposition:\n")
    doc.add("Expired\n\n" if died else r.choice(["Home\n\n", "Home With Service\n\n", "Extended Care\n\n"]))

    # ---- Discharge diagnosis
    doc.add("Discharge Diagnosis:\nPrimary: ")
    doc.ent(cat.ACUTE[cat.ACUTE_INDEX[reason.acute]].name, "problem")
    secondary = [d.name for d in acute if d.key != reason.acute]
    secondary += [d.name for d, _, _ in written if r.random() < 0.5]
    if secondary:
        doc.add("\nSecondary: ")
        doc.ents(secondary, "problem", last=", ")
    doc.add("\n\nDischarge Condition:\n")
    doc.add("Expired.\n" if died else r.choice(["Stable.\n", "Good.\n", "Fair, ambulating with a walker.\n"]))
    if not died:
        doc.add("\nFollowup Instructions:\n")
        doc.add("Follow up with your primary care physician within 1 week.\n" if not c.no_pcp[p]
                else "Please establish care with a primary care physician.\n")
    return doc.text(), doc.spans
