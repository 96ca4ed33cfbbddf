"""The linked synthetic world: one latent cohort written as MIMIC-IV and MIMIC-CXR-JPG (`generate`'s
formats "mimic4", "mimic-cxr" and "linked"; the package docstring shows the directory layout).

    cohort (EHR patients)  --write_mimic4-->  mimic4/          (hosp, icu, note)
        | vent, NIV (respiratory.py)          ground_truth/stays.parquet (true p of ARF / shock /
        |                                     mortality at 48 h, readmission, per ICU stay)
    + imaging-only cohort  --draw_imaging-->  studies, images --write_mimic_cxr--> mimic-cxr/
                                              ground_truth/links.parquet (who is in which source)

The imaging-only patients are a second cohort drawn from its own seed stream, their subject ids
moved past the EHR's so that the two never collide; their admissions are never written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from medmm.data.io import jsonable
from medmm.data.synth.latent import Cohort, Density


def write_world(c: Cohort, out: Path, fmt: str, density: Density, seed: int, lab_density: str | float,
                image_size: int, card: bool, openi: str | Path | None, say: Callable[[str], None]) -> dict[str, Any]:
    """Write format `fmt` ("mimic4", "mimic-cxr" or "linked") of cohort `c` into `out`; return the
    meta saved as synth.json."""
    from medmm.data.synth import GENERATOR_VERSION, icu_events, realism
    from medmm.data.synth import linked_card as lc
    from medmm.data.synth.imaging import draw_imaging, imaging_only_cohort
    from medmm.data.synth.mimic4 import mimic4_ids, write_mimic4
    from medmm.data.synth.mimic_cxr import write_mimic_cxr
    from medmm.data.synth.respiratory import noninvasive, stay_truth

    ehr_dir = out / "mimic4" if fmt == "linked" else out
    cxr_dir = out / "mimic-cxr" if fmt == "linked" else out
    meta: dict[str, Any] = {"generator": "medmm synth", "generator_version": GENERATOR_VERSION, "format": fmt,
                            "seed": seed, "n_patients": c.n_patients, "lab_density": lab_density}
    ids = mimic4_ids(c)
    if fmt in ("mimic4", "linked"):
        ehr_dir.mkdir(parents=True, exist_ok=True)
        frames = write_mimic4(c, ehr_dir, density, seed, progress=say)
        meta["counts_mimic4"] = dict(zip(frames["_counts"]["table"].to_list(), frames["_counts"]["rows"].to_list()))
    vent = icu_events.ventilation(c, seed)
    niv = noninvasive(c, vent, seed)
    truth = stay_truth(c, vent, niv, recorded=np.ones(c.n_visits, bool))
    stay_iv = dict(zip(c.icustay_id.tolist(), ids["stay_id"].tolist())) | dict(zip(c.icustay2_id.tolist(),
                                                                                   ids["stay2_id"].tolist()))
    hadm_iv = dict(zip(c.hadm_id.tolist(), ids["hadm_id"].tolist()))
    subj_iv = dict(zip(c.subject_id.tolist(), ids["subject_id"].tolist()))
    truth_iv = truth.with_columns(
        pl.col("icustay_id").replace_strict(stay_iv).alias("stay_id"),
        pl.col("hadm_id").replace_strict(hadm_iv).alias("hadm_id"),
        pl.col("subject_id").replace_strict(subj_iv).alias("subject_id"),
    ).drop("icustay_id").select("stay_id", pl.exclude("stay_id"))
    gt = out / "ground_truth"
    gt.mkdir(exist_ok=True)
    if fmt != "mimic-cxr":                 # the stays of an EHR that is written
        truth_iv.write_parquet(gt / "stays.parquet", statistics=False)
    counts = {"ehr_patients": c.n_patients, "admissions": c.n_visits, "icu_stays": truth.height}
    figures: dict[str, Any] = {}
    sample = None
    if fmt in ("mimic-cxr", "linked"):
        only = imaging_only_cohort(c.n_patients, seed)
        world = draw_imaging(c, only, vent, icu_events.ventilation(only, seed), seed)
        say(f"imaging world: {world.studies.height:,} studies, {world.images.height:,} images "
            f"({only.n_patients:,} imaging-only patients)")
        s = world.studies
        offset = int(ids["subject_id"][0] - c.subject_id[0])           # mimic4_ids moves every id alike
        subj = s["subject_id"].to_numpy() + offset
        hadm = np.array([hadm_iv.get(h, 0) if h is not None else 0 for h in s["hadm_id"].to_list()], np.int64)
        cxr_dir.mkdir(parents=True, exist_ok=True)
        res = write_mimic_cxr(world, cxr_dir, subj, hadm, image_size, seed, progress=say)
        links = pl.DataFrame({"subject_id": np.concatenate([ids["subject_id"], only.subject_id + offset]),
                              "in_ehr": np.concatenate([np.ones(c.n_patients, bool), np.zeros(only.n_patients, bool)])})
        n_st = pl.DataFrame({"subject_id": subj}).group_by("subject_id").len("studies")
        links = links.join(n_st, on="subject_id", how="left").with_columns(pl.col("studies").fill_null(0))
        links = links.filter(pl.col("in_ehr") | (pl.col("studies") > 0))
        links.write_parquet(gt / "links.parquet", statistics=False)
        both = int(links.filter(pl.col("in_ehr") & (pl.col("studies") > 0)).height)
        counts |= {"imaging_patients": int((links["studies"] > 0).sum()), "both": both,
                   "ehr_only": c.n_patients - both, "imaging_only": int((~links["in_ehr"]).sum()),
                   "studies": s.height, "images": world.images.height,
                   "studies_of_ehr_patients": int(s["in_ehr"].sum()),
                   "views": dict(sorted(world.images.group_by("view").len().iter_rows()))}
        if card:
            studies = res["studies"].with_columns(pl.Series("hadm_cohort", s["hadm_id"]))
            figures = lc.evaluate(c, density, seed, truth, studies, res["images"], res["thumbs"], res["texts"],
                                  criticality=fmt == "linked")
            sample = _sample_grid(world, res["images"], image_size, seed)
            sample.save(out / "sample_images.png", optimize=False)
        say("imaging written")
    meta["linked_counts"] = counts
    meta["image_size"] = image_size
    if card:
        table = None
        if fmt in ("mimic4", "linked"):
            stats = realism.mimic4_stats(ehr_dir)
            meta["realism"] = stats
            table = realism.render_table(stats, real=realism.MIMIC4_DEMO, real_name="real MIMIC-IV demo")
        reports = None
        if openi is not None and fmt != "mimic4":
            from medmm.data.synth import cxr
            real = [r["text"] for r in cxr.read_openi_reports(Path(openi))]
            reports = cxr.compare_reports(res["texts"], real)
            meta["reports_vs_openi"] = reports
        meta["card"] = figures
        if fmt == "mimic4":
            (out / "data_card.md").write_text("# Synthetic MIMIC-IV\n\n" + table)
        else:
            (out / "data_card.md").write_text(lc.render(meta, figures, table, reports))
    (out / "synth.json").write_text(json.dumps(jsonable(meta), indent=2, sort_keys=True) + "\n")
    say("done")
    return meta


def _sample_grid(world, images_gt: pl.DataFrame, size: int, seed: int):
    """A 4 x 4 grid: for each of a few findings the image that shows it most, then normal ones."""
    from medmm.data.synth import cxr
    from medmm.data.synth.cxr import VISUAL
    from medmm.data.synth.linked_card import finding_captions

    picks: list[int] = []
    for f in ("Cardiomegaly", "Edema", "Pleural Effusion", "Consolidation", "Lung Opacity", "Atelectasis",
              "Pneumothorax", "Lung Lesion", "Support Devices", "Fracture"):
        rows = np.flatnonzero(images_gt[f"true_{f}"].to_numpy() == 1)
        rows = [r for r in rows.tolist() if r not in picks]
        if rows:
            picks.append(rows[len(rows) // 2])
    normal = np.flatnonzero(images_gt["true_No Finding"].to_numpy() == 1).tolist()
    picks += [r for r in normal[:: max(1, len(normal) // 8)] if r not in picks][: 16 - len(picks)]
    picks = picks[:16]
    im = world.images
    sel = np.array(picks, np.int64)
    pix = cxr.render_images({k: im[k].to_numpy()[sel] for k in VISUAL}, im["patient_key"].to_numpy()[sel],
                            im["image_key"].to_numpy()[sel], im["view"].to_numpy()[sel], size, seed)
    caps = finding_captions(images_gt[sel])
    return cxr.image_grid(pix, caps, cols=4)


__all__ = ["write_world"]
