"""Medication recommendation (G-BERT protocol; MedM-PLM Eq. 11-13).

Clinical definition: for a patient with two or more visits, at visit t (t >= 2) recommend the
set of ATC-3 medication classes given in visit t, from the history of visits < t (their notes,
diagnoses and medications) and the diagnoses of visit t. Only multi-visit patients enter the
task; the split is 8:1:1 by patient from `medmm.tasks.splits` (G-BERT's own split is by file
order with its shuffle commented out; not copied).
Metrics: G-BERT's per-visit Jaccard, F1 and PR-AUC (`medmm.eval.metrics.gbert_metrics`, keys
prefixed `gbert_` in a fine-tuning result): a medication counts as recommended when its
probability is > 0.3, compared in float32 as G-BERT's code compares its float32 sigmoid outputs,
so a probability of exactly np.float32(0.3) is not recommended. Plus Table III's F1 / accuracy /
AUROC (`multilabel_metrics`: micro-F1 and element-wise accuracy at p >= 0.5, micro AUROC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from medmm.eval.metrics import gbert_metrics
from medmm.tasks.base import Task, require_columns
from medmm.tasks.featurize import history_features, multi_hot
from medmm.tasks.spec import TaskSpec
from medmm.tasks.splits import with_split


@dataclass
class MedicationTask:
    """The cohort (the builder; `MedicationRecommendation` is the task of the registry)."""

    split_seed: int = 0
    max_history: int | None = None  # most recent visits kept in the history; None = all

    def build(self, records: pl.DataFrame) -> pl.DataFrame:
        """One sample per (patient, visit t >= 2) whose target medication set is non-empty.

        Columns: patient_id, visit_id (the current visit), history_visit_ids (list, oldest first),
        dx (current diagnoses), target_med (list of ATC-3), split.
        """
        df = records.sort(["patient_id", "admit_time", "visit_id"]).with_columns(
            pl.int_range(pl.len()).over("patient_id").alias("visit_index"),
            pl.len().over("patient_id").alias("n_visits"),
        ).filter(pl.col("n_visits") >= 2)
        hist = df.group_by("patient_id", maintain_order=True).agg(pl.col("visit_id").alias("all_visits"))
        out = df.filter(pl.col("visit_index") >= 1).join(hist, on="patient_id").with_columns(
            pl.col("all_visits").list.head(pl.col("visit_index")).alias("history_visit_ids"))
        if self.max_history:
            out = out.with_columns(pl.col("history_visit_ids").list.tail(self.max_history))
        out = out.filter(pl.col("med").list.len() > 0).select(
            "patient_id", "visit_id", "history_visit_ids", "dx", pl.col("med").alias("target_med"))
        return with_split(out, seed=self.split_seed)


class MedicationRecommendation(Task):
    """Inputs (Eq. 11): the current visit's diagnoses (`code_ids` = `[CLS] dx..`) and the visits
    before it, oldest first, at most `max_history` most recent: their notes (`hist_input_ids`)
    and diagnosis + medication codes (`hist_code_ids`)."""

    name, title, kind = "medication", "Medication", "multilabel"
    provides = frozenset({"note", "dx_codes", "med_codes"})
    history = True
    options = ("split_seed", "max_history")
    metric_definitions = {
        "f1": "micro-F1 over every (visit, medication) cell at p >= 0.5 (G-BERT's per-visit "
              "F1 at p > 0.3 is `gbert_f1` in results.json).",
        "accuracy": "element-wise accuracy over (visit, medication) cells at p >= 0.5.",
        "auroc": "micro AUROC over (visit, medication) cells; the default model-selection metric.",
    }

    def __init__(self, builder: MedicationTask | None = None, max_history: int | None = None):
        self.builder, self.max_history = builder or MedicationTask(), max_history

    @classmethod
    def from_config(cls, cfg: Any) -> MedicationRecommendation:
        return cls(MedicationTask(split_seed=cfg.split_seed), max_history=cfg.max_history)

    def samples(self, records: pl.DataFrame) -> tuple[pl.DataFrame, TaskSpec]:
        samples = self.builder.build(records)
        return samples, self.spec_from_training(samples, "target_med", "no training sample has a medication "
                                                                       "(too few multi-visit patients?)")

    def features(self, samples: pl.DataFrame, records: pl.DataFrame, spec: TaskSpec, encode: Any,
                 notes: Any) -> tuple[dict[str, list], np.ndarray]:
        require_columns(samples, ("history_visit_ids", "dx", "target_med"), "medication samples")
        own = samples.filter(pl.col("history_visit_ids").list.contains(pl.col("visit_id")))
        if own.height:
            raise ValueError(f"medication samples: visit_id {own['visit_id'][0]} appears in its own history")
        hist_text, hist_codes = history_features(samples, records, encode, notes, self.max_history, self.name)
        feats = {"code_ids": [encode(dx, []) for dx in samples["dx"].to_list()],
                 "hist_input_ids": hist_text, "hist_code_ids": hist_codes}
        return feats, multi_hot(samples["target_med"].to_list(), spec.label_names)

    @classmethod
    def extra_metrics(cls, y: np.ndarray, p: np.ndarray, validation: bool) -> dict[str, float]:
        return {f"gbert_{k}": v for k, v in gbert_metrics(y, p).items()}
