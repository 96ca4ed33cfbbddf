"""In-hospital mortality, predicted at T hours in the ICU (FIDDLE; MedCSP, T = 48).

Cohort: adult ICU stays (MetaVision stays for MIMIC-III) alive and in the ICU at T. Label 1 =
the patient died in that hospital admission (MIMIC's HOSPITAL_EXPIRE_FLAG). FIDDLE's notebook
writes this cohort as ``mortality_48.0h.csv``. Inputs: `medmm.tasks.criticality.ICUTask`.
"""

from __future__ import annotations

from medmm.tasks.criticality import ICUTask


class Mortality(ICUTask):
    """Binary label `mortality_{T}h`: died in the hospital admission (module docstring)."""

    name, title, outcome = "mortality", "Mortality", "mortality"


__all__ = ["Mortality"]
