"""The one GPU clock: CUDA events around calls queued on the default stream, used by
``fastml bench --device cuda`` (through :func:`fastml.bench.runner.cuda_clock`) and by the
scripts ``bench/gpu_*.py``, so that their numbers are measured the same way.

PyTorch and numba-cuda both launch on the default stream of the primary context by default, so
numba's events time torch ops and numba kernels alike. In numba-cuda's simulator events measure
nothing (their elapsed time is -1): wall clock around a synchronize instead, so that a dry run
at least gives positive numbers.
"""

import time

import numpy as np
from numba import config, cuda


def round_ms(fn, inner=1):
    """Milliseconds per call of ``fn`` over one round of ``inner`` calls queued back to back.

    Queued calls let the host's launch work overlap the device's, as in a training loop, so the
    idle gap before a lone launch does not count when ``inner > 1``; the clock stops once the
    device has drained them all."""
    if config.ENABLE_CUDASIM:
        cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        cuda.synchronize()
        return 1e3 * (time.perf_counter() - t0) / inner
    start, stop = cuda.event(), cuda.event()
    start.record()
    for _ in range(inner):
        fn()
    stop.record()
    stop.synchronize()
    return cuda.event_elapsed_time(start, stop) / inner


def timed(fn, reps, *, inner=1, warmup=0, spread=False):
    """Median ms per call of ``fn`` over ``reps`` rounds of :func:`round_ms` (``inner`` calls
    each); with ``spread=True``, ``(median, p90 - p10)`` of the rounds.

    ``warmup`` untimed calls come first (JIT compile, first touch of buffers, clocks ramping
    up), then a device synchronize, so that no round waits on warm-up work still queued."""
    for _ in range(warmup):
        fn()
    cuda.synchronize()
    times = [round_ms(fn, inner) for _ in range(reps)]
    median = float(np.median(times))
    if not spread:
        return median
    return median, float(np.percentile(times, 90) - np.percentile(times, 10))
