"""The guard pass on the GPU: sum of squares and non-finite count of a gradient in one read.

Same quantities as ``fastml.kernels.cpu.grad_stats``: the sum is of ``clamp(g / scale,
-clip_value, clip_value)`` squared, in float64; the count is of the raw NaN/Inf entries. Each
block reduces its share in shared memory and writes one partial pair; a one-block kernel adds the
partials in a fixed order and adds the totals into ``red`` on the device. No float atomics: with
the block count fixed by the size alone, the sum is bitwise the same on every run.
"""

import numpy as np
from numba import cuda, float64, int64

from ..step_plan import CTL_SIZE, NONFINITE, RED_SIZE, SCALE, SUMSQ
from . import _launch as L
from ._grad import clamp, load4
from ._launch import SHARED  # a bare global: numba needs a literal for a shared array's size


@cuda.jit(device=True)
def _block_sum2(sh_s, sh_b, s, b):
    """Block sums of ``s`` and ``b`` in one shared-memory tree (fixed order), valid in thread 0.

    Every thread must call it; ``blockDim.x`` is a power of two no larger than ``SHARED``. Two
    sums per tree halve the barriers of two ``block_sum`` calls.
    """
    t = cuda.threadIdx.x
    sh_s[t] = s
    sh_b[t] = b
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if t < stride:
            sh_s[t] += sh_s[t + stride]
            sh_b[t] += sh_b[t + stride]
        cuda.syncthreads()
        stride //= 2
    return sh_s[0], sh_b[0]


@cuda.jit(device=True)
def _stat(s, b, x, unscale, lo, hi, zero):
    """Add one entry to the running (sum of squares, non-finite count)."""
    # x - x is 0 for finite x and NaN for NaN/Inf: a branch-free finiteness test.
    b += 0.0 if x - x == zero else 1.0
    y = float64(clamp(x * unscale, lo, hi))  # NaN stays NaN, as on the CPU
    return s + y * y, b


def _make_stats_kernel(unroll):
    """The pass with ``unroll`` (4 or 8) loads in flight per thread."""

    @cuda.jit
    def kernel(parts, g, ctl, hi):
        sh_s = cuda.shared.array(SHARED, float64)
        sh_b = cuda.shared.array(SHARED, float64)
        dt = g.dtype.type
        unscale = dt(1.0 / ctl[SCALE])
        lo = -hi
        zero = dt(0.0)
        s = 0.0
        b = 0.0
        n = g.shape[0]
        t = int64(cuda.blockDim.x)
        tile = unroll * t  # one load in flight per thread left the pass latency-bound
        for j in range(int64(cuda.blockIdx.x) * tile + cuda.threadIdx.x, n,
                       int64(cuda.gridDim.x) * tile):
            if j + (unroll - 1) * t < n:
                x0, x1, x2, x3 = load4(g, j, t)
                if unroll == 8:
                    x4, x5, x6, x7 = load4(g, j + 4 * t, t)
                s, b = _stat(s, b, x0, unscale, lo, hi, zero)
                s, b = _stat(s, b, x1, unscale, lo, hi, zero)
                s, b = _stat(s, b, x2, unscale, lo, hi, zero)
                s, b = _stat(s, b, x3, unscale, lo, hi, zero)
                if unroll == 8:
                    s, b = _stat(s, b, x4, unscale, lo, hi, zero)
                    s, b = _stat(s, b, x5, unscale, lo, hi, zero)
                    s, b = _stat(s, b, x6, unscale, lo, hi, zero)
                    s, b = _stat(s, b, x7, unscale, lo, hi, zero)
            else:  # the last, partial tile
                for i in range(j, n, t):
                    s, b = _stat(s, b, g[i], unscale, lo, hi, zero)
        s, b = _block_sum2(sh_s, sh_b, s, b)
        if cuda.threadIdx.x == 0:
            parts[cuda.blockIdx.x] = s
            parts[L.PARTIALS + cuda.blockIdx.x] = b

    return kernel


#: Loads in flight per thread (4 or 8), read at launch (bench/gpu_optim.py times both). On an
#: H100, 128M float32: 4 loads 0.236 ms (76% of copy bandwidth), 8 loads 0.197 ms (90%).
UNROLL = 8
_KERNELS = {u: _make_stats_kernel(u) for u in (4, 8)}


@cuda.jit
def _grad_stats_finish_kernel(red, parts, nparts):
    sh_s = cuda.shared.array(SHARED, float64)
    sh_b = cuda.shared.array(SHARED, float64)
    s = 0.0
    b = 0.0
    for k in range(cuda.threadIdx.x, nparts, cuda.blockDim.x):
        s += parts[k]
        b += parts[L.PARTIALS + k]
    s, b = _block_sum2(sh_s, sh_b, s, b)
    if cuda.threadIdx.x == 0:
        red[SUMSQ] += s
        red[NONFINITE] += b


def _partials(stream):
    # Private to this stream (and so reused without a race by calls queued on it); kept apart
    # from the loss kernels' scratch so neither layout constrains the other.
    return L._scratch("grad_stats", 2 * L.PARTIALS, np.float64, stream)


def grad_stats(red, g, ctl, clip_value, stream=0):
    """Add this gradient's statistics to ``red`` on the device (no host synchronization).

    Parameters
    ----------
    red : (2,) float64 device array, updated in place
        ``red[SUMSQ] += sum(clamp(g / ctl[SCALE], +-clip_value)^2)``, ``red[NONFINITE] +=``
        the number of NaN/Inf entries of ``g``.
    g : (n,) float32 or float64 device array, read
    ctl : (16,) float64 device array, read (``ctl[SCALE]``)
    clip_value : float (inf: no value clipping)
    stream : numba stream or 0

    Raises ``ValueError``, before launching, if ``red`` holds fewer than ``RED_SIZE`` or
    ``ctl`` fewer than ``CTL_SIZE`` elements.
    """
    red, g, ctl = L.as_device(red), L.as_device(g), L.as_device(ctl)
    if red.shape[0] < RED_SIZE:
        raise ValueError("red must hold at least RED_SIZE elements")
    if ctl.shape[0] < CTL_SIZE:
        raise ValueError("ctl must hold at least CTL_SIZE elements")
    n = g.shape[0]
    if n == 0:
        return
    blocks = L.grid(n, UNROLL * L.THREADS)  # a tile per thread per step (<= PARTIALS blocks)
    parts = _partials(stream)
    _KERNELS[UNROLL][blocks, L.THREADS, stream](parts, g, ctl, g.dtype.type(clip_value))
    _grad_stats_finish_kernel[1, L.THREADS, stream](red, parts, blocks)


@cuda.jit
def _scale_inplace_kernel(g, factor):
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    stride = int64(cuda.gridDim.x) * cuda.blockDim.x
    for i in range(start, g.shape[0], stride):
        g[i] = g[i] * factor


def scale_inplace(g, factor, stream=0):
    """``g *= factor`` on the device (the stand-alone norm clip).

    Parameters
    ----------
    g : (n,) float32 or float64 device array, updated in place
    factor : float (rounded to the dtype of ``g``, as on the CPU)
    stream : numba stream or 0
    """
    g = L.as_device(g)
    n = g.shape[0]
    if n == 0:
        return
    _scale_inplace_kernel[L.grid(n, L.THREADS), L.THREADS, stream](g, g.dtype.type(factor))
