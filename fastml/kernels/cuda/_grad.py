"""What every CUDA update kernel shares: the gradient read, PyTorch's lerp, and the tiling.

The update kernels are memory-bound, and a plain grid-stride loop leaves one element's loads in
flight per thread: the loads of the next element cannot move above this element's stores, since
the compiler cannot prove the arrays do not alias. So each thread loads ``UNROLL`` elements of
every array first (``load4``), computes, then stores (``store4``): four times the bytes in flight
for the same number of threads. A block works on tiles of ``UNROLL * blockDim.x`` elements;
thread t takes elements t, t + T, t + 2T, t + 3T of a tile, so every load is coalesced.
"""

from numba import cuda

from . import _launch as L

#: Elements per thread per tile (the device functions below hard-code four).
UNROLL = 4

#: Most blocks of an update kernel. More than the loss kernels' cap: with 72 registers a thread,
#: three 256-thread blocks fit an SM at a time, and Adam over 128M float32 on an H100 ran at 87%
#: of the device-to-device copy bandwidth with 1024 blocks and 93% with 8192 or 16384 (PyTorch's
#: fused Adam: 86%; bench/gpu_optim.py, steps queued back to back), and 94% with 16384, 96% with
#: 32768 (2026-11-26, H100). The simulator gets tiny grids.
MAX_BLOCKS = 2 if L.SIMULATOR else 32768


def update_grid(n):
    """Blocks for an update kernel over ``n`` elements (tiles of ``UNROLL * THREADS``)."""
    return max(1, min(MAX_BLOCKS, -(-n // (L.THREADS * UNROLL))))


@cuda.jit(device=True)
def load4(a, j, t):
    return a[j], a[j + t], a[j + 2 * t], a[j + 3 * t]


@cuda.jit(device=True)
def store4(a, j, t, x0, x1, x2, x3):
    a[j] = x0
    a[j + t] = x1
    a[j + 2 * t] = x2
    a[j + 3 * t] = x3


@cuda.jit(device=True)
def clamp(x, lo, hi):
    """``min(max(x, lo), hi)`` as the CPU kernels compute it: NaN stays NaN.

    Not the builtins: numba-cuda lowers float ``max``/``min`` to libdevice ``fmaxf``/``fminf``,
    which return the other operand when one is NaN, so a NaN gradient would become ``lo``. A
    comparison with NaN is false, so these selects pass NaN through.
    """
    if x < lo:
        x = lo
    if x > hi:
        x = hi
    return x


@cuda.jit(device=True)
def effective_grad(g, unscale, lo, hi, coef):
    """``clamp(g * unscale, lo, hi) * coef``; ``coef`` carries the norm clip and ``-1`` for
    ``maximize``. NaN stays NaN."""
    return clamp(g * unscale, lo, hi) * coef


@cuda.jit(device=True)
def lerp(a, b, w, one_minus_w, forward):
    # PyTorch's lerp: a + w (b - a) for |w| < 0.5 (``forward``), else b - (b - a)(1 - w). Both
    # weights come in the parameter dtype, so float32 stays float32 (a literal 1 would not).
    if forward:
        return a + w * (b - a)
    return b - (b - a) * one_minus_w
