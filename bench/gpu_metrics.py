"""GPU check and timing of the confusion-count and top-k kernels (one short run on a real GPU).

1. Correctness at sizes the simulator cannot reach (many blocks, the grid cap, the shared and
   the global-memory tables): counts against ``np.bincount``, weighted sums against float64
   NumPy, bitwise equal run to run.
2. Timings with CUDA events (medians after warm-up) next to the floor: the bytes the kernel
   must read over the device-to-device copy bandwidth measured in the same run; the PyTorch
   peer is ``torch.bincount(y_true * k + y_pred)``.

    python3 bench/gpu_metrics.py --out DIR      (writes gpu_metrics.json there)
"""

import argparse
import functools
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from numba import config, cuda  # noqa: E402

from fastml import metrics as M  # noqa: E402
from fastml.bench import gpu_timing  # noqa: E402
from fastml.kernels import cuda as G  # noqa: E402
from fastml.kernels.cuda import confusion as C  # noqa: E402

ROWS = []

# Median ms per call; each round queues 10 calls back to back (as bench/gpu_bench.py does).
timed = functools.partial(gpu_timing.timed, reps=20, inner=10, warmup=3)


def row(name, ms, nbytes, bw, peer=None, peer_ms=None):
    floor = nbytes / (bw * 1e9) * 1e3
    r = {"name": name, "ms": ms, "bytes": nbytes, "GBps": nbytes / ms / 1e6, "floor_ms": floor,
         "x_floor": ms / floor, "peer": peer, "peer_ms": peer_ms}
    ROWS.append(r)
    extra = f"  {peer} {peer_ms:8.3f} ms" if peer_ms else ""
    print(f"{name:<46} {ms:8.3f} ms {r['GBps']:7.0f} GB/s  x{r['x_floor']:5.2f} floor{extra}",
          flush=True)


def counts(y_true, y_pred, k, w=None, name="confusion_counts"):
    cm = cuda.to_device(np.zeros((k, k), np.int64 if w is None else np.float64))
    seen = cuda.to_device(np.zeros(k, np.bool_))
    status = cuda.to_device(np.zeros(2, np.int64))
    weight = cuda.to_device(np.zeros(0)) if w is None else w
    getattr(G, name)(cm, seen, status, y_true, y_pred, weight, 0.5)
    return cm.copy_to_host(), seen.copy_to_host(), status.copy_to_host()


def check(n, k, rng):
    yt = rng.integers(0, k, n)
    yp = np.where(rng.random(n) < 0.7, yt, rng.integers(0, k, n))
    w = rng.standard_normal(n)
    d_t, d_p, d_w = cuda.to_device(yt), cuda.to_device(yp), cuda.to_device(w)
    want = np.bincount(yt * k + yp, minlength=k * k).reshape(k, k)
    cm, seen, status = counts(d_t, d_p, k)
    assert (cm == want).all(), f"counts n={n} k={k}"
    assert status.tolist() == [-1, max(yt.max(), yp.max())], status
    want_w = np.bincount(yt * k + yp, weights=w, minlength=k * k).reshape(k, k)
    cm_w, _, _ = counts(d_t, d_p, k, d_w)
    err = np.max(np.abs(cm_w - want_w)) / np.max(np.abs(want_w))
    assert err < 1e-10, f"weighted n={n} k={k}: {err}"
    again, _, _ = counts(d_t, d_p, k, d_w)
    assert (again.view(np.int64) == cm_w.view(np.int64)).all(), "weighted not reproducible"
    bad = yt.copy()
    bad[n - 1], bad[n // 3] = k, -1
    cm_b, seen_b, status_b = counts(cuda.to_device(bad), d_p, k)
    assert status_b[0] == n // 3 and not cm_b.any() and not seen_b.any(), status_b
    scores = rng.random((min(n, 1_000_000), 7)).astype(np.float32)
    y7 = yt[:scores.shape[0]] % 7
    st = cuda.to_device(np.zeros(2))
    G.top_k_hits(st, cuda.to_device(scores), cuda.to_device(y7), cuda.to_device(np.zeros(0)), 2)
    order = np.argsort(scores, axis=1, kind="mergesort")[:, ::-1][:, :2]
    assert st.copy_to_host()[0] == (order == y7[:, None]).any(axis=1).sum(), "top-k"
    print(f"check n={n:,} k={k}: ok (weighted rel err {err:.1e})", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--n", type=int, default=100_000_000)  # issue 6: 100M labels
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(getattr(cuda.get_current_device(), "name", "simulator"), flush=True)
    rng = np.random.default_rng(0)
    t0 = time.time()
    sizes = ((3_000_017, 10), (3_000_017, 64), (1_000_003, 70), (257, 3))
    if config.ENABLE_CUDASIM:  # a dry run of the script itself
        sizes = ((3001, 10), (3001, 64), (1003, 70), (257, 3))
    for n, k in sizes:
        check(n, k, rng)
    print(f"checks: {time.time() - t0:.1f} s (compiles included)", flush=True)

    bw = gpu_timing.copy_bandwidth()
    print(f"device copy bandwidth {bw:.0f} GB/s", flush=True)
    n = args.n
    yt = rng.integers(0, 10, n)
    yp = np.where(rng.random(n) < 0.7, yt, rng.integers(0, 10, n))
    d_t, d_p = cuda.to_device(yt), cuda.to_device(yp)
    d_w = cuda.to_device(rng.random(n))
    try:
        import torch

        t_t, t_p = torch.from_numpy(yt).cuda(), torch.from_numpy(yp).cuda()
        torch_ms = timed(lambda: torch.bincount(t_t * 10 + t_p, minlength=100))
    except Exception as exc:  # noqa: BLE001 - the peer is optional
        print(f"torch peer unavailable: {exc}")
        torch_ms = None
    for k in (10, 64):
        cm = cuda.to_device(np.zeros((k, k), np.int64))
        cmw = cuda.to_device(np.zeros((k, k)))
        seen = cuda.to_device(np.zeros(k, np.bool_))
        status = cuda.to_device(np.zeros(2, np.int64))
        empty = cuda.to_device(np.zeros(0))
        ms = timed(lambda cm=cm, seen=seen, status=status, empty=empty:
                   G.confusion_counts(cm, seen, status, d_t, d_p, empty, 0.5))
        row(f"confusion_counts {n:,} int64 k={k}", ms, 16 * n, bw, "torch.bincount", torch_ms)
        ms = timed(lambda cmw=cmw, seen=seen, status=status:
                   G.confusion_counts(cmw, seen, status, d_t, d_p, d_w, 0.5))
        row(f"confusion_counts weighted {n:,} k={k}", ms, 24 * n, bw)
    # More counting blocks than the default (COUNT_BLOCKS), k = 10: occupancy against the cost
    # of flushing each block's table.
    k = 10
    cm = cuda.to_device(np.zeros((k, k), np.int64))
    seen, status = cuda.to_device(np.zeros(k, np.bool_)), cuda.to_device(np.zeros(2, np.int64))
    empty = cuda.to_device(np.zeros(0))
    default = C.COUNT_BLOCKS
    for blocks in (1024, 2048, 4096):
        C.COUNT_BLOCKS = blocks
        try:
            ms = timed(lambda: G.confusion_counts(cm, seen, status, d_t, d_p, empty, 0.5))
            row(f"  variant confusion_counts k=10, {blocks} blocks", ms, 16 * n, bw)
        finally:
            C.COUNT_BLOCKS = default
    k = 70  # above the shared-memory table: the global-memory fallback
    cm = cuda.to_device(np.zeros((k, k), np.int64))
    seen, status = cuda.to_device(np.zeros(k, np.bool_)), cuda.to_device(np.zeros(2, np.int64))
    ms = timed(lambda: G.confusion_counts(cm, seen, status, d_t, d_p, cuda.to_device(np.zeros(0)),
                                          0.5))
    row(f"confusion_counts {n:,} int64 k=70 (global)", ms, 16 * n, bw)
    scores = cuda.to_device(rng.random((n // 10, 10)).astype(np.float32))
    y10 = cuda.to_device(yt[: n // 10])
    st = cuda.to_device(np.zeros(2))
    empty = cuda.to_device(np.zeros(0))
    ms = timed(lambda: G.top_k_hits(st, scores, y10, empty, 3))
    row(f"top_k_hits ({n // 10:,}, 10) float32 k=3", ms, (n // 10) * 48, bw)
    ms = timed(lambda: M.f1(d_t, d_p, average="macro"), reps=10)
    row(f"metrics.f1 macro (API, incl. host copies) {n:,}", ms, 16 * n, bw)
    with open(os.path.join(args.out, "gpu_metrics.json"), "w") as f:
        json.dump({"copy_GBps": bw, "rows": ROWS}, f, indent=1)


if __name__ == "__main__":
    main()
