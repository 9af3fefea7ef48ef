"""The guard pass: sum of squares and a non-finite flag of a gradient in one read from memory
(a chunk of 64 KB is read twice, from L2).

The sum is of ``clamp(g / scale, -clip_value, clip_value)``, the gradient the update will use
before norm clipping, so the norm clip sees what PyTorch's ``clip_grad_norm_`` would after
``GradScaler.unscale_`` and ``clip_grad_value_``. Finiteness is of the raw gradient. Chunked
float64 partial sums make the result independent of the thread count.
"""

import numpy as np
from numba import prange

from ..step_plan import CTL_SIZE, NONFINITE, RED_SIZE, SCALE, SUMSQ
from ._jit import parallel, serial
from ._math import maximum
from ._tensors import TENSOR, chunk_count, chunk_row, chunk_span, state_extent, view

# Every loop below reads its chunk as four interleaved streams, a quarter of the chunk each, with
# one accumulator per stream. With one stream per thread a read-only pass over 10M float32 ran
# at ~25 GB/s on the 2-core CI machine; with four, ~33 GB/s, as fast as Adam's 7 streams
# (bench/NOTES.md). The four sums are added in a fixed order, so results still do not depend on
# the thread count.
# They are compiled functions called once per chunk, not inlined: inlined into the parallel
# kernel, the three took ~2 s longer to compile per dtype (~4.5 s against ~2.9), at the same speed.


@serial
def _sum_squares(x):
    """float64 sum of ``x**2``."""
    q = x.shape[0] // 4
    s0 = s1 = s2 = s3 = 0.0
    for i in range(q):
        y0 = np.float64(x[i])
        y1 = np.float64(x[i + q])
        y2 = np.float64(x[i + 2 * q])
        y3 = np.float64(x[i + 3 * q])
        s0 += y0 * y0
        s1 += y1 * y1
        s2 += y2 * y2
        s3 += y3 * y3
    for i in range(4 * q, x.shape[0]):
        y = np.float64(x[i])
        s0 += y * y
    return (s0 + s1) + (s2 + s3)


@serial
def _sum_clamped_squares(x, unscale, lo, hi):
    """float64 sum of ``clamp(x * unscale, lo, hi)**2``."""
    q = x.shape[0] // 4
    s0 = s1 = s2 = s3 = 0.0
    for i in range(q):
        y0 = np.float64(min(max(x[i] * unscale, lo), hi))
        y1 = np.float64(min(max(x[i + q] * unscale, lo), hi))
        y2 = np.float64(min(max(x[i + 2 * q] * unscale, lo), hi))
        y3 = np.float64(min(max(x[i + 3 * q] * unscale, lo), hi))
        s0 += y0 * y0
        s1 += y1 * y1
        s2 += y2 * y2
        s3 += y3 * y3
    for i in range(4 * q, x.shape[0]):
        y = np.float64(min(max(x[i] * unscale, lo), hi))
        s0 += y * y
    return (s0 + s1) + (s2 + s3)


@serial
def _largest_abs(x):
    """The largest ``|x|`` with the NaN-propagating ``maximum``: NaN or Inf exactly when ``x``
    holds one."""
    q = x.shape[0] // 4
    b0 = b1 = b2 = b3 = x.dtype.type(0.0)
    for i in range(q):
        b0 = maximum(b0, abs(x[i]))
        b1 = maximum(b1, abs(x[i + q]))
        b2 = maximum(b2, abs(x[i + 2 * q]))
        b3 = maximum(b3, abs(x[i + 3 * q]))
    for i in range(4 * q, x.shape[0]):
        b0 = maximum(b0, abs(x[i]))
    return maximum(maximum(b0, b1), maximum(b2, b3))


@serial
def _chunk_stats(x, ctl, clip_value):
    """``(sum of squares, 1.0 if non-finite else 0.0)`` of one chunk, as :func:`grad_stats`
    describes."""
    dt = x.dtype.type
    plain = ctl[SCALE] == 1.0 and clip_value == np.inf
    if plain and x.itemsize == 4:
        # float32 squares cannot overflow in float64 (at most 1.2e77 each, 2e81 a chunk): the
        # sum of squares itself is finite exactly when every entry is, so one loop does both.
        s = _sum_squares(x)
        return s, 0.0 if s < np.inf else 1.0  # NaN compares false
    big = _largest_abs(x)
    if plain:
        s = _sum_squares(x)
    else:
        hi = dt(clip_value)
        s = _sum_clamped_squares(x, dt(1.0 / ctl[SCALE]), -hi, hi)
    return s, 0.0 if big < np.inf else 1.0


@parallel
def grad_stats(red, g, ctl, clip_value):
    """Add this gradient's statistics to ``red``.

    Parameters
    ----------
    red : (2,) float64, updated in place
        ``red[SUMSQ] += sum(clamp(g / ctl[SCALE], +-clip_value)^2)``; ``red[NONFINITE]`` grows
        (by the number of chunks holding one) exactly when ``g`` holds a NaN or Inf.
    g : (n,) float32 or float64, read
    ctl : (16,) float64, read (``ctl[SCALE]``)
    clip_value : float (inf: no value clipping)

    float32 without unscale or clamp (the common case) takes one loop: the float64 sum of
    squares, finite exactly when every entry is. Otherwise two loops per chunk: the largest
    ``|g|`` (8 lanes in float32), then the float64 sum of squares, which re-reads the chunk from
    L2. Fused, the float64 sum held the finiteness test to 4 lanes (0.33 ns/element on one
    thread against 0.16-0.22 split; bench/NOTES.md).

    Raises ``ValueError`` if ``red`` holds fewer than ``RED_SIZE`` or ``ctl`` fewer than
    ``CTL_SIZE`` elements.
    """
    if red.shape[0] < RED_SIZE:
        raise ValueError("red must hold at least RED_SIZE elements")
    if ctl.shape[0] < CTL_SIZE:
        raise ValueError("ctl must hold at least CTL_SIZE elements")
    nchunks = chunk_count(g.shape[0])
    sums = np.empty(nchunks, dtype=np.float64)
    bad = np.empty(nchunks, dtype=np.float64)
    for c in prange(nchunks):
        # A slice indexed from 0: with range(lo, hi) numba keeps its negative-index wraparound.
        a, b = chunk_span(c, g.shape[0])
        sums[c], bad[c] = _chunk_stats(g[a:b], ctl, clip_value)
    s = 0.0
    b = 0.0
    for c in range(nchunks):
        s += sums[c]
        b += bad[c]
    red[SUMSQ] += s
    red[NONFINITE] += b


@parallel
def grad_stats_tensors(red, chunks, g_addr, ctl, clip_value, like):
    """:func:`grad_stats` of many gradients at once (``_tensors``): each gradient's chunk sums
    are added in order, and then to ``red``, gradient after gradient, as one call per gradient
    adds them. (A chunk's own sum may differ from :func:`grad_stats`' in the last bits: LLVM
    vectorizes each kernel's reduction on its own. Neither depends on the thread count.)

    Parameters
    ----------
    red, ctl, clip_value : as in :func:`grad_stats`
    chunks : (n_chunks, 4) int64 chunk table (``_tensors.chunk_table``)
    g_addr : int64 addresses of the gradients (``_tensors.addresses``)
    like : an array of the gradients' dtype (its elements are not read)

    The addresses are trusted (``_tensors``); the table, ``red`` and ``ctl`` are checked, with
    ``ValueError`` before any memory is touched.
    """
    state_extent(chunks, g_addr.shape[0])
    if red.shape[0] < RED_SIZE:
        raise ValueError("red must hold at least RED_SIZE elements")
    if ctl.shape[0] < CTL_SIZE:
        raise ValueError("ctl must hold at least CTL_SIZE elements")
    nchunks = chunks.shape[0]
    sums = np.empty(nchunks, dtype=np.float64)
    bad = np.empty(nchunks, dtype=np.float64)
    for c in prange(nchunks):
        t, a, b, _ = chunk_row(chunks, c)
        sums[c], bad[c] = _chunk_stats(view(g_addr[t], a, b, like), ctl, clip_value)
    s = 0.0
    b = 0.0
    for c in range(nchunks):
        s += sums[c]
        b += bad[c]
        if c + 1 == nchunks or chunks[c + 1, TENSOR] != chunks[c, TENSOR]:  # a gradient's last
            red[SUMSQ] += s
            red[NONFINITE] += b
            s = 0.0
            b = 0.0


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


@parallel
def scale_inplace_tensors(chunks, g_addr, factor, like):
    """:func:`scale_inplace` of many gradients at once (``_tensors``; ``like`` gives their
    dtype). The addresses are trusted; the table is checked (``_tensors.state_extent``), with
    ``ValueError`` before any gradient is touched."""
    state_extent(chunks, g_addr.shape[0])
    f = like.dtype.type(factor)
    for c in prange(chunks.shape[0]):
        t, a, b, _ = chunk_row(chunks, c)
        x = view(g_addr[t], a, b, like)
        for i in range(x.shape[0]):
            x[i] = x[i] * f
