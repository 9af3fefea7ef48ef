"""Top-k hits on the GPU: is the true class among the k highest scores of its row?

Same result as ``fastml.kernels.cpu.top_k``: the true class y is a hit iff fewer than k columns
outrank it, where a higher score outranks, among equal scores the higher column index outranks
(scikit-learn's reversed stable argsort), and NaN outranks every number.

One thread per row (grid-stride), scanning the row until k columns outrank y. Each block adds
its hits (or their weights) in a shared-memory tree of fixed shape and writes one float64
partial; a one-block kernel adds the partials in block order. The block count depends on N only,
so a weighted count is bitwise the same on every run (unweighted counts are exact). A label
outside [0, C) lowers an int64 index by integer atomic min: the first one, whatever the timing.
"""

import numpy as np
from numba import cuda, float64, int64

from .. import sizes
from . import _launch as L
from ._launch import SHARED

#: Rows per thread before the grid stops growing.
ROWS = 4


@cuda.jit(device=True)
def _outranks(a, j, b, y):
    # Does column j (score a) rank above the true column y (score b)?
    if a != a:
        return b == b or j > y
    if b != b:
        return False
    return a > b or (a == b and j > y)


@cuda.jit
def _top_k_kernel(parts, first_bad, scores, y_true, weight, k):
    sh = cuda.shared.array(SHARED, float64)
    n = scores.shape[0]
    c = scores.shape[1]
    weighted = weight.shape[0] != 0
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    stride = int64(cuda.gridDim.x) * cuda.blockDim.x
    s = 0.0
    first = n
    for i in range(start, n, stride):
        y = int64(y_true[i])
        if y < 0 or y >= c:
            if first == n:  # a thread's indices rise: its first bad one is its smallest
                first = i
            continue
        b = scores[i, y]
        above = 0
        for j in range(c):
            if _outranks(scores[i, j], j, b, y):
                above += 1
                if above >= k:
                    break
        if above < k:
            s += float64(weight[i]) if weighted else 1.0
    if first < n:
        cuda.atomic.min(first_bad, 0, first)
    total = L.block_sum(sh, s)
    if cuda.threadIdx.x == 0:
        parts[cuda.blockIdx.x] = total


@cuda.jit
def _top_k_finish_kernel(status, parts, nparts, first_bad, n):
    sh = cuda.shared.array(SHARED, float64)
    s = 0.0
    for b in range(cuda.threadIdx.x, nparts, cuda.blockDim.x):
        s += parts[b]
    total = L.block_sum(sh, s)
    if cuda.threadIdx.x == 0:
        status[0] = total
        first = first_bad[0]
        status[1] = float64(first) if first < n else -1.0


def top_k_hits(status, scores, y_true, weight, k, stream=0):
    """Weighted count of rows whose true class is among the top ``k`` scores (no host sync).

    Parameters
    ----------
    status : (2,) float64 device array, written
        ``status[0]``: the (weighted) number of hits; ``status[1]``: index of the first label
        outside [0, C), else -1 (then ``status[0]`` is meaningless).
    scores : (N, C) float32 or float64 device array, C-contiguous, read
    y_true : (N,) integer device array, read
    weight : (N,) or (0,) numeric device array, read
    k : int
    stream : numba stream or 0

    Raises ``ValueError``, before launching, if ``scores`` has no column, ``status`` fewer
    than 2 entries, ``y_true`` not N entries, or ``weight`` neither N nor 0. Labels outside
    [0, C) are reported in ``status[1]``, never used as an index.
    """
    status, scores, y_true, weight = (L.as_device(a) for a in (status, scores, y_true, weight))
    n, c = scores.shape
    sizes.top_k(scores, status, y_true, weight)
    blocks = max(1, min(L.PARTIALS, L.MAX_BLOCKS, -(-n // (L.THREADS * ROWS))))
    parts = L._scratch("top_k_parts", L.PARTIALS, np.float64, stream)
    first_bad = L.first_index(n, stream, "top_k_first")
    _top_k_kernel[blocks, L.THREADS, stream](parts, first_bad, scores, y_true, weight, int(k))
    _top_k_finish_kernel[1, L.THREADS, stream](status, parts, blocks, first_bad, n)
