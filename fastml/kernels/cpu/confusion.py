"""Confusion counts in one parallel pass, the source of every classification metric.

The samples are cut into a number of chunks fixed by N and the table size (never by the thread
count); each chunk counts into its own private table and the tables are added in chunk order,
so weighted counts are bitwise reproducible and no atomics are needed. Labels are range-checked
in the same pass: a label outside [0, k) is reported (its index, the first one) instead of
counted, and nothing is added to ``cm`` unless every label is valid, so a rejected update leaves
the caller's table as it was.

Predictions come in three forms, one kernel each from one template: integer labels, 1-D scores
(``score > threshold`` is class 1) and 2-D scores (row argmax: first NaN, else first maximum).
"""

import numpy as np
from numba import prange

from ._jit import inline, parallel

_TABLE_BUDGET = 1 << 21  # cells of private tables in flight; bounds memory for large k


@inline
def _label(y_pred, i, threshold):
    return np.int64(y_pred[i])


@inline
def _thresholded(y_pred, i, threshold):
    return np.int64(1) if y_pred[i] > threshold else np.int64(0)


@inline
def _argmax(y_pred, i, threshold):
    row = y_pred[i]
    best = 0
    for j in range(row.shape[0]):
        if row[j] != row[j]:
            return np.int64(j)
        if row[j] > row[best]:
            best = j
    return np.int64(best)


def _make_counts(pred_at):
    @parallel
    def counts(cm, seen, status, y_true, y_pred, weight, threshold):
        n = y_true.shape[0]
        k = cm.shape[0]
        weighted = weight.shape[0] != 0
        nchunks = max(1, min(n // 4096, 64, _TABLE_BUDGET // (k * k)))
        per = (n + nchunks - 1) // nchunks
        tables = np.zeros((nchunks, k * k), dtype=cm.dtype)
        seen_by = np.zeros((nchunks, k), dtype=np.bool_)
        first_bad = np.full(nchunks, n, dtype=np.int64)
        top = np.zeros(nchunks, dtype=np.int64)
        for c in prange(nchunks):
            t = tables[c]
            z = seen_by[c]
            hi_label = np.int64(0)
            for i in range(c * per, min(n, (c + 1) * per)):
                a = np.int64(y_true[i])
                b = pred_at(y_pred, i, threshold)
                hi_label = max(hi_label, max(a, b))
                if a < 0 or b < 0 or a >= k or b >= k:
                    first_bad[c] = min(first_bad[c], i)
                    continue
                z[a] = True
                z[b] = True
                if weighted:
                    t[a * k + b] += weight[i]
                else:
                    t[a * k + b] += 1
            top[c] = hi_label
        bad = first_bad.min()
        status[0] = bad if bad < n else -1
        status[1] = top.max()
        if bad < n:
            return
        flat = cm.reshape(k * k)
        for c in range(nchunks):
            for j in range(k * k):
                flat[j] += tables[c, j]
            for j in range(k):
                seen[j] |= seen_by[c, j]

    counts.__doc__ = """Add the confusion counts of one batch to ``cm``.

    Parameters
    ----------
    cm : (k, k) int64 or float64, updated in place (only if every label is in [0, k))
        ``cm[t, p]`` counts (or sums the weights of) samples with true class t predicted as p.
    seen : (k,) bool, updated in place (likewise)
        Set for every label that occurs in ``y_true`` or the predictions, whatever its weight
        (scikit-learn's "present labels").
    status : (2,) int64, written
        ``status[0]``: index of the first sample whose label is outside [0, k), else -1;
        ``status[1]``: the largest label seen (so a caller can size ``cm`` and retry).
    y_true : (n,) integer, read
    y_pred : (n,) integer labels, (n,) float scores or (n, c) float scores, read
    weight : (n,) or (0,) float64, read; empty means every sample counts 1
    threshold : float, for 1-D scores
    """
    return counts


confusion_counts = _make_counts(_label)
confusion_counts_thresholded = _make_counts(_thresholded)
confusion_counts_argmax = _make_counts(_argmax)
