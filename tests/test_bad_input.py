"""Bad raw input: each case ends in a clear error naming file, column and row, or in a counted
drop-by-reason in the manifest (the table in `medmm.data.sources.mimic3`'s docstring). After an
error nothing exists at the output path."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from medmm.data.sources import prepare
from test_mimic3 import csv_bytes, raw_tables, write_mappings, write_raw


def _prepare(tmp_path: Path, raw: Path):
    return prepare("mimic3", raw, tmp_path / "out", mappings=write_mappings(tmp_path / "maps"), progress=False)


def _fails(tmp_path: Path, tables: dict, exc: type[Exception], *parts: str) -> str:
    """Prepare `tables`; expect `exc` whose message holds every one of `parts`; out must not exist."""
    raw = write_raw(tmp_path / "raw", tables)
    with pytest.raises(exc) as e:
        _prepare(tmp_path, raw)
    msg = str(e.value)
    for p in parts:
        assert p in msg, (p, msg)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))       # the temporary directory is gone too
    return msg


def _acc(ds, table: str) -> dict:
    a = ds.manifest.accounting[table]
    assert a.balanced
    return a.to_json()


def _set(tables: dict, name: str, row: int, col: str, value) -> None:
    header, rows = tables[name]
    rows[row][header.index(col)] = value


# ---- structural problems: errors --------------------------------------------------------------------

def test_missing_required_file(tmp_path):
    t = raw_tables()
    del t["DIAGNOSES_ICD"]
    _fails(tmp_path, t, FileNotFoundError, "DIAGNOSES_ICD", "not found")


def test_missing_column(tmp_path):
    t = raw_tables()
    header, rows = t["ADMISSIONS"]
    i = header.index("DISCHTIME")
    t["ADMISSIONS"] = (header[:i] + header[i + 1:], [r[:i] + r[i + 1:] for r in rows])
    _fails(tmp_path, t, ValueError, "ADMISSIONS.csv.gz", "missing column", "DISCHTIME")


def test_wrong_type_in_an_id_column(tmp_path):
    t = raw_tables()
    _set(t, "DIAGNOSES_ICD", 3, "SUBJECT_ID", "abc")
    _fails(tmp_path, t, ValueError, "DIAGNOSES_ICD.csv.gz", "column SUBJECT_ID", "data row 4", "ROW_ID 4", "'abc'")


def test_unparsable_timestamp(tmp_path):
    t = raw_tables()
    _set(t, "ADMISSIONS", 1, "ADMITTIME", "2151-13-45 08:00")
    _fails(tmp_path, t, ValueError, "ADMISSIONS.csv.gz", "column ADMITTIME", "data row 2", "ROW_ID 2",
           "timestamp")


def test_unparsable_timestamp_in_a_streamed_table(tmp_path):
    t = raw_tables()
    _set(t, "LABEVENTS", 2, "CHARTTIME", "yesterday")
    _fails(tmp_path, t, ValueError, "LABEVENTS.csv.gz", "column CHARTTIME", "data row 3", "ROW_ID 3")


def test_duplicate_primary_key(tmp_path):
    t = raw_tables()
    _set(t, "ADMISSIONS", 2, "HADM_ID", 100)
    _fails(tmp_path, t, ValueError, "ADMISSIONS.csv.gz", "column HADM_ID", "duplicate primary key 100",
           "data rows 1 (ROW_ID 1) and 3 (ROW_ID 3)")


def test_empty_required_file(tmp_path):
    raw = write_raw(tmp_path / "raw")
    (raw / "ADMISSIONS.csv.gz").unlink()
    (raw / "ADMISSIONS.csv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"ADMISSIONS\.csv: file is empty \(0 bytes\)"):
        _prepare(tmp_path, raw)
    assert not (tmp_path / "out").exists()


def test_empty_optional_file_is_a_note(tmp_path):
    raw = write_raw(tmp_path / "raw")
    (raw / "NOTEEVENTS.csv.gz").unlink()
    (raw / "NOTEEVENTS.csv").write_bytes(b"")
    ds = _prepare(tmp_path, raw)
    assert "NOTEEVENTS" not in ds.manifest.accounting
    assert any("NOTEEVENTS: NOTEEVENTS.csv is empty (0 bytes)" in n for n in ds.manifest.notes)


def test_truncated_gzip(tmp_path):
    t = raw_tables()
    header, rows = t["LABEVENTS"]
    # enough rows that the cut falls after the header line
    t["LABEVENTS"] = (header, [[i, 10, 100, 50912, "2150-01-01 12:00:00", str(i), i, "mg/dL", None]
                               for i in range(1, 5001)])
    raw = write_raw(tmp_path / "raw", t)
    f = raw / "LABEVENTS.csv.gz"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError) as e:
        _prepare(tmp_path, raw)
    assert "LABEVENTS.csv.gz" in str(e.value) and "truncated" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_invalid_utf8_outside_notes_is_an_error(tmp_path):
    raw = write_raw(tmp_path / "raw")
    header, rows = raw_tables()["PRESCRIPTIONS"]
    rows[1][header.index("DRUG")] = "Furos\udce9mide"     # a lone Latin-1 byte 0xE9
    (raw / "PRESCRIPTIONS.csv.gz").write_bytes(gzip.compress(csv_bytes(header, rows)))
    with pytest.raises(ValueError) as e:
        _prepare(tmp_path, raw)
    for part in ("PRESCRIPTIONS.csv.gz", "column DRUG", "data row 2", "ROW_ID 2", "UTF-8"):
        assert part in str(e.value), str(e.value)
    assert not (tmp_path / "out").exists()


# ---- row-level inconsistencies: counted drops ---------------------------------------------------------

def test_discharge_before_admission_is_dropped_and_counted(tmp_path):
    t = raw_tables()
    _set(t, "ADMISSIONS", 1, "DISCHTIME", "2151-02-28 08:00:00")     # visit 101 ends before it starts
    ds = _prepare(tmp_path, write_raw(tmp_path / "raw", t))
    assert _acc(ds, "ADMISSIONS")["dropped"] == {"discharge_before_admission": 1}
    assert 101 not in ds.table("visits")["visit_id"].to_list()
    # its rows in other tables lose their visit and are counted as such
    assert _acc(ds, "DIAGNOSES_ICD")["dropped"] == {"duplicate_code": 1, "unknown_visit": 1}
    assert _acc(ds, "PRESCRIPTIONS")["dropped"] == {"duplicate_code": 1, "unknown_visit": 1}


def test_diagnosis_of_a_missing_admission(tmp_path):
    t = raw_tables()
    _set(t, "DIAGNOSES_ICD", 5, "HADM_ID", 999)
    _set(t, "DIAGNOSES_ICD", 0, "HADM_ID", None)
    ds = _prepare(tmp_path, write_raw(tmp_path / "raw", t))
    assert _acc(ds, "DIAGNOSES_ICD") == {"read": 6, "kept": 3, "dropped": {
        "duplicate_code": 1, "no_admission": 1, "unknown_visit": 1}}


def test_diagnosis_whose_patient_disagrees_with_its_admission(tmp_path):
    t = raw_tables()
    _set(t, "DIAGNOSES_ICD", 5, "SUBJECT_ID", 20)      # visit 101 belongs to patient 10
    ds = _prepare(tmp_path, write_raw(tmp_path / "raw", t))
    assert _acc(ds, "DIAGNOSES_ICD")["dropped"] == {"duplicate_code": 1, "visit_patient_mismatch": 1}


def test_admission_of_an_unknown_patient(tmp_path):
    t = raw_tables()
    _set(t, "ADMISSIONS", 1, "SUBJECT_ID", 77)
    ds = _prepare(tmp_path, write_raw(tmp_path / "raw", t))
    assert _acc(ds, "ADMISSIONS")["dropped"] == {"unknown_patient": 1}


def test_unknown_icd9_code(tmp_path):
    t = raw_tables()
    _set(t, "DIAGNOSES_ICD", 0, "ICD9_CODE", "ABC12")   # malformed
    _set(t, "DIAGNOSES_ICD", 2, "ICD9_CODE", "0000")    # well-formed, no such category
    _set(t, "DIAGNOSES_ICD", 5, "ICD9_CODE", None)
    ds = _prepare(tmp_path, write_raw(tmp_path / "raw", t))
    assert _acc(ds, "DIAGNOSES_ICD")["dropped"] == {"duplicate_code": 1, "missing_code": 1, "unknown_icd9": 2}
    dx = ds.table("codes").filter(ds.table("codes")["system"] == "icd9_dx")
    assert dx["code"].to_list() == ["0389", "41401"]


def test_ndc_absent_from_the_mapping(tmp_path):
    t = raw_tables()
    _set(t, "PRESCRIPTIONS", 0, "NDC", "99999999999")   # aspirin: unknown NDC, but the name maps
    _set(t, "PRESCRIPTIONS", 3, "NDC", "88888888888")   # unknown NDC and unknown name
    ds = _prepare(tmp_path, write_raw(tmp_path / "raw", t))
    assert _acc(ds, "PRESCRIPTIONS")["dropped"] == {"duplicate_code": 1, "unmapped_drug": 1}
    dm = ds.manifest.extra["drug_mapping"]
    assert (dm["ndc"], dm["name"], dm["unmapped"]) == (0, 3, 1)
    med = ds.table("codes").filter(ds.table("codes")["system"] == "atc3")
    assert med["code"].to_list() == ["C03C", "N02B"] and med["source_value"].to_list() == ["Furosemide", "Aspirin"]


def test_non_utf8_note_is_dropped_and_counted(tmp_path):
    t = raw_tables()
    header, rows = t["NOTEEVENTS"]
    rows.append([5, 10, 101, "2151-03-02", None, None, "Discharge summary", "Report", None, None,
                 "Caf\udce9 au lait spots"])        # Latin-1 0xE9 inside UTF-8 text
    ds = _prepare(tmp_path, write_raw(tmp_path / "raw", t))
    assert _acc(ds, "NOTEEVENTS")["dropped"] == {"invalid_utf8": 1, "iserror": 1, "no_admission": 1,
                                                 "not_discharge_summary": 1}
    assert ds.table("notes")["note_id"].to_list() == [1]


def test_non_numeric_lab_value_is_counted(tmp_path):
    t = raw_tables()
    _set(t, "LABEVENTS", 0, "VALUENUM", None)
    ds = _prepare(tmp_path, write_raw(tmp_path / "raw", t))
    assert _acc(ds, "LABEVENTS") == {"read": 3, "kept": 1, "dropped": {"non_numeric": 2}}


def test_lab_rows_of_unknown_patient_or_visit_are_counted(tmp_path):
    t = raw_tables()
    _set(t, "LABEVENTS", 0, "HADM_ID", 999)         # no such admission
    _set(t, "LABEVENTS", 1, "SUBJECT_ID", 77)       # no such patient (outpatient lab)
    _set(t, "CHARTEVENTS", 3, "SUBJECT_ID", 20)     # admission 100 belongs to patient 10
    ds = _prepare(tmp_path, write_raw(tmp_path / "raw", t))
    assert _acc(ds, "LABEVENTS")["dropped"] == {"non_numeric": 1, "unknown_patient": 1, "unknown_visit": 1}
    assert _acc(ds, "CHARTEVENTS")["dropped"] == {"iserror": 1, "item_not_selected": 1, "visit_patient_mismatch": 1}
