"""Probe: can fastml launch its kernels for less host time than numba-cuda's dispatcher takes?

The 2026-11-26 H100 run measured 0.3-0.9 ms of host time per fastml GPU call, about half
of it in numba-cuda's dispatch (``dispatcher.call``: launch configuration, type dispatch, and
``_prepare_args`` building every argument again). This script times, for the Adam kernel over
1M float32 (16 arguments, 6 of them arrays):

1. ``kernel[grid, block, stream](*args)``: what fastml does today;
2. ``launch(stream, config, cufunc.kernel, *prepared)`` from ``cuda.core`` with the argument list
   that numba's ``_prepare_args`` built once, reused: the floor of a cached launch;
3. the same with the argument list rebuilt per call by ``_prepare_args`` but without the
   dispatcher (type dispatch and launch configuration skipped),

and checks that all three give bitwise the same parameters as a NumPy-free repeat of (1). Host
microseconds per launch are wall clock over many launches (the device keeps up: 1M elements).
Run on the GPU machine: ``python3 bench/gpu_launch_probe.py --out DIR`` (``bench/gpu.sh`` step
``probe``). Reads numba-cuda internals (``overloads``, ``_codelibrary``, ``_prepare_args``,
``driver._to_core_stream``) of 0.30.4: a probe, not library code.
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
from numba import cuda

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fastml.kernels import step_plan as P  # noqa: E402
from fastml.kernels.cuda import _grad as GR  # noqa: E402
from fastml.kernels.cuda import adam as AD  # noqa: E402


def host_us(fn, calls=2000):
    for _ in range(50):
        fn()
    cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    t1 = time.perf_counter()
    cuda.synchronize()
    return 1e6 * (t1 - t0) / calls


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    from cuda.core import LaunchConfig, launch
    from numba.cuda._compat import CUDA_CORE_GE_1_0
    from numba.cuda.cudadrv import driver

    n = 1 << 20
    rng = np.random.default_rng(0)
    f32 = np.float32
    host = [rng.standard_normal(n).astype(f32) for _ in range(2)] + [np.zeros(n, f32)] * 2
    ctl_h = np.zeros(P.CTL_SIZE)
    ctl_h[[P.APPLIED, P.UNSCALE, P.CLIP_COEF, P.SCALE, P.SCALE_USED]] = 1.0
    ctl_h[P.LR], ctl_h[P.C0], ctl_h[P.C1] = 1e-3, 1e-3 / 0.1, math.sqrt(1 - 0.999)
    scal = (f32(0.1), f32(0.999), f32(0.001), f32(1e-8), f32(0.0), 0.0, False, False, False,
            f32(np.inf))
    stream = cuda.stream()
    grid, block = GR.update_grid(n), 256
    kern = AD._adam_step_kernel

    def fresh():
        p, g, m, v = (cuda.to_device(a, stream=stream) for a in host)
        return (p, g, m, v, p[:0], cuda.to_device(ctl_h, stream=stream)) + scal

    def run(way, steps=20):
        vals = fresh()
        way(vals)  # compiles on first use, builds what the way caches
        for _ in range(steps - 1):
            way(vals)
        stream.synchronize()
        return vals[0].copy_to_host()

    def numba_way(vals):
        kern[grid, block, stream](*vals)

    numba_way(fresh())  # compile
    k = next(iter(kern.overloads.values()))
    cufunc = k._codelibrary.get_cufunc()
    core_stream = driver._to_core_stream(stream)
    if CUDA_CORE_GE_1_0:
        config = LaunchConfig(grid=grid, block=block, shmem_size=0, is_cooperative=False)
    else:
        config = LaunchConfig(grid=grid, block=block, shmem_size=0, cooperative_launch=False)

    def prepare(vals):
        out, retr = [], []
        for t, v in zip(k.argument_types, vals, strict=True):
            k._prepare_args(t, v, core_stream, retr, out)
        return out

    cache = {}

    def cached_way(vals):
        key = id(vals)
        prepared = cache.get(key)
        if prepared is None:
            prepared = cache[key] = (vals, prepare(vals))
        launch(core_stream, config, cufunc.kernel, *prepared[1])

    def prepared_way(vals):
        launch(core_stream, config, cufunc.kernel, *prepare(vals))

    ref = run(numba_way)
    rows = {}
    for name, way in (("numba dispatcher", numba_way), ("cuda.core, args cached", cached_way),
                      ("cuda.core, args prepared per call", prepared_way)):
        same = bool(np.array_equal(run(way), ref))
        vals = fresh()
        us = host_us(lambda way=way, vals=vals: way(vals))
        rows[name] = {"host_us_per_launch": us, "bitwise_equal_to_dispatcher": same}
        print(f"{name:<36} {us:8.1f} us/launch   same result: {same}", flush=True)
    with open(os.path.join(args.out, "launch_probe.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
