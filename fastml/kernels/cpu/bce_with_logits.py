"""Binary cross-entropy on logits: loss and gradient in one pass.

    l = w * [(1 - t) x + lw * (log1p(exp(-|x|)) + max(-x, 0))],   lw = 1 + (pw - 1) t
    dl/dx = w * [(1 - t + pw t) sigmoid(x) - pw t]

the log-sum-exp form PyTorch uses, which never overflows: exp only sees -|x| <= 0.
``weight`` and ``pos_weight`` are broadcast by index arithmetic: element i reads
``weight[(i // w_div) % w_mod]``, which covers a full array, a trailing vector such as a (C,)
``pos_weight`` (div 1, mod C), a per-row column (div C) and a scalar (mod 1).

float32 runs in float32 with one vectorizable exp and log1p per element (``_math``), as PyTorch
computes in the input dtype; float64 calls libm. Before (bench/NOTES.md): float64 arithmetic,
three libm calls and two integer divisions per element, 46-55x the memory floor.
"""

import numpy as np
from numba import prange

from .. import sizes
from ._jit import CHUNK, inline, parallel, serial
from ._math import fast_exp_nonpos_sub, fast_log1p_unit, select

SUM_BLOCK = 512  # losses per float64 summing pass (2 KB in float32: stays in L1)


@serial
def _element(x, t, w, pw, one, zero):
    """(loss, dloss/dx) of one element, in the input dtype (``one``/``zero`` carry it: a Python
    1.0 would make float32 arithmetic float64). One exp, ``e = exp(-|x|)`` in [0, 1], serves
    both the log-sum-exp term and the sigmoid: ``1 / (1 + e)`` for x >= 0, ``e / (1 + e)``
    below, so neither overflows. NaN in x gives NaN in both (e is NaN)."""
    e = fast_exp_nonpos_sub(-abs(x))
    r = one / (one + e)
    sig = select(x >= zero, r, e * r)
    lw = one + (pw - one) * t
    loss = w * ((one - t) * x + lw * (fast_log1p_unit(e) + max(-x, zero)))
    return loss, w * ((one - t + pw * t) * sig - pw * t)


@inline
def _uniform_chunk(grad, loss, x, t, w, pw, gf, lf, per_element):
    """A chunk with one weight and one pos_weight: every loop vectorizes (8 lanes in float32,
    with the vectorizable exp and log1p of ``_math``)."""
    dt = x.dtype.type
    one = dt(1.0)
    zero = dt(0.0)
    s = 0.0
    if per_element:
        for i in range(x.shape[0]):
            li, gi = _element(x[i], t[i], w, pw, one, zero)
            grad[i] = gi * gf
            loss[i] = li * lf
    else:
        # Losses go to a small buffer and are summed in float64 in a second loop over it (in
        # L1): a float64 sum in the element loop holds it to 4 lanes and made it 2x slower.
        buf = np.empty(SUM_BLOCK, dtype=x.dtype)
        for b0 in range(0, x.shape[0], SUM_BLOCK):
            b1 = min(x.shape[0], b0 + SUM_BLOCK)
            xb = x[b0:b1]
            tb = t[b0:b1]
            gb = grad[b0:b1]
            for i in range(xb.shape[0]):
                li, gi = _element(xb[i], tb[i], w, pw, one, zero)
                gb[i] = gi * gf
                buf[i] = li
            for i in range(xb.shape[0]):
                s += np.float64(buf[i])
    return s


@inline
def _broadcast_chunk(grad, loss, x, t, weight, w_div, w_mod, pos_weight, pw_div, pw_mod, start,
                     gf, lf, per_element):
    """A chunk starting at flat index ``start`` whose element i reads
    ``weight[(i // w_div) % w_mod]``: the two indices are found once and then stepped, with no
    integer division per element."""
    dt = x.dtype.type
    one = dt(1.0)
    zero = dt(0.0)
    wj, wr = (start // w_div) % w_mod, start % w_div  # index into weight, position in its run
    pj, pr = (start // pw_div) % pw_mod, start % pw_div
    s = 0.0
    for i in range(x.shape[0]):
        li, gi = _element(x[i], t[i], weight[wj], pos_weight[pj], one, zero)
        grad[i] = gi * gf
        if per_element:
            loss[i] = li * lf
        else:
            s += np.float64(li)
        wr += 1
        if wr == w_div:
            wr = 0
            wj = wj + 1 if wj + 1 < w_mod else 0
        pr += 1
        if pr == pw_div:
            pr = 0
            pj = pj + 1 if pj + 1 < pw_mod else 0
    return s


@parallel
def bce_with_logits_fwd_bwd(grad, loss, logits, target, weight, w_div, w_mod,
                            pos_weight, pw_div, pw_mod, grad_factor, loss_factor):
    """Binary cross-entropy with logits and its gradient in one pass.

    Parameters
    ----------
    grad : (n,) float32 or float64, written
        ``grad_factor * dl/dlogits``; may be ``logits`` or ``target`` itself (in place).
    loss : (n,) or (1,) same dtype, written
        Per-element losses times ``loss_factor``, or their float64 sum times ``loss_factor``.
    logits, target : (n,) float32 or float64, read
    weight : (m,) same dtype, read
        Element i is weighted by ``weight[(i // w_div) % w_mod]``; pass ``ones(1)``, 1, 1 for none.
    pos_weight : (k,) same dtype, read
        Positive-class weight, indexed like ``weight``.
    grad_factor, loss_factor : float

    Raises ``ValueError``, before writing anything, if ``grad`` or ``target`` is not as long
    as ``logits``, ``loss`` has neither n entries nor 1, a divisor or modulus is below 1, or
    ``weight`` (``pos_weight``) has fewer than ``w_mod`` (``pw_mod``) entries.
    """
    n = logits.shape[0]
    sizes.bce_with_logits(logits, grad, target, loss, weight, w_div, w_mod, pos_weight,
                           pw_div, pw_mod)
    dt = logits.dtype.type
    per_element = loss.shape[0] == n
    gf = dt(grad_factor)  # in the dtype, as in regression.py (a rounded factor: <= 1 ulp)
    lf = dt(loss_factor) if per_element else loss_factor
    uniform = w_mod == 1 and pw_mod == 1
    w0 = weight[0]
    pw0 = pos_weight[0]
    # In place, the loop gets one array under both names, so LLVM sees one pointer (two names
    # of one array fail its run-time no-overlap check and run the scalar loop).
    grad_is_x = grad.ctypes.data == logits.ctypes.data
    grad_is_t = grad.ctypes.data == target.ctypes.data
    nchunks = (n + CHUNK - 1) // CHUNK
    partial = np.empty(nchunks, dtype=np.float64)
    for c in prange(nchunks):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        # Slices indexed from 0: with range(lo, hi) numba keeps its negative-index wraparound
        # and LLVM does not vectorize.
        x = logits[lo:hi]
        t = target[lo:hi]
        lc = loss[lo:hi] if per_element else loss
        if not uniform:
            partial[c] = _broadcast_chunk(grad[lo:hi], lc, x, t, weight, w_div, w_mod,
                                          pos_weight, pw_div, pw_mod, lo, gf, lf, per_element)
        elif grad_is_x:
            partial[c] = _uniform_chunk(x, lc, x, t, w0, pw0, gf, lf, per_element)
        elif grad_is_t:
            partial[c] = _uniform_chunk(t, lc, x, t, w0, pw0, gf, lf, per_element)
        else:
            partial[c] = _uniform_chunk(grad[lo:hi], lc, x, t, w0, pw0, gf, lf, per_element)
    if not per_element:
        total = 0.0
        for c in range(nchunks):
            total += partial[c]
        loss[0] = total * loss_factor
