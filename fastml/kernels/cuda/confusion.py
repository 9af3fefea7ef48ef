"""Confusion counts on the GPU, the source of every classification metric.

Same results as ``fastml.kernels.cpu.confusion``: ``status[0]`` is the first sample with a label
outside [0, k) (else -1), ``status[1]`` the largest label; nothing is added to ``cm`` or ``seen``
unless every label is valid. Three launches on one stream, no host synchronization:

1. ``_init_kernel`` clears this stream's scratch (the batch table, the present-label flags, and
   ``ctl`` = [first bad index, largest label]).
2. A counting kernel. Out-of-range samples only lower ``ctl[0]`` (integer atomic min, so the
   smallest index wins whatever the timing) and every sample raises ``ctl[1]`` (atomic max);
   both are reduced in shared memory first, so each block makes one global atomic of each.
3. A finishing kernel adds the batch into ``cm`` and ``seen`` only if ``ctl[0]`` says no label
   was bad, and writes ``status``.

Counts (no weights): each block counts into a shared-memory table of k*k int32 cells with
shared atomics (a 64-bit one compiles, for sm_90, to 8 more instructions than a 32-bit one: as
many as a float add, which is a compare-and-swap loop there), then adds its
non-zero cells into one global int64 batch table with global atomics. A thread loads the labels
of four samples before it counts any. Integer addition is associative, so the counts are exact
and the same on every run. The labels present are the rows and columns of the batch table with
a count.

Weighted sums: float atomics would make the sums depend on timing, so there are none. The
samples go through each block in tiles of one per thread, in tile order; after a tile is staged
in shared memory (cell, weight), cell c is added to by thread ``c % T`` alone, which scans the
tile in sample order. Each block writes its whole table to its own slice of a partial buffer and
the finishing kernel adds the partials of each cell in block order. The block count depends on
N and k only, so weighted sums are bitwise the same on every run (they may differ from the
CPU's, which adds in another order, by a rounding). Presence is a separate flag per label, since
a sample of weight 0 still makes its label present.

Tables up to ``SHARED_CELLS`` cells (k <= 64, which covers the metrics API's first 64-label
table) live in shared memory. Larger tables fall back to global memory: counts go straight into
the batch table with global integer atomics, and the weighted partial tables are each block's
own slice of global scratch (the number of blocks is cut so that all slices fit
``PARTIAL_BUDGET`` cells).

2-D scores are read one row per thread: fine for tens of classes; rows thousands wide would want
a group of threads per row (as in ``cross_entropy``).
"""

import numpy as np
from numba import cuda, float64, int32, int64

from .. import sizes
from . import _launch as L

#: Cells of the shared-memory tables: k*k <= SHARED_CELLS uses them (32 KiB of int64/float64).
SHARED_CELLS = 4096
#: Largest k with shared-memory presence flags (k*k <= SHARED_CELLS implies k <= 64).
SHARED_LABELS = 64
#: Tile of the weighted kernel: one sample per thread (a literal, for the shared arrays).
TILE = L.THREADS
#: Samples per thread before the grid stops growing (each block's table costs k*k writes).
ITEMS = 16
#: Most blocks of a counting kernel (a fixed number: the weighted sums depend on it).
COUNT_BLOCKS = 2 if L.SIMULATOR else 512
#: Most float64 cells of the weighted partial tables in global memory (128 MiB).
PARTIAL_BUDGET = 1 << 24

_CTL_FIRST, _CTL_TOP = 0, 1


# --- predictions -------------------------------------------------------------------------------

@cuda.jit(device=True)
def _label(y_pred, i, threshold):
    return int64(y_pred[i])


@cuda.jit(device=True)
def _thresholded(y_pred, i, threshold):
    return int64(1) if y_pred[i] > threshold else int64(0)


@cuda.jit(device=True)
def _argmax(y_pred, i, threshold):
    # First NaN, else first maximum (the CPU kernel's rule).
    best = int64(0)
    best_v = y_pred[i, 0]
    if best_v != best_v:
        return best
    for j in range(1, y_pred.shape[1]):
        v = y_pred[i, j]
        if v != v:
            return int64(j)
        if v > best_v:
            best = int64(j)
            best_v = v
    return best


# --- shared pieces -----------------------------------------------------------------------------

@cuda.jit
def _init_kernel(ctl, table, flags, n):
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    stride = int64(cuda.gridDim.x) * cuda.blockDim.x
    for c in range(start, table.shape[0], stride):
        table[c] = 0
    for c in range(start, flags.shape[0], stride):
        flags[c] = 0
    if start == 0:
        ctl[_CTL_FIRST] = n
        ctl[_CTL_TOP] = 0


@cuda.jit(device=True)
def _publish_status(ctl, first, top, n):
    """Reduce each thread's (first bad index, largest label) over the block in shared memory,
    then one global atomic of each per block. Every thread must call it."""
    sh = cuda.shared.array(2, int64)
    t = cuda.threadIdx.x
    if t == 0:
        sh[0] = n
        sh[1] = 0
    cuda.syncthreads()
    if first < n:
        cuda.atomic.min(sh, 0, first)
    cuda.atomic.max(sh, 1, top)
    cuda.syncthreads()
    if t == 0:
        if sh[0] < n:
            cuda.atomic.min(ctl, _CTL_FIRST, sh[0])
        cuda.atomic.max(ctl, _CTL_TOP, sh[1])


@cuda.jit(device=True)
def _finish_status(status, ctl, n):
    if cuda.blockIdx.x == 0 and cuda.threadIdx.x == 0:
        first = ctl[_CTL_FIRST]
        status[1] = ctl[_CTL_TOP]
        # status may be host memory polled without a synchronization (fastml._device_errors):
        # the record is complete once status[0] changes.
        cuda.threadfence_system()
        status[0] = first if first < n else -1


# Counts: add the batch table into cm, and its non-empty rows and columns into seen.
@cuda.jit
def _finish_counts_kernel(cm, seen, status, batch, ctl, n):
    k = cm.shape[0]
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    stride = int64(cuda.gridDim.x) * cuda.blockDim.x
    if ctl[_CTL_FIRST] >= n:
        for c in range(start, k * k, stride):
            x = batch[c]
            if x != 0:
                cm[c // k, c % k] += x
        for j in range(start, k, stride):
            used = False
            for i in range(k):
                if batch[j * k + i] != 0 or batch[i * k + j] != 0:
                    used = True
            if used:
                seen[j] = True
    _finish_status(status, ctl, n)


# Weighted: cell c of the batch is the sum of the blocks' partials in block order.
@cuda.jit
def _finish_weighted_kernel(cm, seen, status, partial, present, ctl, nblocks, n):
    k = cm.shape[0]
    cells = k * k
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    stride = int64(cuda.gridDim.x) * cuda.blockDim.x
    if ctl[_CTL_FIRST] >= n:
        for c in range(start, cells, stride):
            s = 0.0
            for b in range(nblocks):
                s += partial[b * cells + c]
            cm[c // k, c % k] += s
        for j in range(start, k, stride):
            if present[j] != 0:
                seen[j] = True
    _finish_status(status, ctl, n)


# --- counting kernels, one set per prediction form ----------------------------------------------

def _make_kernels(pred_at):
    @cuda.jit(device=True)
    def tally(table, one, k, n, i, a, b, first, top):
        # One sample: its cell gets ``one`` (an integer atomic) if both labels are in range;
        # returns the thread's updated (first bad index, largest label).
        top = max(top, max(a, b))
        if a >= 0 and b >= 0 and a < k and b < k:
            cuda.atomic.add(table, a * k + b, one)
        elif first == n:  # indices rise, so the thread's first bad one is its smallest
            first = i
        return first, top

    @cuda.jit(device=True)
    def count_into(table, one, ctl, y_true, y_pred, threshold, k):
        # Grid-stride over tiles of four samples per thread (consecutive threads read
        # consecutive labels); all of a tile's labels are loaded before its first atomic, so
        # eight loads are in flight per thread. Integer atomics into ``table``, shared or global.
        n = y_true.shape[0]
        t = int64(cuda.blockDim.x)
        tile = 4 * t
        first = n
        top = int64(0)
        for j in range(int64(cuda.blockIdx.x) * tile + cuda.threadIdx.x, n,
                       int64(cuda.gridDim.x) * tile):
            if j + 3 * t < n:
                a0, a1, a2, a3 = (int64(y_true[j]), int64(y_true[j + t]),
                                  int64(y_true[j + 2 * t]), int64(y_true[j + 3 * t]))
                b0, b1, b2, b3 = (pred_at(y_pred, j, threshold),
                                  pred_at(y_pred, j + t, threshold),
                                  pred_at(y_pred, j + 2 * t, threshold),
                                  pred_at(y_pred, j + 3 * t, threshold))
                first, top = tally(table, one, k, n, j, a0, b0, first, top)
                first, top = tally(table, one, k, n, j + t, a1, b1, first, top)
                first, top = tally(table, one, k, n, j + 2 * t, a2, b2, first, top)
                first, top = tally(table, one, k, n, j + 3 * t, a3, b3, first, top)
            else:  # the last, partial tile
                for i in range(j, n, t):
                    first, top = tally(table, one, k, n, i, int64(y_true[i]),
                                       pred_at(y_pred, i, threshold), first, top)
        _publish_status(ctl, first, top, n)

    @cuda.jit
    def counts_shared(batch, ctl, y_true, y_pred, threshold, k):
        # int32 cells: a 32-bit shared atomic add is one instruction; a 64-bit one looks like
        # a compare-and-swap loop (see the module docstring), slow when a few cells are hot,
        # as a good classifier's diagonal is. The launcher only picks this kernel when no
        # block can count 2**31 samples.
        table = cuda.shared.array(SHARED_CELLS, int32)
        t = cuda.threadIdx.x
        cells = k * k
        for c in range(t, cells, cuda.blockDim.x):
            table[c] = 0
        cuda.syncthreads()
        count_into(table, int32(1), ctl, y_true, y_pred, threshold, k)
        cuda.syncthreads()
        for c in range(t, cells, cuda.blockDim.x):
            x = table[c]
            if x != 0:
                cuda.atomic.add(batch, c, int64(x))

    @cuda.jit
    def counts_global(batch, ctl, y_true, y_pred, threshold, k):
        count_into(batch, int64(1), ctl, y_true, y_pred, threshold, k)

    @cuda.jit(device=True)
    def sum_into(table, flags, s_cell, s_w, ctl, y_true, y_pred, weight, threshold, k):
        # Tiles of blockDim samples, in order; after staging, cell c is owned by thread c % T,
        # which adds the tile's weights for c in sample order: a fixed order, no atomics.
        n = y_true.shape[0]
        t = cuda.threadIdx.x
        size = cuda.blockDim.x
        mask = size - 1  # blockDim is a power of two: c & mask is c % size without a division
        cells = k * k
        first = n
        top = int64(0)
        # The same trip count for every thread of the block (syncthreads inside).
        for base in range(int64(cuda.blockIdx.x) * size, n, int64(cuda.gridDim.x) * size):
            i = base + t
            cell = int32(-1)
            if i < n:
                a = int64(y_true[i])
                b = pred_at(y_pred, i, threshold)
                top = max(top, max(a, b))
                if a >= 0 and b >= 0 and a < k and b < k:
                    cell = int32(a * k + b)
                    s_w[t] = float64(weight[i])
                    flags[a] = 1
                    flags[b] = 1
                elif first == n:
                    first = i
            s_cell[t] = cell
            cuda.syncthreads()
            if t < cells:
                for j in range(size):
                    c = s_cell[j]
                    if c >= 0 and (c & mask) == t:
                        table[c] += s_w[j]
            cuda.syncthreads()
        _publish_status(ctl, first, top, n)

    @cuda.jit
    def sums_shared(partial, present, ctl, y_true, y_pred, weight, threshold, k):
        table = cuda.shared.array(SHARED_CELLS, float64)
        flags = cuda.shared.array(SHARED_LABELS, int32)
        s_cell = cuda.shared.array(TILE, int32)
        s_w = cuda.shared.array(TILE, float64)
        t = cuda.threadIdx.x
        cells = k * k
        for c in range(t, cells, cuda.blockDim.x):
            table[c] = 0.0
        for c in range(t, k, cuda.blockDim.x):
            flags[c] = 0
        cuda.syncthreads()
        sum_into(table, flags, s_cell, s_w, ctl, y_true, y_pred, weight, threshold, k)
        cuda.syncthreads()
        out = int64(cuda.blockIdx.x) * cells
        for c in range(t, cells, cuda.blockDim.x):
            partial[out + c] = table[c]
        for c in range(t, k, cuda.blockDim.x):
            if flags[c] != 0:
                present[c] = 1

    @cuda.jit
    def sums_global(partial, present, ctl, y_true, y_pred, weight, threshold, k):
        # The block's table is its own slice of ``partial``; presence flags go straight to
        # ``present`` (every writer stores 1, so the races are harmless).
        s_cell = cuda.shared.array(TILE, int32)
        s_w = cuda.shared.array(TILE, float64)
        cells = k * k
        lo = int64(cuda.blockIdx.x) * cells
        table = partial[lo:lo + cells]
        for c in range(cuda.threadIdx.x, cells, cuda.blockDim.x):
            table[c] = 0.0
        cuda.syncthreads()
        sum_into(table, present, s_cell, s_w, ctl, y_true, y_pred, weight, threshold, k)

    return counts_shared, counts_global, sums_shared, sums_global


_KERNELS = {form: _make_kernels(pred_at) for form, pred_at in
            (("label", _label), ("thresholded", _thresholded), ("argmax", _argmax))}


# --- launchers ---------------------------------------------------------------------------------

def _buffer(kind, length, dtype, stream):
    # Stream-private scratch from _launch's cache, in power-of-two size classes so that a few
    # table sizes do not each keep a buffer; grown on demand, never freed per call.
    size = max(64, 1 << (max(1, length) - 1).bit_length())
    return L._scratch(f"confusion_{kind}_{size}", size, dtype, stream)[:length]


def _count_blocks(n):
    return max(1, min(COUNT_BLOCKS, -(-n // (L.THREADS * ITEMS))))


def _launch(form, cm, seen, status, y_true, y_pred, weight, threshold, stream):
    cm, seen, status, y_true, y_pred, weight = (
        L.as_device(a) for a in (cm, seen, status, y_true, y_pred, weight))
    counts_shared, counts_global, sums_shared, sums_global = _KERNELS[form]
    n = y_true.shape[0]
    k = cm.shape[0]
    # Shapes only (no sync); the kernels check each label against k themselves.
    sizes.confusion(cm, seen, status, y_true, y_pred, weight)
    cells = k * k
    shared = cells <= SHARED_CELLS
    blocks = _count_blocks(n)
    threshold = float(threshold)
    ctl = _buffer("ctl", 2, np.int64, stream)
    finish_blocks = L.grid(cells, L.THREADS)
    if weight.shape[0] == 0:
        batch = _buffer("batch", cells, np.int64, stream)
        _init_kernel[L.grid(cells, L.THREADS), L.THREADS, stream](ctl, batch, batch[:0], n)
        # The shared table's int32 cells hold at most a block's share of n: whole tiles of
        # four samples per thread, one per grid-stride step.
        tile = 4 * L.THREADS
        fits = -(-n // (blocks * tile)) * tile < 2**31
        kernel = counts_shared if shared and fits else counts_global
        kernel[blocks, L.THREADS, stream](batch, ctl, y_true, y_pred, threshold, k)
        _finish_counts_kernel[finish_blocks, L.THREADS, stream](cm, seen, status, batch, ctl, n)
        return
    if not shared:
        blocks = max(1, min(blocks, PARTIAL_BUDGET // cells))
    partial = _buffer("partial", blocks * cells, np.float64, stream)
    present = _buffer("present", k, np.int32, stream)
    _init_kernel[L.grid(k, L.THREADS), L.THREADS, stream](ctl, present[:0], present, n)
    kernel = sums_shared if shared else sums_global
    kernel[blocks, TILE, stream](partial, present, ctl, y_true, y_pred, weight, threshold, k)
    _finish_weighted_kernel[finish_blocks, L.THREADS, stream](cm, seen, status, partial, present,
                                                              ctl, blocks, n)


_DOC = """Add the confusion counts of one batch to ``cm`` ({what}); no host synchronization.

    Parameters
    ----------
    cm : (k, k) int64 or float64 device array, updated in place (only if every label is in
        [0, k)). ``cm[t, p]`` counts (or sums the weights of) samples of true class t predicted p.
    seen : (k,) bool device array, updated in place (likewise): labels present in the batch.
    status : (2,) int64 device array, written
        ``status[0]``: index of the first sample whose label is outside [0, k), else -1;
        ``status[1]``: the largest label seen.
    y_true : (n,) integer device array, read
    y_pred : {pred}, read
    weight : (n,) or (0,) numeric device array, read (summed in float64); empty: each sample 1
    threshold : float, for 1-D scores
    stream : numba stream or 0

    Raises ``ValueError``, before launching, if ``cm`` is not square, ``seen`` not k entries,
    ``status`` fewer than 2, ``y_pred`` or ``weight`` (unless empty) not n rows, or 2-D scores
    have no column. Each label is compared with k on the device before it indexes a table.
    """


def confusion_counts(cm, seen, status, y_true, y_pred, weight, threshold, stream=0):
    _launch("label", cm, seen, status, y_true, y_pred, weight, threshold, stream)


def confusion_counts_thresholded(cm, seen, status, y_true, y_pred, weight, threshold, stream=0):
    _launch("thresholded", cm, seen, status, y_true, y_pred, weight, threshold, stream)


def confusion_counts_argmax(cm, seen, status, y_true, y_pred, weight, threshold, stream=0):
    _launch("argmax", cm, seen, status, y_true, y_pred, weight, threshold, stream)


confusion_counts.__doc__ = _DOC.format(what="integer predictions",
                                       pred="(n,) integer device array of labels")
confusion_counts_thresholded.__doc__ = _DOC.format(
    what="1-D scores: class 1 where ``score > threshold``",
    pred="(n,) float32 or float64 device array of scores")
confusion_counts_argmax.__doc__ = _DOC.format(
    what="2-D scores: the row argmax, first NaN else first maximum",
    pred="(n, c) float32 or float64 device array of scores, C-contiguous")
