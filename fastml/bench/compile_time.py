"""Numba compile time of each kernel family, cold (empty cache) and cached.

:func:`measure` runs this module twice in a fresh interpreter with ``NUMBA_CACHE_DIR`` pointing
to a new temporary directory: the first run compiles every kernel it touches (cold), the second
loads them from that cache (cached). Each child times ``import fastml`` and the first call of
each family on tiny float32 inputs (compile or cache load + one tiny run), then a second call
(the steady cost, for scale), and prints one JSON object on stdout.

The child is started with ``python -c`` (not ``-m``, which would import fastml before the clock
starts) and needs nothing but fastml and NumPy.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def _calls():
    """(name, zero-argument call) per kernel family, on tiny float32 inputs."""
    import fastml
    import fastml.metrics

    rng = np.random.default_rng(0)
    x = rng.standard_normal(64, dtype=np.float32)
    t = rng.standard_normal(64, dtype=np.float32)
    prob = rng.random(64, dtype=np.float32)
    logits = rng.standard_normal((8, 10), dtype=np.float32)
    labels = rng.integers(0, 10, 8)
    g = np.zeros(64, np.float32)
    p_sgd, p_adam, p_guard = (np.zeros(64, np.float32) for _ in range(3))
    sgd = fastml.SGD(p_sgd, lr=1e-3, momentum=0.9)
    adam = fastml.Adam(p_adam, lr=1e-3)
    guarded = fastml.Adam(p_guard, lr=1e-3,
                          guard=fastml.Guard(clip_norm=1.0, scaler=fastml.LossScaler()))
    flat = fastml.FlatParams({"w": (8, 8), "b": (8,)})
    flat_opt = fastml.AdamW(flat, lr=1e-3)
    y_true = rng.integers(0, 10, 64)
    y_pred = rng.integers(0, 10, 64)
    return [
        ("mse", lambda: fastml.mse(x, t, out=g)),
        ("l1", lambda: fastml.l1(x, t, out=g)),
        ("huber", lambda: fastml.huber(x, t, out=g)),
        ("bce_with_logits", lambda: fastml.bce_with_logits(x, prob, out=g)),
        ("cross_entropy", lambda: fastml.cross_entropy(logits, labels)),
        ("SGD momentum", lambda: sgd.step(t)),
        ("Adam", lambda: adam.step(t)),
        ("Adam + Guard(clip_norm, scaler)", lambda: guarded.step(t)),
        ("AdamW FlatParams", lambda: flat_opt.step()),
        ("clip_grad_norm", lambda: fastml.clip_grad_norm(x.copy(), 1.0)),
        ("f1 macro", lambda: fastml.metrics.f1(y_true, y_pred, average="macro")),
        ("top_k_accuracy", lambda: fastml.metrics.top_k_accuracy(labels, logits, k=2)),
    ]


# The child's script: the clock starts before fastml's first import.
_CHILD = (
    "import time; t0 = time.perf_counter(); import fastml; t = time.perf_counter() - t0; "
    "from fastml.bench.compile_time import _child; _child(t)"
)


def _child(import_s):
    """Time each family's first call and its best of 3 later calls; print JSON rows."""
    rows = [{"name": "import fastml", "first_s": import_s, "second_s": None}]
    t0 = time.perf_counter()
    calls = _calls()
    rows.append({"name": "set-up (inputs, optimizers, FlatParams)",
                 "first_s": time.perf_counter() - t0, "second_s": None})
    for name, call in calls:
        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        later = []
        for _ in range(3):
            t0 = time.perf_counter()
            call()
            later.append(time.perf_counter() - t0)
        rows.append({"name": name, "first_s": first, "second_s": min(later)})
    print(json.dumps(rows))


def _run_child(cache_dir, timeout):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=path)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _CHILD], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"compile-time child failed ({done.returncode}): "
                           f"{done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), wall


def measure(timeout=600):
    """Cold and cached first-call times per family.

    Returns ``{"rows": [{"name", "cold_s", "cached_s", "steady_s"}], "cold_wall_s",
    "cached_wall_s"}``: first-call seconds without and with a cache, the best of 3 later calls,
    and each child's wall time (which includes starting the interpreter).
    """
    with tempfile.TemporaryDirectory(prefix="fastml-numba-cache-") as cache_dir:
        cold, cold_wall = _run_child(cache_dir, timeout)
        cached, cached_wall = _run_child(cache_dir, timeout)
    rows = [{"name": a["name"], "cold_s": a["first_s"], "cached_s": b["first_s"],
             "steady_s": b["second_s"]} for a, b in zip(cold, cached, strict=True)]
    return {"rows": rows, "cold_wall_s": cold_wall, "cached_wall_s": cached_wall}


