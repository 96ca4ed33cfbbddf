"""Evaluation: metrics as pure functions, seeds -> mean (std), report tables.

    from medmm.eval import binary_metrics, summarize, results_table
    runs = [binary_metrics(y, p_seed) for p_seed in probs_per_seed]
    summarize(runs)["auroc"]      # (mean, std)
"""

from medmm.eval.aggregate import format_mean_std, mean_std, results_table, summarize
from medmm.eval.metrics import (
    binary_metrics,
    caml_metrics,
    gbert_metrics,
    multilabel_metrics,
    recall_at_k,
    retrieval_metrics,
    zero_shot_metrics,
)

__all__ = [
    "binary_metrics",
    "caml_metrics",
    "format_mean_std",
    "gbert_metrics",
    "mean_std",
    "multilabel_metrics",
    "recall_at_k",
    "results_table",
    "retrieval_metrics",
    "summarize",
    "zero_shot_metrics",
]
