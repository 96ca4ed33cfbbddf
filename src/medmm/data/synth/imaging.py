"""Who has chest X-rays, when, with which views, and what each image shows (the latent imaging world).

The same latent cohort that writes the EHR (`latent.Cohort`) decides the imaging:

    EHR patients with imaging     Bern(0.43 + 0.12 chf + 0.10 copd + 0.06 lung_ca): ~45% (MedCSP's
                                  MIMIC-IV / MIMIC-CXR overlap)
    imaging-only patients         a second cohort (`draw_cohort`, its own seed stream) of
                                  IMAGING_ONLY_SHARE x the EHR patients, whose admissions are never
                                  written: MIMIC-CXR's patients seen in the ED or as outpatients
    studies of a patient's admission v:
      ICU stay      a portable AP film in the first 20 h with probability 0.85, then one a day
                    (days 1-3) with probability 0.4
      ward stay     PA + lateral (75%), PA (15%) or AP (10%) in the first 12 h, probability 0.65
      outside       Poisson(0.7) studies per admission, half 1-30 days before admission or after
                    discharge, half 31-720 days away
    views         ICU: AP (10% also a second AP); others as above

What a study shows is the state of its admission at the study time (acute conditions only while
in hospital, half as strong for 10 days after discharge; chronic ones always):

    ctr (cardiothoracic ratio)   0.45 + patient anatomy + 0.04 x heart-failure severity (chf
                                 severity 1-3; also in the EHR codes, drugs, notes) + 0.03 CHF flare
    edema                        CHF flare, severe heart failure, shock in the ICU (after its onset)
    effusion (right, left)       CHF flare and severity, cirrhosis, pneumonia, lung cancer
    consolidation (lobe)         pneumonia
    diffuse opacity              the hidden lung injury while in the ICU (`respiratory.py`): the
                                 finding only images show well, and it drives late ARF
    atelectasis, pneumothorax,   mostly random: visible in images only (a pneumothorax is
    fracture, nodule             likelier after a central line; lung cancer gives a nodule)
    devices                      ETT (+ NG tube) while ventilated, CVC after a central line,
                                 pacemaker (some atrial fibrillation / severe heart failure patients); nothing
                                 shows an ICU event before it happens (the line of a shock
                                 patient is placed at the shock onset)

`draw_imaging` returns studies (one row each, with the true admission it belongs to and its
distance in days from the patient's nearest admission) and images (one row each, with the
visual intensities that `cxr.render_images` draws). Deterministic in the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from medmm.data.synth import catalog as cat
from medmm.data.synth.cxr import DEVICE_CVC, DEVICE_ETT, DEVICE_NG, DEVICE_PACER, VISUAL
from medmm.data.synth.icu_events import hours_td
from medmm.data.synth.latent import Cohort, draw_cohort

IMAGING_ONLY_SHARE = 0.30
_H = np.timedelta64(3600, "s")


@dataclass
class ImagingWorld:
    """studies: study_key, patient_key, subject_id (cohort ids), in_ehr, visit (index into its
    cohort, -1 never), hadm_id (the admission containing the study, cohort id; null if none),
    time, kind ("icu" / "ward" / "outside"), delta_days (to the nearest admission of the patient,
    0 inside one), indication; plus the study's findings (maximum over its images).
    images: image_key, study_key, patient_key, view, and the VISUAL intensities."""

    studies: pl.DataFrame
    images: pl.DataFrame


def imaging_only_cohort(n_patients: int, seed: int) -> Cohort:
    """The imaging-only patients of a world of `n_patients` EHR patients: a cohort of
    IMAGING_ONLY_SHARE x n_patients drawn from its own seed stream, subject ids moved past the
    EHR cohort's (which span [10_000, 10_000 + 3 n_patients))."""
    sub_seed = int(np.random.SeedSequence([seed, 0x10]).generate_state(1)[0])
    only = draw_cohort(max(1, round(IMAGING_ONLY_SHARE * n_patients)), sub_seed)
    only.subject_id = only.subject_id + 3 * n_patients
    return only


def _plan_studies(c: Cohort, has_img: np.ndarray, rng: np.random.Generator) -> list[tuple[int, np.datetime64, str, tuple[str, ...]]]:
    """(visit, time, kind, views) of every study of the patients with imaging."""
    out: list[tuple[int, np.datetime64, str, tuple[str, ...]]] = []
    for v in np.flatnonzero(has_img[c.v_patient]).tolist():
        if c.icu[v]:
            if rng.random() < 0.85:
                views = ("AP", "AP") if rng.random() < 0.1 else ("AP",)
                out.append((v, c.icu_in[v] + hours_td(rng.uniform(0.5, 20.0)), "icu", views))
            icu_days = int((c.icu_out[v] - c.icu_in[v]) / (24 * _H))
            for d in range(1, min(3, icu_days) + 1):
                if rng.random() < 0.4:
                    out.append((v, c.icu_in[v] + hours_td(24.0 * d + rng.uniform(0, 6)), "icu", ("AP",)))
        elif rng.random() < 0.65:
            u = rng.random()
            views = ("PA", "LATERAL") if u < 0.75 else ("PA",) if u < 0.9 else ("AP",)
            out.append((v, c.admit[v] + hours_td(rng.uniform(0.5, 12.0)), "ward", views))
        for _ in range(rng.poisson(0.7)):
            near = rng.random() < 0.5
            days = rng.uniform(1, 30) if near else rng.uniform(31, 720)
            before = rng.random() < 0.5
            anchor = c.admit[v] if before else c.disch[v]
            t = anchor + hours_td(24.0 * (-days if before else days))
            t = t.astype("datetime64[D]").astype("datetime64[s]") + hours_td(rng.uniform(8, 18))
            u = rng.random()
            out.append((v, t, "outside", ("PA", "LATERAL") if u < 0.8 else ("PA",)))
    return out


def _containing(c: Cohort, p: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(S,) the visit of patient p containing t (the last admitted; -1 if none), and the distance in
    days to the nearest admission (0 inside)."""
    first = np.searchsorted(c.v_patient, p, side="left")
    last = np.searchsorted(c.v_patient, p, side="right")
    inside = np.full(len(p), -1, np.int64)
    delta = np.full(len(p), np.inf)
    for i in range(len(p)):
        a, d = c.admit[first[i]:last[i]], c.disch[first[i]:last[i]]
        hit = np.flatnonzero((a <= t[i]) & (t[i] <= d))
        if len(hit):
            inside[i] = first[i] + hit[-1]
            delta[i] = 0.0
        else:
            gap = np.minimum(np.abs((a - t[i]).astype(np.float64)), np.abs((t[i] - d).astype(np.float64)))
            delta[i] = gap.min() / 86400.0
    return inside, delta


def _findings(c: Cohort, visit: np.ndarray, t: np.ndarray, inside: np.ndarray, vent: tuple[np.ndarray, np.ndarray],
              patient_traits: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-study visual intensities (module doc) from the state of `visit` at time `t`."""
    S = len(visit)
    p = c.v_patient[visit]
    after = (~inside) & (t > c.disch[visit]) & (t - c.disch[visit] < 10 * 24 * _H)
    acute_w = np.where(inside, 1.0, np.where(after, 0.5, 0.0))
    A = lambda k: c.acute[visit, cat.ACUTE_INDEX[k]] * acute_w  # noqa: E731
    ch = lambda k: c.chronic[p, cat.CHRONIC_INDEX[k]].astype(float)  # noqa: E731
    sev = lambda k: c.sev[visit, cat.CHRONIC_INDEX[k]] * ch(k)  # noqa: E731
    in_icu = inside & c.icu[visit] & (c.icu_in[visit] <= t) & (t <= c.icu_out[visit])
    hf = sev("chf")
    flare = A("chf_exac")
    ctr = patient_traits["ctr"][p] + 0.04 * hf + 0.03 * flare + rng.normal(0, 0.008, S)
    after_shock = in_icu & c.shock[visit] & (t >= np.where(c.shock[visit], c.shock_onset[visit], t))
    edema = 0.6 * flare * rng.uniform(0.6, 1.2, S) + 0.12 * (hf == 3) + 0.25 * after_shock
    edema = np.where(edema > 0, edema + rng.normal(0, 0.03, S), 0.0)
    pneu = A("pneumonia")
    base_eff = 0.35 * flare + 0.08 * hf + 0.1 * sev("cirrhosis") + 0.3 * pneu + 0.25 * ch("lung_ca")
    eff_r = np.where(base_eff > 0, base_eff * rng.uniform(0.6, 1.3, S) + rng.normal(0, 0.03, S), 0.0)
    eff_l = np.where(base_eff > 0, base_eff * rng.uniform(0.3, 1.1, S) + rng.normal(0, 0.03, S), 0.0)
    stray = rng.random(S) < 0.03
    consol = np.where(pneu > 0, pneu * rng.uniform(0.45, 0.95, S), np.where(stray, rng.uniform(0.2, 0.5, S), 0.0))
    lobe = rng.choice(6, S, p=[0.12, 0.12, 0.3, 0.1, 0.06, 0.3])
    diffuse = np.where(in_icu, np.clip(0.1 + 0.3 * c.lung_injury[visit], 0, 1), 0.0)
    atel = np.where(rng.random(S) < np.where(in_icu, 0.35, 0.06), rng.uniform(0.3, 0.8, S), 0.0)
    on_vent = in_icu & ~np.isnat(vent[0][visit]) & (vent[0][visit] <= t) & (t <= vent[1][visit])
    line_at = np.where(c.shock[visit], c.shock_onset[visit], c.icu_in[visit] + 3 * _H)   # icu_events' line time
    cvc = in_icu & np.array(["central_line" in c.procedures[v] for v in visit.tolist()], bool) & (t >= line_at)
    ptx = np.where(rng.random(S) < 0.015 + 0.03 * cvc, rng.uniform(0.35, 0.9, S), 0.0)
    devices = (DEVICE_ETT * on_vent + DEVICE_NG * (on_vent & (rng.random(S) < 0.8)) + DEVICE_CVC * cvc
               + DEVICE_PACER * patient_traits["pacer"][p]).astype(np.int64)
    return {
        "ctr": np.clip(ctr, 0.36, 0.72), "edema": np.clip(edema, 0, 1),
        "effusion_l": np.clip(eff_l, 0, 1), "effusion_r": np.clip(eff_r, 0, 1),
        "consolidation": np.clip(consol, 0, 1), "consolidation_lobe": lobe.astype(np.int64),
        "diffuse_opacity": diffuse, "atelectasis": atel, "pneumothorax": ptx,
        "nodule": patient_traits["nodule"][p], "fracture": patient_traits["fracture"][p].astype(np.int64),
        "devices": devices,
    }


def _patient_traits(c: Cohort, rng: np.random.Generator) -> dict[str, np.ndarray]:
    P = c.n_patients
    ch = lambda k: c.chronic[:, cat.CHRONIC_INDEX[k]]  # noqa: E731
    sev_chf = c.chronic_sev[:, cat.CHRONIC_INDEX["chf"]] * ch("chf")
    nodule = np.where(ch("lung_ca"), rng.uniform(0.45, 1.0, P),
                      np.where(rng.random(P) < 0.03, rng.uniform(0.2, 0.5, P), 0.0))
    return {
        "ctr": rng.normal(0.45, 0.03, P),
        "pacer": (ch("afib") & (rng.random(P) < 0.25)) | ((sev_chf == 3) & (rng.random(P) < 0.2)),
        "nodule": nodule, "fracture": rng.random(P) < 0.02,
    }


def _indication(kind: str, f: dict[str, np.ndarray], i: int, reason: str, rng: np.random.Generator) -> str:
    if kind == "icu":
        if f["devices"][i] & DEVICE_ETT:
            return str(rng.choice(["Intubated, evaluate tube position", "Intubated patient, assess for interval change"]))
        if f["devices"][i] & DEVICE_CVC:
            return "Line placement"
        return str(rng.choice(["Hypoxia", "Respiratory distress", "Evaluate for interval change"]))
    options = {"pneumonia": "Fever, cough", "chf_exac": "Shortness of breath", "copd_exac": "Dyspnea, wheezing",
               "sepsis": "Fever", "ami": "Chest pain", "pe": "Chest pain, tachycardia"}
    if kind == "ward" and reason in options:
        return options[reason]
    return str(rng.choice(["Cough", "Dyspnea", "Preoperative evaluation", "Chest pain", "Follow-up"]))


def _world_rows(c: Cohort, vent, has_img: np.ndarray, in_ehr: bool, patient_offset: int,
                rng: np.random.Generator) -> tuple[dict, list[tuple[str, ...]]]:
    plan = _plan_studies(c, has_img, rng)
    traits = _patient_traits(c, rng)
    if not plan:
        return {}, []
    visit = np.array([x[0] for x in plan], np.int64)
    t = np.array([x[1] for x in plan], dtype="datetime64[s]")
    kind = np.array([x[2] for x in plan])
    views = [x[3] for x in plan]
    p = c.v_patient[visit]
    inside_v, delta = _containing(c, p, t)
    f = _findings(c, visit, t, inside_v == visit, vent, traits, rng)
    # a study planned outside may land inside another admission of the patient: it shows that one
    other = (inside_v >= 0) & (inside_v != visit)
    if other.any():
        g = _findings(c, inside_v[other], t[other], np.ones(int(other.sum()), bool), vent, traits, rng)
        for k in f:
            f[k][other] = g[k]
    reasons = [cat.REASONS[r].acute for r in c.reason[visit]]
    indication = [_indication(kind[i], f, i, reasons[i], rng) for i in range(len(visit))]
    rows = {
        "patient_key": p + patient_offset, "subject_id": c.subject_id[p], "in_ehr": np.full(len(p), in_ehr),
        "visit": np.where(in_ehr, np.where(inside_v >= 0, inside_v, -1), -1),
        "hadm_id": np.where((inside_v >= 0) & in_ehr, c.hadm_id[np.maximum(inside_v, 0)], 0),
        "time": t.astype("datetime64[us]"), "kind": kind, "delta_days": delta, "indication": np.array(indication), **f,
    }
    return rows, views


def draw_imaging(ehr: Cohort, only: Cohort, vent_ehr: tuple[np.ndarray, np.ndarray],
                 vent_only: tuple[np.ndarray, np.ndarray], seed: int) -> ImagingWorld:
    """The studies and images of the EHR patients with imaging and of the imaging-only patients
    (`only`, whose subject ids must already differ from the EHR's)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC8]))
    ch = lambda k: ehr.chronic[:, cat.CHRONIC_INDEX[k]]  # noqa: E731
    p_img = 0.43 + 0.12 * ch("chf") + 0.10 * ch("copd") + 0.06 * ch("lung_ca")
    has_img = rng.random(ehr.n_patients) < p_img
    a, views_a = _world_rows(ehr, vent_ehr, has_img, True, 0, rng)
    b, views_b = _world_rows(only, vent_only, np.ones(only.n_patients, bool), False, ehr.n_patients, rng)
    parts = [x for x in (a, b) if x]
    cols = {k: np.concatenate([x[k] for x in parts]) for k in parts[0]} if parts else {}
    views = views_a + views_b
    S = len(views)
    order = np.lexsort((cols["time"], cols["patient_key"])) if S else np.zeros(0, np.int64)
    studies = pl.DataFrame({k: v[order] for k, v in cols.items()}) if S else pl.DataFrame()
    views = [views[i] for i in order.tolist()]
    studies = studies.with_columns(
        pl.Series("study_key", np.arange(S, dtype=np.int64)),
        pl.Series("views", views, dtype=pl.List(pl.String)),
        pl.when(pl.col("hadm_id") > 0).then(pl.col("hadm_id")).alias("hadm_id"),
    )
    n_img = np.array([len(v) for v in views], np.int64)
    img_study = np.repeat(np.arange(S), n_img)
    vis = {k: studies[k].to_numpy()[img_study] for k in VISUAL}
    # per-image variation of the graded findings (positioning, inspiration): small
    for k in ("edema", "effusion_l", "effusion_r", "consolidation", "diffuse_opacity", "atelectasis"):
        vis[k] = np.where(vis[k] > 0, np.clip(vis[k] * rng.uniform(0.9, 1.1, len(img_study)), 0, 1), 0.0)
    images = pl.DataFrame({
        "image_key": np.arange(len(img_study), dtype=np.int64), "study_key": img_study.astype(np.int64),
        "patient_key": studies["patient_key"].to_numpy()[img_study],
        "view": [x for v in views for x in v], **vis,
    })
    return ImagingWorld(studies=studies, images=images)


__all__ = ["ImagingWorld", "draw_imaging", "imaging_only_cohort", "IMAGING_ONLY_SHARE"]
