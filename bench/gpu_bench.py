"""GPU benchmarks against PyTorch, timed with CUDA events (medians after warm-up).

Every row reports the time, the bytes the kernel must move, the floor (those bytes over the
device-to-device copy bandwidth measured in the same run) and the PyTorch peer's time.
Run by bench/gpu.sh; writes gpu_bench.json into --out.
"""

import argparse
import functools
import json
import os
import sys
import traceback

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import fastml  # noqa: E402
from fastml.bench import gpu_timing  # noqa: E402
from fastml.kernels.cuda import _launch as L  # noqa: E402
from fastml.kernels.cuda import cross_entropy as CE  # noqa: E402
from fastml.kernels.cuda import cross_entropy_rows as CR  # noqa: E402

# Rows report (median ms per call, p90 - p10 of the rounds). Each round queues 10 calls back to
# back, as a training loop does, for fastml and PyTorch alike: the idle gap before a lone launch
# (host time) does not count; bench/gpu_host.py measures the host side.
timed = functools.partial(gpu_timing.timed, reps=20, inner=10, warmup=3, spread=True)


ROWS = []


def row(name, ms, spread, nbytes, bw, peer_name=None, peer_ms=None):
    floor = nbytes / (bw * 1e9) * 1e3
    r = {"name": name, "ms": ms, "spread_ms": spread, "bytes": nbytes, "GBps": nbytes / ms / 1e6,
         "floor_ms": floor, "x_floor": ms / floor, "pct_of_copy_bw": 100 * floor / ms,
         "peer": peer_name, "peer_ms": peer_ms,
         "speedup_vs_peer": (peer_ms / ms) if peer_ms else None}
    ROWS.append(r)
    peer = f"  {peer_name} {peer_ms:8.3f} ms  x{peer_ms / ms:5.2f}" if peer_ms else ""
    print(f"{name:<44} {ms:8.3f} ms  {r['GBps']:7.0f} GB/s  {r['pct_of_copy_bw']:5.1f}% of copy"
          f"{peer}", flush=True)


def bench_adam(bw):
    n = 128 * 2**20
    p = torch.randn(n, device="cuda")
    g = torch.randn(n, device="cuda") * 1e-3
    opt = fastml.Adam(p, lr=1e-3)
    ms, sp = timed(lambda: opt.step(g))
    tp = p.clone().requires_grad_()
    tp.grad = g.clone()
    topt = torch.optim.Adam([tp], lr=1e-3, fused=True)
    tms, _ = timed(topt.step)
    row("Adam fp32 128M params", ms, sp, 28 * n, bw, "torch fused", tms)
    guarded = fastml.Adam(p.clone(), lr=1e-3,
                          guard=fastml.Guard(clip_norm=1.0, scaler=fastml.LossScaler()))
    gms, gsp = timed(lambda: guarded.step(g))
    row("guarded Adam (finite+clip_norm+scaler) 128M", gms, gsp, 32 * n, bw, "fastml unguarded", ms)


def bench_flat(bw):
    k, m = 1000, 100_000
    flat = fastml.FlatParams({f"w{i}": (m,) for i in range(k)}, dtype=np.float32, device="cuda")
    tdata = torch.as_tensor(flat.data, device="cuda")
    tdata.normal_()
    torch.as_tensor(flat.grad.data, device="cuda").normal_()
    opt = fastml.Adam(flat, lr=1e-3)
    ms, sp = timed(lambda: opt.step())
    tps = [torch.randn(m, device="cuda", requires_grad=True) for _ in range(k)]
    for t in tps:
        t.grad = torch.randn(m, device="cuda")
    topt = torch.optim.Adam(tps, lr=1e-3, fused=True)
    tms, _ = timed(topt.step)
    row("Adam FlatParams 1000 x 100k", ms, sp, 28 * k * m, bw, "torch fused 1000 tensors", tms)


def bench_cross_entropy(bw):
    for n, c in ((8192, 32000), (65536, 1000)):
        x = torch.randn(n, c, device="cuda")
        y = torch.randint(0, c, (n,), device="cuda")
        out = torch.empty_like(x)
        ms, sp = timed(lambda x=x, y=y, out=out: fastml.cross_entropy(x, y, out=out))
        xt = x.clone().requires_grad_()

        def torch_ce(xt=xt, y=y):
            xt.grad = None
            F.cross_entropy(xt, y).backward()

        tms, _ = timed(torch_ce)
        row(f"cross_entropy fwd+bwd ({n}, {c})", ms, sp, 8 * n * c, bw, "F.cross_entropy", tms)
        # The kernels and their knobs (bench/NOTES.md: next variants), each against the default.
        for knobs in CE_VARIANTS:
            name = " ".join(f"{mod.__name__.rsplit('.', 1)[1]}.{attr}={v}"
                            for (mod, attr), v in knobs.items())
            before = {key: getattr(*key) for key in knobs}
            try:
                for (mod, attr), v in knobs.items():
                    setattr(mod, attr, v)
                vms, vsp = timed(lambda x=x, y=y, out=out: fastml.cross_entropy(x, y, out=out))
                row(f"  variant {name}", vms, vsp, 8 * n * c, bw, "library default", ms)
            except Exception:  # noqa: BLE001 - a variant that fails must not hide the rest
                traceback.print_exc()
            finally:
                for (mod, attr), v in before.items():
                    setattr(mod, attr, v)


# Cross-entropy variants, each a set of module settings. The streaming kernel at 16 columns per
# thread under a 64-register cap was the fastest on (8192, 32000) on an H100 (1.80 ms); the
# register kernel (cross_entropy_rows.py) with K = 32 or 64 values per thread (ROW_BYTES 128 or
# 256), under the register caps ptxas was run with (bench/ptx_report.py).
_ROWS = (CE, "ROWS_IN_REGISTERS")
CE_VARIANTS = [
    {(CE, "COLUMNS_PER_THREAD"): 16, (CE, "MAX_REGISTERS"): 64},
    {_ROWS: True, (CR, "ROW_BYTES"): 128, (CR, "MAX_REGISTERS"): None},
    {_ROWS: True, (CR, "ROW_BYTES"): 128, (CR, "MAX_REGISTERS"): 80},
    {_ROWS: True, (CR, "ROW_BYTES"): 128, (CR, "MAX_REGISTERS"): 64},
    {_ROWS: True, (CR, "ROW_BYTES"): 256, (CR, "MAX_REGISTERS"): 128},
    {_ROWS: True, (CR, "ROW_BYTES"): 256, (CR, "MAX_REGISTERS"): None},
]


def bench_mse(bw):
    n = 256 * 2**20
    p = torch.randn(n, device="cuda")
    t = torch.randn(n, device="cuda")
    out = torch.empty_like(p)
    ms, sp = timed(lambda: fastml.mse(p, t, out=out))
    pt = p.clone().requires_grad_()

    def torch_mse():
        pt.grad = None
        F.mse_loss(pt, t).backward()

    tms, _ = timed(torch_mse)
    row("mse fwd+bwd 256M", ms, sp, 12 * n, bw, "F.mse_loss", tms)
    # Grids of more blocks than the default one wave (the update kernels gained from 16384).
    default = L.MAX_BLOCKS
    for blocks in (1024, 8192):
        L.MAX_BLOCKS = blocks
        try:
            vms, vsp = timed(lambda: fastml.mse(p, t, out=out))
            row(f"  variant mse grid {blocks} x 256", vms, vsp, 12 * n, bw, "library default", ms)
        finally:
            L.MAX_BLOCKS = default


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    bw = gpu_timing.copy_bandwidth()
    print(f"{torch.cuda.get_device_name()}: device-to-device copy {bw:.0f} GB/s", flush=True)
    for fn in (bench_adam, bench_flat, bench_cross_entropy, bench_mse):
        try:
            fn(bw)
        except Exception:
            traceback.print_exc()
        torch.cuda.empty_cache()
    with open(os.path.join(args.out, "gpu_bench.json"), "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "copy_GBps": bw, "rows": ROWS}, f,
                  indent=1)


if __name__ == "__main__":
    main()
