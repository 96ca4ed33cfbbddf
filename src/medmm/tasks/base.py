"""The one task contract (the PyHealth / femr shape): a task is a class in its own file.

A task declares, as class attributes, its `name` (the registry key), its `title` in reports, its
`kind` (binary or multi-label), the modalities its batches carry (`provides`, names of
`medmm.modalities`), whether its samples carry the patient's earlier visits (`history`: the
`hist_*` keys), the records it starts from (`records`: one row per visit, or per ICU stay), the
`FinetuneConfig` options it reads (`options`) and a definition of the metrics its report shows
(`metric_definitions`). Its module docstring gives the label definition and the cohort. An instance, built from the fine-tuning config (`from_config`), turns its records
(`medmm.tasks.visits.visit_records`, or `medmm.tasks.criticality.icu_stay_records`) into

    samples(records)  -> (samples frame with a `split` column from `medmm.tasks.splits`, TaskSpec)
    features(samples, records, spec, encode, notes) -> (per-sample feature lists, labels array)

and scores predictions with `test_metrics` (the full set, once, on the test split) and
`val_metrics` (what the training loop logs every epoch; the selection metric is one of them).
`medmm.tasks.featurize.featurize` splits the features into datasets; nothing outside the task
files and `medmm.tasks.registry` compares task names. Adding a task is one file plus one line in
the registry.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import polars as pl

from medmm.eval.metrics import binary_metrics, multilabel_metrics
from medmm.tasks.spec import TaskSpec

# The per-epoch validation metrics of a multi-label task (the cheap part of `multilabel_metrics`).
MULTILABEL_VAL = ("f1", "accuracy", "auroc", "auprc")


class Task:
    """Base of every downstream task; subclasses set the class attributes and the two builders."""

    name: ClassVar[str]
    title: ClassVar[str]
    kind: ClassVar[str]  # "binary" | "multilabel"
    provides: ClassVar[frozenset[str]]
    history: ClassVar[bool] = False
    records: ClassVar[str] = "visits"  # what samples() reads: `medmm.tasks.registry.RECORDS`
    options: ClassVar[tuple[str, ...]] = ()  # FinetuneConfig fields read (a run depends on them)
    metric_definitions: ClassVar[dict[str, str]] = {}
    # Synthetic data: the column of the generator's ground_truth/visits.parquet (keyed by HADM_ID)
    # holding each sample's true probability, for the report's oracle row; None when there is none.
    oracle_column: ClassVar[str | None] = None
    oracle_what: ClassVar[str] = ""  # what the oracle row scores, for the report
    # A second report table of this task over more metric definitions (e.g. readmission's F1s).
    detail_metrics: ClassVar[tuple[str, ...]] = ()
    detail_heading: ClassVar[str] = ""

    @classmethod
    def from_config(cls, cfg: Any) -> Task:
        """The task as a fine-tuning config (`medmm.recipes.finetune.FinetuneConfig`) sets it."""
        raise NotImplementedError

    def samples(self, records: pl.DataFrame) -> tuple[pl.DataFrame, TaskSpec]:
        raise NotImplementedError

    def features(self, samples: pl.DataFrame, records: pl.DataFrame, spec: TaskSpec, encode: Any,
                 notes: Any) -> tuple[dict[str, list], np.ndarray]:
        raise NotImplementedError

    def describe_samples(self) -> str:
        """A sentence for the report on how the samples were drawn, when an option changes that."""
        return ""

    def spec_from_training(self, samples: pl.DataFrame, column: str, empty: str) -> TaskSpec:
        """A multi-label spec over `labels_from_training(samples, column)`; `empty` says why none."""
        labels = labels_from_training(samples, column)
        if not labels:
            raise ValueError(f"{self.name}: {empty}")
        return self.spec(labels)

    def spec(self, label_names: list[str]) -> TaskSpec:
        return TaskSpec(self.name, self.kind, 1 if self.kind == "binary" else len(label_names), label_names,
                        history=self.history)

    # -- metrics ----------------------------------------------------------------------------------

    @classmethod
    def test_metrics(cls, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        """The full metric set of a test split: `binary_metrics` or `multilabel_metrics` plus the
        task's own (`extra_metrics`)."""
        out = binary_metrics(y, p) if cls.kind == "binary" else multilabel_metrics(y, p)
        out.update(cls.extra_metrics(y, p, validation=False))
        return out

    @classmethod
    def val_metrics(cls, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        """What the loop logs each epoch: the cheap metrics, the task's own, and the mean BCE `loss`."""
        eps = 1e-7
        pc = np.clip(p, eps, 1 - eps)
        loss = float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc)))
        if cls.kind == "binary":
            out = binary_metrics(y, p)
        else:
            full = multilabel_metrics(y, p)
            out = {k: full[k] for k in MULTILABEL_VAL}
        out.update(cls.extra_metrics(y, p, validation=True))
        out["loss"] = loss
        return out

    @classmethod
    def extra_metrics(cls, y: np.ndarray, p: np.ndarray, validation: bool) -> dict[str, float]:
        """The task's own metrics beside the generic ones (e.g. G-BERT's Jaccard); none by default."""
        return {}

    @classmethod
    def selection_metrics(cls) -> tuple[str, ...]:
        """The validation metrics that may select the model (`finetune.selection_metric.<task>`),
        read off a two-sample evaluation, so that the list cannot drift from `val_metrics`."""
        import warnings

        if cls.kind == "binary":
            y, p = np.array([0.0, 1.0]), np.array([0.3, 0.6])
        else:
            y, p = np.array([[0.0, 1.0], [1.0, 0.0]]), np.array([[0.3, 0.6], [0.6, 0.3]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return tuple(sorted(cls.val_metrics(y, p)))


def require_columns(df: pl.DataFrame, cols: tuple[str, ...], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing column(s) {missing}; has {df.columns}")


def labels_from_training(samples: pl.DataFrame, column: str) -> list[str]:
    """The label vocabulary of a multi-label task: the values of list column `column` in the
    TRAINING split, most frequent first (ties by value). A label never seen in training cannot be
    learned; test samples' other labels are outside the output space."""
    counts = (samples.filter(pl.col("split") == "train").select(pl.col(column)).explode(column)
              .drop_nulls().group_by(column).len())
    return counts.sort(["len", column], descending=[True, False])[column].to_list()


__all__ = ["Task", "require_columns", "labels_from_training", "MULTILABEL_VAL"]
