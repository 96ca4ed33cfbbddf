"""30-day readmission (MedM-PLM Eq. 14; ClinicalBERT's definition).

Clinical definition: an index admission is positive when the same patient's NEXT admission
starts within 30 days after this admission's discharge (admit_next - discharge <= 30 days).
Excluded as index admissions: admissions ending in in-hospital death (no readmission is
possible) and NEWBORN admissions. A patient's last recorded admission is a negative: no
readmission was observed in the data (as in ClinicalBERT and MedM-PLM).
Note: PyHealth's readmission task defaults to 15 days; this task uses 30, as the papers do.

Sampling: the paper subsampled negatives to a 1:1 ratio in every split (4,660 / 532 / 534);
`balance="undersample"` does that with a seed, `balance="natural"` keeps the prevalence.
The split is by patient from `medmm.tasks.splits`.

Metrics (`medmm.eval.metrics.binary_metrics`, whose docstring has the formulas): `auroc`, the
selection metric and Table III's AUC; `f1_pos@0.5`, the positive class's F1 at p >= 0.5 (Table
III's "F1", also under the key `f1`); `macro_f1@0.3`, the mean of both classes' F1 at p >= 0.3,
which is the "F1" the MedM-PLM authors' code reports; `ap`, average precision (also `auprc`);
`pr_auc_trapz`, the trapezoid area under the PR curve, the authors' "aupr"; `accuracy` at 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import polars as pl

from medmm.tasks.base import Task, require_columns
from medmm.tasks.spec import TaskSpec
from medmm.tasks.splits import with_split


@dataclass
class ReadmissionTask:
    """The cohort and labels (the builder; `Readmission` is the task of the registry)."""

    window_days: int = 30
    balance: str = "undersample"  # or "natural"
    split_seed: int = 0
    sample_seed: int = 0

    def label(self, records: pl.DataFrame) -> pl.DataFrame:
        """All eligible index visits with `label` (bool) and `days_to_next` (null if none)."""
        df = records.sort(["patient_id", "admit_time", "visit_id"]).with_columns(
            pl.col("admit_time").shift(-1).over("patient_id").alias("next_admit"))
        if "admission_type" in df.columns:
            df = df.filter(pl.col("admission_type").fill_null("") != "NEWBORN")
        df = df.filter(~pl.col("died_in_hospital").fill_null(False))
        gap = pl.col("next_admit") - pl.col("discharge_time")
        return df.with_columns(
            (gap.dt.total_seconds() / 86400.0).alias("days_to_next"),
            (pl.col("next_admit").is_not_null() & (gap <= timedelta(days=self.window_days))).alias("label"),
        ).drop("next_admit")

    def build(self, records: pl.DataFrame) -> pl.DataFrame:
        """Labelled samples with a `split` column, balanced per split if asked."""
        df = with_split(self.label(records), seed=self.split_seed)
        if self.balance == "natural":
            return df
        if self.balance != "undersample":
            raise ValueError(f"readmission balance must be 'undersample' or 'natural', got {self.balance!r}")
        parts = []
        for i, split in enumerate(("train", "val", "test")):
            s = df.filter(pl.col("split") == split)
            pos, neg = s.filter(pl.col("label")), s.filter(~pl.col("label"))
            n = min(pos.height, neg.height)
            parts += [pos.sample(n, seed=self.sample_seed + i) if pos.height > n else pos,
                      neg.sample(n, seed=self.sample_seed + i) if neg.height > n else neg]
        return pl.concat(parts).sort(["patient_id", "admit_time", "visit_id"])


class Readmission(Task):
    """Inputs: the index admission's discharge summary and its diagnosis + medication codes
    (`[CLS] dx.. med..`). Binary label `readmitted_30d`."""

    name, title, kind = "readmission", "Readmission", "binary"
    provides = frozenset({"note", "dx_codes", "med_codes"})
    options = ("split_seed", "readmission_balance")
    oracle_column = "p_readmit_30d"
    oracle_what = "the generator's true 30-day readmission probability on the same test admissions"
    detail_metrics = ("auroc", "f1_pos@0.5", "macro_f1@0.3", "ap", "pr_auc_trapz")
    detail_heading = "Readmission under each F1 and PR-area definition"
    metric_definitions = {
        "f1": "F1 of the positive class (readmitted) at p >= 0.5, the same number as f1_pos@0.5.",
        "accuracy": "fraction of admissions classified correctly at p >= 0.5.",
        "auroc": "area under the ROC curve (ties count 1/2); the default model-selection metric.",
        "f1_pos@0.5": "F1 of the positive class at p >= 0.5: 2TP / (2TP + FP + FN) "
                      "(scikit-learn `f1_score(average='binary')`).",
        "macro_f1@0.3": "mean of the readmitted and the not-readmitted class's F1 at p >= 0.3, "
                        "the F1 the MedM-PLM authors' code reports (`f1_score(average='macro')`).",
        "ap": "average precision, the step-wise area under the precision-recall curve "
              "(`average_precision_score`; `auprc` in results.json).",
        "pr_auc_trapz": "trapezoid area under the precision-recall curve, `auc(recall, "
                        "precision)`: the authors' 'aupr' (straight lines between PR points, "
                        "so it is not AP).",
    }

    def __init__(self, builder: ReadmissionTask | None = None):
        self.builder = builder or ReadmissionTask()

    @classmethod
    def from_config(cls, cfg: Any) -> Readmission:
        return cls(ReadmissionTask(balance=cfg.readmission_balance, split_seed=cfg.split_seed))

    def samples(self, records: pl.DataFrame) -> tuple[pl.DataFrame, TaskSpec]:
        return self.builder.build(records), self.spec(["readmitted_30d"])

    def describe_samples(self) -> str:
        return "Readmission samples: " + (
            "positives and negatives undersampled 1:1 in every split (the paper's protocol)."
            if self.builder.balance == "undersample" else
            "every eligible admission, at the natural prevalence (`readmission_balance: natural`; the paper "
            "undersampled 1:1).")

    def features(self, samples: pl.DataFrame, records: pl.DataFrame, spec: TaskSpec, encode: Any,
                 notes: Any) -> tuple[dict[str, list], np.ndarray]:
        require_columns(samples, ("dx", "med", "label"), "readmission samples")
        nulls = samples.filter(pl.col("label").is_null())
        if nulls.height:
            raise ValueError(f"readmission samples: column 'label' is null at visit_id {nulls['visit_id'][0]}")
        feats = {"input_ids": [notes[v] for v in samples["visit_id"].to_list()],
                 "code_ids": [encode(dx, med) for dx, med in zip(samples["dx"].to_list(), samples["med"].to_list())]}
        return feats, samples["label"].cast(pl.Float32).to_numpy().astype(np.float32)
