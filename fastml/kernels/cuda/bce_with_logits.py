"""Binary cross-entropy on logits on the GPU: loss and gradient in one pass over memory.

    l = w * [(1 - t) x + lw * (log1p(exp(-|x|)) + max(-x, 0))],   lw = 1 + (pw - 1) t
    dl/dx = w * [(1 - t + pw t) sigmoid(x) - pw t] = w * [(1 - t) sigmoid(x) - pw t sigmoid(-x)]

The loss is the CPU kernel's log-sum-exp form (exp only sees -|x| <= 0, so nothing overflows).
The transcendental part runs in the input dtype; the few linear terms around it run in float64,
where ``(1 - t) x + lw max(-x, 0)`` cannot lose digits to cancellation at |x| ~ 1e4, and NaN/Inf
behave exactly as on the CPU. The gradient uses the second form: both sigmoids come from one
``exp(-|x|)`` and neither term cancels against a rounded 1, so a float32 gradient stays accurate
where ``sigmoid(x)`` rounds to 1. Where ``1 - t + pw t`` is not finite (an infinite target or
pos_weight), the first form is used so that NaN and Inf come out exactly as on the CPU.
``weight`` and ``pos_weight`` are broadcast by index arithmetic: element i reads
``weight[(i // w_div) % w_mod]``.
"""

import math

from numba import cuda, float64, int64

from .. import sizes
from . import _launch as L
from ._launch import SHARED


@cuda.jit(device=True)
def _bcast(i, div, mod):
    # Skip the 64-bit divisions (tens of instructions each) in the common layouts.
    if mod == 1:
        return int64(0)
    if div == 1:
        return i % mod
    return (i // div) % mod


# Grid-stride over elements; a reduced loss goes float64 thread -> block partial -> one-block sum.
@cuda.jit
def _bce_kernel(grad, loss, buf, logits, target, weight, w_div, w_mod, pos_weight, pw_div, pw_mod,
                grad_factor, loss_factor):
    sh = cuda.shared.array(SHARED, float64)
    n = logits.shape[0]
    per_element = loss.shape[0] == n
    one = logits.dtype.type(1.0)
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    stride = int64(cuda.gridDim.x) * cuda.blockDim.x
    s = 0.0
    for i in range(start, n, stride):
        x = logits[i]
        t = target[i]  # both read before grad (which may alias either) is written
        w = weight[_bcast(i, w_div, w_mod)]
        pw = pos_weight[_bcast(i, pw_div, pw_mod)]
        e = math.exp(-abs(x))
        softplus = math.log1p(e)
        # sigmoid(x) and sigmoid(-x) from the same e: one exp, no overflow.
        r = one / (one + e)
        nonneg = x >= one - one
        sig_pos = r if nonneg else e * r
        sig_neg = e * r if nonneg else r
        k = one - t + pw * t
        if k - k == one - one:  # finite: the form without cancellation
            g = (one - t) * sig_pos - pw * t * sig_neg
        else:  # an Inf or NaN t or pw: the CPU's form, so NaN and Inf come out as there
            g = k * sig_pos - pw * t
        grad[i] = w * g * grad_factor
        x64 = float64(x)
        t64 = float64(t)
        lw = 1.0 + (float64(pw) - 1.0) * t64
        li = float64(w) * ((1.0 - t64) * x64 + lw * (float64(softplus) + max(-x64, 0.0)))
        if per_element:
            loss[i] = li * loss_factor
        else:
            s += li
    if not per_element:
        total = L.block_sum(sh, s)
        if cuda.threadIdx.x == 0:
            buf[L.LOSS_OFF + cuda.blockIdx.x] = total


def bce_with_logits_fwd_bwd(grad, loss, logits, target, weight, w_div, w_mod,
                            pos_weight, pw_div, pw_mod, grad_factor, loss_factor, stream=0):
    """Binary cross-entropy with logits and its gradient in one pass, on the GPU (no sync).

    Parameters
    ----------
    grad : (n,) float32 or float64 device array, written
        ``grad_factor * dl/dlogits``; may be ``logits`` or ``target`` itself (in place).
    loss : (n,) or (1,) device array, same dtype, written
        Per-element losses times ``loss_factor``, or their float64 sum times ``loss_factor``
        (computed on the device).
    logits, target : (n,) float32 or float64 device arrays, read
    weight : (m,) device array, same dtype, read
        Element i is weighted by ``weight[(i // w_div) % w_mod]``; pass ``ones(1)``, 1, 1 for none.
    pos_weight : (k,) device array, same dtype, read
        Positive-class weight, indexed like ``weight``.
    grad_factor, loss_factor : float
    stream : numba stream or 0

    Raises ``ValueError``, before launching, if ``grad`` or ``target`` is not as long as
    ``logits``, ``loss`` has neither n entries nor 1, a divisor or modulus is below 1, or
    ``weight`` (``pos_weight``) has fewer than ``w_mod`` (``pw_mod``) entries.
    """
    grad, loss, logits, target, weight, pos_weight = map(
        L.as_device, (grad, loss, logits, target, weight, pos_weight))
    n = logits.shape[0]
    sizes.bce_with_logits(logits, grad, target, loss, weight, w_div, w_mod, pos_weight,
                           pw_div, pw_mod)
    dt = logits.dtype.type
    blocks = L.grid(n, L.THREADS)
    buf = L.scratch(stream)
    _bce_kernel[blocks, L.THREADS, stream](
        grad, loss, buf, logits, target, weight, int(w_div), int(w_mod),
        pos_weight, int(pw_div), int(pw_mod), dt(grad_factor), float(loss_factor))
    if loss.shape[0] != n:
        L.sum_partials(loss, buf, blocks, loss_factor, stream)
