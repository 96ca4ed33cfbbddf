"""Next-visit diagnosis prediction (Doctor AI's sequential task, Choi et al. 2016).

Clinical definition: for a patient with two or more admissions, at each admission t that is
followed by another, predict the set of ICD-9 diagnosis codes recorded at the NEXT admission
(t + 1, by admission time) from the notes and the diagnosis + medication codes of admissions
1..t. Cohort: patients with one admission are excluded; so is an index admission whose next
admission has no diagnosis code. Nothing of admission t + 1 is an input: the history ends with
admission t (its discharge summary, its codes).

Inputs (the history layout of `medmm.tasks.featurize`): `code_ids` = admission t's
`[CLS] dx.. med..`; `hist_input_ids` / `hist_code_ids` = admissions 1..t, oldest first, the
`max_history` most recent kept (admission t included). Split 8:1:1 by patient
(`medmm.tasks.splits`). Labels: the diagnosis codes of next admissions in the TRAINING split,
most frequent first (a code never seen there cannot be learned).

Metrics: recall@10 / 20 / 30 (`medmm.eval.metrics.recall_at_k`, Doctor AI's), beside
`multilabel_metrics` (micro AUROC, the default selection metric; micro-F1 and accuracy at 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from medmm.eval.metrics import recall_at_k
from medmm.tasks.base import Task, require_columns
from medmm.tasks.featurize import history_features, multi_hot
from medmm.tasks.spec import TaskSpec
from medmm.tasks.splits import with_split

KS = (10, 20, 30)


@dataclass
class NextVisitDiagnosis(Task):
    split_seed: int = 0
    max_history: int | None = None  # most recent admissions kept, the current one included; None = all

    name, title, kind = "next_visit_dx", "Next-visit diagnosis", "multilabel"
    provides = frozenset({"note", "dx_codes", "med_codes"})
    history = True
    options = ("split_seed", "max_history")
    detail_metrics = ("auroc",) + tuple(f"recall@{k}" for k in KS)
    detail_heading = "Next-visit diagnosis: recall@k"
    metric_definitions = {
        "f1": "micro-F1 over every (admission, next-admission code) cell at p >= 0.5.",
        "accuracy": "element-wise accuracy over (admission, code) cells at p >= 0.5.",
        "auroc": "micro AUROC over (admission, code) cells; the default model-selection metric.",
        **{f"recall@{k}": f"Doctor AI's recall@{k}: true next-admission codes among the {k} highest "
                          "scores / true codes, averaged over admissions." for k in KS},
    }

    @classmethod
    def from_config(cls, cfg: Any) -> NextVisitDiagnosis:
        return cls(split_seed=cfg.split_seed, max_history=cfg.max_history)

    def samples(self, records: pl.DataFrame) -> tuple[pl.DataFrame, TaskSpec]:
        """One sample per admission with a next one: patient_id, visit_id (admission t),
        history_visit_ids (admissions 1..t, oldest first), dx, med (of t), next_visit_id,
        next_dx (the labels), split."""
        require_columns(records, ("patient_id", "visit_id", "admit_time", "dx", "med"), "visit records")
        df = records.sort(["patient_id", "admit_time", "visit_id"]).with_columns(
            pl.int_range(pl.len()).over("patient_id").alias("visit_index"),
            pl.col("visit_id").shift(-1).over("patient_id").alias("next_visit_id"),
            pl.col("dx").shift(-1).over("patient_id").alias("next_dx"))
        visits = df.group_by("patient_id", maintain_order=True).agg(pl.col("visit_id").alias("all_visits"))
        out = df.filter(pl.col("next_visit_id").is_not_null() & (pl.col("next_dx").list.len() > 0))
        out = out.join(visits, on="patient_id").with_columns(
            pl.col("all_visits").list.head(pl.col("visit_index") + 1).alias("history_visit_ids"))
        if self.max_history:
            out = out.with_columns(pl.col("history_visit_ids").list.tail(self.max_history))
        out = with_split(out.select("patient_id", "visit_id", "history_visit_ids", "dx", "med", "next_visit_id",
                                    "next_dx"), seed=self.split_seed)
        return out, self.spec_from_training(out, "next_dx", "no training patient has two admissions with diagnoses")

    def features(self, samples: pl.DataFrame, records: pl.DataFrame, spec: TaskSpec, encode: Any,
                 notes: Any) -> tuple[dict[str, list], np.ndarray]:
        require_columns(samples, ("history_visit_ids", "dx", "med", "next_dx"), "next_visit_dx samples")
        hist_text, hist_codes = history_features(samples, records, encode, notes, self.max_history, self.name)
        feats = {"code_ids": [encode(dx, med) for dx, med in zip(samples["dx"].to_list(), samples["med"].to_list())],
                 "hist_input_ids": hist_text, "hist_code_ids": hist_codes}
        return feats, multi_hot(samples["next_dx"].to_list(), spec.label_names)

    @classmethod
    def extra_metrics(cls, y: np.ndarray, p: np.ndarray, validation: bool) -> dict[str, float]:
        return recall_at_k(y, p, KS)
