"""The guard pass: sum of squares and non-finite count of a gradient in one read.

The sum is of ``clamp(g / scale, -clip_value, clip_value)``, the gradient the update will use
before norm clipping, so the norm clip sees what PyTorch's ``clip_grad_norm_`` would after
``GradScaler.unscale_`` and ``clip_grad_value_``. Finiteness is of the raw gradient. Chunked
float64 partial sums make the result independent of the thread count.
"""

import numpy as np
from numba import prange

from ..step_plan import NONFINITE, SCALE, SUMSQ
from ._jit import CHUNK, parallel


@parallel
def grad_stats(red, g, ctl, clip_value):
    """Add this gradient's statistics to ``red``.

    Parameters
    ----------
    red : (2,) float64, updated in place
        ``red[SUMSQ] += sum(clamp(g / ctl[SCALE], +-clip_value)^2)``, ``red[NONFINITE] +=``
        the number of NaN/Inf entries of ``g``.
    g : (n,) float32 or float64, read
    ctl : (16,) float64, read (``ctl[SCALE]``)
    clip_value : float (inf: no value clipping)
    """
    n = g.shape[0]
    dt = g.dtype.type
    unscale = dt(1.0 / ctl[SCALE])
    hi = dt(clip_value)
    lo = -hi
    nchunks = (n + CHUNK - 1) // CHUNK
    sums = np.empty(nchunks, dtype=np.float64)
    bad = np.empty(nchunks, dtype=np.float64)
    for c in prange(nchunks):
        s = 0.0
        b = 0.0
        for i in range(c * CHUNK, min(n, (c + 1) * CHUNK)):
            x = g[i]
            # x - x is 0 for finite x and NaN for NaN/Inf: a branch-free finiteness test.
            b += 0.0 if x - x == 0 else 1.0
            y = np.float64(min(max(x * unscale, lo), hi))
            s += y * y
        sums[c] = s
        bad[c] = b
    s = 0.0
    b = 0.0
    for c in range(nchunks):
        s += sums[c]
        b += bad[c]
    red[SUMSQ] += s
    red[NONFINITE] += b


@parallel
def scale_inplace(g, factor):
    """``g *= factor`` (the stand-alone norm clip).

    Parameters
    ----------
    g : (n,) float32 or float64, updated in place
    factor : float
    """
    f = g.dtype.type(factor)
    for i in prange(g.shape[0]):
        g[i] = g[i] * f
