"""GPU benchmarks of the optimizer kernels, timed with CUDA events (medians after warm-up).

Rows: each update kernel over 128M float32 parameters (bytes it must move / time, as a fraction
of the device-to-device copy bandwidth measured in the same run), the Adam kernel at other grid
sizes and a plain one-element-per-iteration variant (is the 4-element tiling worth it?), PyTorch's
fused Adam, the whole ``opt.step()`` unguarded and guarded, and the host time of ``step()``
(which should not wait for the device). Needs PyTorch (events, the copy and the peer).
Run: ``python3 bench/gpu_optim.py --out DIR`` on the GPU machine (see bench/gpu.sh for set-up).
"""

import argparse
import functools
import importlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
from numba import cuda, int64

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import fastml  # noqa: E402
from fastml.bench import gpu_timing  # noqa: E402
from fastml.kernels import cuda as G  # noqa: E402
from fastml.kernels import step_plan as P  # noqa: E402

AD = importlib.import_module("fastml.kernels.cuda.adam")
GR = importlib.import_module("fastml.kernels.cuda._grad")
GS = importlib.import_module("fastml.kernels.cuda.grad_stats")
DEFAULT_UNROLL = GS.UNROLL
LA = importlib.import_module("fastml.kernels.cuda._launch")
DEFAULT_BLOCKS = LA.MAX_BLOCKS

ROWS = []

# Median ms per call; each round queues 10 calls back to back, as a training loop does, so an
# idle gap before a lone launch does not count (see gpu_timing.round_ms).
timed = functools.partial(gpu_timing.timed, reps=15, inner=10, warmup=5)


def row(name, ms, nbytes, bw, note=""):
    pct = 100 * nbytes / (bw * 1e9) * 1e3 / ms if nbytes else float("nan")
    ROWS.append({"name": name, "ms": ms, "bytes": nbytes, "GBps": nbytes / ms / 1e6 if nbytes
                 else None, "pct_of_copy": pct, "note": note})
    print(f"{name:<52} {ms:8.3f} ms  {nbytes / ms / 1e6 if nbytes else 0:7.0f} GB/s  "
          f"{pct:5.1f}% of copy  {note}", flush=True)


@cuda.jit
def _adam_plain_kernel(p, g, m, v, vmax, ctl, b1w, b2, b2w, eps, l2, weight_decay, decoupled,
                       amsgrad, maximize, hi):
    # The same element math as fastml's kernel, one element per grid-stride iteration.
    if ctl[P.APPLIED] == 0.0:
        return
    dt = p.dtype.type
    unscale = dt(ctl[P.UNSCALE])
    coef = dt(-ctl[P.CLIP_COEF] if maximize else ctl[P.CLIP_COEF])
    lo = -hi
    step_size = dt(ctl[P.C0])
    bc2_sqrt = dt(ctl[P.C1])
    decay = dt(1.0 - ctl[P.LR] * weight_decay if decoupled else 1.0)
    use_l2 = weight_decay != 0.0 and not decoupled
    use_decay = weight_decay != 0.0 and decoupled
    b1c = dt(1.0) - b1w
    b1_fwd = abs(b1w) < dt(0.5)
    zero = dt(0.0)
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    for i in range(start, p.shape[0], int64(cuda.gridDim.x) * cuda.blockDim.x):
        w = vmax[i] if amsgrad else zero
        pi, mi, vi, w = AD._adam(p[i], g[i], m[i], v[i], w, unscale, lo, hi, coef, l2, use_l2,
                                 decay, use_decay, b1w, b1c, b1_fwd, b2, b2w, eps, step_size,
                                 bc2_sqrt, amsgrad)
        m[i] = mi
        v[i] = vi
        p[i] = pi


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--n", type=int, default=128 * 2**20)
    args = ap.parse_args()
    n = args.n
    f32 = np.float32

    bw = gpu_timing.copy_bandwidth()
    print(f"{torch.cuda.get_device_name()}: device-to-device copy {bw:.0f} GB/s", flush=True)

    tp, tg = torch.randn(n, device="cuda"), torch.randn(n, device="cuda") * 1e-3
    tm, tv = torch.zeros(n, device="cuda"), torch.zeros(n, device="cuda")
    p, g, m, v = (cuda.as_cuda_array(t) for t in (tp, tg, tm, tv))
    empty = p[:0]
    ctl_h = np.zeros(P.CTL_SIZE)
    ctl_h[[P.APPLIED, P.UNSCALE, P.CLIP_COEF, P.SCALE, P.SCALE_USED]] = 1.0
    ctl_h[P.LR], ctl_h[P.C0], ctl_h[P.C1] = 1e-3, 1e-3 / 0.1, math.sqrt(1 - 0.999)
    ctl = cuda.to_device(ctl_h)

    def adam():
        G.adam_step(p, g, m, v, empty, ctl, 0.9, 0.999, 1e-8, 0.0, False, False, False, math.inf)

    row("adam_step kernel fp32 (launcher, default grid)", timed(adam), 28 * n, bw,
        f"grid {GR.update_grid(n)} x 256")
    try:
        regs = AD._adam_step_kernel.get_regs_per_thread()
        print(f"adam kernel registers/thread: {regs}", flush=True)
    except Exception as exc:  # pragma: no cover - informative only
        print("registers: n/a", exc)
    scal = (f32(0.1), f32(0.999), f32(0.001), f32(1e-8), f32(0.0), 0.0, False, False, False,
            f32(np.inf))
    for blocks in (1024, 8192, 16384, 32768):
        ms = timed(lambda b=blocks: AD._adam_step_kernel[b, 256](p, g, m, v, empty, ctl, *scal))
        row(f"  adam kernel, 4 per thread, {blocks} x 256", ms, 28 * n, bw)
    for blocks in (1024, 4096, 16384, -(-n // 256)):
        ms = timed(lambda b=blocks: _adam_plain_kernel[b, 256](p, g, m, v, empty, ctl, *scal))
        row(f"  adam kernel, plain grid-stride, {blocks} x 256", ms, 28 * n, bw)

    buf = cuda.as_cuda_array(torch.zeros(n, device="cuda"))
    row("sgd_step momentum fp32", timed(lambda: G.sgd_step(
        p, g, buf, ctl, 0.9, 0.0, False, 0.0, False, math.inf)), 20 * n, bw)
    red = cuda.to_device(np.zeros(2))
    row("grad_stats fp32 (norm + finiteness)", timed(lambda: G.grad_stats(red, g, ctl, math.inf)),
        4 * n, bw)
    for unroll in (4, 8):  # the guard pass's loads in flight per thread (GS.UNROLL)
        GS.UNROLL = unroll
        row(f"  grad_stats, {unroll} loads in flight per thread",
            timed(lambda: G.grad_stats(red, g, ctl, math.inf)), 4 * n, bw)
    GS.UNROLL = DEFAULT_UNROLL
    for blocks in (2048, 8192):
        LA.MAX_BLOCKS = blocks
        row(f"  grad_stats, 4 loads, grid {blocks} x 256",
            timed(lambda: G.grad_stats(red, g, ctl, math.inf)), 4 * n, bw)
        GS.UNROLL = 8
        row(f"  grad_stats, 8 loads, grid {blocks} x 256",
            timed(lambda: G.grad_stats(red, g, ctl, math.inf)), 4 * n, bw)
        GS.UNROLL = DEFAULT_UNROLL
    LA.MAX_BLOCKS = DEFAULT_BLOCKS

    tpp = tp.clone().requires_grad_()
    tpp.grad = tg.clone()
    topt = torch.optim.Adam([tpp], lr=1e-3, fused=True)
    row("torch Adam fused=True (peer)", timed(topt.step), 28 * n, bw)
    del tpp, topt

    opt = fastml.Adam(p, lr=1e-3)
    row("fastml.Adam.step (g a numba device array)", timed(lambda: opt.step(g)), 28 * n, bw)
    gopt = fastml.Adam(cuda.as_cuda_array(tp.clone()), lr=fastml.schedules.cosine(1e-3, 1000),
                       guard=fastml.Guard(clip_norm=1.0, scaler=fastml.LossScaler()))
    row("guarded Adam.step (finite+clip_norm+scaler+cosine)", timed(lambda: gopt.step(g)),
        32 * n, bw)
    for unroll in (4, 8):
        GS.UNROLL = unroll
        row(f"  guarded Adam.step, grad_stats {unroll} loads per thread",
            timed(lambda: gopt.step(g)), 32 * n, bw)
    GS.UNROLL = DEFAULT_UNROLL
    LA.MAX_BLOCKS = 8192
    row("  guarded Adam.step, grad_stats grid 8192 x 256", timed(lambda: gopt.step(g)), 32 * n, bw)
    LA.MAX_BLOCKS = DEFAULT_BLOCKS
    row("fastml.Adam.step (g a torch tensor)", timed(lambda: opt.step(tg)), 28 * n, bw)

    # Host time of step(): it should queue work and return, not wait for the device.
    torch.cuda.synchronize()
    k = 20
    t0 = time.perf_counter()
    infos = [gopt.step(g) for _ in range(k)]
    host_ms = (time.perf_counter() - t0) * 1e3 / k
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    drain_ms = (time.perf_counter() - t1) * 1e3
    print(f"guarded step(): {host_ms:.3f} ms host per call; {drain_ms:.1f} ms to drain "
          f"{k} queued steps; last step {infos[-1].step}", flush=True)
    ROWS.append({"name": "guarded step host ms/call", "ms": host_ms, "drain_ms": drain_ms})

    # A model of 1000 tensors of 100k params: fastml steps one FlatParams (one launch), torch
    # fused Adam the 1000 tensors (issue 3: fastml under 40% of torch's time).
    tensors, size = 1000, 100_000
    flat = fastml.FlatParams({f"t{i}": (size,) for i in range(tensors)}, device="cuda")
    flat_g = torch.as_tensor(flat.grad.data, device="cuda")
    flat_g.copy_(torch.randn(tensors * size, device="cuda") * 1e-3)
    fopt = fastml.Adam(flat, lr=1e-3)
    flat_ms = timed(lambda: fopt.step())
    row(f"fastml.Adam.step FlatParams {tensors}x{size}", flat_ms, 28 * tensors * size, bw)
    tps = [torch.randn(size, device="cuda").requires_grad_() for _ in range(tensors)]
    for t in tps:
        t.grad = torch.randn(size, device="cuda") * 1e-3
    topt = torch.optim.Adam(tps, lr=1e-3, fused=True)
    torch_ms = timed(topt.step)
    row(f"torch Adam fused=True over {tensors} tensors of {size}", torch_ms,
        28 * tensors * size, bw, f"fastml/torch = {flat_ms / torch_ms:.2f} (target < 0.40)")

    with open(os.path.join(args.out, "gpu_optim.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "copy_GBps": bw, "rows": ROWS}, f,
                  indent=1)


if __name__ == "__main__":
    main()
