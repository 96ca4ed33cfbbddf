"""TaskSpec: what a downstream model needs to know about a task (shared downstream contract).

A tiny frozen dataclass that a task (`medmm.tasks.base.Task.spec`) builds from its samples;
`medmm.models.downstream.build_model` sizes the output layer from it and reads `history` to
know whether batches carry the patient's earlier visits (the `hist_*` keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class TaskSpec:
    name: str  # a `medmm.tasks.registry` name
    kind: Literal["binary", "multilabel"]
    num_labels: int  # 1 for binary
    label_names: list[str] = field(default_factory=list)
    # Batches carry the patient's earlier visits (hist_* keys). None: as the registered task of
    # this name declares (False for a name that is not registered).
    history: bool | None = None

    def __post_init__(self):
        if not self.name:
            raise ValueError("TaskSpec.name must be a task name")
        if self.kind not in ("binary", "multilabel"):
            raise ValueError(f"TaskSpec.kind must be 'binary' or 'multilabel', got {self.kind!r}")
        if self.kind == "binary" and self.num_labels != 1:
            raise ValueError(f"binary task {self.name!r} must have num_labels=1, got {self.num_labels}")
        if self.num_labels < 1:
            raise ValueError(f"task {self.name!r}: num_labels must be >= 1, got {self.num_labels}")
        if self.label_names and len(self.label_names) != self.num_labels:
            raise ValueError(f"task {self.name!r}: {len(self.label_names)} label_names for "
                             f"num_labels={self.num_labels}")
        if self.history is None:
            from medmm.tasks.registry import TASKS, task_class  # at call time: the registry imports tasks

            object.__setattr__(self, "history", self.name in TASKS and task_class(self.name).history)
