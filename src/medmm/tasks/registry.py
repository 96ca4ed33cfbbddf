"""The task registry: name -> the task class in its own file (`medmm.tasks.base.Task`).

Imported lazily (a name is resolved when it is used), so this file stays cheap to import and
the task files may import the shared featurisation without a cycle. Adding a task: its file,
then one line here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from medmm.config import did_you_mean

if TYPE_CHECKING:
    from medmm.tasks.base import Task

TASKS: dict[str, str] = {
    "readmission": "medmm.tasks.readmission:Readmission",
    "medication": "medmm.tasks.medication:MedicationRecommendation",
    "icd_coding": "medmm.tasks.icd_coding:ICDCoding",
    "next_visit_dx": "medmm.tasks.next_visit:NextVisitDiagnosis",
    # MedCSP's ICU tasks: one sample per ICU stay
    "arf": "medmm.tasks.arf:ARF",
    "shock": "medmm.tasks.shock:Shock",
    "mortality": "medmm.tasks.mortality:Mortality",
    "icu_readmission": "medmm.tasks.icu_readmission:ICUReadmission",
}
TASK_NAMES = tuple(TASKS)
# Task.records -> the builder of the records its samples come from (a prepared dataset -> frame)
RECORDS: dict[str, str] = {
    "visits": "medmm.tasks.visits:visit_records",
    "icu_stays": "medmm.tasks.criticality:icu_stay_records",
}


def task_class(name: str) -> type[Task]:
    """The registered task class `name`; a KeyError listing the valid names otherwise."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; valid: {', '.join(TASKS)}{did_you_mean(name, list(TASKS))}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def record_builder(kind: str):
    """The function that builds records of `kind` (a `Task.records` value) from a dataset."""
    if kind not in RECORDS:
        raise KeyError(f"unknown record kind {kind!r}; valid: {', '.join(RECORDS)}")
    module, fn = RECORDS[kind].split(":")
    return getattr(importlib.import_module(module), fn)


def build_task(name: str, cfg) -> Task:
    """Task `name` as the fine-tuning config `cfg` sets its options."""
    return task_class(name).from_config(cfg)


__all__ = ["TASKS", "TASK_NAMES", "RECORDS", "task_class", "record_builder", "build_task"]
