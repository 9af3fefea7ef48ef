"""The CUDA backend (``fastml.kernels.cuda``): parity with the CPU kernels and the GPU API path.

In CI this runs in numba-cuda's simulator (tests/conftest.py turns it on); with
``FASTML_REAL_GPU=1`` the same tests run on a GPU, with larger sizes added that exercise many
blocks, the widest cross-entropy rows and the launch-size caps. Each CUDA launcher gets the same
inputs as its CPU kernel and must give the same gradient and loss within a few roundings.
"""

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from numba import config, cuda

import fastml
from fastml.kernels import cpu as K
from fastml.kernels import cuda as G

from .conftest import REAL_GPU
from .helpers import assert_bitwise_equal, assert_close, both_ce_kernels, to_host, tol

pytestmark = pytest.mark.cuda

SIMULATOR = bool(config.ENABLE_CUDASIM)
NONE, SUM, MEAN = K.NONE, K.SUM, K.MEAN
CODES = {"none": NONE, "sum": SUM, "mean": MEAN}


def _race_free_shared_array():
    """numba-cuda's simulator ``FakeCUDAShared.array`` with its race fixed (and faster).

    The simulator gives each ``cuda.shared.array`` call site one array per block, found by
    check-then-insert in a dict with no lock: two threads that both miss get two private arrays,
    so a block's "shared" reduction silently reads the wrong values. Rare at the default thread
    switch interval, common at a short one. Keyed as the original is (caller's file and line).
    """
    from numba.cuda import types as nb_types
    from numba.cuda.np import numpy_support
    from numba.cuda.simulator import kernelapi

    original = kernelapi.FakeCUDAShared.array
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory: no lookup to race
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, nb_types.Type):
            dtype = numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        caller = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(caller)
            if res is None:
                res = self._allocations[caller] = np.empty(shape, dtype)
        return res

    return kernelapi.FakeCUDAShared, original, array


@pytest.fixture(autouse=True, scope="module")
def _simulator_fixes():
    if not SIMULATOR:
        yield
        return
    cls, original, patched = _race_free_shared_array()
    cls.array = patched
    # The simulator's block manager busy-polls its threads while holding the GIL, so each
    # syncthreads costs about one interpreter switch interval (5 ms by default) per waiting
    # thread. A shorter interval makes the barrier-heavy reductions here several times faster.
    before = sys.getswitchinterval()
    sys.setswitchinterval(5e-5)
    yield
    sys.setswitchinterval(before)
    cls.array = original


def dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def close(got, want, dtype, name, ulps=16, scale=0.0):
    """GPU vs CPU: both are a few roundings off the exact value, so allow ``ulps`` epsilons of
    each element and of the larger of ``scale`` and the array's largest magnitude (which bound
    the terms a result may be the cancelled difference of)."""
    want = np.asarray(want, dtype=np.float64)
    finite = want[np.isfinite(want)]
    scale = max(scale, float(np.abs(finite).max()) if finite.size else 1.0)
    assert_close(got, want, rtol=tol(dtype, ulps), atol=tol(dtype, ulps) * scale, name=name)


# ---------------------------------------------------------------------------------------------
# MSE, L1, Huber

# (dtype, n): every size meets both dtypes across the two lists.
REG_CASES = [(np.float32, 1), (np.float64, 1), (np.float32, 7), (np.float64, 37),
             (np.float32, 1000), (np.float64, 1000)]
if REAL_GPU:
    REG_CASES += [(np.float32, 1_000_003), (np.float64, 262_147)]
REG_KERNELS = {"mse": 0.0, "l1": 0.0, "huber": 0.75}


def regression_data(n, dtype, seed=0, special=False):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(n) * 2
    t = rng.standard_normal(n) * 2
    t[::5] = p[::5]  # exact ties: l1's gradient is 0 there
    if special and n >= 7:
        p[1], p[3], t[4], p[5], t[6] = np.nan, np.inf, -np.inf, 1e30, np.nan
    return p.astype(dtype), t.astype(dtype)


def run_pair(name, args_cpu, args_gpu, loss_len, dtype, n_grad):
    """Run the CPU kernel and the CUDA launcher of ``name`` on copies of the same arguments."""
    grad_c = np.full(n_grad, 7, dtype=dtype)
    loss_c = np.full(loss_len, 7, dtype=dtype)
    getattr(K, name)(grad_c, loss_c, *args_cpu)
    grad_g = dev(np.full(n_grad, 7, dtype=dtype))
    loss_g = dev(np.full(loss_len, 7, dtype=dtype))
    getattr(G, name)(grad_g, loss_g, *args_gpu)
    return (grad_c, loss_c), (grad_g.copy_to_host(), loss_g.copy_to_host())


@pytest.mark.parametrize("dtype,n", REG_CASES)
@pytest.mark.parametrize("kind", list(REG_KERNELS))
def test_regression_parity(kind, dtype, n):
    p, t = regression_data(n, dtype, seed=n)
    delta = REG_KERNELS[kind]
    pd, td = dev(p), dev(t)
    for code in (NONE, SUM, MEAN):
        gf, lf = (0.5 / n, 1.0 / n) if code == MEAN else (0.5, 1.0)
        loss_len = n if code == NONE else 1
        (gc, lc), (gg, lg) = run_pair(f"{kind}_fwd_bwd", (p, t, delta, gf, lf),
                                      (pd, td, delta, gf, lf), loss_len, dtype, n)
        close(gg, gc, dtype, f"{kind} grad, reduction {code}")
        close(lg, lc, dtype, f"{kind} loss, reduction {code}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_regression_nan_inf_propagate(dtype):
    p, t = regression_data(37, dtype, special=True)
    for kind, delta in REG_KERNELS.items():
        for code in (NONE, SUM):
            loss_len = 37 if code == NONE else 1
            with np.errstate(invalid="ignore", over="ignore"):
                (gc, lc), (gg, lg) = run_pair(f"{kind}_fwd_bwd", (p, t, delta, 1.0, 1.0),
                                              (dev(p), dev(t), delta, 1.0, 1.0), loss_len,
                                              dtype, 37)
            close(gg, gc, dtype, f"{kind} grad")
            close(lg, lc, dtype, f"{kind} loss")
            assert np.isnan(gg[1]) and np.isnan(gg[6])
            if code == SUM:
                assert np.isnan(lg[0])


def test_regression_in_place_and_stream():
    p, t = regression_data(101, np.float32, seed=3)
    gc = np.empty_like(p)
    lc = np.empty(1, np.float32)
    K.huber_fwd_bwd(gc, lc, p, t, 0.5, 1.0, 1.0)
    stream = cuda.stream()
    pd, td = dev(p), dev(t)
    loss = dev(np.zeros(1, np.float32))
    G.huber_fwd_bwd(pd, loss, pd, td, 0.5, 1.0, 1.0, stream)  # grad written over pred
    stream.synchronize()
    close(pd.copy_to_host(), gc, np.float32, "in-place grad")
    close(loss.copy_to_host(), lc, np.float32, "loss on a stream")
    td2 = dev(t)
    G.mse_fwd_bwd(td2, loss, dev(p), td2, 0.0, 1.0, 1.0)  # grad written over target
    K.mse_fwd_bwd(gc, lc, p, t, 0.0, 1.0, 1.0)
    close(td2.copy_to_host(), gc, np.float32, "in-place grad over target")


# ---------------------------------------------------------------------------------------------
# Binary cross-entropy with logits

BCE_SHAPES = [(1, 1), (7, 5), (37, 3)] + ([(1031, 257)] if REAL_GPU else [])


def bce_weights(shape, dtype, rng):
    """(name, weight array or None) broadcasts the API supports, with their (div, mod)."""
    n, c = shape
    return {
        "none": None,
        "full": rng.random(shape).astype(dtype) * 2,
        "trailing": rng.random(c).astype(dtype) * 3,
        "column": rng.random((n, 1)).astype(dtype) + 0.5,
        "scalar": np.array([1.7], dtype=dtype),
    }


def bce_index(w, shape):
    from fastml.losses import _broadcast_index

    return (1, 1) if w is None else _broadcast_index(w, shape, "w")


@pytest.mark.parametrize("shape", BCE_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_parity(shape, dtype):
    rng = np.random.default_rng(sum(shape))
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x.flat[::7] = rng.choice([-1e4, 1e4, -30.0, 30.0, 0.0], size=x.flat[::7].shape)
    t = rng.random(shape).astype(dtype)
    t.flat[::3] = rng.integers(0, 2, size=t.flat[::3].shape)
    n = x.size
    ones = np.ones(1, dtype=dtype)
    ws = bce_weights(shape, dtype, rng)
    # Each weight layout once as weight and once as pos_weight, all three reductions between them.
    cases = [(w, pw, code) for code, (w, pw) in zip(
        [NONE, SUM, MEAN, NONE, SUM, MEAN],
        [("none", "none"), ("full", "trailing"), ("trailing", "column"), ("column", "scalar"),
         ("scalar", "full"), ("none", "trailing")], strict=True)]
    for wname, pwname, code in cases:
        w, pw = ws[wname], ws[pwname]
        wd, wm = bce_index(w, shape)
        pd_, pm = bce_index(pw, shape)
        w_arr = ones if w is None else w.ravel()
        pw_arr = ones if pw is None else pw.ravel()
        gf, lf = (2.0 / n, 1.0 / n) if code == MEAN else (2.0, 1.0)
        loss_len = n if code == NONE else 1
        cpu_args = (x.ravel(), t.ravel(), w_arr, wd, wm, pw_arr, pd_, pm, gf, lf)
        gpu_args = (dev(x.ravel()), dev(t.ravel()), dev(w_arr), wd, wm, dev(pw_arr), pd_, pm, gf,
                    lf)
        (gc, lc), (gg, lg) = run_pair("bce_with_logits_fwd_bwd", cpu_args, gpu_args, loss_len,
                                      dtype, n)
        what = f"weight {wname}, pos_weight {pwname}, reduction {code}"
        close(gg, gc, dtype, f"bce grad ({what})")
        close(lg, lc, dtype, f"bce loss ({what})")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bce_nan_inf_and_in_place(dtype):
    x = np.array([0.5, np.nan, np.inf, -np.inf, 2.0, -3.0, 1e4, 2.0, 1.0], dtype=dtype)
    t = np.array([1.0, 0.0, 0.0, 0.0, np.nan, 1.0, 0.0, np.inf, 0.5], dtype=dtype)
    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, np.inf, 1.0, 1.0, 1.0], dtype=dtype)
    ones = np.ones(1, dtype=dtype)
    for pw in (np.array([2.0], dtype=dtype), np.array([np.inf], dtype=dtype)):
        for code in (NONE, SUM):
            loss_len = 9 if code == NONE else 1
            with np.errstate(invalid="ignore", over="ignore"):
                (gc, lc), (gg, lg) = run_pair(
                    "bce_with_logits_fwd_bwd", (x, t, w, 1, 9, pw, 1, 1, 1.0, 1.0),
                    (dev(x), dev(t), dev(w), 1, 9, dev(pw), 1, 1, 1.0, 1.0), loss_len, dtype, 9)
            close(gg, gc, dtype, f"bce grad (pos_weight {pw[0]})")
            close(lg, lc, dtype, f"bce loss (pos_weight {pw[0]})")
    # In place over logits and over target.
    for alias in ("logits", "target"):
        xd, td = dev(x), dev(t)
        out = xd if alias == "logits" else td
        loss = dev(np.zeros(9, dtype=dtype))
        G.bce_with_logits_fwd_bwd(out, loss, xd, td, dev(ones), 1, 1, dev(ones), 1, 1, 1.0, 1.0)
        gc = np.empty_like(x)
        lc = np.empty(9, dtype=dtype)
        with np.errstate(invalid="ignore", over="ignore"):
            K.bce_with_logits_fwd_bwd(gc, lc, x, t, ones, 1, 1, ones, 1, 1, 1.0, 1.0)
        close(out.copy_to_host(), gc, dtype, f"in-place grad over {alias}")


# ---------------------------------------------------------------------------------------------
# Softmax cross-entropy

# (n, c): C = 1, narrow rows sharing a block, a row wider than one thread group per element.
CE_SHAPES = [(1, 1), (7, 5), (37, 11), (3, 301)]
if REAL_GPU:
    CE_SHAPES += [(4099, 1000), (64, 32000), (20000, 10)]


def ce_data(n, c, dtype, seed=0, label_dtype=np.int64, ignore_index=-100):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c)) * 3
    y = rng.integers(0, c, n).astype(label_dtype)
    if n >= 5:
        y[1::4] = ignore_index
        x[2, :] = x[2, 0]  # an all-tied row: the argmax is column 0
        x[3, ::2] = rng.choice([-1e4, 1e4], size=x[3, ::2].shape)  # extreme logits
    w = (rng.random(c) * 2 + 0.1).astype(dtype)
    return x.astype(dtype), y, w


def run_ce(x, y, w, ignore_index, eps, grad_scale, code, want_pred=True, in_place=False):
    """CPU kernel and CUDA launcher on the same inputs: ((grad, loss, pred) CPU, same GPU)."""
    n, c = x.shape
    dtype = x.dtype
    loss_len = n if code == NONE else 1
    w_arr = np.empty(0, dtype=dtype) if w is None else w
    out = []
    for side in ("cpu", "gpu"):
        grad = np.full((n, c), 7, dtype=dtype)
        loss = np.full(loss_len, 7, dtype=dtype)
        pred = np.full(n if want_pred else 0, -7, dtype=np.int64)
        # The CPU side always gets int64 labels: one compiled CPU signature fewer to wait for.
        logits, labels, weight = x.copy(), y.astype(np.int64), w_arr
        if side == "gpu":
            labels = y
            grad, loss, pred, logits, labels, weight = map(
                dev, (grad, loss, pred, logits, labels, weight))
        if in_place:
            grad = logits
        kernel = K.cross_entropy_fwd_bwd if side == "cpu" else G.cross_entropy_fwd_bwd
        with np.errstate(invalid="ignore", over="ignore"):
            kernel(grad, loss, pred, logits, labels, weight, ignore_index, eps, grad_scale, code)
        out.append(tuple(to_host(a) for a in (grad, loss, pred)))
    # Results may be differences of larger terms: the gradient's are up to |grad_scale| max(w)
    # (over D for a mean), a row loss's up to max(w) (max|x| + log C + 1).
    kept = y != ignore_index
    wmax = 1.0 if w is None else float(np.abs(w).max())
    denom = float(kept.sum() if w is None else w[y[kept]].sum()) if code == MEAN else 1.0
    finite = np.abs(x[np.isfinite(x)])
    row = wmax * ((finite.max() if finite.size else 0.0) + np.log(c) + 1.0)
    per = 1.0 / denom if denom else 0.0
    grad_term = abs(grad_scale) * wmax * per
    loss_term = {NONE: row, SUM: n * row, MEAN: n * row * per}[code]
    return out + [(grad_term, loss_term)]


def check_ce(cpu, gpu, dtype, what, scale):
    (gc, lc, pc), (gg, lg, pg) = cpu, gpu
    close(gg, gc, dtype, f"ce grad ({what})", scale=scale[0])
    close(lg, lc, dtype, f"ce loss ({what})", scale=scale[1])
    np.testing.assert_array_equal(pg, pc, err_msg=f"ce pred ({what})")


@pytest.mark.usefixtures("ce_kernel")
@pytest.mark.parametrize("shape", CE_SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_parity(shape, dtype):
    n, c = shape
    x, y, w = ce_data(n, c, dtype, seed=n * c)
    # Every reduction with and without weights and smoothing, spread over six runs.
    cases = [(NONE, None, 0.0), (SUM, w, 0.0), (MEAN, None, 0.1), (MEAN, w, 0.0),
             (NONE, w, 0.25), (SUM, None, 1.0), (MEAN, w, 0.3)]
    for code, weight, eps in cases:
        cpu, gpu, scale = run_ce(x, y, weight, -100, eps, 0.5, code, want_pred=code != SUM)
        check_ce(cpu, gpu, dtype, f"reduction {code}, weighted {weight is not None}, eps {eps}",
                 scale)


@both_ce_kernels
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_cross_entropy_in_place_ignore_index_and_int32_labels(label_dtype):
    x, y, w = ce_data(37, 11, np.float32, seed=5, label_dtype=label_dtype, ignore_index=3)
    for code, weight, eps in [(MEAN, w, 0.2), (NONE, None, 0.0)]:
        cpu, gpu, scale = run_ce(x, y, weight, 3, eps, 1.0, code, in_place=True)
        check_ce(cpu, gpu, np.float32, f"in place, reduction {code}", scale)
        ignored = y == 3
        assert not (gpu[0][ignored] != 0).any(), "ignored rows must get a zero gradient"


@both_ce_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_edge_denominators(dtype):
    x, _, w = ce_data(7, 5, dtype, seed=1)
    # Every row ignored: a mean is 0 with a zero gradient (PyTorch gives NaN).
    y = np.full(7, -100, dtype=np.int64)
    cpu, gpu, scale = run_ce(x, y, w, -100, 0.1, 1.0, MEAN)
    check_ce(cpu, gpu, dtype, "all ignored", scale)
    assert gpu[1][0] == 0 and not gpu[0].any()
    # Zero total weight of the kept rows: 0/0 = NaN, on the device as on the CPU.
    y = np.array([0, 1, 0, -100, 1, 0, 0], dtype=np.int64)
    w0 = w.copy()
    w0[:2] = 0
    cpu, gpu, scale = run_ce(x, y, w0, -100, 0.0, 1.0, MEAN)
    check_ce(cpu, gpu, dtype, "zero total weight", scale)
    assert np.isnan(gpu[1][0])


@both_ce_kernels
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_nan_inf_and_argmax(dtype):
    x, y, w = ce_data(9, 6, dtype, seed=2)
    y[:] = np.arange(9) % 6
    x[0, 4] = np.nan  # NaN row: loss and gradient NaN; argmax is the first NaN
    x[0, 5] = np.nan
    x[4, 1] = np.inf  # +inf: inf - inf = NaN, as on the CPU
    x[5, :] = -np.inf
    x[6, 3] = -np.inf  # a -inf logit in a finite row is fine; at the label, the loss is inf
    y[6] = 3
    x[7, :] = [1.0, 3.0, 3.0, -2.0, 3.0, 0.0]  # ties: the first maximum
    for code, eps in [(NONE, 0.0), (NONE, 0.2), (SUM, 0.0)]:
        cpu, gpu, scale = run_ce(x, y, w, -100, eps, 1.0, code)
        check_ce(cpu, gpu, dtype, f"nan/inf, reduction {code}, eps {eps}", scale)
    pred = gpu[2]
    assert pred[0] == 4 and pred[4] == 1 and pred[7] == 1
    assert np.isnan(gpu[1][0])


@both_ce_kernels
def test_cross_entropy_is_deterministic():
    n, c = (4099, 1000) if REAL_GPU else (37, 11)
    x, y, w = ce_data(n, c, np.float32, seed=9)
    xd, yd, wd = dev(x), dev(y), dev(w)
    results = []
    for _ in range(3):
        grad = cuda.device_array((n, c), np.float32)
        loss = cuda.device_array(1, np.float32)
        pred = cuda.device_array(0, np.int64)
        G.cross_entropy_fwd_bwd(grad, loss, pred, xd, yd, wd, -100, 0.1, 1.0, MEAN)
        results.append((grad.copy_to_host(), loss.copy_to_host()))
    for grad, loss in results[1:]:
        assert_bitwise_equal(grad, results[0][0], "grad")
        assert_bitwise_equal(loss, results[0][1], "loss")


# ---------------------------------------------------------------------------------------------
# Labels


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_check_labels(label_dtype):
    n = 100_003 if REAL_GPU else 101
    y = (np.arange(n) % 5).astype(label_dtype)
    y[n // 3] = -100

    def both(labels, ignore_index):
        from numba import cuda

        on_gpu = cuda.mapped_array(2, np.int64)  # host memory the device writes, as the API's
        on_gpu[:] = -2
        G.check_labels(on_gpu, dev(labels), 5, ignore_index)
        cuda.synchronize()
        on_cpu = np.full(2, -2, np.int64)
        K.check_labels(on_cpu, labels, 5, ignore_index)
        assert list(on_gpu) == list(on_cpu)
        return list(on_cpu)

    assert both(y, -100) == [-1, 0]
    for i, value in [(n - 1, 5), (n // 2, -1), (7, 9)]:
        y2 = y.copy()
        y2[i] = value
        y2[-1] = 77 if i != n - 1 else value  # a later bad label does not hide an earlier one
        assert both(y2, -100) == [i, value]
    assert both(y, 0) == [n // 3, -100]  # -100 is out of range when not ignored


# ---------------------------------------------------------------------------------------------
# The public API on device arrays


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_api_returns_device_arrays(dtype):
    p, t = regression_data(37, dtype, seed=4)
    for name in ("mse", "l1", "huber"):
        want = getattr(fastml, name)(p, t)
        r = getattr(fastml, name)(dev(p), dev(t))
        assert hasattr(r.loss, "copy_to_host") and r.loss.shape == () and r.loss.dtype == dtype
        assert hasattr(r.grad, "copy_to_host") and r.grad.shape == (37,)
        close(r.loss.copy_to_host(), want.loss, dtype, f"{name} loss")
        close(r.grad.copy_to_host(), want.grad, dtype, f"{name} grad")
    r = fastml.mse(dev(p.reshape(37, 1)), dev(t.reshape(37, 1)), reduction="none")
    assert r.loss.shape == (37, 1) and hasattr(r.loss, "copy_to_host")

    x = p.reshape(37, 1)
    tt = (t.reshape(37, 1) > 0).astype(dtype)
    pw = np.array([2.0], dtype=dtype)
    want = fastml.bce_with_logits(x, tt, pos_weight=pw, reduction="sum")
    r = fastml.bce_with_logits(dev(x), dev(tt), pos_weight=dev(pw), reduction="sum")
    assert r.loss.shape == ()
    close(r.loss.copy_to_host(), want.loss, dtype, "bce loss")
    close(r.grad.copy_to_host(), want.grad, dtype, "bce grad")

    xc, y, w = ce_data(37, 11, dtype, seed=6)
    want = fastml.cross_entropy(xc, y, weight=w, label_smoothing=0.1, return_pred=True)
    xd = dev(xc)
    r = fastml.cross_entropy(xd, dev(y), weight=dev(w), label_smoothing=0.1, return_pred=True,
                             out=xd)
    assert r.loss.shape == () and r.grad is xd and r.pred.shape == (37,)
    close(r.loss.copy_to_host(), want.loss, dtype, "ce loss")
    close(r.grad.copy_to_host(), want.grad, dtype, "ce grad (in place)")
    np.testing.assert_array_equal(r.pred.copy_to_host(), want.pred)


def test_api_rejects_mixed_devices():
    p, t = regression_data(7, np.float32)
    with pytest.raises(fastml.DeviceError):
        fastml.mse(dev(p), t)
    with pytest.raises(fastml.DeviceError):
        fastml.mse(p, t, out=dev(p))
    x, y, w = ce_data(7, 5, np.float32)
    with pytest.raises(fastml.DeviceError):
        fastml.cross_entropy(dev(x), y)
    with pytest.raises(fastml.DeviceError):
        fastml.cross_entropy(dev(x), dev(y), weight=w)
    with pytest.raises(fastml.DeviceError):
        fastml.bce_with_logits(dev(x), dev(x), pos_weight=w)


@both_ce_kernels
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
def test_api_bad_label_on_device_names_it_and_writes_nothing(label_dtype):
    x, y, _ = ce_data(37, 11, np.float32, seed=8, label_dtype=label_dtype)
    y[1::4] = 0
    y[23], y[30] = 11, -5
    xd = dev(x)
    out = dev(np.full_like(x, 3.0))
    # The device checks the labels and the error comes at the first fastml call that sees the
    # check done (in the simulator, the call itself), or at check_device_errors.
    with pytest.raises(fastml.ShapeError, match=r"labels\[23\] = 11 \(found on the GPU"):
        fastml.cross_entropy(xd, dev(y), out=out)
        fastml.check_device_errors()
    fastml.check_device_errors()  # raised once
    assert np.isnan(out.copy_to_host()).all()  # poisoned, so a guarded step skips it
    with pytest.raises(fastml.ShapeError, match=r"labels\[23\] = 11"):
        fastml.cross_entropy(xd, dev(y), reduction="none", return_pred=True)
        fastml.check_device_errors()
    fastml.check_device_errors()
    good = fastml.cross_entropy(xd, dev(np.where((y >= 0) & (y < 11), y, 0)), out=out)
    fastml.check_device_errors()
    assert np.isfinite(good.grad.copy_to_host()).all()
    np.testing.assert_array_equal(xd.copy_to_host(), x)


def test_api_bad_label_on_device_is_raised_by_a_later_call(monkeypatch):
    """On a real GPU the host is usually ahead of the device: the call returns before the check
    has run. Here the host is kept from seeing the record until the call has returned."""
    from fastml import _device_errors as E

    x, y, _ = ce_data(9, 4, np.float32, seed=3)
    y[5] = 4
    with monkeypatch.context() as m:
        m.setattr(E, "raise_finished", lambda: None)  # the host does not see the record yet
        r = fastml.cross_entropy(dev(x), dev(y))  # returns
    assert np.isnan(float(r.loss.copy_to_host()))
    g = dev(np.ones(3, np.float32))
    with pytest.raises(fastml.ShapeError, match=r"labels\[5\] = 4 \(found on the GPU after "
                       r"cross_entropy call #\d+"):
        fastml.global_norm(g)  # any later GPU call
    assert fastml.global_norm(g) == pytest.approx(3 ** 0.5)  # and only once


@pytest.mark.skipif(not REAL_GPU, reason="needs PyTorch tensors on a real GPU")
def test_api_accepts_torch_cuda_tensors():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    x, y, w = ce_data(37, 11, np.float32, seed=10)
    want = fastml.cross_entropy(x, y, weight=w)
    xt = torch.from_numpy(x).cuda().requires_grad_()
    r = fastml.cross_entropy(xt, torch.from_numpy(y).cuda(), weight=torch.from_numpy(w).cuda())
    close(r.loss.cpu().numpy(), want.loss, np.float32, "ce loss (torch)")
    close(r.grad.cpu().numpy(), want.grad, np.float32, "ce grad (torch)")
    ref = torch.nn.functional.cross_entropy(xt, torch.from_numpy(y).cuda(),
                                            weight=torch.from_numpy(w).cuda())
    ref.backward()
    close(r.grad.cpu().numpy(), xt.grad.cpu().numpy(), np.float32, "ce grad vs torch")


def _torch_results(torch, r, like, shape, dtype):
    """Every result of a call on PyTorch tensors is a PyTorch tensor on their device."""
    for name, t in r._asdict().items():
        assert isinstance(t, torch.Tensor), (name, type(t))
        assert t.device == like.device, name
    assert tuple(r.grad.shape) == tuple(like.shape) and r.grad.dtype == like.dtype
    assert tuple(r.loss.shape) == shape and r.loss.dtype == dtype


@pytest.mark.skipif(not REAL_GPU, reason="needs PyTorch tensors on a real GPU")
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_inputs_give_torch_outputs(reduction):
    # fastml._outputs: allocated by PyTorch's caching allocator, zero-copy into autograd.
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    rng = np.random.default_rng(4)
    p, t = rng.normal(size=(2, 5, 7, 3))
    pt, tt = (torch.from_numpy(a).cuda() for a in (p, t))
    shape = (5, 7, 3) if reduction == "none" else ()
    for fn in (fastml.mse, fastml.l1, fastml.huber):
        r = fn(pt, tt, reduction=reduction)
        want = fn(p, t, reduction=reduction)
        _torch_results(torch, r, pt, shape, torch.float64)
        close(r.loss.cpu().numpy(), want.loss, np.float64, fn.__name__)
        close(r.grad.cpu().numpy(), want.grad, np.float64, fn.__name__)
    tb = torch.from_numpy(rng.uniform(size=(5, 7, 3))).cuda()
    r = fastml.bce_with_logits(pt, tb, reduction=reduction)
    _torch_results(torch, r, pt, shape, torch.float64)
    close(r.grad.cpu().numpy(), fastml.bce_with_logits(p, tb.cpu().numpy(),
                                                       reduction=reduction).grad,
          np.float64, "bce")
    x, y, _ = ce_data(37, 11, np.float32, seed=11)
    xt = torch.from_numpy(x).cuda().requires_grad_()
    r = fastml.cross_entropy(xt, torch.from_numpy(y).cuda(), reduction=reduction,
                             return_pred=True)
    _torch_results(torch, r, xt, (37,) if reduction == "none" else (), torch.float32)
    assert r.pred.dtype == torch.int64 and tuple(r.pred.shape) == (37,)
    want = fastml.cross_entropy(x, y, reduction=reduction, return_pred=True)
    np.testing.assert_array_equal(r.pred.cpu().numpy(), want.pred)
    close(r.loss.cpu().numpy(), want.loss, np.float32, "ce loss")
    if reduction == "mean":
        xt.backward(r.grad)  # the gradient goes straight into autograd
        ref = xt.detach().clone().requires_grad_()
        torch.nn.functional.cross_entropy(ref, torch.from_numpy(y).cuda()).backward()
        close(xt.grad.cpu().numpy(), ref.grad.cpu().numpy(), np.float32, "ce via backward")
    # out= is returned as given
    out = torch.empty_like(pt)
    assert fastml.mse(pt, tt, reduction=reduction, out=out).grad is out


@pytest.mark.skipif(not REAL_GPU, reason="needs PyTorch tensors on a real GPU")
def test_torch_outputs_written_on_another_stream_survive_reuse():
    # Under fastml.cuda_stream(side) the kernels write PyTorch's blocks on a stream PyTorch did
    # not allocate them on; record_stream keeps the caching allocator from handing them out
    # again while that stream still writes.
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    x = torch.full((1 << 20,), 2.0, device="cuda")
    zero = torch.zeros_like(x)
    side = torch.cuda.Stream()
    torch.cuda.synchronize()
    with fastml.cuda_stream(side):
        with torch.cuda.stream(side):
            torch.cuda._sleep(20_000_000)  # the side stream writes late
        grads = [fastml.mse(x, zero, reduction="sum").grad for _ in range(4)]
    keep = grads[-1]
    del grads
    junk = [torch.full_like(x, -1.0) for _ in range(8)]  # on the current stream, at once
    side.synchronize()
    torch.cuda.synchronize()
    assert float(keep.min()) == float(keep.max()) == 4.0
    assert all(float(j.min()) == -1.0 for j in junk)


# ---------------------------------------------------------------------------------------------
# Real-GPU compilation, checked without a GPU


TYPECHECK = textwrap.dedent("""
    import types
    from numba import types as T
    import numba.cuda.dispatcher as dispatcher
    from numba.cuda.compiler import compile_cuda
    # Device functions ask the current device for its compute capability; there is none here.
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
    from fastml.kernels.cuda import (_launch, bce_with_logits, cross_entropy,
                                     cross_entropy_rows, labels, regression, sample_weight)

    def lower(kernel, *args):
        cres = compile_cuda(kernel.py_func, T.void, args, cc=(9, 0))
        return cres.library.get_llvm_str()

    def functions(ir, *names):
        # The body of each function numba compiled (they return an i32 status), found by its
        # mangled name ("..._visitB2v3...": length, name, "B").
        chunks = [c for c in ir.split("\\ndefine ") if "i32 @" in c.split("(", 1)[0]]
        return {name: next(c for c in chunks if f"{len(name)}{name}B" in c.split("(", 1)[0])
                for name in names}

    f8 = T.float64[::1]
    # Every kernel in float32 with int32 labels (where float64 literals could sneak in); the
    # cross-entropy kernel, the one with the most typed branches, also in float64/int64.
    a, m = T.float32[::1], T.float32[:, ::1]
    for k in (regression._mse_kernel, regression._l1_kernel, regression._huber_kernel):
        ir = lower(k, a, a, f8, a, a, T.float32, T.float32, T.float32)
        assert "fmul double" not in ir, k  # element math stays float32; only the sum is float64
    lower(bce_with_logits._bce_kernel, a, a, f8, a, a, a, T.int64, T.int64, a, T.int64, T.int64,
          T.float32, T.float64)
    lower(_launch._sum_partials_kernel, a, f8, T.int64, T.int64, T.float64, T.boolean)
    i8 = T.int64[::1]
    ir = lower(cross_entropy._make_kernel(256), m, a, i8, f8, m, T.int32[::1], a,
               T.int64, T.float64, T.float64, T.int64, T.int64, T.boolean)
    # The per-logit exp is expf: in the gradient and in pass 1's sum. float64 exp only rescales
    # the online sum, where a thread's running max rises and once per thread for the row max.
    calls = {name: (body.count('call float @"__nv_expf"('), body.count('call double @"__nv_exp"('))
             for name, body in functions(ir, "_grad_term", "_visit", "kernel").items()}
    assert calls == {"_grad_term": (1, 0), "_visit": (1, 1), "kernel": (0, 1)}, calls
    m64 = T.float64[:, ::1]
    lower(cross_entropy._make_kernel(256), m64, f8, i8, f8, m64, i8, f8,
          T.int64, T.float64, T.float64, T.int64, T.int64, T.boolean)
    # The register kernel: warp-barrier groups (32 threads) and block-barrier ones (1024), plain
    # and with smoothing and weights. Its per-logit exp is expf; no float64 exp at all.
    for block, group, k, smoothing, weighted in ((256, 32, 32, False, False),
                                                 (1024, 1024, 32, True, True)):
        kernel = cross_entropy_rows._make_row_kernel(block, group, k, T.float32, smoothing,
                                                     weighted, None)
        ir = lower(kernel, m, a, i8, f8, m, T.int32[::1], a, T.int64, T.float64, T.float64,
                   T.int64, T.boolean)
        assert 'call float @"__nv_expf"(' in ir and 'call double @"__nv_exp"(' not in ir
        assert ("llvm.nvvm.bar.warp.sync" in ir) == (group <= 32), group
    kernel = cross_entropy_rows._make_row_kernel(256, 64, 16, T.float64, True, False, None)
    lower(kernel, m64, f8, i8, f8, m64, i8, f8, T.int64, T.float64, T.float64, T.int64,
          T.boolean)
    lower(cross_entropy._prepass_kernel, f8, T.int32[::1], a, T.int64, T.int64, T.boolean,
          T.boolean, T.boolean)
    lower(cross_entropy._prepass_finish_kernel, f8, T.int64, i8, T.int32[::1])
    lower(_launch._sum_partials_kernel, f8, f8, T.int64, T.int64, T.float64, T.boolean)
    lower(_launch._set_first_kernel, i8, T.int64)
    lower(labels._first_bad_label_kernel, i8, T.int32[::1], T.int64, T.int64)
    lower(labels._finish_kernel, i8, i8, T.int32[::1])
    lower(sample_weight._first_non_finite_kernel, i8, a)
    lower(sample_weight._finish_kernel, i8, i8, a)
    print("ok")
""")


@pytest.mark.skipif(REAL_GPU, reason="the real-GPU run compiles every kernel for real")
def test_kernels_type_check_for_a_real_gpu():
    """numba-cuda's typing and lowering to NVVM IR, which the simulator skips, needs no GPU."""
    pytest.importorskip("numba.cuda.compiler")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", TYPECHECK], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
