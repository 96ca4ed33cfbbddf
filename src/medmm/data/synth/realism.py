"""How real the synthetic data looks: one code path measures a raw MIMIC-III directory, real or synthetic.

    stats = mimic3_stats(Path("out/raw"))         # synthetic (or real) MIMIC-III v1.4 files
    print(render_table(stats, targets=TARGETS))   # real MIMIC-III demo | synthetic | target
    out_of_range(stats)                           # [] when every target is met

`MIMIC3_DEMO` and `MTSAMPLES_DISCHARGE` hold what `mimic3_stats` and `mtsamples_note_stats` compute
on the shared data (MIMIC-III Clinical Database Demo v1.4, MTSamples), and `MIMIC4_DEMO` what the
same code computes on the MIMIC-IV demo (`mimic4_stats`: the MIMIC-IV tables read as their MIMIC-III
counterparts, `MIMIC4_TABLES`; diagnosis codes keyed by ICD version, categories within it), so that the data card can
print real beside synthetic without the shared data at run time; tests/test_realism.py recomputes
them. Every file is read with every column as String (the real files mix types within a column) and
only the needed columns are parsed and cast.

Definitions (an "admission" is a HADM_ID of ADMISSIONS; a "patient" a SUBJECT_ID of ADMISSIONS):

* dx codes: DIAGNOSES_ICD.ICD9_CODE, null rows dropped. A code's category is its first 3
  characters, its first 4 for E-codes (E800-E999). The top-10 share is the share of (non-null)
  diagnosis rows whose category is one of the 10 most frequent categories by rows.
* per-admission medians: rows of the table per admission, over all admissions (an admission with
  no rows counts 0; rows whose HADM_ID is null or not in ADMISSIONS are not counted).
* distinct drugs: PRESCRIPTIONS.DRUG lower-cased ("Heparin" and "heparin" are one drug).
* 30-day readmission: an alive discharge is an admission with HOSPITAL_EXPIRE_FLAG 0 (DEATHTIME
  null where the flag is null). It is readmitted when the same patient's next admission (by
  ADMITTIME) starts at most 30 days after this DISCHTIME. Elective or planned next admissions are
  not excluded; an overlapping next admission (negative gap) counts. Share of alive discharges.
* non-numeric lab values: LABEVENTS rows with a VALUE (not null, not blank) and a null or blank
  VALUENUM, as a share of all LABEVENTS rows; rows without HADM_ID likewise of all rows.
* raw tables: files directly in the directory named *.csv.gz or *.csv (a table is counted once).
* notes: see `note_stats` and `section_headers`.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from pathlib import Path

import polars as pl

_TS = "%Y-%m-%d %H:%M:%S"
NOTE_KEYS = ("notes_measured", "note_words_median", "note_vocabulary", "note_header_orders")

# A vocabulary word: a run of letters of the lower-cased text (numbers, dates and doses are not words).
_WORD = re.compile(r"[a-z]+")
# A section header, either layout, ending with ':' (matched left to right, so order is text order):
#   line-start form (MIMIC): a line that starts, after spaces or tabs, with a letter followed by
#     1-60 of letters, spaces, / & ( ) , - ("Chief Complaint:", "Discharge Medications:");
#   upper-case form (MTSamples, anywhere in a line): a capital letter at a word boundary followed
#     by 2-60 of capitals, spaces, / & ( ) , - ("HISTORY OF PRESENT ILLNESS: ...").
_HEADER = re.compile(
    r"(?m)(?:^[ \t]*(?P<line>[A-Za-z][A-Za-z /&(),-]{1,60})|\b(?P<caps>[A-Z][A-Z /&(),-]{2,60})):")


_LINE_HEADER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz /&()-")


def line_headers(text: str) -> tuple[str, ...]:
    """The issue's plain rule, spelling kept: lines that start with a capitalised phrase (letters,
    spaces, / & ( ) -) followed by ':'. Used by the note writer's tests and benchmark."""
    out = []
    for line in text.split("\n"):
        i = line.find(":")
        if i > 0 and line[0].isupper() and set(line[:i]) <= _LINE_HEADER_CHARS:
            out.append(line[:i])
    return tuple(out)


def section_headers(text: str) -> list[str]:
    """The section headers of a note in text order, normalised (upper-cased, spaces collapsed,
    trailing ", " dropped) so that "Chief  Complaint" and "CHIEF COMPLAINT" are one header.

    >>> section_headers("Chief Complaint:\\nfever\\nHISTORY OF PRESENT ILLNESS: 3 days. PLAN: rest")
    ['CHIEF COMPLAINT', 'HISTORY OF PRESENT ILLNESS', 'PLAN']
    """
    out = []
    for m in _HEADER.finditer(text):
        h = " ".join((m.group("line") or m.group("caps")).split()).strip(" ,").upper()
        if h:
            out.append(h)
    return out


def note_stats(texts: Sequence[str]) -> dict[str, float | int | None]:
    """Statistics of a list of notes (both corpora go through this function).

    notes_measured: len(texts); note_words_median: median whitespace-separated tokens per note;
    note_vocabulary: distinct `[a-z]+` tokens of the lower-cased notes, all notes together;
    note_header_orders: distinct tuples `section_headers(note)` (a note without headers is the
    empty tuple). With no notes, all but notes_measured are None.
    """
    if not texts:
        return {"notes_measured": 0, "note_words_median": None, "note_vocabulary": None, "note_header_orders": None}
    vocab: set[str] = set()
    for t in texts:
        vocab.update(_WORD.findall(t.lower()))
    return {
        "notes_measured": len(texts),
        "note_words_median": float(statistics.median(len(t.split()) for t in texts)),
        "note_vocabulary": len(vocab),
        "note_header_orders": len({tuple(section_headers(t)) for t in texts}),
    }


# MIMIC-IV: where each MIMIC-III table the statistics read lives, and its columns' MIMIC-III names.
MIMIC4_TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "ADMISSIONS": ("hosp/admissions", {}),
    "DIAGNOSES_ICD": ("hosp/diagnoses_icd", {"ICD_CODE": "ICD9_CODE", "ICD_VERSION": "ICD_VERSION"}),
    "PROCEDURES_ICD": ("hosp/procedures_icd", {"ICD_CODE": "ICD9_CODE", "ICD_VERSION": "ICD_VERSION"}),
    "PRESCRIPTIONS": ("hosp/prescriptions", {}),
    "LABEVENTS": ("hosp/labevents", {}),
    "ICUSTAYS": ("icu/icustays", {}),
    "NOTEEVENTS": ("note/discharge", {"NOTE_ID": "ROW_ID"}),
}
LAYOUTS = ("mimic3", "mimic4")


def _table_path(root: Path, name: str) -> Path:
    for ext in (".csv.gz", ".csv"):
        if (root / f"{name}{ext}").is_file():
            return root / f"{name}{ext}"
    raise FileNotFoundError(f"{root} has no {name}.csv.gz or {name}.csv (a raw MIMIC directory?)")


def _norm_col(name: str) -> str:
    # The demo's NOTEEVENTS header is lower-case (and badly quoted); released tables are upper-case.
    return name.strip().strip('"').strip().upper()


def _scan(root: Path, name: str, cols: Sequence[str], layout: str = "mimic3") -> pl.LazyFrame:
    """The named columns (MIMIC-III names) of a raw table of `layout`, all as String."""
    renames: dict[str, str] = {}
    if layout == "mimic4":
        name, renames = MIMIC4_TABLES[name]
    lf = pl.scan_csv(_table_path(root, name), infer_schema=False)
    canonical = {n: renames.get(_norm_col(n), _norm_col(n)) for n in lf.collect_schema().names()}
    lf = lf.rename({n: c for n, c in canonical.items() if c != n})
    missing = [c for c in cols if c not in canonical.values()]
    if missing:
        raise KeyError(f"{name}: no column(s) {missing}; found {list(canonical)}")
    return lf.select(cols)


def _present(col: str) -> pl.Expr:
    return pl.col(col).is_not_null() & (pl.col(col).str.strip_chars() != "")


def _share(num: int | float, den: int | float) -> float | None:
    return float(num) / den if den else None


def _median_per_admission(hadm: pl.DataFrame, ids: pl.Series) -> float | None:
    """Median of rows per admission of `hadm` (a frame with HADM_ID), zero-row admissions as 0."""
    n = hadm.lazy().drop_nulls("HADM_ID").group_by("HADM_ID").agg(pl.len().alias("n"))
    out = pl.LazyFrame({"HADM_ID": ids}).join(n, on="HADM_ID", how="left")
    return out.select(pl.col("n").fill_null(0).median()).collect().item()


def _discharge_notes(root: Path, n_notes: int, layout: str = "mimic3") -> list[str]:
    """TEXT of the first n_notes 'Discharge summary' notes of NOTEEVENTS in ROW_ID order (MIMIC-IV:
    note/discharge in note_id order; none when the note module is absent)."""
    if layout == "mimic4":
        try:
            lf = _scan(root, "NOTEEVENTS", ["ROW_ID", "TEXT"], layout)
        except FileNotFoundError:
            return []
        return (lf.select("ROW_ID", pl.col("TEXT").fill_null("")).sort("ROW_ID").head(n_notes)
                .collect()["TEXT"].to_list())
    try:
        lf = _scan(root, "NOTEEVENTS", ["ROW_ID", "CATEGORY", "TEXT"])
    except KeyError:
        # The real demo ships NOTEEVENTS as a (malformed) header and no rows: nothing to measure.
        if pl.scan_csv(_table_path(root, "NOTEEVENTS"), infer_schema=False).select(pl.len()).collect().item() == 0:
            return []
        raise
    return (lf.filter(pl.col("CATEGORY") == "Discharge summary")
            .select(pl.col("ROW_ID").cast(pl.Int64), pl.col("TEXT").fill_null(""))
            .sort("ROW_ID").head(n_notes).collect()["TEXT"].to_list())


def mimic3_stats(root: Path, n_notes: int = 100) -> dict[str, float | int | None]:
    """Realism statistics of a raw MIMIC-III v1.4 directory (definitions in the module docstring).

    Needs ADMISSIONS, DIAGNOSES_ICD, PROCEDURES_ICD, PRESCRIPTIONS, LABEVENTS, ICUSTAYS and
    NOTEEVENTS. Shares are fractions in [0, 1]; a share or ratio with an empty denominator is None.
    """
    return realism_stats(root, "mimic3", n_notes)


def mimic4_stats(root: Path, n_notes: int = 100) -> dict[str, float | int | None]:
    """`mimic3_stats` of a raw MIMIC-IV release directory (hosp/, icu/, note/ when present): the
    same code over the same tables (`MIMIC4_TABLES`); ICD-9 and ICD-10 codes counted apart."""
    return realism_stats(root, "mimic4", n_notes)


def realism_stats(root: Path, layout: str = "mimic3", n_notes: int = 100) -> dict[str, float | int | None]:
    """The realism statistics of a raw directory of `layout` ("mimic3" or "mimic4")."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    root = Path(root)
    m4 = layout == "mimic4"

    def scan(name: str, cols: list[str]) -> pl.LazyFrame:
        return _scan(root, name, cols, layout)

    def icd(name: str) -> pl.DataFrame:
        lf = scan(name, ["HADM_ID", "ICD9_CODE"] + (["ICD_VERSION"] if m4 else []))
        return lf.select(pl.col("HADM_ID").cast(pl.Int64), "ICD9_CODE",
                         (pl.col("ICD_VERSION") if m4 else pl.lit("9")).alias("VERSION")).collect()

    adm = scan("ADMISSIONS", ["SUBJECT_ID", "HADM_ID", "ADMITTIME", "DISCHTIME", "DEATHTIME",
                              "HOSPITAL_EXPIRE_FLAG"]).select(
        pl.col("SUBJECT_ID", "HADM_ID").cast(pl.Int64),
        pl.col("ADMITTIME", "DISCHTIME").str.to_datetime(_TS),
        pl.col("DEATHTIME").is_null().alias("no_deathtime"),
        pl.col("HOSPITAL_EXPIRE_FLAG").cast(pl.Int64),
    ).collect()
    ids = adm["HADM_ID"].unique()
    dx, px = icd("DIAGNOSES_ICD"), icd("PROCEDURES_ICD")
    rx = scan("PRESCRIPTIONS", ["HADM_ID", "DRUG"]).select(
        pl.col("HADM_ID").cast(pl.Int64), pl.col("DRUG").str.to_lowercase()).collect()
    # LABEVENTS is the big one (~3 M rows at 2,000 synthetic patients): keep three narrow columns.
    lab = scan("LABEVENTS", ["HADM_ID", "ITEMID", "VALUE", "VALUENUM"]).select(
        pl.col("HADM_ID").cast(pl.Int64), pl.col("ITEMID").cast(pl.Int64),
        (_present("VALUE") & ~_present("VALUENUM")).alias("non_numeric"),
    ).collect()
    icu = scan("ICUSTAYS", ["HADM_ID"]).select(pl.col("HADM_ID").cast(pl.Int64)).collect()

    codes = dx.drop_nulls("ICD9_CODE")
    per_code = codes.group_by("VERSION", "ICD9_CODE").agg(pl.col("HADM_ID").n_unique().alias("n_adm"))
    e_code = (pl.col("VERSION") == "9") & pl.col("ICD9_CODE").str.starts_with("E")
    category = pl.col("VERSION") + ":" + (pl.when(e_code).then(pl.col("ICD9_CODE").str.slice(0, 4))
                                          .otherwise(pl.col("ICD9_CODE").str.slice(0, 3)))
    by_cat = codes.group_by(category.alias("cat")).len().sort(["len", "cat"], descending=[True, False])

    icu_per = pl.DataFrame({"HADM_ID": ids}).join(icu.group_by("HADM_ID").len(), on="HADM_ID", how="left")
    adm_per = adm.group_by("SUBJECT_ID").len()

    alive = pl.when(pl.col("HOSPITAL_EXPIRE_FLAG").is_not_null()).then(pl.col("HOSPITAL_EXPIRE_FLAG") == 0) \
        .otherwise(pl.col("no_deathtime"))
    next_admit = pl.col("ADMITTIME").shift(-1).over("SUBJECT_ID")
    readmit = (adm.sort(["SUBJECT_ID", "ADMITTIME", "HADM_ID"])
               .with_columns(((next_admit - pl.col("DISCHTIME")) <= pl.duration(days=30)).fill_null(False)
                             .alias("readmit"))
               .filter(alive))

    stats: dict[str, float | int | None] = {
        "patients": adm["SUBJECT_ID"].n_unique(),
        "admissions": len(ids),
        "dx_codes_distinct": per_code.height,
        "dx_codes_one_admission_share": _share((per_code["n_adm"] == 1).sum(), per_code.height),
        "dx_top10_category_share": _share(by_cat["len"].head(10).sum(), codes.height),
        "dx_per_admission_median": _median_per_admission(dx, ids),
        "procedures_per_admission_median": _median_per_admission(px, ids),
        "prescriptions_per_admission_median": _median_per_admission(rx, ids),
        "labevents_per_admission_median": _median_per_admission(lab, ids),
        "drugs_distinct": rx["DRUG"].drop_nulls().n_unique(),
        "lab_items_distinct": lab["ITEMID"].drop_nulls().n_unique(),
        "procedure_codes_distinct": px.drop_nulls("ICD9_CODE").select("VERSION", "ICD9_CODE").n_unique(),
        "icustays_per_admission": _share(icu.height, len(ids)),
        "admissions_multi_icu_share": _share((icu_per["len"].fill_null(0) >= 2).sum(), len(ids)),
        "admissions_per_patient": _share(adm.height, adm_per.height),
        "patients_multi_admission_share": _share((adm_per["len"] >= 2).sum(), adm_per.height),
        "readmission_30d_share": _share(readmit["readmit"].sum(), readmit.height),
        "lab_non_numeric_share": _share(lab["non_numeric"].sum(), lab.height),
        "lab_without_hadm_share": _share(lab["HADM_ID"].null_count(), lab.height),
        "raw_tables": sum(len({p.name.removesuffix(".gz").removesuffix(".csv") for p in d.iterdir()
                               if p.is_file() and p.name.endswith((".csv.gz", ".csv"))})
                          for d in ([root / m for m in ("hosp", "icu", "note") if (root / m).is_dir()] if m4
                                    else [root])),
    }
    stats.update(note_stats(_discharge_notes(root, n_notes, layout)))
    return stats


def mtsamples_note_stats(path: Path, n_notes: int = 100) -> dict[str, float | int | None]:
    """`note_stats` of the first n_notes MTSamples discharge summaries (medical_specialty
    containing 'Discharge Summary', with a transcription), in note_id order."""
    texts = (pl.scan_csv(path, infer_schema=False)
             .filter(pl.col("medical_specialty").str.contains("Discharge Summary", literal=True)
                     & pl.col("transcription").is_not_null())
             .select(pl.col("note_id").cast(pl.Int64), "transcription")
             .sort("note_id").head(n_notes).collect()["transcription"].to_list())
    return note_stats(texts)


# What mimic3_stats computes on MIMIC-III Clinical Database Demo v1.4 as shared (floats to 6
# decimals; its NOTEEVENTS has no rows; CHARTEVENTS is not in the shared copy, hence 25 tables of
# the release's 26) and mtsamples_note_stats on MTSamples (n_notes=100 of its 108 discharge
# summaries; all 108 give 363.5 words, vocabulary 4,240 and 106 header orders).
MIMIC3_DEMO: dict[str, float | int | None] = {
    "patients": 100,
    "admissions": 129,
    "dx_codes_distinct": 581,
    "dx_codes_one_admission_share": 0.554217,
    "dx_top10_category_share": 0.303237,
    "dx_per_admission_median": 12.0,
    "procedures_per_admission_median": 3.0,
    "prescriptions_per_admission_median": 64.0,
    "labevents_per_admission_median": 251.0,
    "drugs_distinct": 573,
    "lab_items_distinct": 439,
    "procedure_codes_distinct": 164,
    "icustays_per_admission": 1.054264,
    "admissions_multi_icu_share": 0.046512,
    "admissions_per_patient": 1.29,
    "patients_multi_admission_share": 0.14,
    "readmission_30d_share": 0.123596,
    "lab_non_numeric_share": 0.118884,
    "lab_without_hadm_share": 0.187475,
    "raw_tables": 25,
    "notes_measured": 0,
    "note_words_median": None,
    "note_vocabulary": None,
    "note_header_orders": None,
}
# What mimic4_stats computes on the MIMIC-IV Clinical Database Demo as shared (hosp/ 22 + icu/ 8
# tables; no note/ module, so no notes; ICD-9 and ICD-10 codes counted apart).
MIMIC4_DEMO: dict[str, float | int | None] = {
    "patients": 100,
    "admissions": 275,
    "dx_codes_distinct": 1474,
    "dx_codes_one_admission_share": 0.54749,
    "dx_top10_category_share": 0.153351,
    "dx_per_admission_median": 14.0,
    "procedures_per_admission_median": 1.0,
    "prescriptions_per_admission_median": 48.0,
    "labevents_per_admission_median": 163.0,
    "drugs_distinct": 604,
    "lab_items_distinct": 498,
    "procedure_codes_distinct": 352,
    "icustays_per_admission": 0.509091,
    "admissions_multi_icu_share": 0.032727,
    "admissions_per_patient": 2.75,
    "patients_multi_admission_share": 0.48,
    "readmission_30d_share": 0.203846,
    "lab_non_numeric_share": 0.026855,
    "lab_without_hadm_share": 0.263815,
    "raw_tables": 30,
    "notes_measured": 0,
    "note_words_median": None,
    "note_vocabulary": None,
    "note_header_orders": None,
}
MTSAMPLES_DISCHARGE: dict[str, float | int | None] = {
    "notes_measured": 100,
    "note_words_median": 363.5,
    "note_vocabulary": 4092,
    "note_header_orders": 99,
}

# Acceptance ranges of the synthetic data at 2,000 patients: statistic -> (low, high), None = open.
TARGETS: dict[str, tuple[float | None, float | None]] = {
    "dx_codes_distinct": (500, None),
    "dx_codes_one_admission_share": (0.25, None),
    "dx_per_admission_median": (8, 16),
    "procedures_per_admission_median": (2, 4),
    "prescriptions_per_admission_median": (35, 100),
    "labevents_per_admission_median": (150, 450),
    "drugs_distinct": (250, None),
    "lab_items_distinct": (150, None),
    "lab_non_numeric_share": (0.05, 0.20),
    "lab_without_hadm_share": (0.05, 0.30),
    "icustays_per_admission": (0.95, 1.15),
    "admissions_per_patient": (1.15, 1.45),
    "readmission_30d_share": (0.05, 0.15),
    "note_words_median": (350, None),
    "note_vocabulary": (2000, None),
    "note_header_orders": (20, None),
}

# statistic -> (label, kind); kind picks the format. Table rows follow this order.
LABELS: dict[str, tuple[str, str]] = {
    "patients": ("patients", "int"),
    "admissions": ("admissions", "int"),
    "dx_codes_distinct": ("distinct ICD-9 diagnosis codes", "int"),
    "dx_codes_one_admission_share": ("diagnosis codes seen in one admission only", "share"),
    "dx_top10_category_share": ("diagnosis rows in the 10 most frequent 3-digit categories", "share"),
    "dx_per_admission_median": ("diagnoses per admission (median)", "median"),
    "procedures_per_admission_median": ("procedures per admission (median)", "median"),
    "prescriptions_per_admission_median": ("prescription rows per admission (median)", "median"),
    "labevents_per_admission_median": ("lab events per admission (median)", "median"),
    "drugs_distinct": ("distinct drugs (PRESCRIPTIONS.DRUG, case-folded)", "int"),
    "lab_items_distinct": ("distinct lab item ids", "int"),
    "procedure_codes_distinct": ("distinct ICD-9 procedure codes", "int"),
    "icustays_per_admission": ("ICU stays per admission", "ratio"),
    "admissions_multi_icu_share": ("admissions with >= 2 ICU stays", "share"),
    "admissions_per_patient": ("admissions per patient", "ratio"),
    "patients_multi_admission_share": ("patients with >= 2 admissions", "share"),
    "readmission_30d_share": ("30-day readmission of alive discharges", "share"),
    "lab_non_numeric_share": ("lab rows with a non-numeric value", "share"),
    "lab_without_hadm_share": ("lab rows without HADM_ID", "share"),
    "raw_tables": ("raw tables", "int"),
    "notes_measured": ("discharge summaries measured*", "int"),
    "note_words_median": ("words per discharge summary (median)*", "median"),
    "note_vocabulary": ("vocabulary of the discharge summaries*", "int"),
    "note_header_orders": ("distinct section-header orders*", "int"),
}


def _fmt(value: float | int | None, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "share":
        return f"{100 * value:.1f}%"
    if kind == "ratio":
        return f"{value:.2f}"
    if kind == "median" and not float(value).is_integer():
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def _fmt_range(rng: tuple[float | None, float | None], kind: str) -> str:
    low, high = rng
    if high is None:
        return f">= {_fmt(low, kind)}"
    if low is None:
        return f"<= {_fmt(high, kind)}"
    return f"{_fmt(low, kind)} - {_fmt(high, kind)}"


def _in_range(value: float | int | None, rng: tuple[float | None, float | None]) -> bool:
    low, high = rng
    return value is not None and (low is None or value >= low) and (high is None or value <= high)


def render_table(synthetic: dict, real: dict = MIMIC3_DEMO, notes_real: dict = MTSAMPLES_DISCHARGE,
                 targets: dict | None = None, real_name: str = "real MIMIC-III demo") -> str:
    """A Markdown table of real vs synthetic statistics (note rows, marked *, against MTSamples);
    with `targets`, two more columns: the acceptance range and whether the synthetic value is in it."""
    head = ["statistic", real_name, "synthetic"] + (["target", "ok"] if targets else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for key, (label, kind) in LABELS.items():
        if key not in synthetic and key not in real:
            continue
        ref = notes_real if key in NOTE_KEYS else real
        row = [label, _fmt(ref.get(key), kind), _fmt(synthetic.get(key), kind)]
        if targets:
            rng = targets.get(key)
            row += [_fmt_range(rng, kind), "yes" if _in_range(synthetic.get(key), rng) else "**no**"] if rng \
                else ["", ""]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("\\* real column: MTSamples discharge summaries (the demo's NOTEEVENTS has no rows).")
    return "\n".join(lines) + "\n"


def out_of_range(stats: dict, targets: dict = TARGETS) -> list[str]:
    """One line per statistic of `targets` whose value in `stats` is outside its range or missing."""
    out = []
    for key, rng in targets.items():
        kind = LABELS.get(key, (key, "ratio"))[1]
        if not _in_range(stats.get(key), rng):
            out.append(f"{key} = {_fmt(stats.get(key), kind)}, target {_fmt_range(rng, kind)}")
    return out
