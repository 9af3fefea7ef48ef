"""Host time of fastml's GPU calls: what a training loop pays in Python per call.

For each call (PyTorch CUDA tensors in, as a training loop has them) it prints the host time per
call (wall clock of a loop of calls small enough for the device to keep up, so the host is the
limit), the same for the PyTorch peer, and the 25 most expensive functions under cProfile, so
that the next change can aim at the largest part. Run by bench/gpu.sh (step ``host``); writes
``host.txt`` into --out.
"""

import argparse
import cProfile
import io
import os
import pstats
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import fastml  # noqa: E402

CALLS = 300


def host_us(fn, calls=CALLS):
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    return 1e6 * (t1 - t0) / calls, 1e6 * (t2 - t0) / calls


def profile(fn, calls=CALLS):
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        fn()
    prof.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
    return s.getvalue()


def cases():
    dev = "cuda"
    n = 1 << 20
    p, t = torch.randn(n, device=dev), torch.randn(n, device=dev)
    out = torch.empty_like(p)
    pt = p.clone().requires_grad_()

    def torch_mse():
        pt.grad = None
        F.mse_loss(pt, t).backward()

    yield "mse 1M", lambda: fastml.mse(p, t, out=out), torch_mse

    x = torch.randn(8192, 1000, device=dev)
    y = torch.randint(0, 1000, (8192,), device=dev)
    gx = torch.empty_like(x)
    xt = x.clone().requires_grad_()

    def torch_ce():
        xt.grad = None
        F.cross_entropy(xt, y).backward()

    yield "cross_entropy (8192, 1000)", lambda: fastml.cross_entropy(x, y, out=gx), torch_ce

    w, g = torch.randn(n, device=dev), torch.randn(n, device=dev) * 1e-3
    opt = fastml.Adam(w, lr=1e-3)
    tw = w.clone().requires_grad_()
    tw.grad = g.clone()
    topt = torch.optim.Adam([tw], lr=1e-3, fused=True)
    yield "Adam.step 1M", lambda: opt.step(g), topt.step

    gopt = fastml.Adam(w.clone(), lr=1e-3,
                       guard=fastml.Guard(clip_norm=1.0, scaler=fastml.LossScaler()))

    def torch_guarded():
        torch.nn.utils.clip_grad_norm_([tw], 1.0, foreach=True)
        topt.step()

    yield "guarded Adam.step 1M", lambda: gopt.step(g), torch_guarded

    flat = fastml.FlatParams({f"w{i}": (1000,) for i in range(100)}, dtype=np.float32,
                             device="cuda")
    fopt = fastml.Adam(flat, lr=1e-3)
    yield "Adam.step FlatParams 100 x 1000", fopt.step, None

    k = 10
    yt = torch.randint(0, k, (n,), device=dev)
    yp = torch.randint(0, k, (n,), device=dev)
    cm = fastml.metrics.ConfusionMatrix(k)
    yield "ConfusionMatrix.update 1M", lambda: cm.update(yt, yp), (
        lambda: torch.bincount(yt * k + yp, minlength=k * k))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    lines = []
    details = []
    for name, fn, peer in cases():
        host, total = host_us(fn)
        peer_host = host_us(peer)[0] if peer is not None else float("nan")
        line = (f"{name:<34} fastml host {host:8.1f} us/call (with drain {total:8.1f})   "
                f"torch host {peer_host:8.1f} us/call")
        print(line, flush=True)
        lines.append(line)
        details.append(f"===== {name}\n{profile(fn)}")
    with open(os.path.join(args.out, "host.txt"), "w") as f:
        f.write("\n".join(lines) + "\n\n" + "\n".join(details))


if __name__ == "__main__":
    main()
