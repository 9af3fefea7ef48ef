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


def copy_bandwidth(n=256 * 2**20, reps=15, inner=10):
    """Device-to-device copy bandwidth in GB/s (bytes read + written): the floor's yardstick.

    One measurement for every GPU number (the report and ``bench/gpu_*.py``): PyTorch's
    ``copy_`` of ``n`` float32 (1 GiB by default) when PyTorch has the GPU, else numba's copy,
    in rounds of ``inner`` copies queued back to back, after a settling round. numba's copy of a
    lone call underestimates it (2.1-2.5 TB/s against 2.9-3.0 on an H100 in the same run), so
    the rounds queue calls as the rounds of :func:`timed` do."""
    if config.ENABLE_CUDASIM:
        n = min(n, 2**16)
    try:
        import torch

        use_torch = torch.cuda.is_available() and not config.ENABLE_CUDASIM
    except ImportError:
        use_torch = False
    if use_torch:
        src = torch.ones(n, dtype=torch.float32, device="cuda")
        dst = torch.empty_like(src)

        def copy():
            dst.copy_(src)
    else:
        src = cuda.to_device(np.ones(n, np.float32))
        dst = cuda.device_array_like(src)
        stream = cuda.default_stream()

        def copy():
            dst.copy_to_device(src, stream=stream)
    timed(copy, 3, inner=inner, warmup=inner)  # clocks ramp up
    ms = timed(copy, reps, inner=inner)
    return 2 * 4 * n / (ms * 1e-3) / 1e9 if ms > 0 else float("nan")
