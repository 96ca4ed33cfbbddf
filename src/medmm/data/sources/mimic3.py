"""MIMIC-III v1.4 raw release -> the canonical dataset (`medmm.data.schema`).

Input tables (``X.csv`` or ``X.csv.gz``, header case as released) and what they become:

    PATIENTS        -> patients                         required
    ADMISSIONS      -> visits                           required
    DIAGNOSES_ICD   -> codes, system "icd9_dx"          required
    PROCEDURES_ICD  -> codes, system "icd9_proc"        optional
    PRESCRIPTIONS   -> codes, system "atc3"             optional (needs drug mapping files)
    ICUSTAYS        -> stays                            optional
    NOTEEVENTS      -> notes (discharge summaries)      optional
    LABEVENTS       -> measurements, source "lab"       optional (skipped with include_labs=False)
    CHARTEVENTS     -> measurements, source "chart"     optional (vital-sign items only; ditto)

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
  CHARTEVENTS vital-sign items of `VITAL_ITEMS` (CareVue and MetaVision itemids), ERROR = 1 rows
  out. Values and units as recorded (no unit conversion: the itemid tells e.g. Celsius from
  Fahrenheit). Rows are written in file order (labs, then chart).

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
    | repeated (visit, code)                      | drop "duplicate_code" (first one kept)       |

Values of unused columns are not parsed (column projection), so they cannot fail; the
timestamps of unselected chart items are not parsed either.

Structural problems are errors because nothing downstream can be trusted after them; row-level
clinical inconsistencies are counted drops because real MIMIC has a few of them. Nothing is
written at `out` unless the whole preparation succeeds (`atomic_dir`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from medmm.data.io import atomic_dir, sha256_file
from medmm.data.schema import ATC3, ICD9_DX, ICD9_PROC, Accounting, Dataset, Manifest, conform, empty
from medmm.data.sources.csv import (BAD_TS, FLOAT, INT, STR, TS, _READ_ERRORS, RawFile, RawTable, check_unique,
                                   locate_error, open_table)

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
CHART_ITEMIDS: tuple[int, ...] = tuple(sorted({i for ids in VITAL_ITEMS.values() for i in ids}))

DISCHARGE_SUMMARY = "discharge summary"

RAW: dict[str, RawTable] = {t.name: t for t in (
    RawTable("PATIENTS", {"row_id": INT, "subject_id": INT, "gender": STR, "dob": TS, "dod": TS},
             key="subject_id"),
    RawTable("ADMISSIONS", {"row_id": INT, "subject_id": INT, "hadm_id": INT, "admittime": TS,
                            "dischtime": TS, "deathtime": TS, "admission_type": STR,
                            "hospital_expire_flag": INT},
             key="hadm_id", optional_columns=("hospital_expire_flag",)),
    RawTable("ICUSTAYS", {"row_id": INT, "subject_id": INT, "hadm_id": INT, "icustay_id": INT,
                          "first_careunit": STR, "intime": TS, "outtime": TS},
             required=False, key="icustay_id"),
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
EVENT_TABLES = ("LABEVENTS", "CHARTEVENTS")

_R = "__reason"   # drop reason of a row (null = kept)
_BAD = "!bad_timestamp"   # not a drop: a structural error, raised once the pass has finished
_NONE = pl.lit(None, dtype=pl.String)


# ---- helpers --------------------------------------------------------------------------------------

class _Log:
    """Per-table progress lines and the manifest's plain-language notes."""

    def __init__(self, manifest: Manifest, progress: bool):
        self.manifest, self.progress = manifest, progress

    def note(self, msg: str) -> None:
        self.manifest.notes.append(msg)
        if self.progress:
            print(f"  note: {msg}", flush=True)

    def table(self, name: str, acc: Accounting, t: float) -> None:
        if not self.progress:
            return
        drops = ", ".join(f"{k} {v:,}" for k, v in sorted(acc.dropped.items())) or "none"
        print(f"  {name:<15} read {acc.read:>11,}  kept {acc.kept:>11,}  dropped: {drops}  "
              f"({time.perf_counter() - t:.1f}s)", flush=True)


def _reason(*rules: tuple[pl.Expr, str]) -> pl.Expr:
    """The first matching rule's reason, else null (kept). Null conditions count as false."""
    expr = None
    for cond, why in rules:
        expr = (pl.when(cond.fill_null(False)).then(pl.lit(why)) if expr is None
                else expr.when(cond.fill_null(False)).then(pl.lit(why)))
    return expr.otherwise(_NONE).alias(_R)


def _account(rf: RawFile, acc: Accounting, counts: pl.DataFrame) -> None:
    """Fill `acc` from a (reason, len) frame of one input table; raise on structural errors."""
    if _BAD in counts[_R].to_list():
        raise locate_error(rf)
    for why, n in counts.select(_R, "len").iter_rows():
        acc.read += n
        if why is None:
            acc.kept += n
        else:
            acc.drop(why, n)


def _collect(rfs: list[RawFile], run: Callable[[], Any]) -> Any:
    """Run a Polars query over raw files; a reader failure becomes a ValueError naming the file,
    column and row (the first of `rfs` in which a bad value is found)."""
    try:
        return run()
    except _READ_ERRORS as e:
        errs = [locate_error(rf, e) for rf in rfs]
        located = [x for x in errs if "data row" in str(x) or "truncated" in str(x)]
        raise (located or errs)[0] from e


def _link_visit(lf: pl.LazyFrame, visits: pl.DataFrame, hadm_required: bool = True
                ) -> tuple[pl.LazyFrame, list[tuple[pl.Expr, str]]]:
    """Attach each raw row's (subject_id, hadm_id) to the kept visits; the drop rules that follow.

    A left join on a 59 k-row table streams (measured: ~0.4 GB peak at 35 M lab rows, where a
    `replace_strict` look-up materialised 2 GB). File order is kept so that outputs are
    deterministic.
    """
    v = visits.lazy().select(pl.col("visit_id").alias("hadm_id"), pl.col("patient_id").alias("__vpid"))
    lf = lf.join(v, on="hadm_id", how="left", maintain_order="left")
    has = pl.col("hadm_id").is_not_null()
    rules = [
        *([(~has, "no_admission")] if hadm_required else []),
        (has & pl.col("__vpid").is_null(), "unknown_visit"),
        (has & (pl.col("__vpid") != pl.col("subject_id")), "visit_patient_mismatch"),
    ]
    return lf, rules


def _read_small(rf: RawFile) -> pl.DataFrame:
    """Collect a small table whole (patients, admissions, ICU stays) with its data row numbers."""
    df = _collect([rf], lambda: rf.scan().with_row_index("__row", offset=1).collect())
    if df[BAD_TS].any():
        raise locate_error(rf)
    return df


def _write(df: pl.DataFrame | pl.LazyFrame, table: str, tmp: Path) -> int:
    out = conform(table, df).collect()
    out.write_parquet(tmp / f"{table}.parquet")
    return out.height


# ---- tables ---------------------------------------------------------------------------------------

def _patients(rf: RawFile, acc: Accounting, log: _Log) -> pl.DataFrame:
    df = _read_small(rf)
    check_unique(rf, df, rf.table.key)
    acc.read = acc.kept = df.height
    sex = pl.col("gender").str.strip_chars().str.to_uppercase()
    odd = df.filter(sex.is_not_null() & ~sex.is_in(["F", "M"])).height
    if odd:
        log.note(f"PATIENTS: {odd} GENDER values other than F/M stored as null sex")
    return df.select(
        pl.col("subject_id").alias("patient_id"),
        pl.when(sex.is_in(["F", "M"])).then(sex).alias("sex"),
        pl.col("dob").alias("birth_time"),
        pl.col("dod").alias("death_time"),
    ).sort("patient_id")


def _visits(rf: RawFile, patients: pl.DataFrame, acc: Accounting, log: _Log) -> pl.DataFrame:
    df = _read_small(rf)
    check_unique(rf, df, rf.table.key)
    df = df.join(patients.select(pl.col("patient_id").alias("subject_id"), "birth_time"),
                 on="subject_id", how="left", maintain_order="left")
    known = pl.col("subject_id").is_in(patients["patient_id"].implode())
    df = df.with_columns(_reason(
        (~known, "unknown_patient"),
        (pl.col("admittime").is_null() | pl.col("dischtime").is_null(), "missing_time"),
        (pl.col("dischtime") < pl.col("admittime"), "discharge_before_admission"),
    ))
    _account(rf, acc, df.group_by(_R).len())
    year_us = 365.2425 * 86400e6
    died = (pl.col("hospital_expire_flag") == 1).fill_null(pl.col("deathtime").is_not_null())
    visits = df.filter(pl.col(_R).is_null()).select(
        pl.col("hadm_id").alias("visit_id"),
        pl.col("subject_id").alias("patient_id"),
        pl.col("admittime").alias("admit_time"),
        pl.col("dischtime").alias("discharge_time"),
        pl.col("deathtime").alias("death_time"),
        pl.col("admission_type"),
        died.alias("died_in_hospital"),
        ((pl.col("admittime") - pl.col("birth_time")).dt.total_microseconds() / year_us).alias("age"),
    ).sort("patient_id", "admit_time", "visit_id")
    shifted = visits.filter(pl.col("age") > 120).height
    if shifted:
        log.note(f"ADMISSIONS: {shifted} visits of patients older than 89 carry MIMIC's shifted "
                 f"age (~300 years), stored as computed")
    return visits


def _stays(rf: RawFile, visits: pl.DataFrame, acc: Accounting) -> pl.DataFrame:
    df = _read_small(rf)
    check_unique(rf, df, rf.table.key)
    lf, rules = _link_visit(df.lazy(), visits)
    df = lf.with_columns(_reason(*rules)).collect()
    _account(rf, acc, df.group_by(_R).len())
    return df.filter(pl.col(_R).is_null()).select(
        pl.col("icustay_id").alias("stay_id"),
        pl.col("hadm_id").alias("visit_id"),
        pl.col("subject_id").alias("patient_id"),
        pl.col("intime").alias("in_time"),
        pl.col("outtime").alias("out_time"),
        pl.col("first_careunit").alias("care_unit"),
    ).sort("visit_id", "in_time", "stay_id")


def _icd_codes(rf: RawFile, visits: pl.DataFrame, system: str, acc: Accounting,
               extra: dict[str, Any]) -> pl.DataFrame:
    """DIAGNOSES_ICD / PROCEDURES_ICD -> codes rows of `system`, in SEQ_NUM order per visit."""
    from medmm.ontology.icd9 import icd9_dx_status_expr, icd9_proc_status_expr, normalize_icd9_expr

    status_expr = icd9_dx_status_expr if system == ICD9_DX else icd9_proc_status_expr
    lf, rules = _link_visit(rf.scan().with_row_index("__row", offset=1), visits)
    lf = lf.with_columns(normalize_icd9_expr("icd9_code").alias("code"))
    lf = lf.with_columns(status_expr("code").alias("__status"))
    lf = lf.with_columns(_reason(
        (pl.col(BAD_TS), _BAD),
        *rules,
        (pl.col("code").is_null() | (pl.col("code") == ""), "missing_code"),
        (pl.col("__status") == "unknown", "unknown_icd9"),
    ))
    df = _collect([rf], lambda: lf.select("__row", "hadm_id", "subject_id", "seq_num", "code",
                                          "icd9_code", "__status", _R).collect())
    kept = (df.filter(pl.col(_R).is_null())
            .sort("hadm_id", "seq_num", "__row", nulls_last=True)
            .with_columns(pl.struct("hadm_id", "code").is_first_distinct().alias("__first")))
    dup = kept.filter(~pl.col("__first")).height
    kept = kept.filter(pl.col("__first"))
    _account(rf, acc, df.group_by(_R).len())
    acc.kept -= dup
    acc.drop("duplicate_code", dup)
    extra.setdefault("icd9_status", {})[system] = {
        s: kept.filter(pl.col("__status") == s).height for s in ("known", "retired")}
    return kept.select(
        pl.col("hadm_id").alias("visit_id"),
        pl.col("subject_id").alias("patient_id"),
        pl.lit(system).alias("system"),
        "code",
        pl.int_range(pl.len(), dtype=pl.Int32).over("hadm_id").alias("seq"),
        pl.lit(None, dtype=pl.Datetime("us")).alias("time"),
        pl.col("icd9_code").alias("source_value"),
    )


def _drug_mapper(mappings: Mapping[str, Any]):
    from medmm.ontology.drugs import DRUG_ATC_FILES, NDC_RXNORM_FILE, RXNORM_ATC_FILE, DrugMapper

    files = {k: mappings.get(k) for k in ("ndc_rxnorm", "rxnorm_atc", "drug_atc") if mappings.get(k)}
    d = mappings.get("dir")
    if d and not files:
        return DrugMapper.from_dir(d)
    if d:  # standard names in the directory, overridden by explicitly given files
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"drug mapping directory not found: {d}")
        std = {"ndc_rxnorm": d / NDC_RXNORM_FILE, "rxnorm_atc": d / RXNORM_ATC_FILE,
               "drug_atc": next((d / n for n in DRUG_ATC_FILES if (d / n).is_file()), None)}
        files = {**{k: p for k, p in std.items() if p is not None and p.is_file()}, **files}
    if not files:
        return None
    return DrugMapper.from_files(**files)


def _prescriptions(rf: RawFile, visits: pl.DataFrame, mapper, acc: Accounting, log: _Log,
                   extra: dict[str, Any]) -> pl.DataFrame:
    """PRESCRIPTIONS -> codes rows of system "atc3", in STARTDATE order per visit."""
    lf = rf.scan().with_row_index("__row", offset=1)
    if mapper is None:
        lf = lf.with_columns(_NONE.alias("atc3"), _NONE.alias("atc_route"))
    else:
        lf = mapper.map_frame(lf, ndc_col="ndc", drug_col="drug")
    lf, rules = _link_visit(lf, visits)
    lf = lf.with_columns(_reason((pl.col(BAD_TS), _BAD), *rules, (pl.col("atc3").is_null(), "unmapped_drug")))
    source_value = pl.when(pl.col("atc_route") == "ndc").then(pl.col("ndc")).otherwise(pl.col("drug"))
    df = _collect([rf], lambda: lf.select("__row", "hadm_id", "subject_id", "startdate", "atc3", "atc_route",
                                          source_value.alias("source_value"), _R).collect())
    routes = df.group_by("atc_route").len()
    n = df.height
    by = {r: int(c) for r, c in routes.iter_rows() if r is not None}
    mapped = sum(by.values())
    extra["drug_mapping"] = {
        "rows": n, "ndc": by.get("ndc", 0), "name": by.get("name", 0), "unmapped": n - mapped,
        "mapped_fraction": mapped / n if n else 0.0,
        "ndc_fraction": by.get("ndc", 0) / n if n else 0.0,
        "name_fraction": by.get("name", 0) / n if n else 0.0,
        "files": {} if mapper is None else mapper.sources,
        "mapper_stats": {} if mapper is None else mapper.stats,
    }
    if mapper is None and n:
        log.note(f"PRESCRIPTIONS: no drug mapping files given (--mappings); all {n:,} rows "
                 f"dropped as unmapped_drug")
    kept = (df.filter(pl.col(_R).is_null())
            .sort("hadm_id", "startdate", "__row", nulls_last=True)
            .with_columns(pl.struct("hadm_id", "atc3").is_first_distinct().alias("__first")))
    dup = kept.filter(~pl.col("__first")).height
    kept = kept.filter(pl.col("__first"))
    _account(rf, acc, df.group_by(_R).len())
    acc.kept -= dup
    acc.drop("duplicate_code", dup)
    return kept.select(
        pl.col("hadm_id").alias("visit_id"),
        pl.col("subject_id").alias("patient_id"),
        pl.lit(ATC3).alias("system"),
        pl.col("atc3").alias("code"),
        pl.int_range(pl.len(), dtype=pl.Int32).over("hadm_id").alias("seq"),
        pl.col("startdate").alias("time"),
        "source_value",
    )


def clean_note_text(col: str = "text") -> pl.Expr:
    """ClinicalBERT's cleaning, length-preserving: lower-case, each \\r / \\n -> one space.

    U+0130 (capital I with dot) is the one character whose lower-case form has two code points;
    it is mapped to "i" first so that every character offset of the raw note stays valid.
    """
    return (pl.col(col).str.replace_all("\u0130", "i", literal=True)
            .str.to_lowercase().str.replace_all(r"[\r\n]", " "))


def _notes(rf: RawFile, visits: pl.DataFrame, acc: Accounting, path: Path) -> None:
    """NOTEEVENTS -> notes.parquet (streamed: the full table is ~4 GB of text)."""
    lf, rules = _link_visit(rf.scan(), visits)
    category = pl.col("category").str.strip_chars().str.to_lowercase()
    lf = lf.with_columns(_reason(
        (pl.col(BAD_TS), _BAD),
        (category != DISCHARGE_SUMMARY, "not_discharge_summary"),
        (category.is_null(), "not_discharge_summary"),
        (pl.col("iserror").str.strip_chars() == "1", "iserror"),
        *rules,
        (pl.col("text").is_null(), "empty_text"),
        # The reader decodes with replacement; U+FFFD marks bytes that were not UTF-8.
        (pl.col("text").str.contains("\ufffd", literal=True), "invalid_utf8"),
    ))
    kept = lf.filter(pl.col(_R).is_null()).select(
        pl.col("row_id").alias("note_id"),
        pl.col("hadm_id").alias("visit_id"),
        pl.col("subject_id").alias("patient_id"),
        pl.lit(DISCHARGE_SUMMARY).alias("category"),
        pl.coalesce("charttime", "chartdate").alias("chart_time"),
        clean_note_text("text").alias("text"),
    )
    sink = conform("notes", kept).sink_parquet(path, lazy=True)
    counts = lf.group_by(_R).len()
    _, c = _collect([rf], lambda: pl.collect_all([sink, counts], engine="streaming"))
    _account(rf, acc, c)


def _events(rf: RawFile, visits: pl.DataFrame, patients: pl.DataFrame) -> tuple[pl.LazyFrame, list[pl.LazyFrame]]:
    """LABEVENTS / CHARTEVENTS -> (measurement rows with a drop reason, extra count queries).

    Lab rows without HADM_ID (outpatient labs) are kept with a null visit_id. Chart rows are
    filtered on the vital-sign items first, so that the other ~95% of the 330 M rows are only
    counted (their timestamps are not parsed).
    """
    chart = rf.table.name == "CHARTEVENTS"
    lf = rf.scan()
    rules: list[tuple[pl.Expr, str]] = [(pl.col(BAD_TS), _BAD)]
    extra_counts = []
    if chart:
        selected = pl.col("itemid").is_in(list(CHART_ITEMIDS))
        extra_counts.append(lf.filter(~selected.fill_null(False))
                            .select(pl.lit("item_not_selected").alias(_R), pl.len().alias("len")))
        lf = lf.filter(selected)
        rules.append((pl.col("error") == 1, "iserror"))
    lf, link = _link_visit(lf, visits, hadm_required=False)
    rules += [
        (~pl.col("subject_id").is_in(patients["patient_id"].implode()), "unknown_patient"),
        *link,
        (pl.col("charttime").is_null(), "missing_time"),
        (pl.col("valuenum").is_null() | pl.col("valuenum").is_nan(), "non_numeric"),
    ]
    out = lf.with_columns(_reason(*rules)).select(
        pl.col("subject_id").alias("patient_id"),
        pl.col("hadm_id").alias("visit_id"),
        (pl.col("icustay_id") if chart else pl.lit(None, dtype=pl.Int64)).alias("stay_id"),
        pl.col("charttime").alias("time"),
        pl.col("itemid").alias("item_id"),
        pl.lit("chart" if chart else "lab").alias("source"),
        pl.col("valuenum").alias("value"),
        pl.col("valueuom").alias("unit"),
        _R,
    )
    return out, extra_counts


def _measurements(rfs: list[RawFile], visits: pl.DataFrame, patients: pl.DataFrame,
                  accs: list[Accounting], path: Path) -> None:
    """Lab and chart events -> measurements.parquet in one streaming pass per file: the kept rows
    are sunk to Parquet while the same scan is counted by reason (`collect_all` shares it)."""
    built = [_events(rf, visits, patients) for rf in rfs]
    kept = pl.concat([conform("measurements", lf.filter(pl.col(_R).is_null())) for lf, _ in built])
    sink = kept.sink_parquet(path, lazy=True)
    counts = [pl.concat([lf.group_by(_R).len(), *extra]) for lf, extra in built]
    res = _collect(rfs, lambda: pl.collect_all([sink, *counts], engine="streaming"))
    for rf, acc, c in zip(rfs, accs, res[1:]):
        _account(rf, acc, c)


# ---- entry point ----------------------------------------------------------------------------------

def prepare(raw: str | Path, out: str | Path, mappings: Mapping[str, Any] | None = None,
            overwrite: bool = False, progress: bool = True, include_labs: bool = True) -> Dataset:
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
    log = _Log(manifest, progress)
    if progress:
        print(f"prepare {SOURCE}: {raw} -> {out}", flush=True)

    # Structure first (files, headers, mapping files): fail before any heavy work.
    names = [n for n in RAW if include_labs or n not in EVENT_TABLES]
    files: dict[str, RawFile] = {}
    for name in names:
        rf = open_table(raw, RAW[name])
        if rf is None:
            log.note(f"{name}: not found in {raw}; table skipped")
        elif rf.empty:
            log.note(f"{name}: {rf.path.name} is empty (0 bytes); table skipped")
        else:
            files[name] = rf
    if not include_labs:
        log.note("LABEVENTS/CHARTEVENTS: skipped (include_labs=False); measurements is empty")
    mapper = _drug_mapper(mappings) if "PRESCRIPTIONS" in files else None
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
            visits = _visits(files["ADMISSIONS"], patients, acc["ADMISSIONS"], log)
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
                codes.append(_prescriptions(files["PRESCRIPTIONS"], visits, mapper,
                                            acc["PRESCRIPTIONS"], log, extra))
                log.table("PRESCRIPTIONS", acc["PRESCRIPTIONS"], t)
                dm = extra["drug_mapping"]
                if progress:
                    print(f"  drug mapping: {dm['mapped_fraction']:.1%} of prescriptions mapped to "
                          f"ATC-3 (NDC route {dm['ndc_fraction']:.1%}, name route "
                          f"{dm['name_fraction']:.1%})", flush=True)
            for name in ("DIAGNOSES_ICD", "PROCEDURES_ICD"):
                st = extra.get("icd9_status", {}).get(ICD9_DX if name == "DIAGNOSES_ICD" else ICD9_PROC)
                if st and st["retired"]:
                    log.note(f"{name}: {st['retired']:,} kept codes are not ICD-9-CM v32 leaves "
                             f"but have a v32 category (older releases)")

            manifest.tables["patients"] = _write(patients, "patients", tmp)
            manifest.tables["visits"] = _write(visits, "visits", tmp)
            manifest.tables["stays"] = _write(stays, "stays", tmp)
            all_codes = pl.concat(codes) if codes else empty("codes")
            manifest.tables["codes"] = _write(
                conform("codes", all_codes).sort("visit_id", "system", "seq"), "codes", tmp)

            if "NOTEEVENTS" in files:
                t = time.perf_counter()
                _notes(files["NOTEEVENTS"], visits, acc["NOTEEVENTS"], tmp / "notes.parquet")
                log.table("NOTEEVENTS", acc["NOTEEVENTS"], t)
                if acc["NOTEEVENTS"].read == 0:
                    log.note("NOTEEVENTS: the file has a header and no rows; notes is empty")
            else:
                _write(empty("notes"), "notes", tmp)
            manifest.tables["notes"] = _rows(tmp / "notes.parquet")

            events = [n for n in EVENT_TABLES if n in files]
            if events:
                t = time.perf_counter()
                _measurements([files[n] for n in events], visits, patients, [acc[n] for n in events],
                              tmp / "measurements.parquet")
                for n in events:
                    log.table(n, acc[n], t)
            else:
                _write(empty("measurements"), "measurements", tmp)
            manifest.tables["measurements"] = _rows(tmp / "measurements.parquet")

            # Imaging tables exist in every canonical dataset; MIMIC-III has none.
            for table in ("studies", "images"):
                manifest.tables[table] = _write(empty(table), table, tmp)

            _check_accounting(manifest)
            manifest.inputs = {k: {"sha256": f.result(), "bytes": inputs[k].stat().st_size}
                               for k, f in hashes.items()}
            extra["seconds"] = round(time.perf_counter() - t_start, 2)
            (tmp / "manifest.json").write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if progress:
        print(f"prepared {out} in {time.perf_counter() - t_start:.1f}s", flush=True)
    return Dataset(out)


def _rows(path: Path) -> int:
    return pl.scan_parquet(path).select(pl.len()).collect().item()


def _check_accounting(m: Manifest) -> None:
    """Every input row kept or dropped for a reason; output counts agree with `kept`."""
    bad = {k: a.to_json() for k, a in m.accounting.items() if not a.balanced}
    if bad:
        raise RuntimeError(f"internal error: row accounting does not balance: {bad}")
    a = m.accounting
    kept_codes = sum(a[n].kept for n in ("DIAGNOSES_ICD", "PROCEDURES_ICD", "PRESCRIPTIONS") if n in a)
    kept_events = sum(a[n].kept for n in EVENT_TABLES if n in a)
    expect = {"patients": a["PATIENTS"].kept, "visits": a["ADMISSIONS"].kept, "codes": kept_codes,
              "measurements": kept_events}
    if "NOTEEVENTS" in a:
        expect["notes"] = a["NOTEEVENTS"].kept
    if "ICUSTAYS" in a:
        expect["stays"] = a["ICUSTAYS"].kept
    wrong = {k: (m.tables[k], v) for k, v in expect.items() if m.tables[k] != v}
    if wrong:
        raise RuntimeError(f"internal error: output rows != kept input rows (table: (written, kept)): {wrong}")

