"""Stages shared by the MIMIC sources (MIMIC-III, MIMIC-IV): row accounting, visit linking,
the drug-mapped prescriptions, ICD code tables, and streamed event tables.

Every stage follows one pattern. A raw table is scanned lazily (`medmm.data.sources.csv`); each
row gets a drop reason in the column ``__reason`` (null = kept) from an ordered list of rules
(`reason`); the kept rows go to the canonical table and the rows are counted by reason
(`account`), so that ``read = kept + sum(dropped)`` holds per input table by construction.

A reason that starts with "!" is not a drop but a structural error found during the pass (an
unparsable timestamp, an ICD version that is neither 9 nor 10, ...): `account` raises on it, with
a message that names the file, the column and the row, once the pass has finished.

Big tables (lab, chart, ICU event and note tables) are streamed: `sink_counted` writes the kept
rows with `sink_parquet` while a `Tally` inside the same stream counts every row by reason, so
each file is read once and memory stays bounded at hundreds of millions of rows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from medmm.data.schema import ATC3, Accounting, Manifest, conform
from medmm.data.sources.csv import BAD_TS, _READ_ERRORS, RawFile, check_unique, locate_error

R = "__reason"              # drop reason of a row (null = kept)
BAD = "!bad_timestamp"      # not a drop: a structural error, raised once the pass has finished
NONE = pl.lit(None, dtype=pl.String)
YEAR_US = 365.2425 * 86400e6


class Log:
    """Per-table progress lines and the manifest's plain-language notes."""

    def __init__(self, manifest: Manifest, progress: bool, width: int = 15):
        self.manifest, self.progress, self.width = manifest, progress, width

    def note(self, msg: str) -> None:
        self.manifest.notes.append(msg)
        if self.progress:
            print(f"  note: {msg}", flush=True)

    def say(self, msg: str) -> None:
        """A progress line that is not a manifest note (e.g. a mapping rate, stored elsewhere)."""
        if self.progress:
            print(f"  {msg}", flush=True)

    def table(self, name: str, acc: Accounting, t: float) -> None:
        if not self.progress:
            return
        drops = ", ".join(f"{k} {v:,}" for k, v in sorted(acc.dropped.items())) or "none"
        print(f"  {name:<{self.width}} read {acc.read:>11,}  kept {acc.kept:>11,}  dropped: {drops}  "
              f"({time.perf_counter() - t:.1f}s)", flush=True)


def reason(*rules: tuple[pl.Expr, str]) -> pl.Expr:
    """The first matching rule's reason, else null (kept). Null conditions count as false."""
    expr = None
    for cond, why in rules:
        expr = (pl.when(cond.fill_null(False)).then(pl.lit(why)) if expr is None
                else expr.when(cond.fill_null(False)).then(pl.lit(why)))
    return expr.otherwise(NONE).alias(R)


def account(rf: RawFile, acc: Accounting, counts: pl.DataFrame,
            locate: Mapping[str, Callable[[RawFile], Exception]] | None = None) -> None:
    """Fill `acc` from a (reason, len) frame of one input table; raise on structural errors.

    `locate` maps a structural reason ("!...") other than `BAD` to a function of the raw file
    that builds the error naming the file, column and row.
    """
    found = sorted(w for w in counts[R].to_list() if w is not None and w.startswith("!"))
    if BAD in found:
        raise locate_error(rf)
    if found:
        if found[0] not in (locate or {}):
            raise RuntimeError(f"internal error: {rf.path}: structural reason {found[0]!r} without a locator")
        raise locate[found[0]](rf)
    for why, n in counts.select(R, "len").iter_rows():
        acc.read += n
        if why is None:
            acc.kept += n
        else:
            acc.drop(why, n)


def collect(rfs: Sequence[RawFile], run: Callable[[], Any]) -> Any:
    """Run a Polars query over raw files; a reader failure becomes a ValueError naming the file,
    column and row (the first of `rfs` in which a bad value is found)."""
    try:
        return run()
    except _READ_ERRORS as e:
        errs = [locate_error(rf, e) for rf in rfs]
        located = [x for x in errs if "data row" in str(x) or "truncated" in str(x)]
        raise (located or errs)[0] from e


def first_row_with(rf: RawFile, lf: pl.LazyFrame, why: str, column: str, what: str) -> ValueError:
    """The error for the first row of `lf` (which carries ``__row`` and ``__reason``) whose
    reason is `why`: file, column as the file spells it, data row and the offending value."""
    hit = collect([rf], lambda: lf.filter(pl.col(R) == why).select("__row", column).head(1)
                  .collect(engine="streaming"))
    if hit.height == 0:
        return ValueError(f"{rf.path}: column {rf.column_label(column)}: {what}")
    row, value = hit.row(0)
    return ValueError(f"{rf.path}: column {rf.column_label(column)}, data row {row}: {value!r} {what}")


def link_visit(lf: pl.LazyFrame, visits: pl.DataFrame, hadm_required: bool = True
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


def read_small(rf: RawFile) -> pl.DataFrame:
    """Collect a small table whole (patients, admissions, ICU stays) with its data row numbers."""
    df = collect([rf], lambda: rf.scan().with_row_index("__row", offset=1).collect())
    if df[BAD_TS].any():
        raise locate_error(rf)
    return df


def write(df: pl.DataFrame | pl.LazyFrame, table: str, tmp: Path) -> int:
    out = conform(table, df).collect()
    out.write_parquet(tmp / f"{table}.parquet")
    return out.height


def rows(path: Path) -> int:
    return pl.scan_parquet(path).select(pl.len()).collect().item()


def write_core_tables(manifest: Manifest, tmp: Path, patients: pl.DataFrame, visits: pl.DataFrame,
                      stays: pl.DataFrame, codes: Sequence[pl.DataFrame]) -> None:
    """patients, visits, stays and codes (sorted by visit, system, recorded order) into `tmp`."""
    from medmm.data.schema import empty

    manifest.tables["patients"] = write(patients, "patients", tmp)
    manifest.tables["visits"] = write(visits, "visits", tmp)
    manifest.tables["stays"] = write(stays, "stays", tmp)
    all_codes = pl.concat(codes) if codes else empty("codes")
    manifest.tables["codes"] = write(conform("codes", all_codes).sort("visit_id", "system", "seq"), "codes", tmp)


def finish_manifest(manifest: Manifest, tmp: Path, hashes: Mapping[str, Any], inputs: Mapping[str, Path],
                    extra: dict[str, Any], t_start: float) -> None:
    """Input hashes and sizes, the elapsed seconds, and manifest.json: the last file a prepare writes."""
    import json

    manifest.inputs = {k: {"sha256": f.result(), "bytes": inputs[k].stat().st_size} for k, f in hashes.items()}
    extra["seconds"] = round(time.perf_counter() - t_start, 2)
    (tmp / "manifest.json").write_text(json.dumps(manifest.to_json(), indent=2) + "\n")


def check_accounting(m: Manifest, holds: Mapping[str, Sequence[str]]) -> None:
    """Every input row kept or dropped for a reason, and every output table's rows equal to the
    kept rows of the input tables it holds (`holds`: output table -> input table names; absent
    inputs count 0)."""
    bad = {k: a.to_json() for k, a in m.accounting.items() if not a.balanced}
    if bad:
        raise RuntimeError(f"internal error: row accounting does not balance: {bad}")
    a = m.accounting
    expect = {t: sum(a[n].kept for n in names if n in a) for t, names in holds.items()}
    wrong = {k: (m.tables[k], v) for k, v in expect.items() if m.tables[k] != v}
    if wrong:
        raise RuntimeError(f"internal error: output rows != kept input rows (table: (written, kept)): {wrong}")


def sex_expr(col: str = "gender") -> pl.Expr:
    """"F" / "M" (case and spaces ignored), else null."""
    sex = pl.col(col).str.strip_chars().str.to_uppercase()
    return pl.when(sex.is_in(["F", "M"])).then(sex)


def odd_sex(df: pl.DataFrame, col: str = "gender") -> int:
    """Rows whose non-empty gender is neither F nor M (stored as null sex)."""
    sex = pl.col(col).str.strip_chars().str.to_uppercase()
    return df.filter(sex.is_not_null() & ~sex.is_in(["F", "M"])).height


# ---- visits ---------------------------------------------------------------------------------------

def admissions_to_visits(rf: RawFile, patients: pl.DataFrame, acc: Accounting, log: Log, label: str) -> pl.DataFrame:
    """ADMISSIONS -> visits. ``age`` = (admittime - birth_time) in years of 365.2425 days."""
    df = read_small(rf)
    check_unique(rf, df, rf.table.key)
    df = df.join(patients.select(pl.col("patient_id").alias("subject_id"), "birth_time"),
                 on="subject_id", how="left", maintain_order="left")
    known = pl.col("subject_id").is_in(patients["patient_id"].implode())
    df = df.with_columns(reason(
        (~known, "unknown_patient"),
        (pl.col("admittime").is_null() | pl.col("dischtime").is_null(), "missing_time"),
        (pl.col("dischtime") < pl.col("admittime"), "discharge_before_admission"),
    ))
    account(rf, acc, df.group_by(R).len())
    died = (pl.col("hospital_expire_flag") == 1).fill_null(pl.col("deathtime").is_not_null())
    out = df.filter(pl.col(R).is_null()).select(
        pl.col("hadm_id").alias("visit_id"),
        pl.col("subject_id").alias("patient_id"),
        pl.col("admittime").alias("admit_time"),
        pl.col("dischtime").alias("discharge_time"),
        pl.col("deathtime").alias("death_time"),
        pl.col("admission_type"),
        died.alias("died_in_hospital"),
        ((pl.col("admittime") - pl.col("birth_time")).dt.total_microseconds() / YEAR_US).alias("age"),
    ).sort("patient_id", "admit_time", "visit_id")
    shifted = out.filter(pl.col("age") > 120).height
    if shifted:
        log.note(f"{label}: {shifted} visits of patients older than 89 carry MIMIC's shifted "
                 f"age (~300 years), stored as computed")
    return out


# ---- ICD codes ------------------------------------------------------------------------------------

def icd_codes(rf: RawFile, lf: pl.LazyFrame, visits: pl.DataFrame, acc: Accounting, extra: dict[str, Any],
              icd9_system: str, rules: Sequence[tuple[pl.Expr, str]] = (), time_col: str | None = None,
              structural: Mapping[str, tuple[str, str]] | None = None) -> pl.DataFrame:
    """ICD code rows -> kept codes rows, in SEQ_NUM order per visit and system; fills `acc`.

    `lf` is the raw scan with ``__row`` plus the columns ``system`` (one of the ICD systems of
    `medmm.data.schema`, per row), ``code`` (normalised, no dot), ``source_value`` (as read) and
    ``__status`` (ICD-9 v32 status "known" / "retired" / "unknown"; null for other systems).
    `rules` come first; a structural one (reason "!...") is an error built from
    ``structural[reason] = (column, what)``, naming the file, the column and the first such row.
    A repeated (visit, system, code) keeps its first row ("duplicate_code"). Counts of kept
    `icd9_system` codes by status go to ``extra["icd9_status"][icd9_system]``.
    """
    structural = dict(structural or {})
    lf, link = link_visit(lf, visits)
    lf = lf.with_columns(reason(
        (pl.col(BAD_TS), BAD),
        *rules,
        *link,
        (pl.col("code").is_null() | (pl.col("code") == ""), "missing_code"),
        (pl.col("__status") == "unknown", "unknown_icd9"),
    ))
    cols = ["__row", "hadm_id", "subject_id", "seq_num", "system", "code", "source_value", "__status",
            *([time_col] if time_col else []), *{c for c, _ in structural.values()}, R]
    df = collect([rf], lambda: lf.select(list(dict.fromkeys(cols))).collect())
    for why, (col, what) in structural.items():
        bad = df.filter(pl.col(R) == why)
        if bad.height:
            r = bad.row(0, named=True)
            raise ValueError(f"{rf.path}: column {rf.column_label(col)}, data row {r['__row']}: "
                             f"{r[col]!r} {what}")
    kept = (df.filter(pl.col(R).is_null())
            .sort("hadm_id", "seq_num", "__row", nulls_last=True)
            .with_columns(pl.struct("hadm_id", "system", "code").is_first_distinct().alias("__first")))
    dup = kept.filter(~pl.col("__first")).height
    kept = kept.filter(pl.col("__first"))
    account(rf, acc, df.group_by(R).len())
    acc.kept -= dup
    acc.drop("duplicate_code", dup)
    k = kept.filter(pl.col("system") == icd9_system)
    extra.setdefault("icd9_status", {})[icd9_system] = {
        s: k.filter(pl.col("__status") == s).height for s in ("known", "retired")}
    return kept.select(
        pl.col("hadm_id").alias("visit_id"),
        pl.col("subject_id").alias("patient_id"),
        "system",
        "code",
        pl.int_range(pl.len(), dtype=pl.Int32).over("hadm_id", "system").alias("seq"),
        (pl.col(time_col) if time_col else pl.lit(None, dtype=pl.Datetime("us"))).alias("time"),
        "source_value",
    )


# ---- prescriptions --------------------------------------------------------------------------------

def drug_mapper(mappings: Mapping[str, Any]):
    """The `DrugMapper` for `mappings` (keys ``dir``, ``ndc_rxnorm``, ``rxnorm_atc``, ``drug_atc``);
    None if no file is given."""
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


def prescriptions_to_codes(rf: RawFile, visits: pl.DataFrame, mapper, acc: Accounting, log: Log,
                  extra: dict[str, Any], label: str, time_col: str) -> pl.DataFrame:
    """Prescriptions -> codes rows of system "atc3", in `time_col` order per visit.

    Every row is mapped to ATC level 3 by `mapper` (NDC route first, drug name second); a
    repeated (visit, ATC-3) keeps its first prescription. The route rates go to
    ``extra["drug_mapping"]`` (`drug_mapping_line` says them).
    """
    lf = rf.scan().with_row_index("__row", offset=1)
    if mapper is None:
        lf = lf.with_columns(NONE.alias("atc3"), NONE.alias("atc_route"))
    else:
        lf = mapper.map_frame(lf, ndc_col="ndc", drug_col="drug")
    lf, rules = link_visit(lf, visits)
    lf = lf.with_columns(reason((pl.col(BAD_TS), BAD), *rules, (pl.col("atc3").is_null(), "unmapped_drug")))
    source_value = pl.when(pl.col("atc_route") == "ndc").then(pl.col("ndc")).otherwise(pl.col("drug"))
    df = collect([rf], lambda: lf.select("__row", "hadm_id", "subject_id", pl.col(time_col).alias("__time"),
                                         "atc3", "atc_route", source_value.alias("source_value"), R).collect())
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
        log.note(f"{label}: no drug mapping files given (--mappings); all {n:,} rows "
                 f"dropped as unmapped_drug")
    kept = (df.filter(pl.col(R).is_null())
            .sort("hadm_id", "__time", "__row", nulls_last=True)
            .with_columns(pl.struct("hadm_id", "atc3").is_first_distinct().alias("__first")))
    dup = kept.filter(~pl.col("__first")).height
    kept = kept.filter(pl.col("__first"))
    account(rf, acc, df.group_by(R).len())
    acc.kept -= dup
    acc.drop("duplicate_code", dup)
    return kept.select(
        pl.col("hadm_id").alias("visit_id"),
        pl.col("subject_id").alias("patient_id"),
        pl.lit(ATC3).alias("system"),
        pl.col("atc3").alias("code"),
        pl.int_range(pl.len(), dtype=pl.Int32).over("hadm_id").alias("seq"),
        pl.col("__time").alias("time"),
        "source_value",
    )


def drug_mapping_line(dm: Mapping[str, Any]) -> str:
    return (f"drug mapping: {dm['mapped_fraction']:.1%} of prescriptions mapped to ATC-3 (NDC route "
            f"{dm['ndc_fraction']:.1%}, name route {dm['name_fraction']:.1%})")


# ---- notes ----------------------------------------------------------------------------------------

def clean_note_text(col: str = "text") -> pl.Expr:
    """ClinicalBERT's cleaning, length-preserving: lower-case, each \\r / \\n -> one space.

    U+0130 (capital I with dot) is the one character whose lower-case form has two code points;
    it is mapped to "i" first so that every character offset of the raw note stays valid.
    """
    return (pl.col(col).str.replace_all("\u0130", "i", literal=True)
            .str.to_lowercase().str.replace_all(r"[\r\n]", " "))


# ---- streamed event tables ------------------------------------------------------------------------

class Tally:
    """Counts the rows of a stream by drop reason as they pass through it (`LazyFrame.map_batches`).

    Counting inside the one stream that is sunk to Parquet, rather than in a second query over
    the same scan, keeps memory flat: Polars shares a scan between queries of one `collect_all`,
    and where the sink takes its inputs one after the other (a concat of lab then chart rows)
    the shared scan buffers every row the counting query has read ahead of the sink -- memory
    grew with the chart table (1.4 GB at 15 M rows, measured).

    `keep`: columns of every row (kept or dropped) to collect as well, e.g. ids to check for
    repeats after the pass. Polars may call a tally from several threads: updates take a lock.
    """

    def __init__(self, by: str | None = R, keep: Sequence[str] = ()):
        self.by, self.keep = by, list(keep)
        self.counts: dict[str | None, int] = {}
        self.kept: list[pl.DataFrame] = []
        self._lock = threading.Lock()

    def __call__(self, df: pl.DataFrame) -> pl.DataFrame:
        counts = df.group_by(self.by).len().iter_rows() if self.by else [(None, df.height)]
        extra = df.select(self.keep) if self.keep else None
        with self._lock:
            for why, n in counts:
                self.counts[why] = self.counts.get(why, 0) + n
            if extra is not None:
                self.kept.append(extra)
        return df

    def watch(self, lf: pl.LazyFrame) -> pl.LazyFrame:
        """`lf`, counted by this tally as it streams (nothing is pushed down past the count)."""
        return lf.map_batches(self, streamable=True, schema=lf.collect_schema())

    @property
    def rows(self) -> int:
        return sum(self.counts.values())

    def frame(self) -> pl.DataFrame:
        """The counts as a (reason, len) frame, for `account`."""
        return pl.DataFrame({R: list(self.counts), "len": list(self.counts.values())},
                            schema={R: pl.String, "len": pl.UInt32})

    def collected(self) -> pl.DataFrame:
        return pl.concat(self.kept) if self.kept else pl.DataFrame()


@dataclass
class Stream:
    """One raw table's rows on their way into a streamed canonical table.

    Args:
        rf: the raw file.
        rows: canonical rows (plus helper columns) with the drop reason ``__reason``.
        prefilter: (tally, reason) when `rows` was built from a pre-filtered scan: the tally
            counted every raw row before the filter, and the rows it filtered out are counted
            under `reason` (e.g. chart items not selected, whose timestamps are never parsed).
        keep: columns of every row to collect during the pass (`Tally.keep`).
    """

    rf: RawFile
    rows: pl.LazyFrame
    prefilter: tuple[Tally, str] | None = None
    keep: Sequence[str] = ()


def measurement_rows(rf: RawFile, visits: pl.DataFrame, patients: pl.DataFrame, source: str,
                     stay_col: str | None = None, items: Sequence[int] | None = None,
                     error_col: str | None = None) -> Stream:
    """A lab or chart events table -> measurement rows with a drop reason.

    Rows without hadm_id (outpatient labs) are kept with a null visit_id. With `items`, rows of
    other item ids are only counted ("item_not_selected"; their timestamps are not parsed);
    `error_col` = 1 drops a row ("iserror"). A null or NaN valuenum is "non_numeric" (a text
    result: MIMIC fills valuenum only when the value is a number).
    """
    prefilter = None
    if items is not None:
        everything = Tally(by=None)
        lf = rf.parse_timestamps(everything.watch(rf.scan_strings()).filter(pl.col("itemid").is_in(list(items))))
        prefilter = (everything, "item_not_selected")
    else:
        lf = rf.scan()
    rules: list[tuple[pl.Expr, str]] = [(pl.col(BAD_TS), BAD)]
    if error_col is not None:
        rules.append((pl.col(error_col) == 1, "iserror"))
    lf, link = link_visit(lf, visits, hadm_required=False)
    rules += [
        (~pl.col("subject_id").is_in(patients["patient_id"].implode()), "unknown_patient"),
        *link,
        (pl.col("charttime").is_null(), "missing_time"),
        (pl.col("valuenum").is_null() | pl.col("valuenum").is_nan(), "non_numeric"),
    ]
    out = lf.with_columns(reason(*rules)).select(
        pl.col("subject_id").alias("patient_id"),
        pl.col("hadm_id").alias("visit_id"),
        (pl.col(stay_col) if stay_col else pl.lit(None, dtype=pl.Int64)).alias("stay_id"),
        pl.col("charttime").alias("time"),
        pl.col("itemid").alias("item_id"),
        pl.lit(source).alias("source"),
        pl.col("valuenum").alias("value"),
        pl.col("valueuom").alias("unit"),
        R,
    )
    return Stream(rf, out, prefilter)


def event_rows(rf: RawFile, source: str, cols: Mapping[str, str | None], visits: pl.DataFrame,
               patients: pl.DataFrame, stays: pl.DataFrame, stay_col: str = "stay_id",
               error_col: str | None = None) -> Stream:
    """An ICU event table (inputs, procedures, outputs, date-times) -> events rows with a drop reason.

    `source` is the `events.source` value; `cols` maps each canonical column after ``source``
    (start_time ... status, see `medmm.data.schema`) to its raw column, or None for null. Every
    row is kept whatever its status (stored as ``status``, e.g. "Rewritten", for the consumer to
    skip); rows without hadm_id or stay are kept with null ids. `error_col` = 1 drops a row
    ("iserror").
    """
    def col(name: str) -> pl.Expr:
        return pl.col(cols[name]) if cols[name] else pl.lit(None)

    lf, link = link_visit(rf.scan(), visits, hadm_required=False)
    start, end, stay = col("start_time"), col("end_time"), pl.col(stay_col)
    lf = lf.with_columns(reason(
        (pl.col(BAD_TS), BAD),
        *([(pl.col(error_col) == 1, "iserror")] if error_col else []),
        (~pl.col("subject_id").is_in(patients["patient_id"].implode()), "unknown_patient"),
        *link,
        (stay.is_not_null() & ~stay.is_in(stays["stay_id"].implode()), "unknown_stay"),
        (start.is_null(), "missing_time"),
        (end < start, "end_before_start"),
    ))
    return Stream(rf, lf.select(
        pl.col("subject_id").alias("patient_id"),
        pl.col("hadm_id").alias("visit_id"),
        stay.alias("stay_id"),
        pl.col("itemid").alias("item_id"),
        pl.lit(source).alias("source"),
        *[col(c).alias(c) for c in ("start_time", "end_time", "value", "unit", "rate", "rate_unit",
                                     "value_time", "order_id", "status")],
        R,
    ))


def sink_counted(table: str, path: Path, streams: Sequence[Stream], accs: Sequence[Accounting],
                 locate: Mapping[str, Callable[[RawFile], Exception]] | None = None) -> list[Tally]:
    """Stream the kept rows of `streams` into canonical `table` at `path`, in order, counting every
    raw row by reason on the way (one pass over each file, memory flat); fill `accs`.

    Returns each stream's tally (with the `Stream.keep` columns it collected).
    """
    tallies = [Tally(keep=s.keep) for s in streams]
    kept = pl.concat([conform(table, t.watch(s.rows).filter(pl.col(R).is_null())) for s, t in zip(streams, tallies)])
    collect([s.rf for s in streams], lambda: kept.sink_parquet(path, engine="streaming"))
    for s, t, acc in zip(streams, tallies, accs):
        counts = t.frame()
        if s.prefilter is not None:
            before, why = s.prefilter
            counts = pl.concat([counts, pl.DataFrame({R: [why], "len": [before.rows - t.rows]},
                                                     schema=counts.schema)]).filter(pl.col("len") > 0)
        account(s.rf, acc, counts, locate)
    return tallies
