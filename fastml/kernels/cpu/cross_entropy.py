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
"""

import math

import numpy as np
from numba import prange

from ._jit import CHUNK, parallel, serial
from ._math import fast_exp

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


@serial
def _row_argmax(x):
    # NumPy's and PyTorch's rule: the first NaN wins, else the first maximum.
    best = 0
    for j in range(x.shape[0]):
        if x[j] != x[j]:
            return j
        if x[j] > x[best]:
            best = j
    return best


@parallel
def cross_entropy_fwd_bwd(grad, loss, pred, logits, labels, weight, ignore_index,
                          label_smoothing, grad_scale, reduction):
    """Softmax cross-entropy over rows, with its gradient, in one pass.

    Parameters
    ----------
    grad : (N, C) float32 or float64, written
        ``grad_scale * dloss/dlogits``; may be ``logits`` itself (in place).
    loss : (N,) or (1,) same dtype, written
        Per-row losses (``reduction == NONE``) or the reduced loss in ``loss[0]``.
    pred : (N,) or (0,) int64, written
        Row argmax (first NaN, else first maximum) when it has N entries; skipped when empty.
    logits : (N, C) float32 or float64, read
    labels : (N,) int32 or int64, read
        Class indices in [0, C) or ``ignore_index`` (the API checks the range first).
    weight : (C,) or (0,) same dtype as logits, read
        Class weights; empty means unweighted.
    ignore_index : int
    label_smoothing : float in [0, 1]
    grad_scale : float
    reduction : int
        ``NONE`` (0), ``SUM`` (1) or ``MEAN`` (2).
    """
    n, c = logits.shape
    weighted = weight.shape[0] != 0
    eps = label_smoothing
    factor = 1.0
    if reduction == MEAN:
        d, kept = _mean_denominator(labels, weight, ignore_index)
        # All rows ignored: 0 (documented; PyTorch gives NaN). Zero total weight: 0/0 = NaN.
        factor = 0.0 if kept == 0 else (1.0 / d if d != 0.0 else np.nan)
    gf = grad_scale * factor
    w_total = 0.0
    if weighted:
        for j in range(c):
            w_total += weight[j]
    else:
        w_total = float(c)
    rows = max(1, CHUNK // c)  # fixed by C alone, so the sum order ignores the thread count
    nchunks = (n + rows - 1) // rows
    partial = np.empty(nchunks, dtype=np.float64)
    for chunk in prange(nchunks):
        s_chunk = 0.0
        for i in range(chunk * rows, min(n, (chunk + 1) * rows)):
            x = logits[i]
            g = grad[i]
            y = labels[i]
            if pred.shape[0] != 0:
                pred[i] = _row_argmax(x)
            if y == ignore_index:
                g[:] = 0
                if reduction == NONE:
                    loss[i] = 0
                continue
            xy = np.float64(x[y])
            wy = np.float64(weight[y]) if weighted else 1.0
            m = x[0]
            for j in range(1, c):
                m = max(m, x[j])
            smooth = 0.0  # sum_c w_c x_c, read before an in-place grad overwrites the row
            if eps != 0.0:
                if weighted:
                    for j in range(c):
                        smooth += np.float64(weight[j]) * np.float64(x[j])
                else:
                    for j in range(c):
                        smooth += np.float64(x[j])
            s = 0.0
            for j in range(c):
                e = fast_exp(x[j] - m)
                g[j] = e
                s += np.float64(e)
            lse = np.float64(m) + math.log(s)
            l_row = (1.0 - eps) * wy * (lse - xy)
            if eps != 0.0:
                l_row += eps / c * (w_total * lse - smooth)
            # dl/dx_j = e_j / s * a - b_j, folded into one multiply (and one more with smoothing).
            a = gf * ((1.0 - eps) * wy + eps * w_total / c) / s
            for j in range(c):
                g[j] = g[j] * a
            if eps != 0.0:
                b = gf * eps / c
                if weighted:
                    for j in range(c):
                        g[j] = g[j] - b * weight[j]
                else:
                    for j in range(c):
                        g[j] = g[j] - b
            g[y] = g[y] - gf * (1.0 - eps) * wy
            if reduction == NONE:
                loss[i] = l_row
            else:
                s_chunk += l_row
        partial[chunk] = s_chunk
    if reduction != NONE:
        total = 0.0
        for k in range(nchunks):
            total += partial[k]
        loss[0] = total * factor
