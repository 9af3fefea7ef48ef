"""Softmax cross-entropy: loss, gradient and (optionally) the row argmax in one pass over memory.

For a row x with label y, class weights w (all 1 when unweighted), W = sum_c w_c, smoothing eps
and C classes, with lse = log sum_c exp(x_c) and p = softmax(x):

    l     = (1 - eps) w_y (lse - x_y) + (eps / C) sum_c w_c (lse - x_c)
    dl/dx_j = p_j [(1 - eps) w_y + eps W / C] - (1 - eps) w_y [j == y] - (eps / C) w_j

which is PyTorch's ``cross_entropy`` with ``weight`` and ``label_smoothing``. A mean divides the
summed loss and the gradient by D = sum of w_y over rows whose label is not ``ignore_index``.

Each row is read twice (max, then exp) and its gradient written once more to scale it; a row of
C floats stays in L1/L2 between the passes, so memory sees one read of the logits and one write
of the gradient (8 B/logit in float32). The row max is subtracted before exp, so logits of +-1e4
do not overflow. ``grad`` may be ``logits`` itself: everything the loss needs from a row
(x_y, the max, the smoothing sum) is read before the row is overwritten.

Speed (float32, bench/NOTES.md): every per-element loop must vectorize, or the exp makes the
kernel compute-bound. Hence ``maximum`` for the row max (a NaN-aware ``max`` chain does not
vectorize without ``nnan``), a float32 exp for ``x - max <= 0`` only, exp and float64 sum in
separate loops, the scale in the input dtype, and one array name for both roles in place. While
it computes on a row, the kernel prefetches the next one, so memory and arithmetic overlap.
"""

import math

import numpy as np
from numba import prange

from .. import sizes
from ._jit import CHUNK, inline, parallel, serial
from ._math import fast_exp_nonpos, maximum, prefetch_l2
from .labels import first_bad_label

NONE, SUM, MEAN = 0, 1, 2


@serial
def _mean_denominator(labels, weight, ignore_index):
    """D = sum of w[y] over non-ignored rows and the number of those rows."""
    d = 0.0
    kept = 0
    for i in range(labels.shape[0]):
        y = labels[i]
        if y != ignore_index:
            kept += 1
            d += np.float64(weight[y]) if weight.shape[0] != 0 else 1.0
    return d, kept


@inline
def _row_max(x):
    """Max of a row, NaN if the row holds a NaN (``maximum`` vectorizes; see _math)."""
    m = x[0]
    for j in range(1, x.shape[0]):
        m = maximum(m, x[j])
    return m


@inline
def _row_argmax(x, m):
    """NumPy's and PyTorch's argmax rule, the first NaN, else the first maximum, given the row's
    ``m = _row_max(x)``: m is NaN exactly when the row holds a NaN, and ``x[j] == m`` also
    matches -0 against a +0 maximum, as ``>`` does not tell them apart."""
    if m != m:
        for j in range(x.shape[0]):
            if x[j] != x[j]:
                return j
    for j in range(x.shape[0]):
        if x[j] == m:
            return j
    return 0


@inline
def _exp_sum(g, x, m):
    """``g[j] = exp(x[j] - m)`` for a finite row max ``m``; returns ``sum_j g[j]`` in float64.

    Two loops, not one: fused, the float64 sum makes LLVM give the whole loop 4 lanes (one
    float64 vector) and halves the float32 exp's throughput; apart, the exp runs 8 lanes wide
    and the sum re-reads the row from L1. In place, pass the same array as ``g`` and ``x``: LLVM
    then sees one pointer. Under two names it checks at run time that they do not overlap, finds
    that they do, and runs the scalar loop (about 5x slower).
    """
    for j in range(x.shape[0]):
        g[j] = fast_exp_nonpos(x[j] - m)
    s = 0.0
    for j in range(g.shape[0]):
        s += np.float64(g[j])
    return s


@parallel
def cross_entropy_fwd_bwd(grad, loss, pred, logits, labels, weight, ignore_index,
                          label_smoothing, grad_scale, reduction):
    """Softmax cross-entropy over rows, with its gradient, in one pass.

    Parameters
    ----------
    grad : (N, C) float32 or float64, written
        ``grad_scale * dloss/dlogits``; may be ``logits`` itself (in place).
    loss : (N,) when ``reduction == NONE``, else (1,); same dtype, written
        Per-row losses (``reduction == NONE``) or the reduced loss in ``loss[0]``.
    pred : (N,) or (0,) int64, written
        Row argmax (first NaN, else first maximum) when it has N entries; skipped when empty.
    logits : (N, C) float32 or float64, read
    labels : (N,) int32 or int64, read
        Class indices in [0, C) or ``ignore_index``.
    weight : (C,) or (0,) same dtype as logits, read
        Class weights; empty means unweighted.
    ignore_index : int
    label_smoothing : float in [0, 1]
    grad_scale : float
    reduction : int
        ``NONE`` (0), ``SUM`` (1) or ``MEAN`` (2).

    Raises ``ValueError``, before writing anything, if C is 0, an array's shape is not the
    one above, or a label is outside [0, C) and not ``ignore_index`` (a label indexes the row,
    its gradient and the weights). The label check is one pass over the N labels, against the
    kernel's pass over N C logits.
    """
    n, c = logits.shape
    sizes.cross_entropy(logits, grad, loss, pred, labels, weight, reduction == NONE)
    if first_bad_label(labels, c, ignore_index) >= 0:
        raise ValueError("labels must be in [0, C) or ignore_index")
    dt = logits.dtype.type
    weighted = weight.shape[0] != 0
    eps = label_smoothing
    # A mean divides by D, never multiplies by 1/D: a subnormal D (tiny class weights) would
    # make 1/D overflow where w_y / D and the loss are finite.
    div = 1.0
    if reduction == MEAN:
        d, kept = _mean_denominator(labels, weight, ignore_index)
        # All rows ignored: 0 (documented; PyTorch gives NaN). Zero total weight: 0/0 = NaN.
        div = np.inf if kept == 0 else (d if d != 0.0 else np.nan)
    w_total = 0.0
    if weighted:
        for j in range(c):
            w_total += weight[j]
    else:
        w_total = float(c)
    # The smoothing gradient (eps / C) w_j / D per class, with w_j / D formed first: a subnormal
    # D makes eps / (C D) overflow where w_j / D is finite (a C = 1 row's gradient is then 0).
    smooth_w = np.empty(c if weighted and eps != 0.0 else 0, dtype=logits.dtype)
    for j in range(smooth_w.shape[0]):
        smooth_w[j] = np.float64(weight[j]) / div * (eps / c) * grad_scale
    in_place = grad.ctypes.data == logits.ctypes.data  # the API allows same or disjoint only
    line = max(1, 64 // logits.itemsize)  # elements per 64-byte cache line
    rows = max(1, CHUNK // c)  # fixed by C alone, so the sum order ignores the thread count
    nchunks = (n + rows - 1) // rows
    partial = np.empty(nchunks, dtype=np.float64)
    for chunk in prange(nchunks):
        s_chunk = 0.0
        for i in range(chunk * rows, min(n, (chunk + 1) * rows)):
            x = logits[i]
            g = grad[i]
            y = labels[i]
            if y == ignore_index:
                if pred.shape[0] != 0:
                    pred[i] = _row_argmax(x, _row_max(x))
                g[:] = 0
                if reduction == NONE:
                    loss[i] = 0
                continue
            m = _row_max(x)
            if pred.shape[0] != 0:
                pred[i] = _row_argmax(x, m)
            xy = np.float64(x[y])
            wy = np.float64(weight[y]) if weighted else 1.0
            if not abs(m) < np.inf:
                # A NaN (m is NaN), a +inf (inf - inf) or a row all -inf (-inf + inf) makes
                # every exp(x - m) or their sum NaN: the whole row is NaN, as in PyTorch.
                # Decided once here, so the exp below only sees x - m in [-inf, 0].
                g[:] = np.nan
                l_row = np.nan
            else:
                # The exp below is compute-bound and this row is in L1 by now: start loading
                # the next row into L2, which the hardware prefetcher alone does not do early
                # enough (1.63-1.80x -> 1.43-1.71x of the floor, bench/NOTES.md).
                if i + 1 < n:
                    nxt = logits[i + 1]
                    for j in range(0, c, line):
                        prefetch_l2(nxt, j)
                # sum_c w_c (m - x_c), read before an in-place grad overwrites the row
                smooth = 0.0
                if eps != 0.0:
                    if weighted:
                        for j in range(c):
                            smooth += np.float64(weight[j]) * (np.float64(m) - np.float64(x[j]))
                    else:
                        for j in range(c):
                            smooth += np.float64(m) - np.float64(x[j])
                if in_place:
                    s = _exp_sum(g, g, m)
                else:
                    s = _exp_sum(g, x, m)
                # lse - x_c as (m - x_c) + log s: two terms >= 0, so large logits cancel no
                # digits (m + log s - x_c loses |m| eps).
                log_s = math.log(s)
                l_row = (1.0 - eps) * wy * ((np.float64(m) - xy) + log_s)
                if eps != 0.0:
                    l_row += eps / c * (w_total * log_s + smooth)
                # dl/dx_j = e_j / s * a - b_j: one multiply (and a subtract with smoothing),
                # in the input dtype: a float64 product would halve the vector width for a
                # result rounded to float32 anyway (a rounded a costs at most 1 ulp).
                a = dt(((1.0 - eps) * wy + eps * w_total / c) / div * grad_scale / s)
                if eps == 0.0:
                    for j in range(c):
                        g[j] = g[j] * a
                else:
                    if weighted:
                        for j in range(c):
                            g[j] = g[j] * a - smooth_w[j]
                    else:
                        b = dt(eps / c / div * grad_scale)
                        for j in range(c):
                            g[j] = g[j] * a - b
                g[y] = g[y] - (1.0 - eps) * wy / div * grad_scale
            if reduction == NONE:
                loss[i] = l_row
            else:
                s_chunk += l_row
        partial[chunk] = s_chunk
    if reduction != NONE:
        total = 0.0
        for k in range(nchunks):
            total += partial[k]
        loss[0] = total / div
