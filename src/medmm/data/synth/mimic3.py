"""Writer of the raw MIMIC-III v1.4 files (as released: upper-case quoted headers, `.csv.gz`).

Takes a latent `Cohort` and writes PATIENTS, ADMISSIONS, ICUSTAYS, DIAGNOSES_ICD,
PROCEDURES_ICD, PRESCRIPTIONS, NOTEEVENTS, LABEVENTS, CHARTEVENTS (plus D_LABITEMS and
D_ITEMS for the items used), the GAMENet-format drug mapping files, and the ground truth.

Value formats follow the release: strings quoted, numbers and times unquoted, NULL as an empty
field, times "YYYY-MM-DD HH:MM:SS", ICD-9 codes as quoted strings without dots. Files are
deterministic for a seed: gzip with mtime 0 and no file name, rows in a fixed order.
"""

from __future__ import annotations

import gzip
import io
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from medmm.data.synth import catalog as cat
from medmm.data.synth import icu_events
from medmm.data.synth.lab_items import EXTRA_LABS
from medmm.data.synth.latent import Cohort, Density, simulate_labs, simulate_vitals
from medmm.data.synth.notes import discharge_summary
from medmm.data.synth.respiratory import noninvasive, stay_truth

HEADERS: dict[str, tuple[str, ...]] = {
    "PATIENTS": ("ROW_ID", "SUBJECT_ID", "GENDER", "DOB", "DOD", "DOD_HOSP", "DOD_SSN", "EXPIRE_FLAG"),
    "ADMISSIONS": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ADMITTIME", "DISCHTIME", "DEATHTIME", "ADMISSION_TYPE",
                   "ADMISSION_LOCATION", "DISCHARGE_LOCATION", "INSURANCE", "LANGUAGE", "RELIGION",
                   "MARITAL_STATUS", "ETHNICITY", "EDREGTIME", "EDOUTTIME", "DIAGNOSIS", "HOSPITAL_EXPIRE_FLAG",
                   "HAS_CHARTEVENTS_DATA"),
    "ICUSTAYS": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "DBSOURCE", "FIRST_CAREUNIT", "LAST_CAREUNIT",
                 "FIRST_WARDID", "LAST_WARDID", "INTIME", "OUTTIME", "LOS"),
    "DIAGNOSES_ICD": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"),
    "PROCEDURES_ICD": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"),
    "PRESCRIPTIONS": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "STARTDATE", "ENDDATE", "DRUG_TYPE", "DRUG",
                      "DRUG_NAME_POE", "DRUG_NAME_GENERIC", "FORMULARY_DRUG_CD", "GSN", "NDC", "PROD_STRENGTH",
                      "DOSE_VAL_RX", "DOSE_UNIT_RX", "FORM_VAL_DISP", "FORM_UNIT_DISP", "ROUTE"),
    "NOTEEVENTS": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CHARTTIME", "STORETIME", "CATEGORY",
                   "DESCRIPTION", "CGID", "ISERROR", "TEXT"),
    "LABEVENTS": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ITEMID", "CHARTTIME", "VALUE", "VALUENUM", "VALUEUOM", "FLAG"),
    "CHARTEVENTS": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "ITEMID", "CHARTTIME", "STORETIME", "CGID",
                    "VALUE", "VALUENUM", "VALUEUOM", "WARNING", "ERROR", "RESULTSTATUS", "STOPPED"),
    "SERVICES": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "TRANSFERTIME", "PREV_SERVICE", "CURR_SERVICE"),
    "TRANSFERS": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "DBSOURCE", "EVENTTYPE", "PREV_CAREUNIT", "CURR_CAREUNIT", "PREV_WARDID", "CURR_WARDID", "INTIME", "OUTTIME", "LOS"),
    "OUTPUTEVENTS": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "CHARTTIME", "ITEMID", "VALUE", "VALUEUOM", "STORETIME", "CGID", "STOPPED", "NEWBOTTLE", "ISERROR"),
    "INPUTEVENTS_MV": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "STARTTIME", "ENDTIME", "ITEMID", "AMOUNT", "AMOUNTUOM", "RATE", "RATEUOM", "STORETIME", "CGID", "ORDERID", "LINKORDERID", "ORDERCATEGORYNAME", "SECONDARYORDERCATEGORYNAME", "ORDERCOMPONENTTYPEDESCRIPTION", "ORDERCATEGORYDESCRIPTION", "PATIENTWEIGHT", "TOTALAMOUNT", "TOTALAMOUNTUOM", "ISOPENBAG", "CONTINUEINNEXTDEPT", "CANCELREASON", "STATUSDESCRIPTION", "COMMENTS_EDITEDBY", "COMMENTS_CANCELEDBY", "COMMENTS_DATE", "ORIGINALAMOUNT", "ORIGINALRATE"),
    "PROCEDUREEVENTS_MV": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "STARTTIME", "ENDTIME", "ITEMID", "VALUE", "VALUEUOM", "LOCATION", "LOCATIONCATEGORY", "STORETIME", "CGID", "ORDERID", "LINKORDERID", "ORDERCATEGORYNAME", "SECONDARYORDERCATEGORYNAME", "ORDERCATEGORYDESCRIPTION", "ISOPENBAG", "CONTINUEINNEXTDEPT", "CANCELREASON", "STATUSDESCRIPTION", "COMMENTS_EDITEDBY", "COMMENTS_CANCELEDBY", "COMMENTS_DATE"),
    "D_ICD_DIAGNOSES": ("ROW_ID", "ICD9_CODE", "SHORT_TITLE", "LONG_TITLE"),
    "D_ICD_PROCEDURES": ("ROW_ID", "ICD9_CODE", "SHORT_TITLE", "LONG_TITLE"),
    "D_LABITEMS": ("ROW_ID", "ITEMID", "LABEL", "FLUID", "CATEGORY", "LOINC_CODE"),
    "D_ITEMS": ("ROW_ID", "ITEMID", "LABEL", "ABBREVIATION", "DBSOURCE", "LINKSTO", "CATEGORY", "UNITNAME",
                "PARAM_TYPE", "CONCEPTID"),
}
# Columns written quoted (strings in the release); all others are numbers or times, unquoted.
_QUOTED = {
    "GENDER", "ADMISSION_TYPE", "ADMISSION_LOCATION", "DISCHARGE_LOCATION", "INSURANCE", "LANGUAGE", "RELIGION",
    "MARITAL_STATUS", "ETHNICITY", "DIAGNOSIS", "DBSOURCE", "FIRST_CAREUNIT", "LAST_CAREUNIT", "ICD9_CODE",
    "DRUG_TYPE", "DRUG", "DRUG_NAME_POE", "DRUG_NAME_GENERIC", "FORMULARY_DRUG_CD", "GSN", "NDC", "PROD_STRENGTH",
    "DOSE_VAL_RX", "DOSE_UNIT_RX", "FORM_VAL_DISP", "FORM_UNIT_DISP", "ROUTE", "CATEGORY", "DESCRIPTION", "ISERROR",
    "TEXT", "VALUE", "VALUEUOM", "FLAG", "RESULTSTATUS", "STOPPED", "LABEL", "FLUID", "LOINC_CODE", "ABBREVIATION",
    "LINKSTO", "UNITNAME", "PARAM_TYPE", "EVENTTYPE", "PREV_CAREUNIT", "CURR_CAREUNIT", "PREV_SERVICE", "CURR_SERVICE",
    "AMOUNTUOM", "RATEUOM", "ORDERCATEGORYNAME", "SECONDARYORDERCATEGORYNAME", "ORDERCOMPONENTTYPEDESCRIPTION",
    "ORDERCATEGORYDESCRIPTION", "TOTALAMOUNTUOM", "STATUSDESCRIPTION", "COMMENTS_EDITEDBY", "COMMENTS_CANCELEDBY",
    "LOCATION", "LOCATIONCATEGORY", "SHORT_TITLE", "LONG_TITLE",
}
_TS = "%Y-%m-%d %H:%M:%S"
GZIP_LEVEL = 4      # deterministic at any fixed level; 4 trades ~10% size for ~2x speed over 6


def write_table(path: Path, name: str, df: pl.DataFrame, chunk_rows: int = 500_000,
                headers: dict[str, tuple[str, ...]] | None = None) -> int:
    """Write `df` (columns = HEADERS[name]) as a release-formatted, deterministic `.csv.gz`.

    headers: another release's headers (MIMIC-IV's, `mimic4.HEADERS`): then `name` is looked up
    there and the file is written as MIMIC-IV releases are, header unquoted and a field quoted
    only when it holds a comma, a quote or a line break."""
    mimic3 = headers is None
    cols = (HEADERS if mimic3 else headers)[name]
    if tuple(df.columns) != cols:
        raise ValueError(f"{name}: frame columns {df.columns} differ from the release header {cols}")
    exprs = []
    for col, dt in df.schema.items():
        e = pl.col(col)
        if mimic3 and col in _QUOTED:
            e = pl.lit('"') + e.cast(pl.String).str.replace_all('"', '""', literal=True) + pl.lit('"')
        elif dt == pl.Datetime:
            e = e.dt.strftime(_TS)
        exprs.append(e.alias(col))
    header = (",".join(f'"{c}"' if mimic3 else c for c in cols) + "\n").encode()
    # Format chunk k+1 (polars, multi-threaded) while chunk k is compressed (zlib releases the
    # GIL): one gzip stream, written in order, so the bytes do not depend on the timing.
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                  compresslevel=GZIP_LEVEL) as gz, \
            ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(gz.write, header)
        for start in range(0, df.height, chunk_rows):
            buf = io.BytesIO()
            df.slice(start, chunk_rows).select(exprs).write_csv(
                buf, include_header=False, quote_style="never" if mimic3 else "necessary", null_value="")
            pending.result()
            pending = pool.submit(gz.write, buf.getvalue())
        pending.result()
    return df.height


def _dt(a: np.ndarray) -> pl.Series:
    return pl.Series(a.astype("datetime64[us]"))


def _nullable(values: np.ndarray | str, present: np.ndarray) -> pl.Series:
    """`values` where `present`, null elsewhere: one dtype whichever rows are null.

    `values`: a typed numpy array (unicode or numeric, one item per row) or one string for every
    row. Not `np.where(present, "x", None)`: polars types that object array by its first item, so
    it fails to cast to String exactly when the first row is null (which rows are null varies by
    seed)."""
    if isinstance(values, np.ndarray) and values.dtype == object:
        raise TypeError("_nullable: pass a typed numpy array, not dtype=object")
    value = pl.lit(values, pl.String) if isinstance(values, str) else pl.Series(values)
    return pl.select(pl.when(pl.Series(present, dtype=pl.Boolean)).then(value)).to_series()


def _fmt_fixed(values: np.ndarray, decimals: np.ndarray) -> tuple[pl.Series, pl.Series]:
    """(VALUE, VALUENUM) strings: VALUE with the item's fixed decimals ("1.0"), VALUENUM without
    trailing zeros ("1"), as MIMIC writes them. Integer arithmetic in numpy, no regex (35 M rows)."""
    dec = decimals.astype(np.int64)
    scale = 10 ** dec
    scaled = np.rint(np.maximum(values, 0.0) * scale).astype(np.int64)
    ip, fp = scaled // scale, scaled % scale
    # Trailing-zero trim for VALUENUM (decimals <= 2 in the catalog).
    trim2 = (dec == 2) & (fp % 10 == 0)
    frac = np.where(trim2, fp // 10, fp)
    width = np.where(trim2, 1, dec)
    df = pl.DataFrame({"ip": ip, "fp": fp, "dec": dec, "frac": frac, "width": width, "has": fp > 0})
    ip_s = pl.col("ip").cast(pl.String)
    value = pl.when(pl.col("dec") == 0).then(ip_s).otherwise(
        ip_s + pl.lit(".") + pl.col("fp").cast(pl.String).str.zfill(pl.col("dec")))
    num = pl.when(pl.col("has")).then(
        ip_s + pl.lit(".") + pl.col("frac").cast(pl.String).str.zfill(pl.col("width"))).otherwise(ip_s)
    out = df.select(value.alias("VALUE"), num.alias("VALUENUM"))
    return out["VALUE"], out["VALUENUM"]


# ----------------------------------------------------------------------------------------------


def _patients(c: Cohort, first_admit: np.ndarray) -> pl.DataFrame:
    P = c.n_patients
    died_any = np.zeros(P, bool)
    dod = np.full(P, np.datetime64("NaT"), dtype="datetime64[s]")
    dv = np.flatnonzero(c.died)
    died_any[c.v_patient[dv]] = True
    dod[c.v_patient[dv]] = c.disch[dv].astype("datetime64[D]").astype("datetime64[s]")
    # MIMIC's de-identification: patients older than 89 get a date of birth 300 years before
    # their first admission.
    age_first = (first_admit - c.birth).astype(np.float64) / (365.25 * 86400)
    dob = np.where(age_first >= 89.5, (first_admit.astype("datetime64[D]") - np.timedelta64(300 * 365 + 73, "D"))
                   .astype("datetime64[s]"), c.birth)
    ssn = np.where(np.arange(P) % 5 == 0, np.datetime64("NaT"), dod)
    return pl.DataFrame({
        "ROW_ID": np.arange(1, P + 1), "SUBJECT_ID": c.subject_id,
        "GENDER": np.where(c.male, "M", "F"), "DOB": _dt(dob), "DOD": _dt(dod), "DOD_HOSP": _dt(dod),
        "DOD_SSN": _dt(ssn), "EXPIRE_FLAG": died_any.astype(np.int64),
    })


def _admissions(c: Cohort, rng: np.random.Generator) -> pl.DataFrame:
    V = c.n_visits
    p = c.v_patient
    reason_name = np.array([cat.ACUTE[cat.ACUTE_INDEX[r.acute]].name.upper() for r in cat.REASONS])[c.reason]
    elective = (c.reason == cat.REASON_INDEX["hip_fx"]) & (rng.random(V) < 0.2)
    adm_type = np.where(elective, "URGENT", np.where(rng.random(V) < 0.06, "ELECTIVE", "EMERGENCY"))
    adm_loc = np.where(adm_type == "EMERGENCY",
                       np.where(rng.random(V) < 0.75, "EMERGENCY ROOM ADMIT", "TRANSFER FROM HOSP/EXTRAM"),
                       "PHYS REFERRAL/NORMAL DELI")
    dis_loc = np.array(["HOME", "HOME HEALTH CARE", "SNF", "REHAB/DISTINCT PART HOSP"])[
        np.minimum((rng.random(V) * 2 + (c.age - 50) / 25).astype(np.int64).clip(0, 3), 3)]
    dis_loc = np.where(c.died, "DEAD/EXPIRED", dis_loc)
    age = c.age
    insurance = np.where(age >= 65, "Medicare", np.where(c.homeless[p], "Medicaid",
                         np.where(rng.random(V) < 0.8, "Private", "Medicaid")))
    marital_alone = np.array(["SINGLE", "WIDOWED", "DIVORCED"])[rng.integers(0, 3, V)]
    alone = c.lives_alone[p] | c.homeless[p]
    married = rng.random(V) < 0.85            # for the others; the rest have no status recorded
    marital = _nullable(np.where(alone, marital_alone, "MARRIED"), alone | married)
    eth_pt = np.array(["WHITE", "BLACK/AFRICAN AMERICAN", "HISPANIC OR LATINO", "ASIAN", "UNKNOWN/NOT SPECIFIED"])[
        _pick(rng, c.n_patients, [0.7, 0.1, 0.05, 0.03, 0.12])]
    religion = np.array(["CATHOLIC", "PROTESTANT QUAKER", "JEWISH", "NOT SPECIFIED", "UNOBTAINABLE"])[
        _pick(rng, c.n_patients, [0.35, 0.2, 0.08, 0.25, 0.12])]
    has_lang = rng.random(c.n_patients) < 0.85
    ed = adm_loc == "EMERGENCY ROOM ADMIT"
    edreg = np.where(ed, c.admit - (rng.uniform(1, 8, V) * 3600).astype("timedelta64[s]") // 60 * 60,
                     np.datetime64("NaT"))
    edout = np.where(ed, c.admit + np.timedelta64(0, "s") + (rng.uniform(0, 1, V) * 3600).astype("timedelta64[s]")
                     // 60 * 60, np.datetime64("NaT"))
    return pl.DataFrame({
        "ROW_ID": np.arange(1, V + 1), "SUBJECT_ID": c.subject_id[p], "HADM_ID": c.hadm_id,
        "ADMITTIME": _dt(c.admit), "DISCHTIME": _dt(c.disch),
        "DEATHTIME": _dt(np.where(c.died, c.disch, np.datetime64("NaT"))),
        "ADMISSION_TYPE": adm_type, "ADMISSION_LOCATION": adm_loc, "DISCHARGE_LOCATION": dis_loc,
        "INSURANCE": insurance, "LANGUAGE": _nullable("ENGL", has_lang[p]),
        "RELIGION": religion[p], "MARITAL_STATUS": marital,
        "ETHNICITY": eth_pt[p], "EDREGTIME": _dt(edreg.astype("datetime64[s]")),
        "EDOUTTIME": _dt(edout.astype("datetime64[s]")), "DIAGNOSIS": reason_name,
        "HOSPITAL_EXPIRE_FLAG": c.died.astype(np.int64), "HAS_CHARTEVENTS_DATA": c.icu.astype(np.int64),
    })


def _pick(rng: np.random.Generator, n: int, probs: list[float]) -> np.ndarray:
    return np.minimum(np.searchsorted(np.cumsum(probs), rng.random(n)), len(probs) - 1)


def care_unit(c: Cohort) -> np.ndarray:
    """(V,) the ICU care unit of each admission's stays."""
    cardiac = c.present("ami") | c.present("chf_exac") | c.present("cardiogenic_shock")
    surg = c.present("hip_fx")
    return np.where(cardiac, "CCU", np.where(surg, "TSICU", "MICU"))


def _icustays(c: Cohort) -> pl.DataFrame:
    s, ids, t_in, t_out = c.stays()
    unit = care_unit(c)[s]
    ward = np.select([unit == "CCU", unit == "TSICU"], [7, 14], 52)
    los = (t_out - t_in).astype(np.float64) / 86400.0
    return pl.DataFrame({
        "ROW_ID": np.arange(1, len(s) + 1), "SUBJECT_ID": c.subject_id[c.v_patient[s]], "HADM_ID": c.hadm_id[s],
        "ICUSTAY_ID": ids, "DBSOURCE": c.dbsource[c.v_patient[s]], "FIRST_CAREUNIT": unit,
        "LAST_CAREUNIT": unit, "FIRST_WARDID": ward, "LAST_WARDID": ward, "INTIME": _dt(t_in),
        "OUTTIME": _dt(t_out), "LOS": pl.Series([f"{x:.4f}" for x in los], dtype=pl.String),
    })


def mess(df: pl.DataFrame, rng: np.random.Generator, duplicate: float = 0.0,
         nulls: dict[str, float] | None = None) -> pl.DataFrame:
    """Real-world mess at stated rates: a share of rows written twice (right after the original,
    as re-sent interface messages are) and optional columns left empty; ROW_ID renumbered."""
    n = df.height
    if nulls:
        df = df.with_columns([
            pl.when(pl.Series(rng.random(n) < p)).then(None).otherwise(pl.col(col)).alias(col)
            for col, p in nulls.items()])
    if duplicate:
        reps = np.where(rng.random(n) < duplicate, 2, 1)
        df = df.select(pl.all().gather(pl.Series(np.repeat(np.arange(n), reps))))
    return df.with_columns(pl.Series("ROW_ID", np.arange(1, df.height + 1)))


def _codes_table(c: Cohort, lists: list[list[str]], rng: np.random.Generator | None = None) -> pl.DataFrame:
    """DIAGNOSES_ICD / PROCEDURES_ICD rows in SEQ_NUM order; with `rng`, a few rows written twice
    and a few codes left empty (MIMIC-III has both)."""
    n = np.array([len(x) for x in lists])
    v = np.repeat(np.arange(c.n_visits), n)
    seq = np.arange(len(v)) - np.repeat(np.cumsum(n) - n, n) + 1
    df = pl.DataFrame({
        "ROW_ID": np.arange(1, len(v) + 1), "SUBJECT_ID": c.subject_id[c.v_patient[v]], "HADM_ID": c.hadm_id[v],
        "SEQ_NUM": seq, "ICD9_CODE": pl.Series([x for xs in lists for x in xs], dtype=pl.String),
    })
    return df if rng is None else mess(df, rng, duplicate=0.003, nulls={"ICD9_CODE": 0.001})


def _prescriptions(c: Cohort, density: Density, seed: int) -> pl.DataFrame:
    """One row per drug order (or per order-day at MIMIC density); ~4% of rows coded only by name
    (NDC "0" base solutions, or an alternate package whose NDC the mapping file omits)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD2]))
    ov, od, os_, oe = [], [], [], []
    for v, orders in enumerate(c.orders):
        for i, s, e in orders:
            ov.append(v)
            od.append(i)
            os_.append(s)
            oe.append(e)
    ov, od = np.array(ov, np.int64), np.array(od, np.int64)
    os_, oe = np.array(os_), np.array(oe)
    # Base solutions for IV drugs in the ICU (MIMIC writes them as DRUG_TYPE "BASE").
    base_v = np.flatnonzero(c.icu & (rng.random(c.n_visits) < 0.25))
    ov = np.concatenate([ov, base_v])
    od = np.concatenate([od, np.array(cat.BASE_DRUGS)[rng.integers(0, len(cat.BASE_DRUGS), len(base_v))]])
    os_ = np.concatenate([os_, np.zeros(len(base_v))])
    oe = np.concatenate([oe, np.minimum(c.los_hours()[base_v] / 24, 2.0)])
    # Alternate (unmapped) package for a share of some common drugs.
    alt = np.full(len(cat.DRUGS), -1)
    for key, j in cat.ALT_OF.items():
        alt[cat.DRUG_INDEX[key]] = j
    swap = (alt[od] >= 0) & (rng.random(len(od)) < 0.25)
    od = np.where(swap, alt[od], od)
    # Rows per order: daily re-orders at MIMIC density (each row one day); otherwise the order
    # and its renewals and dose changes (~one every three days), each a row of its own.
    days = np.maximum(np.ceil(oe - os_).astype(np.int64), 1)
    nrep = days if density.daily_reorders else np.minimum(1 + rng.poisson(0.35 * days), days)
    rv = np.repeat(ov, nrep)
    rd = np.repeat(od, nrep)
    k = np.arange(len(rv)) - np.repeat(np.cumsum(nrep) - nrep, nrep)
    step = np.repeat(days / nrep, nrep)
    start_d = np.repeat(os_, nrep) + k * step
    end_d = np.where(k == np.repeat(nrep, nrep) - 1, np.repeat(oe, nrep), start_d + step)
    admit_day = c.admit[rv].astype("datetime64[D]")
    start = (admit_day + np.floor(start_d).astype("timedelta64[D]")).astype("datetime64[s]")
    end = (admit_day + np.floor(end_d).astype("timedelta64[D]")).astype("datetime64[s]")
    # Order rows by visit, then start date, then drug (as the release is sorted within a stay).
    order = np.lexsort((rd, start, rv))
    rv, rd, start, end = rv[order], rd[order], start[order], end[order]
    t_start = start
    in_icu = c.icu[rv] & (t_start >= c.icu_in[rv].astype("datetime64[D]")) & (t_start <= c.icu_out[rv])
    icu_id = _nullable(c.icustay_id[rv], in_icu)
    # String columns by gathering from a one-row-per-product table (numpy string arrays are slow
    # to hand to polars at millions of rows).
    D = cat.DRUGS
    base = [d.drug_type == "BASE" for d in D]
    prod = pl.DataFrame({
        "DRUG_TYPE": [d.drug_type for d in D], "DRUG": [d.drug for d in D],
        "DRUG_NAME_POE": [None if b else d.drug for d, b in zip(D, base)],
        "DRUG_NAME_GENERIC": [None if b else d.drug for d, b in zip(D, base)],
        "FORMULARY_DRUG_CD": [d.formulary for d in D],
        "GSN": [None if b else f"{(i * 7919) % 999999:06d}" for i, b in enumerate(base)],
        "NDC": [d.ndc for d in D], "PROD_STRENGTH": [d.strength for d in D], "DOSE_VAL_RX": [d.dose for d in D],
        "DOSE_UNIT_RX": [d.unit for d in D], "FORM_VAL_DISP": [d.form_val for d in D],
        "FORM_UNIT_DISP": [d.form_unit for d in D], "ROUTE": [d.route for d in D],
    }, schema={k: pl.String for k in HEADERS["PRESCRIPTIONS"][6:]})
    strings = prod.select(pl.all().gather(pl.Series(rd)))
    # Text doses as the pharmacy writes them: ranges for as-needed orders ("325-650"), thousands
    # separators ("25,000"); MIMIC-III's DOSE_VAL_RX is a string column for this reason.
    prn = np.array(["as needed" in d.freq for d in D])[rd] & (rng.random(len(rd)) < 0.5)
    ranged = pl.Series([_dose_range(d.dose) for d in D], dtype=pl.String).gather(pl.Series(rd))
    strings = strings.with_columns(
        pl.when(pl.Series(prn)).then(ranged).otherwise(pl.col("DOSE_VAL_RX")).alias("DOSE_VAL_RX"))
    strings = strings.with_columns(pl.col("DOSE_VAL_RX").str.replace(r"^(\d{2,3})(\d{3})$", "$1,$2"))
    ids = pl.DataFrame({
        "ROW_ID": np.arange(1, len(rv) + 1), "SUBJECT_ID": c.subject_id[c.v_patient[rv]], "HADM_ID": c.hadm_id[rv],
        "ICUSTAY_ID": icu_id, "STARTDATE": _dt(start), "ENDDATE": _dt(end),
    })
    return mess(pl.concat([ids, strings], how="horizontal"), rng, duplicate=0.015,
                nulls={"DRUG_NAME_POE": 0.2, "DRUG_NAME_GENERIC": 0.05, "GSN": 0.1, "FORM_VAL_DISP": 0.02,
                       "ROUTE": 0.005, "PROD_STRENGTH": 0.01})


def _dose_range(dose: str) -> str:
    """'650' -> '325-650', '1' -> '1-2', '0.5' -> '0.5-1': the range of an as-needed order."""
    x = float(dose)
    lo, hi = (x / 2, x) if x >= 10 else (x, 2 * x)
    return f"{lo:g}-{hi:g}"


def _notes(c: Cohort, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """NOTEEVENTS (one discharge summary for ~97% of admissions) and the entity spans."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x707E]))
    has = rng.random(c.n_visits) < 0.97
    vis = np.flatnonzero(has)
    base = int(rng.integers(0, 2**62))
    texts, row_ids = [], []
    e_row, e_start, e_end, e_label, e_text = [], [], [], [], []
    for j, v in enumerate(vis):
        text, spans = discharge_summary(c, int(v), random.Random(base + int(v)))
        rid = j + 1
        texts.append(text)
        row_ids.append(rid)
        for s, e, lab in spans:
            e_row.append(rid)
            e_start.append(s)
            e_end.append(e)
            e_label.append(lab)
            e_text.append(text[s:e])
    day = c.disch[vis].astype("datetime64[D]")        # CHARTDATE is a DATE in the release
    notes = pl.DataFrame({
        "ROW_ID": np.array(row_ids, np.int64), "SUBJECT_ID": c.subject_id[c.v_patient[vis]],
        "HADM_ID": c.hadm_id[vis], "CHARTDATE": pl.Series(day, dtype=pl.Date),
        "CHARTTIME": pl.Series([None] * len(vis), dtype=pl.Datetime("us")),
        "STORETIME": pl.Series([None] * len(vis), dtype=pl.Datetime("us")),
        "CATEGORY": ["Discharge summary"] * len(vis), "DESCRIPTION": ["Report"] * len(vis),
        "CGID": pl.Series([None] * len(vis), dtype=pl.Int64), "ISERROR": pl.Series([None] * len(vis), dtype=pl.String),
        "TEXT": texts,
    })
    note_hadm = dict(zip(row_ids, c.hadm_id[vis].tolist()))
    ents = pl.DataFrame({
        "ROW_ID": np.array(e_row, np.int64), "HADM_ID": np.array([note_hadm[r] for r in e_row], np.int64),
        "start": np.array(e_start, np.int64), "end": np.array(e_end, np.int64),
        "label": pl.Series(e_label, dtype=pl.String), "text": pl.Series(e_text, dtype=pl.String),
    })
    return notes, ents


def _labevents(c: Cohort, density: Density, seed: int) -> pl.DataFrame:
    """LABEVENTS: the core items that follow the latent state (latent.simulate_labs) and the long
    tail of lab_items.py, one stream sorted by patient, time and item; a few rows written twice."""
    L = simulate_labs(c, density, seed)
    v, li = L["visit"], L["lab"]
    t = c.admit[v] + (L["hours"] * 3600).astype(np.int64).astype("timedelta64[s]") // 60 * 60
    labs = cat.LABS
    dec = np.array([x.decimals for x in labs])[li]
    low = np.array([x.low for x in labs])[li]
    high = np.array([x.high for x in labs])[li]
    units = pl.Series([x.unit for x in labs], dtype=pl.String)
    value, num = _fmt_fixed(L["value"], dec)
    rounded = np.round(L["value"] * 10.0 ** dec) / 10.0 ** dec
    core = pl.DataFrame({
        "SUBJECT_ID": c.subject_id[c.v_patient[v]], "HADM_ID": _nullable(c.hadm_id[v], L["inpatient"]),
        "ITEMID": np.array([x.itemid for x in labs])[li], "CHARTTIME": _dt(t), "VALUE": value,
        "VALUENUM": num, "VALUEUOM": units.gather(li),
        "FLAG": _nullable("abnormal", (rounded < low) | (rounded > high)),
    })
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1AB7]))
    df = pl.concat([core, _tail_labevents(c, density, rng)]).sort("SUBJECT_ID", "CHARTTIME", "ITEMID",
                                                                   maintain_order=True)
    return mess(df.select(pl.lit(0).alias("ROW_ID"), pl.all()), rng, duplicate=0.003)


def _tail_labevents(c: Cohort, density: Density, rng: np.random.Generator) -> pl.DataFrame:
    """Rows of the long-tail lab items (lab_items.py), at each item's rate per admission scaled by
    the stay's length; text results (urinalysis, smears, censored values) with VALUENUM empty."""
    # Long-tail panels are ordered for a reason, not per day: a denser draw schedule does not add
    # more of them (a sparser one, below "modest", does thin them).
    scale = min(density.draws_per_day / Density.named("modest").draws_per_day, 1.0)
    los_f = np.clip(c.los_hours() / 24.0 / 6.4, 0.3, 4.0) ** 0.7
    los_h = c.los_hours()
    num_parts, text_parts = [], []
    for lab in EXTRA_LABS:
        n = rng.poisson(lab.draws_per_admission * scale * los_f)
        v = np.repeat(np.arange(c.n_visits), n)
        if not len(v):
            continue
        hours = rng.uniform(0.1, np.maximum(los_h[v] - 0.1, 0.2))
        text = rng.random(len(v)) < lab.text_p
        if text.any():
            p = np.array(lab.value_p) / sum(lab.value_p)
            pick = np.minimum(np.searchsorted(np.cumsum(p), rng.random(int(text.sum()))), len(p) - 1)
            text_parts.append((v[text], hours[text], lab.itemid, lab.unit, np.array(lab.values, dtype=object)[pick]))
        if (~text).any():
            x = np.maximum(lab.mean + lab.sd * rng.standard_normal(int((~text).sum())), lab.floor)
            num_parts.append((v[~text], hours[~text], lab, x))
    frames = []
    if num_parts:
        v = np.concatenate([q[0] for q in num_parts])
        hours = np.concatenate([q[1] for q in num_parts])
        x = np.concatenate([q[3] for q in num_parts])
        k = np.concatenate([np.full(len(q[0]), j) for j, q in enumerate(num_parts)])
        item_labs = [q[2] for q in num_parts]
        dec = np.minimum(np.array([lab.decimals for lab in item_labs])[k], 2)
        low = np.array([lab.low for lab in item_labs])[k]
        high = np.array([lab.high for lab in item_labs])[k]
        value, num = _fmt_fixed(x, dec)
        rounded = np.round(x * 10.0 ** dec) / 10.0 ** dec
        abnormal = np.where((low == 0) & (high == 0), rounded > 0, (rounded < low) | (rounded > high))
        frames.append(_lab_frame(c, v, hours, np.array([lab.itemid for lab in item_labs])[k], value, num,
                                 pl.Series([lab.unit for lab in item_labs], dtype=pl.String).gather(k),
                                 _nullable("abnormal", abnormal)))
    if text_parts:
        v = np.concatenate([q[0] for q in text_parts])
        k = np.concatenate([np.full(len(q[0]), j) for j, q in enumerate(text_parts)])
        frames.append(_lab_frame(c, v, np.concatenate([q[1] for q in text_parts]),
                                 np.array([q[2] for q in text_parts])[k],
                                 pl.Series(np.concatenate([q[4] for q in text_parts]).tolist(), dtype=pl.String),
                                 pl.Series([None] * len(v), dtype=pl.String),
                                 pl.Series([q[3] for q in text_parts], dtype=pl.String).gather(k),
                                 pl.Series([None] * len(v), dtype=pl.String)))
    return pl.concat(frames)


def _lab_frame(c: Cohort, v, hours, itemid, value, num, unit, flag) -> pl.DataFrame:
    t = c.admit[v] + (hours * 3600).astype(np.int64).astype("timedelta64[s]") // 60 * 60
    return pl.DataFrame({
        "SUBJECT_ID": c.subject_id[c.v_patient[v]], "HADM_ID": c.hadm_id[v], "ITEMID": itemid.astype(np.int64),
        "CHARTTIME": _dt(t), "VALUE": value, "VALUENUM": num, "VALUEUOM": unit, "FLAG": flag,
    })


def _chartevents(c: Cohort, density: Density, seed: int, peep: dict[str, np.ndarray]) -> pl.DataFrame:
    """Vital signs of every ICU stay, and PEEP set while ventilated (MetaVision, icu_events.py)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC4A7]))
    X = simulate_vitals(c, density, seed)
    vit = cat.VITALS
    mv_x = c.dbsource[c.v_patient[X["visit"]]] == "metavision"
    vi = X["vital"]
    item = np.concatenate([np.where(mv_x, np.array([x.metavision for x in vit])[vi],
                                    np.array([x.carevue for x in vit])[vi]),
                           np.full(len(peep["visit"]), icu_events.PEEP)])
    unit_names = [x.unit_cv for x in vit] + [x.unit_mv for x in vit] + ["cmH2O"]
    unit_idx = np.concatenate([vi + len(vit) * mv_x, np.full(len(peep["visit"]), 2 * len(vit))])
    dec = np.concatenate([np.array([x.decimals for x in vit])[vi], np.zeros(len(peep["visit"]), np.int64)])
    v = np.concatenate([X["visit"], peep["visit"]])
    stay_id = np.concatenate([X["icustay_id"], c.icustay_id[peep["visit"]]])
    t_in = np.concatenate([X["icu_in"], c.icu_in[peep["visit"]]])
    t = t_in + (np.concatenate([X["hours"], peep["hours"]]) * 3600).astype(np.int64).astype("timedelta64[s]") // 60 * 60
    val = np.concatenate([X["value"], peep["value"]])
    order = np.lexsort((item, t, v))
    v, item, unit_idx, dec, stay_id, t, val = (a[order] for a in (v, item, unit_idx, dec, stay_id, t, val))
    mv = c.dbsource[c.v_patient[v]] == "metavision"
    unit = pl.Series(unit_names, dtype=pl.String).gather(unit_idx)
    value, num = _fmt_fixed(val, dec)
    store = t + (rng.integers(1, 60, len(v)) * 60).astype("timedelta64[s]")
    return pl.DataFrame({
        "ROW_ID": np.arange(1, len(v) + 1), "SUBJECT_ID": c.subject_id[c.v_patient[v]], "HADM_ID": c.hadm_id[v],
        "ICUSTAY_ID": stay_id, "ITEMID": item, "CHARTTIME": _dt(t), "STORETIME": _dt(store),
        "CGID": 14000 + rng.integers(0, 800, len(v)), "VALUE": value, "VALUENUM": num,
        "VALUEUOM": unit,
        "WARNING": _nullable(np.zeros(len(v), np.int64), mv),
        "ERROR": _nullable(np.zeros(len(v), np.int64), mv),
        "RESULTSTATUS": pl.Series([None] * len(v), dtype=pl.String),
        "STOPPED": _nullable("NotStopd", ~mv),
    })


def _dictionaries() -> tuple[pl.DataFrame, pl.DataFrame]:
    labs = cat.LABS
    cat_of = {"critical": "Blood Gas"}
    rows = [(x.itemid, x.label, "Blood", cat_of.get(x.panel, "Hematology" if x.key in (
        "hemoglobin", "hematocrit", "platelets", "wbc", "inr", "ptt") else "Chemistry")) for x in labs]
    rows += [(x.itemid, x.label, x.fluid, x.category) for x in EXTRA_LABS]
    rows.sort()
    d_lab = pl.DataFrame({
        "ROW_ID": np.arange(1, len(rows) + 1), "ITEMID": [r[0] for r in rows], "LABEL": [r[1] for r in rows],
        "FLUID": [r[2] for r in rows], "CATEGORY": [r[3] for r in rows],
        "LOINC_CODE": pl.Series([None] * len(rows), dtype=pl.String),
    })
    names = {"hr": "Heart Rate", "sbp": "NBP [Systolic]", "mbp": "NBP Mean", "spo2": "SpO2",
             "rr": "Respiratory Rate", "temp": "Temperature F"}
    mv_names = {"hr": "Heart Rate", "sbp": "Non Invasive Blood Pressure systolic",
                "mbp": "Non Invasive Blood Pressure mean", "spo2": "O2 saturation pulseoxymetry",
                "rr": "Respiratory Rate", "temp": "Temperature Fahrenheit"}
    rows = [(x.carevue, names[x.key], None, "carevue", "chartevents", None, None, None) for x in cat.VITALS]
    rows += [(x.metavision, mv_names[x.key], x.key.upper(), "metavision", "chartevents", "Routine Vital Signs",
              x.unit_mv, "Numeric") for x in cat.VITALS]
    rows += list(icu_events.ITEMS)          # (ITEMID, LABEL, ABBREVIATION, DBSOURCE, LINKSTO, CATEGORY, UNITNAME, PARAM_TYPE)
    d_items = pl.DataFrame({
        "ROW_ID": np.arange(1, len(rows) + 1), "ITEMID": [r[0] for r in rows], "LABEL": [r[1] for r in rows],
        "ABBREVIATION": pl.Series([r[2] for r in rows], dtype=pl.String), "DBSOURCE": [r[3] for r in rows],
        "LINKSTO": [r[4] for r in rows], "CATEGORY": pl.Series([r[5] for r in rows], dtype=pl.String),
        "UNITNAME": pl.Series([r[6] for r in rows], dtype=pl.String),
        "PARAM_TYPE": pl.Series([r[7] for r in rows], dtype=pl.String),
        "CONCEPTID": pl.Series([None] * len(rows), dtype=pl.Int64),
    })
    return d_lab, d_items


def write_mappings(out: Path) -> dict[str, int]:
    """GAMENet-format NDC -> RxCUI dict, RxCUI -> ATC-4 csv, and the drug-name -> ATC csv."""
    out.mkdir(parents=True, exist_ok=True)
    mapped = sorted((d for d in cat.DRUGS if d.mapped), key=lambda d: d.ndc)
    body = ", ".join(f"'{d.ndc}': u'{d.rxcui}'" for d in mapped)
    (out / "ndc2rxnorm_mapping.txt").write_text("{" + body + "}")
    lines = ["RXCUI,YEAR,MONTH,NDC,ATC4"] + [f"{d.rxcui},2016,1,{d.ndc},{d.atc[:5]}" for d in mapped]
    (out / "ndc2atc_level4.csv").write_text("\n".join(lines) + "\n")
    names = sorted({(d.drug, d.atc) for d in cat.DRUGS if d.atc})
    (out / "mimic_drug_to_atc.csv").write_text(
        "\n".join(["drug,atc_code"] + [f'"{n}",{a}' if "," in n else f"{n},{a}" for n, a in names]) + "\n")
    return {"ndc2rxnorm": len(mapped), "rxnorm2atc": len(mapped), "drug2atc": len(names)}


def _ground_truth(c: Cohort, vent: tuple[np.ndarray, np.ndarray],
                  niv: tuple[np.ndarray, np.ndarray]) -> tuple[pl.DataFrame, pl.DataFrame]:
    V = c.n_visits
    parts = c.readmit_logit_parts
    visits = pl.DataFrame({
        "HADM_ID": c.hadm_id, "SUBJECT_ID": c.subject_id[c.v_patient], "visit_index": c.v_index.astype(np.int32),
        "reason": [cat.REASONS[r].acute for r in c.reason],
        "true_icd9": pl.Series(c.true_icd9, dtype=pl.List(pl.String)),
        "recorded_icd9": pl.Series(c.dx_codes, dtype=pl.List(pl.String)),
        "true_atc": pl.Series([sorted({cat.DRUGS[i].atc for i, _, _ in o if cat.DRUGS[i].atc}) for o in c.orders],
                              dtype=pl.List(pl.String)),
        "procedures_icd9": pl.Series(c.procedure_icd9(), dtype=pl.List(pl.String)),
        "acuity": c.acuity, "severity": c.severity.astype(np.int8), "age": c.age,
        "lives_alone": c.lives_alone[c.v_patient], "homeless": c.homeless[c.v_patient],
        "no_pcp": c.no_pcp[c.v_patient], "nonadherent": c.nonadherent, "frailty": c.z[c.v_patient, 3],
        "icu": c.icu, "ICUSTAY_ID": _nullable(c.icustay_id, c.icu),
        "p_shock": c.p_shock, "shock": c.shock, "shock_onset": _dt(c.shock_onset),
        "p_aki": c.p_aki, "aki": c.aki, "aki_onset": _dt(c.aki_onset),
        "vent_start": _dt(vent[0]), "vent_end": _dt(vent[1]), "niv_start": _dt(niv[0]), "niv_end": _dt(niv[1]),
        "lung_injury": c.lung_injury,
        "p_death": c.p_death, "died_in_hospital": c.died,
        "readmit_logit_code": parts["code"], "readmit_logit_note": parts["note"],
        "readmit_logit_shared": parts["shared"], "readmit_logit_hidden": parts["hidden"],
        "p_readmit_30d": c.p_readmit_30d, "readmit_30d": c.readmit_30d,
    })
    assert visits.height == V
    C = len(cat.CHRONIC)
    patients = pl.DataFrame({
        "SUBJECT_ID": c.subject_id, "male": c.male, "birth": _dt(c.birth),
        **{f"z_{n}": c.z[:, i] for i, n in enumerate(("cardiometabolic", "pulmonary", "liver", "frailty"))},
        "chronic": pl.Series([[cat.CHRONIC[i].key for i in range(C) if c.chronic[p, i]] for p in range(c.n_patients)],
                             dtype=pl.List(pl.String)),
        "chronic_severity": pl.Series([[int(c.chronic_sev[p, i]) for i in range(C) if c.chronic[p, i]]
                                       for p in range(c.n_patients)], dtype=pl.List(pl.Int8)),
        "chronic_years": pl.Series([[float(c.chronic_years[p, i]) for i in range(C) if c.chronic[p, i]]
                                    for p in range(c.n_patients)], dtype=pl.List(pl.Float32)),
        "lives_alone": c.lives_alone, "homeless": c.homeless, "no_pcp": c.no_pcp,
        "nonadherent_propensity": c.nonadherent_prop, "dbsource": c.dbsource,
    })
    return visits, patients


def write_mimic3(c: Cohort, out: Path, density: Density, seed: int, progress=None) -> dict[str, pl.DataFrame]:
    """Write every MIMIC-III table and the ground truth into `out`; return the small frames
    (for the data card) and row counts."""
    say = progress or (lambda msg: None)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xAD]))
    frames: dict[str, pl.DataFrame] = {}
    counts: dict[str, int] = {}
    first_admit = np.full(c.n_patients, np.datetime64("NaT"), dtype="datetime64[s]")
    first_admit[c.v_patient[c.v_index == 0]] = c.admit[c.v_index == 0]

    def put(name, df, keep=False):
        counts[name] = write_table(out / f"{name}.csv.gz", name, df)
        if keep:
            frames[name] = df
        say(f"{name}: {counts[name]:,} rows")

    put("PATIENTS", _patients(c, first_admit))
    put("ADMISSIONS", _admissions(c, rng), keep=True)
    put("ICUSTAYS", _icustays(c))
    put("TRANSFERS", icu_events.transfers(c))
    put("SERVICES", icu_events.services(c, rng))
    put("DIAGNOSES_ICD", _codes_table(c, c.dx_codes, rng), keep=True)
    put("PROCEDURES_ICD", _codes_table(c, c.procedure_icd9(), rng))
    put("PRESCRIPTIONS", _prescriptions(c, density, seed), keep=True)
    notes, ents = _notes(c, seed)
    put("NOTEEVENTS", notes, keep=True)
    put("LABEVENTS", _labevents(c, density, seed))
    vent = icu_events.ventilation(c, seed)
    niv = noninvasive(c, vent, seed)
    inv, non = icu_events.peep_rows(c, vent, seed), icu_events.niv_peep_rows(c, niv, seed)
    put("CHARTEVENTS", _chartevents(c, density, seed, {k: np.concatenate([inv[k], non[k]]) for k in inv}))
    put("OUTPUTEVENTS", icu_events.outputevents(c, seed))
    put("INPUTEVENTS_MV", icu_events.inputevents_mv(c, vent, seed))
    put("PROCEDUREEVENTS_MV", icu_events.procedureevents_mv(c, vent, seed, niv=niv))
    d_icd_dx, d_icd_proc = icu_events.icd_dictionaries()
    put("D_ICD_DIAGNOSES", d_icd_dx)
    put("D_ICD_PROCEDURES", d_icd_proc)
    d_lab, d_items = _dictionaries()
    put("D_LABITEMS", d_lab)
    put("D_ITEMS", d_items)
    write_mappings(out / "mappings")
    gt = out / "ground_truth"
    gt.mkdir()
    visits, patients = _ground_truth(c, vent, niv)
    visits.write_parquet(gt / "visits.parquet", statistics=False)
    patients.write_parquet(gt / "patients.parquet", statistics=False)
    ents.write_parquet(gt / "entities.parquet", statistics=False)
    # the true criticality probabilities per ICU stay; only MetaVision stays record the events
    stay_truth(c, vent, niv, recorded=c.dbsource[c.v_patient] == "metavision").write_parquet(
        gt / "stays.parquet", statistics=False)
    counts["entities"] = ents.height
    frames["visits_gt"] = visits
    frames["entities"] = ents
    frames["_counts"] = pl.DataFrame({"table": list(counts), "rows": list(counts.values())})
    return frames
