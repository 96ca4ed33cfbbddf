"""The MIMIC item ids that define the ICU criticality outcomes, declared once.

MetaVision item ids (>= 220000), shared by MIMIC-III (CHARTEVENTS, PROCEDUREEVENTS_MV,
INPUTEVENTS_MV) and MIMIC-IV (icu/chartevents, procedureevents, inputevents). They are the lists
of FIDDLE-experiments' ``generate_labels.py`` (paper-notes, MedCSP: "ICU criticality labels").

Nothing here imports anything: the MIMIC-III source reads `PEEP_ITEMS` from CHARTEVENTS so that
the ARF onset can be computed, and `medmm.tasks.criticality` reads all three groups.
"""

from __future__ import annotations

# Acute respiratory failure (ARF): PEEP set in chartevents, or the start of ventilation.
PEEP_ITEMS: dict[int, str] = {
    220339: "PEEP set",
}
VENTILATION_ITEMS: dict[int, str] = {
    225792: "Invasive Ventilation",
    225794: "Non-invasive Ventilation",
}

# Shock: the start of a vasopressor infusion (inputevents).
VASOPRESSOR_ITEMS: dict[int, str] = {
    221906: "Norepinephrine",
    221289: "Epinephrine",
    221662: "Dopamine",
    222315: "Vasopressin",
    221749: "Phenylephrine",
}

__all__ = ["PEEP_ITEMS", "VENTILATION_ITEMS", "VASOPRESSOR_ITEMS"]
