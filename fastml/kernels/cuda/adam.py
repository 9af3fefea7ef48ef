"""Adam / AdamW (and AMSGrad) on the GPU: one pass that reads p, g, m, v and writes p, m, v
(28 B/param fp32), the same rule and operation order as ``fastml.kernels.cpu.adam``:

    g  <- g + wd p                       (L2 weight decay)        | p <- p (1 - lr wd)  (decoupled)
    m  <- lerp(m, g, 1 - beta1)
    v  <- beta2 v + (1 - beta2) g^2
    vmax <- max(vmax, v)                  (AMSGrad; v below means vmax)
    p  <- p - step_size m / (sqrt(v) / sqrt(bc2) + eps)

The step scalars (skip flag, unscale and clip factors, lr, step_size, sqrt(bc2)) are read from
``ctl`` on the device, where the step plan wrote them: the launch never waits for the host, and a
skipped step returns before touching memory. Element arithmetic is in the parameter dtype.
"""

import math

import numpy as np
from numba import cuda, int64

from .. import sizes
from ..step_plan import APPLIED, C0, C1, CLIP_COEF, LR, UNSCALE
from . import _launch as L
from ._grad import effective_grad, lerp, load4, store4, update_grid


@cuda.jit(device=True)
def _adam(pi, gi, mi, vi, wi, unscale, lo, hi, coef, l2, use_l2, decay, use_decay, b1w, b1c,
          b1_fwd, b2, b2w, eps, step_size, bc2_sqrt, amsgrad):
    gi = effective_grad(gi, unscale, lo, hi, coef)
    if use_l2:
        gi = gi + l2 * pi
    if use_decay:
        pi = pi * decay
    mi = lerp(mi, gi, b1w, b1c, b1_fwd)
    vi = b2 * vi + b2w * (gi * gi)
    den = vi
    if amsgrad:
        # max(vmax, v) as the CPU's builtin max: keeps vmax unless v is larger (a NaN v too);
        # numba-cuda's float max would drop a NaN.
        if vi > wi:
            wi = vi
        den = wi
    return pi - step_size * (mi / (math.sqrt(den) / bc2_sqrt + eps)), mi, vi, wi


@cuda.jit
def _adam_step_kernel(p, g, m, v, vmax, ctl, b1w, b2, b2w, eps, l2, weight_decay, decoupled,
                      amsgrad, maximize, hi):
    if ctl[APPLIED] == 0.0:
        return  # a skipped step: p and the state stay bitwise as they were
    dt = p.dtype.type
    unscale = dt(ctl[UNSCALE])
    coef = dt(-ctl[CLIP_COEF] if maximize else ctl[CLIP_COEF])
    lo = -hi
    step_size = dt(ctl[C0])
    bc2_sqrt = dt(ctl[C1])
    decay = dt(1.0 - ctl[LR] * weight_decay if decoupled else 1.0)
    use_l2 = weight_decay != 0.0 and not decoupled
    use_decay = weight_decay != 0.0 and decoupled
    b1c = dt(1.0) - b1w
    b1_fwd = abs(b1w) < dt(0.5)
    zero = dt(0.0)
    n = p.shape[0]
    t = int64(cuda.blockDim.x)
    tile = 4 * t
    for j in range(int64(cuda.blockIdx.x) * tile + cuda.threadIdx.x, n,
                   int64(cuda.gridDim.x) * tile):
        if j + 3 * t < n:
            p0, p1, p2, p3 = load4(p, j, t)
            g0, g1, g2, g3 = load4(g, j, t)
            m0, m1, m2, m3 = load4(m, j, t)
            v0, v1, v2, v3 = load4(v, j, t)
            if amsgrad:
                w0, w1, w2, w3 = load4(vmax, j, t)
            else:
                w0 = w1 = w2 = w3 = zero
            p0, m0, v0, w0 = _adam(p0, g0, m0, v0, w0, unscale, lo, hi, coef, l2, use_l2, decay,
                                   use_decay, b1w, b1c, b1_fwd, b2, b2w, eps, step_size,
                                   bc2_sqrt, amsgrad)
            p1, m1, v1, w1 = _adam(p1, g1, m1, v1, w1, unscale, lo, hi, coef, l2, use_l2, decay,
                                   use_decay, b1w, b1c, b1_fwd, b2, b2w, eps, step_size,
                                   bc2_sqrt, amsgrad)
            p2, m2, v2, w2 = _adam(p2, g2, m2, v2, w2, unscale, lo, hi, coef, l2, use_l2, decay,
                                   use_decay, b1w, b1c, b1_fwd, b2, b2w, eps, step_size,
                                   bc2_sqrt, amsgrad)
            p3, m3, v3, w3 = _adam(p3, g3, m3, v3, w3, unscale, lo, hi, coef, l2, use_l2, decay,
                                   use_decay, b1w, b1c, b1_fwd, b2, b2w, eps, step_size,
                                   bc2_sqrt, amsgrad)
            store4(m, j, t, m0, m1, m2, m3)
            store4(v, j, t, v0, v1, v2, v3)
            if amsgrad:
                store4(vmax, j, t, w0, w1, w2, w3)
            store4(p, j, t, p0, p1, p2, p3)
        else:  # the last, partial tile
            for i in range(j, n, t):
                w = vmax[i] if amsgrad else zero
                pi, mi, vi, w = _adam(p[i], g[i], m[i], v[i], w, unscale, lo, hi, coef, l2,
                                      use_l2, decay, use_decay, b1w, b1c, b1_fwd, b2, b2w, eps,
                                      step_size, bc2_sqrt, amsgrad)
                m[i] = mi
                v[i] = vi
                if amsgrad:
                    vmax[i] = w
                p[i] = pi


def adam_step(p, g, m, v, vmax, ctl, beta1, beta2, eps, weight_decay, decoupled, amsgrad,
              maximize, clip_value, stream=0):
    """One Adam step on the device, in place, unless ``ctl[APPLIED] == 0`` there (then nothing
    is touched). Launches without synchronizing.

    Parameters
    ----------
    p : (n,) float32 or float64 device array, updated in place
    g : (n,) same dtype, read (raw: scaled by the loss scale, unclipped)
    m, v : (n,) same dtype, updated in place
    vmax : (n,) or (0,) same dtype, updated in place when ``amsgrad``
    ctl : (16,) float64 device array, read: ``APPLIED``, ``UNSCALE``, ``CLIP_COEF``, ``LR``,
        ``C0``, ``C1``
    beta1, beta2, eps, weight_decay : float
    decoupled, amsgrad, maximize : bool
    clip_value : float (inf: none)
    stream : numba stream or 0

    Raises ``ValueError``, before launching, if ``g``, ``m``, ``v`` or ``vmax`` while
    ``amsgrad`` is not as long as ``p``, or ``ctl`` holds fewer than ``CTL_SIZE`` (shapes
    only: no sync).
    """
    p, g, m, v, vmax, ctl = map(L.as_device, (p, g, m, v, vmax, ctl))
    n = p.shape[0]
    sizes.adam(p, g, m, v, vmax, ctl, amsgrad)
    if n == 0:
        return
    dt = np.dtype(p.dtype).type
    _adam_step_kernel[update_grid(n), L.THREADS, stream](
        p, g, m, v, vmax, ctl, dt(1.0 - beta1), dt(beta2), dt(1.0 - beta2), dt(eps),
        dt(0.0 if decoupled else weight_decay), float(weight_decay), bool(decoupled),
        bool(amsgrad), bool(maximize), dt(clip_value))
