"""Variants of the Adam update and guard-pass kernels, tried outside the library (llm.c style):
grid size, elements per thread and register caps, each timed against the device-to-device copy
of the same run. Only the winner goes into ``fastml/kernels/cuda``.
Run: ``python3 bench/gpu_optim_variants.py`` on the GPU machine (see bench/gpu.sh for set-up).
"""

import functools
import importlib
import math
import os
import sys

import numpy as np
import torch
from numba import cuda, float64, int64

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from fastml.bench import gpu_timing  # noqa: E402
from fastml.kernels import step_plan as P  # noqa: E402

AD = importlib.import_module("fastml.kernels.cuda.adam")
GS = importlib.import_module("fastml.kernels.cuda.grad_stats")
GR = importlib.import_module("fastml.kernels.cuda._grad")
L = importlib.import_module("fastml.kernels.cuda._launch")

# As bench/gpu_optim.py: median ms per call, 10 calls queued per round.
timed = functools.partial(gpu_timing.timed, reps=15, inner=10, warmup=5)


@cuda.jit(device=True)
def _pre(ctl, b1w, weight_decay, decoupled, maximize, hi, dt):
    unscale = dt(ctl[P.UNSCALE])
    coef = dt(-ctl[P.CLIP_COEF] if maximize else ctl[P.CLIP_COEF])
    decay = dt(1.0 - ctl[P.LR] * weight_decay if decoupled else 1.0)
    return (unscale, coef, -hi, dt(ctl[P.C0]), dt(ctl[P.C1]), decay, dt(1.0) - b1w,
            abs(b1w) < dt(0.5))


def make_t2(**opts):
    @cuda.jit(**opts)
    def k(p, g, m, v, vmax, ctl, b1w, b2, b2w, eps, l2, weight_decay, decoupled, amsgrad,
          maximize, hi):
        if ctl[P.APPLIED] == 0.0:
            return
        dt = p.dtype.type
        unscale, coef, lo, step_size, bc2, decay, b1c, fwd = _pre(ctl, b1w, weight_decay,
                                                                  decoupled, maximize, hi, dt)
        use_l2 = weight_decay != 0.0 and not decoupled
        use_decay = weight_decay != 0.0 and decoupled
        zero = dt(0.0)
        n = p.shape[0]
        t = int64(cuda.blockDim.x)
        for j in range(int64(cuda.blockIdx.x) * 2 * t + cuda.threadIdx.x, n,
                       int64(cuda.gridDim.x) * 2 * t):
            if j + t < n:
                p0, p1 = p[j], p[j + t]
                g0, g1 = g[j], g[j + t]
                m0, m1 = m[j], m[j + t]
                v0, v1 = v[j], v[j + t]
                p0, m0, v0, w0 = AD._adam(p0, g0, m0, v0, zero, unscale, lo, hi, coef, l2,
                                          use_l2, decay, use_decay, b1w, b1c, fwd, b2, b2w, eps,
                                          step_size, bc2, amsgrad)
                p1, m1, v1, w1 = AD._adam(p1, g1, m1, v1, zero, unscale, lo, hi, coef, l2,
                                          use_l2, decay, use_decay, b1w, b1c, fwd, b2, b2w, eps,
                                          step_size, bc2, amsgrad)
                m[j], m[j + t] = m0, m1
                v[j], v[j + t] = v0, v1
                p[j], p[j + t] = p0, p1
            else:
                pi, mi, vi, w = AD._adam(p[j], g[j], m[j], v[j], zero, unscale, lo, hi, coef,
                                         l2, use_l2, decay, use_decay, b1w, b1c, fwd, b2, b2w,
                                         eps, step_size, bc2, amsgrad)
                m[j] = mi
                v[j] = vi
                p[j] = pi

    return k


def make_plain(**opts):
    @cuda.jit(**opts)
    def k(p, g, m, v, vmax, ctl, b1w, b2, b2w, eps, l2, weight_decay, decoupled, amsgrad,
          maximize, hi):
        if ctl[P.APPLIED] == 0.0:
            return
        dt = p.dtype.type
        unscale, coef, lo, step_size, bc2, decay, b1c, fwd = _pre(ctl, b1w, weight_decay,
                                                                  decoupled, maximize, hi, dt)
        use_l2 = weight_decay != 0.0 and not decoupled
        use_decay = weight_decay != 0.0 and decoupled
        zero = dt(0.0)
        start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        for i in range(start, p.shape[0], int64(cuda.gridDim.x) * cuda.blockDim.x):
            pi, mi, vi, w = AD._adam(p[i], g[i], m[i], v[i], zero, unscale, lo, hi, coef, l2,
                                     use_l2, decay, use_decay, b1w, b1c, fwd, b2, b2w, eps,
                                     step_size, bc2, amsgrad)
            m[i] = mi
            v[i] = vi
            p[i] = pi

    return k


@cuda.jit
def _stats4_kernel(parts, g, ctl, hi):
    # The guard pass with four loads in flight per thread (tiles of 4 x blockDim).
    sh_s = cuda.shared.array(256, float64)
    sh_b = cuda.shared.array(256, float64)
    dt = g.dtype.type
    unscale = dt(1.0 / ctl[P.SCALE])
    lo = -hi
    zero = dt(0.0)
    s = 0.0
    b = 0.0
    n = g.shape[0]
    t = int64(cuda.blockDim.x)
    for j in range(int64(cuda.blockIdx.x) * 4 * t + cuda.threadIdx.x, n,
                   int64(cuda.gridDim.x) * 4 * t):
        if j + 3 * t < n:
            x0, x1, x2, x3 = GR.load4(g, j, t)
            b += ((0.0 if x0 - x0 == zero else 1.0) + (0.0 if x1 - x1 == zero else 1.0)
                  + (0.0 if x2 - x2 == zero else 1.0) + (0.0 if x3 - x3 == zero else 1.0))
            y0 = float64(GR.clamp(x0 * unscale, lo, hi))
            y1 = float64(GR.clamp(x1 * unscale, lo, hi))
            y2 = float64(GR.clamp(x2 * unscale, lo, hi))
            y3 = float64(GR.clamp(x3 * unscale, lo, hi))
            s += (y0 * y0 + y1 * y1) + (y2 * y2 + y3 * y3)
        else:
            for i in range(j, n, t):
                x = g[i]
                b += 0.0 if x - x == zero else 1.0
                y = float64(GR.clamp(x * unscale, lo, hi))
                s += y * y
    s, b = GS._block_sum2(sh_s, sh_b, s, b)
    if cuda.threadIdx.x == 0:
        parts[cuda.blockIdx.x] = s
        parts[L.PARTIALS + cuda.blockIdx.x] = b


def main():
    n = 128 * 2**20
    src = torch.randn(256 * 2**20, device="cuda")
    dst = torch.empty_like(src)
    bw = 2 * src.numel() * 4 / (timed(lambda: dst.copy_(src)) * 1e-3) / 1e9
    src = dst = None
    print(f"{torch.cuda.get_device_name()}: copy {bw:.0f} GB/s", flush=True)
    t = [torch.randn(n, device="cuda") * s for s in (1.0, 1e-3, 0.0, 0.0)]
    p, g, m, v = (cuda.as_cuda_array(x) for x in t)
    ctl_h = np.zeros(P.CTL_SIZE)
    ctl_h[[P.APPLIED, P.UNSCALE, P.CLIP_COEF, P.SCALE, P.SCALE_USED]] = 1.0
    ctl_h[P.LR], ctl_h[P.C0], ctl_h[P.C1] = 1e-3, 1e-2, math.sqrt(1e-3)
    ctl = cuda.to_device(ctl_h)
    f32 = np.float32
    args = (p, g, m, v, p[:0], ctl, f32(0.1), f32(0.999), f32(0.001), f32(1e-8), f32(0.0), 0.0,
            False, False, False, f32(np.inf))

    def report(name, kernel, blocks, threads=256, nbytes=28 * n, a=args):
        ms = timed(lambda: kernel[blocks, threads](*a))
        regs = kernel.get_regs_per_thread()
        regs = list(regs.values())[0] if isinstance(regs, dict) and regs else regs
        print(f"{name:<34} {blocks:>6} x {threads:<4} {ms:7.3f} ms {nbytes / ms / 1e6:6.0f} GB/s"
              f" {100 * nbytes / ms / 1e6 / bw:5.1f}% of copy  regs {regs}", flush=True)

    for b in (1024, 2048, 4096, 8192, 16384):
        report("adam tile4 (library)", AD._adam_step_kernel, b)
    r64 = cuda.jit(max_registers=64)(AD._adam_step_kernel.py_func)
    for b in (2048, 8192):
        report("adam tile4 max_registers=64", r64, b)
    t2 = make_t2()
    for b in (1024, 2048, 4096, 8192):
        report("adam tile2", t2, b)
    plain = make_plain()
    for b in (528, 1024, 2048, 4096):
        report("adam plain", plain, b)
    report("adam plain, 512 threads", plain, 1024, 512)
    p40 = make_plain(max_registers=40)
    report("adam plain max_registers=40", p40, 1024)
    parts = cuda.device_array(2 * L.PARTIALS)
    sargs = (parts, g, ctl, f32(np.inf))
    for b in (264, 528, 1024):
        report("grad_stats (library)", GS._KERNELS[GS.UNROLL], b, nbytes=4 * n, a=sargs)
        report("grad_stats tile4", _stats4_kernel, b, nbytes=4 * n, a=sargs)


if __name__ == "__main__":
    main()
