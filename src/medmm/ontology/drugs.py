"""Medication mappings to ATC level 3, loaded from user-given files in public formats.

MIMIC prescriptions carry an NDC (11-digit National Drug Code, ``"0"`` when absent) and a free-text
drug name. medmm represents every medication as an ATC level-3 code (4 characters, "C07A"), as
G-BERT / MedM-PLM do. Two routes, tried in this order for every row:

1. **NDC -> RxCUI -> ATC** (the GAMENet pipeline):

   * ``ndc2rxnorm_mapping.txt`` -- a Python-literal dict ``{'00338500341': u'1665046', ...}``
     (11-digit NDC string -> RxCUI string; an empty RxCUI means "no mapping"). Parsed with
     ``ast.literal_eval``, never ``eval``.
   * ``ndc2atc_level4.csv`` -- CSV with header ``YEAR,MONTH,NDC,RXCUI,ATC4`` (the output layout
     of fabkury/ndc_map that GAMENet ships: one row per (year, month, NDC, RxCUI, ATC level-4
     class)); only ``RXCUI`` and ``ATC4`` are used, as in GAMENet. Header names are matched
     case-insensitively; any ATC level >= 3 is accepted in ``ATC4``.

   The route is active only when both files are given.

2. **drug name -> ATC**: CSV ``drug,atc_code`` (optionally ``.gz``), e.g. the ethos-paper
   ``mimic_drug_to_atc.csv.gz``. Names are matched case-insensitively after trimming.

Every ATC code is truncated to level 3; entries shallower than level 3 (e.g. "A12") cannot be
and are dropped (counted in `DrugMapper.stats`). Where one key (RxCUI or drug name) maps to
several ATC-3 codes, the key gets the ATC-3 named by the most rows of the file, ties broken by the
lexicographically smallest ATC-3 (heparin: 3 rows B01AB01, 2 rows S01XA14 -> "B01A"). This
deterministic choice keeps exactly one output row per input row (no join fan-out); the number of
such ambiguous keys is reported in `stats`.

`DrugMapper.map_frame` is vectorised (hash look-ups via ``replace_strict``), so it runs on the
4.2 M MIMIC-III prescription rows in seconds; `coverage` reports how many rows each route mapped
and the unmapped fraction, which a preparer must report rather than hide.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from medmm.ontology.atc import ATC_LENGTHS, ATC_PATTERN

NDC_RXNORM_FILE = "ndc2rxnorm_mapping.txt"
RXNORM_ATC_FILE = "ndc2atc_level4.csv"
DRUG_ATC_FILES = ("mimic_drug_to_atc.csv", "mimic_drug_to_atc.csv.gz")

ROUTE_NDC, ROUTE_NAME = "ndc", "name"

_ATC3_LEN = ATC_LENGTHS[3]
_TMP_NDC, _TMP_NAME = "__medmm_atc3_by_ndc", "__medmm_atc3_by_name"


# ---- normalisation -------------------------------------------------------------------------------

def normalize_ndc(raw: str | int | None) -> str | None:
    """11-digit NDC string or None for "no NDC" (null, empty, ``"0"``, all zeros).

    Keeps leading zeros; restores them when an earlier step read the NDC as a number; converts a
    hyphenated 10-digit NDC (4-4-2, 5-3-2 or 5-4-1) to the 11-digit 5-4-2 form.
    """
    if raw is None:
        return None
    s = str(raw).strip()
    if "-" in s:
        parts = s.split("-")
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            s = parts[0].zfill(5) + parts[1].zfill(4) + parts[2].zfill(2)
    if s.isdigit() and len(s) < 11:
        s = s.zfill(11)
    if not s or s.strip("0") == "":
        return None
    return s


def normalize_ndc_expr(col: str) -> pl.Expr:
    """`normalize_ndc` as a Polars expression (any dtype; null for "no NDC")."""
    s = pl.col(col).cast(pl.String).str.strip_chars()
    parts = s.str.split("-")
    hyphen = (
        parts.list.get(0, null_on_oob=True).str.zfill(5)
        + parts.list.get(1, null_on_oob=True).str.zfill(4)
        + parts.list.get(2, null_on_oob=True).str.zfill(2)
    )
    s = pl.when(s.str.contains(r"^\d+-\d+-\d+$")).then(hyphen).otherwise(s)
    s = pl.when(s.str.contains(r"^\d{1,10}$")).then(s.str.zfill(11)).otherwise(s)
    return pl.when(s.str.contains(r"^0*$")).then(pl.lit(None, dtype=pl.String)).otherwise(s)


def normalize_drug_name(raw: str | None) -> str | None:
    """Case-insensitive, trimmed key of a drug name (None for null / empty)."""
    if raw is None:
        return None
    key = raw.strip().lower()
    return key or None


def normalize_drug_name_expr(col: str) -> pl.Expr:
    s = pl.col(col).cast(pl.String).str.strip_chars().str.to_lowercase()
    return pl.when(s == "").then(pl.lit(None, dtype=pl.String)).otherwise(s)


# ---- file readers --------------------------------------------------------------------------------

def _read_csv(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"mapping file not found: {path}")
    try:
        return pl.read_csv(path, infer_schema=False)
    except Exception as e:  # polars raises several error types for unparsable CSVs
        raise ValueError(f"{path}: cannot parse as CSV: {e}") from e


def _column(df: pl.DataFrame, path: Path, name: str) -> str:
    """The actual header of column `name` (case-insensitive); ValueError naming the file if absent."""
    for c in df.columns:
        if c.strip().lower() == name.lower():
            return c
    raise ValueError(f"{path}: missing column {name!r} (header is {df.columns})")


def _atc_to_atc3(
    df: pl.DataFrame, path: Path, key_col: str, atc_col: str, stats: dict[str, int], lower_key: bool = False
) -> pl.DataFrame:
    """(key, ATC any level) rows of a file -> one ("key", "atc3") row per key.

    The key gets the majority ATC-3 of its rows, ties -> lexicographically smallest. Rows with an
    empty key or code are skipped; a non-empty malformed ATC code is a ValueError naming the file,
    line and column; codes shallower than level 3 are dropped. Counts go to `stats`.
    """
    # Line numbers assume one record per line (true of these mapping files); line 1 is the header.
    df = df.with_row_index("__line", offset=2)
    key_expr = pl.col(key_col).str.strip_chars()
    if lower_key:
        key_expr = key_expr.str.to_lowercase()
    key = "key"
    df = df.select("__line", key_expr.alias(key), pl.col(atc_col).str.strip_chars().str.to_uppercase())
    empty = pl.col(key).is_null() | (pl.col(key) == "") | pl.col(atc_col).is_null() | (pl.col(atc_col) == "")
    stats["rows_read"] = df.height
    stats["rows_empty"] = df.filter(empty).height
    df = df.filter(~empty)
    lengths = list(ATC_LENGTHS.values())
    well_formed = pl.col(atc_col).str.contains(ATC_PATTERN) & pl.col(atc_col).str.len_chars().is_in(lengths)
    bad = df.filter(~well_formed)
    if bad.height:
        line, value = bad["__line"][0], bad[atc_col][0]
        raise ValueError(f"{path}, line {line}, column {atc_col}: malformed ATC code {value!r} ({bad.height} such rows)")
    shallow = pl.col(atc_col).str.len_chars() < _ATC3_LEN
    stats["rows_shallower_than_atc3"] = df.filter(shallow).height
    df = df.filter(~shallow).select(pl.col(key), pl.col(atc_col).str.slice(0, _ATC3_LEN).alias("atc3"))
    # Majority vote per key (rows naming that ATC-3), ties -> lexicographically smallest ATC-3.
    votes = df.group_by(key, "atc3").agg(pl.len().alias("votes"))
    per_key = (
        votes.sort([key, "votes", "atc3"], descending=[False, True, False])
        .group_by(key, maintain_order=True)
        .agg(pl.col("atc3").first(), pl.len().alias("n"))
    )
    stats["keys"] = per_key.height
    stats["keys_ambiguous"] = per_key.filter(pl.col("n") > 1).height
    return per_key.select(key, "atc3")


def read_ndc2rxnorm(path: str | Path, stats: dict[str, int] | None = None) -> dict[str, str]:
    """NDC (11-digit string) -> RxCUI from GAMENet's ``ndc2rxnorm_mapping.txt`` (Python-literal dict).

    GAMENet's file also holds one bookkeeping entry ``'idx': <int>`` (a counter, not an NDC),
    which is skipped; entries with an empty RxCUI are left out of the result. `stats`, if given,
    receives ``entries`` (dict size), ``ndc_keys`` and ``empty_rxcui``. ValueError naming the file
    (and line) if it is not a dict literal of NDC strings -> RxCUI strings.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mapping file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        data = ast.literal_eval(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
        where = f", line {e.lineno}" if getattr(e, "lineno", None) else ""
        raise ValueError(f"{path}{where}: not a Python dict literal (NDC -> RxCUI): {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict literal NDC -> RxCUI, got {type(data).__name__}")
    out: dict[str, str] = {}
    n_keys = n_empty = 0
    for ndc, rxcui in data.items():
        if ndc == "idx" and isinstance(rxcui, int):
            continue
        if not isinstance(ndc, str) or not isinstance(rxcui, str):
            raise ValueError(f"{path}: entry {ndc!r}: {rxcui!r} is not an NDC string -> RxCUI string pair")
        if not re.fullmatch(r"\d{11}", ndc.strip()):
            raise ValueError(f"{path}: key {ndc!r} is not an 11-digit NDC")
        n_keys += 1
        rxcui = rxcui.strip()
        if rxcui == "":
            n_empty += 1
            continue
        if not rxcui.isdigit():
            raise ValueError(f"{path}: RxCUI {rxcui!r} of NDC {ndc!r} is not numeric")
        out[ndc.strip()] = rxcui
    if stats is not None:
        stats.update(entries=len(data), ndc_keys=n_keys, empty_rxcui=n_empty)
    return out


# ---- the mapper ----------------------------------------------------------------------------------

@dataclass
class DrugMapper:
    """NDC / drug name -> ATC-3. Build with `from_files` or `from_dir`.

    Attributes:
        ndc_atc3: NDC -> ATC-3 (NDC -> RxCUI -> ATC composed; empty when that route is off).
        name_atc3: normalised drug name -> ATC-3.
        stats: per-file counts (entries read, dropped, ambiguous keys) for the manifest.
        sources: route -> the files it was built from.
    """

    ndc_atc3: dict[str, str] = field(default_factory=dict)
    name_atc3: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_files(
        cls,
        ndc_rxnorm: str | Path | None = None,
        rxnorm_atc: str | Path | None = None,
        drug_atc: str | Path | None = None,
    ) -> DrugMapper:
        """Load the given mapping files (see module doc for their formats); None = not used."""
        m = cls()
        if (ndc_rxnorm is None) != (rxnorm_atc is None):
            given = ndc_rxnorm if ndc_rxnorm is not None else rxnorm_atc
            m.stats["ndc_route_disabled"] = f"only {Path(given).name} given; the NDC route needs both files"
        if ndc_rxnorm is not None and rxnorm_atc is not None:
            st_rx: dict[str, int] = {}
            ndc_rx = read_ndc2rxnorm(ndc_rxnorm, st_rx)
            path = Path(rxnorm_atc)
            df = _read_csv(path)
            rx_col, atc_col = _column(df, path, "RXCUI"), _column(df, path, "ATC4")
            st: dict[str, int] = {}
            rx_atc3 = _atc_to_atc3(df, path, rx_col, atc_col, st)
            rx_map = dict(zip(rx_atc3["key"], rx_atc3["atc3"]))
            m.ndc_atc3 = {ndc: rx_map[rx] for ndc, rx in ndc_rx.items() if rx in rx_map}
            m.stats["ndc_rxnorm"] = {**st_rx, "ndc_with_rxcui": len(ndc_rx), "ndc_with_atc3": len(m.ndc_atc3)}
            m.stats["rxnorm_atc"] = st
            m.sources[ROUTE_NDC] = [str(ndc_rxnorm), str(rxnorm_atc)]
        if drug_atc is not None:
            path = Path(drug_atc)
            df = _read_csv(path)
            drug_col, atc_col = _column(df, path, "drug"), _column(df, path, "atc_code")
            st = {}
            d = _atc_to_atc3(df, path, drug_col, atc_col, st, lower_key=True)
            m.name_atc3 = dict(zip(d["key"], d["atc3"]))
            m.stats["drug_atc"] = st
            m.sources[ROUTE_NAME] = [str(drug_atc)]
        return m

    @classmethod
    def from_dir(cls, directory: str | Path) -> DrugMapper:
        """Load the standard file names found in `directory`: ``ndc2rxnorm_mapping.txt``,
        ``ndc2atc_level4.csv``, ``mimic_drug_to_atc.csv(.gz)``; absent files are not used.

        FileNotFoundError if the directory holds none of them.
        """
        d = Path(directory)
        if not d.is_dir():
            raise FileNotFoundError(f"drug mapping directory not found: {d}")
        ndc_rx = d / NDC_RXNORM_FILE
        rx_atc = d / RXNORM_ATC_FILE
        drug = next((d / n for n in DRUG_ATC_FILES if (d / n).is_file()), None)
        if not ndc_rx.is_file() and not rx_atc.is_file() and drug is None:
            names = ", ".join([NDC_RXNORM_FILE, RXNORM_ATC_FILE, *DRUG_ATC_FILES])
            raise FileNotFoundError(f"{d} holds none of the drug mapping files ({names})")
        return cls.from_files(
            ndc_rxnorm=ndc_rx if ndc_rx.is_file() else None,
            rxnorm_atc=rx_atc if rx_atc.is_file() else None,
            drug_atc=drug,
        )

    # ---- look-ups ----------------------------------------------------------------------------------

    def lookup(self, ndc: str | int | None = None, drug: str | None = None) -> tuple[str | None, str | None]:
        """(atc3, route) for one prescription; the same rule as `map_frame`, for single values."""
        key = normalize_ndc(ndc)
        if key is not None and key in self.ndc_atc3:
            return self.ndc_atc3[key], ROUTE_NDC
        name = normalize_drug_name(drug)
        if name is not None and name in self.name_atc3:
            return self.name_atc3[name], ROUTE_NAME
        return None, None

    def map_frame(self, lf: pl.LazyFrame | pl.DataFrame, ndc_col: str | None = "ndc", drug_col: str | None = "drug") -> pl.LazyFrame:
        """Add ``atc3`` (String, null if unmapped) and ``atc_route`` ("ndc" | "name" | null).

        One output row per input row, in input order. `ndc_col` / `drug_col` = None skips that
        route; a named column absent from `lf` is a ValueError.
        """
        lf = lf.lazy()
        schema = lf.collect_schema()
        for out in ("atc3", "atc_route"):
            if out in schema:
                raise ValueError(f"map_frame: input already has a column {out!r}")
        for col in (ndc_col, drug_col):
            if col is not None and col not in schema:
                raise ValueError(f"map_frame: column {col!r} not in the input (columns: {list(schema)})")
        none = pl.lit(None, dtype=pl.String)
        by_ndc = none
        if ndc_col is not None and self.ndc_atc3:
            by_ndc = normalize_ndc_expr(ndc_col).replace_strict(
                old=pl.Series(list(self.ndc_atc3), dtype=pl.String),
                new=pl.Series(list(self.ndc_atc3.values()), dtype=pl.String),
                default=None, return_dtype=pl.String,
            )
        by_name = none
        if drug_col is not None and self.name_atc3:
            by_name = normalize_drug_name_expr(drug_col).replace_strict(
                old=pl.Series(list(self.name_atc3), dtype=pl.String),
                new=pl.Series(list(self.name_atc3.values()), dtype=pl.String),
                default=None, return_dtype=pl.String,
            )
        # replace_strict is an element-wise hash look-up, so the row count cannot change.
        return (
            lf.with_columns(by_ndc.alias(_TMP_NDC), by_name.alias(_TMP_NAME))
            .with_columns(
                pl.coalesce(_TMP_NDC, _TMP_NAME).alias("atc3"),
                pl.when(pl.col(_TMP_NDC).is_not_null()).then(pl.lit(ROUTE_NDC))
                .when(pl.col(_TMP_NAME).is_not_null()).then(pl.lit(ROUTE_NAME))
                .otherwise(none).alias("atc_route"),
            )
            .drop(_TMP_NDC, _TMP_NAME)
        )

    def coverage(self, lf: pl.LazyFrame | pl.DataFrame, ndc_col: str | None = "ndc", drug_col: str | None = "drug") -> dict[str, Any]:
        """Rows mapped by each route and the unmapped fraction.

        `lf` may already carry ``atc_route`` (output of `map_frame`); otherwise it is mapped first.
        Returns ``{"rows", "ndc", "name", "unmapped", "mapped_fraction", "unmapped_fraction"}``.
        """
        lf = lf.lazy()
        if "atc_route" not in lf.collect_schema():
            lf = self.map_frame(lf, ndc_col=ndc_col, drug_col=drug_col)
        r = pl.col("atc_route")
        counts = lf.select(
            pl.len().alias("rows"),
            (r == ROUTE_NDC).sum().alias(ROUTE_NDC),
            (r == ROUTE_NAME).sum().alias(ROUTE_NAME),
            r.is_null().sum().alias("unmapped"),
        ).collect().row(0, named=True)
        out: dict[str, Any] = {k: int(v or 0) for k, v in counts.items()}
        n = out["rows"]
        out["mapped_fraction"] = (n - out["unmapped"]) / n if n else 0.0
        out["unmapped_fraction"] = out["unmapped"] / n if n else 0.0
        return out


__all__ = [
    "DrugMapper", "read_ndc2rxnorm", "normalize_ndc", "normalize_ndc_expr", "normalize_drug_name",
    "normalize_drug_name_expr", "NDC_RXNORM_FILE", "RXNORM_ATC_FILE", "DRUG_ATC_FILES",
    "ROUTE_NDC", "ROUTE_NAME",
]
