"""Writer of the MIMIC-CXR-JPG 2.0.0 layout (with the MIMIC-CXR reports merged in), from an
`imaging.ImagingWorld`:

    mimic-cxr-2.0.0-metadata.csv.gz   one row per image (dicom_id, subject_id, study_id, the view,
                                      Rows / Columns, StudyDate YYYYMMDD, StudyTime HHMMSS.fff ...)
    mimic-cxr-2.0.0-split.csv.gz      train / validate / test by patient (80 / 10 / 10: the real
                                      split holds out ~2%, too few patients at synthetic sizes)
    mimic-cxr-2.0.0-chexpert.csv.gz   the 14 CheXpert observations labelled from the report text by
                                      `cxr.chexpert_labels` (1 / 0 / -1 uncertain / blank), as the
                                      real file is labelled from the reports; no negbio file (a
                                      second labeler medmm does not have)
    files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg   grayscale JPGs (`cxr.render_images`), size x size
    files/pXX/pSUBJECT/sSTUDY.txt            the free-text report (`cxr.write_reports`)
    ground_truth/images.parquet       per image: ids, view, the visual intensities, the true labels
    ground_truth/studies.parquet      per study: ids, time, kind, the admission containing it (true
                                      link, MIMIC-IV hadm_id), days to the nearest admission, the
                                      labels the report was written to carry

Ids follow the release's forms: study_id 5xxxxxxx, dicom_id five dash-separated groups of eight
hex digits, subject_id as the EHR layout writes it (`subject_ids`), pXX its first two digits.
Deterministic per seed: rows in (subject, study time, view) order, gzip with mtime 0, JPEG bytes
from a fixed encoder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from PIL import Image

from medmm.data.schema import CXR_FINDINGS
from medmm.data.synth import cxr
from medmm.data.synth.mimic3 import write_table
from medmm.data.synth.cxr import VISUAL
from medmm.data.synth.imaging import ImagingWorld

SPLIT_SHARES = (0.8, 0.1, 0.1)
BATCH = 256
THUMB = 16          # side of the downsampled pixels returned for the data card's probes
_PROCEDURE = {("AP",): "CHEST (PORTABLE AP)", ("AP", "AP"): "CHEST (PORTABLE AP)", ("PA",): "CHEST (PA)",
              ("PA", "LATERAL"): "CHEST (PA AND LAT)"}
_VIEW_MEANING = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral"}
METADATA, SPLIT, CHEXPERT = "mimic-cxr-2.0.0-metadata", "mimic-cxr-2.0.0-split", "mimic-cxr-2.0.0-chexpert"
HEADERS: dict[str, tuple[str, ...]] = {
    METADATA: ("dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows",
               "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
               "PatientOrientationCodeSequence_CodeMeaning"),
    SPLIT: ("dicom_id", "study_id", "subject_id", "split"),
    CHEXPERT: ("subject_id", "study_id", *CXR_FINDINGS),
}


def _ids(world: ImagingWorld, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    S, I = world.studies.height, world.images.height
    study_id = 50_000_000 + rng.permutation(S) * 13 + rng.integers(0, 13, S)
    groups = rng.integers(0, 2**32, (I, 5), dtype=np.uint64)
    dicom = ["-".join(f"{int(x):08x}" for x in row) for row in groups]
    return study_id.astype(np.int64), dicom


def write_mimic_cxr(world: ImagingWorld, out: Path, subject_ids: np.ndarray, hadm_ids: np.ndarray, size: int,
                    seed: int, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the layout into `out`. `subject_ids` (per study) and `hadm_ids` (per study, 0 where no
    admission contains it) are in the EHR layout's id space. Returns the ground-truth frames, the
    report texts and each image's pixels downsampled to THUMB x THUMB in [0, 1] ("thumbs")."""
    say = progress or (lambda m: None)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xC0C]))
    st, im = world.studies, world.images
    study_id, dicom = _ids(world, rng)
    subj = np.asarray(subject_ids, np.int64)
    img_study = im["study_key"].to_numpy()
    # reports and their labels
    sf = {k: st[k].to_numpy() for k in VISUAL}
    texts, intended = cxr.write_reports(sf, [tuple(v) for v in st["views"].to_list()], st["indication"].to_numpy(),
                                        st["study_key"].to_numpy(), seed)
    labels = cxr.chexpert_labels(texts)
    # folders and files
    files = out / "files"
    study_dir = [files / f"p{str(s)[:2]}" / f"p{s}" / f"s{k}" for s, k in zip(subj.tolist(), study_id.tolist())]
    for d, text in zip(study_dir, texts):
        d.mkdir(parents=True, exist_ok=True)
        (d.parent / f"{d.name}.txt").write_text(text)
    say(f"mimic-cxr: {len(texts):,} reports")
    vis = {k: im[k].to_numpy() for k in VISUAL}
    views = im["view"].to_numpy()
    keys, pkeys = im["image_key"].to_numpy(), im["patient_key"].to_numpy()
    thumbs = np.zeros((im.height, THUMB, THUMB), np.float32)
    for a in range(0, im.height, BATCH):
        sl = slice(a, a + BATCH)
        pix = cxr.render_images({k: v[sl] for k, v in vis.items()}, pkeys[sl], keys[sl], views[sl], size, seed)
        for i, arr in zip(range(a, a + len(pix)), pix):
            (study_dir[img_study[i]] / f"{dicom[i]}.jpg").write_bytes(cxr.encode_jpeg(arr))
            thumbs[i] = np.asarray(Image.fromarray(arr).resize((THUMB, THUMB), Image.Resampling.BOX), np.float32) / 255
    say(f"mimic-cxr: {im.height:,} images of {size} px")
    # tables
    t = st["time"].to_numpy().astype("datetime64[ms]")
    day = t.astype("datetime64[D]")
    ymd = pl.Series(day).dt.strftime("%Y%m%d").cast(pl.Int64).to_numpy()
    ms = (t - day).astype(np.int64)
    hms = (ms // 3_600_000) * 10_000 + (ms // 60_000 % 60) * 100 + ms // 1000 % 60
    study_views = [tuple(v) for v in st["views"].to_list()]
    proc = np.array([_PROCEDURE.get(v, "CHEST (PA AND LAT)") for v in study_views])
    meta = pl.DataFrame({
        "dicom_id": dicom, "subject_id": subj[img_study], "study_id": study_id[img_study],
        "PerformedProcedureStepDescription": proc[img_study], "ViewPosition": views,
        "Rows": np.full(im.height, size), "Columns": np.full(im.height, size),
        "StudyDate": ymd[img_study], "StudyTime": [f"{x}.{m:03d}" for x, m in zip(hms[img_study].tolist(),
                                                                                     (ms % 1000)[img_study].tolist())],
        "ProcedureCodeSequence_CodeMeaning": proc[img_study],
        "ViewCodeSequence_CodeMeaning": [_VIEW_MEANING[v] for v in views],
        "PatientOrientationCodeSequence_CodeMeaning": np.where(views == "AP", "Recumbent", "Erect"),
    })
    patients = np.unique(subj)
    pr = np.random.default_rng(np.random.SeedSequence([seed, 0x5917])).random(len(patients))
    split_of = dict(zip(patients.tolist(), np.where(pr < SPLIT_SHARES[0], "train",
                                                    np.where(pr < SPLIT_SHARES[0] + SPLIT_SHARES[1], "validate", "test"))))
    split = pl.DataFrame({"dicom_id": dicom, "study_id": study_id[img_study], "subject_id": subj[img_study],
                          "split": [split_of[s] for s in subj[img_study].tolist()]})

    def label_col(x: np.ndarray) -> pl.Series:
        return pl.Series([None if np.isnan(v) else f"{v:.1f}" for v in x.tolist()], dtype=pl.String)

    chexpert = pl.DataFrame({"subject_id": subj, "study_id": study_id,
                             **{f: label_col(labels[f]) for f in CXR_FINDINGS}}).sort("subject_id", "study_id")
    for name, df in ((METADATA, meta), (SPLIT, split), (CHEXPERT, chexpert)):
        write_table(out / f"{name}.csv.gz", name, df, headers=HEADERS)
    # ground truth
    truth_img = cxr.report_truth(vis)
    gt = out / "ground_truth"
    gt.mkdir(exist_ok=True)
    images_gt = pl.DataFrame({"dicom_id": dicom, "study_id": study_id[img_study], "subject_id": subj[img_study],
                              "view": views, **vis, **{f"true_{f}": truth_img[f] for f in CXR_FINDINGS}})
    studies_gt = st.select("study_key", "kind", "in_ehr", "delta_days", "indication", "time").with_columns(
        pl.Series("study_id", study_id), pl.Series("subject_id", subj),
        pl.Series("hadm_id", np.asarray(hadm_ids, np.int64)).replace(0, None),
        *[pl.Series(f"report_{f}", intended[f]) for f in CXR_FINDINGS])
    images_gt.write_parquet(gt / "images.parquet", statistics=False)
    studies_gt.write_parquet(gt / "studies.parquet", statistics=False)
    return {"images": images_gt, "studies": studies_gt, "chexpert": chexpert, "texts": texts, "thumbs": thumbs}


__all__ = ["write_mimic_cxr", "SPLIT_SHARES"]
