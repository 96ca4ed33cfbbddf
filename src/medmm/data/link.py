"""The EHR <-> imaging link: each imaging study to the EHR admission that contains it.

MIMIC-CXR has no hadm_id. A study belongs to a patient through ``subject_id`` (shared by MIMIC-IV,
MIMIC-III and MIMIC-CXR) and to an admission only by time: both databases shift one patient's
dates by the same offset, so a shifted study time compares with shifted admission times
(paper-notes, MedCSP: "Sources and records").

Rule: a study of patient p at time t is linked to the admission v of p with
``admit_time <= t <= discharge_time`` (both ends included). Where admissions of one patient
overlap and several contain t, the one admitted last wins (ties: the smallest visit_id), so the
link is a function of the data alone. A study of a patient with admissions none of which
contains t, and a study of a patient absent from the EHR, get a null ``visit_id``; neither is an
error. Both are counted (`LinkCounts`), because MedCSP holds the imaging-only patients out of
pre-training as its retrieval evaluation set.

    linked, counts = link_studies(studies, visits)        # frames -> frames (pure)
    linked, counts = link_datasets("ds_cxr", "ds_mimic4")  # two prepared datasets

`medmm prepare --source mimic-cxr --link-ehr DS_EHR` runs the link while preparing and stores the
result in ``studies.visit_id`` and the counts in ``manifest.extra["link"]``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from medmm.data.schema import CanonicalDataset


@dataclass(frozen=True)
class LinkCounts:
    """What the link found. Patients are counted by id across the two sources."""

    studies: int                  # imaging studies considered
    studies_linked: int           # inside an admission of the same patient
    studies_outside_admissions: int  # patient in the EHR, but no admission contains the study
    studies_patient_not_in_ehr: int  # patient absent from the EHR source
    patients_both: int            # patients with studies and EHR admissions
    patients_imaging_only: int    # patients with studies, absent from the EHR
    patients_ehr_only: int        # patients with admissions and no study

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    def line(self) -> str:
        return (f"link: {self.studies_linked:,} of {self.studies:,} studies inside an EHR admission "
                f"({self.studies_outside_admissions:,} outside every admission of their patient, "
                f"{self.studies_patient_not_in_ehr:,} of patients absent from the EHR); patients in both "
                f"sources {self.patients_both:,}, imaging only {self.patients_imaging_only:,}, "
                f"EHR only {self.patients_ehr_only:,}")


def link_studies(studies: pl.DataFrame, visits: pl.DataFrame) -> tuple[pl.DataFrame, LinkCounts]:
    """Add ``visit_id`` (the containing admission, else null) to `studies`; count the outcome.

    Args:
        studies: at least ``study_id``, ``patient_id``, ``study_time`` (one row per study; other
            columns are kept; an existing ``visit_id`` is replaced).
        visits: at least ``visit_id``, ``patient_id``, ``admit_time``, ``discharge_time``.

    Returns the studies in their input order with ``visit_id`` (Int64), and the counts.
    """
    need_s = {"study_id", "patient_id", "study_time"} - set(studies.columns)
    need_v = {"visit_id", "patient_id", "admit_time", "discharge_time"} - set(visits.columns)
    if need_s or need_v:
        raise ValueError(f"link_studies: studies lack {sorted(need_s)}, visits lack {sorted(need_v)}")
    if studies["study_id"].is_duplicated().any():
        raise ValueError("link_studies: study_id repeats in studies; one row per study expected")
    s = studies.select("study_id", "patient_id", "study_time")
    v = visits.select("visit_id", "patient_id", "admit_time", "discharge_time")
    # Equi-join on the patient, then the interval test: a patient has few admissions, so the
    # intermediate is (studies x admissions of the same patient), small even at MIMIC scale.
    hits = (s.join(v, on="patient_id", how="inner")
            .filter((pl.col("admit_time") <= pl.col("study_time")) & (pl.col("study_time") <= pl.col("discharge_time")))
            .sort(["study_id", "admit_time", "visit_id"], descending=[False, True, False])
            .unique("study_id", keep="first", maintain_order=True)
            .select("study_id", "visit_id"))
    base = studies.drop("visit_id") if "visit_id" in studies.columns else studies
    out = base.join(hits, on="study_id", how="left", maintain_order="left")
    out = out.with_columns(pl.col("visit_id").cast(pl.Int64))

    img_patients = set(s["patient_id"].unique().to_list())
    ehr_patients = set(v["patient_id"].unique().to_list())
    in_ehr = s["patient_id"].is_in(list(ehr_patients))
    linked = int(out["visit_id"].is_not_null().sum())
    counts = LinkCounts(
        studies=s.height,
        studies_linked=linked,
        studies_outside_admissions=int(in_ehr.sum()) - linked,
        studies_patient_not_in_ehr=int((~in_ehr).sum()),
        patients_both=len(img_patients & ehr_patients),
        patients_imaging_only=len(img_patients - ehr_patients),
        patients_ehr_only=len(ehr_patients - img_patients),
    )
    return out, counts


def link_datasets(imaging: str | Path | CanonicalDataset,
                  ehr: str | Path | CanonicalDataset) -> tuple[pl.DataFrame, LinkCounts]:
    """`link_studies` on the ``studies`` of a prepared imaging dataset and the ``visits`` of a
    prepared EHR dataset (any EHR source: mimic3, mimic4)."""
    img = imaging if isinstance(imaging, CanonicalDataset) else CanonicalDataset(imaging)
    e = ehr if isinstance(ehr, CanonicalDataset) else CanonicalDataset(ehr)
    return link_studies(img.table("studies"), e.table("visits"))


def link_record(ehr: CanonicalDataset, counts: LinkCounts) -> dict[str, Any]:
    """The manifest entry of a link: the EHR dataset it used and the counts."""
    return {"ehr": str(ehr.path), "ehr_source": ehr.manifest.source,
            "ehr_inputs": ehr.manifest.inputs, **counts.to_json()}


__all__ = ["LinkCounts", "link_studies", "link_datasets", "link_record"]
