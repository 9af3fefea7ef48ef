"""Binary cross-entropy on logits: loss and gradient in one pass.

    l = w * [(1 - t) x + lw * (log1p(exp(-|x|)) + max(-x, 0))],   lw = 1 + (pw - 1) t
    dl/dx = w * [(1 - t + pw t) sigmoid(x) - pw t]

the log-sum-exp form PyTorch uses, which never overflows: exp only sees -|x| <= 0.
``weight`` and ``pos_weight`` are broadcast by index arithmetic: element i reads
``weight[(i // w_div) % w_mod]``, which covers a full array, a trailing vector such as a (C,)
``pos_weight`` (div 1, mod C), a per-row column (div C) and a scalar (mod 1).
"""

import math

import numpy as np
from numba import prange

from ._jit import CHUNK, inline, parallel


@inline
def _sigmoid(x):
    # Two branches so exp never overflows.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


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
    """
    n = logits.shape[0]
    per_element = loss.shape[0] == n
    nchunks = (n + CHUNK - 1) // CHUNK
    partial = np.empty(nchunks, dtype=np.float64)
    for c in prange(nchunks):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        s = 0.0
        for i in range(lo, hi):
            x = np.float64(logits[i])
            t = np.float64(target[i])
            w = np.float64(weight[(i // w_div) % w_mod])
            pw = np.float64(pos_weight[(i // pw_div) % pw_mod])
            lw = 1.0 + (pw - 1.0) * t
            l = w * ((1.0 - t) * x + lw * (math.log1p(math.exp(-abs(x))) + max(-x, 0.0)))
            grad[i] = w * ((1.0 - t + pw * t) * _sigmoid(x) - pw * t) * grad_factor
            if per_element:
                loss[i] = l * loss_factor
            else:
                s += l
        partial[c] = s
    if not per_element:
        total = 0.0
        for c in range(nchunks):
            total += partial[c]
        loss[0] = total * loss_factor
