"""Metrics (medmm.eval.metrics) and aggregation (medmm.eval.aggregate).

Each metric is checked twice: against scikit-learn (or, for top-k metrics that scikit-learn
lacks, a plain sort-and-count reference) on seeded random data, and against a small example
whose numbers were worked out by hand in the comments.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import statistics
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from medmm.eval import (
    binary_metrics,
    caml_metrics,
    format_mean_std,
    gbert_metrics,
    mean_std,
    multilabel_metrics,
    results_table,
    retrieval_metrics,
    summarize,
    zero_shot_metrics,
)

approx = pytest.approx
SEEDS = [0, 1, 2, 3]


def _random_binary(seed: int, n: int = 300, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.3 * y + 0.7 * rng.random(n), 0, 1)  # informative but imperfect
    return y, (np.round(p, 1) if ties else p)


def _random_multilabel(seed: int, n: int = 60, L: int = 12, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, L)) < rng.uniform(0.05, 0.5, L)).astype(int)
    p = np.clip(0.35 * y + 0.65 * rng.random((n, L)), 0, 1)
    return y, (np.round(p, 1) if ties else p)


def _quiet(fn, *args, **kwargs):
    """Call a scikit-learn function with its zero-division / no-positive warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# =============================================================================== binary


def test_binary_hand_example():
    # y = [0, 0, 1, 1], p = [0.1, 0.4, 0.35, 0.8]
    # AUROC: positives 0.35, 0.8 vs negatives 0.1, 0.4 -> pairs won: 0.35>0.1, 0.8>0.1, 0.8>0.4
    #        = 3 of 4 -> 0.75
    # AP: ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-); precision at the positives 1/1 and 2/3
    #     -> (1 + 2/3) / 2 = 5/6
    # PR curve (recall, precision) per distinct score, from the start point (0, 1):
    #     0.8 -> (1/2, 1), 0.4 -> (1/2, 1/2), 0.35 -> (1, 2/3), 0.1 -> (1, 1/2)
    #     trapezoids: 1/2 * (1 + 1)/2 + 0 + 1/2 * (1/2 + 2/3)/2 + 0 = 1/2 + 7/24 = 19/24
    #     (AP, the step-wise sum: 1/2 * 1 + 1/2 * 2/3 = 5/6)
    # threshold 0.5: pred = [0, 0, 0, 1] -> TP 1, FP 0, FN 1, TN 2
    #     precision 1, recall 1/2, F1 = 2*1/(2*1+0+1) = 2/3, accuracy 3/4
    # threshold 0.3 (macro F1): pred = [0, 1, 1, 1]
    #     class 1: TP 2, FP 1, FN 0 -> 4/5; class 0: TP 1 (item 0), FP 0, FN 1 (item 1) -> 2/3
    #     macro F1 = (4/5 + 2/3)/2 = 11/15
    m = binary_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert m == approx({"auroc": 0.75, "ap": 5 / 6, "auprc": 5 / 6, "pr_auc_trapz": 19 / 24,
                        "precision": 1.0, "recall": 0.5, "f1": 2 / 3, "f1_pos@0.5": 2 / 3,
                        "macro_f1@0.3": 11 / 15, "accuracy": 0.75})


def test_binary_threshold_is_inclusive():
    # threshold 0.35 with ">=": pred = [0, 1, 1, 1] -> TP 2, FP 1, FN 0, TN 1
    #     precision 2/3, recall 1, F1 = 4/5, accuracy 3/4
    m = binary_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], threshold=0.35)
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"]) == approx((2 / 3, 1.0, 0.8, 0.75))


def test_binary_ties_hand_example():
    # y = [0, 1, 0, 1], p = [0.5, 0.5, 0.2, 0.9]
    # AUROC pairs: (0.5+ vs 0.5-) tie = 1/2, (0.5+ vs 0.2-) 1, (0.9+ vs both) 2 -> 3.5/4 = 0.875
    # AP: threshold 0.9 -> P = 1/1; threshold 0.5 takes both tied items -> P = 2/3
    #     -> (1 + 2/3) / 2 = 5/6
    # PR curve: 0.9 -> (1/2, 1), 0.5 (both tied items at once) -> (1, 2/3), 0.2 -> (1, 1/2)
    #     trapezoid area = 1/2 * (1 + 1)/2 + 1/2 * (1 + 2/3)/2 + 0 = 1/2 + 5/12 = 11/12
    m = binary_metrics([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9])
    assert m["auroc"] == approx(0.875)
    assert m["auprc"] == approx(5 / 6) and m["ap"] == approx(5 / 6)
    assert m["pr_auc_trapz"] == approx(11 / 12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_binary_matches_sklearn(seed, ties):
    y, p = _random_binary(seed, ties=ties)
    m = binary_metrics(y, p, threshold=0.5)
    pred = p >= 0.5
    assert m["auroc"] == approx(skm.roc_auc_score(y, p))
    assert m["auprc"] == approx(skm.average_precision_score(y, p))
    assert m["f1"] == approx(skm.f1_score(y, pred))
    assert m["precision"] == approx(skm.precision_score(y, pred))
    assert m["recall"] == approx(skm.recall_score(y, pred))
    assert m["accuracy"] == approx(skm.accuracy_score(y, pred))


def test_binary_single_class_gives_nan_not_crash():
    m = binary_metrics([0, 0, 0], [0.2, 0.7, 0.4])
    assert math.isnan(m["auroc"]) and math.isnan(m["auprc"]) and math.isnan(m["pr_auc_trapz"])
    # pred = [0, 1, 0]: FP 1 -> precision 0, recall 0/0 -> 0, F1 0, accuracy 2/3
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"]) == approx((0.0, 0.0, 0.0, 2 / 3))
    # macro F1 at 0.3: pred = [0, 1, 1]; class 1 never occurs in y but is predicted, so it counts:
    #   class 0: TP 1 (item 0), FN 2 -> 2/4 = 1/2; class 1: FP 2, TP 0 -> 0; macro 1/4
    assert m["macro_f1@0.3"] == approx(0.25)
    assert m["macro_f1@0.3"] == approx(_quiet(skm.f1_score, [0, 0, 0], [0, 1, 1], average="macro"))
    m = binary_metrics([1, 1], [0.2, 0.7])
    assert math.isnan(m["auroc"]) and m["auprc"] == approx(1.0) and m["pr_auc_trapz"] == approx(1.0)
    # pred at 0.3 = [0, 1]: class 1 TP 1 FN 1 -> 2/3; class 0 predicted once, never true -> 0
    assert m["macro_f1@0.3"] == approx(1 / 3)


def test_binary_accepts_column_vectors_and_bools():
    m1 = binary_metrics(np.array([[0], [1], [1]]), np.array([[0.2], [0.9], [0.4]]))
    m2 = binary_metrics([False, True, True], [0.2, 0.9, 0.4])
    assert m1 == m2


# ------------------------------------------------------------ readmission: both F1s, AP vs trapezoid

# y = [0, 0, 1, 1, 1, 0], p = [0.2, 0.35, 0.3, 0.6, 0.9, 0.5]
RD_Y = [0, 0, 1, 1, 1, 0]
RD_P = [0.2, 0.35, 0.3, 0.6, 0.9, 0.5]


def test_readmission_two_f1_definitions_hand_example():
    # f1_pos@0.5 (positive class, p >= 0.5): pred = [0, 0, 0, 1, 1, 1]
    #     TP 2 (items 3, 4), FP 1 (item 5), FN 1 (item 2) -> F1 = 4 / (4 + 1 + 1) = 2/3
    # macro_f1@0.3 (p >= 0.3; item 2 sits exactly on 0.3 and counts): pred = [0, 1, 1, 1, 1, 1]
    #     class 1: TP 3, FP 2 (items 1, 5), FN 0       -> 6 / (6 + 2) = 3/4
    #     class 0: TP 1 (item 0), FP 0, FN 2 (items 1, 5) -> 2 / (2 + 2) = 1/2
    #     macro = (3/4 + 1/2) / 2 = 5/8
    m = binary_metrics(RD_Y, RD_P)
    assert m["f1_pos@0.5"] == approx(2 / 3) and m["f1"] == m["f1_pos@0.5"]
    assert m["macro_f1@0.3"] == approx(5 / 8)
    assert m["f1_pos@0.5"] == approx(skm.f1_score(RD_Y, np.array(RD_P) >= 0.5, average="binary"))
    assert m["macro_f1@0.3"] == approx(skm.f1_score(RD_Y, np.array(RD_P) >= 0.3, average="macro"))
    # float32 probabilities give the same answer: np.float32(0.3) >= np.float32(0.3), and the
    # MedM-PLM authors' own comparison (float32 -> .tolist() -> float64, then >= 0.3) agrees.
    p32 = np.array(RD_P, dtype=np.float32)
    assert binary_metrics(RD_Y, p32)["macro_f1@0.3"] == approx(5 / 8)
    authors_pred = np.asarray([1 if i else 0 for i in (np.array(p32.tolist()).flatten() >= 0.3)])
    assert list(authors_pred) == [0, 1, 1, 1, 1, 1]


def test_readmission_metric_names_follow_the_thresholds():
    m = binary_metrics(RD_Y, RD_P, threshold=0.35, macro_threshold=0.5)
    assert "f1_pos@0.35" in m and "macro_f1@0.5" in m
    assert "f1_pos@0.5" not in m and "macro_f1@0.3" not in m
    # at 0.35: pred = [0, 1, 0, 1, 1, 1] -> TP 2, FP 2, FN 1 -> 4/7
    assert m["f1_pos@0.35"] == approx(4 / 7)


def test_macro_f1_leaves_out_a_class_that_never_occurs():
    # all admissions readmitted, all predicted so: scikit-learn's macro mean is over class 1 only
    m = binary_metrics([1, 1, 1], [0.9, 0.8, 0.4])
    assert m["macro_f1@0.3"] == 1.0 == skm.f1_score([1, 1, 1], [1, 1, 1], average="macro")


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_readmission_f1s_and_pr_areas_match_sklearn(seed, ties):
    y, p = _random_binary(seed, ties=ties)      # ties: scores rounded to 0.1, 0.3 and 0.5 included
    m = binary_metrics(y, p)
    assert m["f1_pos@0.5"] == approx(skm.f1_score(y, p >= 0.5, average="binary"))
    assert m["macro_f1@0.3"] == approx(skm.f1_score(y, p >= 0.3, average="macro"))
    assert m["ap"] == approx(skm.average_precision_score(y, p))
    precision, recall, _ = skm.precision_recall_curve(y, p)
    assert m["pr_auc_trapz"] == approx(skm.auc(recall, precision))


def test_ap_and_trapezoid_pr_auc_differ_by_hand():
    # y = [0, 1], p = [0.9, 0.1]: the negative is ranked first.
    # PR points from (0, 1): 0.9 -> (recall 0, precision 0), 0.1 -> (1, 1/2)
    # AP = sum (R_t - R_{t-1}) P_t = 0 * 0 + 1 * 1/2 = 1/2
    # trapezoid = 0 * (1 + 0)/2 + 1 * (0 + 1/2)/2 = 1/4: the straight line from (0, 0) to
    #     (1, 1/2) under-counts where AP's step holds precision 1/2 across all of recall
    m = binary_metrics([0, 1], [0.9, 0.1])
    assert m["ap"] == approx(0.5) and m["pr_auc_trapz"] == approx(0.25)
    precision, recall, _ = skm.precision_recall_curve([0, 1], [0.9, 0.1])
    assert skm.auc(recall, precision) == approx(0.25)
    assert skm.average_precision_score([0, 1], [0.9, 0.1]) == approx(0.5)


# ------------------------------------------------------------ thresholds compare in the scores' dtype

F32_T = np.float32(0.3)                                  # 0.30000001192092896
F32_BELOW = np.nextafter(F32_T, np.float32(0))            # 0.29999998211860657
F32_ABOVE = np.nextafter(F32_T, np.float32(1))            # 0.30000004172325134


def test_installed_numpy_compares_float32_array_with_python_float_in_float32():
    # The fact medmm's rule rests on (NEP 50 on NumPy >= 2; value-based casting before it):
    # G-BERT's float32 array against the Python float 0.3 compares with np.float32(0.3).
    a = np.array([F32_T, F32_BELOW, F32_ABOVE], dtype=np.float32)
    assert list(a > 0.3) == [False, False, True]
    assert list(a.astype(np.float64) > 0.3) == [True, False, True]   # the float64 cast disagrees
    assert float(F32_T) > 0.3


# Two visits, four medications, float32 probabilities, G-BERT's threshold 0.3.
TIE_Y = [[1, 1, 0, 0],
         [1, 0, 0, 1]]
TIE_P = np.array([[0.9, F32_T, F32_BELOW, 0.1],
                  [0.8, F32_T, F32_BELOW, F32_ABOVE]], dtype=np.float32)


def test_gbert_float32_threshold_tie_as_gberts_code():
    # G-BERT: np.float32(0.3) > 0.3 is False and the value just below is not above either;
    #   the value just above is recommended.
    # visit 0: pred {0}, true {0, 1}: J 1/2, P 1, R 1/2, F1 2*(1)(1/2)/(3/2) = 2/3
    # visit 1: pred {0, 3}, true {0, 3}: J 1, P 1, R 1, F1 1
    # means: J 3/4, P 1, R 3/4, F1 5/6
    # (comparing in float64 instead would recommend medication 1 in both visits:
    #  J (1 + 2/3)/2 = 5/6, P 5/6, R 1, F1 (1 + 4/5)/2 = 9/10)
    m = gbert_metrics(TIE_Y, TIE_P)
    assert (m["jaccard"], m["precision"], m["recall"], m["f1"]) == approx((3 / 4, 1.0, 3 / 4, 5 / 6))
    # G-BERT's metric_report, verbatim, on the same float32 array
    y_pred = TIE_P.copy()
    y_pred[y_pred > 0.3] = 1
    y_pred[y_pred <= 0.3] = 0
    assert y_pred.tolist() == [[1, 0, 0, 0], [1, 0, 0, 1]]
    kw = dict(average="samples", zero_division=0)
    assert m["jaccard"] == approx(skm.jaccard_score(TIE_Y, y_pred, **kw))
    assert m["f1"] == approx(skm.f1_score(TIE_Y, y_pred, **kw))
    assert m["precision"] == approx(skm.precision_score(TIE_Y, y_pred, **kw))
    # A CPU tensor of the same float32 values is the same input.
    torch = pytest.importorskip("torch")
    assert gbert_metrics(TIE_Y, torch.from_numpy(TIE_P)) == m


def test_gbert_float64_scores_compare_in_float64():
    # The same numbers held as float64 ARE above the float64 0.3, as G-BERT's code would find
    # on a float64 array: medication 1 is recommended in both visits (values in the tie test).
    m = gbert_metrics(TIE_Y, TIE_P.astype(np.float64))
    assert (m["jaccard"], m["precision"], m["recall"], m["f1"]) == approx((5 / 6, 5 / 6, 1.0, 9 / 10))


def test_inclusive_threshold_rounds_too():
    # np.float32(0.7) = 0.69999998807907 lies BELOW the float64 0.7, so for ">=" the rounding
    # matters: NumPy's float32 comparison keeps it, a float64 one would drop it.
    t = np.float32(0.7)
    p = np.array([[t, 0.1], [0.2, np.nextafter(t, np.float32(0))]], dtype=np.float32)
    y = [[1, 0], [0, 1]]
    assert (p >= 0.7).tolist() == [[True, False], [False, False]]
    # pred [[1, 0], [0, 0]]: TP 1, FN 1 -> micro F1 2/3
    assert multilabel_metrics(y, p, threshold=0.7)["f1"] == approx(2 / 3)
    assert binary_metrics([1, 0], p[:, 0], threshold=0.7)["f1_pos@0.7"] == 1.0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "0.5", None])
def test_threshold_must_be_a_finite_number(bad):
    with pytest.raises(ValueError, match="threshold: expected a finite number"):
        binary_metrics([0, 1], [0.2, 0.8], threshold=bad)
    with pytest.raises(ValueError, match="threshold: expected a finite number"):
        gbert_metrics(TIE_Y, TIE_P, threshold=bad)


@pytest.mark.parametrize(
    "y, p, message",
    [
        ([0, 1, 1, 2], [0.1, 0.2, 0.3, 0.4], r"y_true\[3\] = .*2.* not a 0/1 label"),
        ([0, 1, np.nan], [0.1, 0.2, 0.3], r"y_true\[2\]"),
        ([0, 1, 1], [0.1, np.nan, 0.3], r"y_prob\[1\] = .* not a finite score"),
        ([0, 1, 1], [0.1, np.inf, 0.3], r"y_prob\[1\]"),
        ([0, 1, 1], [0.1, 0.3], r"y_prob: shape \(2,\), expected \(3,\)"),
        ([], [], r"y_true: empty"),
        ([[0, 1], [1, 0]], [[0.1, 0.2], [0.3, 0.4]], r"y_true: expected a 1-D array"),
        (["a", "b"], [0.1, 0.2], r"y_true: labels must be 0/1"),
    ],
)
def test_binary_bad_input_names_argument_and_index(y, p, message):
    with pytest.raises(ValueError, match=message):
        binary_metrics(y, p)


# =============================================================================== multi-label

# y = [[1, 0, 1],      p = [[0.9, 0.6, 0.4],     pred (>= 0.5) = [[1, 1, 0],
#      [0, 1, 0]]           [0.2, 0.7, 0.1]]                      [0, 1, 0]]
ML_Y = [[1, 0, 1], [0, 1, 0]]
ML_P = [[0.9, 0.6, 0.4], [0.2, 0.7, 0.1]]


def test_multilabel_hand_example():
    # cells: TP (0,0) (1,1) = 2; FP (0,1) = 1; FN (0,2) = 1; TN (1,0) (1,2) = 2
    #   micro P = 2/3, R = 2/3, F1 = 4/(4+1+1) = 2/3; accuracy = 4/6; jaccard = 2/(2+1+1) = 1/2
    #   subset accuracy: row 0 wrong, row 1 right -> 1/2
    # micro AUROC: positives 0.9, 0.4, 0.7 vs negatives 0.6, 0.2, 0.1
    #   0.9 beats 3, 0.4 beats 2, 0.7 beats 3 -> 8/9
    # micro AP: ranking 0.9+ 0.7+ 0.6- 0.4+ 0.2- 0.1-; precision at positives 1, 1, 3/4
    #   -> (1 + 1 + 3/4)/3 = 11/12
    # per-label AUROC: each label perfectly ranked -> macro 1.0
    # per-row AUROC: row 0 pos {0.9, 0.4} vs neg {0.6} -> 1/2; row 1 -> 1; samples = 3/4
    # per-label F1: label 0 = 1, label 1 (TP 1, FP 1) = 2/3, label 2 (FN 1) = 0 -> macro 5/9
    m = multilabel_metrics(ML_Y, ML_P)
    assert m == approx({
        "f1": 2 / 3, "precision": 2 / 3, "recall": 2 / 3, "accuracy": 4 / 6, "jaccard": 0.5,
        "subset_accuracy": 0.5, "auroc": 8 / 9, "auprc": 11 / 12, "auroc_macro": 1.0,
        "auroc_samples": 0.75, "f1_macro": 5 / 9,
    })


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_multilabel_matches_sklearn(seed, ties):
    y, p = _random_multilabel(seed, ties=ties)
    y[:, 0] = 0  # one label without positives: excluded from the macro AUROC
    m = multilabel_metrics(y, p, threshold=0.5)
    pred = (p >= 0.5).astype(int)
    assert m["f1"] == approx(skm.f1_score(y, pred, average="micro"))
    assert m["precision"] == approx(skm.precision_score(y, pred, average="micro"))
    assert m["recall"] == approx(skm.recall_score(y, pred, average="micro"))
    assert m["accuracy"] == approx(skm.accuracy_score(y.ravel(), pred.ravel()))
    assert m["accuracy"] == approx(1 - skm.hamming_loss(y, pred))
    assert m["subset_accuracy"] == approx(skm.accuracy_score(y, pred))
    assert m["jaccard"] == approx(skm.jaccard_score(y, pred, average="micro"))
    assert m["f1_macro"] == approx(_quiet(skm.f1_score, y, pred, average="macro", zero_division=0))
    assert m["auroc"] == approx(skm.roc_auc_score(y, p, average="micro"))
    assert m["auprc"] == approx(skm.average_precision_score(y, p, average="micro"))
    both = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    assert m["auroc_macro"] == approx(np.mean([skm.roc_auc_score(y[:, j], p[:, j]) for j in both]))
    rows = [i for i in range(len(y)) if 0 < y[i].sum() < y.shape[1]]
    assert m["auroc_samples"] == approx(np.mean([skm.roc_auc_score(y[i], p[i]) for i in rows]))


@pytest.mark.parametrize("seed", SEEDS)
def test_multilabel_micro_jaccard_is_table3_icd_accuracy(seed):
    # Table III ICD coding: F1 52.09 with accuracy 35.22 = 52.09 / (200 - 52.09); the identity
    # J = F1 / (2 - F1) holds for micro counts: F1 = 2TP/(2TP+FP+FN), J = TP/(TP+FP+FN).
    y, p = _random_multilabel(seed)
    m = multilabel_metrics(y, p)
    assert m["jaccard"] == approx(m["f1"] / (2 - m["f1"]))


def test_multilabel_no_valid_label_gives_nan_macro():
    m = multilabel_metrics([[1, 0], [1, 0]], [[0.9, 0.1], [0.8, 0.4]])
    assert math.isnan(m["auroc_macro"])          # label 0 all positive, label 1 all negative
    assert m["auroc_samples"] == approx(1.0)     # each row has one of each


def test_multilabel_bad_input():
    with pytest.raises(ValueError, match=r"y_true\[1, 2\] = .*3"):
        multilabel_metrics([[0, 1, 0], [1, 0, 3]], [[0.1] * 3] * 2)
    with pytest.raises(ValueError, match=r"y_prob: shape \(2, 2\), expected \(2, 3\)"):
        multilabel_metrics([[0, 1, 0], [1, 0, 1]], [[0.1] * 2] * 2)
    with pytest.raises(ValueError, match=r"expected a 2-D array"):
        multilabel_metrics([0, 1], [0.1, 0.2])


# =============================================================================== G-BERT

# Three visits, four medications, threshold 0.3 (strict ">").
GB_Y = [[1, 1, 1, 0],
        [0, 0, 1, 0],
        [0, 0, 0, 0]]
GB_P = [[0.8, 0.2, 0.1, 0.5],
        [0.1, 0.3, 0.9, 0.3],
        [0.1, 0.2, 0.2, 0.0]]


def test_gbert_hand_example():
    # visit 0: pred {0, 3}, true {0, 1, 2}: |inter| 1, |union| 4 -> J 1/4, P 1/2, R 1/3,
    #          F1 = 2*(1/2)(1/3)/(1/2+1/3) = 2/5
    #          AP: ranking 0.8+ 0.5- 0.2+ 0.1+ -> precisions 1, 2/3, 3/4 -> (1+2/3+3/4)/3 = 29/36
    # visit 1: 0.3 is not > 0.3, so pred {2} = true {2}: J 1, P 1, R 1, F1 1, AP 1
    # visit 2: no medication, nothing predicted: empty union -> J 0, P 0, R 0, F1 0, AP 0
    # means: J = (1/4 + 1 + 0)/3 = 5/12; P = (1/2 + 1)/3 = 1/2; R = (1/3 + 1)/3 = 4/9;
    #        F1 = (2/5 + 1)/3 = 7/15 (the F1 of the mean P and R would be 0.4706: not this);
    #        PR-AUC = (29/36 + 1)/3 = 65/108
    m = gbert_metrics(GB_Y, GB_P)
    assert m == approx({"jaccard": 5 / 12, "precision": 0.5, "recall": 4 / 9, "f1": 7 / 15,
                        "prauc": 65 / 108})


def test_gbert_threshold_is_strict_and_default_is_0_3():
    # with ">=", visit 1 would predict {1, 2, 3}: J 1/3 instead of 1
    assert gbert_metrics(GB_Y, GB_P)["jaccard"] == approx(5 / 12)
    assert gbert_metrics(GB_Y, GB_P, threshold=0.29)["jaccard"] == approx((1 / 4 + 1 / 3 + 0) / 3)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_gbert_matches_sklearn(seed, ties):
    y, p = _random_multilabel(seed, n=40, L=15, ties=ties)
    y[3] = 0                 # a visit without medications
    p[5] = 0.0               # a visit with nothing recommended
    m = gbert_metrics(y, p, threshold=0.3)
    pred = (p > 0.3).astype(int)
    kw = dict(average="samples", zero_division=0)
    assert m["jaccard"] == approx(_quiet(skm.jaccard_score, y, pred, **kw))
    assert m["precision"] == approx(_quiet(skm.precision_score, y, pred, **kw))
    assert m["recall"] == approx(_quiet(skm.recall_score, y, pred, **kw))
    assert m["f1"] == approx(_quiet(skm.f1_score, y, pred, **kw))
    ap = [_quiet(skm.average_precision_score, y[i], p[i]) for i in range(len(y))]
    assert m["prauc"] == approx(np.mean(ap))


# =============================================================================== CAML

# Three admissions, four codes; code 3 never occurs. Threshold 0.5 (strict ">").
CAML_Y = [[1, 0, 1, 0],
          [1, 1, 0, 0],
          [0, 0, 1, 0]]
CAML_P = [[0.9, 0.2, 0.6, 0.1],
          [0.7, 0.5, 0.8, 0.3],
          [0.3, 0.1, 0.55, 0.2]]


def test_caml_hand_example():
    # pred (> 0.5): [[1,0,1,0], [1,0,1,0], [0,0,1,0]]  (0.5 at [1,1] is NOT predicted)
    # per code: 0: TP 2, pred 2, true 2, union 2
    #           1: TP 0, pred 0, true 1, union 1
    #           2: TP 2, pred 3, true 2, union 3
    #           3: TP 0, pred 0, true 0, union 0   (counts as 0 in every macro mean)
    # macro P = (1 + 0 + 2/3 + 0)/4 = 5/12; macro R = (1 + 0 + 1 + 0)/4 = 1/2
    # macro F1 = 2*(5/12)(1/2)/(5/12 + 1/2) = 5/11 (mean of per-code F1 would be 0.45)
    # macro accuracy = (1 + 0 + 2/3 + 0)/4 = 5/12
    # micro: TP 4, pred 5, true 5 -> P = R = F1 = 4/5; accuracy 4/(5+5-4) = 2/3
    # micro AUC: positives 0.9 0.6 0.7 0.5 0.55 vs negatives 0.2 0.1 0.8 0.3 0.3 0.1 0.2:
    #   0.9 beats 7, each other positive beats 6 (all but 0.8) -> 31/35
    # macro AUC over codes with both classes (0, 1, 2): 1, 1, 0 (0.6, 0.55 < 0.8) -> 2/3
    # top-k: row 0 ranks 0+ 2+ ..., row 1 ranks 2- 0+ 1+ 3-, row 2 ranks 2+ 0- 3- 1-
    #   p@1 = (1 + 0 + 1)/3 = 2/3; r@1 = (1/2 + 0 + 1)/3 = 1/2; f1@1 = 2(2/3)(1/2)/(7/6) = 4/7
    #   p@2 = (1 + 1/2 + 1/2)/3 = 2/3; r@2 = (1 + 1/2 + 1)/3 = 5/6
    #   k = 5 > 4 codes: p@5 = (2/4 + 2/4 + 1/4)/3 = 5/12, r@5 = 1
    m = caml_metrics(CAML_Y, CAML_P, ks=(1, 2, 5))
    assert m == approx({
        "macro_precision": 5 / 12, "macro_recall": 0.5, "macro_f1": 5 / 11,
        "macro_accuracy": 5 / 12, "macro_auc": 2 / 3,
        "micro_precision": 0.8, "micro_recall": 0.8, "micro_f1": 0.8, "micro_accuracy": 2 / 3,
        "micro_auc": 31 / 35,
        "p@1": 2 / 3, "r@1": 0.5, "f1@1": 4 / 7,
        "p@2": 2 / 3, "r@2": 5 / 6, "f1@2": 2 * (2 / 3) * (5 / 6) / (2 / 3 + 5 / 6),
        "p@5": 5 / 12, "r@5": 1.0, "f1@5": 2 * (5 / 12) / (5 / 12 + 1),
    })
    # macro-F1 is the harmonic mean of macro P and R, not scikit-learn's mean of per-code F1
    pred = (np.array(CAML_P) > 0.5).astype(int)
    assert _quiet(skm.f1_score, CAML_Y, pred, average="macro", zero_division=0) == approx(0.45)


def test_caml_macro_auc_skips_codes_with_one_class():
    # code 0 is in every admission (no negative), code 1 in none: only code 2 has an AUC.
    # code 2: y [1, 0, 0], p [0.4, 0.6, 0.2] -> positive beats 1 of 2 negatives -> 1/2
    y = [[1, 0, 1], [1, 0, 0], [1, 0, 0]]
    p = [[0.9, 0.1, 0.4], [0.2, 0.3, 0.6], [0.8, 0.7, 0.2]]
    assert caml_metrics(y, p, ks=(1,))["macro_auc"] == approx(0.5)
    assert math.isnan(caml_metrics([[1, 0], [1, 0]], [[0.3, 0.2], [0.1, 0.9]])["macro_auc"])


def test_caml_default_keys():
    m = caml_metrics(CAML_Y, CAML_P)
    for k in (5, 8, 15):
        assert {f"p@{k}", f"r@{k}", f"f1@{k}"} <= set(m)
    assert {"micro_f1", "macro_f1", "micro_auc", "macro_auc"} <= set(m)


def _brute_topk(scores, y, k):
    """Reference P@k and R@k: sort each row (no ties in the data), count the true in the top k."""
    p, r = [], []
    for s_row, y_row in zip(scores, y):
        top = np.argsort(-s_row)[:k]
        hit = y_row[top].sum()
        p.append(hit / len(top))
        r.append(hit / y_row.sum() if y_row.sum() else 0.0)
    return np.mean(p), np.mean(r)


@pytest.mark.parametrize("seed", SEEDS)
def test_caml_matches_sklearn_and_sort_reference(seed):
    y, p = _random_multilabel(seed, n=50, L=20)
    y[:, 4] = 0          # a code absent from the test set: out of the macro AUC
    y[7] = 0             # an admission without codes
    m = caml_metrics(y, p, ks=(1, 5, 8, 15, 30))
    pred = (p > 0.5).astype(int)
    assert m["micro_f1"] == approx(skm.f1_score(y, pred, average="micro"))
    assert m["micro_precision"] == approx(skm.precision_score(y, pred, average="micro"))
    assert m["micro_recall"] == approx(skm.recall_score(y, pred, average="micro"))
    assert m["micro_accuracy"] == approx(skm.jaccard_score(y, pred, average="micro"))
    assert m["micro_auc"] == approx(skm.roc_auc_score(y.ravel(), p.ravel()))
    per_p = _quiet(skm.precision_score, y, pred, average=None, zero_division=0)
    per_r = _quiet(skm.recall_score, y, pred, average=None, zero_division=0)
    per_j = _quiet(skm.jaccard_score, y, pred, average=None, zero_division=0)
    assert m["macro_precision"] == approx(per_p.mean())
    assert m["macro_recall"] == approx(per_r.mean())
    assert m["macro_accuracy"] == approx(per_j.mean())
    mp, mr = per_p.mean(), per_r.mean()
    assert m["macro_f1"] == approx(2 * mp * mr / (mp + mr))
    both = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    assert 4 not in both
    assert m["macro_auc"] == approx(np.mean([skm.roc_auc_score(y[:, j], p[:, j]) for j in both]))
    for k in (1, 5, 8, 15, 30):
        assert (m[f"p@{k}"], m[f"r@{k}"]) == approx(_brute_topk(p, y, k))


def test_caml_bad_ks():
    with pytest.raises(ValueError, match="positive integer"):
        caml_metrics(CAML_Y, CAML_P, ks=(0,))
    with pytest.raises(ValueError, match="positive integer"):
        caml_metrics(CAML_Y, CAML_P, ks=(2.5,))


# =============================================================================== retrieval

# Two report queries, five candidate images.
RT_S = [[0.9, 0.1, 0.8, 0.3, 0.2],
        [0.2, 0.7, 0.7, 0.1, 0.6]]
RT_REL = [{2, 3}, {2}]


def test_retrieval_hand_example():
    # query 0 ranks 0- 2+ 3+ 4- 1-:  top1 0 hits, top2 1, top3 2   (2 relevant)
    # query 1: candidates 1 and 2 tie at 0.7, one of them relevant.
    #   top1 cuts the tie: expected hits = 1 slot * 1/2 = 1/2; top2, top3: 1 hit  (1 relevant)
    # p@1 = (0 + 1/2)/2 = 1/4;           r@1 = (0 + 1/2)/2 = 1/4
    # p@2 = (1/2 + 1/2)/2 = 1/2;         r@2 = (1/2 + 1)/2 = 3/4
    # p@3 = (2/3 + 1/3)/2 = 1/2;         r@3 = (1 + 1)/2 = 1
    # k = 10 > 5 candidates: everything retrieved: p@10 = (2/10 + 1/10)/2 = 3/20, r@10 = 1
    m = retrieval_metrics(RT_S, RT_REL, ks=(1, 2, 3, 10))
    assert m == approx({"p@1": 0.25, "r@1": 0.25, "p@2": 0.5, "r@2": 0.75,
                        "p@3": 0.5, "r@3": 1.0, "p@10": 0.15, "r@10": 1.0})


def test_retrieval_sets_and_matrix_agree():
    mat = np.zeros((2, 5), dtype=bool)
    mat[0, [2, 3]] = True
    mat[1, 2] = True
    assert retrieval_metrics(RT_S, mat) == retrieval_metrics(RT_S, RT_REL)
    assert retrieval_metrics(RT_S, mat.astype(int)) == retrieval_metrics(RT_S, [[2, 3], [2]])


@pytest.mark.parametrize("seed", SEEDS)
def test_retrieval_matches_sort_reference(seed):
    rng = np.random.default_rng(seed)
    q, n = 30, 120
    rel = rng.random((q, n)) < 0.05
    rel[np.arange(q), rng.integers(0, n, q)] = True       # at least one relevant per query
    s = rng.normal(size=(q, n)) + 1.5 * rel
    ks = (1, 5, 10, 20, 50, 100)
    m = retrieval_metrics(s, rel, ks=ks)
    for k in ks:
        top = np.argsort(-s, axis=1)[:, :k]
        hits = np.take_along_axis(rel, top, axis=1).sum(axis=1)
        assert m[f"p@{k}"] == approx(np.mean(hits / k))
        assert m[f"r@{k}"] == approx(np.mean(hits / rel.sum(axis=1)))


def test_retrieval_ties_equal_average_over_all_tie_orders():
    # Integer scores with many ties: the expected hits must equal the average over every
    # ordering of the candidates (each tie broken every possible way, equally often).
    s = np.array([[2.0, 1.0, 2.0, 1.0, 1.0, 0.0]])
    rel = np.array([[0, 1, 1, 0, 0, 1]], dtype=bool)
    for k in (1, 2, 3, 4):
        hits = []
        for perm in itertools.permutations(range(6)):
            perm = np.array(perm)
            order = perm[np.argsort(-s[0, perm], kind="stable")]
            hits.append(rel[0, order[:k]].sum())
        assert retrieval_metrics(s, rel, ks=(k,))[f"p@{k}"] == approx(np.mean(hits) / k)


def test_retrieval_constant_scorer_is_chance():
    # All scores equal: every candidate is in the top K with probability K/N, so
    # r@K = K/N and p@K = |relevant|/N for every query.
    rel = [{0}, {1, 2, 3}]
    m = retrieval_metrics(np.zeros((2, 8)), rel, ks=(1, 4))
    assert m["r@1"] == approx(1 / 8) and m["r@4"] == approx(4 / 8)
    assert m["p@1"] == approx((1 / 8 + 3 / 8) / 2) and m["p@4"] == approx((1 / 8 + 3 / 8) / 2)


def test_retrieval_bad_input():
    with pytest.raises(ValueError, match=r"query 1 has no relevant candidate"):
        retrieval_metrics(RT_S, [{2}, set()])
    with pytest.raises(ValueError, match=r"relevant\[0\] holds 7"):
        retrieval_metrics(RT_S, [{7}, {1}])
    with pytest.raises(ValueError, match=r"3 index sets for 2 queries"):
        retrieval_metrics(RT_S, [{1}, {1}, {1}])
    with pytest.raises(ValueError, match=r"relevant: shape \(2, 4\) does not match"):
        retrieval_metrics(RT_S, np.ones((2, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"scores\[1, 0\]"):
        retrieval_metrics([[0.1, 0.2], [np.nan, 0.3]], [{0}, {1}])
    with pytest.raises(ValueError, match=r"\(Q, N\) matrix"):
        retrieval_metrics([0.1, 0.2], [{0}])


# =============================================================================== zero-shot


def test_zero_shot_hand_example():
    # similarities to [negative, positive] prompt, y = [1, 0, 1, 0]
    #   row 0: 0.3 > 0.2 -> 1 (TP); row 1: -> 0 (TN); row 2: tie -> negative prompt (FN);
    #   row 3: 0.6 > 0.1 -> 1 (FP)  => precision 1/2, recall 1/2, F1 1/2, accuracy 1/2
    # margins [0.1, -0.4, 0.0, 0.5]: positives 0.1, 0.0 each beat only -0.4 -> AUROC 2/4
    sims = [[0.2, 0.3], [0.5, 0.1], [0.4, 0.4], [0.1, 0.6]]
    m = zero_shot_metrics(sims, [1, 0, 1, 0])
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"], m["auroc"]) == approx(
        (0.5, 0.5, 0.5, 0.5, 0.5))


@pytest.mark.parametrize("seed", SEEDS)
def test_zero_shot_matches_sklearn_and_binary_metrics(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    sims = rng.uniform(-1, 1, (200, 2))
    sims[:, 1] += 0.3 * y
    m = zero_shot_metrics(sims, y)
    pred = sims.argmax(axis=1)
    assert m["precision"] == approx(skm.precision_score(y, pred))
    assert m["recall"] == approx(skm.recall_score(y, pred))
    assert m["f1"] == approx(skm.f1_score(y, pred))
    margin = sims[:, 1] - sims[:, 0]
    b = binary_metrics(y, 1 / (1 + np.exp(-margin)))
    assert set(m) == set(b) - {"f1_pos@0.5", "macro_f1@0.3"}   # no threshold, so no named F1s
    assert m == approx({k: b[k] for k in m})


def test_zero_shot_needs_two_prompts():
    with pytest.raises(ValueError, match=r"similarities: shape \(2, 3\), expected \(2, 2\)"):
        zero_shot_metrics([[0.1, 0.2, 0.3]] * 2, [0, 1])


# =============================================================================== aggregate


def test_summarize_hand_example():
    # auroc over 3 seeds: 0.70, 0.72, 0.74 -> mean 0.72; deviations -0.02, 0, 0.02
    #   sample variance (0.0004 + 0 + 0.0004)/(3 - 1) = 0.0004 -> std 0.02
    runs = [{"auroc": 0.70, "f1": 0.5}, {"auroc": 0.72, "f1": 0.5}, {"auroc": 0.74, "f1": 0.5}]
    s = summarize(runs)
    assert s["auroc"] == approx((0.72, 0.02))
    assert s["f1"] == approx((0.5, 0.0))
    assert list(s) == ["auroc", "f1"]


def test_summarize_matches_statistics_stdev():
    rng = np.random.default_rng(0)
    vals = rng.random(5).tolist()
    mean, std = summarize([{"m": v} for v in vals])["m"]
    assert mean == approx(statistics.fmean(vals))
    assert std == approx(statistics.stdev(vals))          # ddof = 1
    assert std == approx(np.std(vals, ddof=1))


def test_summarize_single_run_std_is_nan_and_nan_propagates():
    mean, std = summarize([{"auroc": 0.8}])["auroc"]
    assert mean == 0.8 and math.isnan(std)
    mean, std = summarize([{"auroc": 0.8}, {"auroc": float("nan")}])["auroc"]
    assert math.isnan(mean)


def test_summarize_rejects_mismatched_runs():
    with pytest.raises(ValueError, match=r"run 1 has different metrics.*missing \['f1'\]"):
        summarize([{"auroc": 0.8, "f1": 0.5}, {"auroc": 0.7}])
    with pytest.raises(ValueError, match="no runs"):
        summarize([])
    with pytest.raises(ValueError, match=r"metric 'auroc' is not a number"):
        summarize([{"auroc": "high"}, {"auroc": 0.7}])
    with pytest.raises(ValueError, match="non-empty"):
        mean_std([])


def test_format_mean_std():
    assert format_mean_std(0.747, 0.0031) == "74.70 (0.31)"
    assert format_mean_std(0.95574, 0.00006) == "95.57 (0.01)"
    assert format_mean_std(0.5, float("nan")) == "50.00 (-)"
    assert format_mean_std(float("nan"), float("nan")) == "nan"
    assert format_mean_std(0.12345, 0.001, scale=1, digits=3) == "0.123 (0.001)"


def test_results_table_three_formats():
    # MedM-PLM: auroc 0.74, 0.76 -> mean 0.75, std sqrt(2 * 0.01^2 / 1) = 0.014142 -> "1.41"
    #           f1 0.68, 0.70 -> 69.00 (1.41)
    # LR:       auroc 0.65 (one run) -> "65.00 (-)"; no f1 -> empty cell
    rows = {
        "MedM-PLM": {"auroc": [0.74, 0.76], "f1": [0.68, 0.70]},
        "LR": {"auroc": [0.65]},
    }
    md, csv_text, data = results_table(rows, ["auroc", "f1"], headers={"auroc": "AUC%"})
    assert md == (
        "| Model | AUC% | f1 |\n"
        "|---|---:|---:|\n"
        "| MedM-PLM | **75.00 (1.41)** | **69.00 (1.41)** |\n"
        "| LR | 65.00 (-) |  |\n"
    )
    table = list(csv.DictReader(io.StringIO(csv_text)))
    assert [r["model"] for r in table] == ["MedM-PLM", "LR"]
    assert float(table[0]["auroc_mean"]) == approx(0.75)
    assert float(table[0]["auroc_std"]) == approx(math.sqrt(2) * 0.01)
    assert table[0]["auroc_n"] == "2"
    assert table[1]["auroc_std"] == "" and table[1]["f1_mean"] == ""
    text = json.dumps(data, allow_nan=False)                 # valid JSON: NaN became null
    back = json.loads(text)
    assert back["rows"]["LR"]["auroc"] == {"mean": 0.65, "std": None, "n": 1, "values": [0.65]}
    assert "f1" not in back["rows"]["LR"]
    assert back["columns"] == ["auroc", "f1"] and back["scale"] == 100.0


def test_results_table_default_columns_and_no_bold():
    rows = {"A": {"f1": [0.5, 0.6]}, "B": {"auroc": [0.9, 0.8], "f1": [0.4, 0.4]}}
    md, _, data = results_table(rows, bold_best=False)
    assert md.splitlines()[0] == "| Model | f1 | auroc |"
    assert "**" not in md
    md, _, _ = results_table(rows)
    assert "**55.00 (7.07)**" in md and "**85.00 (7.07)**" in md
    assert data["columns"] == ["f1", "auroc"]


def test_results_table_rejects_empty():
    with pytest.raises(ValueError, match="no rows"):
        results_table({})
    with pytest.raises(ValueError, match=r"model 'A', metric 'f1' has no values"):
        results_table({"A": {"f1": []}})


# =============================================================================== report


def test_readmission_report_table_names_and_defines_every_metric():
    from medmm.eval.report import TABLE_METRICS, metric_definitions, table_iii
    from medmm.tasks.registry import task_class

    READMISSION_METRICS = task_class("readmission").detail_metrics

    runs = [binary_metrics(RD_Y, RD_P), binary_metrics(RD_Y, RD_P[::-1])]
    old = [{k: runs[0][k] for k in ("f1", "accuracy", "auroc", "auprc")}]   # a result from before
    t = table_iii({"new": {"readmission": runs}, "old": {"readmission": old}}, ["readmission"],
                  metrics=READMISSION_METRICS)
    assert t.data["columns"] == [f"readmission:{m}" for m in READMISSION_METRICS]
    assert t.data["rows"]["new"]["readmission:macro_f1@0.3"]["values"] == approx(
        [r["macro_f1@0.3"] for r in runs])
    assert set(t.data["rows"]["old"]) == {"readmission:auroc"}        # no half-filled averages
    lines = metric_definitions(["readmission"], READMISSION_METRICS)
    assert len(lines) == len(READMISSION_METRICS)
    for m, line in zip(READMISSION_METRICS, lines):
        assert f"(`{m}`)" in line
    assert len(metric_definitions(["readmission", "medication", "icd_coding"])) == 3 * len(TABLE_METRICS)
