"""SGD with momentum, dampening, Nesterov and weight decay on the GPU: one pass over p, g and
the buffer, the same rule and operation order as ``fastml.kernels.cpu.sgd``:

    g   <- g + wd p
    buf <- g on the first step, else momentum buf + (1 - dampening) g
    d   <- g + momentum buf (Nesterov) or buf
    p   <- p - lr d

Without momentum the buffer is not read or written (8 B/param fp32 less). The step scalars come
from ``ctl`` on the device; a skipped step returns before touching memory.
"""

import numpy as np
from numba import cuda, int64

from .. import sizes
from ..step_plan import APPLIED, C0, CLIP_COEF, LR, UNSCALE
from . import _launch as L
from ._grad import effective_grad, load4, store4, update_grid


@cuda.jit(device=True)
def _sgd(pi, gi, bi, unscale, lo, hi, coef, lr, wd, use_wd, mom, keep, first, use_momentum,
         nesterov):
    d = effective_grad(gi, unscale, lo, hi, coef)
    if use_wd:
        d = d + wd * pi
    if use_momentum:
        bi = d if first else mom * bi + keep * d
        d = d + mom * bi if nesterov else bi
    return pi - lr * d, bi


@cuda.jit
def _sgd_step_kernel(p, g, buf, ctl, mom, use_momentum, keep, nesterov, wd, use_wd, maximize,
                     hi):
    if ctl[APPLIED] == 0.0:
        return  # a skipped step: p and the buffer stay bitwise as they were
    dt = p.dtype.type
    unscale = dt(ctl[UNSCALE])
    coef = dt(-ctl[CLIP_COEF] if maximize else ctl[CLIP_COEF])
    lo = -hi
    lr = dt(ctl[LR])
    first = ctl[C0] != 0.0
    zero = dt(0.0)
    n = p.shape[0]
    t = int64(cuda.blockDim.x)
    tile = 4 * t
    for j in range(int64(cuda.blockIdx.x) * tile + cuda.threadIdx.x, n,
                   int64(cuda.gridDim.x) * tile):
        if j + 3 * t < n:
            p0, p1, p2, p3 = load4(p, j, t)
            g0, g1, g2, g3 = load4(g, j, t)
            # The buffer is not read on the first step (it starts as the gradient).
            if use_momentum and not first:
                b0, b1, b2, b3 = load4(buf, j, t)
            else:
                b0 = b1 = b2 = b3 = zero
            p0, b0 = _sgd(p0, g0, b0, unscale, lo, hi, coef, lr, wd, use_wd, mom, keep, first,
                          use_momentum, nesterov)
            p1, b1 = _sgd(p1, g1, b1, unscale, lo, hi, coef, lr, wd, use_wd, mom, keep, first,
                          use_momentum, nesterov)
            p2, b2 = _sgd(p2, g2, b2, unscale, lo, hi, coef, lr, wd, use_wd, mom, keep, first,
                          use_momentum, nesterov)
            p3, b3 = _sgd(p3, g3, b3, unscale, lo, hi, coef, lr, wd, use_wd, mom, keep, first,
                          use_momentum, nesterov)
            if use_momentum:
                store4(buf, j, t, b0, b1, b2, b3)
            store4(p, j, t, p0, p1, p2, p3)
        else:  # the last, partial tile
            for i in range(j, n, t):
                b = buf[i] if use_momentum and not first else zero
                pi, b = _sgd(p[i], g[i], b, unscale, lo, hi, coef, lr, wd, use_wd, mom, keep,
                             first, use_momentum, nesterov)
                if use_momentum:
                    buf[i] = b
                p[i] = pi


def sgd_step(p, g, buf, ctl, momentum, dampening, nesterov, weight_decay, maximize, clip_value,
             stream=0):
    """One SGD step on the device, in place, unless ``ctl[APPLIED] == 0`` there. Launches
    without synchronizing.

    Parameters
    ----------
    p : (n,) float32 or float64 device array, updated in place
    g : (n,) same dtype, read
    buf : (n,) or (0,) same dtype, momentum buffer, updated in place when ``momentum != 0``
    ctl : (16,) float64 device array, read: ``APPLIED``, ``UNSCALE``, ``CLIP_COEF``, ``LR``,
        ``C0`` (first step)
    momentum, dampening, weight_decay : float
    nesterov, maximize : bool
    clip_value : float (inf: none)
    stream : numba stream or 0

    Raises ``ValueError``, before launching, if ``g``, or ``buf`` while ``momentum != 0``, is
    not as long as ``p``, or ``ctl`` holds fewer than ``CTL_SIZE`` (shapes only: no sync).
    """
    p, g, buf, ctl = map(L.as_device, (p, g, buf, ctl))
    n = p.shape[0]
    sizes.sgd(p, g, buf, ctl, momentum)
    if n == 0:
        return
    dt = np.dtype(p.dtype).type
    _sgd_step_kernel[update_grid(n), L.THREADS, stream](
        p, g, buf, ctl, dt(momentum), momentum != 0.0, dt(1.0 - dampening), bool(nesterov),
        dt(weight_decay), weight_decay != 0.0, bool(maximize), dt(clip_value))
