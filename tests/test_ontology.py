"""CodeTree, the ICD-9-CM v32 trees (status, ancestors, vectorised status) and the ATC tree."""

from __future__ import annotations

import gzip
import json

import polars as pl
import pytest

from medmm.ontology.atc import atc_ancestors, atc_level, atc_tree, load_atc_names, truncate_atc, truncate_atc_expr
from medmm.ontology.icd9 import (
    icd9_dx_ancestors,
    icd9_dx_status,
    icd9_dx_status_expr,
    icd9_dx_subtree,
    icd9_proc_ancestors,
    icd9_proc_status,
    icd9_proc_status_expr,
    load_icd9_dx,
    load_icd9_proc,
    normalize_icd9,
)
from medmm.ontology.tree import ROOT, CodeTree

# ---- CodeTree --------------------------------------------------------------------------------


@pytest.fixture()
def small_tree() -> CodeTree:
    #        ROOT
    #       /    \
    #      A      B
    #     / \      \
    #   A1   A2     B1
    #   |
    #  A1x
    parent = {"A": None, "B": "ROOT", "A1": "A", "A2": "A", "B1": "B", "A1x": "A1"}
    return CodeTree("toy", parent, names={"A": "group a"})


def test_tree_structure(small_tree):
    t = small_tree
    assert len(t) == 6 and "A1x" in t and ROOT in t and "Z" not in t
    assert t.parent("A1x") == "A1" and t.parent("A") == ROOT and t.parent(ROOT) is None
    assert t.ancestors("A1x") == ["A1", "A", ROOT]
    assert t.ancestors("B") == [ROOT]
    assert [t.depth(c) for c in (ROOT, "B", "B1", "A1x")] == [0, 1, 2, 3]
    assert t.children(ROOT) == ["A", "B"] and t.children("A") == ["A1", "A2"] and t.children("A2") == []
    assert t.leaves() == ["A1x", "A2", "B1"]
    assert t.name("A") == "group a" and t.name("B1") == "B1"  # no name -> the code itself


def test_tree_unknown_code_names_system_and_code(small_tree):
    for call in (small_tree.parent, small_tree.ancestors, small_tree.depth, small_tree.children, small_tree.name):
        with pytest.raises(KeyError, match="toy.*'Q9'"):
            call("Q9")


def test_tree_subtree_and_json(small_tree):
    sub = small_tree.subtree(["A1x", "B"])
    assert sub.codes() == ["A", "A1", "A1x", "B"]
    assert sub.leaves() == ["A1x", "B"] and sub.ancestors("A1x") == ["A1", "A", ROOT]
    assert sub.name("A") == "group a"
    with pytest.raises(KeyError):
        small_tree.subtree(["A1x", "nope"])
    blob = json.loads(json.dumps(sub.to_json(with_names=True)))
    back = CodeTree.from_json(blob)
    assert back == sub and back.name("A") == "group a" and back.system == "toy"
    assert "names" not in sub.to_json()


def test_tree_rejects_bad_parents():
    with pytest.raises(ValueError, match="cycle"):
        CodeTree("toy", {"a": "b", "b": "a"})
    with pytest.raises(ValueError, match="'missing'"):
        CodeTree("toy", {"a": "missing"})
    with pytest.raises(ValueError, match="root"):
        CodeTree("toy", {ROOT: "a", "a": None})


# ---- ICD-9-CM --------------------------------------------------------------------------------


def test_icd9_dx_tree_shape():
    dx = load_icd9_dx()
    assert load_icd9_dx() is dx  # cached
    assert len(dx.leaves()) == 14567  # CMS v32 diagnosis list
    chapters = dx.children(ROOT)
    assert len(chapters) == 19 and {"001-139", "240-279", "800-999", "V01-V91", "E000-E999"} <= set(chapters)
    assert dx.ancestors("25001") == ["250", "240-279", ROOT]
    assert "diabetes" in dx.name("25001").lower()
    assert dx.ancestors("V5867") == ["V58", "V01-V91", ROOT]
    assert dx.ancestors("E8809") == ["E880", "E000-E999", ROOT]  # E-codes: 4-character category
    assert dx.ancestors("0389") == ["038", "001-139", ROOT]  # leading zero kept
    assert dx.ancestors("042") == ["001-139", ROOT]  # 3-character leaf is its own category
    assert {dx.depth(c) for c in dx.leaves()} == {2, 3}


def test_icd9_proc_tree_shape():
    pr = load_icd9_proc()
    assert len(pr.leaves()) == 3882
    assert len(pr.children(ROOT)) == 18 and {"00-00", "01-05", "17-17", "87-99"} <= set(pr.children(ROOT))
    assert pr.ancestors("3893") == ["38", "35-39", ROOT]
    assert pr.ancestors("0014") == ["00", "00-00", ROOT]  # chapter id differs from its category
    assert pr.ancestors("1711") == ["17", "17-17", ROOT]
    assert pr.ancestors("966") == ["96", "87-99", ROOT]
    assert "catheterization" in pr.name("3893").lower()


def test_icd9_normalize_and_status():
    assert normalize_icd9(" 250.01 ") == "25001" and normalize_icd9("v58.67") == "V5867"
    assert icd9_dx_status("25001") == "known" and icd9_dx_status("250.01") == "known"
    assert icd9_dx_status("2500") == "retired"  # non-leaf 4-digit code, category 250 exists
    assert icd9_dx_status("250") == "retired"  # the category itself
    assert icd9_dx_status("E8808") == "retired" and icd9_dx_status("E8809") == "known"
    for bad in ("", "XYZ", "25", "0000", "E88", "V5", "250011", "25A01"):
        assert icd9_dx_status(bad) == "unknown", bad
    assert icd9_proc_status("3893") == "known" and icd9_proc_status("38.93") == "known"
    assert icd9_proc_status("3601") == "retired"  # deleted in FY2006, category 36 exists
    for bad in ("", "5", "A123", "38931"):
        assert icd9_proc_status(bad) == "unknown", bad


def test_icd9_ancestors_of_retired_codes():
    assert icd9_dx_ancestors("25001") == ["250", "240-279", ROOT]
    assert icd9_dx_ancestors("2500") == ["250", "240-279", ROOT]
    assert icd9_dx_ancestors("250") == ["240-279", ROOT]
    assert icd9_proc_ancestors("3601") == ["36", "35-39", ROOT]
    with pytest.raises(KeyError, match="icd9_dx.*'0000'"):
        icd9_dx_ancestors("0000")
    sub = icd9_dx_subtree(["25001", "2500", "V58.67"])
    assert sub.parent("2500") == "250" and sub.parent("25001") == "250"
    assert sub.leaves() == ["2500", "25001", "V5867"]
    assert sub.children(ROOT) == ["240-279", "V01-V91"]


def test_icd9_status_expr_matches_scalar():
    codes = ["25001", "250.01", "2500", "250", "0000", "E8809", "V5867", "XYZ", None, " v58.67 "]
    df = pl.DataFrame({"c": codes}, schema={"c": pl.String})
    got = df.lazy().select(icd9_dx_status_expr("c")).collect().to_series().to_list()
    want = [icd9_dx_status(c) if c is not None else "unknown" for c in codes]
    assert got == want
    procs = ["3893", "3601", "966", "5", None]
    got = pl.DataFrame({"p": procs}, schema={"p": pl.String}).select(icd9_proc_status_expr("p")).to_series().to_list()
    assert got == ["known", "retired", "known", "unknown", "unknown"]


def test_icd9_mimic3_demo_status(shared_data):
    """MIMIC-III demo DIAGNOSES_ICD: every code is a v32 code or a retired one; none unknown."""
    path = shared_data / "mimic3-demo" / "DIAGNOSES_ICD.csv.gz"
    df = pl.read_csv(path, schema_overrides={"ICD9_CODE": pl.String})
    assert df.height == 1761
    status = df.select(icd9_dx_status_expr("ICD9_CODE").alias("s"))["s"].value_counts()
    counts = dict(zip(status["s"], status["count"]))
    assert counts.get("unknown", 0) == 0
    assert counts["known"] == 1716 and counts["retired"] == 45
    # the retired ones are attached under a v32 category
    retired = df.filter(icd9_dx_status_expr("ICD9_CODE") == "retired")["ICD9_CODE"].unique().to_list()
    assert all(len(icd9_dx_ancestors(c)) in (2, 3) for c in retired)
    proc = pl.read_csv(shared_data / "mimic3-demo" / "PROCEDURES_ICD.csv.gz", schema_overrides={"ICD9_CODE": pl.String})
    ps = proc.select(icd9_proc_status_expr("ICD9_CODE").alias("s"))["s"]
    assert (ps == "unknown").sum() == 0 and (ps == "known").sum() >= 500


# ---- ATC ---------------------------------------------------------------------------------------


def test_atc_levels_and_truncation():
    assert [atc_level(c) for c in ("C", "C07", "C07A", "C07AB", "C07AB02")] == [1, 2, 3, 4, 5]
    for bad in ("", "C0", "C07A1", "c07a", "107A", "C07ABX2", "C07AB0"):
        with pytest.raises(ValueError, match="malformed ATC"):
            atc_level(bad)
    assert truncate_atc("C07AB02", 3) == "C07A" and truncate_atc("C07A", 3) == "C07A"
    with pytest.raises(ValueError, match="deeper"):
        truncate_atc("C07", 3)
    assert atc_ancestors("C07AB") == ["C07A", "C07", "C"]
    df = pl.DataFrame({"a": ["C07AB02", " c07a ", "C07", "XX", None]})
    assert df.select(truncate_atc_expr("a", 3)).to_series().to_list() == ["C07A", "C07A", None, None, None]


def test_atc_tree():
    t = atc_tree(["C07AB", "C07AA", "N02B"], names={"C07A": "beta blocking agents", "Z99": "not in tree"})
    assert t.ancestors("C07AB") == ["C07A", "C07", "C", ROOT]
    assert t.children("C07A") == ["C07AA", "C07AB"] and t.children(ROOT) == ["C", "N"]
    assert t.leaves() == ["C07AA", "C07AB", "N02B"]
    assert t.name("C07A") == "beta blocking agents" and "Z99" not in t.to_json(with_names=True)["names"]
    with pytest.raises(ValueError):
        atc_tree(["C07AB", "bogus"])


def test_load_atc_names(tmp_path):
    good = tmp_path / "names.csv.gz"
    with gzip.open(good, "wt") as f:
        f.write("atc_code,atc_name\nC,cardiovascular system\nC07A,beta blocking agents\nC07A,second name\n")
    assert load_atc_names(good) == {"C": "cardiovascular system", "C07A": "beta blocking agents"}
    bad = tmp_path / "bad.csv"
    bad.write_text("atc_code,atc_name\nC,cardiovascular system\nC7A,broken\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 3, column atc_code"):
        load_atc_names(bad)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("code,name\nC,x\n")
    with pytest.raises(ValueError, match=r"wrong\.csv: missing column"):
        load_atc_names(wrong)


def test_atc_names_shared(shared_data):
    names = load_atc_names(shared_data / "mappings" / "atc_names.csv.gz")
    assert names["C07A"] == "beta blocking agents" and names["C"] == "cardiovascular system"
    assert {atc_level(c) for c in names} == {1, 2, 3, 4, 5}
