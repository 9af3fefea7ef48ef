"""RMSprop (centered, momentum) on the GPU: one pass over p, g and its state buffers, the same
rule and operation order as ``fastml.kernels.cpu.rmsprop``:

    g  <- g + wd p
    sq <- alpha sq + (1 - alpha) g^2
    ga <- lerp(ga, g, 1 - alpha)                   (centered)
    avg <- sqrt(sq - ga^2) + eps  (centered)  or  sqrt(sq) + eps
    buf <- momentum buf + g / avg;  p <- p - lr buf     (momentum > 0)
    p  <- p - lr g / avg                                 (otherwise)

The step scalars come from ``ctl`` on the device; a skipped step returns before touching memory.
"""

import math

import numpy as np
from numba import cuda, int64

from .. import sizes
from ..step_plan import APPLIED, CLIP_COEF, LR, UNSCALE
from . import _launch as L
from ._grad import effective_grad, lerp, load4, store4, update_grid


@cuda.jit(device=True)
def _rmsprop(pi, gi, sq, ga, bi, unscale, lo, hi, coef, lr, a, aw, ac, a_fwd, eps, wd, use_wd,
             mom, use_momentum, centered):
    gi = effective_grad(gi, unscale, lo, hi, coef)
    if use_wd:
        gi = gi + wd * pi
    sq = a * sq + aw * (gi * gi)
    if centered:
        ga = lerp(ga, gi, aw, ac, a_fwd)
        avg = math.sqrt(sq - ga * ga) + eps
    else:
        avg = math.sqrt(sq) + eps
    if use_momentum:
        bi = mom * bi + gi / avg
        return pi - lr * bi, sq, ga, bi
    return pi - lr * (gi / avg), sq, ga, bi


@cuda.jit
def _rmsprop_step_kernel(p, g, square_avg, grad_avg, buf, ctl, a, aw, eps, wd, use_wd, mom,
                         use_momentum, centered, maximize, hi):
    if ctl[APPLIED] == 0.0:
        return  # a skipped step: p and the state stay bitwise as they were
    dt = p.dtype.type
    unscale = dt(ctl[UNSCALE])
    coef = dt(-ctl[CLIP_COEF] if maximize else ctl[CLIP_COEF])
    lo = -hi
    lr = dt(ctl[LR])
    ac = dt(1.0) - aw
    a_fwd = abs(aw) < dt(0.5)
    zero = dt(0.0)
    n = p.shape[0]
    t = int64(cuda.blockDim.x)
    tile = 4 * t
    for j in range(int64(cuda.blockIdx.x) * tile + cuda.threadIdx.x, n,
                   int64(cuda.gridDim.x) * tile):
        if j + 3 * t < n:
            p0, p1, p2, p3 = load4(p, j, t)
            g0, g1, g2, g3 = load4(g, j, t)
            s0, s1, s2, s3 = load4(square_avg, j, t)
            if centered:
                c0, c1, c2, c3 = load4(grad_avg, j, t)
            else:
                c0 = c1 = c2 = c3 = zero
            if use_momentum:
                b0, b1, b2, b3 = load4(buf, j, t)
            else:
                b0 = b1 = b2 = b3 = zero
            p0, s0, c0, b0 = _rmsprop(p0, g0, s0, c0, b0, unscale, lo, hi, coef, lr, a, aw, ac,
                                      a_fwd, eps, wd, use_wd, mom, use_momentum, centered)
            p1, s1, c1, b1 = _rmsprop(p1, g1, s1, c1, b1, unscale, lo, hi, coef, lr, a, aw, ac,
                                      a_fwd, eps, wd, use_wd, mom, use_momentum, centered)
            p2, s2, c2, b2 = _rmsprop(p2, g2, s2, c2, b2, unscale, lo, hi, coef, lr, a, aw, ac,
                                      a_fwd, eps, wd, use_wd, mom, use_momentum, centered)
            p3, s3, c3, b3 = _rmsprop(p3, g3, s3, c3, b3, unscale, lo, hi, coef, lr, a, aw, ac,
                                      a_fwd, eps, wd, use_wd, mom, use_momentum, centered)
            store4(square_avg, j, t, s0, s1, s2, s3)
            if centered:
                store4(grad_avg, j, t, c0, c1, c2, c3)
            if use_momentum:
                store4(buf, j, t, b0, b1, b2, b3)
            store4(p, j, t, p0, p1, p2, p3)
        else:  # the last, partial tile
            for i in range(j, n, t):
                c = grad_avg[i] if centered else zero
                b = buf[i] if use_momentum else zero
                pi, s, c, b = _rmsprop(p[i], g[i], square_avg[i], c, b, unscale, lo, hi, coef,
                                       lr, a, aw, ac, a_fwd, eps, wd, use_wd, mom, use_momentum,
                                       centered)
                square_avg[i] = s
                if centered:
                    grad_avg[i] = c
                if use_momentum:
                    buf[i] = b
                p[i] = pi


def rmsprop_step(p, g, square_avg, grad_avg, buf, ctl, alpha, eps, weight_decay, momentum,
                 centered, maximize, clip_value, stream=0):
    """One RMSprop step on the device, in place, unless ``ctl[APPLIED] == 0`` there. Launches
    without synchronizing.

    Parameters
    ----------
    p : (n,) float32 or float64 device array, updated in place
    g : (n,) same dtype, read
    square_avg : (n,) same dtype, updated in place
    grad_avg : (n,) or (0,), updated in place when ``centered``
    buf : (n,) or (0,), updated in place when ``momentum > 0``
    ctl : (16,) float64 device array, read: ``APPLIED``, ``UNSCALE``, ``CLIP_COEF``, ``LR``
    alpha, eps, weight_decay, momentum : float
    centered, maximize : bool
    clip_value : float (inf: none)
    stream : numba stream or 0

    Raises ``ValueError``, before launching, if ``g``, ``square_avg``, ``grad_avg`` while
    ``centered`` or ``buf`` while ``momentum > 0`` is not as long as ``p``, or ``ctl`` holds
    fewer than ``CTL_SIZE`` (shapes only: no sync).
    """
    p, g, square_avg, grad_avg, buf, ctl = map(L.as_device,
                                               (p, g, square_avg, grad_avg, buf, ctl))
    n = p.shape[0]
    sizes.rmsprop(p, g, square_avg, grad_avg, buf, ctl, centered, momentum)
    if n == 0:
        return
    dt = np.dtype(p.dtype).type
    _rmsprop_step_kernel[update_grid(n), L.THREADS, stream](
        p, g, square_avg, grad_avg, buf, ctl, dt(alpha), dt(1.0 - alpha), dt(eps),
        dt(weight_decay), weight_decay != 0.0, dt(momentum), momentum > 0.0, bool(centered),
        bool(maximize), dt(clip_value))
