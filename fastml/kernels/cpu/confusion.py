"""Confusion counts in one parallel pass, the source of every classification metric.

The samples are cut into a number of chunks fixed by N and the table size (never by the thread
count); each chunk counts into its own private table and the tables are added in chunk order,
so weighted counts are bitwise reproducible and no atomics are needed.

The counting loop has no branch and no range check. A label is read as an unsigned integer and
clamped to k, so a negative label (a huge unsigned value) or one >= k lands in row or column k
of a (k+1) x (k+1) private table: the table itself records whether anything was out of range.
Only then does a second pass look for the first bad index and the largest label (the rare path);
otherwise the largest label and the present labels are read off the table's margins. Nothing is
added to ``cm`` or ``seen`` unless every label is valid, so a rejected update leaves the caller's
table as it was.

Why this shape (measured on a 2-core AMD EPYC, Zen 3, in-cache, ns per sample, one thread; see
bench/NOTES.md): a per-sample range check costs 1.6-2.0, the clamp form 1.0 (the bare unchecked
scatter: 0.8). Signed indices would add a negative-index wrap-around to every access, so each
chunk loops over slices from index 0 and the table index is unsigned. Several interleaved
private sub-tables (to break store-to-load chains on runs of one label) gained nothing there,
even with every sample in one cell, so one table per chunk is kept (less to zero and to merge).

Predictions come in three forms, read by one kernel compiled per type of ``y_pred``: integer
labels, 1-D float scores (``score > threshold`` is class 1) and 2-D scores (row argmax: first
NaN, else first maximum).
"""

import numpy as np
from numba import prange, types
from numba.extending import overload

from .. import sizes
from ._jit import FASTMATH, inline, parallel, serial
from ._math import prefetch_l2

_TABLE_BUDGET = 1 << 21  # cells of private tables in flight; bounds memory for large k
_MAX_CHUNKS = 64  # enough to balance any thread count up to ~16; fixed, so sums are reproducible
_MIN_CHUNK = 1 << 15  # samples per chunk at least: a chunk's table is small next to its data
# The counting loop asks for the labels _AHEAD samples ahead once every _STEP samples (a cache
# line of int64): the scatter keeps the core busy, and the hardware prefetcher alone left its
# memory time added to the compute instead of overlapped (10M int64 labels, 2 threads: 8.53 ->
# 7.56 ms; 512 ahead 7.89; blocks of 8 without the prefetch 8.61; bench/NOTES.md).
_AHEAD = 256
_STEP = 8


def _predicted(y_pred, i, threshold):
    """The predicted label of sample i (compiled per form by the overload below)."""


@overload(_predicted, jit_options={"fastmath": FASTMATH})
def _predicted_impl(y_pred, i, threshold):
    # The form follows from the type of y_pred, so one kernel serves all three (a kernel made
    # per form by a closure would miss numba's on-disk cache in every new process).
    if y_pred.ndim == 2:
        def argmax(y_pred, i, threshold):  # first NaN, else first maximum
            row = y_pred[i]
            best = 0
            for j in range(row.shape[0]):
                if row[j] != row[j]:
                    return np.int64(j)
                if row[j] > row[best]:
                    best = j
            return np.int64(best)
        return argmax
    if isinstance(y_pred.dtype, types.Float):
        def thresholded(y_pred, i, threshold):
            return np.int64(1) if y_pred[i] > threshold else np.int64(0)
        return thresholded

    def label(y_pred, i, threshold):
        return np.int64(y_pred[i])
    return label


def _prefetch_pred(y_pred, i):
    """Prefetch the prediction of sample i (compiled per form by the overload below)."""


@overload(_prefetch_pred, jit_options={"fastmath": FASTMATH})
def _prefetch_pred_impl(y_pred, i):
    if y_pred.ndim == 1:
        def ahead(y_pred, i):
            prefetch_l2(y_pred, i)
        return ahead

    def nothing(y_pred, i):  # 2-D scores: the row argmax is the work, not the read
        pass
    return nothing


@inline
def _cell(yt, yp, i, threshold, uk, uk1):
    """The private-table cell of sample i: (true, predicted), each clamped to k. uint64(-1) is
    huge, so min() sends negative labels to k as well."""
    return (min(np.uint64(np.int64(yt[i])), uk) * uk1
            + min(np.uint64(_predicted(yp, i, threshold)), uk))


@inline
def _n_chunks(n, k):
    cells = (k + 1) * (k + 1)
    return max(1, min(n // _MIN_CHUNK, _MAX_CHUNKS, _TABLE_BUDGET // cells))


@parallel
def confusion_counts(cm, seen, status, y_true, y_pred, weight, threshold):
    """Add the confusion counts of one batch to ``cm``.

    ``confusion_counts_thresholded`` and ``confusion_counts_argmax`` are this same kernel: the
    form of the predictions follows from the type of ``y_pred``.

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
    y_true : (n,) integer or bool, read
    y_pred : read; (n,) integer or bool labels, (n,) float scores (class 1 where
        ``score > threshold``) or (n, c) scores (the row argmax: first NaN, else first maximum)
    weight : (n,) or (0,) numeric, read (summed in float64); empty means every sample counts 1
    threshold : float, for 1-D scores

    Raises ``ValueError``, before writing anything, if ``cm`` is not square, ``seen`` not k
    entries, ``status`` fewer than 2, ``y_pred`` or ``weight`` (unless empty) not n rows, or
    2-D scores have no column. Labels need no check: the counting loop clamps them into the
    private tables' row and column k (above), and ``cm`` is indexed by table cells only.
    """
    n = y_true.shape[0]
    k = cm.shape[0]
    sizes.confusion(cm, seen, status, y_true, y_pred, weight)
    k1 = k + 1
    uk = np.uint64(k)
    uk1 = np.uint64(k1)
    weighted = weight.shape[0] != 0
    nchunks = _n_chunks(n, k)
    per = (n + nchunks - 1) // nchunks
    # Sample counts always (they give validity and the present labels even where a weight is
    # 0); weight sums too when weighted.
    hits = np.zeros((nchunks, k1 * k1), dtype=np.int64)
    sums = np.zeros((nchunks if weighted else 0, k1 * k1), dtype=np.float64)
    for c in prange(nchunks):
        h = hits[c]
        lo = c * per
        hi = min(n, lo + per)
        # Views of the chunk, indexed from 0: numba then knows no index is negative and drops
        # the wrap-around arithmetic it would add to every y[lo + i].
        yt = y_true[lo:hi]
        yp = y_pred[lo:hi]
        m = yt.shape[0]
        full = m - m % _STEP  # whole steps, each a fixed-length inner loop, then the tail
        if weighted:
            s = sums[c]
            w = weight[lo:hi]
            for j in range(0, full, _STEP):
                if j + _AHEAD < m:
                    prefetch_l2(yt, j + _AHEAD)
                    _prefetch_pred(yp, j + _AHEAD)
                    prefetch_l2(w, j + _AHEAD)
                for i in range(j, j + _STEP):
                    cell = _cell(yt, yp, i, threshold, uk, uk1)
                    h[cell] += 1
                    s[cell] += w[i]
            for i in range(full, m):
                cell = _cell(yt, yp, i, threshold, uk, uk1)
                h[cell] += 1
                s[cell] += w[i]
        else:
            for j in range(0, full, _STEP):
                if j + _AHEAD < m:
                    prefetch_l2(yt, j + _AHEAD)
                    _prefetch_pred(yp, j + _AHEAD)
                for i in range(j, j + _STEP):
                    h[_cell(yt, yp, i, threshold, uk, uk1)] += 1
            for i in range(full, m):
                h[_cell(yt, yp, i, threshold, uk, uk1)] += 1

    # The chunk tables added in chunk order (serially: at most 64 tables, each small next to
    # the >= 2^15 samples its chunk counted).
    total = np.zeros(k1 * k1, dtype=np.int64)
    for c in range(nchunks):
        for j in range(k1 * k1):
            total[j] += hits[c, j]
    # Row k and column k hold the samples with an out-of-range label.
    bad = 0
    for j in range(k1):
        bad += total[k * k1 + j] + total[j * k1 + k]
    if bad != 0:
        first, top = _first_bad_and_top(y_true, y_pred, threshold, k)
        status[0] = first
        status[1] = top
        return
    if weighted:
        for a in range(k):
            for b in range(k):
                acc = 0.0
                for c in range(nchunks):  # in chunk order: reproducible sums
                    acc += sums[c, a * k1 + b]
                cm[a, b] += acc
    else:
        for a in range(k):
            for b in range(k):
                cm[a, b] += total[a * k1 + b]
    top = 0
    for j in range(k):
        count = 0
        for i in range(k):
            count += total[j * k1 + i] + total[i * k1 + j]
        if count != 0:
            seen[j] = True
            top = j
    status[0] = -1
    status[1] = top


@serial
def _first_bad_and_top(y_true, y_pred, threshold, k):
    # The rare path: the first sample with a label outside [0, k), and the largest label.
    # Two plain loops: the first usually stops early, the second vectorizes for labels.
    n = y_true.shape[0]
    first = n
    for i in range(n):
        a = np.int64(y_true[i])
        b = _predicted(y_pred, i, threshold)
        if a < 0 or b < 0 or a >= k or b >= k:
            first = i
            break
    top = np.int64(0)
    for i in range(n):
        top = max(top, max(np.int64(y_true[i]), _predicted(y_pred, i, threshold)))
    return first, top


#: The same kernel under the names the API's dispatch table uses for each prediction form.
confusion_counts_thresholded = confusion_counts
confusion_counts_argmax = confusion_counts
