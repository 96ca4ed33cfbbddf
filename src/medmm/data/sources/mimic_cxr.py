"""MIMIC-CXR-JPG 2.0.0 / 2.1.0 release -> the canonical imaging tables (`medmm.data.schema`).

What is read (the CSV tables as ``X.csv.gz`` or ``X.csv``; both releases name them
``mimic-cxr-2.0.0-*``, a ``mimic-cxr-2.1.0-*`` name is accepted too) and what it becomes:

    mimic-cxr-2.0.0-metadata    -> images (one row per dicom_id), studies     required
    mimic-cxr-2.0.0-split       -> images.split                               optional
    mimic-cxr-2.0.0-chexpert    -> studies.chexpert                           optional
    mimic-cxr-2.0.0-negbio      -> studies.negbio                             optional
    files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg  -> images.path (existence only)   required folder
    files/pXX/pSUBJECT/sSTUDY.txt           -> studies.report / findings / impression

The reports belong to the MIMIC-CXR (DICOM) project, not to MIMIC-CXR-JPG: unzip
``mimic-cxr-reports.zip`` into the JPG root (its ``files/`` merges with the images') or anywhere
else and pass `reports` (``--reports DIR``, the folder holding ``files/``). Without any report
files the studies are kept with null reports (said in a note).

Definitions:

* Study time = StudyDate (an 8-digit YYYYMMDD integer) + StudyTime (HHMMSS with optional
  fraction, as the float-like value the release writes: ``213014.531`` is 21:30:14.531, ``84512.0``
  is 08:45:12; fewer than six integer digits are left-padded with zeros). An empty StudyTime
  gives midnight of StudyDate (counted in ``extra["mimic_cxr"]["images_without_study_time"]``).
  Images of one study normally share these; the study's time is the earliest of its images'.
  Times carry MIMIC's per-patient date shift, the same shift as MIMIC-IV's (`medmm.data.link`).
* One `images` row per metadata row whose JPG exists at its canonical path (checked, not
  decoded: pixels are read at load time by `medmm.data.images`); ``view`` = ViewPosition (null
  when blank), ``split`` from the split file (null if the file or the row is absent).
* One `studies` row per study with at least one kept image. ``report`` is the report file's
  full text as released (no case folding); ``findings`` / ``impression`` are its sections
  (`extract_sections`). A study without a report file is kept with null report columns
  (MedCSP masks a missing modality) and counted (``studies_without_report``).
* Labels: the 14 CheXpert observations (`medmm.data.schema.CXR_FINDINGS`) of each labeler in one
  struct per study, values kept exactly as released: 1.0 / 0.0 / -1.0, blank -> null. A study
  without a row in a label file has a null struct.
* ``visit_id`` is null unless the link step runs (`link_ehr`, ``--link-ehr DS_EHR``), which
  assigns the EHR admission that contains the study time (`medmm.data.link`) and stores its
  counts in ``extra["link"]``.

Every input row is accounted for (``read = kept + sum(dropped)``; the report files are the
input table "reports"). The manifest hashes the CSV tables; the JPG and report files (~377 k and
~228 k in the full release) are counted, not hashed. Bad input (tests/test_mimic_cxr.py):

    | case                                          | outcome                                     |
    |-----------------------------------------------|---------------------------------------------|
    | metadata file missing / files/ folder missing | FileNotFoundError (raw dir, what)           |
    | declared column missing from a header         | ValueError (file, column, header found)     |
    | non-integer subject_id / study_id             | ValueError (file, column, data row)         |
    | StudyDate not 8 digits YYYYMMDD, or empty     | ValueError (file, column, data row, value)  |
    | StudyTime not HHMMSS[.fff] (or HH > 23 ...)   | ValueError (file, column, data row, value)  |
    | dicom_id repeated or empty                    | ValueError (file, column, data rows)        |
    | one study_id with two subject_ids             | ValueError (file, column, data rows)        |
    | label value outside {1, 0, -1, blank}         | ValueError (file, column, data row, value)  |
    | study_id repeated in a label file             | ValueError (file, column, data rows)        |
    | split value outside {train, validate, test}   | ValueError (file, column, data row, value)  |
    | metadata row whose JPG is missing             | drop "missing_jpg"                          |
    | split row of an unknown / dropped image       | drop "unknown_image" / "image_not_kept"     |
    | label row or report of an unknown study, of a | drop "unknown_study" / "study_not_kept" /   |
    |   study without kept images, or whose subject |   "subject_mismatch"                        |
    |   disagrees with the metadata's               |                                             |
    | a second report file of one study             | drop "duplicate_report" (first path kept)   |
    | report file empty / not UTF-8                 | drop "empty_report" / "invalid_utf8" (the   |
    |                                               |   study is kept without a report)           |
    | study without a report file                   | kept, report null; counted                  |
    | corrupt JPG                                   | at load time: `ImageLoadError` naming the   |
    |                                               |   file, or a listed skip (`medmm.data.images`)|

Nothing is written at `out` unless the whole preparation succeeds (`atomic_dir`).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from medmm.data.io import atomic_dir, sha256_file
from medmm.data.schema import CXR_FINDINGS, CXR_LABELERS, Accounting, CanonicalDataset, Manifest, empty
from medmm.data.sources.common import R, Log, check_accounting, collect, finish_manifest, reason, write
from medmm.data.sources.csv import INT, STR, RawFile, RawTable, check_unique, find_file, open_table

__all__ = ["SOURCE", "RAW", "extract_sections", "prepare", "study_time_expr"]

SOURCE = "mimic-cxr"
RELEASES = ("2.0.0", "2.1.0")     # file-name versions accepted, in order of preference
SPLITS = ("train", "validate", "test")
LABEL_VALUES = (1.0, 0.0, -1.0)

# ---- declarations ---------------------------------------------------------------------------------

_LABEL_COLS = {f.lower(): STR for f in CXR_FINDINGS}   # parsed and checked here, never coerced

RAW: dict[str, RawTable] = {t.name: t for t in (
    RawTable("metadata", {"dicom_id": STR, "subject_id": INT, "study_id": INT, "viewposition": STR,
                          "studydate": STR, "studytime": STR},
             key="dicom_id", optional_columns=("viewposition", "studytime")),
    RawTable("split", {"dicom_id": STR, "study_id": INT, "subject_id": INT, "split": STR},
             required=False, key="dicom_id"),
    RawTable("chexpert", {"subject_id": INT, "study_id": INT, **_LABEL_COLS}, required=False, key="study_id"),
    RawTable("negbio", {"subject_id": INT, "study_id": INT, **_LABEL_COLS}, required=False, key="study_id"),
)}
REPORTS = "reports"               # accounting name of the report files

_REPORT_RE = re.compile(r"^s(\d+)\.txt$")
_GROUP_RE = re.compile(r"^p\d{1,2}$")      # "p" + the first two digits of subject_id
_SUBJECT_RE = re.compile(r"^p(\d+)$")
_STUDY_RE = re.compile(r"^s(\d+)$")


def _open(raw: Path, name: str) -> RawFile | None:
    """The release file of table `name` under any accepted version (``mimic-cxr-2.0.0-NAME``)."""
    decl = RAW[name]
    stems = [f"mimic-cxr-{v}-{name}" for v in RELEASES]
    found = [s for s in stems if find_file(raw, s) is not None]
    if len(found) > 1:
        raise ValueError(f"{raw}: several releases of table {name}: {found}; keep exactly one")
    if not found:
        if decl.required:
            raise FileNotFoundError(f"{raw}: required table {stems[0]} not found "
                                    f"(looked for {stems[0]}.csv(.gz) and {stems[1]}.csv(.gz))")
        return None
    return open_table(raw, replace(decl, name=found[0]))


# ---- report sections ------------------------------------------------------------------------------

FINDINGS_HEADERS = ("findings", "finding")
IMPRESSION_HEADERS = ("impression", "impressions", "conclusion", "conclusions")
BOTH_HEADERS = ("findings and impression", "findings/impression", "impression and findings")
# Other headers of MIMIC-CXR / Open-I reports: they end a FINDINGS or IMPRESSION section.
OTHER_HEADERS = (
    "final report", "wet read", "examination", "exam", "indication", "indications", "history",
    "clinical history", "clinical information", "reason for exam", "reason for examination",
    "technique", "comparison", "comparisons", "procedure", "recommendation", "recommendations",
    "recommendation(s)", "notification", "addendum", "note", "type of examination",
)
_ALL_HEADERS = sorted({*FINDINGS_HEADERS, *IMPRESSION_HEADERS, *BOTH_HEADERS, *OTHER_HEADERS},
                      key=len, reverse=True)      # longest first: "findings and impression" before "findings"


def _header_alt(name: str) -> str:
    return r"\s+".join(re.escape(w) for w in name.split())


# A known header name followed by a colon, or alone on its line (``FINAL REPORT``).
_HEADER_RE = re.compile(
    r"(?<![A-Za-z])(?P<name>" + "|".join(_header_alt(h) for h in _ALL_HEADERS) + r")"
    r"(?:[ \t]*:|(?=[ \t]*(?:\r?\n|$)))",
    re.IGNORECASE)


def _is_header(text: str, m: re.Match) -> bool:
    """A match is a header at the start of a line (any case), or anywhere in upper case when
    followed by a colon (reports flattened to one line: "... FINDINGS: ... IMPRESSION: ...")."""
    line_start = text.rfind("\n", 0, m.start()) + 1
    at_line_start = text[line_start:m.start()].strip() == ""
    if at_line_start:
        return True
    return m.group("name").isupper() and m.group(0).rstrip().endswith(":")


def extract_sections(text: str | None) -> dict[str, str | None]:
    """The FINDINGS and IMPRESSION sections of a radiology report.

    Headers are the known names (`FINDINGS_HEADERS`, `IMPRESSION_HEADERS`, `BOTH_HEADERS`,
    `OTHER_HEADERS`) followed by a colon, matched case- and space-insensitively at the start
    of a line, or in upper case anywhere; a name alone on its line is a header too. A section
    runs to the next header of any kind. "FINDINGS AND IMPRESSION:" fills both. A section that
    occurs twice (an addendum) is joined in order with a space. Section text has its whitespace
    collapsed to single spaces and stripped; a missing or empty section is None.

    >>> extract_sections("EXAM: CXR\\n FINDINGS: No effusion.\\n\\n IMPRESSION:  Normal.\\n")
    {'findings': 'No effusion.', 'impression': 'Normal.'}
    >>> extract_sections("impression : clear lungs")
    {'findings': None, 'impression': 'clear lungs'}
    """
    out: dict[str, list[str]] = {"findings": [], "impression": []}
    if not text:
        return {"findings": None, "impression": None}
    heads = [m for m in _HEADER_RE.finditer(text) if _is_header(text, m)]
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        body = " ".join(text[m.end():end].split())
        name = " ".join(m.group("name").lower().split())
        targets = (["findings", "impression"] if name in BOTH_HEADERS else
                   ["findings"] if name in FINDINGS_HEADERS else
                   ["impression"] if name in IMPRESSION_HEADERS else [])
        for t in targets:
            if body:
                out[t].append(body)
    return {k: (" ".join(v) if v else None) for k, v in out.items()}


# ---- study time -----------------------------------------------------------------------------------

def study_time_expr(date_col: str = "studydate", time_col: str = "studytime") -> dict[str, pl.Expr]:
    """Expressions over string columns StudyDate / StudyTime: ``time`` (Datetime us), and the
    flags ``bad_date`` (not 8 digits YYYYMMDD, or empty), ``bad_time`` (not HHMMSS[.f]) and
    ``no_time`` (StudyTime empty: midnight is used)."""
    d = pl.col(date_col).str.strip_chars()
    date = pl.when(d.str.contains(r"^\d{8}$")).then(d).str.to_date("%Y%m%d", strict=False)
    t = pl.col(time_col).str.strip_chars()
    t = pl.when(t != "").then(t)
    g = t.str.extract_groups(r"^(\d{1,6})(?:\.(\d*))?$")
    whole = g.struct.field("1").str.zfill(6)
    frac = g.struct.field("2").fill_null("").str.slice(0, 6).str.pad_end(6, "0")
    hh, mm, ss = (whole.str.slice(i, 2).cast(pl.Int64) for i in (0, 2, 4))
    us = ((hh * 3600 + mm * 60 + ss) * 1_000_000 + frac.cast(pl.Int64)).fill_null(0)
    bad_time = t.is_not_null() & (g.struct.field("1").is_null() | (hh > 23) | (mm > 59) | (ss > 59))
    return {
        "time": date.cast(pl.Datetime("us")) + pl.duration(microseconds=us),
        "bad_date": date.is_null(),
        "bad_time": bad_time.fill_null(True),
        "no_time": t.is_null(),
    }


# ---- tables ---------------------------------------------------------------------------------------

def _row_error(rf: RawFile, df: pl.DataFrame, flag: str, column: str, what: str) -> ValueError | None:
    """The error for the first row of `df` (with ``__row``) where boolean column `flag` is true."""
    hit = df.filter(pl.col(flag)).sort("__row").head(1)
    if hit.height == 0:
        return None
    r = hit.row(0, named=True)
    return ValueError(f"{rf.path}: column {rf.column_label(column)}, data row {r['__row']}: "
                      f"{r[column]!r} {what}")


def _read(rf: RawFile) -> pl.DataFrame:
    df = collect([rf], lambda: rf.scan().drop("__bad_ts").with_row_index("__row", offset=1).collect())
    if rf.table.key:
        check_unique(rf, df, rf.table.key)
    return df


def _metadata(rf: RawFile, jpgs: set[str], acc: Accounting, log: Log, extra: dict[str, Any]) -> pl.DataFrame:
    """metadata -> candidate image rows (kept ones: __reason null) with path and time."""
    df = _read(rf)
    if df.height == 0:
        log.note(f"{rf.path.name}: a header and no rows; studies and images are empty")
        return df.with_columns(pl.lit(None, pl.Datetime("us")).alias("__time"), NONE_STR.alias("path"),
                               NONE_STR.alias(R))
    for col in ("subject_id", "study_id"):
        err = _row_error(rf, df.with_columns(pl.col(col).is_null().alias("__f")), "__f", col, "is empty")
        if err:
            raise err
    st = study_time_expr()
    df = df.with_columns(st["time"].alias("__time"), st["bad_date"].alias("__bad_date"),
                         st["bad_time"].alias("__bad_time"), st["no_time"].alias("__no_time"))
    for flag, col, what in (("__bad_date", "studydate", "is not a date YYYYMMDD"),
                            ("__bad_time", "studytime", "is not a time HHMMSS[.fff]")):
        err = _row_error(rf, df, flag, col, what)
        if err:
            raise err
    # One study belongs to one patient.
    subj = df.group_by("study_id").agg(pl.col("subject_id").n_unique().alias("n"))
    bad = subj.filter(pl.col("n") > 1)
    if bad.height:
        study = bad.sort("study_id")["study_id"][0]
        rows = df.filter(pl.col("study_id") == study).unique("subject_id", keep="first").sort("__row").head(2)
        (r1, s1), (r2, s2) = rows.select("__row", "subject_id").rows()
        raise ValueError(f"{rf.path}: column {rf.column_label('subject_id')}: study_id {study} has subject_id "
                         f"{s1} in data row {r1} and {s2} in data row {r2}")
    path = pl.format("files/p{}/p{}/s{}/{}.jpg", pl.col("subject_id").cast(pl.String).str.slice(0, 2),
                     "subject_id", "study_id", pl.col("dicom_id").str.strip_chars())
    df = df.with_columns(path.alias("path"))
    df = df.with_columns(reason((~pl.col("path").is_in(list(jpgs)), "missing_jpg")))
    _count(acc, df)
    n_no_time = int(df.filter(pl.col(R).is_null())["__no_time"].sum())
    extra["images_without_study_time"] = n_no_time
    if n_no_time:
        log.note(f"{rf.path.name}: {n_no_time:,} kept images have an empty StudyTime; "
                 f"their study time is midnight of StudyDate")
    return df


NONE_STR = pl.lit(None, dtype=pl.String)


def _count(acc: Accounting, df: pl.DataFrame) -> None:
    for why, n in df.group_by(R).len().select(R, "len").iter_rows():
        acc.read += n
        if why is None:
            acc.kept += n
        else:
            acc.drop(why, n)


def _split(rf: RawFile, meta: pl.DataFrame, acc: Accounting) -> pl.DataFrame:
    """split -> (dicom_id, split) of kept images."""
    df = _read(rf)
    sp = pl.col("split").str.strip_chars()
    err = _row_error(rf, df.with_columns((~sp.is_in(list(SPLITS))).fill_null(True).alias("__f")), "__f", "split",
                     f"is not one of {list(SPLITS)}")
    if err:
        raise err
    m = meta.select(pl.col("dicom_id").str.strip_chars().alias("__id"), pl.col(R).alias("__mreason"))
    df = df.with_columns(pl.col("dicom_id").str.strip_chars().alias("__id"), sp.alias("split")).join(
        m.with_columns(pl.lit(True).alias("__known")), on="__id", how="left", maintain_order="left")
    df = df.with_columns(reason((pl.col("__known").is_null(), "unknown_image"),
                                (pl.col("__mreason").is_not_null(), "image_not_kept")))
    _count(acc, df)
    return df.filter(pl.col(R).is_null()).select(pl.col("__id").alias("image_id"), "split")


def _labels(rf: RawFile, studies: pl.DataFrame, meta_studies: pl.DataFrame, acc: Accounting) -> pl.DataFrame:
    """A label file -> (study_id, struct of the 14 findings) of kept studies; values as released."""
    df = _read(rf)
    cols = list(_LABEL_COLS)
    parsed = {c: pl.col(c).str.strip_chars() for c in cols}
    for c in cols:
        v = parsed[c]
        num = v.cast(pl.Float64, strict=False)
        bad = v.is_not_null() & (v != "") & ~num.is_in(list(LABEL_VALUES)).fill_null(False)
        err = _row_error(rf, df.with_columns(bad.alias("__f")), "__f", c,
                         "is not a label value (1.0, 0.0, -1.0 or blank)")
        if err:
            raise err
    df = df.join(meta_studies.select("study_id", pl.col("patient_id").alias("__mpid")), on="study_id",
                 how="left", maintain_order="left")
    df = df.join(studies.select("study_id", pl.lit(True).alias("__kept")), on="study_id", how="left",
                 maintain_order="left")
    df = df.with_columns(reason((pl.col("__mpid").is_null(), "unknown_study"),
                                (pl.col("__mpid") != pl.col("subject_id"), "subject_mismatch"),
                                (pl.col("__kept").is_null(), "study_not_kept")))
    _count(acc, df)
    fields = [pl.when(parsed[c] != "").then(parsed[c]).cast(pl.Float64).alias(f)
              for c, f in zip(cols, CXR_FINDINGS)]
    return df.filter(pl.col(R).is_null()).select("study_id", pl.struct(fields).alias("__labels"))


def _walk(files: Path, jpgs: bool, reports: bool) -> tuple[set[str], list[tuple[int, int, str]]]:
    """One pass over ``files/pXX/pSUBJECT/``: JPG paths relative to the root (``files/...``) and
    report files as (subject_id, study_id, path relative to the root)."""
    jpg: set[str] = set()
    rep: list[tuple[int, int, str]] = []
    with os.scandir(files) as groups:
        for g in sorted(groups, key=lambda e: e.name):
            if not (g.is_dir() and _GROUP_RE.match(g.name)):
                continue
            with os.scandir(g.path) as subjects:
                for s in subjects:
                    ms = _SUBJECT_RE.match(s.name)
                    if not (ms and s.is_dir()):
                        continue
                    with os.scandir(s.path) as entries:
                        for e in entries:
                            if reports and (mr := _REPORT_RE.match(e.name)) and e.is_file():
                                rep.append((int(ms.group(1)), int(mr.group(1)),
                                            f"files/{g.name}/{s.name}/{e.name}"))
                            elif jpgs and _STUDY_RE.match(e.name) and e.is_dir():
                                with os.scandir(e.path) as imgs:
                                    for f in imgs:
                                        if f.name.lower().endswith(".jpg"):
                                            jpg.add(f"files/{g.name}/{s.name}/{e.name}/{f.name}")
    rep.sort(key=lambda r: r[2])
    return jpg, rep


def _files_dir(root: Path, what: str) -> Path:
    """``root/files`` (or `root` itself when it is the ``files`` folder)."""
    if (root / "files").is_dir():
        return root / "files"
    if root.name == "files" and root.is_dir():
        return root
    raise FileNotFoundError(f"{root}: no files/ folder (expected {what} under files/pXX/pSUBJECT/)")


def _reports(found: list[tuple[int, int, str]], root: Path, studies: pl.DataFrame, meta_studies: pl.DataFrame,
             acc: Accounting) -> pl.DataFrame:
    """Report files -> (study_id, report) of kept studies."""
    df = pl.DataFrame(found, schema={"subject_id": pl.Int64, "study_id": pl.Int64, "rel": pl.String}, orient="row")
    df = df.join(meta_studies.select("study_id", pl.col("patient_id").alias("__mpid")), on="study_id",
                 how="left", maintain_order="left")
    df = df.join(studies.select("study_id", pl.lit(True).alias("__kept")), on="study_id", how="left",
                 maintain_order="left")
    df = df.with_columns(reason((pl.col("__mpid").is_null(), "unknown_study"),
                                (pl.col("__mpid") != pl.col("subject_id"), "subject_mismatch"),
                                (pl.col("__kept").is_null(), "study_not_kept")))
    # Two files of one study and subject (a copy in another pXX folder): the first by path is kept.
    again = pl.col(R).is_null() & ~pl.col("study_id").is_first_distinct().over(pl.col(R).is_null())
    df = df.with_columns(pl.when(again).then(pl.lit("duplicate_report")).otherwise(pl.col(R)).alias(R))
    # Read only the candidates; a file that is empty or not UTF-8 is dropped (its study keeps no report).
    texts: list[str | None] = []
    why: list[str | None] = []
    for rel, r in df.select("rel", R).iter_rows():
        if r is not None:
            texts.append(None)
            why.append(r)
            continue
        data = (root / rel).read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            texts.append(None)
            why.append("invalid_utf8")
            continue
        texts.append(text if text.strip() else None)
        why.append(None if text.strip() else "empty_report")
    df = df.with_columns(pl.Series("report", texts, dtype=pl.String), pl.Series(R, why, dtype=pl.String))
    _count(acc, df)
    return df.filter(pl.col(R).is_null()).select("study_id", "report")


# ---- entry point ----------------------------------------------------------------------------------

def prepare(raw: str | Path, out: str | Path, mappings: Mapping[str, Any] | None = None,
            overwrite: bool = False, progress: bool = True, include_labs: bool = True,
            reports: str | Path | None = None, link_ehr: str | Path | None = None) -> CanonicalDataset:
    """Prepare a MIMIC-CXR-JPG release directory into the canonical dataset at `out`.

    Args:
        raw: the release root (``mimic-cxr-2.0.0-metadata.csv.gz``, ..., ``files/``); images
            paths in `images` are relative to it.
        out: output directory (written atomically; must not exist unless `overwrite`).
        mappings, include_labs: accepted for the common source signature; unused (no drugs, no
            labs in an imaging source).
        reports: the folder holding the MIMIC-CXR reports' ``files/`` when not under `raw`.
        link_ehr: a prepared EHR dataset (mimic3 / mimic4): link each study to the admission
            containing it (`medmm.data.link`).
    """
    from medmm.data.link import link_record, link_studies

    raw, out = Path(raw), Path(out)
    t_start = time.perf_counter()
    manifest = Manifest(source=SOURCE)
    log = Log(manifest, progress, width=26)
    extra: dict[str, Any] = {}
    manifest.extra["mimic_cxr"] = extra
    if progress:
        print(f"prepare {SOURCE}: {raw} -> {out}", flush=True)

    # Structure first: files, headers, folders; fail before any heavy work.
    files: dict[str, RawFile] = {}
    for name in RAW:
        rf = _open(raw, name)
        if rf is None:
            log.note(f"mimic-cxr-2.0.0-{name}: not found in {raw}; table skipped")
        elif rf.empty:
            log.note(f"{rf.path.name}: empty (0 bytes); table skipped")
        else:
            files[name] = rf
    if "metadata" not in files:
        raise ValueError(f"{raw}: the metadata table is empty")
    img_files = _files_dir(raw, "the JPG images")
    rep_root = Path(reports) if reports is not None else raw
    if reports is not None and not rep_root.is_dir():
        raise FileNotFoundError(f"reports directory {rep_root} does not exist")
    rep_files = _files_dir(rep_root, "the reports") if reports is not None else img_files
    ehr = CanonicalDataset(link_ehr) if link_ehr is not None else None

    inputs = {rf.path.name: rf.path for rf in files.values()}
    pool = ThreadPoolExecutor(max_workers=1)
    hashes = {k: pool.submit(sha256_file, p) for k, p in inputs.items()}
    acc = {rf.path.name.split(".csv")[0]: Accounting() for rf in files.values()}
    key = {name: rf.path.name.split(".csv")[0] for name, rf in files.items()}
    acc[REPORTS] = Accounting()
    manifest.accounting = acc
    try:
        with atomic_dir(out, overwrite=overwrite) as tmp:
            t = time.perf_counter()
            same = rep_files.resolve() == img_files.resolve()
            jpgs, found = _walk(img_files, jpgs=True, reports=same)
            if not same:
                _, found = _walk(rep_files, jpgs=False, reports=True)
            rep_base = rep_files.parent          # report paths are "files/..." relative to it
            log.say(f"files/: {len(jpgs):,} JPG files, {len(found):,} report files "
                    f"({time.perf_counter() - t:.1f}s)")

            t = time.perf_counter()
            meta = _metadata(files["metadata"], jpgs, acc[key["metadata"]], log, extra)
            log.table(key["metadata"], acc[key["metadata"]], t)
            meta_studies = meta.group_by("study_id").agg(pl.col("subject_id").first().alias("patient_id"))
            kept = meta.filter(pl.col(R).is_null())

            images = kept.select(pl.col("dicom_id").str.strip_chars().alias("image_id"), "study_id",
                                 pl.col("subject_id").alias("patient_id"),
                                 pl.when(pl.col("viewposition").str.strip_chars() != "")
                                 .then(pl.col("viewposition").str.strip_chars()).alias("view"), "path")
            if "split" in files:
                t = time.perf_counter()
                split = _split(files["split"], meta, acc[key["split"]])
                log.table(key["split"], acc[key["split"]], t)
                images = images.join(split, on="image_id", how="left", maintain_order="left")
            else:
                images = images.with_columns(NONE_STR.alias("split"))
            extra["images_without_split"] = int(images["split"].is_null().sum())

            studies = (kept.group_by("study_id")
                       .agg(pl.col("subject_id").first().alias("patient_id"),
                            pl.col("__time").min().alias("study_time"))
                       .sort("patient_id", "study_time", "study_id"))

            t = time.perf_counter()
            rep = _reports(found, rep_base, studies, meta_studies, acc[REPORTS])
            log.table(REPORTS, acc[REPORTS], t)
            studies = studies.join(rep, on="study_id", how="left", maintain_order="left")
            sections = [extract_sections(x) for x in studies["report"].to_list()]
            studies = studies.with_columns(
                pl.Series("findings", [s["findings"] for s in sections], dtype=pl.String),
                pl.Series("impression", [s["impression"] for s in sections], dtype=pl.String))
            n_no_report = int(studies["report"].is_null().sum())
            extra["studies_without_report"] = n_no_report
            extra["reports_with_findings"] = int(studies["findings"].is_not_null().sum())
            extra["reports_with_impression"] = int(studies["impression"].is_not_null().sum())
            if not found:
                log.note(f"no report files under {rep_files} (pass --reports DIR); every report is null")
            elif n_no_report:
                log.note(f"{n_no_report:,} of {studies.height:,} studies have no report; kept with a null report")

            label_schema = empty("studies").schema["chexpert"]
            for labeler in CXR_LABELERS:
                if labeler in files:
                    t = time.perf_counter()
                    lab = _labels(files[labeler], studies, meta_studies, acc[key[labeler]])
                    log.table(key[labeler], acc[key[labeler]], t)
                    studies = studies.join(lab.rename({"__labels": labeler}), on="study_id", how="left",
                                           maintain_order="left")
                else:
                    studies = studies.with_columns(pl.lit(None, dtype=label_schema).alias(labeler))
                extra[f"studies_without_{labeler}"] = int(studies[labeler].is_null().sum())

            studies = studies.with_columns(pl.lit(None, dtype=pl.Int64).alias("visit_id"))
            if ehr is not None:
                studies, counts = link_studies(studies, ehr.table("visits"))
                manifest.extra["link"] = link_record(ehr, counts)
                log.say(counts.line())

            manifest.tables["studies"] = write(studies, "studies", tmp)
            manifest.tables["images"] = write(images.sort("patient_id", "study_id", "image_id"), "images", tmp)
            # Every canonical table exists in every dataset; an imaging source fills only these two.
            for table in ("patients", "visits", "stays", "codes", "notes", "measurements", "events", "items"):
                manifest.tables[table] = write(empty(table), table, tmp)

            check_accounting(manifest, {"images": [key["metadata"]]})
            if manifest.tables["studies"] != images["study_id"].n_unique():
                raise RuntimeError("internal error: studies != distinct studies of the kept images")
            extra["report_files"] = {"files": len(found), "root": str(rep_base)}
            finish_manifest(manifest, tmp, hashes, inputs, extra, t_start)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if progress:
        print(f"prepared {out} in {time.perf_counter() - t_start:.1f}s", flush=True)
    return CanonicalDataset(out)
