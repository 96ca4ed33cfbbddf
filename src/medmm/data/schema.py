"""The canonical dataset: fixed Arrow schemas, the manifest, and the reader.

Every source (MIMIC-III, MIMIC-IV, MIMIC-CXR, MEDS, the synthetic generator through the MIMIC
layouts) ends in the same directory of Parquet tables:

    <dataset>/
        manifest.json        schema version, source, inputs (hashes, rows read), accounting
        patients.parquet     one row per patient
        visits.parquet       one row per hospital admission
        stays.parquet        one row per ICU stay (within a visit)
        codes.parquet        one row per (visit, system, code) in recorded order
        notes.parquet        one row per note (discharge summaries, radiology reports, ...)
        measurements.parquet one row per time-stamped numeric observation (labs, vitals)
        events.parquet       one row per ICU event with a start (and maybe an end): inputs,
                             procedures, outputs, charted date-times
        items.parquet        one row per item id of the source's item dictionaries (labels, units)
        studies.parquet      one row per imaging study (imaging source)
        images.parquet       one row per image file of a study (imaging source)

Ids are the source's own integer ids (MIMIC ``subject_id`` / ``hadm_id`` / ``icustay_id`` /
``stay_id`` / ``itemid``), so a prepared row can always be traced back to its raw row. A source
whose note ids are strings (MIMIC-IV-Note ``"10000032-DS-21"``) derives a stable int64
``note_id`` from it and keeps the string in ``note_key`` (see `medmm.data.sources.mimic4`). Codes are strings, never numbers:
ICD-9 ``"0389"`` and ``"V5867"`` keep their leading zeros and letters; they are stored without
the dot, as MIMIC stores them.

The accounting rule: for every input table, ``kept + sum(dropped.values()) == read``.

Schema versions: 1.1 added `events`, `items` and ``notes.note_key`` (additive: a 1.0 dataset
still loads, and reads the two new tables as empty). 1.2 added the imaging columns
``studies.findings`` / ``impression`` / ``visit_id`` / ``chexpert`` / ``negbio`` and
``images.split`` (additive: an older dataset's empty imaging tables read with them as nulls),
and ``stays.dbsource`` (null where a source has no such field; `OMITTABLE`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

SCHEMA_VERSION = "1.2"

_ts = pa.timestamp("us")

# Code systems used in the `codes.system` column. Medications are ATC level 3 (4 characters,
# e.g. "C07A") for the whole vocabulary; the NDC / drug name they came from is kept in
# `source_value` so the mapping can be audited.
ICD9_DX = "icd9_dx"
ICD9_PROC = "icd9_proc"
ICD10_DX = "icd10_dx"
ICD10_PROC = "icd10_proc"
ATC3 = "atc3"
CODE_SYSTEMS = (ICD9_DX, ICD9_PROC, ICD10_DX, ICD10_PROC, ATC3)

# `events.source`: the ICU event table a row came from (MIMIC-IV icu/<source>events; MIMIC-III
# INPUTEVENTS_MV / _CV, PROCEDUREEVENTS_MV, OUTPUTEVENTS, DATETIMEEVENTS map to the same four).
EVENT_SOURCES = ("input", "procedure", "output", "datetime")

# The 14 CheXpert observations, as the MIMIC-CXR-JPG label files spell their columns. Each labeler's
# labels of a study are one struct with these fields (`studies.chexpert`, `studies.negbio`), the
# values kept exactly as released: 1.0 positive, 0.0 negative, -1.0 uncertain, null = not
# mentioned (blank in the file). -1 and null are never merged. The whole struct is null when the
# label file has no row for the study.
CXR_FINDINGS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
    "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
    "Pneumothorax", "Support Devices",
)
CXR_LABELERS = ("chexpert", "negbio")
_cxr_labels = pa.struct([(f, pa.float64()) for f in CXR_FINDINGS])

SCHEMAS: dict[str, pa.Schema] = {
    "patients": pa.schema([
        ("patient_id", pa.int64()),
        ("sex", pa.string()),            # "F" / "M" / null
        ("birth_time", _ts),             # shifted, as released
        ("death_time", _ts),             # null if alive at end of follow-up
    ]),
    "visits": pa.schema([
        ("visit_id", pa.int64()),
        ("patient_id", pa.int64()),
        ("admit_time", _ts),
        ("discharge_time", _ts),
        ("death_time", _ts),             # in-hospital death time, else null
        ("admission_type", pa.string()),
        ("died_in_hospital", pa.bool_()),
        ("age", pa.float64()),           # years at admission (MIMIC's >89 shift leaves ~300)
    ]),
    "stays": pa.schema([
        ("stay_id", pa.int64()),
        ("visit_id", pa.int64()),
        ("patient_id", pa.int64()),
        ("in_time", _ts),
        ("out_time", _ts),
        ("care_unit", pa.string()),
        ("dbsource", pa.string()),       # MIMIC-III ICUSTAYS.DBSOURCE ("carevue" / "metavision" /
                                         # "both"); null for other sources (MIMIC-IV is MetaVision)
    ]),
    "codes": pa.schema([
        ("visit_id", pa.int64()),
        ("patient_id", pa.int64()),
        ("system", pa.string()),         # one of CODE_SYSTEMS
        ("code", pa.string()),           # no dot; ATC3 for medications
        ("seq", pa.int32()),             # recorded order within (visit, system), from 0
        ("time", _ts),                   # start time where known (prescriptions), else null
        ("source_value", pa.string()),   # raw value it was derived from (NDC, drug name)
    ]),
    "notes": pa.schema([
        ("note_id", pa.int64()),
        ("note_key", pa.string()),       # the source's own note id as released (MIMIC-III ROW_ID)
        ("visit_id", pa.int64()),
        ("patient_id", pa.int64()),
        ("category", pa.string()),       # e.g. "discharge summary", "radiology"
        ("chart_time", _ts),
        ("text", pa.string()),           # cleaned: lower-case, line breaks removed
    ]),
    "measurements": pa.schema([
        ("patient_id", pa.int64()),
        ("visit_id", pa.int64()),        # null when the source row has no admission
        ("stay_id", pa.int64()),         # null outside the ICU
        ("time", _ts),
        ("item_id", pa.int64()),
        ("source", pa.string()),         # "lab" / "chart"
        ("value", pa.float64()),
        ("unit", pa.string()),
    ]),
    # ICU events that have a start and possibly an end (the MIMIC MetaVision layout). The ICU
    # criticality labels are read from here: ventilation = procedure items 225792 / 225794,
    # vasopressors = input items 221906, 221289, 221662, 222315, 221749 (paper-notes, MedCSP).
    #   source      start_time   end_time   value         unit        rate / rate_unit  value_time
    #   "input"     starttime    endtime    amount        amountuom   rate / rateuom    null
    #   "procedure" starttime    endtime    value         valueuom    null              null
    #   "output"    charttime    null       value         valueuom    null              null
    #   "datetime"  charttime    null       null          valueuom    null              value
    # (MIMIC-III INPUTEVENTS_CV: charttime, no end, amount / rate as above.)
    "events": pa.schema([
        ("patient_id", pa.int64()),
        ("visit_id", pa.int64()),        # null when the source row has no admission
        ("stay_id", pa.int64()),         # null outside the ICU
        ("item_id", pa.int64()),
        ("source", pa.string()),         # one of EVENT_SOURCES
        ("start_time", _ts),
        ("end_time", _ts),               # null for point events
        ("value", pa.float64()),         # amount given / procedure value / output volume
        ("unit", pa.string()),
        ("rate", pa.float64()),          # infusion rate (inputs only)
        ("rate_unit", pa.string()),
        ("value_time", _ts),             # the charted date-time ("datetime" rows only)
        ("order_id", pa.int64()),        # linkorderid: the rows of one infusion (inputs only)
        ("status", pa.string()),         # statusdescription as released ("FinishedRunning", ...)
    ]),
    # The source's item dictionaries (MIMIC d_items, d_labitems), for naming time-series
    # variables; `linksto` is the raw events table an item's rows are in.
    "items": pa.schema([
        ("item_id", pa.int64()),
        ("linksto", pa.string()),        # "chartevents", "inputevents", ..., "labevents"
        ("label", pa.string()),
        ("abbreviation", pa.string()),
        ("category", pa.string()),
        ("fluid", pa.string()),          # labs only ("Blood", "Urine", ...)
        ("unit", pa.string()),
        ("param_type", pa.string()),     # d_items only ("Numeric", "Text", "Solution", ...)
    ]),
    "studies": pa.schema([
        ("study_id", pa.int64()),
        ("patient_id", pa.int64()),
        ("study_time", _ts),             # MIMIC-CXR: StudyDate + StudyTime (shifted like the EHR)
        ("report", pa.string()),         # full text as released; null if the study has no report
        ("findings", pa.string()),       # FINDINGS section, whitespace collapsed; null if absent
        ("impression", pa.string()),     # IMPRESSION section, likewise
        ("visit_id", pa.int64()),        # EHR admission containing study_time (link step), else null
        ("chexpert", _cxr_labels),       # CXR_FINDINGS -> 1.0 / 0.0 / -1.0 / null; null if unlabelled
        ("negbio", _cxr_labels),
    ]),
    "images": pa.schema([
        ("image_id", pa.string()),       # MIMIC-CXR dicom_id
        ("study_id", pa.int64()),
        ("patient_id", pa.int64()),
        ("view", pa.string()),           # "PA" / "AP" / "LATERAL" / ...
        ("path", pa.string()),           # relative to the raw root given at prepare time
        ("split", pa.string()),          # the release's split: "train" / "validate" / "test" / null
    ]),
}

TABLES = tuple(SCHEMAS)

# Nullable columns that a source may leave out of its frame; `conform` fills them with null.
OMITTABLE: dict[str, tuple[str, ...]] = {"stays": ("dbsource",)}


def polars_schema(table: str) -> pl.Schema:
    """The Polars view of a canonical table's Arrow schema."""
    return pl.DataFrame(SCHEMAS[table].empty_table()).schema


def empty(table: str) -> pl.DataFrame:
    return pl.DataFrame(SCHEMAS[table].empty_table())


def conform(table: str, df: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    """Select and cast a frame to the canonical column order and dtypes of `table`."""
    schema = polars_schema(table)
    lf = df.lazy() if isinstance(df, pl.DataFrame) else df
    have = lf.collect_schema()
    missing = [c for c in schema if c not in have and c not in OMITTABLE.get(table, ())]
    if missing:
        raise ValueError(f"table {table!r}: frame lacks canonical columns {missing}")
    return lf.select([(pl.col(c) if c in have else pl.lit(None)).cast(t, strict=True).alias(c)
                      for c, t in schema.items()])


@dataclass
class Accounting:
    """Rows of one input table: read = kept + sum(dropped)."""

    read: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + int(n)

    @property
    def balanced(self) -> bool:
        return self.kept + sum(self.dropped.values()) == self.read

    def to_json(self) -> dict[str, Any]:
        return {"read": self.read, "kept": self.kept, "dropped": dict(sorted(self.dropped.items()))}


@dataclass
class Manifest:
    source: str
    schema_version: str = SCHEMA_VERSION
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)   # file -> {sha256, bytes}
    accounting: dict[str, Accounting] = field(default_factory=dict)   # input table -> rows
    tables: dict[str, int] = field(default_factory=dict)              # output table -> rows
    notes: list[str] = field(default_factory=list)                    # plain-language remarks
    extra: dict[str, Any] = field(default_factory=dict)               # e.g. drug-mapping rates

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "source": self.source,
            "inputs": self.inputs,
            "accounting": {k: v.to_json() for k, v in self.accounting.items()},
            "tables": self.tables,
            "notes": self.notes,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Manifest":
        acc = {k: Accounting(v["read"], v["kept"], dict(v["dropped"])) for k, v in d["accounting"].items()}
        return cls(source=d["source"], schema_version=d["schema_version"], inputs=d["inputs"],
                   accounting=acc, tables=d["tables"], notes=d.get("notes", []), extra=d.get("extra", {}))


class CanonicalDataset:
    """Read access to a prepared dataset. Tables are scanned lazily (memory-mapped Parquet)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        mf = self.path / "manifest.json"
        if not mf.is_file():
            raise FileNotFoundError(f"{self.path}: not a prepared medmm dataset (no manifest.json)")
        self.manifest = Manifest.from_json(json.loads(mf.read_text()))
        if self.manifest.schema_version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise ValueError(f"{mf}: schema version {self.manifest.schema_version}, "
                             f"this medmm reads {SCHEMA_VERSION}; prepare the dataset again")

    def scan(self, table: str) -> pl.LazyFrame:
        if table not in SCHEMAS:
            raise KeyError(f"unknown table {table!r}; tables are {list(TABLES)}")
        path = self.path / f"{table}.parquet"
        if table not in self.manifest.tables and not path.exists():
            # Prepared by an older minor schema version, before the table existed: nothing of it.
            return empty(table).lazy()
        lf = pl.scan_parquet(path)
        if self.manifest.schema_version != SCHEMA_VERSION:
            # An older minor version may lack columns added since (additive only): null-filled.
            have = lf.collect_schema()
            want = polars_schema(table)
            missing = [c for c in want if c not in have]
            if missing:
                lf = lf.with_columns([pl.lit(None, dtype=want[c]).alias(c) for c in missing]).select(list(want))
        return lf

    def table(self, table: str) -> pl.DataFrame:
        return self.scan(table).collect()

    def __repr__(self) -> str:
        return f"CanonicalDataset({str(self.path)!r}, source={self.manifest.source!r}, tables={self.manifest.tables})"


def load_dataset(path: str | Path) -> CanonicalDataset:
    return CanonicalDataset(path)


def write_rows(root: str | Path, tables: dict[str, list[dict[str, Any]]], source: str) -> CanonicalDataset:
    """A small canonical dataset from rows given as dicts, per table (a column a row leaves out is
    null; a table not given is written empty), with its manifest: for tests and hand-made examples.
    `root` must not exist yet."""
    root = Path(root)
    root.mkdir(parents=True)
    manifest = Manifest(source=source)
    for name in SCHEMAS:
        rows = [{**dict.fromkeys(SCHEMAS[name].names), **r} for r in tables.get(name, [])]
        df = (conform(name, pl.DataFrame(rows, schema_overrides=dict(empty(name).schema), strict=False)).collect()
              if rows else empty(name))
        df.write_parquet(root / f"{name}.parquet")
        manifest.tables[name] = df.height
    (root / "manifest.json").write_text(json.dumps(manifest.to_json()))
    return CanonicalDataset(root)
