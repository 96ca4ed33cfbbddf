"""MIMIC-IV source: a tiny hand-written release (hosp/, icu/, note/) -> canonical dataset, checked row
by row; the ICD-10 -> ICD-9 GEM option; bad input (errors naming file, column and row, or counted
drops, the table in `medmm.data.sources.mimic4`'s docstring); the shared MIMIC-IV demo."""

from __future__ import annotations

import copy
import csv
import gzip
import io
import time
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from medmm.data.schema import SCHEMAS, load_dataset, polars_schema
from medmm.data.sources import prepare
from medmm.data.sources.mimic4 import note_id_expr, note_key_of

# ---- a tiny release in the MIMIC-IV layout (lower-case unquoted headers, .csv.gz) --------------------

DS_TEXT = "Discharge Diagnosis:\nSepsis.\r\nFollow up"

RAW: dict[str, dict[str, tuple[list[str], list[list]]]] = {
    "hosp": {
        "patients": (
            ["subject_id", "gender", "anchor_age", "anchor_year", "anchor_year_group", "dod"],
            [[10, "F", 50, 2150, "2011 - 2013", None],
             [20, "M", 91, 2100, "2008 - 2010", "2101-03-04"]],       # top-coded age, died
        ),
        "admissions": (
            ["subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type", "admit_provider_id",
             "hospital_expire_flag"],
            [[10, 100, "2150-07-02 00:00:00", "2150-07-05 12:00:00", None, "URGENT", "P1", 0],
             [10, 101, "2152-01-01 08:00:00", "2152-01-03 08:00:00", None, "ELECTIVE", "P1", 0],
             [20, 200, "2101-03-01 00:00:00", "2101-03-04 00:00:00", "2101-03-04 00:00:00", "EW EMER.", "P2", 1]],
        ),
        "diagnoses_icd": (
            ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"],
            [[10, 100, 2, "4019", 9],
             [10, 100, 1, "0389", 9],            # leading zero must survive
             [10, 101, 1, "I10", 10],
             [10, 101, 2, "E1122", 10],
             [10, 101, 3, "I10", 10],            # repeated in the visit -> duplicate_code
             [20, 200, 1, "A021", 10],
             [20, 200, 2, "E7800", 10],          # newer than the GEM: parent E780 -> 2720
             [20, 200, 3, "R402130", 10]],       # GEM "NoDx"
        ),
        "procedures_icd": (
            ["subject_id", "hadm_id", "seq_num", "chartdate", "icd_code", "icd_version"],
            [[10, 100, 1, "2150-07-03", "3893", 9],
             [20, 200, 1, "2101-03-02", "5A1955Z", 10]],
        ),
        "prescriptions": (
            ["subject_id", "hadm_id", "pharmacy_id", "starttime", "stoptime", "drug_type", "drug", "ndc"],
            [[10, 100, 1, "2150-07-03 10:00:00", None, "MAIN", "Aspirin", "00904404073"],
             [10, 100, 2, "2150-07-02 10:00:00", None, "MAIN", "Furosemide", "0"],
             [10, 101, 3, "2152-01-01 10:00:00", None, "MAIN", "Mystery", None]],
        ),
        "labevents": (
            ["labevent_id", "subject_id", "hadm_id", "specimen_id", "itemid", "charttime", "value", "valuenum",
             "valueuom", "flag"],
            [[1, 10, 100, 1, 50912, "2150-07-02 12:00:00", "1.2", 1.2, "mg/dL", None],
             [2, 10, None, 2, 50912, "2149-12-01 12:00:00", "1.0", 1.0, "mg/dL", None],   # outpatient lab
             [3, 10, 100, 1, 51000, "2150-07-02 12:00:00", "POS", None, None, "abnormal"]],  # text result
        ),
        "d_labitems": (
            ["itemid", "label", "fluid", "category"],
            [[50912, "Creatinine", "Blood", "Chemistry"], [51000, "Culture", "Urine", "Microbiology"]],
        ),
        "transfers": (["subject_id", "hadm_id", "transfer_id"], [[10, 100, 1]]),   # not read: listed
    },
    "icu": {
        "icustays": (
            ["subject_id", "hadm_id", "stay_id", "first_careunit", "last_careunit", "intime", "outtime", "los"],
            [[10, 100, 1000, "MICU", "MICU", "2150-07-02 06:00:00", "2150-07-04 06:00:00", 2.0],
             [20, 200, 2000, "CVICU", "CVICU", "2101-03-01 02:00:00", "2101-03-03 02:00:00", 2.0]],
        ),
        "chartevents": (
            ["subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid", "value",
             "valuenum", "valueuom", "warning"],
            [[10, 100, 1000, 1, "2150-07-02 07:00:00", None, 220045, "82", 82, "bpm", 0],
             [10, 100, 1000, 1, "2150-07-02 08:00:00", None, 220339, "5", 5, "cmH2O", 0],    # PEEP
             [10, 100, 1000, 1, "2150-07-02 08:00:00", None, 223900, "Oriented", None, None, 0]],
        ),
        "inputevents": (
            ["subject_id", "hadm_id", "stay_id", "caregiver_id", "starttime", "endtime", "storetime", "itemid",
             "amount", "amountuom", "rate", "rateuom", "orderid", "linkorderid", "statusdescription"],
            [[10, 100, 1000, 1, "2150-07-02 09:00:00", "2150-07-02 10:00:00", None, 221906, 0.5, "mg",
              0.1, "mcg/kg/min", 7, 7, "FinishedRunning"],
             [10, 100, 9999, 1, "2150-07-02 09:00:00", "2150-07-02 10:00:00", None, 221906, 0.5, "mg",
              0.1, "mcg/kg/min", 8, 8, "Rewritten"]],                                   # unknown stay
        ),
        "procedureevents": (
            ["subject_id", "hadm_id", "stay_id", "caregiver_id", "starttime", "endtime", "storetime", "itemid",
             "value", "valueuom", "orderid", "linkorderid", "statusdescription", "ORIGINALAMOUNT"],
            [[10, 100, 1000, 1, "2150-07-02 11:00:00", "2150-07-03 11:00:00", None, 225792, 1440, "min", 9, 9,
              "FinishedRunning", 1440],
             [10, 100, 1000, 1, "2150-07-03 11:00:00", "2150-07-02 11:00:00", None, 225794, 10, "min", 10, 10,
              "FinishedRunning", 10]],                                                  # ends before it starts
        ),
        "outputevents": (
            ["subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid", "value",
             "valueuom"],
            [[10, 100, 1000, 1, "2150-07-02 12:00:00", None, 226559, 300, "ml"]],
        ),
        "datetimeevents": (
            ["subject_id", "hadm_id", "stay_id", "caregiver_id", "charttime", "storetime", "itemid", "value",
             "valueuom", "warning"],
            [[20, 200, 2000, 1, "2101-03-01 03:00:00", None, 225343, "2101-02-27 00:00:00", "Date", 0]],
        ),
        "d_items": (
            ["itemid", "label", "abbreviation", "linksto", "category", "unitname", "param_type", "lownormalvalue",
             "highnormalvalue"],
            [[220045, "Heart Rate", "HR", "chartevents", "Routine Vital Signs", "bpm", "Numeric", None, None],
             [225792, "Invasive Ventilation", "Invasive Ventilation", "procedureevents", "Ventilation", None,
              "Process", None, None]],
        ),
    },
    "note": {
        "discharge": (
            ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"],
            [["10-DS-2", 10, 100, "DS", 2, "2150-07-05 00:00:00", None, DS_TEXT],
             ["10-DS-3", 10, None, "DS", 3, "2150-08-01 00:00:00", None, "No admission."]],
        ),
        "radiology": (
            ["note_id", "subject_id", "hadm_id", "note_type", "note_seq", "charttime", "storetime", "text"],
            [["10-RR-14", 10, 100, "RR", 14, "2150-07-02 13:00:00", None, "CXR: No PNA."],
             ["10-RR-15", 10, None, "RR", 15, "2149-12-01 13:00:00", None, "Outpatient CT."]],
        ),
    },
}

NDC_RXNORM = "{'00904404073': u'243670', 'idx': 1}"
RXNORM_ATC = "YEAR,MONTH,NDC,RXCUI,ATC4\n2015,1,00904-4040-73,243670,B01AC\n"
DRUG_ATC = "drug,atc_code\nFurosemide,C03CA01\nAspirin,N02BA01\n"


def raw_tables() -> dict:
    return copy.deepcopy(RAW)


def csv_bytes(header: list[str], rows: list[list]) -> bytes:
    """MIMIC-IV style CSV: unquoted lower-case header, empty = missing."""
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue().encode()


def write_raw(root: Path, tables: dict | None = None, gz: bool = True) -> Path:
    for module, files in (tables if tables is not None else RAW).items():
        (root / module).mkdir(parents=True, exist_ok=True)
        for name, (header, rows) in files.items():
            data = csv_bytes(header, rows)
            if gz:
                (root / module / f"{name}.csv.gz").write_bytes(gzip.compress(data))
            else:
                (root / module / f"{name}.csv").write_bytes(data)
    return root


def write_mappings(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ndc2rxnorm_mapping.txt").write_text(NDC_RXNORM)
    (root / "ndc2atc_level4.csv").write_text(RXNORM_ATC)
    (root / "mimic_drug_to_atc.csv").write_text(DRUG_ATC)
    return {"dir": root}


def run(tmp_path: Path, tables: dict | None = None, gz: bool = True, **kw):
    raw = write_raw(tmp_path / "raw", tables, gz=gz)
    return prepare("mimic4", raw, tmp_path / "out", mappings=write_mappings(tmp_path / "maps"),
                   progress=False, **kw)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return run(tmp_path_factory.mktemp("tiny4"))


def _acc(ds, name: str) -> dict:
    a = ds.manifest.accounting[name]
    assert a.balanced, name
    return a.to_json()


# ---- the tiny release, row by row -------------------------------------------------------------------

def test_every_table_has_the_canonical_schema(tiny):
    for table in SCHEMAS:
        df = tiny.table(table)
        assert df.schema == polars_schema(table), table
        assert tiny.manifest.tables[table] == df.height, table


def test_accounting_balances_with_reasons(tiny):
    acc = {k: _acc(tiny, k) for k in tiny.manifest.accounting}
    assert acc["hosp/diagnoses_icd"] == {"read": 8, "kept": 7, "dropped": {"duplicate_code": 1}}
    assert acc["hosp/prescriptions"] == {"read": 3, "kept": 2, "dropped": {"unmapped_drug": 1}}
    assert acc["hosp/labevents"] == {"read": 3, "kept": 2, "dropped": {"non_numeric": 1}}
    assert acc["icu/chartevents"] == {"read": 3, "kept": 2, "dropped": {"non_numeric": 1}}
    assert acc["icu/inputevents"] == {"read": 2, "kept": 1, "dropped": {"unknown_stay": 1}}
    assert acc["icu/procedureevents"] == {"read": 2, "kept": 1, "dropped": {"end_before_start": 1}}
    assert acc["note/discharge"] == {"read": 2, "kept": 1, "dropped": {"no_admission": 1}}
    assert acc["note/radiology"] == {"read": 2, "kept": 2, "dropped": {}}
    assert acc["icu/d_items"] == {"read": 2, "kept": 2, "dropped": {}}
    assert "hosp/transfers" not in acc
    assert any(n.startswith("hosp/ files not read by medmm: transfers") for n in tiny.manifest.notes)


def test_birth_time_from_anchor_age_and_year(tiny):
    p = tiny.table("patients")
    assert p["birth_time"].to_list() == [datetime(2100, 7, 2), datetime(2009, 7, 2)]
    assert p["death_time"].to_list() == [None, datetime(2101, 3, 4)]
    v = tiny.table("visits").sort("visit_id")
    age = dict(zip(v["visit_id"], v["age"]))
    assert age[100] == pytest.approx(50.0, abs=1e-3)          # admitted at mid anchor_year: anchor_age
    assert age[101] == pytest.approx(51.5, abs=0.01)          # 1.5 years later
    assert age[200] == pytest.approx(91.66, abs=0.01)         # top-coded 91, stored as computed
    assert v["died_in_hospital"].to_list() == [False, False, True]
    assert any("anchor_age 91" in n for n in tiny.manifest.notes)


def test_icd9_and_icd10_each_their_own_system(tiny):
    c = tiny.table("codes")
    rows = c.filter(pl.col("system").str.starts_with("icd")).select("visit_id", "system", "code", "seq").rows()
    assert rows == [
        (100, "icd9_dx", "0389", 0), (100, "icd9_dx", "4019", 1), (100, "icd9_proc", "3893", 0),
        (101, "icd10_dx", "I10", 0), (101, "icd10_dx", "E1122", 1),
        (200, "icd10_dx", "A021", 0), (200, "icd10_dx", "E7800", 1), (200, "icd10_dx", "R402130", 2),
        (200, "icd10_proc", "5A1955Z", 0)]
    assert c.filter(pl.col("system") == "icd9_proc")["time"].to_list() == [datetime(2150, 7, 3)]
    v = tiny.manifest.extra["icd_versions"]
    assert v["hosp/diagnoses_icd"] == {"read": {"9": 2, "10": 6}, "kept": {"icd9_dx": 2, "icd10_dx": 5}}
    assert v["hosp/procedures_icd"] == {"read": {"9": 1, "10": 1}, "kept": {"icd9_proc": 1, "icd10_proc": 1}}


def test_prescriptions_mapped_to_atc3(tiny):
    med = tiny.table("codes").filter(pl.col("system") == "atc3")
    assert med.select("visit_id", "code", "seq", "source_value").rows() == [
        (100, "C03C", 0, "Furosemide"), (100, "B01A", 1, "00904404073")]
    dm = tiny.manifest.extra["drug_mapping"]
    assert (dm["rows"], dm["ndc"], dm["name"], dm["unmapped"]) == (3, 1, 1, 1)


def test_measurements_labs_and_all_chart_items(tiny):
    m = tiny.table("measurements")
    labs = m.filter(pl.col("source") == "lab").sort("time")
    assert labs["visit_id"].to_list() == [None, 100] and labs["stay_id"].to_list() == [None, None]
    chart = m.filter(pl.col("source") == "chart").sort("item_id")
    assert chart.select("item_id", "stay_id", "value").rows() == [(220045, 1000, 82.0), (220339, 1000, 5.0)]


def test_events_table_layout(tiny):
    e = tiny.table("events").sort("source")
    by = {r["source"]: r for r in e.iter_rows(named=True)}
    assert set(by) == {"input", "procedure", "output", "datetime"}
    i = by["input"]
    assert (i["item_id"], i["stay_id"], i["value"], i["unit"], i["rate"], i["rate_unit"], i["order_id"],
            i["status"]) == (221906, 1000, 0.5, "mg", 0.1, "mcg/kg/min", 7, "FinishedRunning")
    assert (i["start_time"], i["end_time"]) == (datetime(2150, 7, 2, 9), datetime(2150, 7, 2, 10))
    p = by["procedure"]
    assert (p["item_id"], p["value"], p["unit"], p["end_time"]) == (225792, 1440.0, "min", datetime(2150, 7, 3, 11))
    o = by["output"]
    assert (o["value"], o["end_time"], o["status"]) == (300.0, None, None)
    d = by["datetime"]
    assert (d["value"], d["value_time"], d["unit"]) == (None, datetime(2101, 2, 27), "Date")


def test_items_from_both_dictionaries(tiny):
    it = tiny.table("items")
    assert it.select("item_id", "linksto", "label", "fluid", "unit").rows() == [
        (50912, "labevents", "Creatinine", "Blood", None), (51000, "labevents", "Culture", "Urine", None),
        (220045, "chartevents", "Heart Rate", None, "bpm"), (225792, "procedureevents", "Invasive Ventilation",
                                                             None, None)]


def test_notes_keep_the_string_id_and_a_stable_int_id(tiny):
    n = tiny.table("notes").sort("note_id")
    assert n["note_key"].to_list() == ["10-DS-2", "10-RR-14", "10-RR-15"]
    assert n["note_id"].to_list() == [10_096_000_002, 10_459_000_014, 10_459_000_015]
    assert [note_key_of(i) for i in n["note_id"]] == n["note_key"].to_list()
    assert n["category"].to_list() == ["discharge summary", "radiology", "radiology"]
    assert n["visit_id"].to_list() == [100, 100, None]          # radiology outside an admission kept
    text = n["text"][0]
    assert len(text) == len(DS_TEXT) and text == DS_TEXT.lower().replace("\r", " ").replace("\n", " ")


def test_note_id_encoding():
    ids = pl.DataFrame({"note_id": ["10000032-DS-21", "10000032-DS-22", "10000032-AR-1", "19999999-ZZ-999999",
                                    "10000032-ds-21", "10000032-DS", "x"]}).select(note_id_expr())["note_id"]
    assert ids.to_list()[:4] == [10000032096000021, 10000032096000022, 10000032017000001, 19999999675999999]
    assert ids.to_list()[4:] == [None, None, None]
    assert note_key_of(10000032096000021) == "10000032-DS-21"


def test_plain_csv_gives_the_same_dataset(tiny, tmp_path):
    other = run(tmp_path, gz=False)
    for table in SCHEMAS:
        assert other.table(table).equals(tiny.table(table)), table


def test_absent_modules_and_tables_are_said(tmp_path, capsys):
    t = raw_tables()
    del t["note"]
    del t["icu"]["chartevents"]
    raw = write_raw(tmp_path / "raw", t)
    ds = prepare("mimic4", raw, tmp_path / "out", mappings={}, progress=True)
    printed = capsys.readouterr().out
    notes = " | ".join(ds.manifest.notes)
    for said in ("note/ module absent", "icu/chartevents absent"):
        assert said in notes and said in printed
    assert ds.manifest.tables["notes"] == 0 and "note/discharge" not in ds.manifest.accounting
    # no icu/ at all
    del t["icu"]
    raw = write_raw(tmp_path / "raw2", t)
    ds = prepare("mimic4", raw, tmp_path / "out2", mappings={}, progress=False)
    assert any(n.startswith("icu/ module absent") for n in ds.manifest.notes)
    assert ds.manifest.tables["stays"] == ds.manifest.tables["events"] == 0


def test_include_labs_false_skips_lab_and_chart_events(tmp_path):
    ds = run(tmp_path, include_labs=False)
    assert "hosp/labevents" not in ds.manifest.accounting and "icu/chartevents" not in ds.manifest.accounting
    assert ds.manifest.tables["measurements"] == 0 and ds.manifest.tables["events"] == 4


def test_a_schema_1_0_dataset_reads_the_new_tables_as_empty(tiny, tmp_path):
    import json
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny.path, old)
    m = json.loads((old / "manifest.json").read_text())
    for table in ("events", "items"):
        (old / f"{table}.parquet").unlink()
        del m["tables"][table]
    m["schema_version"] = "1.0"
    (old / "manifest.json").write_text(json.dumps(m))
    ds = load_dataset(old)
    assert ds.table("events").schema == polars_schema("events") and ds.table("events").height == 0
    assert ds.table("visits").height == 3


# ---- ICD-10 -> ICD-9 through the GEM ---------------------------------------------------------------

def test_gem_map_rules():
    from medmm.ontology.icd10 import icd10_to_icd9_map, map_icd10_codes

    m = icd10_to_icd9_map()
    first = dict(m.filter(pl.col("icd10").is_in(["I10", "A021", "R402130"])).select("icd10", "icd9").rows())
    assert first == {"I10": "4010", "A021": "0031", "R402130": None}      # GEM file order; NoDx unmapped
    counted = icd10_to_icd9_map({"4019": 3, "4011": 1})
    assert counted.filter(pl.col("icd10") == "I10")["icd9"].item() == "4019"   # most frequent alternative
    got = map_icd10_codes(["E7800", "I10", "ZZZ99", "R402130"]).select("icd10", "icd9", "via", "gem_code").rows()
    assert got == [("E7800", "2720", "parent", "E780"), ("I10", "4010", "gem", "I10"),
                   ("R402130", None, None, "R402130"), ("ZZZ99", None, None, None)]


def test_icd10_to_icd9_option(tiny, tmp_path):
    ds = run(tmp_path, icd10_to_icd9=True)
    c = ds.table("codes").filter(pl.col("system").str.ends_with("_dx"))
    rows = c.select("visit_id", "system", "code", "seq", "source_value").rows()
    # I10 -> 4019: the visit-100 ICD-9 row makes 4019 the most frequent candidate
    assert rows == [
        (100, "icd9_dx", "0389", 0, "0389"), (100, "icd9_dx", "4019", 1, "4019"),
        (101, "icd9_dx", "4019", 0, "I10"), (101, "icd9_dx", "25040", 1, "E1122"),
        (200, "icd10_dx", "R402130", 0, "R402130"),
        (200, "icd9_dx", "0031", 0, "A021"), (200, "icd9_dx", "2720", 1, "E7800")]
    g = ds.manifest.extra["icd10_to_icd9"]
    assert (g["rows"], g["mapped"], g["mapped_via_parent"], g["unmapped"]) == (5, 4, 1, 1)
    assert g["unmapped_fraction"] == pytest.approx(0.2) and g["unmapped_codes"] == [["R402130", 1]]
    assert _acc(ds, "hosp/diagnoses_icd") == {"read": 8, "kept": 7, "dropped": {"duplicate_code": 1}}
    assert "ontology/icd10cmtoicd9gem.csv" in ds.manifest.inputs
    # off by default: the tiny dataset keeps every ICD-10 row as icd10_dx
    assert "icd10_to_icd9" not in tiny.manifest.extra


def test_gem_repeat_in_a_visit_is_dropped_and_counted(tmp_path):
    t = raw_tables()
    t["hosp"]["diagnoses_icd"][1].append([10, 101, 4, "I119", 10])     # 402.00 / 402.10 / 402.90: none counted
    t["hosp"]["diagnoses_icd"][1].append([10, 101, 5, "I1A0", 10])     # not in the GEM, nor its parents
    t["hosp"]["diagnoses_icd"][1].append([10, 101, 6, "E1121", 10])    # E11.21 -> 250.40 like E11.22
    ds = run(tmp_path, t, icd10_to_icd9=True)
    acc = _acc(ds, "hosp/diagnoses_icd")
    assert acc["dropped"] == {"duplicate_code": 1, "duplicate_after_icd10_to_icd9": 1}
    v101 = ds.table("codes").filter((pl.col("visit_id") == 101) & pl.col("system").str.ends_with("_dx"))
    assert v101.select("system", "code", "seq").rows() == [
        ("icd10_dx", "I1A0", 0), ("icd9_dx", "4019", 0), ("icd9_dx", "25040", 1), ("icd9_dx", "40200", 2)]


# ---- the command line and the registry --------------------------------------------------------------

def test_cli_prepare_mimic4(tmp_path, capsys):
    from medmm.cli import main

    raw = write_raw(tmp_path / "raw")
    maps = write_mappings(tmp_path / "maps")
    rc = main(["prepare", "--source", "mimic4", "--raw", str(raw), "--out", str(tmp_path / "out"),
               "--mappings", str(maps["dir"]), "--icd10-to-icd9", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "drug mapping: 66.7% of 3 prescriptions" in out
    assert "ICD-10 -> ICD-9 (GEM): 4 of 5 ICD-10 diagnosis rows mapped" in out
    assert "hosp/diagnoses_icd: read ICD-9 2, ICD-10 6" in out
    assert load_dataset(tmp_path / "out").manifest.extra["options"]["icd10_to_icd9"] is True
    rc = main(["prepare", "--source", "mimic3", "--raw", str(raw), "--out", str(tmp_path / "o3"),
               "--icd10-to-icd9"])
    assert rc == 2 and "does not take option(s) ['icd10_to_icd9']" in capsys.readouterr().err


def test_note_dir_option(tmp_path):
    t = raw_tables()
    notes = {"note": t.pop("note")}
    raw = write_raw(tmp_path / "raw", t)
    write_raw(tmp_path / "mimic-iv-note", notes)           # <dir>/note/discharge.csv.gz
    ds = prepare("mimic4", raw, tmp_path / "out", mappings={}, progress=False, note_dir=tmp_path / "mimic-iv-note")
    assert ds.manifest.tables["notes"] == 3
    with pytest.raises(FileNotFoundError, match="note directory"):
        prepare("mimic4", raw, tmp_path / "o2", mappings={}, progress=False, note_dir=tmp_path / "nowhere")


# ---- bad input ---------------------------------------------------------------------------------------

def _fails(tmp_path: Path, tables: dict, exc: type[Exception], *parts: str, **kw) -> str:
    """Prepare `tables`; expect `exc` whose message holds every one of `parts`; nothing is left at out."""
    raw = write_raw(tmp_path / "raw", tables)
    with pytest.raises(exc) as e:
        prepare("mimic4", raw, tmp_path / "out", mappings=write_mappings(tmp_path / "maps"), progress=False, **kw)
    msg = str(e.value)
    for p in parts:
        assert p in msg, (p, msg)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))
    return msg


def _set(tables: dict, module: str, name: str, row: int, col: str, value) -> None:
    header, rows = tables[module][name]
    rows[row][header.index(col)] = value


def test_missing_hosp_module(tmp_path):
    t = raw_tables()
    del t["hosp"]
    _fails(tmp_path, t, FileNotFoundError, "hosp/", str(tmp_path / "raw"))


def test_missing_required_table_in_a_module(tmp_path):
    t = raw_tables()
    del t["icu"]["icustays"]
    _fails(tmp_path, t, FileNotFoundError, str(tmp_path / "raw" / "icu"), "icustays")


@pytest.mark.parametrize("version", [11, None])
def test_icd_version_other_than_9_or_10(tmp_path, version):
    t = raw_tables()
    _set(t, "hosp", "diagnoses_icd", 3, "icd_version", version)
    _fails(tmp_path, t, ValueError, "diagnoses_icd.csv.gz", "column icd_version", "data row 4", repr(version),
           "expected 9 or 10")


def test_non_integer_icd_version(tmp_path):
    t = raw_tables()
    _set(t, "hosp", "procedures_icd", 1, "icd_version", "ten")
    _fails(tmp_path, t, ValueError, "procedures_icd.csv.gz", "column icd_version", "data row 2", "'ten'")


def test_stay_without_intime_is_dropped_and_counted(tmp_path):
    t = raw_tables()
    _set(t, "icu", "icustays", 1, "intime", None)
    ds = run(tmp_path, t)
    assert _acc(ds, "icu/icustays") == {"read": 2, "kept": 1, "dropped": {"missing_intime": 1}}
    # the events of the dropped stay are then counted as unknown_stay
    assert _acc(ds, "icu/datetimeevents") == {"read": 1, "kept": 0, "dropped": {"unknown_stay": 1}}


def test_non_numeric_valuenum_is_an_error(tmp_path):
    t = raw_tables()
    _set(t, "hosp", "labevents", 1, "valuenum", "abc")
    _fails(tmp_path, t, ValueError, "labevents.csv.gz", "column valuenum", "data row 2", "'abc'", "a number")


def test_missing_required_column(tmp_path):
    t = raw_tables()
    header, rows = t["hosp"]["admissions"]
    i = header.index("dischtime")
    t["hosp"]["admissions"] = ([h for j, h in enumerate(header) if j != i], [[v for j, v in enumerate(r) if j != i]
                                                                            for r in rows])
    _fails(tmp_path, t, ValueError, "admissions.csv.gz", "missing column(s) ['DISCHTIME']")


def test_unparsable_timestamp(tmp_path):
    t = raw_tables()
    _set(t, "hosp", "admissions", 2, "admittime", "2101-13-45 00:00:00")
    _fails(tmp_path, t, ValueError, "admissions.csv.gz", "column admittime", "data row 3", "'2101-13-45 00:00:00'")


def test_unparsable_timestamp_in_a_streamed_table(tmp_path):
    t = raw_tables()
    _set(t, "icu", "inputevents", 1, "endtime", "yesterday")
    _fails(tmp_path, t, ValueError, "inputevents.csv.gz", "column endtime", "data row 2", "'yesterday'")


def test_duplicate_hadm_id(tmp_path):
    t = raw_tables()
    _set(t, "hosp", "admissions", 1, "hadm_id", 100)
    _fails(tmp_path, t, ValueError, "admissions.csv.gz", "column hadm_id", "duplicate primary key 100",
           "data rows 1", "and 2")


def test_bad_and_repeated_note_ids(tmp_path):
    t = raw_tables()
    _set(t, "note", "radiology", 1, "note_id", "RR-15")
    _fails(tmp_path / "a", t, ValueError, "radiology.csv.gz", "column note_id", "data row 2", "'RR-15'")
    t = raw_tables()
    _set(t, "note", "radiology", 1, "note_id", "10-RR-014")      # encodes like "10-RR-14"
    _fails(tmp_path / "b", t, ValueError, "radiology.csv.gz", "data rows 1 and 2", "'10-RR-14'", "'10-RR-014'")


def test_events_without_a_start_are_counted(tmp_path):
    t = raw_tables()
    _set(t, "icu", "outputevents", 0, "charttime", None)
    ds = run(tmp_path, t)
    assert _acc(ds, "icu/outputevents") == {"read": 1, "kept": 0, "dropped": {"missing_time": 1}}


# ---- real data: the MIMIC-IV demo (shared_data) ---------------------------------------------------------

def test_mimic4_demo(shared_data, tmp_path, capsys):
    raw = shared_data / "mimic4-demo"
    m = shared_data / "mappings"
    maps = {"ndc_rxnorm": m / "ndc2rxnorm_mapping.txt", "drug_atc": m / "mimic_drug_to_atc.csv.gz"}
    t0 = time.perf_counter()
    ds = prepare("mimic4", raw, tmp_path / "demo", mappings=maps, progress=True)
    seconds = time.perf_counter() - t0
    printed = capsys.readouterr().out
    assert seconds < 30, seconds
    acc, tables = ds.manifest.accounting, ds.manifest.tables
    assert all(a.balanced for a in acc.values())
    assert (tables["patients"], tables["visits"], tables["stays"]) == (100, 275, 140)
    assert acc["hosp/diagnoses_icd"].read == 4506
    # ICD-9 and ICD-10 rows, counted independently from the raw file
    raw_dx = pl.read_csv(raw / "hosp" / "diagnoses_icd.csv.gz", schema_overrides={"icd_code": pl.String})
    expect = {str(v): n for v, n in raw_dx.group_by("icd_version").len().iter_rows()}
    assert set(expect) == {"9", "10"} and sum(expect.values()) == 4506
    v = ds.manifest.extra["icd_versions"]["hosp/diagnoses_icd"]
    assert v["read"] == expect
    codes = dict(ds.table("codes").group_by("system").len().iter_rows())
    assert v["kept"] == {"icd9_dx": codes["icd9_dx"], "icd10_dx": codes["icd10_dx"]}
    assert codes["icd9_dx"] + codes["icd10_dx"] == acc["hosp/diagnoses_icd"].kept > 0.95 * 4506
    dm = ds.manifest.extra["drug_mapping"]
    assert 0.85 < dm["mapped_fraction"] < 0.99 and acc["hosp/prescriptions"].read == 18087
    assert f"drug mapping: {dm['mapped_fraction']:.1%} of prescriptions mapped to ATC-3" in printed
    assert acc["hosp/labevents"].read == 107727
    notes = " | ".join(ds.manifest.notes)
    for said in ("icu/chartevents absent", "note/ module absent"):
        assert said in notes and said in printed
    events = dict(ds.table("events").group_by("source").len().iter_rows())
    assert set(events) == {"input", "procedure", "output", "datetime"}
    assert ds.table("events").filter(pl.col("item_id").is_in([225792, 225794])).height > 0   # ventilation
    # the GEM option on the same demo: few ICD-10 rows without an ICD-9 equivalent
    gem = prepare("mimic4", raw, tmp_path / "gem", mappings=maps, progress=False, icd10_to_icd9=True)
    g = gem.manifest.extra["icd10_to_icd9"]
    assert g["rows"] == codes["icd10_dx"] and g["unmapped_fraction"] < 0.02
