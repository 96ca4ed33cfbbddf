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

import polars as pl

from medmm.tasks.splits import with_split

NAME = "medication"
METRICS = ("gbert_jaccard", "gbert_f1", "gbert_prauc", "f1", "accuracy", "auroc")


@dataclass
class MedicationTask:
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
