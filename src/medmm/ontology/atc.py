"""The WHO Anatomical Therapeutic Chemical (ATC) classification as a prefix tree.

An ATC code's level is fixed by its length, and each level extends its parent's code:

    level 1  1 char   "C"        anatomical main group (cardiovascular system)
    level 2  3 chars  "C07"      therapeutic subgroup (beta blocking agents)
    level 3  4 chars  "C07A"     pharmacological subgroup (beta blocking agents)
    level 4  5 chars  "C07AB"    chemical subgroup (beta blocking agents, selective)
    level 5  7 chars  "C07AB02"  chemical substance (metoprolol)

so the tree is built from the codes alone. medmm represents every medication as ATC level 3
(4 characters) for the whole vocabulary (G-BERT / MedM-PLM; G-BERT's mix of ATC-3 and ATC-4 in
one vocabulary is a bug not to copy), and the MedM-PLM medication tree is
level 3 -> level 2 -> level 1 -> ROOT.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from medmm.ontology.tree import CodeTree

ATC_SYSTEM = "atc"

# Code length at each level (index = level).
ATC_LENGTHS = {1: 1, 2: 3, 3: 4, 4: 5, 5: 7}
_LEVEL_OF_LENGTH = {n: lvl for lvl, n in ATC_LENGTHS.items()}
# Letter, 2 digits, letter, letter, 2 digits; a code of any level is a prefix of that shape.
ATC_PATTERN = r"^[A-Z](?:\d{2}(?:[A-Z](?:[A-Z](?:\d{2})?)?)?)?$"
_ATC_RE = re.compile(ATC_PATTERN)


def atc_level(code: str) -> int:
    """Level (1-5) of an ATC code; ValueError if it is not a well-formed ATC code."""
    if not isinstance(code, str) or not _ATC_RE.fullmatch(code) or len(code) not in _LEVEL_OF_LENGTH:
        raise ValueError(f"malformed ATC code {code!r} (expected e.g. 'C', 'C07', 'C07A', 'C07AB', 'C07AB02')")
    return _LEVEL_OF_LENGTH[len(code)]


def truncate_atc(code: str, level: int) -> str:
    """The level-`level` ancestor (or the code itself) of `code`: ``truncate_atc("C07AB02", 3) == "C07A"``.

    ValueError if `code` is malformed or shallower than `level`.
    """
    have = atc_level(code)
    if level not in ATC_LENGTHS:
        raise ValueError(f"ATC level must be 1-5, got {level}")
    if level > have:
        raise ValueError(f"cannot truncate ATC level-{have} code {code!r} to the deeper level {level}")
    return code[: ATC_LENGTHS[level]]


def atc_ancestors(code: str) -> list[str]:
    """Prefix ancestors, parent first: ``"C07AB" -> ["C07A", "C07", "C"]`` (ROOT not included)."""
    return [truncate_atc(code, lvl) for lvl in range(atc_level(code) - 1, 0, -1)]


def atc_tree(codes: Iterable[str], names: dict[str, str] | None = None) -> CodeTree:
    """Tree of `codes` plus their prefix ancestors, level-1 groups under ROOT.

    `names` (e.g. from `load_atc_names`) is restricted to the nodes of the tree.
    """
    parent: dict[str, str | None] = {}
    for code in codes:
        chain = [code, *atc_ancestors(code)]  # code, its parent, ..., level 1
        for child, par in zip(chain, [*chain[1:], None]):
            parent[child] = par
    kept = {c: n for c, n in (names or {}).items() if c in parent}
    return CodeTree(ATC_SYSTEM, parent, kept)


def truncate_atc_expr(col: str, level: int = 3) -> pl.Expr:
    """Vectorised truncation of a string column of ATC codes to `level` (shorter or malformed -> null)."""
    if level not in ATC_LENGTHS:
        raise ValueError(f"ATC level must be 1-5, got {level}")
    n = ATC_LENGTHS[level]
    c = pl.col(col).str.strip_chars().str.to_uppercase()
    ok = c.str.contains(ATC_PATTERN) & c.str.len_chars().is_in(list(_LEVEL_OF_LENGTH)) & (c.str.len_chars() >= n)
    return pl.when(ok).then(c.str.slice(0, n)).otherwise(pl.lit(None, dtype=pl.String))


def load_atc_names(path: str | Path) -> dict[str, str]:
    """ATC code -> name from a CSV (optionally .gz) with header ``atc_code,atc_name``.

    This is the layout of the ethos-paper ``atc_names.csv.gz`` (6,782 rows, levels 1-5; some
    codes appear on two rows with two names, and the first row of a code wins: 6,598 codes).
    ValueError naming the file and row for a missing column, an empty field or a malformed code.
    """
    path = Path(path)
    try:
        df = pl.read_csv(path, infer_schema=False)
    except Exception as e:  # polars raises several error types for unparsable CSVs
        raise ValueError(f"{path}: cannot parse as CSV: {e}") from e
    missing = {"atc_code", "atc_name"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)} (header is {df.columns})")
    out: dict[str, str] = {}
    for row, (code, name) in enumerate(zip(df["atc_code"], df["atc_name"]), start=2):  # line 1 = header
        if code is None or name is None:
            raise ValueError(f"{path}, line {row}: empty atc_code or atc_name")
        code = code.strip().upper()
        try:
            atc_level(code)
        except ValueError as e:
            raise ValueError(f"{path}, line {row}, column atc_code: {e}") from None
        # WHO lists a few codes under two names (renamed across revisions): keep the first.
        out.setdefault(code, name.strip())
    return out


__all__ = [
    "ATC_SYSTEM", "ATC_LENGTHS", "ATC_PATTERN", "atc_level", "truncate_atc", "atc_ancestors", "atc_tree",
    "truncate_atc_expr", "load_atc_names",
]
