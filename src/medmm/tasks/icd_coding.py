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

import polars as pl

from medmm.tasks.splits import with_split

NAME = "icd_coding"
METRICS = ("micro_f1", "macro_f1", "micro_auc", "macro_auc", "p@5")


@dataclass
class ICDCodingTask:
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
