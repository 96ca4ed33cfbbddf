"""`medmm synth --format linked` end to end: both layouts written from one latent world, read back
by the MIMIC-IV and MIMIC-CXR loaders with only documented drops, linked as the ground truth says,
byte-identical per seed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from medmm.data.images import ImageConfig, ImageSet
from medmm.data.schema import CXR_FINDINGS
from medmm.data.io import sha256_tree
from medmm.data.sources import prepare
from medmm.data.synth import generate

# The MIMIC-CXR loader's documented drops that a synthetic release may show: none. (The
# MIMIC-IV ones are checked in tests/test_synth_mimic4.py.)
CXR_DROPS: set[str] = set()


@pytest.fixture(scope="module")
def linked(tmp_path_factory):
    root = tmp_path_factory.mktemp("linked")
    raw = generate(root / "raw", n_patients=300, seed=3, fmt="linked", image_size=64)
    ehr = prepare("mimic4", raw / "mimic4", root / "ds4", mappings={"dir": raw / "mimic4" / "mappings"},
                  progress=False)
    img = prepare("mimic-cxr", raw / "mimic-cxr", root / "dscxr", progress=False, link_ehr=root / "ds4")
    return raw, ehr, img


def test_layout_and_ground_truth_files(linked):
    raw, _, _ = linked
    for rel in ("mimic4/hosp/admissions.csv.gz", "mimic4/icu/chartevents.csv.gz", "mimic4/note/discharge.csv.gz",
                "mimic-cxr/mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr/mimic-cxr-2.0.0-split.csv.gz",
                "mimic-cxr/mimic-cxr-2.0.0-chexpert.csv.gz", "mimic-cxr/ground_truth/images.parquet",
                "mimic-cxr/ground_truth/studies.parquet", "ground_truth/stays.parquet", "ground_truth/links.parquet",
                "data_card.md", "sample_images.png", "synth.json"):
        assert (raw / rel).is_file(), rel
    jpgs = list((raw / "mimic-cxr" / "files").rglob("*.jpg"))
    meta = pl.read_csv(raw / "mimic-cxr" / "mimic-cxr-2.0.0-metadata.csv.gz")
    assert len(jpgs) == meta.height > 0
    assert all(p.parent.parent.parent.name == f"p{str(p.parent.parent.name[1:])[:2]}" for p in jpgs[:50])
    assert (raw / "sample_images.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (raw / "data_card.md").read_text()
    for section in ("Counts and overlap", "nearest admission", "Criticality at 48 h", "Findings from pixels",
                    "Realism of the MIMIC-IV layout"):
        assert section in card, section


def test_loaders_read_everything_with_documented_drops_only(linked):
    raw, ehr, img = linked
    meta = pl.read_csv(raw / "mimic-cxr" / "mimic-cxr-2.0.0-metadata.csv.gz")
    for table, acc in img.manifest.accounting.items():
        assert set(acc.dropped) <= CXR_DROPS, (table, acc)
    assert img.table("images").height == meta.height
    studies = img.table("studies")
    assert studies.height == meta["study_id"].n_unique()
    assert studies["report"].null_count() == 0 and studies["impression"].null_count() < 0.15 * studies.height
    # labels as the file has them
    file = pl.read_csv(raw / "mimic-cxr" / "mimic-cxr-2.0.0-chexpert.csv.gz", infer_schema=False)
    got = studies.select("study_id", pl.col("chexpert").struct.unnest()).sort("study_id")
    want = file.select(pl.col("study_id").cast(pl.Int64), *[pl.col(f).cast(pl.Float64) for f in CXR_FINDINGS]).sort("study_id")
    assert got.select(want.columns).equals(want)
    # a few images load at the written size
    ds = ImageSet(raw / "mimic-cxr", img.table("images").head(4), ImageConfig(size=64))
    assert all(tuple(ds[i]["image"].shape) == (1, 64, 64) for i in range(len(ds)))


def test_link_matches_the_ground_truth(linked):
    raw, ehr, img = linked
    truth = pl.read_parquet(raw / "mimic-cxr" / "ground_truth" / "studies.parquet")
    links = pl.read_parquet(raw / "ground_truth" / "links.parquet")
    got = img.table("studies").select("study_id", "visit_id").join(truth.select("study_id", "hadm_id"), on="study_id")
    assert got.height == truth.height
    assert (got["visit_id"].fill_null(0) == got["hadm_id"].fill_null(0)).all()
    extra = img.manifest.extra["link"]
    assert extra["patients_both"] == links.filter(pl.col("in_ehr") & (pl.col("studies") > 0)).height
    assert extra["patients_imaging_only"] == links.filter(~pl.col("in_ehr")).height
    assert extra["studies_linked"] == truth["hadm_id"].is_not_null().sum()
    assert 0.35 < extra["patients_both"] / ehr.table("patients").height < 0.58


def test_stay_truth_ids_are_the_mimic4_ids(linked):
    raw, ehr, _ = linked
    stays = pl.read_parquet(raw / "ground_truth" / "stays.parquet")
    ds_stays = ehr.table("stays")
    assert set(stays["stay_id"].to_list()) == set(ds_stays["stay_id"].to_list())
    p = stays["p_arf_48h"].drop_nulls().drop_nans().to_numpy()
    assert ((p >= 0) & (p <= 1)).all()


@pytest.mark.parametrize("seed", [0, 11, 2026])
def test_byte_identical_per_seed(tmp_path, seed):
    a = generate(tmp_path / "a", n_patients=60, seed=seed, fmt="linked", image_size=64)
    b = generate(tmp_path / "b", n_patients=60, seed=seed, fmt="linked", image_size=64)
    assert sha256_tree(a) == sha256_tree(b)
    c = generate(tmp_path / "c", n_patients=60, seed=seed + 1, fmt="linked", image_size=64)
    assert sha256_tree(a) != sha256_tree(c)


def test_single_source_formats_and_bad_arguments(tmp_path):
    cxr = generate(tmp_path / "cxr", n_patients=40, seed=1, fmt="mimic-cxr", image_size=96)
    assert (cxr / "mimic-cxr-2.0.0-metadata.csv.gz").is_file() and not (cxr / "hosp").exists()
    sizes = {p.stat().st_size for p in list((cxr / "files").rglob("*.jpg"))[:3]}
    assert sizes and min(sizes) > 500
    iv = generate(tmp_path / "iv", n_patients=40, seed=1, fmt="mimic4")
    assert (iv / "hosp" / "patients.csv.gz").is_file() and not (iv / "files").exists()
    assert json.loads((iv / "synth.json").read_text())["format"] == "mimic4"
    for bad in (32, 300, 100.5):
        with pytest.raises(ValueError, match="image_size"):
            generate(tmp_path / f"bad{bad}", n_patients=10, seed=0, fmt="linked", image_size=bad)
    assert not any((tmp_path / f"bad{b}").exists() for b in (32, 300, 100.5))
    with pytest.raises(ValueError, match="unknown synthetic format"):
        generate(tmp_path / "x", n_patients=10, seed=0, fmt="mimic5")


def test_images_show_their_findings(linked):
    """The written JPGs (decoded) differ by finding: a linear probe on 16 x 16 pixels ranks images
    with cardiomegaly above those without."""
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    raw, _, img = linked
    gt = pl.read_parquet(raw / "mimic-cxr" / "ground_truth" / "images.parquet")
    paths = img.table("images").select("image_id", "path")
    gt = gt.join(paths, left_on="dicom_id", right_on="image_id").filter(pl.col("view") != "LATERAL")
    X = np.stack([np.asarray(Image.open(raw / "mimic-cxr" / p).convert("L").resize((16, 16)), np.float32).ravel() / 255
                  for p in gt["path"].to_list()])
    y = gt["true_Cardiomegaly"].to_numpy() == 1
    assert 10 < y.sum() < len(y) - 10
    pred = cross_val_predict(LogisticRegression(C=0.1, max_iter=2000), X, y, cv=5, method="predict_proba")[:, 1]
    assert roc_auc_score(y, pred) > 0.7
