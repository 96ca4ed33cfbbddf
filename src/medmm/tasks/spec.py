"""TaskSpec: what a downstream model needs to know about a task (shared downstream contract).

A tiny frozen dataclass; the featurizer and the fine-tune loop build it from a task's samples,
and `medmm.models.downstream.build_model` sizes the output layer from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TASK_NAMES = ("readmission", "medication", "icd_coding")


@dataclass(frozen=True)
class TaskSpec:
    name: Literal["readmission", "medication", "icd_coding"]
    kind: Literal["binary", "multilabel"]
    num_labels: int  # 1 for binary
    label_names: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.name not in TASK_NAMES:
            raise ValueError(f"TaskSpec.name must be one of {TASK_NAMES}, got {self.name!r}")
        if self.kind not in ("binary", "multilabel"):
            raise ValueError(f"TaskSpec.kind must be 'binary' or 'multilabel', got {self.kind!r}")
        if self.kind == "binary" and self.num_labels != 1:
            raise ValueError(f"binary task {self.name!r} must have num_labels=1, got {self.num_labels}")
        if self.num_labels < 1:
            raise ValueError(f"task {self.name!r}: num_labels must be >= 1, got {self.num_labels}")
        if self.label_names and len(self.label_names) != self.num_labels:
            raise ValueError(f"task {self.name!r}: {len(self.label_names)} label_names for "
                             f"num_labels={self.num_labels}")
