"""Softmax cross-entropy on the GPU with each row held in registers: one read, one write.

The formulas, the argument conventions and the results are those of ``cross_entropy.py`` (its
docstring derives them); only the schedule differs. There a group of threads streams its row
twice (an online max and sum, then the gradient) and pays, per row, a chain of dependent load
rounds and two block-wide barrier trees. Here a group of G threads (a power of two) owns a row
of C <= G K columns and each thread loads its K columns (c, c + G, ..., K a compile-time
constant) into registers at once, K loads in flight, before it uses any of them. Then:

1. the argmax (first NaN, else first maximum) and with it the row max m, over the group;
2. sum_c exp(x_c - m) and, with smoothing, sum_c w_c (m - x_c) (two terms >= 0: no
   cancellation), float64, added over the group in one tree;
3. the gradient from the registers, each thread writing the columns it alone read.

x_y is read before the first reduction, so every load of the row precedes every store and
``grad`` may be ``logits`` itself. DRAM sees the row read once and the gradient written once
(8 B/logit in float32), with no second pass through L1/L2 and no rescaling of a running sum.

K is 128 bytes of the row per thread: 32 float32 or 16 float64 (ptxas for sm_90 keeps them in
registers: no stack frame). Groups of up to 32 threads lie in one warp and reduce through shared
memory with warp barriers only; larger groups (up to 1024: C <= 32768 in float32) add a block
barrier per tree step. The simulator has no warp barrier, so there every barrier is a block
barrier (stronger; the same code otherwise). Rows too wide for 1024 K go to ``cross_entropy``'s
streaming kernel.
"""

import math

from numba import cuda, float64, int64

from . import _launch as L
from .cross_entropy import (
    _better,
    _block_partial,
    _divisor_and_wtotal,
    _in_range,
    _poison,
    _row_label,
    _row_loss,
    _row_outputs,
    _smooth_term,
    _take,
)

#: Bytes of a row each thread holds in registers: K = ROW_BYTES / itemsize values.
ROW_BYTES = 128
#: Register cap (None: ptxas decides), lowered where a block would not fit: an SM (and a block)
#: has 65536 registers, so 1024-thread blocks get at most 64 and 512-thread blocks 128.
MAX_REGISTERS = 80


@cuda.jit(device=True)
def _warp_barrier():
    cuda.syncwarp(0xFFFFFFFF)


@cuda.jit(device=True)
def _block_barrier():
    cuda.syncthreads()


def _make_row_kernel(block, group, k, dtype, smoothing, weighted, max_registers):
    """The kernel for ``block``-thread blocks, ``group`` threads and ``k`` values of numba type
    ``dtype`` per thread, with or without label smoothing and class weights (compile-time: the
    unrolled loops of the plain kernel carry no branch for them, and fewer live registers)."""
    jit = cuda.jit if max_registers is None or L.SIMULATOR else cuda.jit(
        max_registers=max_registers)
    # A group within one warp synchronizes the warp only; the simulator has no warp barrier.
    barrier = _warp_barrier if group <= 32 and not L.SIMULATOR else _block_barrier

    @cuda.jit(device=True)
    def argmax_over_group(sh_v, sh_j, tid, lane, best_v, best_j):
        barrier()  # the previous row's readers of the group's slot are done
        sh_v[tid] = float64(best_v)
        sh_j[tid] = best_j
        barrier()
        step = group // 2
        while step > 0:
            if lane < step and _better(sh_v[tid + step], sh_j[tid + step], sh_v[tid],
                                       sh_j[tid]):
                sh_v[tid] = sh_v[tid + step]
                sh_j[tid] = sh_j[tid + step]
            barrier()
            step //= 2
        return sh_v[tid - lane], sh_j[tid - lane]

    @cuda.jit(device=True)
    def sums_over_group(sh_s, sh_w, tid, lane, s, w):
        barrier()
        sh_s[tid] = s
        sh_w[tid] = w
        barrier()
        step = group // 2
        while step > 0:
            if lane < step:
                sh_s[tid] += sh_s[tid + step]
                sh_w[tid] += sh_w[tid + step]
            barrier()
            step //= 2
        return sh_s[tid - lane], sh_w[tid - lane]

    @jit
    def kernel(grad, loss, pred, buf, logits, labels, weight, ignore_index, eps, grad_scale,
               reduction, checked):
        sh_v = cuda.shared.array(block, float64)
        sh_j = cuda.shared.array(block, int64)
        sh_s = cuda.shared.array(block, float64)
        sh_w = cuda.shared.array(block, float64)
        vals = cuda.local.array(k, dtype)
        n = logits.shape[0]
        c = logits.shape[1]
        dt = logits.dtype.type
        tid = cuda.threadIdx.x
        lane = tid % group
        rows_per_block = cuda.blockDim.x // group
        div, w_total = _divisor_and_wtotal(buf, reduction, eps, weighted, c)
        row_stride = int64(cuda.gridDim.x) * rows_per_block
        if checked and buf[L.BAD_LABEL] != 0.0:
            _poison(grad, loss, pred, buf, reduction)  # the whole block, before any barrier
            return
        acc = 0.0
        # Every thread runs the same number of iterations (rows past n idle through them), so
        # all of them reach every barrier.
        for first in range(int64(cuda.blockIdx.x) * rows_per_block, n, row_stride):
            row = first + tid // group
            active, y, keep = _row_label(labels, row, ignore_index)
            x = logits[row if active else 0]
            # The thread's columns are lane + i G, i < nv. Indexing slices that start at the
            # lane with the constant i G (after unrolling) makes every address the slice's
            # base plus an immediate: nothing per column stays live but the value itself.
            nv = 0
            if active and lane < c:
                nv = min(k, (c - lane + group - 1) // group)
            xl = x[min(lane, c):]
            # All K loads before any use: K loads in flight per thread.
            for i in range(k):
                vals[i] = xl[i * group] if i < nv else dt(0.0)
            xy = 0.0
            wy = 1.0
            labelled = _in_range(y, c)
            if keep and labelled:
                if lane == 0:  # read before any thread stores (grad may be logits)
                    xy = float64(x[y])
                if weighted:  # every thread's gradient needs it
                    wy = float64(weight[y])
            best_v = dt(0.0)
            best_i = -1
            for i in range(k):
                if i < nv and _take(vals[i], best_v, best_i):
                    best_v = vals[i]
                    best_i = i
            best_j = int64(-1) if best_i < 0 else lane + best_i * group
            m64, best = argmax_over_group(sh_v, sh_j, tid, lane, best_v, best_j)
            # The row max is the argmax's value (NaN if the row holds one): exp(x - m) <= 1.
            m = dt(m64)
            # vals becomes exp(x - m): the registers that held the row hold the softmax's
            # numerators (so the compiler keeps no second copy across the reduction).
            s = 0.0
            smooth = 0.0
            wl = weight[min(lane, weight.shape[0]):]
            for i in range(k):
                if i < nv:
                    if smoothing:
                        smooth += _smooth_term(vals[i], i * group, m64, wl, weighted)
                    vals[i] = math.exp(vals[i] - m)
                    s += float64(vals[i])
            s, smooth = sums_over_group(sh_s, sh_w, tid, lane, s, smooth)
            if not m64 - m64 == 0.0 or not labelled:
                # A NaN, +inf or all -inf row: every output of the row is NaN, as on the CPU.
                # Also a kept row whose label is outside [0, C) (_in_range; ignored rows never
                # read s).
                s = math.nan
            if active:
                gl = grad[row][min(lane, c):]
                if keep:
                    # dl/dx_j = e_j a - b w_j - [j == y] gy: _grad_term of cross_entropy.py,
                    # its branches resolved at compile time
                    a = dt(((1.0 - eps) * wy + eps * w_total / c) / div * grad_scale / s)
                    b = dt(eps / c / div * grad_scale)
                    gy = dt((1.0 - eps) * wy / div * grad_scale)
                    y_at = y - lane  # the label's column as i G, in this thread's slice
                    for i in range(k):
                        if i < nv:
                            gj = vals[i] * a
                            if smoothing:
                                if weighted:
                                    gj = gj - dt(float64(wl[i * group]) / div * (eps / c)
                                                 * grad_scale)
                                else:
                                    gj = gj - b
                            if i * group == y_at:
                                gj = gj - gy
                            gl[i * group] = gj
                else:
                    for i in range(k):
                        if i < nv:
                            gl[i * group] = dt(0.0)
                if lane == 0:
                    l_row = _row_loss(s, m64, xy, wy, eps, c, w_total, smooth) if keep else 0.0
                    acc = _row_outputs(loss, pred, row, best, l_row, reduction, acc)
        _block_partial(sh_s, buf, acc, reduction)

    return kernel


_KERNELS = {}


def geometry(c, itemsize, row_bytes=None):
    """(threads per block, threads per row, values per thread) for rows of ``c`` classes, or
    None when a row does not fit in the registers of 1024 threads (64 in the simulator).

    The fewest threads per row (at least 4) whose K = ROW_BYTES / itemsize values hold it, and
    the fewest values per thread, a power of two, that then do (fewer kernels to compile).
    Blocks of 256 threads (32 in the simulator), so narrow rows share a block. ``row_bytes``
    stands in for ROW_BYTES.
    """
    k_max = (row_bytes or ROW_BYTES) // itemsize
    hi, min_block = (64, 32) if L.SIMULATOR else (1024, 256)
    group = 4
    while group < hi and group * k_max < c:
        group *= 2
    if group * k_max < c:
        return None
    k = 1
    while group * k < c:
        k *= 2
    return max(min_block, group), group, k


def register_cap(block, cap):
    """``cap`` (None: none), lowered so that a block of ``block`` threads fits an SM's 65536
    registers; None where that leaves no cap below the ISA's own 255."""
    fits = 65536 // block
    regs = min(cap or fits, fits)
    return None if regs >= 255 else regs


def kernel_for(block, group, k, dtype, smoothing, weighted):
    """The compiled-on-first-use kernel of a geometry, for logits of numba type ``dtype``."""
    regs = register_cap(block, MAX_REGISTERS)
    key = (block, group, k, dtype, smoothing, weighted, regs)
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = _make_row_kernel(block, group, k, dtype, smoothing, weighted,
                                                  regs)
    return kernel
