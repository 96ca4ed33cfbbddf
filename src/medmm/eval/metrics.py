"""Evaluation metrics as pure functions ``fn(y_true, y_prob, ...) -> dict[str, float]``.

Every function takes NumPy arrays (or anything ``np.asarray`` accepts: lists, CPU tensors), checks
its input (0/1 labels, finite scores, matching shapes; the error names the argument and the
offending index) and returns plain Python floats, so a result dict goes straight into JSON.
Nothing here calls scikit-learn: the tests check every number against scikit-learn and against
hand-worked examples, which is only a real check if the two computations are independent.

Which function for which table:

* ``binary_metrics``      30-day readmission, in-ICU criticality (MedM-PLM Table III row 2;
                          MedCSP AUROC / AUPRC).
* ``multilabel_metrics``  Table III's F1 / accuracy / AUC for multi-label tasks (micro-averaged).
* ``gbert_metrics``       medication recommendation as G-BERT's code scores it (per visit).
* ``caml_metrics``        ICD coding as CAML's code scores it (micro / macro, P@k).
* ``retrieval_metrics``   MedCSP text -> image retrieval, P@K and R@K.
* ``zero_shot_metrics``   MedCSP zero-shot binary classification from two prompt similarities.

Thresholds. Every thresholded metric decides through one helper, ``_predict``, and it decides
in the precision the scores arrived in: the threshold is rounded to the scores' float type
(float32 for a model's sigmoid output) before comparing. That is what NumPy computes for
G-BERT's ``y_pred[y_pred > 0.3] = 1`` on a float32 array: the Python float 0.3 takes the
array's type (NEP 50, NumPy >= 2; NumPy 1's value-based casting also kept the array's float32),
so the comparison is ``p > np.float32(0.3)``. Casting the scores to float64 first and comparing
with the float64 0.3 moves exactly one float32 value across: np.float32(0.3) =
0.30000001192092896 is above the float64 0.3 but not above itself, so a visit whose probability
is that value would gain a medication that G-BERT's code does not give it. The rules:

  binary_metrics, multilabel_metrics  ``y_prob >= threshold`` (PyHealth's convention)
  binary_metrics' macro F1            ``y_prob >= 0.3`` (MedM-PLM authors' ``vote_pr_curve``)
  gbert_metrics                       ``y_prob > threshold`` (G-BERT: ``y_pred[y_pred > t] = 1``)
  caml_metrics                        ``y_prob > threshold`` (CAML: ``np.round``, 0.5 goes to 0)

For ``>=`` the rounding changes nothing at 0.3 (np.float32(0.3) is the smallest float32 that is
>= the float64 0.3), which is why the MedM-PLM authors' float64 comparison (their readmission
probabilities pass through ``.tolist()``) agrees with it there. 0.5 is exact in every float type.

Ties in rankings. AUROC gives tied scores half credit (average ranks), AP puts all tied items in
one threshold step (both as scikit-learn does). The top-k metrics (P@k, R@k) split a tie that
straddles the k-th place in expectation, as if the tie were broken uniformly at random: with
untied scores this is exactly "sort and take the first k", and a constant scorer gets the
chance-level value rather than an artefact of index order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

# Rows of a (Q, N) score matrix ranked per block in the top-k helper; bounds temporary memory to
# a few (block, N) arrays whatever Q is (a MIMIC-CXR test split is thousands x tens of thousands).
_TOPK_BLOCK = 1024


# ----------------------------------------------------------------------------- input checks


def _first_index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _fmt_index(idx: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(i) for i in idx) + "]"


def _as_labels(y, name: str, ndim: int) -> np.ndarray:
    """0/1 labels as int64 of the given rank; a (N, 1) column is accepted where ndim == 1."""
    y = np.asarray(y)
    if ndim == 1 and y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array, got shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"{name}: empty array (shape {y.shape}); nothing to evaluate")
    if y.dtype == bool:
        return y.astype(np.int64)
    if not (np.issubdtype(y.dtype, np.number)):
        raise ValueError(f"{name}: labels must be 0/1 numbers or booleans, got dtype {y.dtype}")
    bad = (y != 0) & (y != 1)  # NaN is caught here too
    if bad.any():
        idx = _first_index(bad)
        raise ValueError(f"{name}{_fmt_index(idx)} = {y[idx]!r} is not a 0/1 label")
    return y.astype(np.int64)


def _as_scores(p, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Finite float64 scores with exactly `shape` (a (N, 1) column is accepted for (N,))."""
    p = np.asarray(p)
    if len(shape) == 1 and p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    if p.shape != shape:
        raise ValueError(f"{name}: shape {p.shape}, expected {shape} (to match y_true)")
    if not np.issubdtype(p.dtype, np.number) and p.dtype != bool:
        raise ValueError(f"{name}: scores must be numbers, got dtype {p.dtype}")
    p = p.astype(np.float64)
    bad = ~np.isfinite(p)
    if bad.any():
        idx = _first_index(bad)
        raise ValueError(f"{name}{_fmt_index(idx)} = {p[idx]!r} is not a finite score")
    return p


def _float_type(p) -> np.dtype:
    """The float type scores arrived in (float16 / 32 / 64); float64 for integers and booleans."""
    dt = np.asarray(p).dtype
    if np.issubdtype(dt, np.floating) and dt.itemsize <= 8:
        return dt
    return np.dtype(np.float64)


def _predict(p: np.ndarray, threshold: float, float_type: np.dtype, *, strict: bool) -> np.ndarray:
    """Positive predictions ``p > threshold`` (strict) or ``p >= threshold`` as bools.

    p: float64 scores converted (exactly) from `float_type`, the type they arrived in. The
    threshold is rounded to `float_type` first, so the answer equals NumPy's comparison of the
    original array with a Python float (module docstring): for float32 scores,
    ``p > 0.3`` means ``p > np.float32(0.3)``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.integer, np.floating)) \
            or not math.isfinite(threshold):
        raise ValueError(f"threshold: expected a finite number, got {threshold!r}")
    t = float(np.float64(threshold).astype(float_type))
    return p > t if strict else p >= t


def _check_ks(ks: Iterable[int], name: str = "ks") -> tuple[int, ...]:
    ks = tuple(ks)
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"{name}: every k must be a positive integer, got {k!r}")
    return tuple(int(k) for k in ks)


def _safe_div(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den with 0 where den == 0 (scikit-learn's zero_division=0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _harmonic(p: float, r: float) -> float:
    """F = 2PR / (P + R), 0 when P + R = 0."""
    return 0.0 if p + r == 0 else 2.0 * p * r / (p + r)


# ----------------------------------------------------------------------------- ranking primitives


def _tie_bounds(s_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last position of the run of equal values each position of a sorted row is in.

    s_sorted: (R, n), each row sorted (either direction). Returns two (R, n) int arrays.
    """
    n = s_sorted.shape[1]
    pos = np.arange(n)
    differs = s_sorted[:, 1:] != s_sorted[:, :-1]                       # (R, n-1)
    is_start = np.ones(s_sorted.shape, dtype=bool)
    is_start[:, 1:] = differs
    is_end = np.ones(s_sorted.shape, dtype=bool)
    is_end[:, :-1] = differs
    start = np.maximum.accumulate(np.where(is_start, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(is_end, pos, n)[:, ::-1], axis=1)[:, ::-1]
    return start, end


def _auroc_rows(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUROC of every row of (R, n) labels/scores; NaN for a row with only one class.

    Mann-Whitney form: AUROC = (sum of positive ranks - P(P+1)/2) / (P * N), with average ranks
    for ties, i.e. the probability that a random positive outscores a random negative (ties 1/2).
    """
    order = np.argsort(s, axis=1, kind="stable")                         # (R, n) ascending
    start, end = _tie_bounds(np.take_along_axis(s, order, axis=1))
    ranks = (start + end) / 2.0 + 1.0                                    # 1-based average ranks
    y_sorted = np.take_along_axis(y, order, axis=1)
    n_pos = y.sum(axis=1).astype(np.float64)
    n_neg = y.shape[1] - n_pos
    u = (ranks * y_sorted).sum(axis=1) - n_pos * (n_pos + 1) / 2
    out = np.full(y.shape[0], np.nan)
    ok = (n_pos > 0) & (n_neg > 0)
    out[ok] = u[ok] / (n_pos[ok] * n_neg[ok])
    return out


def _average_precision_rows(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Average precision of every row of (R, n) labels/scores; NaN for a row with no positive.

    AP = sum over thresholds of (R_t - R_{t-1}) * P_t (scikit-learn's step-wise area, no
    interpolation). With thresholds at the distinct scores this equals
    AP = (1/P) * sum over positives i of precision(score >= s_i): all items tied with i are
    above the threshold together.
    """
    order = np.argsort(-s, axis=1, kind="stable")                        # (R, n) descending
    y_sorted = np.take_along_axis(y, order, axis=1)
    _, end = _tie_bounds(np.take_along_axis(s, order, axis=1))
    # everything up to the end of an item's tie run has score >= its score
    tp_ge = np.take_along_axis(np.cumsum(y_sorted, axis=1), end, axis=1)
    precision_at = tp_ge / (end + 1.0)
    n_pos = y.sum(axis=1)
    out = np.full(y.shape[0], np.nan)
    ok = n_pos > 0
    out[ok] = (y_sorted * precision_at).sum(axis=1)[ok] / n_pos[ok]
    return out


def _pr_auc_trapezoid(y: np.ndarray, s: np.ndarray) -> float:
    """Trapezoid area under the precision-recall curve of (n,) labels / scores; NaN without positives.

    The curve is scikit-learn's ``precision_recall_curve``: one point (R_t, P_t) per distinct
    score t (everything scoring >= t predicted positive), plus the start point (R = 0, P = 1);
    the area joins the points with straight lines, ``sum (R_t - R_{t-1}) (P_t + P_{t-1}) / 2``,
    as ``sklearn.metrics.auc(recall, precision)`` does (the MedM-PLM authors' "aupr"). No
    classifier lies on a straight line between two PR points (Davis & Goadrich 2006), which is
    why AP, the step-wise sum, is the usual summary; this one is kept to compare with the paper.
    """
    n_pos = y.sum()
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    last = np.ones(len(s), dtype=bool)                     # last item of each run of equal scores
    last[:-1] = s_sorted[1:] != s_sorted[:-1]
    tp = np.cumsum(y[order])[last]
    n_predicted = np.flatnonzero(last) + 1.0
    precision = np.concatenate(([1.0], tp / n_predicted))
    recall = np.concatenate(([0.0], tp / n_pos))
    return float(np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2))


def _expected_topk_hits(s: np.ndarray, rel: np.ndarray, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Expected number of relevant items among the k highest scores, per row, for every k.

    s, rel: (R, n). A tie at the k-th score is broken uniformly at random in expectation:
    hits = relevant strictly above + (k - count strictly above) * relevant_in_tie / tie_size.
    For k >= n every item is in the top k.
    """
    n = s.shape[1]
    out = {k: np.empty(s.shape[0]) for k in ks}
    for lo in range(0, s.shape[0], _TOPK_BLOCK):
        sb, rb = s[lo:lo + _TOPK_BLOCK], rel[lo:lo + _TOPK_BLOCK]
        s_desc = -np.sort(-sb, axis=1)                       # (B, n)
        for k in ks:
            if k >= n:
                out[k][lo:lo + len(sb)] = rb.sum(axis=1)
                continue
            kth = s_desc[:, k - 1][:, None]                   # (B, 1) k-th largest score
            above, tie = sb > kth, sb == kth
            n_above = above.sum(axis=1)
            rel_above = (above & rb).sum(axis=1)
            n_tie, rel_tie = tie.sum(axis=1), (tie & rb).sum(axis=1)  # n_tie >= 1: kth is a score
            out[k][lo:lo + len(sb)] = rel_above + (k - n_above) * rel_tie / n_tie
    return out


def _confusion(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Precision, recall, F1, accuracy of 0/1 predictions (any shape; counted over all cells)."""
    tp = float(np.sum(pred & (y == 1)))
    fp = float(np.sum(pred & (y == 0)))
    fn = float(np.sum(~pred & (y == 1)))
    precision = float(_safe_div(tp, tp + fp))
    recall = float(_safe_div(tp, tp + fn))
    return {
        "f1": float(_safe_div(2 * tp, 2 * tp + fp + fn)),
        "accuracy": float(np.mean(pred == (y == 1))),
        "precision": precision,
        "recall": recall,
    }


# ----------------------------------------------------------------------------- binary


# MedM-PLM's authors score readmission F1 as scikit-learn's macro F1 of ``prob >= 0.3``
# (``vote_pr_curve`` in their ``finetuing/utils.py``, after ClinicalBERT's readmission code).
MACRO_F1_THRESHOLD = 0.3


def _binary_from(y: np.ndarray, pred: np.ndarray, score: np.ndarray) -> dict[str, float]:
    out = _confusion(y, pred)
    out["auroc"] = float(_auroc_rows(y[None], score[None])[0])
    out["ap"] = float(_average_precision_rows(y[None], score[None])[0])
    out["auprc"] = out["ap"]
    out["pr_auc_trapz"] = _pr_auc_trapezoid(y, score)
    return out


def _macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean of the positive and the negative class's F1, over the classes that occur.

    As scikit-learn's ``f1_score(average="macro")`` without ``labels=``: a class that is neither
    in y nor predicted is left out of the mean (so all-positive labels predicted all positive
    score 1, not 1/2); every class that does occur has 2 TP + FP + FN > 0.
    """
    scores = []
    for is_class, pred_class in ((y == 1, pred), (y == 0, ~pred)):
        tp = np.sum(is_class & pred_class)
        wrong = np.sum(is_class ^ pred_class)                   # FP + FN of this class
        if tp + wrong:
            scores.append(2 * tp / (2 * tp + wrong))
    return float(np.mean(scores))


def binary_metrics(y_true, y_prob, threshold: float = 0.5,
                   macro_threshold: float = MACRO_F1_THRESHOLD) -> dict[str, float]:
    """Binary classification metrics (readmission, ARF, shock, mortality).

    y_true: (N,) 0/1 labels; y_prob: (N,) scores (probabilities, or any monotone score for the
    ranking metrics). Keys, with the code each follows:

      f1_pos@{threshold}   F1 of the POSITIVE class, predicting ``y_prob >= threshold`` (default
                           0.5): 2 TP / (2 TP + FP + FN); PyHealth's ``binary_metrics_fn`` and
                           scikit-learn's ``f1_score(average="binary")``.
      macro_f1@{macro_threshold}
                           mean of the positive and the negative class's F1, predicting
                           ``y_prob >= macro_threshold`` (default 0.3); the readmission "F1" of
                           the MedM-PLM authors' code (scikit-learn ``f1_score(average="macro")``;
                           a class absent from both labels and predictions is left out).
      ap                   average precision: sum over distinct scores t of (R_t - R_{t-1}) P_t,
                           the step-wise area under the PR curve; scikit-learn's
                           ``average_precision_score`` (the authors' "ap").
      pr_auc_trapz         trapezoid area under the same PR curve,
                           ``sklearn.metrics.auc(recall, precision)`` over
                           ``precision_recall_curve``: the authors' "aupr". Each recall step
                           is weighted by the mean precision at its two ends instead of the
                           precision at its end, so it is not AP unless precision is constant.
      auroc                area under the ROC curve (ties count 1/2); fine-tuning's default
                           model-selection metric.
      f1, precision, recall, accuracy
                           positive-class scores at ``threshold``; ``f1`` equals ``f1_pos@...``
                           and is the "F1" column of Table III.
      auprc                the same number as ``ap``, under the name older results use.

    The threshold names are written with ``:g`` (``f1_pos@0.5``, ``macro_f1@0.3``), so results
    computed at other thresholds never share a key with these. Precision, recall and F1 are 0
    when their denominator is 0 (scikit-learn's ``zero_division=0``). AUROC is undefined when
    y_true holds a single class, AP and the trapezoid area when it holds no positive: they are
    then NaN (not an exception), so a run on a tiny split still reports its other metrics;
    ``summarize`` propagates the NaN rather than hiding it.
    """
    y = _as_labels(y_true, "y_true", 1)
    p = _as_scores(y_prob, "y_prob", y.shape)
    float_type = _float_type(y_prob)
    pred = _predict(p, threshold, float_type, strict=False)
    out = _binary_from(y, pred, p)
    out[f"f1_pos@{threshold:g}"] = out["f1"]
    out[f"macro_f1@{macro_threshold:g}"] = _macro_f1(y, _predict(p, macro_threshold, float_type, strict=False))
    return out


def zero_shot_metrics(similarities, y_true) -> dict[str, float]:
    """Zero-shot binary classification from the similarities to two prompts (MedCSP).

    similarities: (N, 2) cosine similarity of each image to the [negative, positive] prompt
    (e.g. "no pneumonia" / "pneumonia"); y_true: (N,) 0/1. The prediction is the argmax over the
    two prompts (a tie goes to the negative prompt, as ``argmax`` returns the first maximum);
    the ranking metrics use the margin ``sim_pos - sim_neg``. Returns ``binary_metrics``' keys
    except the two threshold-named F1s (there is no threshold): ``f1, accuracy, precision,
    recall`` of the argmax, ``auroc, ap, auprc, pr_auc_trapz`` of the margin (the paper reports
    precision, recall and F1).
    """
    y = _as_labels(y_true, "y_true", 1)
    sim = _as_scores(similarities, "similarities", (len(y), 2))
    pred = np.argmax(sim, axis=1) == 1
    return _binary_from(y, pred, sim[:, 1] - sim[:, 0])


# ----------------------------------------------------------------------------- multi-label


def multilabel_metrics(y_true, y_prob, threshold: float = 0.5) -> dict[str, float]:
    """Table III-style F1 / accuracy / AUROC for multi-label tasks, plus the usual variants.

    y_true: (N, L) 0/1; y_prob: (N, L) scores; a positive prediction is ``y_prob >= threshold``.
    Every (visit, label) cell is one binary decision.

    Primary keys (what a "F1 / Accuracy / AUC" column means in medmm tables):
      f1         micro-F1: 2 TP / (2 TP + FP + FN) over all cells.
      accuracy   element-wise (Hamming) accuracy: fraction of cells predicted correctly. Chosen
                 because subset accuracy (all L labels right) is ~0 for L in the hundreds, and
                 the ~92 % accuracies of Table III's medication recommendation rows are of this
                 size. NB Table III's ICD-coding accuracies (e.g. 35.22 with F1 52.09) equal
                 F1 / (2 - F1), i.e. CAML's micro "accuracy" |pred & true| / |pred | true|,
                 reported here as ``jaccard`` and by ``caml_metrics`` as ``micro_accuracy``.
      auroc      micro-AUROC: ROC area over the flattened (N * L) cells.
    Also: ``precision``, ``recall`` (micro), ``jaccard`` (micro, as above), ``subset_accuracy``,
    ``auprc`` (micro average precision), ``f1_macro`` (mean of per-label F1, 0 for a label with
    no positive and no prediction), ``auroc_macro`` (mean over labels with both classes present),
    ``auroc_samples`` (mean over visits with both classes present; the per-visit AUC of the
    MedM-PLM authors' code). An average over an empty set is NaN.
    """
    y = _as_labels(y_true, "y_true", 2)
    p = _as_scores(y_prob, "y_prob", y.shape)
    pred = _predict(p, threshold, _float_type(y_prob), strict=False)
    out = _confusion(y, pred)
    tp = np.sum(pred & (y == 1), axis=0)
    fp = np.sum(pred & (y == 0), axis=0)
    fn = np.sum(~pred & (y == 1), axis=0)
    out["jaccard"] = float(_safe_div(tp.sum(), tp.sum() + fp.sum() + fn.sum()))
    out["subset_accuracy"] = float(np.mean(np.all(pred == (y == 1), axis=1)))
    out["f1_macro"] = float(np.mean(_safe_div(2 * tp, 2 * tp + fp + fn)))
    out["auroc"] = float(_auroc_rows(y.reshape(1, -1), p.reshape(1, -1))[0])
    out["auprc"] = float(_average_precision_rows(y.reshape(1, -1), p.reshape(1, -1))[0])
    out["auroc_macro"] = _nanmean(_auroc_rows(y.T, p.T))
    out["auroc_samples"] = _nanmean(_auroc_rows(y, p))
    return out


def _nanmean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


# ----------------------------------------------------------------------------- G-BERT


def gbert_metrics(y_true, y_prob, threshold: float = 0.3) -> dict[str, float]:
    """Medication recommendation metrics as G-BERT's ``multi_label_metric`` defines them.

    y_true: (N, M) 0/1 medications of each visit; y_prob: (N, M); a medication is recommended
    when ``y_prob > threshold``, strict and in the probabilities' own float type, as G-BERT's
    ``metric_report`` computes ``y_pred[y_pred > 0.3] = 1`` on its float32 sigmoid outputs: a
    probability of exactly np.float32(0.3) is NOT recommended (module docstring, Thresholds).
    The MedM-PLM authors' medication code is the same function. All metrics are per visit, then
    averaged over visits:

      jaccard    |pred & true| / |pred | true|; 0 when the union is empty (G-BERT meant 0 there,
                 but its test ``union == 0`` compares a set with 0 and would divide by zero).
      precision  |pred & true| / |pred|, 0 when nothing is recommended.
      recall     |pred & true| / |true|, 0 when the visit has no medication.
      f1         2 P R / (P + R) from the visit's own P and R, 0 when P + R = 0; the mean of
                 per-visit F1, NOT the F1 of the mean P and R.
      prauc      average precision of the visit's scores against its labels (scikit-learn's
                 ``average_precision_score`` on one row); a visit with no medication scores 0,
                 as current scikit-learn returns for a row without positives.
    """
    y = _as_labels(y_true, "y_true", 2)
    p = _as_scores(y_prob, "y_prob", y.shape)
    pred = _predict(p, threshold, _float_type(y_prob), strict=True)
    inter = np.sum(pred & (y == 1), axis=1)
    n_pred, n_true = pred.sum(axis=1), y.sum(axis=1)
    union = n_pred + n_true - inter
    prec, rec = _safe_div(inter, n_pred), _safe_div(inter, n_true)
    ap = _average_precision_rows(y, p)
    return {
        "jaccard": float(_safe_div(inter, union).mean()),
        "f1": float(_safe_div(2 * prec * rec, prec + rec).mean()),
        "prauc": float(np.nan_to_num(ap, nan=0.0).mean()),
        "precision": float(prec.mean()),
        "recall": float(rec.mean()),
    }


# ----------------------------------------------------------------------------- CAML


def caml_metrics(y_true, y_prob, ks: Sequence[int] = (5, 8, 15), threshold: float = 0.5) -> dict[str, float]:
    """ICD coding metrics as CAML's ``evaluation.py`` (Mullenbach et al. 2018) defines them.

    y_true: (N, L) 0/1 codes per admission; y_prob: (N, L); a code is predicted when
    ``y_prob > threshold`` in the probabilities' own float type (CAML rounds the probabilities
    with ``np.round``, which sends 0.5 to 0; 0.5 is exact in every float type).

    Micro (every cell one decision): ``micro_precision``, ``micro_recall``, ``micro_f1`` (their
    harmonic mean, equal to scikit-learn's micro-F1), ``micro_accuracy`` = TP / (TP + FP + FN)
    (the Jaccard of the flattened sets) and ``micro_auc`` (ROC area of the flattened arrays).

    Macro (per label, then averaged over ALL L labels): ``macro_precision`` = mean TP_l / pred_l,
    ``macro_recall`` = mean TP_l / true_l, ``macro_accuracy`` = mean TP_l / union_l, each 0 for a
    label whose denominator is 0 (CAML adds 1e-10 to it), so a label absent from the test set
    and never predicted pulls them down; ``macro_f1`` is the harmonic mean of macro precision and
    macro recall (NOT the mean of per-label F1). ``macro_auc`` averages the per-label ROC area
    over the labels with at least one positive and one negative (NaN when there is none).

    At k, for each k in ks (per admission, then averaged): ``p@k`` = (# true codes among the k
    highest scores) / min(k, L); ``r@k`` = that count / # true codes (0 for an admission without
    codes); ``f1@k`` = harmonic mean of p@k and r@k.
    """
    y = _as_labels(y_true, "y_true", 2)
    p = _as_scores(y_prob, "y_prob", y.shape)
    ks = _check_ks(ks)
    pred = _predict(p, threshold, _float_type(y_prob), strict=True)
    tp_l = np.sum(pred & (y == 1), axis=0).astype(np.float64)  # (L,)
    pred_l, true_l = pred.sum(axis=0), y.sum(axis=0)
    union_l = pred_l + true_l - tp_l

    out: dict[str, float] = {}
    macro_p = float(_safe_div(tp_l, pred_l).mean())
    macro_r = float(_safe_div(tp_l, true_l).mean())
    out["macro_accuracy"] = float(_safe_div(tp_l, union_l).mean())
    out["macro_precision"], out["macro_recall"] = macro_p, macro_r
    out["macro_f1"] = _harmonic(macro_p, macro_r)
    out["macro_auc"] = _nanmean(_auroc_rows(y.T, p.T))

    tp, n_pred, n_true = tp_l.sum(), pred_l.sum(), true_l.sum()
    micro_p, micro_r = float(_safe_div(tp, n_pred)), float(_safe_div(tp, n_true))
    out["micro_accuracy"] = float(_safe_div(tp, n_pred + n_true - tp))
    out["micro_precision"], out["micro_recall"] = micro_p, micro_r
    out["micro_f1"] = _harmonic(micro_p, micro_r)
    out["micro_auc"] = float(_auroc_rows(y.reshape(1, -1), p.reshape(1, -1))[0])

    hits = _expected_topk_hits(p, y == 1, ks)
    n_row_true = y.sum(axis=1)
    for k in ks:
        pk = float(np.mean(hits[k] / min(k, y.shape[1])))
        rk = float(_safe_div(hits[k], n_row_true).mean())
        out[f"p@{k}"], out[f"r@{k}"], out[f"f1@{k}"] = pk, rk, _harmonic(pk, rk)
    return out


def recall_at_k(y_true, y_prob, ks: Sequence[int] = (10, 20, 30)) -> dict[str, float]:
    """Doctor AI's (Choi et al. 2016) recall@k of next-visit diagnosis prediction: per sample,
    (# true codes among the k highest scores) / (# true codes), averaged over the samples that
    have a true code; ``recall@k`` for each k. A tie at the k-th score counts in expectation
    (uniformly broken, as `caml_metrics`' r@k); k >= L is 1. NaN when no sample has a true code.
    """
    y = _as_labels(y_true, "y_true", 2)
    p = _as_scores(y_prob, "y_prob", y.shape)
    ks = _check_ks(ks)
    n_true = y.sum(axis=1)
    rows = n_true > 0
    if not rows.any():
        return {f"recall@{k}": float("nan") for k in ks}
    hits = _expected_topk_hits(p[rows], y[rows] == 1, ks)
    return {f"recall@{k}": float(np.mean(hits[k] / n_true[rows])) for k in ks}


# ----------------------------------------------------------------------------- retrieval


def _relevance_matrix(relevant, shape: tuple[int, int]) -> np.ndarray:
    """(Q, N) bool from a 0/1 array, or from Q collections of relevant candidate indices.

    An array (NumPy, or anything with ``__array__`` such as a tensor) is read as the matrix; a
    list or tuple is read as index collections, so ``[[0, 3], [2]]`` means indices, not 0/1 flags.
    """
    q, n = shape
    if hasattr(relevant, "__array__"):
        rel = _as_labels(relevant, "relevant", 2)
        if rel.shape != shape:
            raise ValueError(f"relevant: shape {rel.shape} does not match scores' shape {shape}")
        return rel == 1
    relevant = list(relevant)
    if len(relevant) != q:
        raise ValueError(f"relevant: {len(relevant)} index sets for {q} queries (rows of scores)")
    rel = np.zeros(shape, dtype=bool)
    for i, items in enumerate(relevant):
        for j in items:
            if isinstance(j, bool) or not isinstance(j, (int, np.integer)) or not 0 <= j < n:
                raise ValueError(f"relevant[{i}] holds {j!r}, not a candidate index in [0, {n})")
            rel[i, j] = True
    return rel


def retrieval_metrics(scores, relevant, ks: Sequence[int] = (1, 5, 10, 20, 50, 100)) -> dict[str, float]:
    """Precision@K and Recall@K of a ranking (MedCSP text -> image retrieval).

    scores: (Q, N) similarity of each query (a report) to each candidate (an image);
    relevant: a (Q, N) 0/1 or bool array, or a list of Q collections of relevant candidate
    indices (MedCSP: all images of the report's own study; a list of lists is read as indices,
    an array as flags). Per query, then averaged over queries:

      p@K = |relevant & top-K| / K   (K even when N < K: the top-K then holds all N candidates)
      r@K = |relevant & top-K| / |relevant|

    Every query must have at least one relevant candidate (recall is undefined otherwise; such a
    query is an error in building the evaluation set, so it raises). Ties at the K-th score are
    split in expectation (module docstring).
    """
    s = np.asarray(scores)
    if s.ndim != 2 or s.size == 0:
        raise ValueError(f"scores: expected a non-empty (Q, N) matrix, got shape {s.shape}")
    s = _as_scores(s, "scores", s.shape)
    ks = _check_ks(ks)
    rel = _relevance_matrix(relevant, s.shape)
    n_rel = rel.sum(axis=1)
    if (n_rel == 0).any():
        i = int(np.flatnonzero(n_rel == 0)[0])
        raise ValueError(f"relevant: query {i} has no relevant candidate; recall@K is undefined")
    hits = _expected_topk_hits(s, rel, ks)
    out: dict[str, float] = {}
    for k in ks:
        out[f"p@{k}"] = float(np.mean(hits[k] / k))
        out[f"r@{k}"] = float(np.mean(hits[k] / n_rel))
    return out
