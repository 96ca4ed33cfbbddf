"""The latent patient model: who is ill with what, how badly, when they come back.

This module knows nothing about file layouts. It draws a `Cohort` - columnar numpy arrays of
patient-level and visit-level latent state - and, from it, measurement trajectories (labs, vitals)
as columnar arrays. Layout writers (`mimic3.py`; later MIMIC-IV, MIMIC-CXR) turn a Cohort into
files, and imaging can be added by drawing studies at offsets from `Cohort.admit` / `Cohort.disch`
from the same per-visit state (pneumonia, heart failure, effusion...) without touching this code.

Generative story (per patient p, visit v):

    z_p ~ N(0, I_4)                      latent factors: cardiometabolic, pulmonary, liver, frailty
    chronic_{p,d} ~ Bern(sigmoid(a_d + w_d . z_p + b_d (age-65) + sum_parents c_{d,e} chronic_{p,e}))
    severity_{p,d} in {1,2,3}, duration_{p,d} (years)
    social_p: lives alone, homeless, no primary care, non-adherence propensity
    for v = 0, 1, ...:                  (drawn in rounds: every still-active patient at once)
        reason_v ~ Cat(softmax(log w_r + boosts from chronic_p))
        acuity_v = shift_r + 0.35 frailty + 0.12 sum severity + eps
        acute complications, ICU, shock / acute-kidney-injury onsets, death  (Bernoulli, logistic)
        (respiratory failure with a time, the "ARF" of MedCSP: `respiratory.py`)
        logit r_v = code_part + note_part + shared_part + hidden_part     (Eq. R below)
        p_readmit_30d = sigmoid(r_v); readmit_30d ~ Bern(p_readmit_30d)   (0 if died)
        next admission: gap ~ 1 + 29 Beta(1.2, 2) days if readmit_30d, else with probability
        q_v after 31 + LogNormal days, else none.

Eq. R splits the readmission logit by where a factor is visible: `code_part` from conditions that
are almost always coded and seldom written (advanced CKD/dialysis, cirrhosis, cancer, anaemia,
thrombocytopenia, hyponatraemia); `note_part` from facts only the note carries (lives alone,
homeless, non-adherence, no primary care, disease severity words, long durations);
`shared_part` from conditions both show; `hidden_part` from frailty and noise that neither shows,
so that the oracle (the saved probability) beats any model.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from medmm.data.synth import catalog as cat
from medmm.data.synth import codeworld
from medmm.ontology.icd9 import icd9_dx_category

# Latent factor indices.
F_CM, F_PULM, F_LIVER, F_FRAIL = range(4)

# Chronic-condition model, in topological order (parents first):
# key: (intercept, {factor: loading}, per-year age slope, {parent: log-odds}, male log-odds)
CHRONIC_MODEL: dict[str, tuple[float, dict[int, float], float, dict[str, float], float]] = {
    "tobacco": (-1.3, {F_PULM: 1.0}, -0.01, {}, 0.3),
    "alcohol": (-2.4, {F_LIVER: 1.5}, -0.01, {"tobacco": 0.6}, 0.6),
    "htn": (-0.1, {F_CM: 1.0}, 0.04, {}, 0.0),
    "dm2": (-1.0, {F_CM: 1.2}, 0.015, {}, 0.0),
    "dm_neuro": (-9.0, {}, 0.01, {"dm2": 7.3}, 0.0),
    "hld": (-0.8, {F_CM: 1.0}, 0.02, {"dm2": 0.6}, 0.0),
    "obesity": (-1.6, {F_CM: 0.8}, -0.01, {"dm2": 0.6}, 0.0),
    "cad": (-1.9, {F_CM: 1.0}, 0.04, {"dm2": 0.5, "hld": 0.5, "tobacco": 0.4}, 0.4),
    "chf": (-2.3, {F_CM: 1.0}, 0.04, {"cad": 1.0, "htn": 0.4}, 0.0),
    "afib": (-2.4, {}, 0.06, {"chf": 1.0}, 0.0),
    "ckd": (-2.4, {F_CM: 0.6}, 0.03, {"dm2": 0.9, "htn": 0.6, "chf": 0.6}, 0.0),
    "copd": (-2.0, {F_PULM: 1.4}, 0.03, {"tobacco": 1.3}, 0.0),
    "asthma": (-3.2, {F_PULM: 0.8}, -0.02, {}, -0.3),
    "osa": (-3.0, {}, 0.0, {"obesity": 1.5}, 0.4),
    "lung_ca": (-4.2, {F_PULM: 0.3}, 0.03, {"tobacco": 1.4}, 0.0),
    "cirrhosis": (-3.6, {F_LIVER: 1.2}, 0.0, {"alcohol": 1.9}, 0.0),
    "anemia": (-3.0, {}, 0.01, {"ckd": 1.8, "cirrhosis": 1.0, "lung_ca": 1.0}, -0.3),
    "thrombocytopenia": (-4.0, {}, 0.0, {"cirrhosis": 2.5, "alcohol": 0.5}, 0.0),
    "gerd": (-1.8, {}, 0.0, {}, 0.0),
    "hypothyroid": (-2.2, {}, 0.01, {}, -0.8),
    "depression": (-1.8, {F_FRAIL: 0.3}, 0.0, {"alcohol": 0.5}, -0.4),
    "dementia": (-4.0, {F_FRAIL: 0.5}, 0.12, {}, 0.0),
    "pvd": (-2.9, {F_CM: 0.6}, 0.03, {"dm2": 0.8, "tobacco": 0.8}, 0.0),
}
assert set(CHRONIC_MODEL) == set(cat.CHRONIC_INDEX)

# Readmission logit weights (Eq. R). Keys prefixed by where the factor is visible.
READMIT = {
    "intercept": -5.0,
    # code side: conditions coded ~95% of the time, written in ~15% of notes
    "code.ckd_advanced": 1.1, "code.ckd": 0.4, "code.cirrhosis": 1.1, "code.lung_ca": 1.3, "code.anemia": 0.6,
    "code.thrombocytopenia": 0.6, "code.hyponatremia": 0.7,
    # the long tail (codeworld.py): summed risk of the patient's tail categories (malignancy,
    # organ failure, pressure ulcers...), carried by every leaf of a category
    "code.tail": 1.0,
    # note side: facts that have no code
    "note.lives_alone": 1.0, "note.homeless": 1.3, "note.nonadherent": 1.2, "note.no_pcp": 0.7,
    "note.severe_chronic": 0.7, "note.long_duration": 0.4,
    # shared: visible in both
    "shared.chf": 0.35, "shared.copd": 0.3, "shared.dm2": 0.15, "shared.acuity": 0.15,
    # hidden: neither modality
    "hidden.frailty": 0.35, "hidden.noise_sd": 0.3,
}


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass
class Cohort:
    """Latent state of all patients (P) and visits (V), as columnar numpy arrays.

    Patient arrays are indexed by patient index p in [0, P); visit arrays by visit index v in
    [0, V), sorted by (patient, admission time). `v_patient[v]` is the patient index of visit v.
    Times are numpy datetime64[s] in the shifted calendar (years 2100-2200).
    """

    seed: int
    # ---- patients (P,)
    subject_id: np.ndarray
    male: np.ndarray                  # bool
    birth: np.ndarray                 # datetime64[s], true date of birth
    z: np.ndarray                     # (P, 4) latent factors
    chronic: np.ndarray               # (P, C) bool, C = len(catalog.CHRONIC)
    chronic_sev: np.ndarray           # (P, C) int8 in {1,2,3} (first visit; may progress)
    chronic_years: np.ndarray         # (P, C) float32, years since diagnosis at first visit
    lives_alone: np.ndarray           # bool
    homeless: np.ndarray
    no_pcp: np.ndarray                # no primary care physician
    nonadherent_prop: np.ndarray      # bool: tends not to take medications
    tail_ptr: np.ndarray              # (P+1,) patient p's tail comorbidity codes: tail_codes[ptr[p]:ptr[p+1]]
    tail_codes: list[str]
    tail_risk: np.ndarray             # (P,) readmission risk of those codes' categories
    dbsource: np.ndarray              # "carevue" / "metavision"
    # ---- visits (V,)
    v_patient: np.ndarray
    v_index: np.ndarray               # 0 for first admission of the patient
    hadm_id: np.ndarray
    admit: np.ndarray                 # datetime64[s]
    disch: np.ndarray
    age: np.ndarray                   # float years at admission (true, unshifted)
    reason: np.ndarray                # index into catalog.REASONS
    acute: np.ndarray                 # (V, A) bool, A = len(catalog.ACUTE)
    sev: np.ndarray                   # (V, C) int8 chronic severity at this visit
    years: np.ndarray                 # (V, C) float32 chronic duration at this visit
    acuity: np.ndarray                # float, latent illness severity of the visit
    severity: np.ndarray              # int8 1..3 (acuity tertile-like bins)
    nonadherent: np.ndarray           # bool, this visit
    icu: np.ndarray                   # bool
    icustay_id: np.ndarray            # int64, 0 if no ICU stay
    icu_in: np.ndarray
    icu_out: np.ndarray
    icu2: np.ndarray                  # bool: a second ICU stay in the same admission (after a ward spell)
    icustay2_id: np.ndarray
    icu2_in: np.ndarray
    icu2_out: np.ndarray
    p_shock: np.ndarray               # P(shock during the ICU stay) (0 outside the ICU)
    shock: np.ndarray
    shock_onset: np.ndarray           # datetime64[s], NaT if none
    p_aki: np.ndarray                 # P(acute kidney injury onset during the ICU stay)
    aki: np.ndarray                   # (MedCSP's "ARF" is respiratory: respiratory.py)
    aki_onset: np.ndarray
    p_death: np.ndarray               # P(in-hospital death)
    died: np.ndarray
    readmit_logit_parts: dict[str, np.ndarray]   # "code", "note", "shared", "hidden", "intercept"
    p_readmit_30d: np.ndarray
    readmit_30d: np.ndarray
    # per-visit lists (Python, small): drug orders, procedures, recorded diagnosis codes
    orders: list[list[tuple[int, float, float]]] = field(default_factory=list)  # (drug idx, start d, end d)
    procedures: list[list[str]] = field(default_factory=list)                   # procedure keys
    proc_tail: list[list[str]] = field(default_factory=list)                    # further ICD-9 procedure codes
    dx_codes: list[list[str]] = field(default_factory=list)                     # recorded ICD-9, in order
    true_icd9: list[list[str]] = field(default_factory=list)                    # codes of what is present
    lab_params: dict[str, np.ndarray] = field(default_factory=dict)             # per-visit lab means
    lung_injury: np.ndarray = field(default_factory=lambda: np.zeros(0))        # (V,) hidden (respiratory.py)

    @property
    def n_patients(self) -> int:
        return len(self.subject_id)

    @property
    def n_visits(self) -> int:
        return len(self.hadm_id)

    def procedure_icd9(self) -> list[list[str]]:
        """ICD-9 procedure codes of each admission: the catalog's (by key), then the tail's."""
        return [list(dict.fromkeys([cat.PROCEDURES[k][0] for k in keys] + tail))
                for keys, tail in zip(self.procedures, self.proc_tail)]

    def stays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every ICU stay, second stays included, as (visit index, ICUSTAY_ID, in, out), sorted by
        visit, then in-time."""
        s1, s2 = np.flatnonzero(self.icu), np.flatnonzero(self.icu2)
        v = np.concatenate([s1, s2])
        ids = np.concatenate([self.icustay_id[s1], self.icustay2_id[s2]])
        t_in = np.concatenate([self.icu_in[s1], self.icu2_in[s2]])
        t_out = np.concatenate([self.icu_out[s1], self.icu2_out[s2]])
        order = np.lexsort((t_in, v))
        return v[order], ids[order], t_in[order], t_out[order]

    def los_hours(self) -> np.ndarray:
        return (self.disch - self.admit).astype(np.float64) / 3600.0

    def present(self, key: str) -> np.ndarray:
        """(V,) bool: condition `key` (chronic or acute) present at each visit."""
        if key in cat.CHRONIC_INDEX:
            return self.chronic[self.v_patient, cat.CHRONIC_INDEX[key]]
        return self.acute[:, cat.ACUTE_INDEX[key]]


# ----------------------------------------------------------------------------------------------
# Patients
# ----------------------------------------------------------------------------------------------


def _draw_patients(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    C = len(cat.CHRONIC)
    z = rng.standard_normal((n, 4))
    male = rng.random(n) < 0.56
    age0 = np.clip(rng.normal(64, 16, n) + 4 * z[:, F_FRAIL], 18, 99)
    chronic = np.zeros((n, C), dtype=bool)
    for key, (a, loads, age_w, parents, male_w) in CHRONIC_MODEL.items():
        logit = a + age_w * (age0 - 65) + male_w * male
        for f, w in loads.items():
            logit = logit + w * z[:, f]
        for par, w in parents.items():
            logit = logit + w * chronic[:, cat.CHRONIC_INDEX[par]]
        chronic[:, cat.CHRONIC_INDEX[key]] = rng.random(n) < sigmoid(logit)
    # Severity: a per-condition draw pulled up by frailty and the condition's own cluster factor.
    x = rng.standard_normal((n, C)) + 0.35 * z[:, [F_FRAIL]] + 0.02 * (age0[:, None] - 65)
    sev = (1 + (x > 0.3) + (x > 1.2)).astype(np.int8)
    years = np.minimum(np.exp(rng.normal(1.8, 0.7, (n, C))), np.maximum(age0[:, None] - 18, 1)).astype(np.float32)
    lives_alone = rng.random(n) < sigmoid(-1.4 + 0.03 * (age0 - 65) + 0.3 * z[:, F_FRAIL])
    homeless = rng.random(n) < sigmoid(-3.8 + 1.2 * chronic[:, cat.CHRONIC_INDEX["alcohol"]] - 0.03 * (age0 - 65))
    no_pcp = rng.random(n) < sigmoid(-2.0 + 1.5 * homeless)
    nonadh = rng.random(n) < sigmoid(-1.5 + 0.8 * homeless + 0.6 * chronic[:, cat.CHRONIC_INDEX["alcohol"]]
                                      + 0.4 * chronic[:, cat.CHRONIC_INDEX["depression"]])
    tail_ptr, tail_codes, tail_risk = codeworld.draw_patient_tail(rng, z, age0)
    return dict(z=z, male=male, age0=age0, chronic=chronic, sev=sev, years=years, lives_alone=lives_alone,
                homeless=homeless, no_pcp=no_pcp, nonadherent_prop=nonadh, tail_ptr=tail_ptr,
                tail_codes=tail_codes, tail_risk=tail_risk)


# ----------------------------------------------------------------------------------------------
# Visits, drawn in rounds (round k = k-th admission of every patient still followed)
# ----------------------------------------------------------------------------------------------


def _reason_probs(chronic: np.ndarray) -> np.ndarray:
    """(n, R) probabilities of the reason for admission given the chronic conditions."""
    logw = np.empty((chronic.shape[0], len(cat.REASONS)))
    for r, reason in enumerate(cat.REASONS):
        lw = np.full(chronic.shape[0], np.log(reason.base_w))
        for key, b in reason.boost:
            lw = lw + b * chronic[:, cat.CHRONIC_INDEX[key]]
        logw[:, r] = lw
    # Chronic-disease flares need the chronic disease.
    for acute_key, chronic_key in (("chf_exac", "chf"), ("copd_exac", "copd"), ("hep_enceph", "cirrhosis"),
                                   ("dka", "dm2")):
        logw[~chronic[:, cat.CHRONIC_INDEX[chronic_key]], cat.REASON_INDEX[acute_key]] = -np.inf
    w = np.exp(logw - logw.max(1, keepdims=True))
    return w / w.sum(1, keepdims=True)


def _categorical(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    u = rng.random((probs.shape[0], 1))
    return np.minimum((probs.cumsum(1) < u).sum(1), probs.shape[1] - 1)


def _visit_round(rng, pt, idx, sev, years, age):
    """Latent state of one admission for each patient index in `idx` (vectorised)."""
    n = len(idx)
    A = len(cat.ACUTE)
    ch = pt["chronic"][idx]
    z = pt["z"][idx]
    C = lambda k: ch[:, cat.CHRONIC_INDEX[k]]  # noqa: E731
    S = lambda k: sev[:, cat.CHRONIC_INDEX[k]] * C(k)  # noqa: E731  (0 if absent)
    reason = _categorical(rng, _reason_probs(ch))
    acute = np.zeros((n, A), dtype=bool)
    acute[np.arange(n), [cat.ACUTE_INDEX[cat.REASONS[r].acute] for r in reason]] = True
    a = lambda k: acute[:, cat.ACUTE_INDEX[k]]  # noqa: E731
    shift = np.array([r.acuity for r in cat.REASONS])[reason]
    burden = (sev * ch).sum(1)
    acuity = shift + 0.35 * z[:, F_FRAIL] + 0.06 * burden + 0.01 * (age - 65) + rng.normal(0, 0.6, n)
    severity = (1 + (acuity > 0.0) + (acuity > 0.9)).astype(np.int8)

    def draw(key, logit):
        acute[:, cat.ACUTE_INDEX[key]] |= rng.random(n) < sigmoid(logit)

    infection = a("pneumonia") | a("uti") | a("cellulitis") | a("cdiff")
    draw("sepsis", np.where(infection, -1.6 + 1.4 * acuity, -9))
    draw("septicemia", np.where(a("sepsis"), -0.2 + 0.5 * acuity, -9))
    draw("uti", -3.2 + 1.0 * C("dementia"))
    draw("pneumonia", -3.5 + 1.0 * a("copd_exac") + 0.8 * a("stroke"))
    draw("resp_failure", -3.0 + 1.4 * acuity + 1.2 * (a("pneumonia") | a("copd_exac") | a("chf_exac") | a("pe")))
    draw("delirium", -3.2 + 1.4 * C("dementia") + 0.6 * acuity + 0.9 * C("alcohol") + 0.04 * (age - 75))
    draw("blood_loss_anemia", np.where(a("gi_bleed"), 0.4, np.where(a("hip_fx"), -0.4, -6)))
    draw("hyponatremia", -3.0 + 1.3 * C("cirrhosis") + 0.7 * C("chf") + 0.4 * acuity)
    # ICU admission (MIMIC-III is an ICU database: essentially every admission has an ICU stay),
    # then the ICU events whose onsets the MedCSP criticality labels are defined from.
    p_icu = sigmoid(4.0 + 1.4 * acuity + 1.0 * a("sepsis") + 1.2 * a("resp_failure") - 0.8 * a("hip_fx"))
    icu = rng.random(n) < p_icu
    cardiac = a("ami") | a("chf_exac")
    p_shock = icu * sigmoid(-3.9 + 1.2 * acuity + 1.6 * a("sepsis") + 0.9 * cardiac + 0.6 * a("gi_bleed"))
    shock = rng.random(n) < p_shock
    acute[:, cat.ACUTE_INDEX["septic_shock"]] = shock & a("sepsis")
    acute[:, cat.ACUTE_INDEX["cardiogenic_shock"]] = shock & ~a("sepsis") & cardiac
    # Shock without sepsis or a cardiac cause (e.g. haemorrhagic) is coded through its cause.
    renal = -3.5 + 1.1 * acuity + 0.5 * C("ckd") + 0.4 * S("ckd") * (S("ckd") < 3) + 0.9 * a("sepsis") \
        + 0.9 * shock + 0.6 * a("chf_exac") + 0.8 * a("dka")
    renal = np.where(S("ckd") == 3, -9.0, renal)        # dialysis patients do not get "AKI"
    p_aki = icu * sigmoid(renal)
    aki = np.where(icu, rng.random(n) < p_aki, rng.random(n) < sigmoid(renal - 0.8))
    acute[:, cat.ACUTE_INDEX["aki"]] = aki
    aki = aki & icu                                      # ICU onsets are the ones with a time
    draw("hyperkalemia", -3.5 + 1.2 * (S("ckd") >= 2) + 1.4 * a("aki") + 0.5 * a("dka"))
    draw("acidosis", -3.4 + 2.5 * a("dka") + 1.5 * shock + 0.8 * a("aki"))
    p_death = sigmoid(-4.3 + 0.9 * acuity + 1.5 * shock + 1.0 * a("resp_failure") + 0.03 * (age - 65)
                      + 0.8 * C("lung_ca") * (S("lung_ca") == 3) + 0.5 * C("cirrhosis"))
    died = rng.random(n) < p_death
    # Non-adherence this visit: most admissions of prone patients, some of others.
    nonadherent = rng.random(n) < np.where(pt["nonadherent_prop"][idx], 0.75, 0.05)
    # Length of stay (days) and ICU timing (hours from admission).
    los = np.clip(np.exp(rng.normal(np.log(4.8) + 0.35 * acuity + 0.4 * a("hip_fx"), 0.5)), 1.0, 60.0)
    icu_start = np.where(icu, rng.uniform(0.1, 12.0, n), 0.0)
    # ICU length of stay: median ~2 days (MIMIC-III), longer when sicker.
    icu_len = np.where(icu, np.clip(np.exp(rng.normal(np.log(40.0) + 0.3 * acuity, 0.6, n)), 12.0, 24 * 30), 0.0)
    los = np.maximum(los, (icu_start + icu_len + rng.uniform(1, 24, n)) / 24 * icu)  # stay covers the ICU stay
    shock_h = np.where(shock, icu_start + icu_len * rng.beta(1.3, 2.2, n), np.nan)
    aki_h = np.where(aki, icu_start + icu_len * rng.beta(1.3, 2.0, n), np.nan)

    # ---- Eq. R: 30-day readmission logit
    W = READMIT
    code = (W["code.ckd_advanced"] * (S("ckd") >= 2) + W["code.ckd"] * C("ckd") + W["code.cirrhosis"] * C("cirrhosis")
            + W["code.lung_ca"] * C("lung_ca") + W["code.anemia"] * C("anemia")
            + W["code.thrombocytopenia"] * C("thrombocytopenia") + W["code.hyponatremia"] * a("hyponatremia")
            + W["code.tail"] * pt["tail_risk"][idx])
    severe = ((S("chf") == 3) | (S("copd") == 3) | (S("dm2") == 3))
    long_dur = ((years * ch) > 15).any(1)
    note = (W["note.lives_alone"] * pt["lives_alone"][idx] + W["note.homeless"] * pt["homeless"][idx]
            + W["note.nonadherent"] * nonadherent + W["note.no_pcp"] * pt["no_pcp"][idx]
            + W["note.severe_chronic"] * severe + W["note.long_duration"] * long_dur)
    shared = (W["shared.chf"] * C("chf") + W["shared.copd"] * C("copd") + W["shared.dm2"] * C("dm2")
              + W["shared.acuity"] * acuity)
    hidden = W["hidden.frailty"] * z[:, F_FRAIL] + rng.normal(0, W["hidden.noise_sd"], n)
    logit = W["intercept"] + code + note + shared + hidden
    p_readmit = np.where(died, 0.0, sigmoid(logit))
    readmit = rng.random(n) < p_readmit
    # Later (> 30 day) admission when not readmitted within 30 days: chronic burden drives it.
    q_later = sigmoid(-2.7 + 0.15 * ch.sum(1) + 0.6 * z[:, F_FRAIL])
    later = ~died & ~readmit & (rng.random(n) < q_later)
    gap = np.where(readmit, 1.0 + 29.0 * rng.beta(1.2, 2.0, n),
                   31.0 + np.minimum(np.exp(rng.normal(np.log(250), 0.9, n)), 3000.0))
    return dict(reason=reason, acute=acute, acuity=acuity, severity=severity, icu=icu, p_shock=p_shock,
                shock=shock, shock_h=shock_h, p_aki=p_aki, aki=aki, aki_h=aki_h, p_death=p_death, died=died,
                nonadherent=nonadherent, los=los, icu_start=icu_start, icu_len=icu_len,
                parts=dict(intercept=np.full(n, W["intercept"]), code=code, note=note, shared=shared, hidden=hidden),
                p_readmit=p_readmit, readmit=readmit, next_visit=readmit | later, gap=gap)


def draw_cohort(n_patients: int, seed: int) -> Cohort:
    """Draw the latent state of `n_patients` patients and all their admissions (deterministic in seed)."""
    if n_patients < 1:
        raise ValueError(f"n_patients must be >= 1, got {n_patients}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    pt = _draw_patients(rng, n_patients)
    P = n_patients
    # Shifted calendar: first admission somewhere in 2100-2190, minute resolution like MIMIC.
    first = (np.datetime64("2100-01-01T00:00:00") + (rng.integers(0, 90 * 365, P) * 86400
             + rng.integers(0, 1440, P) * 60).astype("timedelta64[s]"))
    birth = first - (pt["age0"] * 365.25 * 86400).astype("timedelta64[s]")
    birth = birth.astype("datetime64[D]").astype("datetime64[s]")

    rounds = []
    idx = np.arange(P)
    t_admit = first
    sev = pt["sev"].copy()
    years = pt["years"].copy()
    k = 0
    while len(idx):
        if k > 200:
            raise RuntimeError("visit chain did not terminate; readmission model is broken")
        age = (t_admit - birth[idx]).astype(np.float64) / (365.25 * 86400)
        r = _visit_round(rng, pt, idx, sev[idx], years[idx], age)
        los_s = (r["los"] * 86400).astype(np.int64) // 60 * 60
        t_disch = t_admit + los_s.astype("timedelta64[s]")
        rounds.append(dict(idx=idx, admit=t_admit, disch=t_disch, age=age, sev=sev[idx].copy(),
                           years=years[idx].copy(), k=k, **r))
        keep = r["next_visit"]
        gap_s = (r["gap"] * 86400).astype(np.int64) // 60 * 60
        t_next = t_disch + gap_s.astype("timedelta64[s]")
        # Chronic disease progresses between admissions; durations grow with the calendar.
        nxt = idx[keep]
        prog = rng.random((len(nxt), sev.shape[1])) < 0.08
        sev[nxt] = np.minimum(sev[nxt] + prog, 3)
        years[nxt] = years[nxt] + (r["gap"][keep] / 365.25)[:, None].astype(np.float32)
        idx, t_admit = nxt, t_next[keep]
        k += 1

    # Concatenate rounds and sort visits by (patient, admission time).
    cat_ = {key: np.concatenate([rd[key] for rd in rounds]) for key in rounds[0]
            if key not in ("parts", "k")}
    parts = {key: np.concatenate([rd["parts"][key] for rd in rounds]) for key in rounds[0]["parts"]}
    v_index = np.concatenate([np.full(len(rd["idx"]), rd["k"]) for rd in rounds])
    order = np.lexsort((v_index, cat_["idx"]))
    g = {key: val[order] for key, val in cat_.items()}
    parts = {key: val[order] for key, val in parts.items()}
    v_index = v_index[order]
    V = len(order)
    _early_deaths(np.random.default_rng(np.random.SeedSequence([seed, 0xDEAD])), g)

    def at(hours, mask):
        out = np.full(V, np.datetime64("NaT"), dtype="datetime64[s]")
        sec = np.nan_to_num(hours * 3600.0).astype(np.int64) // 60 * 60
        out[mask] = (g["admit"] + sec.astype("timedelta64[s]"))[mask]
        return out

    icu = g["icu"]
    subject_id = 10_000 + np.arange(P) * 3 + rng.integers(0, 3, P)            # sparse like MIMIC
    hadm_perm = rng.permutation(V)
    hadm_id = 100_000 + hadm_perm * 4 + rng.integers(0, 4, V)                   # unique, not ordered
    icu_perm = rng.permutation(2 * V)
    icustay_id = np.where(icu, 200_000 + icu_perm[:V] * 3 + rng.integers(0, 3, V), 0)
    # A second ICU stay after a ward spell (a "bounce-back", ~5% of admissions in MIMIC-III), where
    # the hospital stay leaves room for one: it starts 12-48 h after the first stay ends.
    los_h = (g["disch"] - g["admit"]).astype(np.float64) / 3600.0
    out1_h = g["icu_start"] + g["icu_len"]
    gap2 = rng.uniform(12, 48, V)
    len2 = np.exp(rng.normal(np.log(30.0), 0.5, V))
    icu2 = icu & (los_h - out1_h - gap2 - len2 > 6) & (rng.random(V) < 0.075 + 0.04 * (g["acuity"] > 1))
    icustay2_id = np.where(icu2, 200_000 + icu_perm[V:] * 3 + rng.integers(0, 3, V), 0)
    cohort = Cohort(
        seed=seed, subject_id=subject_id, male=pt["male"], birth=birth, z=pt["z"], chronic=pt["chronic"],
        chronic_sev=pt["sev"], chronic_years=pt["years"], lives_alone=pt["lives_alone"], homeless=pt["homeless"],
        no_pcp=pt["no_pcp"], nonadherent_prop=pt["nonadherent_prop"],
        dbsource=np.where(rng.random(P) < 0.5, "carevue", "metavision"),
        v_patient=g["idx"], v_index=v_index, hadm_id=hadm_id, admit=g["admit"], disch=g["disch"], age=g["age"],
        reason=g["reason"], acute=g["acute"], sev=g["sev"], years=g["years"], acuity=g["acuity"],
        severity=g["severity"], nonadherent=g["nonadherent"], icu=icu, icustay_id=icustay_id,
        icu_in=at(g["icu_start"], icu), icu_out=at(g["icu_start"] + g["icu_len"], icu),
        icu2=icu2, icustay2_id=icustay2_id, icu2_in=at(out1_h + gap2, icu2), icu2_out=at(out1_h + gap2 + len2, icu2),
        tail_ptr=pt["tail_ptr"], tail_codes=pt["tail_codes"], tail_risk=pt["tail_risk"],
        p_shock=g["p_shock"], shock=g["shock"], shock_onset=at(g["shock_h"], g["shock"]),
        p_aki=g["p_aki"], aki=g["aki"], aki_onset=at(g["aki_h"], g["aki"]),
        p_death=g["p_death"], died=g["died"], readmit_logit_parts=parts,
        p_readmit_30d=g["p_readmit"], readmit_30d=g["readmit"],
    )
    _draw_orders_and_codes(np.random.default_rng(np.random.SeedSequence([seed, 0xC0DE])), cohort)
    cohort.lab_params = _lab_params(np.random.default_rng(np.random.SeedSequence([seed, 0x1AB])), cohort)
    cohort.lung_injury = _lung_injury(np.random.default_rng(np.random.SeedSequence([seed, 0x1A9])), cohort)
    return cohort


def _early_deaths(rng: np.random.Generator, g: dict[str, np.ndarray]) -> None:
    """Deaths in the first two days of the ICU stay (in place): some in-hospital deaths of ICU
    admissions, likelier when sicker, happen 6-46 h after ICU admission; the stay and the
    admission end then, and an ICU onset drawn later moves inside the shortened stay. Drawn
    from its own stream after the visit rounds, so no other draw moves."""
    n = len(g["died"])
    early = g["died"] & g["icu"] & (rng.random(n) < 0.08 + 0.12 * (g["acuity"] > 1.0))
    death_h = g["icu_start"] + rng.uniform(6.0, 46.0, n)
    new_len = np.where(early, death_h - g["icu_start"], g["icu_len"])
    for key, (a, b) in (("shock_h", (1.3, 2.2)), ("aki_h", (1.3, 2.0))):
        late = early & (g[key] > death_h)
        g[key] = np.where(late, g["icu_start"] + new_len * rng.beta(a, b, n), g[key])
    g["icu_len"] = new_len
    disch = g["admit"] + (np.round(death_h * 60) * 60).astype(np.int64).astype("timedelta64[s]")
    g["disch"] = np.where(early, disch, g["disch"])


def _lung_injury(rng: np.random.Generator, c: Cohort) -> np.ndarray:
    """(V,) hidden lung-injury severity of each admission (`respiratory.py`), from its own random
    stream so that the rest of the cohort does not move with this model."""
    mean = (0.8 * c.present("pneumonia") + 0.6 * c.present("sepsis") + 0.5 * c.present("resp_failure")
            + 0.3 * c.acuity)
    return mean + rng.standard_normal(c.n_visits)


# ----------------------------------------------------------------------------------------------
# Medications, procedures, recorded codes (per visit; small Python loops)
# ----------------------------------------------------------------------------------------------


def _specific_code(d: cat.Disease, sev: int, ckd_sev: int) -> str:
    if d.key == "htn" and ckd_sev:
        return "40391" if ckd_sev == 3 else "40390"          # hypertensive CKD replaces 401.9
    if d.key == "dm2" and ckd_sev:
        return "25040"                                      # diabetes with renal manifestations
    return d.codes[sev - 1]


class _Stream:
    """`next(stream)` -> uniform in [0, 1); seeded per visit so visits are independent."""

    __slots__ = ("_r",)

    def __init__(self, seed: int):
        self._r = random.Random(seed).random

    def __next__(self) -> float:
        return self._r()


def _draw_orders_and_codes(rng: np.random.Generator, c: Cohort) -> None:
    ckd_i = cat.CHRONIC_INDEX["ckd"]
    V = c.n_visits
    # One small stream per visit (Python's Mersenne Twister: cheap to seed, fast scalar draws).
    base_seed = int(rng.integers(0, 2**62))
    los_d = c.los_hours() / 24.0
    routine_p = np.array([0.55, 0.45, 0.35, 0.5, 0.4, 0.3, 0.35, 0.3, 0.15, 0.2])
    # The long tail (codeworld.py): acute tail diagnoses and extra procedures of each admission.
    vt_ptr, vt_codes = codeworld.draw_visit_tail(rng, c.z[c.v_patient], c.acuity)
    pr_ptr, pr_codes = codeworld.draw_visit_procedures(rng, c.icu, c.acuity)
    # Long-tail drugs: ~9 per admission by prescribing frequency, three times as likely where the
    # drug's ATC group matches an axis of the admission's tail diagnoses (codeworld.DRUG_AXES).
    tail_idx = np.array(cat.TAIL_DRUGS)
    tail_w = np.array([cat.DRUGS[i].weight for i in tail_idx])
    match = codeworld.drug_axis_match([cat.DRUGS[i].atc for i in tail_idx])
    axis_of = codeworld.category_axis()
    n_tail = rng.poisson(np.exp(np.log(9.0) + 0.2 * np.clip(c.acuity, -2, 3)))
    for v in range(V):
        p = c.v_patient[v]
        uv = _Stream(base_seed + v)
        ch = np.flatnonzero(c.chronic[p])
        ac = np.flatnonzero(c.acute[v])
        ckd_sev = int(c.sev[v, ckd_i]) if c.chronic[p, ckd_i] else 0
        los = float(los_d[v])
        # --- true and recorded diagnosis codes: principal (acute) first, then complications, chronic
        true, rec = [], []
        sev_v = int(c.severity[v])
        for a_i in ac:
            d = cat.ACUTE[a_i]
            code = d.codes[sev_v - 1]
            true.append(code)
            if next(uv) < d.code_p:
                rec.append(code if (d.unspecified is None or next(uv) < 0.7) else d.unspecified)
        if c.acute[v, cat.ACUTE_INDEX["sepsis"]] and "0389" not in rec and next(uv) < 0.6:
            rec.insert(0, "0389")                           # MIMIC codes sepsis as 038.9 + 995.91
        for c_i in ch:
            d = cat.CHRONIC[c_i]
            code = _specific_code(d, int(c.sev[v, c_i]), ckd_sev if d.key in ("htn", "dm2") else 0)
            true.append(code)
            if next(uv) < d.code_p * (0.85 if len(rec) > 12 else 1.0):
                # The lazy "unspecified" code: 250.00 while the note says "uncontrolled".
                rec.append(d.unspecified if (d.unspecified and next(uv) < 0.45) else code)
        # --- procedures
        procs = []
        a = lambda k: bool(c.acute[v, cat.ACUTE_INDEX[k]])  # noqa: E731
        if a("resp_failure") and next(uv) < 0.75:
            procs += ["intubation", "vent_long" if los > 6 else "vent_short"]
        if c.icu[v]:
            if next(uv) < (0.7 if c.shock[v] else 0.15):
                procs.append("central_line")
            if next(uv) < 0.3:
                procs.append("art_line")
        if ckd_sev == 3 or (c.aki[v] and next(uv) < 0.15):
            procs.append("hemodialysis")
        if a("gi_bleed") and next(uv) < 0.8:
            procs.append("egd")
        if (a("gi_bleed") or a("blood_loss_anemia")) and next(uv) < 0.7:
            procs.append("transfusion")
        if a("ami") and next(uv) < 0.7:
            procs.append("cath")
            if next(uv) < 0.6:
                procs.append("pci")
        if c.chronic[p, cat.CHRONIC_INDEX["cirrhosis"]] and next(uv) < 0.25:
            procs.append("paracentesis")
        if a("hip_fx") and next(uv) < 0.85:
            procs.append("hip_repair")
        # --- status codes
        drugs: dict[int, tuple[float, float]] = {}

        def give(key: str, start: float | None = None, end: float | None = None) -> None:
            i = cat.DRUG_INDEX[key]
            s = float(start if start is not None else min(next(uv) * 1.5, los * 0.5))
            e = float(end if end is not None else los)
            if i not in drugs:
                drugs[i] = (s, max(e, s))

        for c_i in ch:
            d = cat.CHRONIC[c_i]
            for j, key in enumerate(d.drugs):
                if next(uv) < (0.85 if j == 0 else 0.5) * (1.0 if c.sev[v, c_i] > 1 or j == 0 else 0.6):
                    give(key)
        for a_i in ac:
            d = cat.ACUTE[a_i]
            for j, key in enumerate(d.drugs):
                if next(uv) < (0.9 if j == 0 else 0.55):
                    give(key, start=next(uv) * 0.3, end=min(los, 2 + next(uv) * 8))
        if c.chronic[p, cat.CHRONIC_INDEX["dm2"]] and c.sev[v, cat.CHRONIC_INDEX["dm2"]] >= 2:
            give("insulin_regular", 0.0)
        if c.chronic[p, cat.CHRONIC_INDEX["afib"]] and c.chronic[p, cat.CHRONIC_INDEX["chf"]] and next(uv) < 0.4:
            give("digoxin")
        for key, pr in zip(cat.ROUTINE_DRUGS, routine_p):
            if next(uv) < pr:
                give(key, start=0.0, end=min(los, 1 + next(uv) * los))
        if n_tail[v]:
            cats_v = {icd9_dx_category(x) for x in c.tail_codes[c.tail_ptr[p]:c.tail_ptr[p + 1]]}
            cats_v |= {icd9_dx_category(x) for x in vt_codes[vt_ptr[v]:vt_ptr[v + 1]]}
            axes = sorted({axis_of[k] for k in cats_v if k in axis_of})
            w = tail_w * (1.0 + 2.0 * match[axes].any(0)) if axes else tail_w
            cum = np.cumsum(w)
            for _ in range(int(n_tail[v])):
                j = min(int(np.searchsorted(cum, next(uv) * cum[-1])), len(cum) - 1)
                s0 = next(uv) * los * 0.6
                give(cat.DRUGS[tail_idx[j]].key, start=s0, end=min(los, s0 + 0.5 + next(uv) * los))
        status = []
        if cat.DRUG_INDEX["insulin_glargine"] in drugs and c.chronic[p, cat.CHRONIC_INDEX["dm2"]]:
            status.append("insulin")
        if cat.DRUG_INDEX["warfarin"] in drugs:
            status.append("anticoag")
        if ckd_sev == 3:
            status.append("dialysis")
        if a("hip_fx"):
            status.append("fall")
        if c.age[v] > 80 and next(uv) < 0.3:
            status.append("dnr")
        for s in status:
            code = cat.STATUS_CODES[s]
            true.append(code)
            if next(uv) < 0.9:
                rec.append(code)
        # Tail comorbidities (persistent, each recorded at ~3 of 4 admissions), then the
        # admission's acute tail codes.
        for code in c.tail_codes[c.tail_ptr[p]:c.tail_ptr[p + 1]]:
            true.append(code)
            if next(uv) < 0.75:
                rec.append(code)
        for code in vt_codes[vt_ptr[v]:vt_ptr[v + 1]]:
            true.append(code)
            if next(uv) < 0.9:
                rec.append(code)
        # Deduplicate, keeping the first (principal) position. About 1% of recorded codes are
        # written one digit short (427.3 for 427.31, 401 for 401.9): a non-billable header code,
        # as older coding software let through.
        rec = [x[:-1] if len(x) >= 4 and next(uv) < 0.01 else x for x in dict.fromkeys(rec)]
        c.true_icd9.append(list(dict.fromkeys(true)))
        c.dx_codes.append(list(dict.fromkeys(rec)) or [true[0]])
        c.procedures.append(list(dict.fromkeys(procs)))
        c.proc_tail.append(pr_codes[pr_ptr[v]:pr_ptr[v + 1]])
        c.orders.append([(i, s, e) for i, (s, e) in sorted(drugs.items(), key=lambda kv: (kv[1][0], kv[0]))])


# ----------------------------------------------------------------------------------------------
# Measurements: lab and vital trajectories from the latent state (vectorised over rows)
# ----------------------------------------------------------------------------------------------


def _lab_params(rng: np.random.Generator, c: Cohort) -> dict[str, np.ndarray]:
    """Per-visit baseline (V, L), acute delta (V, L) and event hour (V, L) of each lab item.

    value(t) = base + delta * g(t - onset), g(x) = 0 (x<0), x/24 (0<=x<24 h), exp(-(x-24)/72) after:
    a rise over a day, then resolution over days. Present-on-admission events use onset -24 h.
    """
    V, L = c.n_visits, len(cat.LABS)
    base = np.tile(np.array([lab.mean for lab in cat.LABS]), (V, 1))
    delta = np.zeros((V, L))
    onset = np.full((V, L), -24.0)
    li = cat.LAB_INDEX
    P = lambda k: c.present(k).astype(float)  # noqa: E731
    ckd_sev = (c.sev[:, cat.CHRONIC_INDEX["ckd"]] * c.present("ckd")).astype(np.int64)
    # Kidney: baseline creatinine by CKD stage; acute kidney injury doubles-to-triples it (KDIGO 2-3).
    cr0 = np.choose(ckd_sev, [0.9, 1.9, 2.9, 6.0]) * np.exp(rng.normal(0, 0.12, V))
    base[:, li["creatinine"]] = cr0
    base[:, li["bun"]] = 15 + 12 * ckd_sev
    aki = c.present("aki")
    amp = rng.uniform(1.0, 2.2, V)
    delta[:, li["creatinine"]] = aki * cr0 * amp
    delta[:, li["bun"]] = aki * 25 * amp
    aki_h = (c.aki_onset - c.admit).astype(np.float64) / 3600.0
    onset[:, li["creatinine"]] = np.where(c.aki, aki_h, -24.0)
    onset[:, li["bun"]] = onset[:, li["creatinine"]]
    # Shock: lactate rises at onset; bicarbonate and pH fall.
    shock_h = (c.shock_onset - c.admit).astype(np.float64) / 3600.0
    lact = c.shock * rng.uniform(2.5, 7.0, V) + P("sepsis") * 1.0
    delta[:, li["lactate"]] = lact
    onset[:, li["lactate"]] = np.where(c.shock, shock_h, -24.0)
    acid = np.maximum(c.shock * 1.0, P("acidosis"))
    delta[:, li["bicarbonate"]] = -8 * acid - 10 * P("dka")
    delta[:, li["ph"]] = -0.12 * acid - 0.15 * P("dka")
    delta[:, li["anion_gap"]] = 6 * acid + 12 * P("dka")
    for k in ("bicarbonate", "ph", "anion_gap"):
        onset[:, li[k]] = np.where(c.shock, shock_h, -24.0)
    # Diabetes: glucose by control; DKA on admission.
    dm_sev = (c.sev[:, cat.CHRONIC_INDEX["dm2"]] * c.present("dm2")).astype(np.int64)
    base[:, li["glucose"]] = np.choose(dm_sev, [100, 135, 175, 230])
    delta[:, li["glucose"]] = 350 * P("dka")
    # Blood: anaemia, bleeding, thrombocytopenia, infection.
    base[:, li["hemoglobin"]] = 13.5 - 1.0 * ~c.male[c.v_patient] - 3.0 * P("anemia") - 0.6 * ckd_sev
    delta[:, li["hemoglobin"]] = -3.0 * P("blood_loss_anemia") - 1.5 * P("gi_bleed")
    base[:, li["hematocrit"]] = base[:, li["hemoglobin"]] * 3.0
    delta[:, li["hematocrit"]] = delta[:, li["hemoglobin"]] * 3.0
    base[:, li["platelets"]] = 250 - 150 * P("thrombocytopenia") - 60 * P("cirrhosis")
    infection = np.clip(P("sepsis") + P("pneumonia") + P("uti") + P("cellulitis") + P("cdiff"), 0, 1)
    delta[:, li["wbc"]] = infection * rng.uniform(3, 12, V) + 4 * P("sepsis")
    # Liver.
    base[:, li["bilirubin"]] = 0.6 + 2.5 * P("cirrhosis")
    base[:, li["inr"]] = 1.1 + 0.6 * P("cirrhosis") + 1.4 * c.present("afib") * (rng.random(V) < 0.5)
    base[:, li["albumin"]] = 3.9 - 1.0 * P("cirrhosis") - 0.5 * P("sepsis")
    base[:, li["ast"]] = 28 + 40 * P("cirrhosis") + 30 * P("alcohol")
    base[:, li["alt"]] = 25 + 20 * P("cirrhosis")
    # Electrolytes.
    base[:, li["sodium"]] = 139 - 11 * P("hyponatremia")
    base[:, li["potassium"]] = 4.1 + 0.3 * (ckd_sev >= 2) + 1.6 * P("hyperkalemia")
    # Heart.
    delta[:, li["troponin"]] = P("ami") * rng.uniform(0.3, 3.0, V)
    base[:, li["ntprobnp"]] = 120 + 2500 * P("chf") + 400 * ckd_sev
    delta[:, li["ntprobnp"]] = 6000 * P("chf_exac")
    # Respiratory failure: hypoxaemia and CO2 retention with COPD.
    base[:, li["po2"]] = 90 - 25 * P("resp_failure")
    base[:, li["pco2"]] = 40 + 12 * P("resp_failure") * P("copd")
    return dict(base=base, delta=delta, onset=onset)


def _curve(x_h: np.ndarray) -> np.ndarray:
    return np.where(x_h < 0, 0.0, np.where(x_h < 24, x_h / 24.0, np.exp(-(x_h - 24.0) / 72.0)))


@dataclass(frozen=True)
class Density:
    """How many lab draws and items per admission. "modest" (the default): ~350 LABEVENTS rows per
    admission, ~50 of them outpatient (median ~270 with an HADM_ID; MIMIC-III demo: 251) and ~50
    prescription rows; "mimic": ~550 lab rows (MIMIC-III: 28 M rows / 59 k admissions with an
    HADM_ID, ~590 in all in the demo) and daily prescription re-orders, as MIMIC writes them."""

    draws_per_day: float
    extended_p: float       # probability an extended panel item is drawn with a draw
    icu_extra: float        # extra draws per ICU day (blood gases, lactate)
    chart_every_h: float    # vital-sign interval in the ICU
    daily_reorders: bool    # one PRESCRIPTIONS row per order per day (MIMIC-like) vs one per order

    @classmethod
    def named(cls, name: str | float) -> "Density":
        if isinstance(name, (int, float)) and not isinstance(name, bool):
            f = float(name)
            if f <= 0:
                raise ValueError(f"lab_density must be > 0, got {name}")
            return cls(0.6 * f, min(0.3 * f, 1.0), 0.5 * f, 2.0 / max(f, 0.5), f >= 2)
        presets = {"modest": cls(0.6, 0.3, 0.5, 2.0, False), "mimic": cls(1.5, 0.95, 1.5, 1.0, True)}
        if name not in presets:
            raise ValueError(f"lab_density must be one of {sorted(presets)} or a positive number, got {name!r}")
        return presets[name]


def simulate_labs(c: Cohort, density: Density, seed: int) -> dict[str, np.ndarray]:
    """Lab rows as columns: visit index, lab index, hours from admission, value, in-hospital flag.

    Draw times: one on arrival, then `draws_per_day` spread over the stay (plus ICU extras);
    a draw measures the basic panel always and other panels by need and density. Each admission
    also has ~3 outpatient draws 2-120 days before it (HADM_ID empty in MIMIC).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1AB5]))
    los_h = c.los_hours()
    icu_h = np.where(c.icu, (c.icu_out - c.icu_in).astype(np.float64) / 3600.0, 0.0)
    n_draw = 1 + np.floor(los_h / 24.0 * density.draws_per_day + icu_h / 24.0 * density.icu_extra
                          + rng.random(c.n_visits)).astype(np.int64)
    dv = np.repeat(np.arange(c.n_visits), n_draw)                              # (D,)
    first = np.cumsum(n_draw) - n_draw
    k = np.arange(len(dv)) - np.repeat(first, n_draw)
    t = np.where(k == 0, rng.uniform(0.2, 2.0, len(dv)),
                 (k + rng.uniform(-0.3, 0.3, len(dv))) / n_draw[dv] * los_h[dv])
    t = np.clip(t, 0.1, los_h[dv] - 0.1)
    # Outpatient draws (clinic, emergency-department visits that did not lead to an admission):
    # a few per admission in the months before it, written without HADM_ID as MIMIC-III does.
    out_v = np.repeat(np.arange(c.n_visits), rng.poisson(3.0, c.n_visits))
    dv = np.concatenate([dv, out_v])
    t = np.concatenate([t, -24.0 * rng.uniform(2, 120, len(out_v))])
    inpatient = np.concatenate([np.ones(len(t) - len(out_v), bool), np.zeros(len(out_v), bool)])
    t = np.round(t * 60) / 60                                                  # minute resolution
    D = len(dv)
    # Which items each draw measures.
    panel = np.array([lab.panel for lab in cat.LABS])
    L = len(cat.LABS)
    in_icu = c.icu[dv] & (t >= ((c.icu_in[dv] - c.admit[dv]).astype(np.float64) / 3600)) \
        & (t <= ((c.icu_out[dv] - c.admit[dv]).astype(np.float64) / 3600))
    u = rng.random((D, L))
    need_liver = (c.present("cirrhosis") | c.present("alcohol") | c.present("sepsis"))[dv]
    need_card = (c.present("ami") | c.present("chf_exac") | (c.reason == cat.REASON_INDEX["pe"]))[dv]
    take = np.zeros((D, L), dtype=bool)
    take[:, panel == "basic"] = u[:, panel == "basic"] < 0.97
    take[:, panel == "extended"] = u[:, panel == "extended"] < density.extended_p
    crit = (in_icu | c.shock[dv] | c.present("dka")[dv])[:, None]
    take[:, panel == "critical"] = crit & (u[:, panel == "critical"] < 0.8)
    take[:, panel == "liver"] = (u[:, panel == "liver"] < np.where(need_liver, 0.7, 0.1 * density.extended_p)[:, None])
    take[:, panel == "cardiac"] = (u[:, panel == "cardiac"] < np.where(need_card, 0.8, 0.05)[:, None])
    rows_d, rows_l = np.nonzero(take)                                          # (N,), row-major: sorted
    rv = dv[rows_d]
    rt = t[rows_d]
    p = c.lab_params
    x = rt - p["onset"][rv, rows_l]
    sd = np.array([lab.sd for lab in cat.LABS])[rows_l]
    noise = rng.standard_normal(len(rv)) * sd * (1 + 0.05 * p["base"][rv, rows_l] / np.maximum(
        np.array([lab.mean for lab in cat.LABS])[rows_l], 1e-9))
    val = p["base"][rv, rows_l] + p["delta"][rv, rows_l] * np.where(rt < 0, 0.0, _curve(x)) + noise
    val = np.maximum(val, np.array([lab.floor for lab in cat.LABS])[rows_l])
    return dict(visit=rv, lab=rows_l, hours=rt, value=val, inpatient=inpatient[rows_d])


def simulate_vitals(c: Cohort, density: Density, seed: int) -> dict[str, np.ndarray]:
    """Vital-sign rows for ICU stays (second stays too): visit index, vital index, hours from the
    stay's start, value, and the stay's ICUSTAY_ID and start.

    Sepsis raises heart rate, respiratory rate and temperature; shock (after its onset) drops the
    systolic and mean pressure and raises heart rate; respiratory failure lowers SpO2; the hidden
    lung injury (`respiratory.py`) lowers SpO2 and raises the respiratory rate a little.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x517]))
    s_visit, s_id, s_in, s_out = c.stays()
    dur = (s_out - s_in).astype(np.float64) / 3600.0
    n_t = np.maximum(1, np.floor(dur / density.chart_every_h).astype(np.int64))
    ss = np.repeat(np.arange(len(s_visit)), n_t)
    sv = s_visit[ss]
    first = np.cumsum(n_t) - n_t
    k = np.arange(len(sv)) - np.repeat(first, n_t)
    t = np.round((k * density.chart_every_h + rng.uniform(0, 0.25, len(sv))) * 60) / 60
    Vn = len(cat.VITALS)
    rows_t = np.repeat(np.arange(len(sv)), Vn)
    rows_i = np.tile(np.arange(Vn), len(sv))
    keep = rng.random(len(rows_t)) < 0.96                                     # a few missing charts
    rows_t, rows_i = rows_t[keep], rows_i[keep]
    v = sv[rows_t]
    stay = ss[rows_t]
    th = t[rows_t]
    mean = np.array([x.mean for x in cat.VITALS])[rows_i]
    sd = np.array([x.sd for x in cat.VITALS])[rows_i]
    sepsis = c.present("sepsis")[v].astype(float)
    respf = c.present("resp_failure")[v].astype(float)
    injury = np.maximum(c.lung_injury[v], 0.0) if len(c.lung_injury) else np.zeros(len(v))
    shock_x = ((c.shock_onset[v] - s_in[stay]).astype(np.float64) / 3600.0)
    after = np.where(c.shock[v], np.clip((th - np.nan_to_num(shock_x, nan=1e9)) / 4.0, 0, 1), 0.0)
    vi = cat.VITAL_INDEX
    eff = np.zeros(len(v))
    eff += (rows_i == vi["hr"]) * (14 * sepsis + 25 * after + 8 * respf)
    eff += (rows_i == vi["sbp"]) * (-8 * sepsis - 38 * after)
    eff += (rows_i == vi["mbp"]) * (-6 * sepsis - 25 * after)
    eff += (rows_i == vi["spo2"]) * (-4 * respf - 0.25 * injury)
    eff += (rows_i == vi["rr"]) * (4 * sepsis + 8 * respf + 0.4 * injury)
    eff += (rows_i == vi["temp"]) * (2.0 * sepsis)
    stay_off = rng.standard_normal((c.n_visits, Vn))[v, rows_i] * sd
    val = mean + eff + stay_off + rng.standard_normal(len(v)) * sd * 0.6
    val = np.where(rows_i == vi["spo2"], np.minimum(val, 100.0), val)
    return dict(visit=v, vital=rows_i, hours=th, value=val, icustay_id=s_id[stay], icu_in=s_in[stay])
