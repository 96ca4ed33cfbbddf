"""Acute respiratory failure after T hours in the ICU (FIDDLE "ARF"; MedCSP, T = 48).

Onset (`medmm.tasks.criticality`, item ids in `medmm.tasks.icu_items`): the first PEEP set
(chartevents 220339) or the first start of invasive / non-invasive ventilation (procedureevents
225792 / 225794). "ARF" in FIDDLE and in the pipelines MedCSP reuses is acute *respiratory*
failure; the MedCSP paper writes "renal".

Cohort: adult ICU stays (MetaVision stays for MIMIC-III) alive and in the ICU at T, without an
onset before T. Label 1 = an onset at or after T. Inputs: `medmm.tasks.criticality.ICUTask`.
"""

from __future__ import annotations

from medmm.tasks.criticality import ICUTask


class ARF(ICUTask):
    """Binary label `arf_{T}h`: ventilation or PEEP set at or after T (module docstring)."""

    name, title, outcome = "arf", "ARF", "arf"


__all__ = ["ARF"]
