"""Adagrad (lr decay, initial accumulator) on the GPU: one pass over p, g and the sum of
squares, the same rule and operation order as ``fastml.kernels.cpu.adagrad``:

    g   <- g + wd p
    sum <- sum + g^2
    p   <- p - clr g / (sqrt(sum) + eps),   clr = lr / (1 + (t - 1) lr_decay)   (from the plan)

The step scalars come from ``ctl`` on the device; a skipped step returns before touching memory.
"""

import math

import numpy as np
from numba import cuda, int64

from .. import sizes
from ..step_plan import APPLIED, C0, CLIP_COEF, UNSCALE
from . import _launch as L
from ._grad import effective_grad, load4, store4, update_grid


@cuda.jit(device=True)
def _adagrad(pi, gi, si, unscale, lo, hi, coef, clr, eps, wd, use_wd):
    gi = effective_grad(gi, unscale, lo, hi, coef)
    if use_wd:
        gi = gi + wd * pi
    si = si + gi * gi
    return pi - clr * (gi / (math.sqrt(si) + eps)), si


@cuda.jit
def _adagrad_step_kernel(p, g, state_sum, ctl, eps, wd, use_wd, maximize, hi):
    if ctl[APPLIED] == 0.0:
        return  # a skipped step: p and the sum stay bitwise as they were
    dt = p.dtype.type
    unscale = dt(ctl[UNSCALE])
    coef = dt(-ctl[CLIP_COEF] if maximize else ctl[CLIP_COEF])
    lo = -hi
    clr = dt(ctl[C0])
    n = p.shape[0]
    t = int64(cuda.blockDim.x)
    tile = 4 * t
    for j in range(int64(cuda.blockIdx.x) * tile + cuda.threadIdx.x, n,
                   int64(cuda.gridDim.x) * tile):
        if j + 3 * t < n:
            p0, p1, p2, p3 = load4(p, j, t)
            g0, g1, g2, g3 = load4(g, j, t)
            s0, s1, s2, s3 = load4(state_sum, j, t)
            p0, s0 = _adagrad(p0, g0, s0, unscale, lo, hi, coef, clr, eps, wd, use_wd)
            p1, s1 = _adagrad(p1, g1, s1, unscale, lo, hi, coef, clr, eps, wd, use_wd)
            p2, s2 = _adagrad(p2, g2, s2, unscale, lo, hi, coef, clr, eps, wd, use_wd)
            p3, s3 = _adagrad(p3, g3, s3, unscale, lo, hi, coef, clr, eps, wd, use_wd)
            store4(state_sum, j, t, s0, s1, s2, s3)
            store4(p, j, t, p0, p1, p2, p3)
        else:  # the last, partial tile
            for i in range(j, n, t):
                pi, s = _adagrad(p[i], g[i], state_sum[i], unscale, lo, hi, coef, clr, eps, wd,
                                 use_wd)
                state_sum[i] = s
                p[i] = pi


def adagrad_step(p, g, state_sum, ctl, eps, weight_decay, maximize, clip_value, stream=0):
    """One Adagrad step on the device, in place, unless ``ctl[APPLIED] == 0`` there. Launches
    without synchronizing.

    Parameters
    ----------
    p : (n,) float32 or float64 device array, updated in place
    g : (n,) same dtype, read
    state_sum : (n,) same dtype, updated in place
    ctl : (16,) float64 device array, read: ``APPLIED``, ``UNSCALE``, ``CLIP_COEF``, ``C0`` (clr)
    eps, weight_decay : float
    maximize : bool
    clip_value : float (inf: none)
    stream : numba stream or 0

    Raises ``ValueError``, before launching, if ``g`` or ``state_sum`` is not as long as
    ``p``, or ``ctl`` holds fewer than ``CTL_SIZE`` (shapes only: no sync).
    """
    p, g, state_sum, ctl = map(L.as_device, (p, g, state_sum, ctl))
    n = p.shape[0]
    sizes.adagrad(p, g, state_sum, ctl)
    if n == 0:
        return
    dt = np.dtype(p.dtype).type
    _adagrad_step_kernel[update_grid(n), L.THREADS, stream](
        p, g, state_sum, ctl, dt(eps), dt(weight_decay), weight_decay != 0.0, bool(maximize),
        dt(clip_value))
