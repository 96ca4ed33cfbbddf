"""The synthetic MIMIC-IV writer (`medmm.data.synth.mimic4`): the MIMIC-IV source reads all of it with
only its documented drops, the headers are the real demo's, files are deterministic for a seed, the
realism statistics are sane, and the ICU criticality labels recover the latent onsets."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from medmm.data.schema import load_dataset
from medmm.data.sources import prepare
from medmm.data.synth import icu_events
from medmm.data.synth.latent import Density, draw_cohort
from medmm.data.synth.mimic4 import (HADM_OFFSET, HEADERS, STAY_OFFSET, SUBJECT_OFFSET, icd9_to_icd10_map,
                                     mimic4_ids, write_mimic4)

N, SEED = 250, 3
# What the MIMIC-IV source may drop from this data, all documented in its module docstring: text lab
# results, drugs the mapping files do not cover, and a drug's repeated orders within an admission.
DOCUMENTED_DROPS = {"non_numeric", "unmapped_drug", "duplicate_code"}


def _write(root: Path, n: int, seed: int):
    c = draw_cohort(n, seed)
    return c, write_mimic4(c, root, Density.named("modest"), seed)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("m4") / "raw"
    c, frames = _write(root, N, SEED)
    ds_dir = root.parent / "ds"
    prepare("mimic4", root, ds_dir, mappings={"dir": root / "mappings"}, progress=False)
    return c, frames, root, load_dataset(ds_dir)


def _sha256s(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _header(path: Path) -> str:
    with gzip.open(path, "rt") as f:
        return f.readline().rstrip("\n")


def test_ids_are_mimic4_like():
    c = draw_cohort(30, 0)
    ids = mimic4_ids(c)
    assert ids["subject_id"].min() >= 10_000_000 and ids["hadm_id"].min() >= 20_000_000
    assert (ids["subject_id"] - c.subject_id == SUBJECT_OFFSET).all()
    assert ((ids["stay_id"] == 0) == (c.icustay_id == 0)).all()
    assert (ids["stay_id"][c.icu] - c.icustay_id[c.icu] == STAY_OFFSET).all()
    assert ((ids["stay2_id"] > 0) == c.icu2).all() and (ids["stay_id"][c.icu] >= 30_000_000).all()


def test_gem_inversion_is_deterministic_and_exact_first():
    m = icd9_to_icd10_map()
    # hypertension, atrial fibrillation, sepsis (the backward GEM alone would give A02.1, Salmonella sepsis)
    assert (m["4019"], m["42731"], m["99591"]) == ("I10", "I4891", "A419")
    assert "E9359" not in m                     # an E-code neither GEM maps stays ICD-9
    assert m == icd9_to_icd10_map.__wrapped__()


def test_source_reads_everything_with_documented_drops_only(synth):
    c, frames, root, ds = synth
    acc, tables = ds.manifest.accounting, ds.manifest.tables
    written = dict(zip(frames["_counts"]["table"].to_list(), frames["_counts"]["rows"].to_list()))
    # Every table the source reads was read whole, and every row is kept or dropped for a documented reason.
    assert {k: a.read for k, a in acc.items()} == {k: written[k] for k in acc}
    assert set(acc) == {k for k in written if k not in ("entities", "hosp/d_icd_diagnoses", "hosp/d_icd_procedures",
                                                        "hosp/transfers", "hosp/services")}
    drops = {r for a in acc.values() for r in a.dropped}
    assert drops <= DOCUMENTED_DROPS, drops
    assert acc["hosp/labevents"].dropped["non_numeric"] > 0
    for key in ("hosp/patients", "hosp/admissions", "hosp/diagnoses_icd", "hosp/procedures_icd", "icu/icustays",
                "icu/chartevents", "icu/inputevents", "icu/procedureevents", "icu/outputevents", "note/discharge"):
        assert acc[key].kept == acc[key].read, key
    n_stays = len(c.stays()[0])
    assert (tables["patients"], tables["visits"], tables["stays"]) == (c.n_patients, c.n_visits, n_stays)
    systems = ds.table("codes").group_by("system").len()
    got = dict(zip(systems["system"].to_list(), systems["len"].to_list()))
    assert {"icd9_dx", "icd10_dx", "icd9_proc", "icd10_proc", "atc3"} <= set(got), got
    # The ICD-10 era covers about the MIMIC-IV demo's share of admissions (123 of 275 = 45%).
    icd = dict(zip(frames["_icd"]["count"].to_list(), frames["_icd"]["n"].to_list()))
    assert 0.3 < icd["admissions_icd10"] / icd["admissions"] < 0.6, icd
    assert icd["dx_icd10"] > 10 * icd["dx_icd9_unmapped"]
    # An admission's version follows its patient's real year: anchor_year_group start + years since.
    pts = pl.read_csv(root / "hosp" / "patients.csv.gz")
    dx = pl.read_csv(root / "hosp" / "diagnoses_icd.csv.gz", schema_overrides={"icd_code": pl.String})
    adm = pl.read_csv(root / "hosp" / "admissions.csv.gz", try_parse_dates=True)
    adm = adm.join(pts, on="subject_id").with_columns(
        (pl.col("anchor_year_group").str.slice(0, 4).cast(pl.Int64) + pl.col("admittime").dt.year()
         - pl.col("anchor_year")).alias("real_year"))
    v10 = dx.group_by("hadm_id").agg((pl.col("icd_version") == 10).any().alias("any10"))
    j = adm.join(v10, on="hadm_id")
    # (the group start is up to 2 years before the true real year, which is >= October 2015 for ICD-10)
    assert j.filter(pl.col("any10"))["real_year"].min() >= 2013
    assert j.filter(pl.col("real_year") >= 2016)["any10"].all()
    assert set(pts.filter(pl.col("anchor_age") > 89)["anchor_age"].to_list()) <= {91}


def test_headers_are_the_real_demo_headers(synth, shared_data):
    _, _, root, _ = synth
    demo = shared_data / "mimic4-demo"
    compared = 0
    for key, cols in HEADERS.items():
        real = demo / f"{key}.csv.gz"
        ours = _header(root / f"{key}.csv.gz")
        assert ours == ",".join(cols), key
        if real.is_file():
            assert ours == _header(real), key
            compared += 1
    assert compared == len(HEADERS) - 2          # the demo has no icu/chartevents and no note/
    # Value formats: unquoted ids, times "YYYY-MM-DD HH:MM:SS", dates for dod and chartdate.
    line = gzip.open(root / "hosp" / "admissions.csv.gz", "rt").readlines()[1]
    assert line.split(",")[2][:2] == "21" and len(line.split(",")[2]) == 19 and '"' not in line
    px = pl.read_csv(root / "hosp" / "procedures_icd.csv.gz", infer_schema=False)
    assert px["chartdate"].str.contains(r"^\d{4}-\d{2}-\d{2}$").all()
    dod = pl.read_csv(root / "hosp" / "patients.csv.gz", infer_schema=False)["dod"].drop_nulls()
    assert dod.len() > 0 and dod.str.contains(r"^2\d{3}-\d{2}-\d{2}$").all()


def test_same_seed_same_bytes_other_seed_other_bytes(synth, tmp_path):
    _, _, root, _ = synth
    first = _sha256s(root)
    _write(tmp_path / "again", N, SEED)
    assert _sha256s(tmp_path / "again") == first
    _write(tmp_path / "b1", 60, SEED + 1)
    _write(tmp_path / "b2", 60, SEED + 1)
    other = _sha256s(tmp_path / "b1")
    assert other == _sha256s(tmp_path / "b2")
    differ = [k for k in first if k in other and first[k] != other[k]]
    assert set(first) == set(other)
    assert set(differ) >= {"hosp/patients.csv.gz", "hosp/labevents.csv.gz", "icu/chartevents.csv.gz",
                           "note/discharge.csv.gz", "ground_truth/visits.parquet"}


def test_discharge_notes_are_deidentified_as_mimic4_and_spans_still_hold(synth):
    _, _, root, _ = synth
    notes = pl.read_csv(root / "note" / "discharge.csv.gz")
    assert notes["note_id"].str.contains(r"^\d{8}-DS-\d+$").all() and notes["note_id"].is_unique().all()
    assert not notes["text"].str.contains("[**", literal=True).any()
    assert notes["text"].str.contains("___", literal=True).all()
    ents = pl.read_parquet(root / "ground_truth" / "entities.parquet").join(notes.select("note_id", "text"),
                                                                           on="note_id", suffix="_note")
    assert ents.height > 0
    assert all(t[s:e] == x for t, s, e, x in zip(ents["text_note"], ents["start"], ents["end"], ents["text"]))


def test_realism_statistics_are_sane(synth):
    from medmm.data.synth.realism import mimic4_stats

    c, _, root, _ = synth
    s = mimic4_stats(root)
    assert (s["patients"], s["admissions"]) == (c.n_patients, c.n_visits)
    assert 6 <= s["dx_per_admission_median"] <= 25
    assert 1 <= s["procedures_per_admission_median"] <= 8
    assert 20 <= s["prescriptions_per_admission_median"] <= 150
    assert 100 <= s["labevents_per_admission_median"] <= 600
    assert 0.9 <= s["icustays_per_admission"] <= 1.2
    assert 0 < s["lab_non_numeric_share"] < 0.3
    assert s["notes_measured"] == 100 and s["raw_tables"] == 18


def test_criticality_labels_recover_the_latent_onsets(synth):
    from medmm.data.synth.respiratory import noninvasive, stay_truth
    from medmm.tasks.criticality import criticality_counts, labels_at, stay_outcomes

    c, _, root, ds = synth
    out = stay_outcomes(ds)
    gt = pl.read_parquet(root / "ground_truth" / "visits.parquet")
    assert {"subject_id", "hadm_id", "stay_id"} <= set(gt.columns)
    first = gt.filter(pl.col("stay_id").is_not_null())
    j = first.join(out, on="stay_id", how="inner")
    assert j.height == first.height == int(c.icu.sum()) > 0
    hours = lambda col: ((pl.col(col) - pl.col("in_time")).dt.total_seconds() / 3600)  # noqa: E731
    j = j.with_columns(hours("vent_start").alias("vent_h"), hours("niv_start").alias("niv_h"),
                       hours("shock_onset").alias("shock_h"))
    # MIMIC-IV is MetaVision only: every first stay's ventilation (invasive or not) and vasopressors are there.
    arf = j.with_columns(pl.min_horizontal("vent_h", "niv_h").alias("truth"))
    assert arf.filter(pl.col("truth").is_not_null()).height > 0
    assert (arf["arf_onset"] - arf["truth"]).abs().max() < 1e-6
    assert (arf["arf_onset"].is_null() == arf["truth"].is_null()).all()
    assert (arf.filter(pl.col("peep_onset").is_not_null())["peep_onset"]
            >= arf.filter(pl.col("peep_onset").is_not_null())["ventilation_onset"]).all()
    shock = j.filter(pl.col("shock"))
    assert shock.height > 0 and (shock["shock_onset_right"] - shock["shock_h"]).abs().max() < 1e-6
    assert j.filter(~pl.col("shock"))["shock_onset_right"].null_count() == j.filter(~pl.col("shock")).height
    assert (j["died_in_hospital"] == j["died_in_hospital_right"]).all()
    second = out.filter(~pl.col("stay_id").is_in(first["stay_id"].implode()))
    assert second.height == int(c.icu2.sum())
    # Labels at 48 h agree with the true labels of the oracle (respiratory.stay_truth) on the cohort.
    vent = icu_events.ventilation(c, SEED)
    truth = stay_truth(c, vent, noninvasive(c, vent, SEED), recorded=np.ones(c.n_visits, bool))
    truth = truth.with_columns((pl.col("icustay_id") + STAY_OFFSET).alias("stay_id"))
    lab = labels_at(out, 48.0).join(truth, on="stay_id")
    for task in ("arf", "shock"):
        k = lab.filter(pl.col(f"{task}_label").is_not_null())
        assert k.height > 0 and k[f"{task}_48h_cohort"].all(), task
        assert (k[f"{task}_label"] == k[f"{task}_48h"]).all(), task
    m = lab.filter(pl.col("mortality_label").is_not_null())
    assert (m["mortality_label"] == m["died_in_hospital"]).all()
    counts = criticality_counts(ds)
    assert counts["tasks"]["arf"]["positive"] + counts["tasks"]["shock"]["positive"] > 0
    assert counts["tasks"]["mortality"]["cohort"] > 0


@pytest.mark.parametrize("n", [1, 2, 5])
def test_tiny_cohorts_write_and_prepare(n, tmp_path):
    """Cohorts without a ventilated stay, a second stay or any ICU stay still write every table."""
    for seed in (0, 1):
        root = tmp_path / f"raw{seed}"
        c, frames = _write(root, n, seed)
        ds = prepare("mimic4", root, tmp_path / f"ds{seed}", mappings={"dir": root / "mappings"}, progress=False)
        assert ds.manifest.tables["patients"] == n
        assert json.loads((tmp_path / f"ds{seed}" / "manifest.json").read_text())["tables"]["visits"] == c.n_visits
        assert (pl.read_parquet(root / "ground_truth" / "visits.parquet")["hadm_id"] - HADM_OFFSET).is_in(
            c.hadm_id.tolist()).all()
