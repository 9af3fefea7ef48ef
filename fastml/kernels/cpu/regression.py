"""MSE, L1 and Huber: per-element loss and gradient in one pass over memory.

One driver, specialised per loss by an inlined element function, reads ``pred`` and ``target``
once and writes ``grad`` once (12 B/element in float32). The loss is summed in float64 per fixed
chunk and the chunk sums are added in order, so the result is bitwise the same for any thread count.
"""

import numpy as np
from numba import prange

from ._jit import CHUNK, inline, parallel


@inline
def _mse(d, delta):
    # l = d^2, dl/dpred = 2 d
    return d * d, d + d


@inline
def _l1(d, delta):
    # dl/dpred = sign(d): 0 at d == 0 and NaN for NaN, as in PyTorch.
    return abs(d), np.sign(d)


@inline
def _huber(d, delta):
    # Quadratic inside |d| < delta, linear outside; the gradient is d clamped to [-delta, delta].
    ad = abs(d)
    if ad < delta:
        return 0.5 * d * d, d
    return delta * (ad - 0.5 * delta), delta * np.sign(d)


def _make_fwd_bwd(elem):
    @parallel
    def fwd_bwd(grad, loss, pred, target, delta, grad_factor, loss_factor):
        n = pred.shape[0]
        per_element = loss.shape[0] == n
        dt = pred.dtype.type
        delta = dt(delta)
        nchunks = (n + CHUNK - 1) // CHUNK
        partial = np.empty(nchunks, dtype=np.float64)
        for c in prange(nchunks):
            lo = c * CHUNK
            hi = min(n, lo + CHUNK)
            s = 0.0
            if per_element:
                for i in range(lo, hi):
                    l, g = elem(pred[i] - target[i], delta)
                    grad[i] = g * grad_factor
                    loss[i] = l * loss_factor
            else:
                for i in range(lo, hi):
                    l, g = elem(pred[i] - target[i], delta)
                    grad[i] = g * grad_factor
                    s += np.float64(l)
            partial[c] = s
        if not per_element:
            total = 0.0
            for c in range(nchunks):
                total += partial[c]
            loss[0] = total * loss_factor

    return fwd_bwd


_DOC = """{name} loss and its gradient in one pass.

    Parameters
    ----------
    grad : (n,) float32 or float64, written
        ``grad_factor * d{name}/dpred``. May be ``pred`` or ``target`` itself (in place).
    loss : (n,) or (1,) same dtype as ``pred``, written
        ``(n,)``: per-element losses times ``loss_factor``; ``(1,)``: their float64 sum times
        ``loss_factor``.
    pred, target : (n,) float32 or float64, read
    delta : float
        Huber threshold; ignored by MSE and L1.
    grad_factor, loss_factor : float
        ``grad_scale / n`` and ``1 / n`` for a mean, ``grad_scale`` and ``1`` for a sum.
    """

mse_fwd_bwd = _make_fwd_bwd(_mse)
mse_fwd_bwd.__doc__ = _DOC.format(name="MSE")
l1_fwd_bwd = _make_fwd_bwd(_l1)
l1_fwd_bwd.__doc__ = _DOC.format(name="L1")
huber_fwd_bwd = _make_fwd_bwd(_huber)
huber_fwd_bwd.__doc__ = _DOC.format(name="Huber")
