import json

import polars as pl
import pytest

from medmm.data import schema
from medmm.data.io import atomic_dir


def test_atomic_dir_leaves_nothing_on_error(tmp_path):
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half.parquet").write_text("x")
            raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_refuses_to_clobber_then_replaces(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "old").write_text("old")
    with pytest.raises(FileExistsError):
        with atomic_dir(out):
            pass
    with atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    assert [p.name for p in out.iterdir()] == ["new"]


def test_conform_casts_and_orders_columns():
    df = pl.DataFrame({"patient_id": [1], "sex": ["F"], "birth_time": [None], "death_time": [None], "junk": [0]})
    out = schema.conform("patients", df).collect()
    assert out.columns == ["patient_id", "sex", "birth_time", "death_time"]
    assert out.schema == schema.polars_schema("patients")


def test_conform_names_missing_columns():
    with pytest.raises(ValueError, match="sex"):
        schema.conform("patients", pl.DataFrame({"patient_id": [1]}))


def test_accounting_balance_and_manifest_round_trip(tmp_path):
    acc = schema.Accounting(read=10, kept=7)
    acc.drop("orphan_visit", 2)
    assert not acc.balanced
    acc.drop("unknown_icd9_code", 1)
    assert acc.balanced
    m = schema.Manifest(source="mimic3", accounting={"DIAGNOSES_ICD": acc}, tables={"codes": 7})
    (tmp_path / "manifest.json").write_text(json.dumps(m.to_json()))
    ds = schema.load_dataset(tmp_path)
    assert ds.manifest.accounting["DIAGNOSES_ICD"].dropped == {"orphan_visit": 2, "unknown_icd9_code": 1}


def test_load_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        schema.load_dataset(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"schema_version": "0.1", "source": "x", "inputs": {}, "accounting": {}, "tables": {}}))
    with pytest.raises(ValueError, match="schema version"):
        schema.load_dataset(tmp_path)
