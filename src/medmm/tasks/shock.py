"""Shock after T hours in the ICU (FIDDLE "Shock"; MedCSP, T = 48).

Onset (`medmm.tasks.criticality`, item ids in `medmm.tasks.icu_items`): the first start of a
vasopressor in inputevents -- norepinephrine 221906, epinephrine 221289, dopamine 221662,
vasopressin 222315, phenylephrine 221749 -- over the rows FIDDLE keeps (not "Rewritten", amount
> 0, an end time).

Cohort: as ARF (alive and in the ICU at T, no onset before T). Label 1 = an onset at or after T.
Inputs: `medmm.tasks.criticality.ICUTask`.
"""

from __future__ import annotations

from medmm.tasks.criticality import ICUTask


class Shock(ICUTask):
    """Binary label `shock_{T}h`: a vasopressor started at or after T (module docstring)."""

    name, title, outcome = "shock", "Shock", "shock"


__all__ = ["Shock"]
