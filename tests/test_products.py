"""The long-tail drug catalogue (synth/products.py): well-formed rows, no overlap with the core
catalog, enough breadth, and (with ../shared/data) every ATC code real and named for its generic."""

from __future__ import annotations

import csv
import gzip
import re
from collections import defaultdict
from pathlib import Path

import pytest

from medmm.data.synth import catalog
from medmm.data.synth.products import ATC_NAME_CHECK_EXCEPTIONS, PRODUCTS, Product, by_atc3, generics

ATC5 = re.compile(r"^[A-Z]\d{2}[A-Z]{2}\d{2}$")
ROUTES = {"PO", "IV", "SC", "IM", "IH", "TP", "PR", "SL", "NG", "OU", "IV DRIP", "PO/NG", "TD", "NU"}
# Ion words that precede the distinguishing word of a salt ("calcium gluconate" -> "gluconate").
SALT_WORDS = {"sodium", "potassium", "calcium", "magnesium", "ferrous", "ferric", "zinc", "aluminum", "lithium"}
# The one other salt of a catalog substance, listed apart from the tartrate as MIMIC lists it.
SHARED_WITH_CATALOG = {"C07AB02": "metoprolol succinate"}


def _main_word(generic: str) -> str:
    words = [w for w in re.split(r"[\s\-/]+", generic) if w]
    rest = [w for w in words if w not in SALT_WORDS]
    return (rest or words)[0]


def test_rows_are_well_formed():
    assert all(isinstance(p, Product) for p in PRODUCTS)
    for p in PRODUCTS:
        assert ATC5.match(p.atc), p
        assert p.generic == p.generic.strip().lower() and p.generic, p
        assert p.drug.strip() and p.strength.strip() and p.unit and p.form_unit, p
        float(p.dose)
        float(p.form_val)
        assert p.route in ROUTES, p
        assert 0 < p.weight <= 1.0, p
        # An infusion has a rate, not a frequency, and never goes home on a discharge list.
        assert (p.route == "IV DRIP") == (p.freq == ""), p
        if p.route in ("IV", "IV DRIP"):
            assert not p.discharge, p
    keys = [(p.generic, p.drug, p.strength, p.route) for p in PRODUCTS]
    assert len(keys) == len(set(keys))


def test_no_generic_or_code_repeats_the_catalog():
    core = {row[0].replace("_", " ") for row in catalog._DRUG_ROWS}
    assert not core & set(generics())
    core_atc = {row[2] for row in catalog._DRUG_ROWS}
    shared = {p.atc: p.generic for p in PRODUCTS if p.atc in core_atc}
    assert shared == SHARED_WITH_CATALOG


def test_one_substance_one_generic():
    # Within one ATC-5 code the products share their generic (a second spelling would split a drug).
    seen: dict[str, str] = {}
    for p in PRODUCTS:
        assert seen.setdefault(p.atc, p.generic) == p.generic, (p.atc, seen[p.atc], p.generic)


def test_counts_and_atc3_breadth():
    assert len(PRODUCTS) >= 300
    assert len(generics()) >= 260
    classes = {d.atc[:4] for d in catalog.DRUGS if d.atc} | set(by_atc3())
    assert 90 <= len(classes) <= 130, len(classes)
    # Long-tailed: a few dozen common products, most of them rare.
    weights = sorted((p.weight for p in PRODUCTS), reverse=True)
    assert 20 <= sum(w >= 0.3 for w in weights) <= 80
    assert sum(w <= 0.03 for w in weights) >= len(weights) / 2


def test_helpers():
    g = generics()
    assert len(g) == len(set(g)) and set(g) == {p.generic for p in PRODUCTS}
    assert g[0] == PRODUCTS[0].generic
    groups = by_atc3()
    assert sorted(i for ix in groups.values() for i in ix) == list(range(len(PRODUCTS)))
    assert all(PRODUCTS[i].atc[:4] == k for k, ix in groups.items() for i in ix)
    groups["A02B"] = []                      # callers get fresh objects
    g.clear()
    assert by_atc3()["A02B"] and generics()


@pytest.fixture(scope="module")
def atc_names(shared_data: Path) -> dict[str, set[str]]:
    names: dict[str, set[str]] = defaultdict(set)
    with gzip.open(shared_data / "mappings" / "atc_names.csv.gz", "rt", newline="") as f:
        for row in csv.DictReader(f):
            names[row["atc_code"].strip()].add(row["atc_name"].strip().lower())
    return names


def test_atc_codes_exist_at_level5(atc_names):
    missing = sorted({p.atc for p in PRODUCTS if p.atc not in atc_names})
    assert not missing


def test_atc_names_match_generics(atc_names):
    mismatched, matched = [], set()
    for p in PRODUCTS:
        if any(_main_word(p.generic) in name for name in atc_names.get(p.atc, ())):
            matched.add(p.generic)
        elif p.generic not in ATC_NAME_CHECK_EXCEPTIONS:
            mismatched.append((p.generic, p.atc, sorted(atc_names.get(p.atc, ()))))
    assert not mismatched
    # Every exception is a listed generic whose name really differs (the list stays short).
    assert set(ATC_NAME_CHECK_EXCEPTIONS) <= set(generics())
    assert not set(ATC_NAME_CHECK_EXCEPTIONS) & matched
