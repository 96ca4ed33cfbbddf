"""MIMIC-III source: a tiny hand-written raw release -> canonical dataset, checked row by row;
header/compression variants; the shared MIMIC-III demo; the synthetic generator end to end."""

from __future__ import annotations

import copy
import csv
import gzip
import hashlib
import io
from pathlib import Path

import polars as pl
import pytest

from medmm.data.schema import SCHEMAS, load_dataset, polars_schema
from medmm.data.sources import prepare
from medmm.data.sources.mimic3 import CHART_ITEMIDS, clean_note_text

# ---- a tiny raw release, written in the MIMIC-III layout (quoted upper-case headers, .csv.gz) ----

NOTE_TEXT = "Admission Date:  [**2150-1-1**]\r\nPatient HAS  CHF.\nPlan: Lasix 40mg"

RAW: dict[str, tuple[list[str], list[list]]] = {
    "PATIENTS": (
        ["ROW_ID", "SUBJECT_ID", "GENDER", "DOB", "DOD", "DOD_HOSP", "DOD_SSN", "EXPIRE_FLAG"],
        [[1, 10, "F", "2100-01-01 00:00:00", None, None, None, 0],
         # DOB shifted by MIMIC (>89 years at admission): ages come out ~300
         [2, 20, "M", "1800-01-01 00:00:00", "2100-06-03 00:00:00", "2100-06-03 00:00:00", None, 1]],
    ),
    "ADMISSIONS": (
        ["ROW_ID", "SUBJECT_ID", "HADM_ID", "ADMITTIME", "DISCHTIME", "DEATHTIME", "ADMISSION_TYPE",
         "DIAGNOSIS", "HOSPITAL_EXPIRE_FLAG"],
        [[1, 10, 100, "2150-01-01 10:00:00", "2150-01-05 12:00:00", None, "EMERGENCY", "CHF", 0],
         [2, 10, 101, "2151-03-01 08:00:00", "2151-03-02 08:00:00", None, "ELECTIVE", "DM", 0],
         [3, 20, 200, "2100-06-01 00:00:00", "2100-06-03 00:00:00", "2100-06-03 00:00:00", "EMERGENCY", "MI", 1]],
    ),
    "ICUSTAYS": (
        ["ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "DBSOURCE", "FIRST_CAREUNIT", "LAST_CAREUNIT",
         "INTIME", "OUTTIME", "LOS"],
        [[1, 10, 100, 1000, "carevue", "MICU", "MICU", "2150-01-01 11:00:00", "2150-01-03 11:00:00", 2.0]],
    ),
    "DIAGNOSES_ICD": (
        ["ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"],
        [[1, 10, 100, 2, "4280"],
         [2, 10, 100, 1, "0389"],       # leading zero must survive
         [3, 10, 100, 3, "V5867"],
         [4, 20, 200, 1, "41401"],
         [5, 20, 200, 2, "41401"],      # repeated in the visit -> duplicate_code
         [6, 10, 101, 1, "25000"]],
    ),
    "PROCEDURES_ICD": (
        ["ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"],
        [[1, 10, 100, 1, "3893"]],
    ),
    "PRESCRIPTIONS": (
        ["ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "STARTDATE", "ENDDATE", "DRUG_TYPE", "DRUG", "NDC"],
        [[1, 10, 100, 1000, "2150-01-02 00:00:00", "2150-01-04 00:00:00", "MAIN", "Aspirin", "00904404073"],
         [2, 10, 100, 1000, "2150-01-01 00:00:00", "2150-01-02 00:00:00", "MAIN", "Furosemide", "0"],
         [3, 10, 100, 1000, "2150-01-03 00:00:00", "2150-01-04 00:00:00", "MAIN", "Furosemide", "0"],
         [4, 10, 101, None, "2151-03-01 00:00:00", "2151-03-02 00:00:00", "MAIN", "Mystery", "12345678901"]],
    ),
    "NOTEEVENTS": (
        ["ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CHARTTIME", "STORETIME", "CATEGORY", "DESCRIPTION",
         "CGID", "ISERROR", "TEXT"],
        [[1, 10, 100, "2150-01-05", None, None, "Discharge summary", "Report", None, None, NOTE_TEXT],
         [2, 10, 100, "2150-01-02", "2150-01-02 10:00:00", None, "Radiology", "CXR", None, None, "No PNA."],
         [3, 20, 200, "2100-06-03", None, None, "Discharge summary", "Report", None, 1, "Wrong patient."],
         [4, 20, None, "2100-06-03", None, None, "Discharge summary", "Report", None, None, "No admission."]],
    ),
    "LABEVENTS": (
        ["ROW_ID", "SUBJECT_ID", "HADM_ID", "ITEMID", "CHARTTIME", "VALUE", "VALUENUM", "VALUEUOM", "FLAG"],
        [[1, 10, 100, 50912, "2150-01-01 12:00:00", "1.2", 1.2, "mg/dL", None],
         [2, 10, None, 50912, "2149-12-01 12:00:00", "1.0", 1.0, "mg/dL", None],   # outpatient lab
         [3, 10, 100, 51000, "2150-01-01 12:00:00", "POS", None, None, "abnormal"]],
    ),
    "CHARTEVENTS": (
        ["ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "ITEMID", "CHARTTIME", "STORETIME", "CGID", "VALUE",
         "VALUENUM", "VALUEUOM", "WARNING", "ERROR", "RESULTSTATUS", "STOPPED"],
        [[1, 10, 100, 1000, 211, "2150-01-01 12:00:00", None, 1, "80", 80, "BPM", None, None, None, None],
         [2, 10, 100, 1000, 220045, "2150-01-01 13:00:00", None, 1, "82", 82, "bpm", 0, 1, None, None],
         [3, 10, 100, 1000, 999999, "2150-01-01 13:00:00", None, 1, "x", 1, None, 0, 0, None, None],
         [4, 10, 100, 1000, 220179, "2150-01-01 13:00:00", None, 1, "120", 120, "mmHg", 0, 0, None, None]],
    ),
}

NDC_RXNORM = "{'00904404073': u'243670', 'idx': 1}"
RXNORM_ATC = "YEAR,MONTH,NDC,RXCUI,ATC4\n2015,1,00904-4040-73,243670,B01AC\n"
DRUG_ATC = "drug,atc_code\nFurosemide,C03CA01\nAspirin,N02BA01\n"


def raw_tables() -> dict[str, tuple[list[str], list[list]]]:
    """A deep copy of the tiny release, for tests to edit."""
    return copy.deepcopy(RAW)


def csv_bytes(header: list[str], rows: list[list], lower: bool = False, encoding: str = "utf-8") -> bytes:
    """MIMIC-style CSV: quoted header, strings quoted, empty = missing."""
    buf = io.StringIO()
    head = [h.lower() if lower else h for h in header]
    buf.write(",".join(f'"{h}"' for h in head) + "\n")
    w = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue().encode(encoding, errors="surrogateescape")


def write_raw(root: Path, tables: dict | None = None, gz: bool = True, lower: bool = False) -> Path:
    """Write `tables` (default: the tiny release) as a raw MIMIC-III directory under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for name, (header, rows) in (tables if tables is not None else RAW).items():
        data = csv_bytes(header, rows, lower=lower)
        stem = name.lower() if lower else name
        if gz:
            (root / f"{stem}.csv.gz").write_bytes(gzip.compress(data))
        else:
            (root / f"{stem}.csv").write_bytes(data)
    return root


def write_mappings(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ndc2rxnorm_mapping.txt").write_text(NDC_RXNORM)
    (root / "ndc2atc_level4.csv").write_text(RXNORM_ATC)
    (root / "mimic_drug_to_atc.csv").write_text(DRUG_ATC)
    return {"dir": root}


def run(tmp_path: Path, tables: dict | None = None, **kw):
    raw = write_raw(tmp_path / "raw", tables, gz=kw.pop("gz", True), lower=kw.pop("lower", False))
    return prepare("mimic3", raw, tmp_path / "out", mappings=write_mappings(tmp_path / "maps"),
                   progress=False, **kw)


# ---- the tiny release, row by row ---------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return run(tmp_path_factory.mktemp("tiny"))


def test_every_table_has_the_canonical_schema(tiny):
    for table in SCHEMAS:
        df = tiny.table(table)
        assert df.schema == polars_schema(table), table
        assert tiny.manifest.tables[table] == df.height


def test_accounting_balances_with_reasons(tiny):
    acc = {k: v.to_json() for k, v in tiny.manifest.accounting.items()}
    for name, a in tiny.manifest.accounting.items():
        assert a.balanced, name
    assert acc["DIAGNOSES_ICD"] == {"read": 6, "kept": 5, "dropped": {"duplicate_code": 1}}
    assert acc["PRESCRIPTIONS"] == {"read": 4, "kept": 2, "dropped": {"duplicate_code": 1, "unmapped_drug": 1}}
    assert acc["NOTEEVENTS"] == {"read": 4, "kept": 1, "dropped": {"iserror": 1, "no_admission": 1,
                                                                   "not_discharge_summary": 1}}
    assert acc["LABEVENTS"] == {"read": 3, "kept": 2, "dropped": {"non_numeric": 1}}
    assert acc["CHARTEVENTS"] == {"read": 4, "kept": 2, "dropped": {"iserror": 1, "item_not_selected": 1}}
    assert acc["ADMISSIONS"] == {"read": 3, "kept": 3, "dropped": {}}


def test_patients_and_visits(tiny):
    p = tiny.table("patients")
    assert p["patient_id"].to_list() == [10, 20] and p["sex"].to_list() == ["F", "M"]
    v = tiny.table("visits").sort("visit_id")
    assert v["visit_id"].to_list() == [100, 101, 200]
    assert v["died_in_hospital"].to_list() == [False, False, True]
    age = dict(zip(v["visit_id"], v["age"]))
    assert age[100] == pytest.approx(50.0, abs=0.01)
    assert age[200] == pytest.approx(300.4, abs=0.1)      # MIMIC's >89 shift, stored as computed
    assert any("shifted" in n for n in tiny.manifest.notes)
    s = tiny.table("stays")
    assert s.rows() == [(1000, 100, 10, s["in_time"][0], s["out_time"][0], "MICU", "carevue")]


def test_diagnoses_in_seq_num_order_as_strings(tiny):
    c = tiny.table("codes")
    dx = c.filter(pl.col("system") == "icd9_dx")
    assert dx.filter(pl.col("visit_id") == 100)["code"].to_list() == ["0389", "4280", "V5867"]
    assert dx.filter(pl.col("visit_id") == 100)["seq"].to_list() == [0, 1, 2]
    assert dx.filter(pl.col("visit_id") == 200)["code"].to_list() == ["41401"]
    proc = c.filter(pl.col("system") == "icd9_proc")
    assert proc["code"].to_list() == ["3893"]


def test_prescriptions_mapped_to_atc3(tiny):
    med = tiny.table("codes").filter(pl.col("system") == "atc3")
    # visit 100: furosemide (started day 1, name route), aspirin (day 2, NDC route); repeat collapsed
    assert med.select("visit_id", "code", "seq", "source_value").rows() == [
        (100, "C03C", 0, "Furosemide"), (100, "B01A", 1, "00904404073")]
    dm = tiny.manifest.extra["drug_mapping"]
    assert (dm["rows"], dm["ndc"], dm["name"], dm["unmapped"]) == (4, 1, 2, 1)
    assert dm["mapped_fraction"] == pytest.approx(0.75)


def test_notes_discharge_only_cleaned_length_preserving(tiny):
    n = tiny.table("notes")
    assert n["note_id"].to_list() == [1] and n["category"].to_list() == ["discharge summary"]
    text = n["text"][0]
    assert len(text) == len(NOTE_TEXT)
    assert text == NOTE_TEXT.lower().replace("\r", " ").replace("\n", " ")
    assert "**]  patient has  chf. plan" in text   # "\r\n" -> two spaces, whitespace not collapsed
    assert n["chart_time"][0] is not None      # CHARTTIME empty -> CHARTDATE


def test_measurements_labs_and_vitals(tiny):
    m = tiny.table("measurements")
    labs = m.filter(pl.col("source") == "lab").sort("time")
    assert labs["visit_id"].to_list() == [None, 100]          # outpatient lab kept, no visit
    assert labs["value"].to_list() == [1.0, 1.2]
    chart = m.filter(pl.col("source") == "chart").sort("item_id")
    assert chart["item_id"].to_list() == [211, 220179]
    assert chart["stay_id"].to_list() == [1000, 1000]
    assert set(chart["item_id"]) <= set(CHART_ITEMIDS)


def test_manifest_inputs_hash_the_raw_files(tiny, tmp_path):
    inputs = tiny.manifest.inputs
    raw = tiny.path.parent / "raw"
    for name in RAW:
        f = raw / f"{name}.csv.gz"
        assert inputs[f.name] == {"sha256": hashlib.sha256(f.read_bytes()).hexdigest(), "bytes": f.stat().st_size}
    assert "mappings/mimic_drug_to_atc.csv" in inputs


# ---- layout variants -----------------------------------------------------------------------------

def test_lower_case_headers_and_plain_csv_give_the_same_dataset(tiny, tmp_path):
    other = run(tmp_path, gz=False, lower=True)
    for table in SCHEMAS:
        assert other.table(table).equals(tiny.table(table)), table


def test_demo_broken_noteevents_header_and_absent_tables(tmp_path):
    t = raw_tables()
    for name in ("CHARTEVENTS", "ICUSTAYS", "PROCEDURES_ICD", "LABEVENTS", "PRESCRIPTIONS"):
        del t[name]
    raw = write_raw(tmp_path / "raw", t)
    # The MIMIC-III demo's NOTEEVENTS, byte for byte: a broken header and no rows.
    header = ('"row_id, "subject_id", "hadm_id", "chartdate", "charttime", "storetime", "category", '
              '"description", "cgid", "iserror", "text"\n')
    (raw / "NOTEEVENTS.csv.gz").write_bytes(gzip.compress(header.encode()))
    ds = prepare("mimic3", raw, tmp_path / "out", mappings={}, progress=False)
    assert ds.manifest.accounting["NOTEEVENTS"].to_json() == {"read": 0, "kept": 0, "dropped": {}}
    assert ds.manifest.tables["notes"] == 0 and ds.manifest.tables["measurements"] == 0
    notes = " | ".join(ds.manifest.notes)
    for name in ("CHARTEVENTS", "ICUSTAYS", "PROCEDURES_ICD", "LABEVENTS", "PRESCRIPTIONS"):
        assert f"{name}: not found" in notes
    assert "NOTEEVENTS: the file has a header and no rows" in notes


def test_codes_are_read_as_strings_even_when_all_numeric(tmp_path):
    t = raw_tables()
    t["DIAGNOSES_ICD"] = (t["DIAGNOSES_ICD"][0], [[1, 10, 100, 1, "0010"], [2, 10, 100, 2, "00845"]])
    ds = run(tmp_path, t, gz=False)
    assert ds.table("codes").filter(pl.col("system") == "icd9_dx")["code"].to_list() == ["0010", "00845"]


def test_include_labs_false_skips_events(tmp_path):
    ds = run(tmp_path, include_labs=False)
    assert "LABEVENTS" not in ds.manifest.accounting and "CHARTEVENTS" not in ds.manifest.accounting
    assert ds.manifest.tables["measurements"] == 0
    assert any("include_labs=False" in n for n in ds.manifest.notes)


def test_no_drug_mapping_drops_are_counted_and_said(tmp_path):
    raw = write_raw(tmp_path / "raw")
    ds = prepare("mimic3", raw, tmp_path / "out", mappings={}, progress=False)
    assert ds.manifest.accounting["PRESCRIPTIONS"].to_json() == {"read": 4, "kept": 0, "dropped": {"unmapped_drug": 4}}
    assert any("no drug mapping files" in n for n in ds.manifest.notes)


def test_overwrite_and_registry(tmp_path, capsys):
    raw = write_raw(tmp_path / "raw")
    maps = write_mappings(tmp_path / "maps")
    prepare("mimic3", raw, tmp_path / "out", mappings=maps, progress=False)
    with pytest.raises(FileExistsError):
        prepare("mimic3", raw, tmp_path / "out", mappings=maps, progress=False)
    prepare("mimic3", raw, tmp_path / "out", mappings=maps, progress=True, overwrite=True)
    assert "DIAGNOSES_ICD" in capsys.readouterr().out
    with pytest.raises(ValueError, match="unknown source"):
        prepare("mimic9", raw, tmp_path / "x", mappings=maps)


def test_cli_prepare_prints_the_summary(tmp_path, capsys):
    from medmm.cli import main

    raw = write_raw(tmp_path / "raw")
    maps = write_mappings(tmp_path / "maps")
    rc = main(["prepare", "--source", "mimic3", "--raw", str(raw), "--out", str(tmp_path / "out"),
               "--ndc-rxnorm", str(maps["dir"] / "ndc2rxnorm_mapping.txt"),
               "--rxnorm-atc", str(maps["dir"] / "ndc2atc_level4.csv"),
               "--drug-atc", str(maps["dir"] / "mimic_drug_to_atc.csv"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "drug mapping: 75.0% of 4 prescriptions" in out
    assert "unmapped_drug" in out and "codes" in out
    assert load_dataset(tmp_path / "out").manifest.tables["codes"] == 8


def test_clean_note_text_keeps_every_offset():
    raw = ["A\r\nB\rC\nD", "İstanbul  TWO  spaces\n", "", None]
    out = pl.DataFrame({"text": raw}).select(clean_note_text("text"))["text"].to_list()
    assert out[:3] == ["a  b c d", "istanbul  two  spaces ", ""] and out[3] is None
    assert [len(a) for a in out[:3]] == [len(a) for a in raw[:3]]


# ---- real data: the MIMIC-III demo (shared_data) --------------------------------------------------

def test_mimic3_demo(shared_data, tmp_path):
    m = shared_data / "mappings"
    ds = prepare("mimic3", shared_data / "mimic3-demo", tmp_path / "demo",
                 mappings={"ndc_rxnorm": m / "ndc2rxnorm_mapping.txt", "drug_atc": m / "mimic_drug_to_atc.csv.gz"},
                 progress=False)
    acc = ds.manifest.accounting
    assert all(a.balanced for a in acc.values())
    assert ds.manifest.tables["patients"] == 100 and ds.manifest.tables["visits"] == 129
    assert acc["DIAGNOSES_ICD"].read == 1761
    assert acc["DIAGNOSES_ICD"].kept == ds.table("codes").filter(pl.col("system") == "icd9_dx").height
    assert acc["LABEVENTS"].read == 76074
    assert acc["PRESCRIPTIONS"].read == 10398
    dm = ds.manifest.extra["drug_mapping"]
    assert 0.85 < dm["mapped_fraction"] < 0.99          # README: ~93% by the name route
    assert dm["unmapped"] == acc["PRESCRIPTIONS"].dropped["unmapped_drug"]
    notes = " | ".join(ds.manifest.notes)
    assert "CHARTEVENTS: not found" in notes and "NOTEEVENTS: the file has a header and no rows" in notes
    v = ds.table("visits")
    assert v["age"].min() >= 15 and v.filter(pl.col("age") > 120).height > 0


# ---- synthetic generator end to end ---------------------------------------------------------------

def test_synthetic_200_patients_end_to_end(tmp_path):
    synth = pytest.importorskip("medmm.data.synth")
    raw = Path(synth.generate(tmp_path / "raw", n_patients=200, seed=0, fmt="mimic3"))
    ds = prepare("mimic3", raw, tmp_path / "out", mappings={"dir": raw / "mappings"}, progress=False)
    acc = ds.manifest.accounting
    assert all(a.balanced for a in acc.values())
    for name in ("PATIENTS", "ADMISSIONS", "DIAGNOSES_ICD", "PRESCRIPTIONS", "NOTEEVENTS", "LABEVENTS", "CHARTEVENTS"):
        assert acc[name].read > 0, name
    assert ds.manifest.tables["patients"] == 200
    visits = ds.table("visits")
    assert visits.height == acc["ADMISSIONS"].kept >= 200
    codes = ds.table("codes")
    assert codes.filter(pl.col("system") == "icd9_dx").height == acc["DIAGNOSES_ICD"].kept > 0
    # every kept code belongs to a kept visit of the same patient; seq runs 0..n-1 per (visit, system)
    assert codes.join(visits.select("visit_id", "patient_id"), on=["visit_id", "patient_id"], how="anti").height == 0
    seq = codes.group_by("visit_id", "system").agg(ok=(pl.col("seq").sort() == pl.int_range(pl.len())).all())
    assert seq["ok"].all()
    # the generator writes its own mapping files: most prescriptions map, through both routes
    dm = ds.manifest.extra["drug_mapping"]
    assert dm["mapped_fraction"] > 0.5 and dm["ndc"] > 0 and dm["name"] >= 0
    # ground truth agrees with the prepared visits
    gt = pl.read_parquet(raw / "ground_truth" / "visits.parquet")
    assert set(gt["HADM_ID"]) >= set(visits["visit_id"])
    notes = ds.table("notes")
    assert notes.height == acc["NOTEEVENTS"].kept > 0
    assert (notes["text"] == notes["text"].str.to_lowercase()).all()
    assert not notes["text"].str.contains("\n").any()
    m = ds.table("measurements")
    assert set(m["source"]) == {"lab", "chart"}
    assert set(m.filter(pl.col("source") == "chart")["item_id"]) <= set(CHART_ITEMIDS)
