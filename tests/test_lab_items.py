"""Tests of the long-tail lab catalogue (medmm.data.synth.lab_items).

The shared-data tests check every item against the real MIMIC-III demo dictionary and events
(MEDMM_SHARED_DATA, which .ci/run sets to ../shared/data); the rest run anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from medmm.data.synth import catalog as cat
from medmm.data.synth import lab_items as li
from medmm.data.synth.lab_items import EXTRA_LABS, PANELS, ExtraLab

CORE_ROWS = 200.0   # rows of the 27 core items per synthetic admission (the calibration point)


# --------------------------------------------------------------------------------------------
# The catalogue on its own
# --------------------------------------------------------------------------------------------


def test_size_and_ids():
    ids = [lab.itemid for lab in EXTRA_LABS]
    assert len(EXTRA_LABS) >= 200
    assert len(set(ids)) == len(ids), "duplicate item ids"
    assert not set(ids) & {lab.itemid for lab in cat.LABS}, "repeats an item of catalog.LABS"
    assert li.EXTRA_LAB_INDEX == {i: k for k, i in enumerate(ids)}


def test_fields_well_formed():
    for lab in EXTRA_LABS:
        where = (lab.itemid, lab.label)
        assert lab.kind in li.KINDS, where
        assert lab.label == lab.label.strip() and lab.fluid and lab.category and lab.panel, where
        assert lab.unit is None or (lab.unit.strip() == lab.unit and lab.unit), where
        assert lab.draws_per_admission > 0 and lab.decimals >= 0, where
        assert len(lab.values) == len(lab.value_p) == len(set(lab.values)), where
        assert all(0 < p <= 1 for p in lab.value_p), where
        if lab.kind == "qualitative":
            assert lab.values and math.isclose(sum(lab.value_p), 1.0, abs_tol=1e-9), where
            assert lab.text_p == 1.0
        else:
            assert lab.sd >= 0 and lab.low <= lab.high, where
            assert lab.floor <= lab.mean or lab.mean == 0, where
        if lab.kind == "mixed":
            assert lab.values and 0 < sum(lab.value_p) < 1, where
        if lab.kind == "numeric":
            assert not lab.values and lab.text_p == 0.0, where


def test_all_three_kinds_and_text_heavy_panels():
    kinds = {k: sum(lab.kind == k for lab in EXTRA_LABS) for k in li.KINDS}
    assert min(kinds.values()) >= 20, kinds
    by_id = {lab.itemid: lab for lab in EXTRA_LABS}
    # The panels that make most of MIMIC's text rows are there and mostly text.
    for panel in ("urinalysis", "smear", "blood_gas", "hold", "tox"):
        labs = [by_id[i] for i in PANELS[panel]]
        text = sum(lab.draws_per_admission * lab.text_p for lab in labs)
        assert text > 0, panel
    assert by_id[50800].values[0] == "ART"          # blood-gas specimen type, the commonest text row


def test_panels_partition_the_catalogue():
    ids = {lab.itemid for lab in EXTRA_LABS}
    listed = [i for members in PANELS.values() for i in members]
    assert sorted(listed) == sorted(ids), "every item in exactly one panel"
    for lab in EXTRA_LABS:
        assert lab.itemid in PANELS[lab.panel]
    assert all(members for members in PANELS.values())


def test_draws_are_long_tailed():
    rates = np.array([lab.draws_per_admission for lab in EXTRA_LABS])
    assert (rates >= 5).sum() >= 3                   # a few items come with every CBC / blood gas
    assert rates.max() <= 20
    assert np.median(rates) < 0.1                    # most are rare
    assert math.isclose(li.expected_rows_per_admission(), rates.sum())


def test_nonnumeric_share():
    share = li.nonnumeric_share(CORE_ROWS)
    assert 0.08 <= share <= 0.15, share
    # By hand: text rows over all rows.
    text = sum(lab.draws_per_admission * (1.0 if lab.kind == "qualitative" else sum(lab.value_p))
               for lab in EXTRA_LABS)
    rows = sum(lab.draws_per_admission for lab in EXTRA_LABS)
    assert math.isclose(share, text / (CORE_ROWS + rows))
    assert math.isclose(li.expected_text_rows_per_admission(), text)
    assert math.isclose(li.nonnumeric_share(0.0), text / rows)
    # More numeric core rows dilute the text rows; across the core sizes the generator uses it
    # stays in MIMIC's range.
    shares = [li.nonnumeric_share(c) for c in (150, 200, 250)]
    assert shares == sorted(shares, reverse=True)
    assert 0.08 <= shares[-1] and shares[0] <= 0.15
    # A subset is tuned the same way.
    urinalysis = tuple(lab for lab in EXTRA_LABS if lab.panel == "urinalysis")
    assert li.expected_rows_per_admission(urinalysis) < li.expected_rows_per_admission()


def test_nonnumeric_share_matches_a_simulation():
    """Draw every item Poisson(draws_per_admission) times and each row's text-or-number; the share
    of text rows over many admissions converges on nonnumeric_share."""
    rng = np.random.default_rng(0)
    n_adm = 4000
    rates = np.array([lab.draws_per_admission for lab in EXTRA_LABS])
    text_p = np.array([lab.text_p for lab in EXTRA_LABS])
    counts = rng.poisson(rates * n_adm)                      # (L,) rows over all admissions
    text = rng.binomial(counts, text_p).sum()
    share = text / (counts.sum() + CORE_ROWS * n_adm)
    assert abs(share - li.nonnumeric_share(CORE_ROWS)) < 0.003


def test_bad_items_are_refused():
    good = next(lab for lab in EXTRA_LABS if lab.kind == "qualitative")
    with pytest.raises(ValueError, match="kind"):
        replace(good, kind="text")
    with pytest.raises(ValueError, match="sum to 1"):
        replace(good, values=("NEG", "POS"), value_p=(0.5, 0.4))
    with pytest.raises(ValueError, match="pair up"):
        replace(good, values=("NEG",), value_p=(0.5, 0.5))
    with pytest.raises(ValueError, match="mixed"):
        ExtraLab(1, "x", "Blood", "Chemistry", None, "mixed", 1.0, 0.1, 0.0, 2.0, draws_per_admission=1.0)
    with pytest.raises(ValueError, match="low <= high"):
        ExtraLab(1, "x", "Blood", "Chemistry", None, "numeric", 1.0, 0.1, 3.0, 2.0, draws_per_admission=1.0)
    with pytest.raises(ValueError, match="draws_per_admission"):
        ExtraLab(1, "x", "Blood", "Chemistry", None, "numeric", 1.0, 0.1, 0.0, 2.0)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="core_rows"):
            li.nonnumeric_share(bad)


# --------------------------------------------------------------------------------------------
# Against the real MIMIC-III demo
# --------------------------------------------------------------------------------------------


@dataclass(repr=False)        # no repr: a failing assertion would print 76 k events
class _Demo:
    d_lab: dict[str, dict]    # ITEMID -> its D_LABITEMS row
    items: dict[str, dict]    # ITEMID -> n, n_text, texts, units of its LABEVENTS rows
    events: pl.DataFrame


@pytest.fixture(scope="module")
def demo(shared_data: Path) -> _Demo:
    root = shared_data / "mimic3-demo"
    if not (root / "D_LABITEMS.csv.gz").is_file() or not (root / "LABEVENTS.csv.gz").is_file():
        pytest.skip(f"no MIMIC-III demo under {root}")
    d_lab = pl.read_csv(root / "D_LABITEMS.csv.gz", infer_schema=False)
    events = pl.read_csv(root / "LABEVENTS.csv.gz", infer_schema=False,
                         columns=["HADM_ID", "ITEMID", "VALUE", "VALUENUM", "VALUEUOM"])
    per_item = events.group_by("ITEMID").agg(
        n=pl.len(),
        n_text=pl.col("VALUENUM").is_null().sum(),
        texts=pl.col("VALUE").filter(pl.col("VALUENUM").is_null()).unique(),
        units=pl.col("VALUEUOM").str.strip_chars().filter(pl.col("VALUEUOM").str.strip_chars() != "").unique(),
    )
    return _Demo(d_lab={r["ITEMID"]: r for r in d_lab.iter_rows(named=True)},
                 items={r["ITEMID"]: r for r in per_item.iter_rows(named=True)}, events=events)


def test_items_are_real_d_labitems_rows(demo):
    for lab in EXTRA_LABS:
        row = demo.d_lab.get(str(lab.itemid))
        assert row is not None, f"{lab.itemid} is not a D_LABITEMS ITEMID"
        assert (row["LABEL"], row["FLUID"], row["CATEGORY"]) == (lab.label, lab.fluid, lab.category), lab.itemid


def test_items_occur_in_the_demo_with_their_units(demo):
    for lab in EXTRA_LABS:
        seen = demo.items.get(str(lab.itemid))
        assert seen is not None, f"{lab.itemid} {lab.label} never occurs in the demo LABEVENTS"
        units = set(seen["units"])
        if lab.unit is None:
            assert not units, (lab.itemid, units)
        else:
            assert lab.unit in units, (lab.itemid, lab.unit, units)


def test_kinds_and_text_values_match_the_demo(demo):
    for lab in EXTRA_LABS:
        seen = demo.items[str(lab.itemid)]
        text_share = seen["n_text"] / seen["n"]
        if lab.kind == "qualitative":
            assert text_share >= 0.9, (lab.itemid, text_share)
        elif lab.kind == "numeric":
            assert text_share <= 0.05, (lab.itemid, text_share)
        else:
            assert 0 < text_share < 1, (lab.itemid, text_share)
        # Every text result (qualitative) and text form (mixed) is one MIMIC writes for this item.
        missing = set(lab.values) - set(seen["texts"])
        assert not missing, (lab.itemid, lab.label, missing)


def test_calibrated_share_matches_the_demo(demo):
    """At the calibration point the catalogue's share of text rows is the demo's (0.119)."""
    events = demo.events
    demo_share = events["VALUENUM"].is_null().mean()
    core = {str(lab.itemid) for lab in cat.LABS}
    n_adm = events["HADM_ID"].drop_nulls().n_unique()
    core_per_adm = events.filter(pl.col("ITEMID").is_in(core)).height / n_adm
    assert 250 < core_per_adm < 400                   # the demo's 316, which the rates are scaled from
    assert abs(li.nonnumeric_share(CORE_ROWS) - demo_share) < 0.02, (li.nonnumeric_share(CORE_ROWS), demo_share)
