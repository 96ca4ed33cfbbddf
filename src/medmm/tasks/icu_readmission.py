"""30-day readmission on the ICU cohort (MedCSP's readmission task).

paper-notes: MedCSP's Table 1 count equals FIDDLE's mortality-48h cohort, so the cohort is
unverified; ours is the mortality cohort at T less the stays whose patient died in the admission
(and NEWBORN admissions), with MedM-PLM's 30-day label (`medmm.tasks.readmission`): the
patient's next hospital admission starts within 30 days of this admission's discharge.

Predicted at discharge, so the inputs are MedCSP's five: the first T hours (``timeseries``,
``demographics``; `medmm.tasks.criticality.ICUTask`) and the admission's discharge summary
(``note``) and diagnosis + medication codes (``dx_codes`` / ``med_codes``, `[CLS] dx.. med..`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from medmm.tasks.criticality import ICUTask
from medmm.tasks.spec import TaskSpec


class ICUReadmission(ICUTask):
    """Binary label `readmitted_30d`, from the five EHR modalities (module docstring)."""

    name, title, outcome = "icu_readmission", "Readmission (ICU)", "readmission"
    provides = frozenset({"timeseries", "demographics", "note", "dx_codes", "med_codes"})

    @property
    def label_name(self) -> str:
        return "readmitted_30d"

    def features(self, samples: pl.DataFrame, records: pl.DataFrame, spec: TaskSpec, encode: Any,
                 notes: Any) -> tuple[dict[str, list], np.ndarray]:
        feats, labels = super().features(samples, records, spec, encode, notes)
        feats["input_ids"] = [notes[v] for v in samples["visit_id"].to_list()]
        feats["code_ids"] = [encode(dx, med) for dx, med in zip(samples["dx"].to_list(), samples["med"].to_list())]
        return feats, labels


__all__ = ["ICUReadmission"]
