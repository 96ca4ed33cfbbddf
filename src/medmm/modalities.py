"""The inputs a task can provide and a model can read, by name, with the batch keys that carry them.

A batch is a dict of tensors with the stable keys below. A modality a model does not read is not
collated at all; a modality that a sample lacks (a visit without a discharge summary, a patient
without an X-ray) is present as its keys plus a mask that says so (an all-zero attention-mask
row), never as a made-up value. Tasks declare which modalities they provide, models which ones
they read (`medmm.tasks.registry`, `medmm.models.downstream`); the collator builds the
intersection.

    name          keys (the mask key last)                   what
    note          input_ids, attention_mask                  a discharge summary's word pieces ([CLS] .. [SEP])
    dx_codes      code_ids, code_mask                        ICD-9 diagnosis codes of a visit
    med_codes     code_ids, code_mask                        ATC-3 medication classes of a visit
    demographics  demographics, demographics_mask            a stay's static FIDDLE one-hots: age, sex, ... (B, F_s)
    timeseries    timeseries, timeseries_mask                a stay's first T hours, FIDDLE one-hots (B, T/dt, F)
    report        report_ids, report_mask                    a radiology report's word pieces (MedCSP; not built yet)
    image         pixel_values, image_mask                   a chest X-ray (MedCSP; not built yet)

dx_codes and med_codes share one sequence, as the MedM-PLM / G-BERT code tower reads them:
`[CLS] dx.. med..` (a task may provide either or both; the code vocabulary keeps them apart).
Tasks over a patient's earlier visits add the same keys with a `hist_` prefix, one more
dimension (B, V, ...) and `hist_visit_mask` (B, V) for the visits that exist.

This module imports nothing else of medmm, so any layer may import it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Modality:
    name: str
    keys: tuple[str, ...]  # the batch keys that carry it, the mask last
    built: bool = True  # False: named here so that the keys are reserved, not collated by anything yet

    @property
    def mask(self) -> str:
        return self.keys[-1]

    def history_keys(self) -> tuple[str, ...]:
        return tuple(f"hist_{k}" for k in self.keys)


HISTORY_MASK = "hist_visit_mask"

MODALITIES: dict[str, Modality] = {m.name: m for m in (
    Modality("note", ("input_ids", "attention_mask")),
    Modality("dx_codes", ("code_ids", "code_mask")),
    Modality("med_codes", ("code_ids", "code_mask")),
    Modality("demographics", ("demographics", "demographics_mask")),
    Modality("timeseries", ("timeseries", "timeseries_mask")),
    Modality("report", ("report_ids", "report_mask"), built=False),
    Modality("image", ("pixel_values", "image_mask"), built=False),
)}
CODES = frozenset({"dx_codes", "med_codes"})  # the modalities of the one code sequence


def check_modalities(names, what: str) -> frozenset[str]:
    """`names` as a frozenset, or a ValueError naming `what` and the unknown names."""
    names = frozenset(names)
    unknown = sorted(names - set(MODALITIES))
    if unknown:
        raise ValueError(f"{what}: unknown modality {unknown}; known: {', '.join(MODALITIES)}")
    return names


__all__ = ["Modality", "MODALITIES", "CODES", "HISTORY_MASK", "check_modalities"]
