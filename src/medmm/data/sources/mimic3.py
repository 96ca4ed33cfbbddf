"""MIMIC-III v1.4 raw release -> the canonical dataset (`medmm.data.schema`).

Input tables (``X.csv`` or ``X.csv.gz``, header case as released) and what they become:

    PATIENTS        -> patients                         required
    ADMISSIONS      -> visits                           required
    DIAGNOSES_ICD   -> codes, system "icd9_dx"          required
    PROCEDURES_ICD  -> codes, system "icd9_proc"        optional
    PRESCRIPTIONS   -> codes, system "atc3"             optional (needs drug mapping files)
    ICUSTAYS        -> stays (DBSOURCE kept)            optional
    NOTEEVENTS      -> notes (discharge summaries)      optional
    LABEVENTS       -> measurements, source "lab"       optional (skipped with include_labs=False)
    CHARTEVENTS     -> measurements, source "chart"     optional (vital-sign and PEEP items; ditto)
    INPUTEVENTS_MV  -> events, source "input"           optional (MetaVision)
    PROCEDUREEVENTS_MV -> events, source "procedure"    optional (MetaVision)
    OUTPUTEVENTS    -> events, source "output"          optional
    DATETIMEEVENTS  -> events, source "datetime"        optional

Each absent optional table is said plainly (a printed line and a manifest note, "X: not found in
<raw>; table skipped"): the public demo has no CHARTEVENTS, the synthetic generator writes none of
the four ICU event tables yet. INPUTEVENTS_CV (CareVue) and the item dictionaries are not read.

Clinical definitions:

* Visit = hospital admission (HADM_ID). ``age`` = (ADMITTIME - DOB) in years of 365.2425 days,
  stored as computed: MIMIC shifts the DOB of patients older than 89 so that they appear
  ~300 years old; those ages are kept (not capped) and counted in the manifest notes.
* Diagnoses / procedures: ICD-9 codes without the dot; ``seq`` is the SEQ_NUM order within the
  visit (SEQ_NUM 1 = principal diagnosis). Codes that are not v32 leaves but whose category
  exists ("retired": MIMIC-III was coded with older releases) are kept and counted.
* Medications: every PRESCRIPTIONS row is mapped to ATC level 3 by `DrugMapper` (NDC -> RxCUI ->
  ATC first, drug name -> ATC second); ``seq`` is the STARTDATE order within the visit, and a
  repeated (visit, ATC-3) keeps its first prescription. ``source_value`` is the NDC (NDC route)
  or the drug name (name route).
* Notes: CATEGORY "Discharge summary" only, ISERROR rows out. Text cleaned as ClinicalBERT did,
  length-preserving so that character offsets survive: lower-cased (U+0130 "İ", whose
  lower-case form is two code points, becomes "i"), each "\\r" and "\\n" replaced by one space;
  whitespace is not collapsed or stripped. ``chart_time`` = CHARTTIME, else CHARTDATE.
* Measurements: LABEVENTS rows with a numeric VALUENUM (labs outside an admission are kept with
  a null visit_id; MIMIC-III LABEVENTS has no ICUSTAY_ID, so labs carry a null stay_id); the
  CHARTEVENTS vital-sign items of `VITAL_ITEMS` (CareVue and MetaVision itemids) and the PEEP
  item of the ARF label (`medmm.tasks.icu_items.PEEP_ITEMS`), ERROR = 1 rows out. Values and
  units as recorded (no unit conversion: the itemid tells e.g. Celsius from Fahrenheit). Rows
  are written in file order (labs, then chart).
* ICU stays keep ICUSTAYS.DBSOURCE ("carevue" / "metavision" / "both") in ``stays.dbsource``:
  the FIDDLE criticality cohort is the MetaVision stays (`medmm.tasks.criticality`).
* ICU events -> `events` (column layout in `medmm.data.schema`), streamed like the measurements
  (INPUTEVENTS_MV is ~3.6 M rows, OUTPUTEVENTS ~4.3 M, DATETIMEEVENTS ~4.5 M): every row kept
  whatever its STATUSDESCRIPTION (stored as ``status``; "Rewritten" rows are for the consumer to
  skip), rows without HADM_ID / ICUSTAY_ID kept with null ids; OUTPUTEVENTS ISERROR = 1 and
  DATETIMEEVENTS ERROR = 1 rows out. Written in the order inputs, procedures, outputs, date-times.

Every input row is accounted for: ``read = kept + sum(dropped)`` per input table, checked before
the manifest is written. Bad input (tests/test_bad_input.py) ends in one of two ways:

    | case                                        | outcome                                      |
    |---------------------------------------------|----------------------------------------------|
    | required table missing                      | FileNotFoundError (raw dir, table name)      |
    | declared column missing from the header     | ValueError (file, column, header found)      |
    | non-integer in an id / code column          | ValueError (file, column, data row, ROW_ID)  |
    | unparsable timestamp (format per column is  | ValueError (file, column, data row, ROW_ID)  |
    |   chosen on the file's first 1,000 rows)    |                                              |
    | duplicate primary key (SUBJECT_ID, HADM_ID, | ValueError (file, column, both data rows)    |
    |   ICUSTAY_ID) or an empty one               |                                              |
    | required file empty (0 bytes)               | ValueError (file); optional: note, 0 rows    |
    | truncated / corrupt gzip                    | ValueError (file)                            |
    | invalid UTF-8 outside note text             | ValueError (file, column, data row, ROW_ID)  |
    | discharge before admission                  | drop "discharge_before_admission"            |
    | row whose HADM_ID is not an admission       | drop "unknown_visit" (empty: "no_admission") |
    | row whose SUBJECT_ID disagrees with its     | drop "visit_patient_mismatch"                |
    |   admission's                               |                                              |
    | admission of an unknown patient             | drop "unknown_patient"                       |
    | unknown ICD-9 code (not v32, no v32 category)| drop "unknown_icd9"; empty code "missing_code"|
    | NDC (and drug name) absent from the mapping | drop "unmapped_drug"                         |
    | invalid UTF-8 bytes in a note's text        | drop "invalid_utf8" (decoded with U+FFFD to  |
    |                                             |   find them; a partial note is not kept)     |
    | non-numeric lab / chart value               | drop "non_numeric"                           |
    | lab / chart row of an unknown patient       | drop "unknown_patient"                       |
    | chart row of another item / ERROR = 1       | drop "item_not_selected" / "iserror"         |
    | ICU event of an ICUSTAY_ID that is not a    | drop "unknown_stay"                          |
    |   kept stay                                 |                                              |
    | ICU event without a start time / ending     | drop "missing_time" / "end_before_start"     |
    |   before it starts                          |                                              |
    | output / date-time event with ERROR = 1     | drop "iserror"                               |
    | repeated (visit, code)                      | drop "duplicate_code" (first one kept)       |

Values of unused columns are not parsed (column projection), so they cannot fail; the
timestamps of unselected chart items are not parsed either.

Structural problems are errors because nothing downstream can be trusted after them; row-level
clinical inconsistencies are counted drops because real MIMIC has a few of them. Nothing is
written at `out` unless the whole preparation succeeds (`atomic_dir`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from medmm.data.io import atomic_dir, sha256_file
from medmm.data.schema import ICD9_DX, ICD9_PROC, Accounting, CanonicalDataset, Manifest, empty
from medmm.data.sources.common import (BAD, R, Log, Stream, account, admissions_to_visits, check_accounting,
                                       clean_note_text, drug_mapper, drug_mapping_line, event_rows, icd_codes,
                                       link_visit, measurement_rows, odd_sex, prescriptions_to_codes, read_small,
                                       reason, rows, sex_expr, sink_counted, write, write_core_tables, finish_manifest)
from medmm.data.sources.csv import BAD_TS, FLOAT, INT, STR, TS, RawFile, RawTable, check_unique, open_table
from medmm.tasks.icu_items import PEEP_ITEMS

__all__ = ["SOURCE", "RAW", "ICU_EVENTS_RAW", "VITAL_ITEMS", "CHART_ITEMIDS", "clean_note_text", "prepare"]

SOURCE = "mimic3"

# ---- declarations ---------------------------------------------------------------------------------

# Vital signs read from CHARTEVENTS: CareVue (itemid < 220000) and MetaVision (>= 220000) ids,
# as in the MIMIC code repository's vital-sign concepts. Temperatures keep their unit's itemid.
VITAL_ITEMS: dict[str, tuple[int, ...]] = {
    "heart_rate": (211, 220045),
    "sbp": (51, 442, 455, 6701, 220179, 220050),
    "dbp": (8368, 8440, 8441, 8555, 220180, 220051),
    "mbp": (456, 52, 6702, 443, 220052, 220181, 225312),
    "resp_rate": (615, 618, 220210, 224690),
    "temperature_f": (678, 223761),
    "temperature_c": (676, 223762),
    "spo2": (646, 220277),
    # GCS: CareVue records the total (198); MetaVision records eye / verbal / motor components.
    "gcs": (198, 220739, 223900, 223901),
}
# Chart items read: the vital signs, and PEEP set (an ARF onset, `medmm.tasks.criticality`).
CHART_ITEMIDS: tuple[int, ...] = tuple(sorted({i for ids in VITAL_ITEMS.values() for i in ids} | set(PEEP_ITEMS)))

DISCHARGE_SUMMARY = "discharge summary"

RAW: dict[str, RawTable] = {t.name: t for t in (
    RawTable("PATIENTS", {"row_id": INT, "subject_id": INT, "gender": STR, "dob": TS, "dod": TS},
             key="subject_id"),
    RawTable("ADMISSIONS", {"row_id": INT, "subject_id": INT, "hadm_id": INT, "admittime": TS,
                            "dischtime": TS, "deathtime": TS, "admission_type": STR,
                            "hospital_expire_flag": INT},
             key="hadm_id", optional_columns=("hospital_expire_flag",)),
    RawTable("ICUSTAYS", {"row_id": INT, "subject_id": INT, "hadm_id": INT, "icustay_id": INT,
                          "dbsource": STR, "first_careunit": STR, "intime": TS, "outtime": TS},
             required=False, key="icustay_id", optional_columns=("dbsource",)),
    RawTable("DIAGNOSES_ICD", {"row_id": INT, "subject_id": INT, "hadm_id": INT, "seq_num": INT,
                               "icd9_code": STR}),
    RawTable("PROCEDURES_ICD", {"row_id": INT, "subject_id": INT, "hadm_id": INT, "seq_num": INT,
                                "icd9_code": STR}, required=False),
    RawTable("PRESCRIPTIONS", {"row_id": INT, "subject_id": INT, "hadm_id": INT, "startdate": TS,
                               "drug": STR, "ndc": STR}, required=False),
    RawTable("NOTEEVENTS", {"row_id": INT, "subject_id": INT, "hadm_id": INT, "chartdate": TS,
                            "charttime": TS, "category": STR, "iserror": STR, "text": STR},
             required=False, lossy_utf8=True, optional_columns=("charttime", "iserror")),
    RawTable("LABEVENTS", {"row_id": INT, "subject_id": INT, "hadm_id": INT, "itemid": INT,
                           "charttime": TS, "valuenum": FLOAT, "valueuom": STR}, required=False),
    RawTable("CHARTEVENTS", {"row_id": INT, "subject_id": INT, "hadm_id": INT, "icustay_id": INT,
                             "itemid": INT, "charttime": TS, "valuenum": FLOAT, "valueuom": STR,
                             "error": INT},
             required=False, optional_columns=("error",)),
)}
EVENT_TABLES = ("LABEVENTS", "CHARTEVENTS")      # -> measurements (skipped with include_labs=False)

# The ICU event tables -> `events`. Declared apart from `RAW` (the tables every MIMIC-III release
# and the synthetic generator have): the generator does not write these yet.
_ICU_KEYS = {"row_id": INT, "subject_id": INT, "hadm_id": INT, "icustay_id": INT}
_ORDER = ("linkorderid", "statusdescription")
ICU_EVENTS_RAW: dict[str, RawTable] = {t.name: t for t in (
    RawTable("INPUTEVENTS_MV", {**_ICU_KEYS, "starttime": TS, "endtime": TS, "itemid": INT, "amount": FLOAT,
                                "amountuom": STR, "rate": FLOAT, "rateuom": STR, "linkorderid": INT,
                                "statusdescription": STR},
             required=False, optional_columns=_ORDER),
    RawTable("PROCEDUREEVENTS_MV", {**_ICU_KEYS, "starttime": TS, "endtime": TS, "itemid": INT, "value": FLOAT,
                                    "valueuom": STR, "linkorderid": INT, "statusdescription": STR},
             required=False, optional_columns=_ORDER),
    RawTable("OUTPUTEVENTS", {**_ICU_KEYS, "charttime": TS, "itemid": INT, "value": FLOAT, "valueuom": STR,
                              "iserror": INT}, required=False, optional_columns=("iserror",)),
    RawTable("DATETIMEEVENTS", {**_ICU_KEYS, "charttime": TS, "itemid": INT, "value": TS, "valueuom": STR,
                                "error": INT}, required=False, optional_columns=("error",)),
)}

# ICU event table -> (events.source, canonical column -> raw column or None, error column)
_NO_ORDER = {"order_id": None, "status": None}
ICU_EVENT_COLUMNS: dict[str, tuple[str, dict[str, str | None], str | None]] = {
    "INPUTEVENTS_MV": ("input", {"start_time": "starttime", "end_time": "endtime", "value": "amount",
                                 "unit": "amountuom", "rate": "rate", "rate_unit": "rateuom", "value_time": None,
                                 "order_id": "linkorderid", "status": "statusdescription"}, None),
    "PROCEDUREEVENTS_MV": ("procedure", {"start_time": "starttime", "end_time": "endtime", "value": "value",
                                         "unit": "valueuom", "rate": None, "rate_unit": None, "value_time": None,
                                         "order_id": "linkorderid", "status": "statusdescription"}, None),
    "OUTPUTEVENTS": ("output", {"start_time": "charttime", "end_time": None, "value": "value", "unit": "valueuom",
                                "rate": None, "rate_unit": None, "value_time": None, **_NO_ORDER}, "iserror"),
    "DATETIMEEVENTS": ("datetime", {"start_time": "charttime", "end_time": None, "value": None, "unit": "valueuom",
                                    "rate": None, "rate_unit": None, "value_time": "value", **_NO_ORDER}, "error"),
}

# ---- tables ---------------------------------------------------------------------------------------

def _patients(rf: RawFile, acc: Accounting, log: Log) -> pl.DataFrame:
    df = read_small(rf)
    check_unique(rf, df, rf.table.key)
    acc.read = acc.kept = df.height
    odd = odd_sex(df)
    if odd:
        log.note(f"PATIENTS: {odd} GENDER values other than F/M stored as null sex")
    return df.select(
        pl.col("subject_id").alias("patient_id"),
        sex_expr().alias("sex"),
        pl.col("dob").alias("birth_time"),
        pl.col("dod").alias("death_time"),
    ).sort("patient_id")


def _stays(rf: RawFile, visits: pl.DataFrame, acc: Accounting) -> pl.DataFrame:
    df = read_small(rf)
    check_unique(rf, df, rf.table.key)
    lf, rules = link_visit(df.lazy(), visits)
    df = lf.with_columns(reason(*rules)).collect()
    account(rf, acc, df.group_by(R).len())
    return df.filter(pl.col(R).is_null()).select(
        pl.col("icustay_id").alias("stay_id"),
        pl.col("hadm_id").alias("visit_id"),
        pl.col("subject_id").alias("patient_id"),
        pl.col("intime").alias("in_time"),
        pl.col("outtime").alias("out_time"),
        pl.col("first_careunit").alias("care_unit"),
        pl.col("dbsource").str.strip_chars().str.to_lowercase().alias("dbsource"),
    ).sort("visit_id", "in_time", "stay_id")


def _icd_codes(rf: RawFile, visits: pl.DataFrame, system: str, acc: Accounting,
               extra: dict[str, Any]) -> pl.DataFrame:
    """DIAGNOSES_ICD / PROCEDURES_ICD -> codes rows of `system`, in SEQ_NUM order per visit."""
    from medmm.ontology.icd9 import icd9_dx_status_expr, icd9_proc_status_expr, normalize_icd9_expr

    status_expr = icd9_dx_status_expr if system == ICD9_DX else icd9_proc_status_expr
    lf = rf.scan().with_row_index("__row", offset=1).with_columns(
        pl.lit(system).alias("system"), normalize_icd9_expr("icd9_code").alias("code"),
        pl.col("icd9_code").alias("source_value"))
    lf = lf.with_columns(status_expr("code").alias("__status"))
    return icd_codes(rf, lf, visits, acc, extra, icd9_system=system)


def _notes(rf: RawFile, visits: pl.DataFrame, acc: Accounting, path: Path) -> None:
    """NOTEEVENTS -> notes.parquet (streamed: the full table is ~4 GB of text)."""
    lf, rules = link_visit(rf.scan(), visits)
    category = pl.col("category").str.strip_chars().str.to_lowercase()
    lf = lf.with_columns(reason(
        (pl.col(BAD_TS), BAD),
        (category != DISCHARGE_SUMMARY, "not_discharge_summary"),
        (category.is_null(), "not_discharge_summary"),
        (pl.col("iserror").str.strip_chars() == "1", "iserror"),
        *rules,
        (pl.col("text").is_null(), "empty_text"),
        # The reader decodes with replacement; U+FFFD marks bytes that were not UTF-8.
        (pl.col("text").str.contains("\ufffd", literal=True), "invalid_utf8"),
    ))
    kept = lf.select(
        pl.col("row_id").alias("note_id"),
        pl.col("row_id").cast(pl.String).alias("note_key"),
        pl.col("hadm_id").alias("visit_id"),
        pl.col("subject_id").alias("patient_id"),
        pl.lit(DISCHARGE_SUMMARY).alias("category"),
        pl.coalesce("charttime", "chartdate").alias("chart_time"),
        clean_note_text("text").alias("text"),
        R,
    )
    sink_counted("notes", path, [Stream(rf, kept)], [acc])


def _measurements(rfs: list[RawFile], visits: pl.DataFrame, patients: pl.DataFrame,
                  accs: list[Accounting], path: Path) -> None:
    """Lab and chart events -> measurements.parquet in one streaming pass per file: the kept rows
    are sunk to Parquet while the same stream is counted by reason (`common.Tally`).
    Chart rows are filtered on the vital-sign items first, so that the other ~95% of the 330 M
    rows are only counted (their timestamps are not parsed)."""
    streams = [measurement_rows(rf, visits, patients, "chart", stay_col="icustay_id", items=CHART_ITEMIDS,
                                error_col="error") if rf.table.name == "CHARTEVENTS"
               else measurement_rows(rf, visits, patients, "lab") for rf in rfs]
    sink_counted("measurements", path, streams, accs)


def _events(rfs: list[RawFile], visits: pl.DataFrame, patients: pl.DataFrame, stays: pl.DataFrame,
            accs: list[Accounting], path: Path) -> None:
    """ICU event tables -> events.parquet, one streaming pass per file (as `_measurements`)."""
    streams = []
    for rf in rfs:
        source, cols, error_col = ICU_EVENT_COLUMNS[rf.table.name]
        streams.append(event_rows(rf, source, cols, visits, patients, stays, stay_col="icustay_id",
                                  error_col=error_col))
    sink_counted("events", path, streams, accs)


# ---- entry point ----------------------------------------------------------------------------------

def prepare(raw: str | Path, out: str | Path, mappings: Mapping[str, Any] | None = None,
            overwrite: bool = False, progress: bool = True, include_labs: bool = True) -> CanonicalDataset:
    """Prepare a MIMIC-III raw directory into the canonical dataset at `out`.

    Args:
        raw: directory holding the release files (``PATIENTS.csv.gz``, ...).
        out: output directory (written atomically; must not exist unless `overwrite`).
        mappings: drug mapping files: optional keys ``dir`` (standard file names, see
            `medmm.ontology.drugs`), ``ndc_rxnorm``, ``rxnorm_atc``, ``drug_atc``.
        include_labs: read LABEVENTS and CHARTEVENTS into `measurements`.
    """
    raw, out = Path(raw), Path(out)
    mappings = dict(mappings or {})
    t_start = time.perf_counter()
    manifest = Manifest(source=SOURCE)
    log = Log(manifest, progress, width=18)
    if progress:
        print(f"prepare {SOURCE}: {raw} -> {out}", flush=True)

    # Structure first (files, headers, mapping files): fail before any heavy work.
    declared = {**RAW, **ICU_EVENTS_RAW}
    names = [n for n in declared if include_labs or n not in EVENT_TABLES]
    files: dict[str, RawFile] = {}
    for name in names:
        rf = open_table(raw, declared[name])
        if rf is None:
            log.note(f"{name}: not found in {raw}; table skipped")
        elif rf.empty:
            log.note(f"{name}: {rf.path.name} is empty (0 bytes); table skipped")
        else:
            files[name] = rf
    if not include_labs:
        log.note("LABEVENTS/CHARTEVENTS: skipped (include_labs=False); measurements is empty")
    mapper = drug_mapper(mappings) if "PRESCRIPTIONS" in files else None
    if mapper is not None and mapper.stats.get("ndc_route_disabled"):
        log.note(f"drug mapping: NDC route off ({mapper.stats['ndc_route_disabled']}); "
                 f"drug-name route only")

    # Content hashes run in a background thread while Polars works (hashlib releases the GIL).
    inputs = {f"{rf.path.name}": rf.path for rf in files.values()}
    if mapper is not None:
        for paths in mapper.sources.values():
            inputs.update({f"mappings/{Path(p).name}": Path(p) for p in paths})
    pool = ThreadPoolExecutor(max_workers=1)
    hashes = {k: pool.submit(sha256_file, p) for k, p in inputs.items()}

    acc = {name: Accounting() for name in files}
    manifest.accounting = acc
    extra = manifest.extra
    try:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            t = time.perf_counter()
            patients = _patients(files["PATIENTS"], acc["PATIENTS"], log)
            log.table("PATIENTS", acc["PATIENTS"], t)

            t = time.perf_counter()
            visits = admissions_to_visits(files["ADMISSIONS"], patients, acc["ADMISSIONS"], log, "ADMISSIONS")
            log.table("ADMISSIONS", acc["ADMISSIONS"], t)

            stays = empty("stays")
            if "ICUSTAYS" in files:
                t = time.perf_counter()
                stays = _stays(files["ICUSTAYS"], visits, acc["ICUSTAYS"])
                log.table("ICUSTAYS", acc["ICUSTAYS"], t)

            codes = []
            for name, system in (("DIAGNOSES_ICD", ICD9_DX), ("PROCEDURES_ICD", ICD9_PROC)):
                if name in files:
                    t = time.perf_counter()
                    codes.append(_icd_codes(files[name], visits, system, acc[name], extra))
                    log.table(name, acc[name], t)
            if "PRESCRIPTIONS" in files:
                t = time.perf_counter()
                codes.append(prescriptions_to_codes(files["PRESCRIPTIONS"], visits, mapper,
                                                    acc["PRESCRIPTIONS"], log, extra, "PRESCRIPTIONS",
                                                    time_col="startdate"))
                log.table("PRESCRIPTIONS", acc["PRESCRIPTIONS"], t)
                log.say(drug_mapping_line(extra["drug_mapping"]))
            for name in ("DIAGNOSES_ICD", "PROCEDURES_ICD"):
                st = extra.get("icd9_status", {}).get(ICD9_DX if name == "DIAGNOSES_ICD" else ICD9_PROC)
                if st and st["retired"]:
                    log.note(f"{name}: {st['retired']:,} kept codes are not ICD-9-CM v32 leaves "
                             f"but have a v32 category (older releases)")

            write_core_tables(manifest, tmp, patients, visits, stays, codes)

            if "NOTEEVENTS" in files:
                t = time.perf_counter()
                _notes(files["NOTEEVENTS"], visits, acc["NOTEEVENTS"], tmp / "notes.parquet")
                log.table("NOTEEVENTS", acc["NOTEEVENTS"], t)
                if acc["NOTEEVENTS"].read == 0:
                    log.note("NOTEEVENTS: the file has a header and no rows; notes is empty")
            else:
                write(empty("notes"), "notes", tmp)
            manifest.tables["notes"] = rows(tmp / "notes.parquet")

            events = [n for n in EVENT_TABLES if n in files]
            if events:
                t = time.perf_counter()
                _measurements([files[n] for n in events], visits, patients, [acc[n] for n in events],
                              tmp / "measurements.parquet")
                for n in events:
                    log.table(n, acc[n], t)
            else:
                write(empty("measurements"), "measurements", tmp)
            manifest.tables["measurements"] = rows(tmp / "measurements.parquet")

            icu = [n for n in ICU_EVENTS_RAW if n in files]
            if icu:
                t = time.perf_counter()
                _events([files[n] for n in icu], visits, patients, stays, [acc[n] for n in icu],
                        tmp / "events.parquet")
                for n in icu:
                    log.table(n, acc[n], t)
            else:
                write(empty("events"), "events", tmp)
            manifest.tables["events"] = rows(tmp / "events.parquet")

            # Every canonical table exists in every dataset. MIMIC-III has no imaging; its item
            # dictionaries (D_ITEMS, D_LABITEMS) map into `items` (see schema.py) but are not read yet.
            for table in ("items", "studies", "images"):
                manifest.tables[table] = write(empty(table), table, tmp)

            check_accounting(manifest, {
                "patients": ["PATIENTS"], "visits": ["ADMISSIONS"], "stays": ["ICUSTAYS"],
                "codes": ["DIAGNOSES_ICD", "PROCEDURES_ICD", "PRESCRIPTIONS"], "notes": ["NOTEEVENTS"],
                "measurements": list(EVENT_TABLES), "events": list(ICU_EVENTS_RAW)})
            finish_manifest(manifest, tmp, hashes, inputs, extra, t_start)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if progress:
        print(f"prepared {out} in {time.perf_counter() - t_start:.1f}s", flush=True)
    return CanonicalDataset(out)
