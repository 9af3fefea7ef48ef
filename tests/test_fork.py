"""fastml in child processes and concurrent threads (``fastml/_threading_layer.py``).

The parent runs fastml first, small serial calls and large parallel ones, which starts numba's
thread pool; a child started with each multiprocessing method then computes the same results.
A child that dies or hangs fails its test within a timeout instead of blocking the run.
"""

import hashlib
import multiprocessing
import os
import pickle
import platform
import select
import subprocess
import sys
import textwrap
import threading
import time
import traceback

import numpy as np
import pytest

import fastml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 120
N = 1 << 20  # above fastml._threads.SERIAL_BELOW: these calls run on every numba thread

linux_x86_64 = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64",
    reason="the tbb wheel is a dependency on Linux x86-64 only")


def _digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _work(seed=0):
    """A loss, optimizer steps and a metric, large (parallel) and small (serial) calls."""
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal(N, dtype=np.float32)
    target = rng.standard_normal(N, dtype=np.float32)
    loss, grad = fastml.mse(pred, target)
    p = rng.standard_normal(N, dtype=np.float32)
    g = rng.standard_normal(N, dtype=np.float32)
    adam = fastml.Adam(p, lr=1e-3)
    adam.step(g)
    adam.step(g)
    small = rng.standard_normal(1000, dtype=np.float32)
    fastml.SGD(small, lr=0.1, momentum=0.9).step(np.ones(1000, np.float32))
    logits = rng.standard_normal((64, 10), dtype=np.float32)
    ce, ce_grad = fastml.cross_entropy(logits, rng.integers(0, 10, 64))
    f1 = fastml.metrics.f1(rng.integers(0, 10, N), rng.integers(0, 10, N), average="macro")
    return {"mse": float(loss), "mse_grad": _digest(grad), "adam": _digest(p),
            "sgd": _digest(small), "cross_entropy": float(ce), "ce_grad": _digest(ce_grad),
            "f1": float(f1)}


def _child(conn):
    try:
        conn.send(("ok", _work()))
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _run_child(method):
    """``_work()`` in a child started by ``method``: its result, or a test failure that says
    how the child ended."""
    ctx = multiprocessing.get_context(method)
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send,), daemon=True)
    proc.start()
    send.close()
    try:
        # poll returns early when the child exits: the pipe's last writer is gone
        if not recv.poll(TIMEOUT_S):
            pytest.fail(f"{method} child gave no result in {TIMEOUT_S} s")
        try:
            status, value = recv.recv()
        except EOFError:
            proc.join(10)
            pytest.fail(f"{method} child died without a result, exit code {proc.exitcode}")
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(10)
        recv.close()
    assert status == "ok", value
    return value


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_child_process_computes_what_the_parent_does(method):
    want = _work()  # starts numba's pool in the parent, as in a training script
    assert _run_child(method) == want


def test_os_fork_child_computes_what_the_parent_does():
    want = _work()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(r)
            try:
                data = pickle.dumps(("ok", _work()))
            except BaseException:
                data = pickle.dumps(("error", traceback.format_exc()))
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(0)
    os.close(w)
    chunks, deadline = [], time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if select.select([r], [], [], 1.0)[0]:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        else:
            pytest.fail(f"forked child gave no result in {TIMEOUT_S} s")
    finally:
        os.close(r)
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    assert chunks, "forked child died without a result"
    status, value = pickle.loads(b"".join(chunks))
    assert status == "ok", value
    assert value == want


def test_two_threads_run_parallel_kernels_at_once():
    want = _work()
    got, errors = [], []

    def run():
        try:
            for _ in range(3):
                got.append(_work())
        except BaseException:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT_S)
    assert not errors, errors[0]
    assert got == [want] * 6


class _LossDataset:
    """Each item is a loss fastml computes in the DataLoader worker that loads it."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        a = np.full(N, i, np.float32)
        return float(fastml.mse(a, np.zeros_like(a))[0])


@pytest.mark.torch
def test_pytorch_dataloader_workers_call_fastml():
    torch_data = pytest.importorskip("torch.utils.data")
    _work()
    loader = torch_data.DataLoader(_LossDataset(), batch_size=None, num_workers=2,
                                   multiprocessing_context="fork", timeout=TIMEOUT_S)
    assert list(loader) == [0.0, 1.0, 4.0, 9.0]


def _python(code, **env):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               **env)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.split()


LAYER = """
    import numba, numpy as np, fastml
    a = np.ones(1 << 20, np.float32)
    fastml.mse(a, a)
    print(numba.threading_layer())
"""


@linux_x86_64
def test_fastml_runs_numba_on_the_fork_safe_tbb_layer():
    assert _python(LAYER) == ["tbb"]


def test_explicit_threading_layer_is_kept():
    assert _python(LAYER, NUMBA_THREADING_LAYER="workqueue") == ["workqueue"]


def test_child_forked_from_an_openmp_pool_raises_instead_of_dying():
    # numba's omp layer kills a forked child at its first parallel call; fastml raises first.
    out = _python("""
        import os, numpy as np, fastml
        a = np.ones(1 << 20, np.float32)
        fastml.mse(a, a)
        pid = os.fork()
        if pid == 0:
            try:
                fastml.mse(a, a)
                code = 0
            except RuntimeError as e:
                code = 3 if "'spawn'" in str(e) and "tbb" in str(e) else 4
            os._exit(code)
        print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
        print(float(fastml.mse(a, a * 0)[0]))
    """, NUMBA_THREADING_LAYER="omp")
    assert out == ["3", "1.0"]
