"""medmm.data.synth.realism: the reference values recomputed from the shared data, every statistic
on a hand-made MIMIC-III directory, the section-header rule, the table and the target check."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from medmm.data.synth.realism import (LABELS, MIMIC3_DEMO, MTSAMPLES_DISCHARGE, TARGETS, mimic3_stats,
                                      mtsamples_note_stats, note_stats, out_of_range, render_table,
                                      section_headers)

# Header column names as in the MIMIC-III v1.4 release (copied from the demo files).
COLUMNS = {
    "ADMISSIONS": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ADMITTIME", "DISCHTIME", "DEATHTIME", "ADMISSION_TYPE",
                   "ADMISSION_LOCATION", "DISCHARGE_LOCATION", "INSURANCE", "LANGUAGE", "RELIGION",
                   "MARITAL_STATUS", "ETHNICITY", "EDREGTIME", "EDOUTTIME", "DIAGNOSIS", "HOSPITAL_EXPIRE_FLAG",
                   "HAS_CHARTEVENTS_DATA"),
    "DIAGNOSES_ICD": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"),
    "PROCEDURES_ICD": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE"),
    "PRESCRIPTIONS": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "STARTDATE", "ENDDATE", "DRUG_TYPE", "DRUG",
                      "DRUG_NAME_POE", "DRUG_NAME_GENERIC", "FORMULARY_DRUG_CD", "GSN", "NDC", "PROD_STRENGTH",
                      "DOSE_VAL_RX", "DOSE_UNIT_RX", "FORM_VAL_DISP", "FORM_UNIT_DISP", "ROUTE"),
    "LABEVENTS": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ITEMID", "CHARTTIME", "VALUE", "VALUENUM", "VALUEUOM", "FLAG"),
    "ICUSTAYS": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "ICUSTAY_ID", "DBSOURCE", "FIRST_CAREUNIT", "LAST_CAREUNIT",
                 "FIRST_WARDID", "LAST_WARDID", "INTIME", "OUTTIME", "LOS"),
    "NOTEEVENTS": ("ROW_ID", "SUBJECT_ID", "HADM_ID", "CHARTDATE", "CHARTTIME", "STORETIME", "CATEGORY",
                   "DESCRIPTION", "CGID", "ISERROR", "TEXT"),
}


def _field(v) -> str:
    if v is None:
        return ""                                   # NULL is an empty field, as in the release
    return f'"{v}"' if isinstance(v, str) else str(v)


def _write(root: Path, name: str, rows: list[dict]) -> None:
    cols = COLUMNS[name]
    lines = [",".join(f'"{c}"' for c in cols)]
    lines += [",".join(_field(r.get(c)) for c in cols) for r in rows]
    with gzip.open(root / f"{name}.csv.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")


def _adm(subject, hadm, admit, disch, flag, death=None):
    return {"SUBJECT_ID": subject, "HADM_ID": hadm, "ADMITTIME": admit, "DISCHTIME": disch, "DEATHTIME": death,
            "HOSPITAL_EXPIRE_FLAG": flag}


NOTE_1 = "Chief Complaint:\nchest pain\n\nHistory of Present Illness:\nPain for two days.\n"   # 12 words
NOTE_3 = "Chief Complaint:\nfever\nHistory of Present Illness:\nFever 3 days."                  # 10 words


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """4 patients, 7 admissions; each statistic worked out by hand in test_tiny_directory."""
    root = tmp_path / "tiny"
    root.mkdir()
    _write(root, "ADMISSIONS", [
        _adm(1, 101, "2100-01-01 08:00:00", "2100-01-05 00:00:00", 0),
        _adm(1, 102, "2100-01-15 00:00:00", "2100-01-20 00:00:00", 1, death="2100-01-20 00:00:00"),
        _adm(2, 201, "2100-02-01 00:00:00", "2100-02-03 00:00:00", 1, death="2100-02-03 00:00:00"),
        _adm(3, 302, "2100-03-31 12:00:00", "2100-04-02 00:00:00", 0),     # listed before 301 on purpose
        _adm(3, 301, "2100-02-25 00:00:00", "2100-03-01 12:00:00", 0),
        _adm(4, 401, "2100-04-25 00:00:00", "2100-05-01 00:00:00", 0),
        _adm(4, 402, "2100-05-31 00:01:00", "2100-06-02 00:00:00", None),  # no flag, no DEATHTIME: alive
    ])
    dx = {101: ["4280", "4019", "25000"], 102: ["4280", "4019"], 201: ["4280", "E8790", "E8781"],
          301: ["41401", "0389", "5070", "5990", "2765", "2859"], 401: ["4280", None], 402: ["5849", "2724"]}
    _write(root, "DIAGNOSES_ICD", [{"HADM_ID": h, "ICD9_CODE": c} for h, cs in dx.items() for c in cs])
    _write(root, "PROCEDURES_ICD", [{"HADM_ID": h, "ICD9_CODE": c}
                                    for h, c in [(101, "3893"), (101, "9604"), (102, "3893"), (201, "9671"),
                                                 (301, "3893")]])
    _write(root, "PRESCRIPTIONS", [{"HADM_ID": h, "DRUG": d}
                                   for h, d in [(101, "Heparin"), (101, "heparin"), (101, "Aspirin"),
                                                (201, "Furosemide"), (201, None), (999, "Warfarin")]])
    _write(root, "LABEVENTS", [{"HADM_ID": h, "ITEMID": i, "VALUE": v, "VALUENUM": n}
                               for h, i, v, n in [(101, 50912, "1.2", 1.2), (101, 51237, "NEG", None),
                                                  (101, 50912, "1.0", 1.0), (None, 50912, "0.9", 0.9),
                                                  (301, 51484, "TR", None), (301, 51237, None, None),
                                                  (None, 51484, "NEG", None), (402, 50912, "1.1", 1.1)]])
    _write(root, "ICUSTAYS", [{"HADM_ID": h} for h in (101, 101, 201, 301, 401)])
    _write(root, "NOTEEVENTS", [
        {"ROW_ID": 3, "HADM_ID": 301, "CATEGORY": "Discharge summary", "TEXT": NOTE_3},
        {"ROW_ID": 2, "HADM_ID": 101, "CATEGORY": "Nursing", "TEXT": "Pt resting. PLAN: continue"},
        {"ROW_ID": 1, "HADM_ID": 101, "CATEGORY": "Discharge summary", "TEXT": NOTE_1},
    ])
    (root / "README.md").write_text("not a table\n")
    (root / "mappings").mkdir()
    (root / "mappings" / "x.csv").write_text("a\n1\n")   # not directly in root: not a raw table
    return root


def test_tiny_directory(tiny: Path) -> None:
    s = mimic3_stats(tiny)
    assert set(s) == set(MIMIC3_DEMO)
    assert s["patients"] == 4 and s["admissions"] == 7
    # 13 non-null codes; 4280 (101, 102, 201, 401) and 4019 (101, 102) are in more than one admission.
    assert s["dx_codes_distinct"] == 13
    assert s["dx_codes_one_admission_share"] == pytest.approx(11 / 13)
    # 17 non-null rows in 13 categories (E879 and E878 apart): 428 x4, 401 x2, eleven x1 -> top 10 = 4 + 2 + 8.
    assert s["dx_top10_category_share"] == pytest.approx(14 / 17)
    # rows per admission 3, 2, 3, 6, 0 (302), 2 (401, null code included), 2 -> median 2 (2.5 without 302)
    assert s["dx_per_admission_median"] == 2
    assert s["procedures_per_admission_median"] == 1          # 2, 1, 1, 1, 0, 0, 0
    assert s["prescriptions_per_admission_median"] == 0       # 3, 2 and five zeros; HADM 999 is not an admission
    assert s["labevents_per_admission_median"] == 0           # 3 (101), 2 (301), 1 (402), four zeros
    assert s["drugs_distinct"] == 4                           # heparin, aspirin, furosemide, warfarin
    assert s["lab_items_distinct"] == 3
    assert s["procedure_codes_distinct"] == 3
    assert s["icustays_per_admission"] == pytest.approx(5 / 7)
    assert s["admissions_multi_icu_share"] == pytest.approx(1 / 7)
    assert s["admissions_per_patient"] == pytest.approx(7 / 4)
    assert s["patients_multi_admission_share"] == pytest.approx(3 / 4)
    # alive: 101, 301, 302, 401, 402. 101 -> 102 after 10 days (102 died: not a denominator);
    # 301 -> 302 exactly 30 days (counts); 401 -> 402 30 days and a minute (does not).
    assert s["readmission_30d_share"] == pytest.approx(2 / 5)
    assert s["lab_non_numeric_share"] == pytest.approx(3 / 8)   # NEG, TR, NEG; a null VALUE is not
    assert s["lab_without_hadm_share"] == pytest.approx(2 / 8)
    assert s["raw_tables"] == 7
    # Two discharge summaries (the nursing note is not one), same header order.
    assert s["notes_measured"] == 2
    assert s["note_words_median"] == 11
    assert s["note_vocabulary"] == 12       # chief complaint chest pain history of present illness for two days fever
    assert s["note_header_orders"] == 1
    first = mimic3_stats(tiny, n_notes=1)   # ROW_ID order: note 1, not the first row of the file
    assert (first["notes_measured"], first["note_words_median"], first["note_vocabulary"]) == (1, 12, 11)


def test_missing_table_is_an_error(tiny: Path) -> None:
    (tiny / "LABEVENTS.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match="LABEVENTS"):
        mimic3_stats(tiny)


def test_section_headers_both_layouts() -> None:
    mimic = ("Admission Date:  [**2100-1-1**]     Discharge Date:   [**2100-1-5**]\n\nService: MEDICINE\n\n"
             "Chief Complaint:\nfever\n# pneumonia: treated with ceftriaxone\nBP 120/80, HR: 80\n"
             "Seen by cardiology. Today: fine\n  Discharge  Medications:\n1. aspirin 81 mg PO daily at 10:30\n")
    # mid-line mixed case ("Discharge Date:", "Today:") and "# ...:" are not headers; 2-letter "HR" neither.
    assert section_headers(mimic) == ["ADMISSION DATE", "SERVICE", "CHIEF COMPLAINT", "DISCHARGE MEDICATIONS"]
    mts = ("ADMISSION DIAGNOSES:,1.  Anemia.,DISCHARGE DIAGNOSES:,1.  Anemia.,HOSPITAL COURSE AND TREATMENT:  ,"
           "She did well.  SIGNIFICANT LAB AND X-RAY: , Normal.")
    assert section_headers(mts) == ["ADMISSION DIAGNOSES", "DISCHARGE DIAGNOSES", "HOSPITAL COURSE AND TREATMENT",
                                    "SIGNIFICANT LAB AND X-RAY"]
    assert section_headers("No headers here, at 10:30.") == []


def test_note_stats_header_orders() -> None:
    a = "HISTORY: cough. PLAN: rest."
    b = "PLAN: rest. HISTORY: cough."          # same headers, other order
    s = note_stats([a, a, b, "no headers"])
    assert s == {"notes_measured": 4, "note_words_median": 4.0, "note_vocabulary": 6, "note_header_orders": 3}
    assert note_stats([]) == {"notes_measured": 0, "note_words_median": None, "note_vocabulary": None,
                              "note_header_orders": None}


def test_out_of_range() -> None:
    inside = {k: (lo if lo is not None else hi) for k, (lo, hi) in TARGETS.items()}   # bounds are inclusive
    assert out_of_range(inside) == []
    assert out_of_range({**inside, "note_vocabulary": 10**9}) == []                    # open upper bound
    bad = {**inside, "dx_per_admission_median": 7, "lab_non_numeric_share": 0.25}
    del bad["note_header_orders"]
    msgs = out_of_range(bad)
    assert len(msgs) == 3
    assert msgs[0].startswith("dx_per_admission_median = 7") and "8 - 16" in msgs[0]
    assert "lab_non_numeric_share = 25.0%" in msgs[1] and "5.0% - 20.0%" in msgs[1]
    assert msgs[2].startswith("note_header_orders = n/a")
    assert set(TARGETS) <= set(LABELS)


def test_render_table() -> None:
    synth = {**MIMIC3_DEMO, "dx_codes_distinct": 1234, "note_words_median": 400.0, "note_vocabulary": 2500,
             "note_header_orders": 30, "notes_measured": 100}
    t = render_table(synth)
    lines = t.splitlines()
    assert lines[0] == "| statistic | real MIMIC-III demo | synthetic |"
    assert "| distinct ICD-9 diagnosis codes | 581 | 1,234 |" in lines
    assert "| diagnosis codes seen in one admission only | 55.4% | 55.4% |" in lines
    assert "| words per discharge summary (median)* | 363.5 | 400 |" in lines    # real column: MTSamples
    t = render_table({"readmission_30d_share": 0.2}, targets=TARGETS)
    assert "| 30-day readmission of alive discharges | 12.4% | 20.0% | 5.0% - 15.0% | **no** |" in t
    assert "| distinct ICD-9 diagnosis codes | 581 | n/a | >= 500 | **no** |" in t


def test_reference_values(shared_data: Path) -> None:
    got = mimic3_stats(shared_data / "mimic3-demo")
    assert got.keys() == MIMIC3_DEMO.keys()
    assert got == pytest.approx(MIMIC3_DEMO, abs=1e-6)
    notes = mtsamples_note_stats(shared_data / "text" / "mtsamples.csv.gz")
    assert notes == pytest.approx(MTSAMPLES_DISCHARGE, abs=1e-6)


def test_mimic4_reference_values(shared_data: Path) -> None:
    """The same statistics on the MIMIC-IV demo: 275 admissions as `medmm prepare --source mimic4`
    counts them, ICD-9 and ICD-10 codes apart (1,474 distinct diagnosis codes, none merged)."""
    from medmm.data.synth.realism import MIMIC4_DEMO, mimic4_stats, realism_stats

    got = mimic4_stats(shared_data / "mimic4-demo")
    assert got.keys() == MIMIC4_DEMO.keys() == MIMIC3_DEMO.keys()
    assert got == pytest.approx(MIMIC4_DEMO, abs=1e-6)
    dx = pl.read_csv(shared_data / "mimic4-demo" / "hosp" / "diagnoses_icd.csv.gz", infer_schema=False)
    assert got["dx_codes_distinct"] == dx.select("icd_version", "icd_code").n_unique()
    with pytest.raises(ValueError, match="unknown layout 'mimic5'"):
        realism_stats(shared_data / "mimic4-demo", "mimic5")


def test_runs_on_synthetic(tmp_path: Path) -> None:
    from medmm.data.synth import generate

    out = generate(tmp_path / "s", n_patients=60, seed=0, card=False)
    s = mimic3_stats(out)
    assert set(s) == set(MIMIC3_DEMO)
    assert s["patients"] == 60
    assert render_table(s, targets=TARGETS).count("\n") >= len(LABELS)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_meets_the_realism_targets(tmp_path: Path, seed: int) -> None:
    """At 2,000 patients every statistic of TARGETS lands in its range, for several seeds (the
    benchmark benchmarks/bench_realism.py sweeps more)."""
    from medmm.data.synth import generate

    out = generate(tmp_path / "s", n_patients=2000, seed=seed, card=False)
    assert out_of_range(mimic3_stats(out)) == []
