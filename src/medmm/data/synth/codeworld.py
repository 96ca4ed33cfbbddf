"""The long tail of diagnosis and procedure codes, drawn from the real ICD-9-CM v32 tree.

The disease catalog (`catalog.py`) models a few dozen conditions in depth: they drive outcomes,
labs, drugs and notes. Real admissions carry many more codes - twelve per admission in MIMIC-III,
over hundreds of distinct codes, more than half of them seen in a single admission. This module
supplies that tail:

    category k (a real 3-digit ICD-9 category)   weight w_k by tier, a latent axis, chronic/acute
    leaf within k                                   Zipf over the category's v32 leaves (fixed order)

A patient draws persistent "tail" comorbidities once (categories chosen with probability
proportional to w_k exp(0.9 z_axis(k))), and each admission draws acute tail codes the same way.
Siblings under one category therefore share meaning: they are chosen by the same latent factor,
and the readmission risk of a category (`risk`) is carried by every leaf below it, so a model
that reads the ontology can learn a rare leaf's effect from its siblings.

The code world is fixed: which leaves exist and their weights do not depend on the seed; only
which patient has which code does.
"""

from __future__ import annotations

import functools
import zlib
from dataclasses import dataclass

import numpy as np

# Latent axes a category may follow (indices into the patient factors z, see latent.py);
# "renal" and "onc" mix two factors; "gen" follows none.
AXES = {"cm": ((0, 1.0),), "pulm": ((1, 1.0),), "liver": ((2, 1.0),), "frail": ((3, 1.0),),
        "renal": ((0, 0.6), (3, 0.6)), "onc": ((1, 0.4), (3, 0.6)), "inf": ((3, 0.8),), "gen": ()}
TIER_WEIGHT = {1: 8.0, 2: 3.0, 3: 1.0, 4: 0.35}
# ATC groups whose drugs go with each axis (a long-tail drug is likelier when its group matches
# an axis of the admission's tail diagnoses).
DRUG_AXES = {"cm": ("C", "B01"), "pulm": ("R",), "liver": ("A06", "A07", "A05"), "frail": ("N", "A11", "A12"),
             "renal": ("B03", "B05", "V03", "A12"), "onc": ("L", "A04"), "inf": ("J", "D01", "D06")}

# category: (axis, tier, chronic?, readmission risk of the category in logit units)
# Chronic categories are patient-level comorbidities that persist over admissions; acute ones
# are drawn per admission. Risk sits on a few chronic groups (malignancy, organ failure, pressure
# ulcers, malnutrition, dependence on machines) and reaches the readmission logit's code part.
_DX = """
276 renal 1 a 0 | 285 frail 1 c 0 | 427 cm 1 c 0 | 272 cm 1 c 0 | 530 gen 1 c 0 | 244 gen 1 c 0
V45 cm 1 c 0 | V58 cm 1 c 0 | V15 frail 1 c 0 | 311 frail 1 c 0 | 305 liver 1 c 0 | 780 gen 1 a 0
518 pulm 1 a 0 | 599 inf 1 a 0 | 458 cm 1 a 0 | 041 inf 1 a 0 | 785 cm 1 a 0 | 786 pulm 1 a 0
E878 gen 2 a 0 | E879 gen 2 a 0 | E849 gen 2 a 0 | E934 gen 2 a 0 | E935 gen 2 a 0 | E939 gen 3 a 0
E942 cm 3 a 0 | E944 renal 3 a 0 | E932 gen 3 a 0 | E888 frail 2 a 0 | E880 frail 3 a 0 | E884 frail 3 a 0
424 cm 2 c 0 | 425 cm 2 c 0.3 | 426 cm 2 c 0 | 414 cm 2 c 0 | 416 pulm 2 c 0.3 | 429 cm 2 a 0
433 cm 3 c 0 | 434 cm 3 a 0 | 437 cm 3 c 0 | 438 cm 2 c 0 | 440 cm 2 c 0 | 441 cm 3 c 0
443 cm 2 c 0 | 444 cm 3 a 0 | 447 cm 3 c 0 | 451 cm 3 a 0 | 453 cm 2 a 0 | 455 gen 3 c 0
456 liver 3 c 0.3 | 459 cm 3 a 0 | 782 gen 2 a 0 | 784 gen 2 a 0 | 787 gen 2 a 0 | 788 gen 2 a 0
789 gen 2 a 0 | 790 gen 2 a 0 | 791 renal 3 a 0 | 793 gen 3 a 0 | 794 cm 3 a 0 | 796 gen 3 a 0
799 frail 2 a 0 | V10 onc 2 c 0.4 | V12 frail 2 c 0 | V43 cm 3 c 0 | V44 frail 3 c 0.4 | V46 pulm 3 c 0.6
V49 frail 2 c 0 | V64 gen 3 a 0 | V66 frail 3 a 0 | V85 cm 3 c 0 | V88 gen 3 c 0 | V09 inf 3 a 0.3
V42 renal 3 c 0.5 | V08 inf 4 c 0.4 | V62 frail 3 c 0 | V70 gen 4 a 0 | V87 gen 4 c 0 | V13 gen 4 c 0
038 inf 2 a 0 | 008 inf 3 a 0 | 112 inf 2 a 0 | 079 inf 3 a 0 | 070 liver 3 c 0.4 | 042 inf 3 c 0.5
482 pulm 2 a 0 | 507 pulm 2 a 0 | 510 pulm 4 a 0 | 511 pulm 2 a 0 | 512 pulm 3 a 0 | 514 pulm 3 a 0
515 pulm 3 c 0.4 | 516 pulm 4 c 0.3 | 519 pulm 3 a 0 | 491 pulm 2 c 0 | 492 pulm 3 c 0.3 | 493 pulm 2 c 0
494 pulm 4 c 0 | 466 pulm 3 a 0 | 681 inf 3 a 0 | 682 inf 2 a 0 | 686 inf 4 a 0 | 707 frail 2 c 0.5
995 inf 2 a 0 | 996 gen 2 a 0 | 997 gen 2 a 0 | 998 gen 2 a 0 | 999 gen 3 a 0 | 590 inf 3 a 0
591 renal 3 a 0 | 592 renal 3 c 0 | 593 renal 3 c 0 | 596 frail 3 c 0 | 600 gen 2 c 0 | 560 gen 3 a 0
562 gen 3 c 0 | 564 gen 3 a 0 | 567 gen 4 a 0.3 | 568 gen 4 a 0 | 569 gen 3 a 0 | 571 liver 2 c 0.4
572 liver 3 c 0.5 | 573 liver 3 c 0 | 574 gen 3 a 0 | 575 gen 4 a 0 | 576 gen 4 a 0 | 577 liver 3 a 0
578 liver 2 a 0 | 531 gen 3 a 0 | 532 gen 4 a 0 | 535 gen 3 a 0 | 536 gen 3 a 0 | 537 gen 4 a 0
250 cm 2 c 0 | 251 cm 3 a 0 | 252 cm 4 c 0 | 253 gen 4 c 0 | 255 gen 4 c 0 | 259 gen 4 c 0
263 frail 2 c 0.5 | 268 frail 3 c 0 | 273 onc 4 c 0 | 274 cm 3 c 0 | 275 renal 2 a 0 | 277 gen 3 c 0
278 cm 2 c 0 | 279 gen 4 c 0 | 280 frail 3 c 0 | 281 frail 3 c 0 | 284 onc 3 c 0.5 | 286 liver 3 a 0.3
287 liver 2 a 0 | 288 onc 3 a 0.3 | 289 gen 3 c 0 | 290 frail 3 c 0 | 291 liver 3 a 0 | 292 gen 3 a 0
293 frail 3 a 0 | 294 frail 3 c 0 | 295 gen 4 c 0 | 296 gen 2 c 0 | 298 gen 4 a 0 | 300 gen 2 c 0
303 liver 2 c 0 | 304 liver 3 c 0.3 | 307 gen 4 c 0 | 309 gen 4 c 0 | 331 frail 3 c 0.3 | 332 frail 3 c 0
333 gen 3 c 0 | 337 cm 4 c 0 | 340 gen 4 c 0 | 342 cm 3 c 0.3 | 344 frail 3 c 0.4 | 345 gen 2 c 0
348 frail 2 a 0 | 349 gen 3 a 0 | 356 cm 3 c 0 | 357 cm 3 c 0 | 358 gen 4 c 0 | 359 frail 4 c 0
362 cm 3 c 0 | 365 gen 3 c 0 | 366 gen 3 c 0 | 369 gen 4 c 0 | 389 frail 3 c 0 | 401 cm 2 c 0
403 renal 2 c 0 | 404 renal 3 c 0.3 | 410 cm 2 a 0 | 411 cm 3 a 0 | 413 cm 3 c 0 | 415 pulm 3 a 0
580 renal 4 a 0 | 581 renal 4 c 0 | 583 renal 3 c 0 | 585 renal 2 c 0.4 | 586 renal 3 c 0.3 | 588 renal 3 c 0.3
601 gen 4 a 0 | 607 gen 4 c 0 | 608 gen 4 a 0 | 611 gen 4 c 0 | 618 gen 4 c 0 | 625 gen 4 c 0
690 gen 4 c 0 | 695 gen 4 a 0 | 696 gen 4 c 0 | 698 gen 4 c 0 | 701 gen 4 c 0 | 709 gen 4 c 0
710 gen 3 c 0 | 711 inf 4 a 0 | 714 gen 3 c 0 | 715 frail 2 c 0 | 716 gen 4 c 0 | 719 frail 3 a 0
721 frail 3 c 0 | 722 gen 3 c 0 | 724 gen 3 c 0 | 726 gen 4 c 0 | 727 gen 4 c 0 | 728 frail 3 a 0
729 gen 3 a 0 | 730 inf 3 a 0.3 | 733 frail 2 c 0 | 737 frail 4 c 0 | 738 gen 4 c 0 | 746 cm 4 c 0
747 cm 4 c 0 | 753 renal 4 c 0 | 805 frail 3 a 0 | 807 frail 3 a 0 | 808 frail 4 a 0 | 812 frail 4 a 0
813 frail 4 a 0 | 823 frail 4 a 0 | 824 frail 4 a 0 | 850 gen 3 a 0 | 851 gen 4 a 0 | 852 gen 3 a 0
853 gen 4 a 0 | 860 gen 4 a 0 | 861 gen 4 a 0 | 864 gen 4 a 0 | 865 gen 4 a 0 | 873 gen 4 a 0
920 frail 3 a 0 | 922 gen 4 a 0 | 924 frail 4 a 0 | 958 gen 4 a 0 | 959 frail 4 a 0 | 965 liver 4 a 0
967 gen 4 a 0 | 969 gen 4 a 0 | 977 gen 4 a 0 | 150 onc 4 c 0.8 | 151 onc 4 c 0.8 | 153 onc 3 c 0.6
154 onc 4 c 0.6 | 155 onc 4 c 0.9 | 157 onc 4 c 1.0 | 162 onc 3 c 0.8 | 174 onc 3 c 0.4 | 185 onc 3 c 0.3
188 onc 4 c 0.5 | 189 onc 4 c 0.6 | 191 onc 4 c 0.9 | 196 onc 3 c 0.8 | 197 onc 3 c 0.9 | 198 onc 3 c 0.9
199 onc 3 c 0.8 | 202 onc 3 c 0.7 | 203 onc 3 c 0.7 | 204 onc 4 c 0.7 | 205 onc 4 c 0.8 | 211 gen 4 c 0
225 gen 4 c 0 | 235 onc 4 c 0.3 | 238 onc 4 c 0.4 | 239 onc 4 c 0.3
"""

# Procedures: (code or 2-digit category, weight). Named codes are the common ICU procedures;
# a category spreads a small weight over all its v32 leaves (the tail).
_PROC_COMMON = """
3893 10 | 9604 6 | 9671 5 | 9672 4 | 9904 5 | 966 4 | 3891 3 | 9915 2 | 3324 1.5 | 3895 1.5 | 8856 1.2
9390 1.5 | 4513 1.2 | 3491 1.5 | 5491 1.0 | 9907 1.2 | 9905 0.8 | 9606 0.6 | 3404 0.8 | 4311 0.8 | 0331 0.8
8872 1.0 | 9962 0.5 | 3995 1.5 | 0017 0.6 | 9394 0.5 | 4516 0.5 | 4523 0.5 | 3722 0.8 | 0066 0.6 | 3607 0.6
3961 0.5 | 3615 0.4 | 8741 0.8 | 8703 0.8 | 8891 0.5 | 9925 0.5 | 9929 0.4 | 5794 0.8 | 8938 0.3 | 3121 0.5
"""
_PROC_TAIL = "38 39 96 99 45 88 33 54 86 00 34 31 37 93 57 44 51 81 87 89 03 01 46 50 55 78 79 35 36 42"
PROC_TAIL_WEIGHT = 0.025       # per leaf of a tail category


@dataclass(frozen=True)
class DxCategory:
    code: str
    axis: str
    weight: float
    chronic: bool
    risk: float
    leaves: tuple[str, ...]
    leaf_cum: np.ndarray       # cumulative leaf probabilities (Zipf over a fixed order)


def _fixed_order(codes: list[str]) -> list[str]:
    # A seed-free, platform-free order: CRC32 of the code (Python's hash() is salted per process).
    return sorted(codes, key=lambda c: (zlib.crc32(c.encode()), c))


def _zipf_cum(n: int, s: float = 1.1) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** s
    return np.cumsum(w / w.sum())


@functools.lru_cache(maxsize=None)
def dx_categories() -> tuple[DxCategory, ...]:
    from medmm.ontology.icd9 import load_icd9_dx

    tree = load_icd9_dx()
    out = []
    for item in _DX.replace("\n", "|").split("|"):
        if not item.strip():
            continue
        code, axis, tier, kind, risk = item.split()
        leaves = tree.children(code) if code in tree else []
        leaves = [x for x in leaves if not tree.children(x)] or ([code] if code in tree else [])
        if not leaves:
            raise ValueError(f"codeworld: ICD-9 category {code!r} has no v32 leaf")
        if axis not in AXES:
            raise ValueError(f"codeworld: unknown axis {axis!r} for {code}")
        order = _fixed_order(list(leaves))
        out.append(DxCategory(code, axis, TIER_WEIGHT[int(tier)], kind == "c", float(risk), tuple(order),
                              _zipf_cum(len(order))))
    return tuple(out)


@functools.lru_cache(maxsize=None)
def procedure_weights() -> tuple[tuple[str, ...], np.ndarray]:
    """(codes, cumulative probabilities) of the procedure world: the common ICU procedures and
    a thin tail over every v32 leaf of the listed categories."""
    from medmm.ontology.icd9 import load_icd9_proc

    tree = load_icd9_proc()
    w: dict[str, float] = {}
    for item in _PROC_TAIL.split():
        for leaf in tree.children(item):
            if not tree.children(leaf):
                w[leaf] = PROC_TAIL_WEIGHT
    for item in _PROC_COMMON.replace("\n", "|").split("|"):
        if item.strip():
            code, weight = item.split()
            if code not in tree or tree.children(code):
                raise ValueError(f"codeworld: procedure {code!r} is not a v32 leaf")
            w[code] = float(weight)
    codes = tuple(sorted(w))
    p = np.array([w[c] for c in codes])
    return codes, np.cumsum(p / p.sum())


def drug_axis_match(atcs: list[str]) -> np.ndarray:
    """(len(AXES), len(atcs)) bool: drug j's ATC code falls in a group of axis i (DRUG_AXES)."""
    return np.array([[any(a.startswith(g) for g in DRUG_AXES.get(axis, ())) for a in atcs] for axis in AXES])


def category_axis() -> dict[str, int]:
    """ICD-9 category -> the index (in AXES) of the latent axis it follows."""
    names = list(AXES)
    return {c.code: names.index(c.axis) for c in dx_categories()}


def _affinity(z: np.ndarray, cats: tuple[DxCategory, ...], strength: float = 0.9) -> np.ndarray:
    """(n, K) log-weights of each category for each row of latent factors z (n, 4)."""
    logw = np.tile(np.log([c.weight for c in cats]), (len(z), 1))
    for k, c in enumerate(cats):
        for f, load in AXES[c.axis]:
            logw[:, k] += strength * load * z[:, f]
    return logw


def _draw_categories(rng: np.random.Generator, logw: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One category per entry of `rows` (row indices into logw), by inverse CDF per row."""
    if not len(rows):
        return np.zeros(0, np.int64)
    w = np.exp(logw - logw.max(1, keepdims=True))
    cum = np.cumsum(w / w.sum(1, keepdims=True), axis=1)
    u = rng.random(len(rows))
    return np.minimum((cum[rows] < u[:, None]).sum(1), logw.shape[1] - 1)


def _draw_leaves(rng: np.random.Generator, cats: tuple[DxCategory, ...], k: np.ndarray) -> list[str]:
    u = rng.random(len(k))
    out = np.empty(len(k), dtype=object)
    for j in np.unique(k):
        at = np.flatnonzero(k == j)
        c = cats[j]
        pos = np.minimum(np.searchsorted(c.leaf_cum, u[at]), len(c.leaves) - 1)
        out[at] = np.array(c.leaves, dtype=object)[pos]
    return out.tolist()


def _distinct_runs(n: np.ndarray, items: list[str]) -> tuple[np.ndarray, list[str]]:
    """Row r owns items[sum(n[:r]) : sum(n[:r+1])]; returns (ptr, items) with repeats within a row
    dropped (first kept): row r's items are out[ptr[r]:ptr[r+1]]."""
    ptr = [0]
    out: list[str] = []
    start = 0
    for m in n.tolist():
        out.extend(dict.fromkeys(items[start:start + m]))
        ptr.append(len(out))
        start += m
    return np.array(ptr, np.int64), out


def draw_patient_tail(rng: np.random.Generator, z: np.ndarray, age: np.ndarray
                      ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Persistent tail comorbidities of each patient.

    Returns (ptr (P+1,), codes, risk (P,)): patient p's codes are codes[ptr[p]:ptr[p+1]] (distinct),
    risk[p] the summed readmission risk of their categories (capped at 1.5).
    """
    cats = dx_categories()
    chronic = np.array([c.chronic for c in cats])
    logw = np.where(chronic, _affinity(z, cats), -np.inf)
    lam = np.exp(np.log(2.6) + 0.25 * z[:, 3] + 0.012 * (age - 65))
    n = rng.poisson(lam)
    rows = np.repeat(np.arange(len(z)), n)
    k = _draw_categories(rng, logw, rows)
    leaves = _draw_leaves(rng, cats, k)
    risk_k = np.array([c.risk for c in cats])
    ptr = [0]
    codes: list[str] = []
    risk = np.zeros(len(z))
    start = 0
    for p, m in enumerate(n.tolist()):
        seen = dict.fromkeys(leaves[start:start + m])
        codes.extend(seen)
        ptr.append(len(codes))
        # Risk counts each category once however many of its leaves the patient has.
        risk[p] = min(risk_k[np.unique(k[start:start + m])].sum(), 1.5) if m else 0.0
        start += m
    return np.array(ptr, np.int64), codes, risk


def draw_visit_tail(rng: np.random.Generator, z_v: np.ndarray, acuity: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Acute tail codes of each admission: (ptr (V+1,), codes), distinct within an admission."""
    cats = dx_categories()
    acute = np.array([not c.chronic for c in cats])
    logw = np.where(acute, _affinity(z_v, cats, 0.5), -np.inf)
    n = rng.poisson(np.exp(np.log(3.0) + 0.25 * np.clip(acuity, -2, 3)))
    rows = np.repeat(np.arange(len(z_v)), n)
    leaves = _draw_leaves(rng, cats, _draw_categories(rng, logw, rows))
    return _distinct_runs(n, leaves)


def draw_visit_procedures(rng: np.random.Generator, icu: np.ndarray, acuity: np.ndarray
                          ) -> tuple[np.ndarray, list[str]]:
    """Tail procedures of each admission (beyond the ones the conditions imply)."""
    codes, cum = procedure_weights()
    n = rng.poisson(np.exp(np.log(1.4) + 0.35 * np.clip(acuity, -2, 3) + 0.3 * icu))
    u = rng.random(int(n.sum()))
    picked = np.array(codes, dtype=object)[np.minimum(np.searchsorted(cum, u), len(codes) - 1)].tolist()
    return _distinct_runs(n, picked)
