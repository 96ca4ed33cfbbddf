"""The remaining MIMIC-III tables: transfers, services, ICU event tables and the ICD dictionaries.

Built from the latent `Cohort` like the core tables (`mimic3.py` writes them):

    TRANSFERS           admit -> ward / ICU transfers (every ICU stay, second stays included) -> discharge
    SERVICES            the admitting service, and a second service for some stays
    OUTPUTEVENTS        urine output every ~2 h in the ICU; oliguria after an acute kidney injury onset
    INPUTEVENTS_MV      (MetaVision stays) vasopressors from the shock onset, propofol while ventilated,
                        saline boluses, insulin for diabetics, potassium
    PROCEDUREEVENTS_MV  (MetaVision stays) invasive and non-invasive ventilation, central and arterial lines
    CHARTEVENTS rows    PEEP set every ~4 h while ventilated, invasively or not (returned for the
                        layout writers to add)
    D_ICD_DIAGNOSES / D_ICD_PROCEDURES  the CMS v32 titles (the source MIMIC-III used; not MIMIC data)

Item ids are MIMIC-III's (`tasks/icu_items.py` holds the ones the criticality labels read). The
first of the ventilation start (`vent_start`) and the non-invasive ventilation start
(`niv_start`, `respiratory.noninvasive`) is the ground truth of acute respiratory failure by the
FIDDLE definition (PEEP or ventilation), saved with the other visit truths.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from medmm.data.synth.latent import Cohort
from medmm.ontology.icd9 import cms_titles

# (ITEMID, LABEL, ABBREVIATION, DBSOURCE, LINKSTO, CATEGORY, UNITNAME, PARAM_TYPE) of the items below.
ITEMS = (
    (40055, "Urine Out Foley", None, "carevue", "outputevents", None, None, None),
    (226559, "Foley", "Foley", "metavision", "outputevents", "Output", "mL", "Numeric"),
    (221906, "Norepinephrine", "Norepinephrine", "metavision", "inputevents_mv", "Medications", "mg", "Solution"),
    (222315, "Vasopressin", "Vasopressin", "metavision", "inputevents_mv", "Medications", "units", "Solution"),
    (221749, "Phenylephrine", "Phenylephrine", "metavision", "inputevents_mv", "Medications", "mg", "Solution"),
    (222168, "Propofol", "Propofol", "metavision", "inputevents_mv", "Medications", "mg", "Solution"),
    (225158, "NaCl 0.9%", "NaCl 0.9%", "metavision", "inputevents_mv", "Fluids/Intake", "mL", "Solution"),
    (223258, "Insulin - Regular", "Insulin - Regular", "metavision", "inputevents_mv", "Medications", "units",
     "Solution"),
    (225166, "Potassium Chloride", "Potassium Chloride - KCL", "metavision", "inputevents_mv", "Medications", "mEq",
     "Solution"),
    (225792, "Invasive Ventilation", "Invasive Ventilation", "metavision", "procedureevents_mv", "2-Ventilation",
     "None", "Process"),
    (225794, "Non-invasive Ventilation", "Non-invasive Ventilation", "metavision", "procedureevents_mv",
     "2-Ventilation", "None", "Process"),
    (224263, "Multi Lumen", "Multi Lumen", "metavision", "procedureevents_mv", "Access Lines - Invasive", "None",
     "Process"),
    (225752, "Arterial Line", "Arterial Line", "metavision", "procedureevents_mv", "Access Lines - Invasive", "None",
     "Process"),
    (220339, "PEEP set", "PEEP set", "metavision", "chartevents", "Respiratory", "cmH2O", "Numeric"),
)
PEEP, VENT, NOREPI, VASO, PHENYL, PROPOFOL, SALINE, INSULIN, KCL = (220339, 225792, 221906, 222315, 221749,
                                                                     222168, 225158, 223258, 225166)
MULTI_LUMEN, ART_LINE, URINE_CV, URINE_MV, NIV = 224263, 225752, 40055, 226559, 225794


def _dt(a: np.ndarray) -> pl.Series:
    return pl.Series(a.astype("datetime64[us]"))


def hours_td(h: np.ndarray | float) -> np.ndarray:
    """Hours (array or number) -> timedelta64[s], rounded to the minute as MIMIC times are."""
    return (np.round(np.asarray(h, dtype=np.float64) * 60) * 60).astype(np.int64).astype("timedelta64[s]")


def _null(n: int, dtype=pl.String) -> pl.Series:
    return pl.Series([None] * n, dtype=dtype)


def ventilation(c: Cohort, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) of invasive ventilation per visit (NaT if none): acute respiratory failure in the
    ICU with an intubation, started early in the first stay."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7E47]))
    V = c.n_visits
    vent = c.icu & np.array(["intubation" in p for p in c.procedures])
    icu_h = (c.icu_out - c.icu_in).astype("timedelta64[s]").astype(np.float64) / 3600.0
    start_h = icu_h * rng.beta(1.2, 4.0, V)
    dur_h = np.minimum(np.exp(rng.normal(np.log(40.0), 0.7, V)), np.maximum(icu_h - start_h - 0.5, 1.0))
    nat = np.datetime64("NaT")
    start = np.where(vent, c.icu_in + hours_td(np.nan_to_num(start_h)), nat).astype("datetime64[s]")
    end = np.where(vent, start + hours_td(np.nan_to_num(dur_h)), nat).astype("datetime64[s]")
    return start, end


def transfers(c: Cohort) -> pl.DataFrame:
    """TRANSFERS: admit (to a ward, or straight to the ICU), every move in or out of an ICU, discharge."""
    from medmm.data.synth.mimic3 import care_unit

    sv, sid, t_in, t_out = c.stays()
    unit_v = care_unit(c)
    ward_of = {"MICU": 52, "CCU": 7, "TSICU": 14}
    rows = []          # (visit, icustay, eventtype, prev_unit, curr_unit, prev_ward, curr_ward, in, out)
    by_visit: dict[int, list[int]] = {}
    for j, v in enumerate(sv.tolist()):
        by_visit.setdefault(v, []).append(j)
    for v in range(c.n_visits):
        admit, disch = c.admit[v], c.disch[v]
        js = by_visit.get(v, [])
        unit = unit_v[v]
        floor_ward = 30 + int(c.hadm_id[v]) % 20
        t, prev_unit, prev_ward = admit, None, None
        event = "admit"
        for j in js:
            if t_in[j] > t:                          # a ward spell before this ICU stay
                rows.append((v, None, event, prev_unit, None, prev_ward, floor_ward, t, t_in[j]))
                prev_unit, prev_ward, event = None, floor_ward, "transfer"
            rows.append((v, int(sid[j]), event, prev_unit, unit, prev_ward, ward_of[unit], t_in[j], t_out[j]))
            prev_unit, prev_ward, event, t = unit, ward_of[unit], "transfer", t_out[j]
        if t < disch:
            rows.append((v, None, event, prev_unit, None, prev_ward, floor_ward, t, disch))
            prev_unit, prev_ward = None, floor_ward
        rows.append((v, None, "discharge", prev_unit, None, prev_ward, None, disch, None))
    v = np.array([r[0] for r in rows], np.int64)
    t_in_ = np.array([r[7] for r in rows], dtype="datetime64[s]")
    t_out_ = np.array([r[8] if r[8] is not None else np.datetime64("NaT") for r in rows], dtype="datetime64[s]")
    los = (t_out_ - t_in_).astype(np.float64) / 3600.0
    return pl.DataFrame({
        "ROW_ID": np.arange(1, len(rows) + 1), "SUBJECT_ID": c.subject_id[c.v_patient[v]], "HADM_ID": c.hadm_id[v],
        "ICUSTAY_ID": pl.Series([r[1] for r in rows], dtype=pl.Int64),
        "DBSOURCE": c.dbsource[c.v_patient[v]],
        "EVENTTYPE": [r[2] for r in rows],
        "PREV_CAREUNIT": pl.Series([r[3] for r in rows], dtype=pl.String),
        "CURR_CAREUNIT": pl.Series([r[4] for r in rows], dtype=pl.String),
        "PREV_WARDID": pl.Series([r[5] for r in rows], dtype=pl.Int64),
        "CURR_WARDID": pl.Series([r[6] for r in rows], dtype=pl.Int64),
        "INTIME": _dt(t_in_), "OUTTIME": _dt(t_out_),
        "LOS": pl.Series(np.round(los, 2)).fill_nan(None),
    })


_SERVICE = {"hip_fx": "ORTHO", "stroke": "NMED", "ami": "CMED", "chf_exac": "CMED", "gi_bleed": "MED",
            "pe": "MED"}


def services(c: Cohort, rng: np.random.Generator) -> pl.DataFrame:
    """SERVICES: the admitting service; ~12% of stays move to a second service mid-stay."""
    from medmm.data.synth import catalog as cat

    first = np.array([_SERVICE.get(cat.REASONS[r].acute, "MED") for r in c.reason], dtype=object)
    move = rng.random(c.n_visits) < 0.12
    second = np.array(["SURG", "MED", "CSURG", "NSURG", "OMED", "TRAUM"], dtype=object)[
        rng.integers(0, 6, c.n_visits)]
    second = np.where(second == first, "SURG", second)
    los_s = (c.disch - c.admit).astype(np.float64)
    t2 = c.admit + (los_s * rng.uniform(0.2, 0.7, c.n_visits)).astype(np.int64).astype("timedelta64[s]")
    v = np.concatenate([np.arange(c.n_visits), np.flatnonzero(move)])
    t = np.concatenate([c.admit, t2[move]])
    prev = np.concatenate([np.full(c.n_visits, None, dtype=object), first[move]])
    curr = np.concatenate([first, second[move]])
    order = np.lexsort((t, v))
    v, t, prev, curr = v[order], t[order], prev[order], curr[order]
    return pl.DataFrame({
        "ROW_ID": np.arange(1, len(v) + 1), "SUBJECT_ID": c.subject_id[c.v_patient[v]], "HADM_ID": c.hadm_id[v],
        "TRANSFERTIME": _dt(t), "PREV_SERVICE": pl.Series(prev.tolist(), dtype=pl.String),
        "CURR_SERVICE": pl.Series(curr.tolist(), dtype=pl.String),
    })


def outputevents(c: Cohort, seed: int) -> pl.DataFrame:
    """Urine output every ~2 h of every ICU stay (ml), low after an acute kidney injury onset."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x0E7]))
    sv, sid, t_in, t_out = c.stays()
    dur = (t_out - t_in).astype(np.float64) / 3600.0
    n = np.maximum(1, (dur / 2.0).astype(np.int64))
    rv = np.repeat(np.arange(len(sv)), n)
    k = np.arange(len(rv)) - np.repeat(np.cumsum(n) - n, n)
    t = t_in[rv] + hours_td(k * 2.0 + rng.uniform(0.5, 1.5, len(rv)))
    v = sv[rv]
    after_aki = c.aki[v] & (t >= np.where(c.aki, c.aki_onset, c.disch)[v])
    ml = np.maximum(rng.normal(np.where(after_aki, 15.0, 110.0), np.where(after_aki, 10.0, 45.0)), 0)
    ml = np.round(ml / 5) * 5
    mv = c.dbsource[c.v_patient[v]] == "metavision"
    store = t + (rng.integers(5, 60, len(v)) * 60).astype("timedelta64[s]")
    return pl.DataFrame({
        "ROW_ID": np.arange(1, len(v) + 1), "SUBJECT_ID": c.subject_id[c.v_patient[v]], "HADM_ID": c.hadm_id[v],
        "ICUSTAY_ID": sid[rv], "CHARTTIME": _dt(t), "ITEMID": np.where(mv, URINE_MV, URINE_CV),
        "VALUE": ml, "VALUEUOM": np.where(mv, "mL", "ml"), "STORETIME": _dt(store),
        "CGID": 14000 + rng.integers(0, 800, len(v)), "STOPPED": _null(len(v)), "NEWBOTTLE": _null(len(v), pl.Int64),
        "ISERROR": _null(len(v), pl.Int64),
    })


def _mv_first_stays(c: Cohort) -> np.ndarray:
    return np.flatnonzero(c.icu & (c.dbsource[c.v_patient] == "metavision"))


def inputevents_mv(c: Cohort, vent: tuple[np.ndarray, np.ndarray], seed: int) -> pl.DataFrame:
    """INPUTEVENTS_MV rows of MetaVision first ICU stays."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1497]))
    rows: list[tuple] = []      # (visit, item, start, end, amount, amount_uom, rate, rate_uom)
    vs, ve = vent
    dm = c.present("dm2")
    for v in _mv_first_stays(c).tolist():
        t_in, t_out = c.icu_in[v], c.icu_out[v]
        span = (t_out - t_in).astype(np.float64) / 3600.0
        if c.shock[v]:
            s = c.shock_onset[v]
            for item, p in ((NOREPI, 1.0), (VASO, 0.35), (PHENYL, 0.2)):
                if rng.random() < p:
                    e = min(s + hours_td(np.exp(rng.normal(np.log(20.0), 0.6))), t_out)
                    hrs = max((e - s).astype(np.float64) / 3600.0, 0.1)
                    rate = {NOREPI: 0.1, VASO: 2.4, PHENYL: 1.0}[item] * rng.uniform(0.5, 2.5)
                    uom = {NOREPI: ("mg", "mcg/kg/min"), VASO: ("units", "units/hour"), PHENYL: ("mg", "mcg/kg/min")}[item]
                    rows.append((v, item, s, e, round(rate * hrs * (0.42 if item != VASO else 1.0), 4), uom[0],
                                 round(rate, 4), uom[1]))
        if not np.isnat(vs[v]):
            rows.append((v, PROPOFOL, vs[v], ve[v], round(float(rng.uniform(200, 2000)), 1), "mg",
                         round(float(rng.uniform(10, 50)), 2), "mcg/kg/min"))
        for _ in range(rng.poisson(1.5)):
            s = t_in + hours_td(rng.uniform(0, span))
            rows.append((v, SALINE, s, s + hours_td(0.5), float(rng.choice([250, 500, 1000])), "ml", None, None))
        if dm[v]:
            for _ in range(rng.poisson(2.0)):
                s = t_in + hours_td(rng.uniform(0, span))
                rows.append((v, INSULIN, s, s + hours_td(1 / 60), float(rng.integers(2, 12)), "units", None, None))
        if rng.random() < 0.3:
            s = t_in + hours_td(rng.uniform(0, span))
            rows.append((v, KCL, s, s + hours_td(1.0), 20.0, "mEq", None, None))
    rows.sort(key=lambda r: (r[0], r[2], r[1]))
    n = len(rows)
    v = np.array([r[0] for r in rows], np.int64)
    start = np.array([r[2] for r in rows], dtype="datetime64[s]")
    end = np.array([r[3] for r in rows], dtype="datetime64[s]")
    order_id = 3_000_000 + np.arange(n) * 7
    return pl.DataFrame({
        "ROW_ID": np.arange(1, n + 1), "SUBJECT_ID": c.subject_id[c.v_patient[v]], "HADM_ID": c.hadm_id[v],
        "ICUSTAY_ID": c.icustay_id[v], "STARTTIME": _dt(start), "ENDTIME": _dt(end),
        "ITEMID": np.array([r[1] for r in rows], np.int64),
        "AMOUNT": pl.Series([r[4] for r in rows], dtype=pl.Float64),
        "AMOUNTUOM": pl.Series([r[5] for r in rows], dtype=pl.String),
        "RATE": pl.Series([r[6] for r in rows], dtype=pl.Float64),
        "RATEUOM": pl.Series([r[7] for r in rows], dtype=pl.String),
        "STORETIME": _dt(start), "CGID": 15000 + (order_id % 700), "ORDERID": order_id, "LINKORDERID": order_id,
        "ORDERCATEGORYNAME": pl.Series([_ORDER_CAT[r[1]] for r in rows], dtype=pl.String),
        "SECONDARYORDERCATEGORYNAME": _null(n), "ORDERCOMPONENTTYPEDESCRIPTION": ["Main order parameter"] * n,
        "ORDERCATEGORYDESCRIPTION": pl.Series(["Continuous Med" if r[6] is not None else "Drug Push" for r in rows],
                                              dtype=pl.String),
        "PATIENTWEIGHT": np.round(70 + 15 * c.z[c.v_patient[v], 0], 1) if n else pl.Series([], dtype=pl.Float64),
        "TOTALAMOUNT": _null(n, pl.Float64), "TOTALAMOUNTUOM": _null(n), "ISOPENBAG": np.zeros(n, np.int64),
        "CONTINUEINNEXTDEPT": np.zeros(n, np.int64), "CANCELREASON": np.zeros(n, np.int64),
        "STATUSDESCRIPTION": ["FinishedRunning"] * n, "COMMENTS_EDITEDBY": _null(n), "COMMENTS_CANCELEDBY": _null(n),
        "COMMENTS_DATE": _null(n, pl.Datetime("us")),
        "ORIGINALAMOUNT": pl.Series([r[4] for r in rows], dtype=pl.Float64),
        "ORIGINALRATE": pl.Series([r[6] for r in rows], dtype=pl.Float64),
    })


_ORDER_CAT = {NOREPI: "01-Drips", VASO: "01-Drips", PHENYL: "01-Drips", PROPOFOL: "01-Drips",
              SALINE: "03-IV Fluid Bolus", INSULIN: "06-Insulin (Non IV)", KCL: "02-Fluids (Crystalloids)"}


def procedureevents_mv(c: Cohort, vent: tuple[np.ndarray, np.ndarray], seed: int,
                       niv: tuple[np.ndarray, np.ndarray] | None = None) -> pl.DataFrame:
    """PROCEDUREEVENTS_MV rows of MetaVision first ICU stays: invasive and (`niv`, from
    `respiratory.noninvasive`) non-invasive ventilation, and lines (minutes)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9E0C]))
    rows: list[tuple] = []        # (visit, item, start, end, location, location category, order category)
    vs, ve = vent
    for v in _mv_first_stays(c).tolist():
        if not np.isnat(vs[v]):
            rows.append((v, VENT, vs[v], ve[v], None, None, "Ventilation"))
        if niv is not None and not np.isnat(niv[0][v]):
            rows.append((v, NIV, niv[0][v], niv[1][v], None, None, "Ventilation"))
        procs = c.procedures[v]
        if "central_line" in procs:
            s = c.icu_in[v] + hours_td(rng.uniform(0, 6))
            if c.shock[v]:          # placed for the vasopressors: at the shock onset, not before
                s = max(c.shock_onset[v] - hours_td(rng.uniform(0, 1)), c.icu_in[v])
            rows.append((v, MULTI_LUMEN, s, c.icu_out[v], rng.choice(["Right IJ", "Left Subclavian", "Right Femoral"]),
                         "Invasive Venous", "Invasive Lines"))
        if "art_line" in procs:
            s = c.icu_in[v] + hours_td(rng.uniform(0, 6))
            rows.append((v, ART_LINE, s, c.icu_out[v], rng.choice(["Left Radial", "Right Radial"]),
                         "Invasive Arterial", "Invasive Lines"))
    rows.sort(key=lambda r: (r[0], r[2], r[1]))
    n = len(rows)
    v = np.array([r[0] for r in rows], np.int64)
    start = np.array([r[2] for r in rows], dtype="datetime64[s]")
    end = np.array([r[3] for r in rows], dtype="datetime64[s]")
    minutes = np.round((end - start).astype(np.float64) / 60.0)
    order_id = 7_000_000 + np.arange(n) * 11
    return pl.DataFrame({
        "ROW_ID": np.arange(1, n + 1), "SUBJECT_ID": c.subject_id[c.v_patient[v]], "HADM_ID": c.hadm_id[v],
        "ICUSTAY_ID": c.icustay_id[v], "STARTTIME": _dt(start), "ENDTIME": _dt(end),
        "ITEMID": np.array([r[1] for r in rows], np.int64), "VALUE": minutes, "VALUEUOM": ["min"] * n,
        "LOCATION": pl.Series([r[4] for r in rows], dtype=pl.String),
        "LOCATIONCATEGORY": pl.Series([r[5] for r in rows], dtype=pl.String),
        "STORETIME": _dt(end), "CGID": 16000 + (order_id % 900), "ORDERID": order_id, "LINKORDERID": order_id,
        "ORDERCATEGORYNAME": pl.Series([r[6] for r in rows], dtype=pl.String),
        "SECONDARYORDERCATEGORYNAME": _null(n), "ORDERCATEGORYDESCRIPTION": ["Task"] * n,
        "ISOPENBAG": np.zeros(n, np.int64), "CONTINUEINNEXTDEPT": np.zeros(n, np.int64),
        "CANCELREASON": np.zeros(n, np.int64), "STATUSDESCRIPTION": ["FinishedRunning"] * n,
        "COMMENTS_EDITEDBY": _null(n), "COMMENTS_CANCELEDBY": _null(n), "COMMENTS_DATE": _null(n, pl.Datetime("us")),
    })


def peep_rows(c: Cohort, vent: tuple[np.ndarray, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """PEEP set (cmH2O) every ~4 h while ventilated, MetaVision stays: visit, hours from ICU in, value."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x9EE9]))
    vs, ve = vent
    v = np.flatnonzero(~np.isnat(vs) & (c.dbsource[c.v_patient] == "metavision"))
    dur = (ve[v] - vs[v]).astype(np.float64) / 3600.0
    n = np.maximum(1, (dur / 4.0).astype(np.int64))
    rv = np.repeat(v, n)
    k = np.arange(len(rv)) - np.repeat(np.cumsum(n) - n, n)
    off = (vs[rv] - c.icu_in[rv]).astype(np.float64) / 3600.0
    hours = off + k * 4.0 + rng.uniform(0.0, 0.5, len(rv))
    value = np.clip(np.round(rng.normal(8, 3, len(rv))), 5, 20)
    return dict(visit=rv, hours=hours, value=value)


def niv_peep_rows(c: Cohort, niv: tuple[np.ndarray, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    """PEEP (cmH2O) every ~4 h of non-invasive ventilation from its start, MetaVision stays:
    visit, hours from ICU in, value (lower settings than invasive ventilation's)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4E1F]))
    ns, ne = niv
    v = np.flatnonzero(~np.isnat(ns) & (c.dbsource[c.v_patient] == "metavision"))
    n = np.maximum(1, ((ne[v] - ns[v]).astype(np.float64) / 3600.0 / 4.0).astype(np.int64))
    rv = np.repeat(v, n)
    k = np.arange(len(rv)) - np.repeat(np.cumsum(n) - n, n)
    off = (ns[rv] - c.icu_in[rv]).astype(np.float64) / 3600.0
    return dict(visit=rv, hours=off + k * 4.0 + rng.uniform(0.0, 0.5, len(rv)),
                value=np.clip(np.round(rng.normal(6, 2, len(rv))), 4, 12))


def icd_dictionaries() -> tuple[pl.DataFrame, pl.DataFrame]:
    """D_ICD_DIAGNOSES and D_ICD_PROCEDURES from the CMS v32 short and long titles."""
    frames = []
    for kind in ("dx", "sg"):
        long_, short = cms_titles(kind, "long"), cms_titles(kind, "short")
        codes = sorted(long_)
        frames.append(pl.DataFrame({
            "ROW_ID": np.arange(1, len(codes) + 1), "ICD9_CODE": codes,
            "SHORT_TITLE": [short.get(k, long_[k][:24]) for k in codes], "LONG_TITLE": [long_[k] for k in codes],
        }))
    return frames[0], frames[1]
