"""Reduced losses are bitwise reproducible: run to run, for any numba thread count, and whether
the gradient goes to a new array, to ``out`` or over the input.

The CPU kernels sum fixed-size chunks (16384 elements, or 16384 // C rows) in parallel and add
the chunk sums in order, so the sizes here span several chunks and do not divide evenly.
"""

import numba
import numpy as np
import pytest

import fastml

from .conftest import REAL_GPU
from .helpers import assert_bitwise_equal, to_device

DTYPES = [np.float32, np.float64]


def _size(device, cpu_size, sim_size):
    return cpu_size if device == "cpu" or REAL_GPU else sim_size


def elementwise_call(name, n, dtype, device):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(n) * 3).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    if name == "bce":
        b = rng.random(n).astype(dtype)
        pw = rng.uniform(0.5, 2.0, 1).astype(dtype)
        return lambda reduction, out=None, first=None: fastml.bce_with_logits(
            to_device(a, device) if first is None else first, to_device(b, device),
            pos_weight=to_device(pw, device), reduction=reduction, out=out), a
    fn = {"mse": fastml.mse, "l1": fastml.l1, "huber": fastml.huber}[name]
    return lambda reduction, out=None, first=None: fn(
        to_device(a, device) if first is None else first, to_device(b, device),
        reduction=reduction, out=out), a


def ce_call(shape, dtype, device):
    rng = np.random.default_rng(1)
    n, c = shape
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    y = rng.integers(0, c, n)
    y[rng.random(n) < 0.1] = -100
    w = rng.uniform(0.5, 2.0, c).astype(dtype)
    return lambda reduction, out=None, first=None: fastml.cross_entropy(
        to_device(x, device) if first is None else first, to_device(y, device),
        weight=to_device(w, device), label_smoothing=0.1, reduction=reduction, out=out), x


def _check_reproducible(call, first_input, device, threads):
    for reduction in ["sum", "mean"]:
        base = call(reduction)
        runs = [call(reduction)]
        if device == "cpu":
            for t in sorted({1, min(2, threads), threads}):
                numba.set_num_threads(t)
                runs.append(call(reduction))
            numba.set_num_threads(threads)
        out = to_device(np.zeros_like(first_input), device)
        runs.append(call(reduction, out=out))
        inplace = to_device(first_input, device)
        runs.append(call(reduction, out=inplace, first=inplace))
        for k, r in enumerate(runs):
            assert_bitwise_equal(r.loss, base.loss, name=f"{reduction} loss, run {k}")
            assert_bitwise_equal(r.grad, base.grad, name=f"{reduction} grad, run {k}")


@pytest.mark.parametrize("name", ["mse", "l1", "huber", "bce"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_elementwise_losses(device, dtype, name, restore_num_threads):
    call, first = elementwise_call(name, _size(device, 100_003, 1_003), dtype, device)
    _check_reproducible(call, first, device, restore_num_threads)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_cross_entropy(device, dtype, restore_num_threads):
    call, first = ce_call(_size(device, (5000, 37), (67, 37)), dtype, device)
    _check_reproducible(call, first, device, restore_num_threads)


def test_small_calls_switch_threads_with_numbas_unchecked_accessors():
    # fastml._threads runs small kernels on the calling thread by switching numba's thread
    # count around the call. numba binds its unchecked accessors only once its pool is up; read
    # before that (the first small call of a fresh process), the switch fell back to the public
    # functions, which lock and validate: 5-10 us more per small loss or optimizer step.
    import os
    import subprocess
    import sys

    code = ("import numba, fastml._threads as T; get, put = T._thread_count_access(); "
            "print(get is numba.get_num_threads, put is numba.set_num_threads, get() >= 1)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.split() == ["False", "False", "True"], proc.stderr[-2000:]
