"""The labels a metric counts over when no ``num_classes`` is given: the labels present.

A confusion table indexed by label value costs the square of the largest label: nothing for the
usual 0..C-1, ruinous for one large label (16383 would take a 2 GiB table for 1,000 samples).
So a table over 0..top is counted directly only while it is small next to the data
(``dense_fits``); otherwise each label is replaced by its rank among the labels present
(scikit-learn's ``unique_labels``) and the table is counted in that compact space, its index i
standing for label ``values[i]``. The ranks come from a presence table over 0..top when that
range is at most a few times N, else from a sort.

Predictions given as scores are labels 0..C-1 (C = 2 for 1-D scores, the number of columns for
2-D scores). Those labels all join the compact space, where they keep their own index (every
other label is larger), so only ``y_true`` is mapped and the kernels read the scores as they
are; a label that occurs nowhere stays out of the results, which read the table's ``seen``.
"""

import numpy as np

from ._scalars import INT64_MAX

#: A table over 0..top is counted directly up to this many cells whatever N (256 x 256 on the
#: CPU; 2048 x 2048 on the GPU, which zeroes and adds a table with all its threads) ...
DENSE_CELLS = {False: 1 << 16, True: 1 << 22}
#: ... and up to N / SAMPLES_PER_CELL cells: then its cells cost less than reading the samples.
SAMPLES_PER_CELL = 8
#: A presence table over 0..top is used up to max(PRESENCE_SPAN, 2 N) labels (9 bytes each:
#: about the 16 bytes per sample of the labels themselves); wider ranges are sorted instead.
PRESENCE_SPAN = 1 << 16


def dense_fits(k, n, cuda):
    """Whether counting into a (k, k) table over labels 0..k-1 costs no more than the data."""
    return k * k <= max(DENSE_CELLS[cuda], n // SAMPLES_PER_CELL)


def first_invalid(a):
    """Index of the first label of the host integer array ``a`` outside [0, 2**63), else -1."""
    kind = np.dtype(a.dtype).kind
    if kind == "i":
        bad = a < 0
    elif kind == "u" and a.dtype.itemsize == 8:
        bad = a > np.uint64(INT64_MAX)
    else:  # bool and narrower unsigned types: always valid
        return -1
    i = int(np.argmax(bad)) if bad.size else 0
    return i if bad.size and bad[i] else -1


def compact(y_true, y_pred, n_scores, top):
    """The labels present, and the labels as indices into them.

    Parameters
    ----------
    y_true : (N,) host integer array, read; labels in [0, top]
    y_pred : (N,) host integer array of labels in [0, top], read; or None when the predictions
        are scores, whose labels 0..n_scores-1 then join the space (and keep their index)
    n_scores : int, the classes of score predictions (ignored for label predictions)
    top : int, the largest label

    Returns
    -------
    values : (k,) int64, the sorted labels of the space
    y_true, y_pred : the labels as indices in [0, k): new int64 arrays, or the inputs
        themselves when every label 0..top is present (index and label are then one)
    """
    y_true, y_pred = (a.astype(np.int64) if a is not None and a.dtype == np.bool_ else a
                      for a in (y_true, y_pred))  # a bool index array would be a mask
    n = y_true.shape[0]
    span = top + 1
    if span <= max(PRESENCE_SPAN, 2 * n):
        present = np.zeros(span, np.bool_)
        present[y_true] = True
        if y_pred is None:
            present[:n_scores] = True
        else:
            present[y_pred] = True
        values = np.flatnonzero(present)
        if values.size == span:
            return values, y_true, y_pred
        index = np.cumsum(present, dtype=np.int64) - 1  # label -> its rank among those present
        return values, index[y_true], None if y_pred is None else index[y_pred]
    # Sorted labels, then a binary search per sample: several times faster than the
    # argsort behind np.unique(..., return_inverse=True).
    y_true = y_true.astype(np.int64, copy=False)
    if y_pred is None:
        values = np.union1d(np.arange(n_scores, dtype=np.int64), y_true)
        return values, np.searchsorted(values, y_true), None
    y_pred = y_pred.astype(np.int64, copy=False)
    values = np.union1d(y_true, y_pred)
    return values, np.searchsorted(values, y_true), np.searchsorted(values, y_pred)
