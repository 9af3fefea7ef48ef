"""numba's threading layers compared under fastml: kernel speed, launch cost, PyTorch alongside.

Each round starts one fresh process per layer (``NUMBA_THREADING_LAYER``; the order alternates
from round to round, so a change of machine load hits every layer alike). A process times, with
as many PyTorch threads as numba threads, the groups named by ``--cases``:

- ``kernels``: the main kernels through the public API (``out=`` preallocated) at 1k, 32k (the
  smallest size run in parallel, ``fastml._threads.SERIAL_BELOW``), 100k, 1M and 10M float32
  elements, and a bare numba ``prange`` over 64 elements (the launch alone);
- ``torch``: a loop alternating a fastml call and a PyTorch call, each call timed on its own,
  against each call's time alone (``... after torch``: the fastml call when a PyTorch call came
  just before; ``... after fastml``: the other direction);
- ``fork``: ``os.fork()`` of a child that exits at once (the layer's fork handlers run in the
  parent).

A time is the median of ``--samples`` samples after 2-3 warm-up calls; a sample repeats the
call until it lasts ``--min-sample-ms``. The table gives per layer the median over rounds of
each process's median (the range of those medians), and each other layer's per-round ratio to
the first (the processes of a round ran back to back). Each process also records the share of
the CPUs other processes used while it ran. A layer may carry environment settings:
``--layers omp,tbb,tbb+OMP_WAIT_POLICY=passive``.

    .venv/bin/python bench/bench_threading_layer.py [--rounds 5] [--quiet] [--quick]
        [--cases kernels,torch,fork] [--sizes 32k,1M] [--layers omp,tbb] [--json out.json]
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # run as a script: this checkout's fastml, installed or not
    sys.path.insert(0, _ROOT)

from fastml.bench.timing import wait_for_quiet  # noqa: E402

SIZES = {"1k": 1 << 10, "32k": 1 << 15, "100k": 100_000, "1M": 1 << 20, "10M": 10_000_000}
#: cross-entropy shapes with about the element counts of SIZES
CE_SHAPES = {"1k": (32, 32), "32k": (32, 1024), "100k": (100, 1000), "1M": (1024, 1024),
             "10M": (8192, 1000)}


#: A case stops sampling after this many seconds once it has 3 samples (a call that a loaded
#: OpenMP pool makes take seconds would otherwise hold a round for minutes).
CASE_BUDGET_S = 6.0


def _warm_up(fn):
    """Call ``fn`` 3 times (twice if slow: the first call may compile or load from the cache);
    return the last call's seconds."""
    for i in range(3):
        t0 = time.perf_counter()
        fn()
        est = time.perf_counter() - t0
        if i and est > 0.1:
            break
    return max(est, 1e-7)


def _clock(fn, samples, min_sample_s):
    """Median seconds per call of ``fn`` over ``samples`` samples, after the warm-up."""
    number = max(1, math.ceil(min_sample_s / _warm_up(fn)))
    times, end = [], time.perf_counter() + CASE_BUDGET_S
    for _ in range(samples):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
        if len(times) >= 3 and time.perf_counter() > end:
            break
    return statistics.median(times)


def _kernel_cases(sizes):
    """(name, size label, fn) of each timed fastml call."""
    import numpy as np

    import fastml

    rng = np.random.default_rng(0)
    out = []
    for label in sizes:
        n = SIZES[label]
        pred = rng.standard_normal(n, dtype=np.float32)
        target = rng.standard_normal(n, dtype=np.float32)
        grad = np.empty_like(pred)
        out.append(("mse", label, lambda p=pred, t=target, g=grad: fastml.mse(p, t, out=g)))

        rows, cols = CE_SHAPES[label]
        logits = rng.standard_normal((rows, cols), dtype=np.float32)
        labels = rng.integers(0, cols, rows)
        ce_grad = np.empty_like(logits)
        out.append(("cross_entropy", label,
                    lambda x=logits, y=labels, g=ce_grad: fastml.cross_entropy(x, y, out=g)))

        p = rng.standard_normal(n, dtype=np.float32)
        g = rng.standard_normal(n, dtype=np.float32) * np.float32(1e-3)
        adam = fastml.Adam(p, lr=1e-4)
        out.append(("adam", label, lambda o=adam, g=g: o.step(g)))

        q = p.copy()
        sgd = fastml.SGD(q, lr=1e-4, momentum=0.9)
        out.append(("sgd_momentum", label, lambda o=sgd, g=g: o.step(g)))

        c = rng.standard_normal(n, dtype=np.float32)
        out.append(("clip_grad_norm", label, lambda c=c: fastml.clip_grad_norm(c, 1.0)))

        y_true = rng.integers(0, 10, n)
        y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, 10, n))
        out.append(("f1_macro", label, lambda a=y_true, b=y_pred:
                    fastml.metrics.f1(a, b, average="macro")))
    return out


def _launch_case():
    import numba
    import numpy as np

    @numba.njit(parallel=True, nogil=True)
    def touch(a):
        for i in numba.prange(a.size):
            a[i] += 1.0

    a = np.zeros(64)
    return lambda: touch(a)


def _interleave_cases():
    """(name, fastml call, torch call) pairs."""
    import numpy as np
    import torch

    import fastml

    rng = np.random.default_rng(1)
    n = 1 << 20
    p = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32) * np.float32(1e-3)
    adam = fastml.Adam(p, lr=1e-4)
    pred = rng.standard_normal(n, dtype=np.float32)
    target = rng.standard_normal(n, dtype=np.float32)
    grad = np.empty_like(pred)

    tp = torch.from_numpy(p.copy()).requires_grad_()
    tp.grad = torch.from_numpy(g.copy())
    torch_adam = torch.optim.Adam([tp], lr=1e-4, foreach=True)
    a = torch.randn(512, 512)
    b = torch.randn(512, 512)
    c = torch.empty(512, 512)

    tensors, size = 1000, 10_000
    flat = fastml.FlatParams({f"t{i}": (size,) for i in range(tensors)})
    flat.data[:] = rng.standard_normal(tensors * size, dtype=np.float32)
    flat.grad.data[:] = rng.standard_normal(tensors * size, dtype=np.float32) * 1e-3
    flat_adam = fastml.Adam(flat, lr=1e-4)
    tps = [torch.from_numpy(flat.data[i * size:(i + 1) * size].copy()).requires_grad_()
           for i in range(tensors)]
    for i, t in enumerate(tps):
        t.grad = torch.from_numpy(flat.grad.data[i * size:(i + 1) * size].copy())
    foreach = torch.optim.Adam(tps, lr=1e-4, foreach=True)

    def steps(opt):
        def run():
            with torch.no_grad():
                opt.step()
        return run

    return [
        ("adam 1M | torch Adam foreach 1M", lambda: adam.step(g), steps(torch_adam)),
        ("mse 1M | torch.mm 512x512", lambda: fastml.mse(pred, target, out=grad),
         lambda: torch.mm(a, b, out=c)),
        ("adam FlatParams 1000x10k | torch Adam foreach 1000x10k", flat_adam.step,
         steps(foreach)),
    ]


def _interleaved(f, t, samples, min_sample_s):
    """Median seconds of ``f`` and of ``t``, each timed on its own, called alternately."""
    number = max(1, math.ceil(min_sample_s / _warm_up(lambda: (f(), t()))))
    tf, tt, end = [], [], time.perf_counter() + CASE_BUDGET_S
    for _ in range(samples):
        sf = st = 0.0
        for _ in range(number):
            t0 = time.perf_counter()
            f()
            t1 = time.perf_counter()
            t()
            t2 = time.perf_counter()
            sf += t1 - t0
            st += t2 - t1
        tf.append(sf / number)
        tt.append(st / number)
        if len(tf) >= 3 and time.perf_counter() > end:
            break
    return statistics.median(tf), statistics.median(tt)


def _fork_case():
    def run():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return run


def worker(args):
    """One process: every case on the layer numba chose; prints one JSON object."""
    import numba

    import fastml  # noqa: F401  (loads TBB before numba's pool starts)
    from fastml.bench.timing import others_busy

    threads = numba.get_num_threads()
    rows = {}
    clock = lambda fn: _clock(fn, args.samples, args.min_sample_ms / 1e3)  # noqa: E731

    def measure():
        if "kernels" in args.cases:
            for name, label, fn in _kernel_cases(args.sizes):
                rows[f"{name} {label}"] = clock(fn)
            rows["numba prange launch (64 elements)"] = clock(_launch_case())
        if "torch" in args.cases:
            import torch

            torch.set_num_threads(threads)
            for name, f, t in _interleave_cases():
                f_name, t_name = (s.strip() for s in name.split("|"))
                rows[f"{f_name} alone"] = clock(f)
                rows[f"{t_name} alone"] = clock(t)
                inter_f, inter_t = _interleaved(f, t, args.samples, args.min_sample_ms / 1e3)
                rows[f"{f_name} after torch"] = inter_f
                rows[f"{t_name} after fastml"] = inter_t
        if "fork" in args.cases:
            rows["os.fork + child exit"] = _clock(_fork_case(), min(args.samples, 7), 0)

    busy = others_busy(measure)
    json.dump({"layer": numba.threading_layer(), "threads": threads, "others_busy": busy,
               "rows": {k: v * 1e3 for k, v in rows.items()}}, sys.stdout)


def _run_worker(spec, args):
    """One worker process for ``spec``: a layer name, optionally with ``+NAME=VALUE``
    environment settings (``tbb+OMP_WAIT_POLICY=passive``)."""
    layer, *settings = spec.split("+")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--samples", str(args.samples),
           "--min-sample-ms", str(args.min_sample_ms), "--sizes", ",".join(args.sizes),
           "--cases", ",".join(args.cases)]
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer)
    env.update(s.split("=", 1) for s in settings)
    if args.quiet:
        wait_for_quiet(timeout=args.quiet_timeout)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{spec} worker failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout)
    if result["layer"] != layer:
        raise SystemExit(f"asked for {layer}, numba ran {result['layer']}")
    return result


def _table(runs, layers):
    """Markdown: per case and layer the median over rounds (range), and each other layer's
    per-round ratio to the first layer (median and range)."""
    names = list(runs[0][layers[0]]["rows"])
    head = ["case"] + [f"{layer} ms (range)" for layer in layers]
    head += [f"{layer} / {layers[0]}" for layer in layers[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        cells = [name]
        for layer in layers:
            v = [r[layer]["rows"][name] for r in runs]
            cells.append(f"{statistics.median(v):.4g} ({min(v):.3g}-{max(v):.3g})")
        for layer in layers[1:]:
            q = [r[layer]["rows"][name] / r[layers[0]]["rows"][name] for r in runs]
            cells.append(f"{statistics.median(q):.2f} ({min(q):.2f}-{max(q):.2f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--layers", default="omp,tbb",
                    help="comma-separated; a layer may carry environment settings: "
                         "tbb+OMP_WAIT_POLICY=passive")
    ap.add_argument("--samples", type=int, default=15)
    ap.add_argument("--min-sample-ms", type=float, default=20.0)
    ap.add_argument("--sizes", default=",".join(SIZES))
    ap.add_argument("--quick", action="store_true", help="2 rounds, 7 samples, 1M and 10M")
    ap.add_argument("--cases", default="kernels,torch,fork",
                    help="which groups to time: kernels, torch (interleaved with PyTorch), fork")
    ap.add_argument("--quiet", action="store_true",
                    help="before each process, wait until other processes leave the CPUs idle")
    ap.add_argument("--quiet-timeout", type=float, default=300.0,
                    help="the longest wait for idle CPUs (s); then the process runs anyway")
    ap.add_argument("--json", help="write every round's rows here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.samples, args.sizes = 2, 7, "1M,10M"
    args.sizes = args.sizes.split(",")
    args.cases = args.cases.split(",")
    if args.worker:
        return worker(args)
    layers = args.layers.split(",")
    runs = []
    for r in range(args.rounds):
        run = {}
        for layer in (layers if r % 2 == 0 else layers[::-1]):
            run[layer] = _run_worker(layer, args)
            print(f"round {r + 1}/{args.rounds} {layer}: other processes used "
                  f"{run[layer]['others_busy']:.0%} of the CPUs", file=sys.stderr, flush=True)
        runs.append(run)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    threads = runs[0][layers[0]]["threads"]
    busy = {layer: statistics.median(r[layer]["others_busy"] for r in runs) for layer in layers}
    print(f"{args.rounds} rounds, {threads} numba threads (= torch threads), ms per call; "
          "other processes' median share of the CPUs during a process: "
          + ", ".join(f"{layer} {b:.0%}" for layer, b in busy.items()))
    print(_table(runs, layers))


if __name__ == "__main__":
    main()
