"""MSE, L1 and Huber: per-element loss and gradient in one pass over memory.

One driver, specialised per loss by an inlined element function, reads ``pred`` and ``target``
once and writes ``grad`` once (12 B/element in float32). The loss is summed in float64 per fixed
chunk and the chunk sums are added in order, so the result is bitwise the same for any thread count.
"""

import numpy as np
from numba import literally, prange

from ._jit import CHUNK, inline, parallel, serial

MSE, L1, HUBER = 0, 1, 2

# Element functions: (d = pred - target, Huber's delta, 0.5) -> (loss, dloss/dpred), all in the
# input dtype. A Python 0.5 would be float64 and turn a float32 loop into float64 vectors of half
# the width; the constant comes in as an argument of the right type instead.


@serial
def _element(kind, d, delta, half):
    """``kind`` is a constant at every call: LLVM inlines this function into the kernel's loop
    and keeps one of the branches."""
    if kind == MSE:
        # l = d^2, dl/dpred = 2 d
        return d * d, d + d
    if kind == L1:
        # dl/dpred = sign(d): 0 at d == 0 and NaN for NaN (PyTorch 2.13 gives 0 at NaN).
        return abs(d), np.sign(d)
    # Huber: quadratic inside |d| < delta, linear outside; the gradient is d clamped to
    # [-delta, delta].
    ad = abs(d)
    if ad < delta:
        return half * d * d, d
    return delta * (ad - half * delta), delta * np.sign(d)


@inline
def _chunk_sum(kind, grad, loss, pred, target, delta, half, grad_factor, loss_factor,
               per_element):
    # Indices run from 0 over slices: with range(lo, hi) LLVM cannot prove the index
    # non-negative, keeps numba's wraparound select, and then cannot vectorize an in-place
    # loop (grad and pred one array) at all.
    s = 0.0
    if per_element:
        for i in range(pred.shape[0]):
            e_loss, e_grad = _element(kind, pred[i] - target[i], delta, half)
            grad[i] = e_grad * grad_factor
            loss[i] = e_loss * loss_factor
    else:
        for i in range(pred.shape[0]):
            e_loss, e_grad = _element(kind, pred[i] - target[i], delta, half)
            grad[i] = e_grad * grad_factor
            s += np.float64(e_loss)
    return s


@parallel
def _fwd_bwd(kind, grad, loss, pred, target, delta, grad_factor, loss_factor):
    """One module-level kernel compiled once per ``kind`` (a literal): numba caches it on disk.
    (Kernels made by a closure factory are not: each process sees a new closure and recompiles.)
    The ``prange`` stays in this body, as numba parallelizes no loop in an inlined function."""
    kind = literally(kind)
    n = pred.shape[0]
    if grad.shape[0] != n or target.shape[0] != n:
        raise ValueError("grad and target must have the length of pred")
    if loss.shape[0] != n and loss.shape[0] != 1:
        raise ValueError("loss must have the length of pred or 1")
    per_element = loss.shape[0] == n
    dt = pred.dtype.type
    delta = dt(delta)
    half = dt(0.5)
    # In the input dtype for the same reason as ``half`` (a rounded factor costs <= 1 ulp).
    gfac = dt(grad_factor)
    # In place, the loop gets the one array under both names, so LLVM sees one pointer.
    # Under two names it checks at run time that they do not overlap, finds that they do,
    # and runs the scalar loop (7x slower for Huber, whose branch then mispredicts).
    grad_is_pred = grad.ctypes.data == pred.ctypes.data
    grad_is_target = grad.ctypes.data == target.ctypes.data
    nchunks = (n + CHUNK - 1) // CHUNK
    partial = np.empty(nchunks, dtype=np.float64)
    for c in prange(nchunks):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        p = pred[lo:hi]
        t = target[lo:hi]
        lc = loss[lo:hi] if per_element else loss
        if grad_is_pred:
            s = _chunk_sum(kind, p, lc, p, t, delta, half, gfac, loss_factor, per_element)
        elif grad_is_target:
            s = _chunk_sum(kind, t, lc, p, t, delta, half, gfac, loss_factor, per_element)
        else:
            s = _chunk_sum(kind, grad[lo:hi], lc, p, t, delta, half, gfac, loss_factor,
                           per_element)
        partial[c] = s
    if not per_element:
        total = 0.0
        for c in range(nchunks):
            total += partial[c]
        loss[0] = total * loss_factor


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

    Raises ``ValueError``, before writing anything, if ``grad`` or ``target`` is not as long
    as ``pred``, or ``loss`` has neither n entries nor 1.
    """



@serial
def mse_fwd_bwd(grad, loss, pred, target, delta, grad_factor, loss_factor):
    _fwd_bwd(MSE, grad, loss, pred, target, delta, grad_factor, loss_factor)


@serial
def l1_fwd_bwd(grad, loss, pred, target, delta, grad_factor, loss_factor):
    _fwd_bwd(L1, grad, loss, pred, target, delta, grad_factor, loss_factor)


@serial
def huber_fwd_bwd(grad, loss, pred, target, delta, grad_factor, loss_factor):
    _fwd_bwd(HUBER, grad, loss, pred, target, delta, grad_factor, loss_factor)


mse_fwd_bwd.__doc__ = _DOC.format(name="MSE")
l1_fwd_bwd.__doc__ = _DOC.format(name="L1")
huber_fwd_bwd.__doc__ = _DOC.format(name="Huber")
