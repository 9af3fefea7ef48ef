"""Float64 NumPy references for the classification metrics, written from scikit-learn's
definitions (``sklearn/metrics/_classification.py`` and ``_ranking.py``, version 1.9).

Plain and slow on purpose: a dictionary maps every sample's labels to table indices, an
unbuffered ``np.add.at`` builds the confusion table, every metric is read off it with one
formula per line. Nothing here calls fastml or scikit-learn, so the metrics are tested on
machines without scikit-learn too. Warnings are not emitted but returned (``warned``: the
messages scikit-learn would give), so a test can compare them with what fastml raised.
"""

import math

import numpy as np


def present_labels(y_true, y_pred):
    """The sorted labels that occur in either array (scikit-learn's ``unique_labels``)."""
    return sorted(set(np.asarray(y_true).tolist()) | set(np.asarray(y_pred).tolist()))


def confusion_matrix(y_true, y_pred, labels=None, sample_weight=None, normalize=None):
    """``C[i, j]``: the (weighted) number of samples of true ``labels[i]`` predicted
    ``labels[j]``; int64 with integer or no weights, float64 otherwise (as scikit-learn)."""
    labels = present_labels(y_true, y_pred) if labels is None else list(labels)
    where = {label: i for i, label in enumerate(labels)}
    rows = np.array([where.get(t, -1) for t in np.asarray(y_true).tolist()], dtype=np.int64)
    cols = np.array([where.get(p, -1) for p in np.asarray(y_pred).tolist()], dtype=np.int64)
    if sample_weight is None:
        weights = np.ones(len(rows))
        integer = True
    else:
        weights = np.asarray(sample_weight, dtype=np.float64)
        integer = np.asarray(sample_weight).dtype.kind in "iub"
    keep = (rows >= 0) & (cols >= 0)  # samples whose labels are both in `labels`
    cm = np.zeros((len(labels), len(labels)), dtype=np.float64)
    np.add.at(cm, (rows[keep], cols[keep]), weights[keep])  # in sample order, unbuffered
    if normalize is None:
        return cm.astype(np.int64) if integer else cm
    with np.errstate(all="ignore"):
        if normalize == "true":
            cm = cm / cm.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            cm = cm / cm.sum(axis=0, keepdims=True)
        else:
            cm = cm / cm.sum()
    return np.nan_to_num(cm)


def accuracy(y_true, y_pred, sample_weight=None):
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    w = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    return float(np.sum(w * (y_true == y_pred)) / np.sum(w))


def _zero_division_value(zero_division):
    if zero_division == "warn":
        return 0.0
    return float(zero_division)  # 0, 1 or nan


def _divide(num, den, metric, modifier, warn_for, zero_division, warned):
    """scikit-learn's ``_prf_divide``: elementwise num / den; zero_division where den == 0."""
    out = np.empty(len(num))
    ill = False
    for i, (a, b) in enumerate(zip(num, den, strict=True)):
        if b == 0:
            out[i] = _zero_division_value(zero_division)
            ill = True
        else:
            out[i] = a / b
    if ill and zero_division == "warn" and metric in warn_for:
        where = "due to" if len(out) == 1 else "in labels with"
        warned.append(f"{metric.capitalize()} is ill-defined and being set to 0.0 {where} no "
                      f"{modifier} samples. Use `zero_division` parameter to control this "
                      "behavior.")
    return out


def _nanaverage(values, weights=None):
    keep = [i for i, v in enumerate(values) if not math.isnan(v)]
    if not keep:
        return math.nan
    values = [values[i] for i in keep]
    if weights is None or sum(weights[i] for i in keep) == 0:
        return sum(values) / len(values)
    weights = [weights[i] for i in keep]
    return sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)


def precision_recall_fscore(y_true, y_pred, *, beta=1.0, labels=None, pos_label=1,
                            average=None, zero_division="warn", sample_weight=None,
                            warn_for=("precision", "recall", "f-score")):
    """scikit-learn's ``precision_recall_fscore_support`` for integer labels.

    Returns ``((precision, recall, fscore, support), warned)``. The caller must not ask for
    ``average="binary"`` on multiclass data (scikit-learn raises; so does fastml).
    """
    warned = []
    present = present_labels(y_true, y_pred)
    if average == "binary":
        assert len(present) <= 2, "binary average on multiclass data"
        chosen = [pos_label]
    else:
        if pos_label not in (None, 1):
            warned.append(f"Note that pos_label (set to {pos_label!r}) is ignored when average "
                          f"!= 'binary' (got {average!r}). You may use labels=[pos_label] to "
                          "specify a single positive class.")
        chosen = present if labels is None else list(labels)
    table = confusion_matrix(y_true, y_pred, labels=present, sample_weight=sample_weight)
    table = table.astype(np.float64)
    index = {label: i for i, label in enumerate(present)}
    tp, pred, true = [], [], []
    for label in chosen:
        i = index.get(label)
        tp.append(0.0 if i is None else table[i, i])
        pred.append(0.0 if i is None else table[:, i].sum())
        true.append(0.0 if i is None else table[i, :].sum())
    if average == "micro":
        tp, pred, true = [sum(tp)], [sum(pred)], [sum(true)]
    precision = _divide(tp, pred, "precision", "predicted", warn_for, zero_division, warned)
    recall = _divide(tp, true, "recall", "true", warn_for, zero_division, warned)
    if math.isinf(beta):
        fscore = recall
    elif beta == 0:
        fscore = precision
    else:
        b2 = beta * beta
        num = [(1 + b2) * x for x in tp]
        den = [b2 * t + p for t, p in zip(true, pred, strict=True)]
        fscore = _divide(num, den, "f-score", "true nor predicted", warn_for, zero_division,
                         warned)
    if average is None:
        # scikit-learn: int64 without weights, but float64 when no sample is predicted right
        # (its true-positive counts then start as float zeros).
        some_right = bool(np.any(np.asarray(y_true) == np.asarray(y_pred)))
        integer = sample_weight is None and some_right
        support = np.array(true, dtype=np.int64 if integer else np.float64)
        return (precision, recall, fscore, support), warned
    weights = true if average == "weighted" else None
    return (_nanaverage(list(precision), weights), _nanaverage(list(recall), weights),
            _nanaverage(list(fscore), weights), None), warned


def argmax_labels(scores):
    """Row argmax: the first NaN, else the first maximum (np.argmax treats NaN as largest)."""
    return np.argmax(np.asarray(scores), axis=1)


def top_k_accuracy(y_true, scores, k, sample_weight=None, normalize=True):
    """scikit-learn's ``top_k_accuracy_score`` with ``labels = 0..C-1``: a stable ascending
    argsort of each row, reversed, so ties rank the higher column first and NaN ranks first."""
    scores = np.asarray(scores, dtype=np.float64)
    hits = []
    for row, y in zip(scores, np.asarray(y_true).tolist(), strict=True):
        order = np.argsort(row, kind="mergesort")[::-1]
        hits.append(1.0 if y in order[:k].tolist() else 0.0)
    hits = np.array(hits)
    w = np.ones(len(hits)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    total = float(np.sum(w * hits))
    return total / float(np.sum(w)) if normalize else total
