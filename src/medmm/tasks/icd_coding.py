"""ICD coding (CAML-like; MedM-PLM Eq. 16).

Clinical definition: from a visit's discharge summary (and, in MedM-PLM, the visit's
medication codes) predict the set of ICD-9 diagnosis codes assigned to that visit. Two label
sets: `top50` (the 50 most frequent diagnosis codes among training visits; visits with none of
them are dropped, as in CAML's top-50 setting) and `full` (every code seen in training).
Visits without a discharge summary are excluded. Split by patient from `medmm.tasks.splits`.
Metrics: CAML's micro / macro F1 and AUC and P@k (`medmm.eval.metrics.caml_metrics`: a code
is predicted when p > 0.5, as CAML's `np.round`; macro F1 is the harmonic mean of macro
precision and macro recall), plus Table III's F1 / accuracy / AUROC (`multilabel_metrics`:
micro-F1 and element-wise accuracy at p >= 0.5, micro AUROC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from medmm.eval.metrics import caml_metrics
from medmm.tasks.base import Task, require_columns
from medmm.tasks.featurize import multi_hot
from medmm.tasks.spec import TaskSpec
from medmm.tasks.splits import with_split


@dataclass
class ICDCodingTask:
    """The cohort and label vocabulary (the builder; `ICDCoding` is the task of the registry)."""

    label_set: str = "top50"  # or "full"
    top_k: int = 50
    split_seed: int = 0

    def build(self, records: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
        """Samples (patient_id, visit_id, text, med, labels, split) and the ordered label vocabulary."""
        if self.label_set not in ("top50", "full"):
            raise ValueError(f"ICD coding label_set must be 'top50' or 'full', got {self.label_set!r}")
        df = with_split(records.filter(pl.col("text").is_not_null() & (pl.col("dx").list.len() > 0)),
                        seed=self.split_seed)
        counts = (df.filter(pl.col("split") == "train").select(pl.col("dx").list.unique()).explode("dx")
                  .group_by("dx").len().sort(["len", "dx"], descending=[True, False]))
        labels = counts["dx"].to_list()
        if self.label_set == "top50":
            labels = labels[: self.top_k]
        keep = pl.lit(labels, dtype=pl.List(pl.String))
        df = df.with_columns(pl.col("dx").list.set_intersection(keep).list.sort().alias("labels"))
        df = df.filter(pl.col("labels").list.len() > 0)
        return df.select("patient_id", "visit_id", "text", "med", "labels", "split"), labels


class ICDCoding(Task):
    """Inputs: the visit's discharge summary and its medication codes (`[CLS] med..`: MedM-PLM
    reads no diagnosis code here, they are the labels)."""

    name, title, kind = "icd_coding", "ICD coding", "multilabel"
    provides = frozenset({"note", "med_codes"})
    options = ("split_seed", "icd_label_set", "icd_top_k")
    metric_definitions = {
        "f1": "micro-F1 over every (admission, code) cell at p >= 0.5 (CAML's macro-F1 is "
              "`macro_f1` in results.json).",
        "accuracy": "element-wise accuracy over (admission, code) cells at p >= 0.5.",
        "auroc": "micro AUROC over (admission, code) cells; the default model-selection metric.",
    }

    def __init__(self, builder: ICDCodingTask | None = None):
        self.builder = builder or ICDCodingTask()

    @classmethod
    def from_config(cls, cfg: Any) -> ICDCoding:
        return cls(ICDCodingTask(label_set=cfg.icd_label_set, top_k=cfg.icd_top_k, split_seed=cfg.split_seed))

    def samples(self, records: pl.DataFrame) -> tuple[pl.DataFrame, TaskSpec]:
        samples, labels = self.builder.build(records)
        if not labels:
            raise ValueError("icd_coding: no training visit has a note and a diagnosis")
        return samples, self.spec(labels)

    def features(self, samples: pl.DataFrame, records: pl.DataFrame, spec: TaskSpec, encode: Any,
                 notes: Any) -> tuple[dict[str, list], np.ndarray]:
        require_columns(samples, ("med", "labels"), "icd_coding samples")
        feats = {"input_ids": [notes[v] for v in samples["visit_id"].to_list()],
                 "code_ids": [encode([], med) for med in samples["med"].to_list()]}
        return feats, multi_hot(samples["labels"].to_list(), spec.label_names)

    @classmethod
    def extra_metrics(cls, y: np.ndarray, p: np.ndarray, validation: bool) -> dict[str, float]:
        return {} if validation else caml_metrics(y, p, ks=(5, 8, 15))
