"""Launch geometry, per-stream device scratch and the deterministic block/grid reductions shared
by the CUDA launchers.

Reductions never use float atomics: each block writes one float64 partial sum into a scratch
buffer, then a one-block kernel adds the partials in a fixed order. The number of blocks depends
only on the problem size (a fixed cap, not the device's SM count), so a sum is bitwise the same on
every run and every card.

Under numba-cuda's simulator (``NUMBA_ENABLE_CUDASIM=1``) every simulated thread is a Python
thread, so the launchers shrink the grid to a couple of 32-thread blocks. Nothing else differs.
"""

import threading

import numpy as np
from numba import config, cuda, float64

SIMULATOR = bool(config.ENABLE_CUDASIM)

#: Threads per block of the element-wise kernels and of the finishing kernels (a power of two).
THREADS = 32 if SIMULATOR else 256
#: Upper bound on blocks per grid: a grid-stride loop covers the rest. 1024 x 256 threads fill an
#: H100 (132 SMs x 2048 threads) about once; four waves hid more memory latency there: MSE over
#: 256M float32 ran at 84% of the copy bandwidth with 1024 blocks and 90% with 4096 (8192: 90%).
MAX_BLOCKS = 2 if SIMULATOR else 4096
#: Static shared-memory length of the kernels that run THREADS threads (>= THREADS).
SHARED = 256

# Layout of the float64 scratch buffer (offsets in elements). Each region holds one partial sum
# per block of the kernel that fills it.
PARTIALS = 8192  # >= MAX_BLOCKS, with room for the larger grids bench/gpu_bench.py times
LOSS_OFF = 0  # loss partial sums
DENOM_OFF = PARTIALS  # cross-entropy: sum of w[y] over kept rows
KEPT_OFF = 2 * PARTIALS  # cross-entropy: number of kept rows
WSUM_OFF = 3 * PARTIALS  # cross-entropy: sum of the class weights
FIRST_OFF = 4 * PARTIALS  # cross-entropy: the first bad label's index (float64, exact)
DIVISOR = 5 * PARTIALS  # cross-entropy: D for a mean (read by the main and finishing kernels)
WTOTAL = DIVISOR + 1  # cross-entropy: sum of the class weights, reduced
BAD_LABEL = DIVISOR + 2  # cross-entropy: 1.0 when the label check found a bad label, else 0.0
SCRATCH_LEN = DIVISOR + 3

_MAX_CACHED = 64
_local = threading.local()


def grid(work, per_block):
    """Blocks for ``work`` items at ``per_block`` items per block (per grid-stride step)."""
    return max(1, min(MAX_BLOCKS, -(-work // per_block)))


def as_device(a):
    """A numba device array over ``a`` (any ``__cuda_array_interface__`` object), zero-copy."""
    return a if hasattr(a, "copy_to_host") else cuda.as_cuda_array(a)


def stream_key(stream):
    """A hashable identity of a numba stream (its handle; 0 for the default stream)."""
    if isinstance(stream, int):
        return stream
    handle = getattr(stream, "handle", None)
    if handle is None:  # the simulator's streams have no handle
        return id(stream)
    try:
        return int(getattr(handle, "value", handle) or 0)
    except (TypeError, ValueError):
        return id(stream)


def _scratch(kind, length, dtype, stream):
    # One buffer per (context, stream, host thread): kernels queued on one stream run in order,
    # so consecutive calls can reuse it without a race, and nothing is allocated (or freed, which
    # would synchronize) per call. The host thread is part of the key because with per-thread
    # default streams, stream 0 of two threads are two streams. The cached value keeps the
    # context and stream objects alive, so their ids and handles cannot be reused meanwhile.
    cache = _local.__dict__.setdefault("cache", {})
    ctx = None if SIMULATOR else cuda.current_context()
    key = (kind, id(ctx), stream_key(stream))
    hit = cache.get(key)
    if hit is not None:
        return hit[2]
    if len(cache) >= _MAX_CACHED:
        cache.pop(next(iter(cache)))
    buf = cuda.device_array(length, dtype=dtype, stream=stream)
    cache[key] = (ctx, stream, buf)
    return buf


def scratch(stream=0):
    """The float64 scratch buffer (``SCRATCH_LEN`` long) private to this stream."""
    return _scratch("f8", SCRATCH_LEN, np.float64, stream)


@cuda.jit
def _set_first_kernel(first, n):
    first[0] = n


def first_index(n, stream=0, key="i8"):
    """This stream's one-element int64 scratch ``key``, set to ``n`` on the device: a scan for
    the first bad element keeps the smallest bad index there (an integer atomic min, the same
    answer every run); ``n`` means none was found."""
    first = _scratch(key, 1, np.int64, stream)
    _set_first_kernel[1, 1, stream](first, n)
    return first


@cuda.jit(device=True)
def publish(record, i, value):
    """``record = [i, value]`` for a host that polls it without synchronizing (mapped memory,
    ``fastml._device_errors``): ``record[0]`` is written last, after a system-wide fence, so the
    record is complete once it changes."""
    record[1] = value
    cuda.threadfence_system()
    record[0] = i


@cuda.jit(device=True)
def block_sum(sh, value):
    """Sum of ``value`` over the block, returned to every thread. Every thread must call it.

    ``blockDim.x`` must be a power of two no larger than ``sh``. The tree adds in a fixed order,
    so the result does not depend on thread timing.
    """
    t = cuda.threadIdx.x
    cuda.syncthreads()  # a previous call's result may still be being read from sh[0]
    sh[t] = value
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if t < stride:
            sh[t] += sh[t + stride]
        cuda.syncthreads()
        stride //= 2
    return sh[0]


@cuda.jit(device=True)
def block_min(sh, value):
    """Minimum of ``value`` (float64) over the block, returned to every thread; as block_sum."""
    t = cuda.threadIdx.x
    cuda.syncthreads()
    sh[t] = value
    cuda.syncthreads()
    stride = cuda.blockDim.x // 2
    while stride > 0:
        if t < stride and sh[t + stride] < sh[t]:
            sh[t] = sh[t + stride]
        cuda.syncthreads()
        stride //= 2
    return sh[0]


# One block adds the per-block partials: thread t takes partials t, t + T, ... in order, then a
# shared-memory tree. The loss is written on the device, so a reduced loss never costs a host
# round trip.
@cuda.jit
def _sum_partials_kernel(loss, buf, offset, nparts, loss_factor, use_divisor):
    sh = cuda.shared.array(SHARED, float64)
    s = 0.0
    for k in range(cuda.threadIdx.x, nparts, cuda.blockDim.x):
        s += buf[offset + k]
    total = block_sum(sh, s)
    if cuda.threadIdx.x == 0:
        total = total * loss_factor
        if use_divisor:
            total = total / buf[DIVISOR]
        loss[0] = total


def sum_partials(loss, buf, nparts, loss_factor, stream, use_divisor=False):
    """``loss[0] = sum(buf[:nparts]) * loss_factor`` (divided by ``buf[DIVISOR]`` if
    ``use_divisor``)."""
    _sum_partials_kernel[1, THREADS, stream](loss, buf, LOSS_OFF, nparts, float(loss_factor),
                                             use_divisor)
