"""Softmax cross-entropy on the GPU: loss, gradient and (optionally) the row argmax in one pass.

Same formulas as the CPU kernel. For a row x with label y, class weights w (all 1 when
unweighted), W = sum_c w_c, smoothing eps and C classes, with lse = log sum_c exp(x_c):

    l       = (1 - eps) w_y (lse - x_y) + (eps / C) sum_c w_c (lse - x_c)
    dl/dx_j = p_j [(1 - eps) w_y + eps W / C] - (1 - eps) w_y [j == y] - (eps / C) w_j

with lse - x_c evaluated as (m - x_c) + log sum_c exp(x_c - m), m the row max: two terms >= 0,
so logits of 1e4 cancel no digits (as in the CPU kernel).

A mean divides the loss and the gradient by D = sum of w_y over rows whose label is not
``ignore_index`` (all rows ignored: loss 0; D == 0 otherwise: NaN). It divides, never
multiplies by 1/D: a subnormal D (tiny class weights) would make 1/D overflow.

Layout: a group of G threads (a power of two) owns a row; a block holds T / G groups and walks
the rows grid-stride. Per row, two passes:

1. the row is read from DRAM for its max (first NaN, else first maximum: the argmax) and, online,
   sum_c exp(x_c - m): each thread keeps the sum relative to its own running max and rescales
   it (in float64) when that max rises; the group then takes each thread's sum to the row max;
2. the row is read again (from L1/L2 for any realistic C) to write the gradient, and with
   smoothing to sum w_c (m - x_c) (two terms >= 0, so it is summed here, once m is known,
   rather than as m W - sum w_c x_c, which cancels).

A thread loads 8 of its columns in pass 1 and 4 (U) in pass 2 before it uses any of them (c,
c + G, c + 2G, ...), so that many loads are in flight per thread. Each reduction is a
shared-memory tree within the group (no warp shuffles, so the simulator runs the same code).
x_y and everything else the loss needs are read in pass 1, before any thread writes, so
``grad`` may be ``logits`` itself; a thread only ever writes the columns it alone read. Memory
sees the row read once from DRAM and the gradient written once: 8 B/logit in float32.

D and W come from a small pre-pass over the labels and the weights whose result stays on the
device (``buf[DIVISOR]``, ``buf[WTOTAL]``), read by the main kernel: no host round trip.
"""

import math

import numpy as np
from numba import cuda, float64, int64

from .. import sizes
from . import _launch as L
from ._launch import SHARED

NONE, SUM, MEAN = 0, 1, 2


# Pre-pass over the labels (and the class weights): per-block float64 partials of D (sum of
# w[y] over kept rows), of the kept-row count, of W (sum of the class weights) and of the first
# label outside [0, C) that is not ignore_index, for the finishing kernel below. One pass does
# the label check and the mean's divisor: 2 launches where they took 5.
@cuda.jit
def _prepass_kernel(buf, labels, weight, ignore_index, n_classes, need_denom, need_wsum, check):
    sh = cuda.shared.array(SHARED, float64)
    weighted = weight.shape[0] != 0
    n = labels.shape[0]
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    stride = int64(cuda.gridDim.x) * cuda.blockDim.x
    d = 0.0
    kept = 0.0
    first = float64(n)  # the thread's first bad label (its smallest: its indices rise)
    if need_denom or check:
        for i in range(start, n, stride):
            y = labels[i]
            if y != ignore_index:
                if y >= 0 and y < n_classes:  # never index the weights with a bad label
                    kept += 1.0
                    d += float64(weight[y]) if weighted else 1.0
                elif first == n:
                    first = float64(i)
    wsum = 0.0
    if need_wsum:
        for j in range(start, weight.shape[0], stride):
            wsum += float64(weight[j])
    b = cuda.blockIdx.x
    d = L.block_sum(sh, d)
    kept = L.block_sum(sh, kept)
    wsum = L.block_sum(sh, wsum)
    first = L.block_min(sh, first)
    if cuda.threadIdx.x == 0:
        buf[L.DENOM_OFF + b] = d
        buf[L.KEPT_OFF + b] = kept
        buf[L.WSUM_OFF + b] = wsum
        buf[L.FIRST_OFF + b] = first


# One block: adds the pre-pass partials in a fixed order and leaves the mean's divisor D and W
# on the device; with a label check, writes the first bad label into ``record`` (device-visible
# host memory: the value first, then, after a system fence, the index the host polls).
@cuda.jit
def _prepass_finish_kernel(buf, nparts, record, labels):
    sh = cuda.shared.array(SHARED, float64)
    n = labels.shape[0]
    d = 0.0
    kept = 0.0
    wsum = 0.0
    first = float64(n)
    for k in range(cuda.threadIdx.x, nparts, cuda.blockDim.x):
        d += buf[L.DENOM_OFF + k]
        kept += buf[L.KEPT_OFF + k]
        wsum += buf[L.WSUM_OFF + k]
        first = min(first, buf[L.FIRST_OFF + k])
    d = L.block_sum(sh, d)
    kept = L.block_sum(sh, kept)
    wsum = L.block_sum(sh, wsum)
    first = L.block_min(sh, first)
    if cuda.threadIdx.x == 0:
        # All rows ignored: 0 (documented; PyTorch gives NaN). Zero total weight: 0/0 = NaN.
        if kept == 0.0:
            buf[L.DIVISOR] = math.inf
        elif d != 0.0:
            buf[L.DIVISOR] = d
        else:
            buf[L.DIVISOR] = math.nan
        buf[L.WTOTAL] = wsum
        # For the main kernel, in device memory: its blocks read this, not the host's record.
        buf[L.BAD_LABEL] = 1.0 if first < n else 0.0
        if record.shape[0] != 0:
            i = int64(first)
            if i < n:  # labels[i] is read only for a real index
                record[1] = int64(labels[i])
                cuda.threadfence_system()
                record[0] = i
            else:
                record[1] = 0
                cuda.threadfence_system()
                record[0] = -1


@cuda.jit(device=True)
def _better(v, j, best_v, best_j):
    """Does candidate (v, j) beat (best_v, best_j) for the argmax? NumPy's and PyTorch's rule:
    the first NaN wins, else the first maximum. ``best_j < 0`` means no candidate yet."""
    if best_j < 0:
        return j >= 0
    if j < 0:
        return False
    if v != v:
        return best_v == best_v or j < best_j
    if best_v != best_v:
        return False
    return v > best_v or (v == best_v and j < best_j)


#: Columns a thread loads in pass 2 before it uses any of them (pass 1 loads 2U; the unrolled
#: loop bodies and ``_loads`` are written for 4). A loop that loads one logit and then works on
#: it keeps one load in flight per thread: with 16 resident warps per SM (two 256-thread blocks
#: at 104-116 registers per thread, ptxas for sm_90) that is ~2 KB per SM against the ~15-20 KB
#: an H100 needs in flight to reach its bandwidth (bytes/s times latency); the kernel that did
#: so ran at 7-12x its floor on an H200 (bench/NOTES.md).
U = 4


@cuda.jit(device=True)
def _loads(x, j0, j1, j2, j3, c):
    """x[j0] .. x[j3], the ones past ``c`` as 0 (unused): four independent loads in flight."""
    zero = x.dtype.type(0.0)
    return (x[j0] if j0 < c else zero, x[j1] if j1 < c else zero,
            x[j2] if j2 < c else zero, x[j3] if j3 < c else zero)


@cuda.jit(device=True)
def _take(v, best_v, best_j):
    """Within one thread's columns, visited in increasing order: does v beat the best so far?
    The first NaN wins, else the first maximum (a later equal value does not)."""
    return best_j < 0 or (best_v == best_v and (v != v or v > best_v))


@cuda.jit(device=True)
def _visit(v, j, best_v, best_j, s):
    """Pass 1 for one column, in the thread's (increasing) column order: the argmax so far
    (best_v, best_j; see _take) and s = sum of exp(x - best_v) over the columns so far, in float64
    (online softmax: when the max rises, s is rescaled in float64 before the new 1 is added).
    A -inf column adds 0 (and nothing when the max is -inf too, where exp would be NaN)."""
    if _take(v, best_v, best_j):
        if best_j < 0:
            return v, j, 1.0
        return v, j, s * math.exp(float64(best_v) - float64(v)) + 1.0
    if v != -math.inf:
        s += float64(math.exp(v - best_v))
    return best_v, best_j, s


@cuda.jit(device=True)
def _group_sum(sh, tid, lane, group, value):
    """Sum of ``value`` over the ``group`` threads that own a row (a shared-memory tree of
    fixed shape), returned to each of them. Every thread of the block must call it."""
    sh[tid] = value
    cuda.syncthreads()
    step = group // 2
    while step > 0:
        if lane < step:
            sh[tid] += sh[tid + step]
        cuda.syncthreads()
        step //= 2
    return sh[tid - lane]


@cuda.jit(device=True)
def _poison(grad, loss, pred, buf, reduction):
    """A label is out of range (the pre-pass's check; the API raises later): the block's share
    of the loss and the gradient become NaN, so that nothing downstream (a guarded step) takes
    them for numbers, and pred -1."""
    n, c = grad.shape
    first = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    stride = int64(cuda.gridDim.x) * cuda.blockDim.x
    for k in range(first, n * c, stride):
        grad[k // c, k % c] = math.nan
    for row in range(first, n, stride):
        if reduction == NONE:
            loss[row] = math.nan
        if pred.shape[0] != 0:
            pred[row] = -1
    if reduction != NONE and cuda.threadIdx.x == 0:
        buf[L.LOSS_OFF + cuda.blockIdx.x] = math.nan


@cuda.jit(device=True)
def _divisor_and_wtotal(buf, reduction, eps, weighted, c):
    """The mean's divisor D (1 otherwise) and W = sum of the class weights (C unweighted), as
    the pre-pass left them on the device."""
    div = buf[L.DIVISOR] if reduction == MEAN else 1.0
    w_total = float64(c)
    if eps != 0.0 and weighted:
        w_total = buf[L.WTOTAL]
    return div, w_total


@cuda.jit(device=True)
def _row_label(labels, row, ignore_index):
    """(row < n, its label as int64 (ignore_index past n), whether the row counts)."""
    active = row < labels.shape[0]
    y = int64(ignore_index)
    if active:
        y = int64(labels[row])
    return active, y, active and y != ignore_index


@cuda.jit(device=True)
def _in_range(y, c):
    """Is label ``y`` a column of the row? A kept row whose label is not (an unchecked call:
    the launcher cannot see labels without a host round trip) reads neither x_y nor w_y, and
    its softmax sum is made NaN, so its loss and whole gradient row are NaN."""
    return y >= 0 and y < c


@cuda.jit(device=True)
def _row_loss(s, m64, xy, wy, eps, c, w_total, smooth):
    """A kept row's loss (1 - eps) w_y (lse - x_y) + (eps / C) sum_c w_c (lse - x_c), from
    s = sum_c exp(x_c - m), m, x_y, w_y, W and smooth = sum_c w_c (m - x_c)."""
    log_s = math.log(s)
    loss = (1.0 - eps) * wy * ((m64 - xy) + log_s)
    if eps != 0.0:
        loss += eps / c * (w_total * log_s + smooth)
    return loss


@cuda.jit(device=True)
def _row_outputs(loss, pred, row, best, l_row, reduction, acc):
    """A row's argmax and loss written (one thread per row); returns acc plus the loss when
    the loss is reduced instead."""
    if pred.shape[0] != 0:
        pred[row] = best
    if reduction == NONE:
        loss[row] = l_row
        return acc
    return acc + l_row


@cuda.jit(device=True)
def _block_partial(sh, buf, acc, reduction):
    """For a reduced loss, the block's sum of its threads' ``acc`` into its scratch slot (every
    thread of the block calls it)."""
    if reduction != NONE:
        total = L.block_sum(sh, acc)
        if cuda.threadIdx.x == 0:
            buf[L.LOSS_OFF + cuda.blockIdx.x] = total


@cuda.jit(device=True)
def _smooth_term(v, j, m64, weight, weighted):
    """w_j (m - x_j) in float64: the smoothing sum's term (>= 0, no cancellation)."""
    d = m64 - float64(v)
    return float64(weight[j]) * d if weighted else d


@cuda.jit(device=True)
def _grad_term(v, j, m, a, b, gy, y, eps, weight, weighted, div, c, grad_scale):
    """The gradient of one logit v = x_j (pass 2)."""
    gj = math.exp(v - m) * a
    if eps != 0.0:
        # Weighted: w_j / D first, as on the CPU (eps / (C D) overflows for a subnormal D where
        # w_j / D is finite).
        if weighted:
            gj = gj - weight.dtype.type(float64(weight[j]) / div * (eps / c) * grad_scale)
        else:
            gj = gj - b
    if j == y:
        gj = gj - gy
    return gj


#: Tuning knobs of the main kernel, read at launch (bench/gpu_bench.py times variants of them on a
#: real GPU). Columns per thread set the group size (_geometry). A register cap (None: ptxas
#: decides, 116 on sm_90, so 2 blocks of 256 per SM) of 80 fits 3 blocks but spills ~100 B.
#: On an H100 (2026-11-26, queued calls, F.cross_entropy 3.12 and 0.68 ms) 8 columns and no cap
#: took 2.44 ms on (8192, 32000) and 1.07 ms on (65536, 1000); 16 and 80: 2.00 and 1.13 (0.75
#: with 1024-block grids); 16 and 64: 1.80 and 0.69; 32 and 80: 1.94 and 0.66, the one setting
#: faster than PyTorch on both (bench/NOTES.md, "GPU on an H100").
COLUMNS_PER_THREAD = 32
MAX_REGISTERS = 80
#: Rows that fit in the registers of up to 1024 threads (C <= 32768 in float32) go to the kernel
#: of cross_entropy_rows.py: one read of the row and no second pass. Off until it is timed on a
#: GPU against this kernel (bench/gpu_bench.py times both; it has run in the simulator only).
ROWS_IN_REGISTERS = False


def _make_kernel(block, max_registers=None):
    """The main kernel for blocks of ``block`` threads (its shared arrays are sized by it)."""
    # The simulator's jit takes no register cap (and has no registers).
    jit = cuda.jit if max_registers is None or L.SIMULATOR else cuda.jit(
        max_registers=max_registers)

    @jit
    def kernel(grad, loss, pred, buf, logits, labels, weight, ignore_index, eps, grad_scale,
               reduction, group, checked):
        sh_v = cuda.shared.array(block, float64)  # argmax candidate value (the row max)
        sh_j = cuda.shared.array(block, int64)  # argmax candidate column
        sh_s = cuda.shared.array(block, float64)  # sum_c exp(x_c - m); at the end, loss partials
        sh_w = cuda.shared.array(block, float64)  # sum_c w_c (m - x_c)
        n = logits.shape[0]
        c = logits.shape[1]
        dt = logits.dtype.type
        tid = cuda.threadIdx.x
        lane = tid % group
        lead = tid - lane  # the group's first thread: its slot holds each reduced value
        rows_per_block = cuda.blockDim.x // group
        weighted = weight.shape[0] != 0
        div, w_total = _divisor_and_wtotal(buf, reduction, eps, weighted, c)
        row_stride = int64(cuda.gridDim.x) * rows_per_block
        span = U * group
        if checked and buf[L.BAD_LABEL] != 0.0:
            _poison(grad, loss, pred, buf, reduction)  # the whole block, before any barrier
            return
        acc = 0.0
        # Every thread runs the same number of iterations (rows past n idle through them), so
        # all of them reach every barrier.
        for first in range(int64(cuda.blockIdx.x) * rows_per_block, n, row_stride):
            row = first + tid // group
            active, y, keep = _row_label(labels, row, ignore_index)
            labelled = _in_range(y, c)

            # Pass 1, the one that reads the row from DRAM: the argmax and its value (the row
            # max), and the softmax sum online (see _visit). Also x_y and w_y, before any write.
            # 2U loads in flight per thread: one round for rows of up to 8 G columns.
            best_v = dt(0.0)
            best_j = int64(-1)
            s = 0.0
            xy = 0.0
            wy = 1.0
            x = logits[row if active else 0]
            if active:
                for base in range(lane, c, 2 * span):
                    j1, j2, j3 = base + group, base + 2 * group, base + 3 * group
                    j4, j5, j6, j7 = base + span, j1 + span, j2 + span, j3 + span
                    v0, v1, v2, v3 = _loads(x, base, j1, j2, j3, c)
                    v4, v5, v6, v7 = _loads(x, j4, j5, j6, j7, c)
                    best_v, best_j, s = _visit(v0, base, best_v, best_j, s)
                    if j1 < c:
                        best_v, best_j, s = _visit(v1, j1, best_v, best_j, s)
                    if j2 < c:
                        best_v, best_j, s = _visit(v2, j2, best_v, best_j, s)
                    if j3 < c:
                        best_v, best_j, s = _visit(v3, j3, best_v, best_j, s)
                    if j4 < c:
                        best_v, best_j, s = _visit(v4, j4, best_v, best_j, s)
                    if j5 < c:
                        best_v, best_j, s = _visit(v5, j5, best_v, best_j, s)
                    if j6 < c:
                        best_v, best_j, s = _visit(v6, j6, best_v, best_j, s)
                    if j7 < c:
                        best_v, best_j, s = _visit(v7, j7, best_v, best_j, s)
                if keep and labelled:
                    xy = float64(x[y])
                    if weighted:
                        wy = float64(weight[y])
            sh_v[tid] = float64(best_v)
            sh_j[tid] = best_j
            cuda.syncthreads()
            step = group // 2
            while step > 0:
                if lane < step and _better(sh_v[tid + step], sh_j[tid + step], sh_v[tid],
                                           sh_j[tid]):
                    sh_v[tid] = sh_v[tid + step]
                    sh_j[tid] = sh_j[tid + step]
                cuda.syncthreads()
                step //= 2
            # The row max is the argmax's value (NaN if the row holds one). Subtracting it keeps
            # exp <= 1: logits of +-1e4 are fine.
            m = dt(sh_v[lead])
            best = sh_j[lead]

            # The softmax denominator: each thread's sum, taken from its own max to the row's
            # (float64), added over the group. A thread whose columns are all -inf adds 0.
            part = 0.0
            if best_j >= 0 and best_v != -math.inf:
                part = s * math.exp(float64(best_v) - float64(m))
            s = _group_sum(sh_s, tid, lane, group, part)
            if not float64(m) - float64(m) == 0.0 or not labelled:
                # A NaN, +inf or all -inf row: x - m is NaN somewhere, and every output of the
                # row is NaN, as on the CPU. Also a kept row whose label is outside [0, C)
                # (_in_range; ignored rows never read s).
                s = math.nan

            # Pass 2 (the row again, from L1/L2): dl/dx_j = e_j * a - b w_j - [j == y] (1 - eps)
            # w_y gf, and with smoothing sum_c w_c (m - x_c) in float64. All U loads come before
            # the first store: with grad = logits, a store never precedes a load of the same
            # column, and each column is read and written by its one thread.
            smooth = 0.0
            if active:
                g = grad[row]
                if keep:
                    a = dt(((1.0 - eps) * wy + eps * w_total / c) / div * grad_scale / s)
                    b = dt(eps / c / div * grad_scale)
                    gy = dt((1.0 - eps) * wy / div * grad_scale)
                    m64 = float64(m)
                    for base in range(lane, c, span):
                        j1, j2, j3 = base + group, base + 2 * group, base + 3 * group
                        v0, v1, v2, v3 = _loads(x, base, j1, j2, j3, c)
                        if eps != 0.0:
                            smooth += _smooth_term(v0, base, m64, weight, weighted)
                            if j1 < c:
                                smooth += _smooth_term(v1, j1, m64, weight, weighted)
                            if j2 < c:
                                smooth += _smooth_term(v2, j2, m64, weight, weighted)
                            if j3 < c:
                                smooth += _smooth_term(v3, j3, m64, weight, weighted)
                        g[base] = _grad_term(v0, base, m, a, b, gy, y, eps, weight, weighted,
                                             div, c, grad_scale)
                        if j1 < c:
                            g[j1] = _grad_term(v1, j1, m, a, b, gy, y, eps, weight, weighted,
                                               div, c, grad_scale)
                        if j2 < c:
                            g[j2] = _grad_term(v2, j2, m, a, b, gy, y, eps, weight, weighted,
                                               div, c, grad_scale)
                        if j3 < c:
                            g[j3] = _grad_term(v3, j3, m, a, b, gy, y, eps, weight, weighted,
                                               div, c, grad_scale)
                else:
                    for j in range(lane, c, group):
                        g[j] = dt(0.0)
            if eps != 0.0:  # the same for every thread, so all of them reach the barriers
                smooth = _group_sum(sh_w, tid, lane, group, smooth)
            if active and lane == 0:
                l_row = _row_loss(s, float64(m), xy, wy, eps, c, w_total, smooth) if keep else 0.0
                acc = _row_outputs(loss, pred, row, best, l_row, reduction, acc)
        _block_partial(sh_s, buf, acc, reduction)

    return kernel


_KERNELS = {}
_NO_RECORD = []


def _no_record():
    """An empty record: no label check."""
    if not _NO_RECORD:
        _NO_RECORD.append(cuda.device_array(0, dtype=np.int64))
    return _NO_RECORD[0]


def _geometry(c):
    """(threads per block, threads per row) for rows of ``c`` classes, both powers of two.

    About COLUMNS_PER_THREAD (32) columns per thread, 4 to 256 threads per row, 256 threads per
    block (32 in the simulator), so narrow rows share a block. Not 1024: the kernel's float64
    registers do not fit 1024 threads per block (CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES on an H200).
    """
    # Tried on an H200: warp-shuffle reductions with one warp per row up to C = 1024 were
    # slower here (134 registers per thread against 85, so fewer resident warps).
    if L.SIMULATOR:
        lo, hi, min_block = 4, 32, 32
    else:
        lo, hi, min_block = 4, 256, 256
    group = lo
    while group < hi and group * COLUMNS_PER_THREAD < c:
        group *= 2
    return max(min_block, group), group


def _row_geometry(c, dtype, smoothing, weighted):
    """(kernel, threads per block, threads per row) of the register kernel for rows of ``c``
    classes, or None when a row does not fit in it."""
    from numba import from_dtype

    from . import cross_entropy_rows as R  # it imports this module's device functions

    geo = R.geometry(c, dtype.itemsize)
    if geo is None:
        return None
    block, group, k = geo
    return R.kernel_for(block, group, k, from_dtype(dtype), smoothing, weighted), block, group


def cross_entropy_fwd_bwd(grad, loss, pred, logits, labels, weight, ignore_index,
                          label_smoothing, grad_scale, reduction, check=None, stream=0):
    """Softmax cross-entropy over rows, with its gradient, on the GPU (launches without sync).

    Parameters
    ----------
    grad : (N, C) float32 or float64 device array, written
        ``grad_scale * dloss/dlogits``; may be ``logits`` itself (in place).
    loss : (N,) or (1,) device array, same dtype, written
        Per-row losses (``reduction == NONE``) or the reduced loss in ``loss[0]``, computed on
        the device.
    pred : (N,) or (0,) int64 device array, written
        Row argmax (first NaN, else first maximum) when it has N entries; skipped when empty.
    logits : (N, C) float32 or float64 device array, read
    labels : (N,) int32 or int64 device array, read
        Class indices in [0, C) or ``ignore_index``. Never used as an index unchecked: each
        row compares its label with C on the device, and a row with any other label gets a
        NaN loss and gradient (with ``check``, the whole call is NaN and the label reported).
    weight : (C,) or (0,) device array, same dtype as logits, read
        Class weights; empty means unweighted.
    ignore_index : int
    label_smoothing : float in [0, 1]
    grad_scale : float
    reduction : int
        ``NONE`` (0), ``SUM`` (1) or ``MEAN`` (2).
    check : (2,) int64 device-visible array (e.g. mapped host memory), optional, written
        Check the labels on the device, in the pre-pass, and write what ``check_labels``
        would: ``[i, labels[i]]`` for the first bad label, else ``[-1, 0]``, ``check[0]``
        last. If a label is bad, the loss and the gradient are NaN and ``pred`` is -1. (The
        CPU kernel has no such argument: it raises ``ValueError`` for a bad label.)
    stream : numba stream or 0

    Raises ``ValueError``, before launching, if C is 0 or an array's shape is not the one above
    (shapes only: no sync).
    """
    grad, loss, pred, logits, labels, weight = map(
        L.as_device, (grad, loss, pred, logits, labels, weight))
    n, c = logits.shape
    eps = float(label_smoothing)
    reduction = int(reduction)
    sizes.cross_entropy(logits, grad, loss, pred, labels, weight, reduction == NONE)
    if check is not None and check.shape[0] < 2:
        raise ValueError("check must hold at least 2 elements")
    ignore_index = int(ignore_index)
    buf = L.scratch(stream)
    need_denom = reduction == MEAN
    need_wsum = weight.shape[0] != 0 and eps != 0.0
    record = _no_record() if check is None else L.as_device(check)
    if need_denom or need_wsum or check is not None:
        work = max(n if need_denom or check is not None else 0, c if need_wsum else 0)
        blocks = L.grid(work, L.THREADS)
        _prepass_kernel[blocks, L.THREADS, stream](buf, labels, weight, ignore_index, c,
                                                   need_denom, need_wsum, check is not None)
        _prepass_finish_kernel[1, L.THREADS, stream](buf, blocks, record, labels)
    args = (grad, loss, pred, buf, logits, labels, weight, ignore_index, eps, float(grad_scale),
            reduction)
    rows = None
    if ROWS_IN_REGISTERS:
        rows = _row_geometry(c, logits.dtype, eps != 0.0, weight.shape[0] != 0)
    if rows is not None:
        kernel, block, group = rows
        args += (check is not None,)
    else:
        block, group = _geometry(c)
        key = (block, MAX_REGISTERS)
        kernel = _KERNELS.get(key)
        if kernel is None:
            kernel = _KERNELS[key] = _make_kernel(block, MAX_REGISTERS)
        args += (group, check is not None)
    blocks = L.grid(n, block // group)
    kernel[blocks, block, stream](*args)
    if reduction != NONE:
        L.sum_partials(loss, buf, blocks, 1.0, stream, use_divisor=reduction == MEAN)
