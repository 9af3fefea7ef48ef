"""Numbered variants of the float32 softmax cross-entropy kernel (llm.c style), timed together.

Not a pytest file: ``.venv/bin/python bench/ce_variants.py [--rounds 25] [--only v0,v4]
[--quiet] [--in-place] [--compute]``.
Each variant is the library kernel cut down to the benchmarked case (mean, no weight, no
smoothing, no ignored rows), so only the loop structure differs. All rounds are interleaved with
the read-1-write-1 floor kernel, so machine noise hits every row alike; compare the ``x floor``
column, not the milliseconds. The winner (v4) is what fastml/kernels/cpu/cross_entropy.py runs;
bench/NOTES.md logs the numbers. ``--compute`` instead times one thread on L3-resident rows
(min over calls): the compute cost per logit, without memory.
"""

import argparse
import math
import os
import sys
import time
import warnings

import numpy as np
from numba import njit, prange

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fastml.kernels.cpu._jit import CHUNK, FASTMATH, inline  # noqa: E402
from fastml.kernels.cpu._math import (  # noqa: E402
    fast_exp,
    fast_exp_nonpos,
    make_prefetch,
    maximum,
)

parallel = njit(nogil=True, fastmath=FASTMATH, parallel=True)
# numba's SSA check trips over the inlined conditional expressions below; harmless here.
warnings.filterwarnings("ignore", message=".*is not in scope")
SUM_BLOCK = 256


_prefetch_l2 = make_prefetch(0, 2)
_prefetch_l1 = make_prefetch(0, 3)
_prefetchw_l2 = make_prefetch(1, 2)


def make_variant(use_maximum, scale_in_dtype, nonpos_exp, sum_mode, one_name, prefetch=0,
                 ahead=1):
    """sum_mode: "fused64" (exp and float64 sum in one loop), "split64" (two loops),
    "block32" (float32 sums over blocks of SUM_BLOCK, added in float64). prefetch: 0 none, 1 the
    logits row ``ahead`` rows on into L2, 2 into L1, 3 into L2 plus its gradient row for writing,
    4 into L2 plus its gradient row for reading, 5 into L2 plus the current gradient row for
    writing before the row max.
    """

    @inline
    def exp_sum(g, src, m):
        c = src.shape[0]
        dt = src.dtype.type
        s = 0.0
        if sum_mode == "fused64":
            for j in range(c):
                e = fast_exp_nonpos(src[j] - m) if nonpos_exp else fast_exp(src[j] - m)
                g[j] = e
                s += np.float64(e)
        elif sum_mode == "split64":
            for j in range(c):
                g[j] = fast_exp_nonpos(src[j] - m) if nonpos_exp else fast_exp(src[j] - m)
            for j in range(c):
                s += np.float64(g[j])
        else:
            for j0 in range(0, c, SUM_BLOCK):
                gb = g[j0:j0 + SUM_BLOCK]
                sb = dt(0.0)
                for j in range(gb.shape[0]):
                    e = fast_exp_nonpos(src[j0 + j] - m)
                    gb[j] = e
                    sb += e
                s += np.float64(sb)
        return s

    @parallel
    def kernel(grad, logits, labels):
        n, c = logits.shape
        dt = logits.dtype.type
        gf = 1.0 / n
        in_place = one_name and grad.ctypes.data == logits.ctypes.data
        rows = max(1, CHUNK // c)
        nchunks = (n + rows - 1) // rows
        partial = np.empty(nchunks)
        for chunk in prange(nchunks):
            acc = 0.0
            for i in range(chunk * rows, min(n, (chunk + 1) * rows)):
                x = logits[i]
                g = grad[i]
                y = labels[i]
                xy = np.float64(x[y])
                if prefetch == 5:
                    for j in range(0, c, 16):
                        _prefetchw_l2(g, j)
                m = x[0]
                if use_maximum:
                    for j in range(1, c):
                        m = maximum(m, x[j])
                else:
                    for j in range(1, c):
                        m = max(m, x[j])
                if prefetch != 0 and i + ahead < n:
                    nxt = logits[i + ahead]
                    gnxt = grad[i + ahead]
                    for j in range(0, c, 16):  # one per 64-byte line
                        if prefetch == 2:
                            _prefetch_l1(nxt, j)
                        else:
                            _prefetch_l2(nxt, j)
                        if prefetch == 3:
                            _prefetchw_l2(gnxt, j)
                        elif prefetch == 4:
                            _prefetch_l2(gnxt, j)
                # One array under both names in place (see cross_entropy._exp_sum).
                s = exp_sum(g, g, m) if in_place else exp_sum(g, x, m)
                acc += (np.float64(m) - xy) + math.log(s)
                if scale_in_dtype:
                    a = dt(gf / s)
                    for j in range(c):
                        g[j] = g[j] * a
                else:
                    a = gf / s
                    for j in range(c):
                        g[j] = g[j] * a
                g[y] = g[y] - gf
            partial[chunk] = acc
        total = 0.0
        for k in range(nchunks):
            total += partial[k]
        return total * gf

    return kernel


# name: (what changes, kernel). Each row adds one idea to the one above unless it says "instead".
VARIANTS = {
    "v0": ("HEAD: max() chain, libm-free exp32 fused with a float64 sum, float64 scale",
           make_variant(False, False, False, "fused64", False)),
    "v1": ("+ llvm.maximum row max (vectorizes)",
           make_variant(True, False, False, "fused64", False)),
    "v2": ("+ scale in float32", make_variant(True, True, False, "fused64", False)),
    "v3": ("+ exp for x - m <= 0 only (no overflow/NaN selects)",
           make_variant(True, True, True, "fused64", False)),
    "v4": ("+ exp and float64 sum in two loops (8 lanes for exp): the library kernel",
           make_variant(True, True, True, "split64", True)),
    "v4b": ("instead of v4: float32 sums over blocks of 256, then float64",
            make_variant(True, True, True, "block32", True)),
    "v5": ("v4 + software prefetch of the next logits row into L2",
           make_variant(True, True, True, "split64", True, prefetch=1)),
    "v5a": ("v4 + prefetch of the next logits row into L1",
            make_variant(True, True, True, "split64", True, prefetch=2)),
    "v5b": ("v5 + prefetch-for-write of the next gradient row",
            make_variant(True, True, True, "split64", True, prefetch=3)),
    "v5c": ("v4 + prefetch of the logits row 2 on into L2",
            make_variant(True, True, True, "split64", True, prefetch=1, ahead=2)),
    "v6": ("v5 + read-prefetch of the next gradient row into L2",
           make_variant(True, True, True, "split64", True, prefetch=4)),
    "v6b": ("v5 + write-prefetch of this row's gradient before its max pass",
            make_variant(True, True, True, "split64", True, prefetch=5)),
}


def _data(rows, cols):
    rng = np.random.default_rng(0)
    x = (2.0 * rng.standard_normal((rows, cols))).astype(np.float32)
    y = rng.integers(0, cols, rows)
    return x, y


def run_memory(names, rounds, in_place, quiet, budget):
    from fastml.bench.cases import CE_SHAPE, make_floor
    from fastml.bench.timing import others_busy, wait_for_quiet

    x, y = _data(*CE_SHAPE)
    g = np.empty_like(x)
    work = x.copy()
    floor = make_floor("read1_write1", x.size)
    fns = {"floor": floor.run}
    for name in names:
        k = VARIANTS[name][1]
        if in_place:
            fns[name] = (lambda k=k: k(work, work, y))
        else:
            fns[name] = (lambda k=k: k(g, x, y))
    fns["fastml"] = _library_call(work if in_place else g, x if not in_place else work, y)
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    kept = dropped = 0
    deadline = time.monotonic() + budget
    while kept < rounds:
        left = deadline - time.monotonic()
        if quiet and (left <= 0 or not wait_for_quiet(timeout=left)):
            break
        if quiet:
            fns["floor"]()  # wake the sleeping worker threads untimed (see conftest.py)
        this = {}

        def one_round(this=this):
            for k, f in fns.items():
                if in_place and k != "floor":
                    np.copyto(work, x)  # in place overwrites the logits: fresh ones, untimed
                t0 = time.perf_counter()
                f()
                this[k] = time.perf_counter() - t0

        if quiet and others_busy(one_round) > 0.10:
            dropped += 1
            continue
        if not quiet:
            one_round()
        kept += 1
        for k, v in this.items():
            times[k].append(v)
    if not kept:
        print("the machine never went quiet")
        return
    # Ratios per round, then their median: a slow round slows floor and variant alike.
    ratio = {k: np.median(np.array(v) / np.array(times["floor"])) for k, v in times.items()}
    print(f"{'variant':<8}{'ms':>8}{'x floor':>9}  ({'in place' if in_place else 'out of place'}, "
          f"{x.shape[0]}x{x.shape[1]} float32, median of {kept} rounds"
          + (f", {dropped} dropped as not quiet" if quiet else "") + ")")
    for k, v in times.items():
        what = VARIANTS[k][0] if k in VARIANTS else {
            "floor": "read 1 + write 1 (fastml/bench/cases.py)",
            "fastml": "fastml.kernels.cpu.cross_entropy_fwd_bwd (the library kernel)"}[k]
        print(f"{k:<8}{1e3 * np.median(v):>8.3f}{ratio[k]:>9.2f}  {what}")


def _library_call(g, x, y):
    """The library kernel itself (all features compiled in), on the same case."""
    from fastml.kernels.cpu import MEAN, cross_entropy_fwd_bwd

    loss = np.empty(1, x.dtype)
    pred = np.empty(0, np.int64)
    weight = np.empty(0, x.dtype)
    return lambda: cross_entropy_fwd_bwd(g, loss, pred, x, y, weight, -100, 0.0, 1.0, MEAN)


def run_compute(names, rounds):
    import numba

    numba.set_num_threads(1)
    x, y = _data(512, 1000)  # 4 MB in and out: L3-resident
    g = np.empty_like(x)
    for name in names + ["fastml"]:
        k = VARIANTS[name][1] if name != "fastml" else None
        f = _library_call(g, x, y) if k is None else (lambda k=k: k(g, x, y))
        f()
        best = min(_timed(f) for _ in range(rounds))
        what = VARIANTS[name][0] if k is not None else "the library kernel"
        print(f"{name:<8}{1e9 * best / x.size:>7.3f} ns/logit (1 thread, in cache)  {what}")


def _timed(f):
    t0 = time.perf_counter()
    f()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--only", default=",".join(VARIANTS))
    ap.add_argument("--in-place", action="store_true")
    ap.add_argument("--compute", action="store_true")
    ap.add_argument("--quiet", action="store_true",
                    help="time a round only while other processes leave the CPUs idle")
    ap.add_argument("--budget", type=float, default=900.0,
                    help="with --quiet: stop waiting after this many seconds, report what ran")
    a = ap.parse_args()
    names = [s for s in a.only.split(",") if s]
    if a.compute:
        run_compute(names, max(a.rounds, 100))
    else:
        run_memory(names, a.rounds, a.in_place, a.quiet, a.budget)


if __name__ == "__main__":
    main()
