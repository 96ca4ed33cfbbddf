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
}
TASK_NAMES = tuple(TASKS)


def task_class(name: str) -> type[Task]:
    """The registered task class `name`; a KeyError listing the valid names otherwise."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; valid: {', '.join(TASKS)}{did_you_mean(name, list(TASKS))}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_task(name: str, cfg) -> Task:
    """Task `name` as the fine-tuning config `cfg` sets its options."""
    return task_class(name).from_config(cfg)


__all__ = ["TASKS", "TASK_NAMES", "task_class", "build_task"]
