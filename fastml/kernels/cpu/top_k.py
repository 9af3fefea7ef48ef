"""Top-k hits: is the true class among the k highest scores of its row? One pass, no sort.

scikit-learn ranks with a stable ascending argsort reversed, so among equal scores the higher
column index ranks first, and NaN ranks above every number. The true class y is in the top k
iff fewer than k columns outrank it under that order, which a single scan of the row counts.
"""

import numpy as np
from numba import prange

from .. import sizes
from ._jit import CHUNK, inline, parallel


@inline
def _outranks(a, j, b, y):
    # Does column j (score a) rank above the true column y (score b)?
    if a != a:
        return b == b or j > y
    if b != b:
        return False
    return a > b or (a == b and j > y)


@parallel
def top_k_hits(status, scores, y_true, weight, k):
    """Weighted count of rows whose true class is among the top ``k`` scores.

    Parameters
    ----------
    status : (2,) float64, written
        ``status[0]``: the (weighted) number of hits; ``status[1]``: index of the first label
        outside [0, C), else -1 (then ``status[0]`` is meaningless).
    scores : (N, C) float32 or float64, read
    y_true : (N,) integer, read
    weight : (N,) or (0,) float64, read
    k : int

    Raises ``ValueError``, before writing anything, if ``scores`` has no column, ``status``
    fewer than 2 entries, ``y_true`` not N entries, or ``weight`` neither N nor 0. Labels
    outside [0, C) are reported in ``status[1]``, never used as an index.
    """
    n, c = scores.shape
    sizes.top_k(scores, status, y_true, weight)
    weighted = weight.shape[0] != 0
    rows = max(1, CHUNK // c)
    nchunks = (n + rows - 1) // rows
    partial = np.zeros(nchunks)
    first_bad = np.full(nchunks, n, dtype=np.int64)
    for chunk in prange(nchunks):
        s = 0.0
        for i in range(chunk * rows, min(n, (chunk + 1) * rows)):
            y = np.int64(y_true[i])
            if y < 0 or y >= c:
                first_bad[chunk] = min(first_bad[chunk], i)
                continue
            row = scores[i]
            b = row[y]
            above = 0
            for j in range(c):
                if _outranks(row[j], j, b, y):
                    above += 1
            if above < k:
                s += weight[i] if weighted else 1.0
        partial[chunk] = s
    total = 0.0
    for chunk in range(nchunks):
        total += partial[chunk]
    bad = first_bad.min()
    status[0] = total
    status[1] = bad if bad < n else -1
