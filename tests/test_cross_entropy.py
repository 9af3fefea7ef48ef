"""cross_entropy against the float64 reference in tests/reference/losses.py and PyTorch."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastml
from fastml.errors import DTypeError

from .helpers import LARGE_DEVICES, assert_close, both_ce_kernels, sum_tol, to_device, to_host, tol
from .reference import losses as ref

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]
SHAPES = [(1, 1), (3, 1), (1, 2), (2, 2), (5, 3), (13, 7), (64, 2), (6, 131)]
LARGE_SHAPES = [(37, 1001), (3500, 5)]  # many classes; rows over 2 CPU chunks (3276 rows)
IGNORE = -100

# Every test here runs with each CUDA kernel on a real GPU; those marked both_ce_kernels do in
# the simulator too (tests/conftest.py, CE_KERNELS).
pytestmark = pytest.mark.usefixtures("ce_kernel")


def make_data(shape, dtype, seed=0, ignored=0.0):
    """Logits of both signs and labels; a fraction ``ignored`` of rows labelled IGNORE."""
    rng = np.random.default_rng(seed)
    n, c = shape
    logits = (rng.standard_normal(shape) * 3).astype(dtype)
    labels = rng.integers(0, c, n)
    labels[rng.random(n) < ignored] = IGNORE
    return logits, labels


def error_bounds(logits, labels, weight, label_smoothing, ignore_index, reduction, grad_scale):
    """Absolute error bounds of the per-row losses and of each gradient row.

    Each row's loss and gradient are made of log-sum-exp and softmax terms carrying the row's
    total weight ``(1 - eps) |w_y| + (eps / C) sum |w|``; the softmax and ``log sum exp(x - m)``
    are good to a few roundings in the input dtype plus a float64 sum over C terms
    (``sum_tol``). The size of the logits does not enter: ``lse - x_y`` computed as
    ``(m - x_y) + log sum exp(x - m)`` adds two non-negative terms, as PyTorch's log_softmax
    does, and cancels no digits.
    """
    n, c = logits.shape
    dtype = logits.dtype
    w = np.ones(c) if weight is None else np.abs(weight.astype(np.float64))
    kept = labels != ignore_index
    eps = label_smoothing
    w_row = np.where(kept, (1 - eps) * w[np.where(kept, labels, 0)] + eps / c * w.sum(), 0.0)
    loss_row = w_row * sum_tol(dtype, c)
    d = 1.0
    if reduction == "mean" and kept.any():
        # D = 0 makes the results NaN, which assert_close matches exactly.
        d = abs(ref.mean_denominator(labels, weight, ignore_index)) or 1.0
    grad_row = abs(grad_scale) / d * w_row * sum_tol(dtype, c)
    return loss_row, grad_row[:, None], d


def grad_rtol(dtype, reduction, n):
    """A mean scales every gradient element by 1/D, D a float64 sum over up to n rows."""
    return sum_tol(dtype, n) if reduction == "mean" else tol(dtype)


def check_against_reference(logits, labels, weight=None, ignore_index=IGNORE,
                            label_smoothing=0.0, reduction="mean", grad_scale=1.0,
                            device="cpu", return_pred=False):
    dtype = logits.dtype
    want_loss, want_grad = ref.cross_entropy(logits, labels, weight, ignore_index,
                                             label_smoothing, reduction, grad_scale)
    r = fastml.cross_entropy(
        to_device(logits, device), to_device(labels, device), weight=to_device(weight, device),
        ignore_index=ignore_index, label_smoothing=label_smoothing, reduction=reduction,
        grad_scale=grad_scale, return_pred=return_pred)
    loss, grad = to_host(r.loss), to_host(r.grad)
    n = logits.shape[0]
    assert grad.dtype == dtype and grad.shape == logits.shape
    assert loss.dtype == dtype and loss.shape == ((n,) if reduction == "none" else ())
    loss_row, grad_row, d = error_bounds(logits, labels, weight, label_smoothing, ignore_index,
                                         reduction, grad_scale)
    if reduction == "none":
        assert_close(loss, want_loss, rtol=tol(dtype), atol=loss_row, name="loss")
    else:
        assert_close(loss, want_loss, rtol=sum_tol(dtype, n), atol=np.nansum(loss_row) / d,
                     name="loss")
    assert_close(grad, want_grad, rtol=grad_rtol(dtype, reduction, n), atol=grad_row,
                 name="grad")
    if return_pred:
        pred = to_host(r.pred)
        assert pred.dtype == np.int64 and pred.shape == (n,)
        np.testing.assert_array_equal(pred, np.argmax(logits, axis=1))
    return r


def options(c, dtype, seed):
    """(weight, label_smoothing) pairs: unweighted and weighted, with and without smoothing."""
    w = np.random.default_rng(seed).uniform(0.2, 3.0, c).astype(dtype)
    return [(None, 0.0), (w, 0.0), (None, 0.1), (w, 0.1)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_reference(device, dtype, shape):
    check_shape(device, dtype, shape)


@pytest.mark.parametrize("ce_kernel", ["rows"], indirect=True)
@pytest.mark.parametrize("device", ["cuda"])
@pytest.mark.parametrize("shape", [(1, 1), (13, 7), (6, 131)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_register_kernel_matches_reference(device, dtype, shape):
    # The register kernel's share of test_matches_reference in the simulator (CI time; on a
    # real GPU every test runs with it). C = 1: one value in a group of 4 threads; 7: 2 values
    # per thread; 131: 8 threads of 32 values (float32) or 16 of 16 (float64), partly filled.
    logits, labels = make_data(shape, dtype, seed=shape[0] * shape[1], ignored=0.3)
    for weight, smoothing in options(shape[1], dtype, seed=1):
        for reduction in REDUCTIONS:
            check_against_reference(logits, labels, weight, IGNORE, smoothing, reduction,
                                    device=device)
    logits, labels = make_data((9, 5), dtype, seed=3)
    for ignore_index in (-1, 2):
        check_against_reference(logits, np.where(labels == 2, ignore_index, labels),
                                ignore_index=ignore_index, device=device, return_pred=True)


@both_ce_kernels
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_rows_whose_max_rises_at_every_column(device, dtype):
    # The streaming CUDA kernel sums exp(x - max) online, rescaling a thread's sum each time its
    # running max rises: rising rows rescale at every column (the most roundings), falling rows
    # never. (The register kernel, for rows of 1001: 32 threads of 32 values in float32, 64
    # threads of 16 in float64, whose reductions cross warps.)
    # Both must stay within the reference's tolerance, with and without smoothing.
    c = 1001
    ramp = np.linspace(-20.0, 20.0, c)
    logits = np.stack([ramp, ramp[::-1], np.sort(np.random.default_rng(5).normal(0, 5, c)),
                       np.where(np.arange(c) < c - 1, -np.inf, 0.0)]).astype(dtype)
    labels = np.array([c - 1, 0, 7, c - 1])
    for weight, smoothing in options(c, dtype, seed=6):
        if smoothing:  # an -inf logit makes a smoothed loss inf (as in PyTorch): keep 3 rows
            logits, labels = logits[:3], labels[:3]
        for reduction in ("none", "mean"):
            check_against_reference(logits, labels, weight, label_smoothing=smoothing,
                                    reduction=reduction, device=device, return_pred=True)


@pytest.mark.parametrize("device", LARGE_DEVICES)
@pytest.mark.parametrize("shape", LARGE_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_reference_large(device, dtype, shape):
    check_shape(device, dtype, shape)


def check_shape(device, dtype, shape):
    for ignored in [0.0, 0.3]:
        logits, labels = make_data(shape, dtype, seed=shape[0] * shape[1], ignored=ignored)
        for weight, smoothing in options(shape[1], dtype, seed=1):
            for reduction in REDUCTIONS:
                check_against_reference(logits, labels, weight, IGNORE, smoothing, reduction,
                                        device=device)


@pytest.mark.parametrize("smoothing", [0.0, 0.05, 0.5, 1.0])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_label_smoothing_with_and_without_weight(device, dtype, smoothing):
    logits, labels = make_data((9, 6), dtype, seed=2, ignored=0.2)
    for weight, _ in options(6, dtype, seed=3)[:2]:
        for reduction in REDUCTIONS:
            check_against_reference(logits, labels, weight, IGNORE, smoothing, reduction,
                                    device=device)


@pytest.mark.parametrize("grad_scale", [0.0, -2.0, 1 / 3, 65536.0])
def test_grad_scale_multiplies_the_gradient_only(device, grad_scale):
    logits, labels = make_data((6, 5), np.float64, seed=4, ignored=0.2)
    for weight, smoothing in options(5, np.float64, seed=5):
        for reduction in REDUCTIONS:
            check_against_reference(logits, labels, weight, IGNORE, smoothing, reduction,
                                    grad_scale, device)


@pytest.mark.parametrize("ignore_index", [-100, -1, 0, 2, 10**12])
@pytest.mark.parametrize("label_dtype", [np.int64, np.int32, np.int16, np.uint8])
def test_ignore_index_rows_get_zero_gradient(device, ignore_index, label_dtype):
    if device == "cuda" and label_dtype not in (np.int32, np.int64):
        with pytest.raises(DTypeError, match="labels must be int32 or int64 on the GPU"):
            fastml.cross_entropy(to_device(np.zeros((2, 3)), device),
                                 to_device(np.zeros(2, label_dtype), device))
        return
    if ignore_index < 0 and np.dtype(label_dtype).kind == "u":
        ignore_index = 3  # unsigned labels cannot hold a negative one
    if not np.can_cast(np.min_scalar_type(ignore_index), label_dtype):
        ignore_index = 4
    logits, labels = make_data((12, 5), np.float64, seed=6)
    labels[[1, 4, 5, 11]] = ignore_index
    labels = labels.astype(label_dtype)
    ignored = labels == ignore_index
    for weight, smoothing in options(5, np.float64, seed=7):
        for reduction in REDUCTIONS:
            r = check_against_reference(logits, labels, weight, ignore_index, smoothing,
                                        reduction, 1.5, device, return_pred=True)
            grad = to_host(r.grad)
            assert (grad[ignored] == 0).all()
            assert (grad[~ignored] != 0).any()
            if reduction == "none":
                assert (to_host(r.loss)[ignored] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_all_rows_ignored(device, dtype):
    logits, _ = make_data((5, 4), dtype, seed=8)
    logits[2, 1] = np.nan  # an ignored row's NaN stays out of the loss and the gradient
    labels = np.full(5, IGNORE)
    for weight, smoothing in options(4, dtype, seed=9):
        for reduction in REDUCTIONS:
            out = to_device(np.full((5, 4), np.nan, dtype), device)
            r = fastml.cross_entropy(to_device(logits, device), to_device(labels, device),
                                     weight=to_device(weight, device), label_smoothing=smoothing,
                                     reduction=reduction, out=out, return_pred=True)
            loss, grad = to_host(r.loss), to_host(r.grad)
            # fastml's documented choice for "mean": 0.0 and a zero gradient (PyTorch: NaN).
            assert loss.dtype == dtype
            assert loss.shape == ((5,) if reduction == "none" else ())
            assert (loss == 0).all() and not np.signbit(loss).any()
            assert (grad == 0).all()
            np.testing.assert_array_equal(to_host(r.pred), np.argmax(logits, axis=1))
            check_against_reference(logits, labels, weight, IGNORE, smoothing, reduction,
                                    device=device)


@both_ce_kernels
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_weighted_mean_with_zero_total_weight_is_nan(device, dtype):
    # As in PyTorch: the mean divides by sum w_y = 0, with or without smoothing (whose own
    # numerator is not 0: PyTorch's nll term is 0/0 all the same).
    logits, _ = make_data((4, 3), dtype, seed=10)
    labels = np.array([0, 0, IGNORE, 0])
    weight = np.array([0.0, 1.0, 2.0], dtype)
    for smoothing in [0.0, 0.5, 1.0]:
        check_against_reference(logits, labels, weight, IGNORE, smoothing, "mean",
                                device=device)
        r = fastml.cross_entropy(to_device(logits, device), to_device(labels, device),
                                 weight=to_device(weight, device), label_smoothing=smoothing)
        grad = to_host(r.grad)
        assert np.isnan(to_host(r.loss))
        assert np.isnan(grad[labels != IGNORE]).all() and (grad[labels == IGNORE] == 0).all()


@both_ce_kernels
def test_subnormal_total_weight_gives_a_finite_mean(device):
    # D = 2 * 2.2e-311 is subnormal: 1/D overflows, w_y / D does not. The mean divides by D
    # (PyTorch's loss does too; its gradient multiplies by 1/D and gives inf/NaN). With label
    # smoothing the true gradient (eps/C) W / D does overflow, so this case has none.
    logits = np.array([[1.0, 2.0, 0.5], [0.3, 0.1, -1.0], [4.0, -2.0, 0.0]])
    labels = np.array([0, IGNORE, 0])
    weight = np.array([2.2e-311, 1.0, 1.0])
    check_against_reference(logits, labels, weight, IGNORE, 0.0, "mean", device=device)
    r = fastml.cross_entropy(to_device(logits, device), to_device(labels, device),
                             weight=to_device(weight, device))
    assert np.isfinite(to_host(r.loss)) and np.isfinite(to_host(r.grad)).all()
    # Found by hypothesis: one class of weight 5e-324 and full smoothing. The smoothing gradient
    # (eps / C)(W p - w) / D is 0 here; as eps / (C D) times w it was -inf.
    logits = np.zeros((5, 1))
    labels = np.array([0, IGNORE, 0, 0, IGNORE])
    check_against_reference(logits, labels, np.array([5e-324]), IGNORE, 1.0, "mean",
                            device=device)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_out_and_in_place(device, dtype):
    logits, labels = make_data((7, 6), dtype, seed=11, ignored=0.3)
    for weight, smoothing in options(6, dtype, seed=12):
        for reduction in REDUCTIONS:
            want_loss, want_grad = ref.cross_entropy(logits, labels, weight, IGNORE, smoothing,
                                                     reduction, 0.5)
            loss_row, grad_row, d = error_bounds(logits, labels, weight, smoothing, IGNORE,
                                                 reduction, 0.5)
            for which in ["new", "logits"]:
                x = to_device(logits, device)
                y, w = to_device(labels, device), to_device(weight, device)
                out = x if which == "logits" else to_device(np.full(logits.shape, -7, dtype),
                                                            device)
                r = fastml.cross_entropy(x, y, weight=w, label_smoothing=smoothing,
                                         reduction=reduction, grad_scale=0.5, out=out,
                                         return_pred=True)
                assert r.grad is out
                assert_close(out, want_grad, rtol=grad_rtol(dtype, reduction, 7), atol=grad_row,
                             name=f"out={which}")
                if reduction == "none":
                    assert_close(r.loss, want_loss, rtol=tol(dtype), atol=loss_row, name="loss")
                else:
                    assert_close(r.loss, want_loss, rtol=sum_tol(dtype, 7),
                                 atol=loss_row.sum() / d, name="loss")
                # The argmax is of the logits as they were before the gradient overwrote them.
                np.testing.assert_array_equal(to_host(r.pred), np.argmax(logits, axis=1))
                if which != "logits":
                    np.testing.assert_array_equal(to_host(x), logits)
                np.testing.assert_array_equal(to_host(y), labels)
                if weight is not None:
                    np.testing.assert_array_equal(to_host(w), weight)


def extreme_data(dtype):
    """Logits of +-1e4 (exp would overflow without the row max) with labels on the largest,
    the smallest and a middle logit."""
    big = 1e4
    logits = np.array([
        [big, -big, 0.0],
        [big, -big, 0.0],
        [big, -big, 0.0],
        [-big, -big, -big],
        [big, big, big],
        [big, big - 1, -big],
        [-big, 3.0, -big],
    ])
    labels = np.array([0, 1, 2, 1, 2, 1, 0])
    return logits.astype(dtype), labels


@both_ce_kernels
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_extreme_logits_stay_finite(device, dtype):
    logits, labels = extreme_data(dtype)
    for weight, smoothing in options(3, dtype, seed=13):
        for reduction in REDUCTIONS:
            r = check_against_reference(logits, labels, weight, IGNORE, smoothing, reduction,
                                        device=device, return_pred=True)
            assert np.isfinite(to_host(r.loss)).all()
            assert np.isfinite(to_host(r.grad)).all()
    r = fastml.cross_entropy(to_device(logits, device), to_device(labels, device),
                             reduction="none")
    loss = to_host(r.loss)
    # Right and confident: 0; wrong by 2e4: 2e4; equal logits: log(3); a gap of 1: log(1 + e).
    np.testing.assert_allclose(loss[[0, 1, 3, 4, 5]],
                               [0.0, 2e4, np.log(3), np.log(3), np.log1p(np.e)],
                               rtol=tol(dtype), atol=0)


def non_finite_data(dtype):
    inf, nan = np.inf, np.nan
    logits = np.array([
        [nan, 1.0, 2.0, 0.0],  # NaN first
        [1.0, 2.0, nan, 0.0],  # NaN later (the argmax is the first NaN, not the max)
        [1.0, nan, 3.0, nan],  # two NaN
        [inf, 1.0, 2.0, 0.0],  # +Inf: inf - inf in the softmax, NaN as in PyTorch
        [-inf, 1.0, 2.0, 0.0],  # -Inf off the label: a finite loss
        [-inf, 1.0, 2.0, 0.0],  # -Inf on the label: an infinite loss, a finite gradient
        [-inf, -inf, -inf, -inf],  # all -Inf: NaN
        [1.0, 2.0, 3.0, 4.0],  # a clean row beside them stays clean for "none"
        [nan, inf, -inf, 1.0],  # ignored: no loss, a zero gradient (fastml's rule)
    ])
    labels = np.array([1, 1, 2, 2, 2, 0, 3, 3, IGNORE])
    return logits.astype(dtype), labels


@both_ce_kernels
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_nan_and_inf_propagate(device, dtype):
    logits, labels = non_finite_data(dtype)
    for weight, smoothing in options(4, dtype, seed=14):
        for reduction in REDUCTIONS:
            r = check_against_reference(logits, labels, weight, IGNORE, smoothing, reduction,
                                        device=device, return_pred=True)
            loss, grad = to_host(r.loss), to_host(r.grad)
            if reduction == "none":
                assert np.isnan(loss[[0, 1, 2, 3, 6]]).all()
                assert np.isposinf(loss[5]) and np.isfinite(loss[7])
                # -Inf off the label: finite, unless smoothing also charges that class.
                assert np.isfinite(loss[4]) if smoothing == 0 else np.isposinf(loss[4])
                assert loss[8] == 0
            else:
                assert np.isnan(loss)  # nothing is masked
            assert np.isnan(grad[[0, 1, 2, 3, 6]]).all()
            assert np.isfinite(grad[[4, 5, 7]]).all() and (grad[8] == 0).all()


@both_ce_kernels
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_return_pred_is_numpys_argmax(device, dtype):
    nan, inf = np.nan, np.inf
    logits = np.array([
        [1.0, 3.0, 3.0, 2.0],  # tie: the first maximum
        [5.0, 5.0, 5.0, 5.0],
        [0.0, nan, 9.0, nan],  # NaN: the first NaN
        [nan, nan, 1.0, 1.0],
        [-inf, -inf, -inf, -inf],
        [-inf, -inf, -1e30, -inf],
        [1.0, inf, inf, 2.0],
        [-0.0, 0.0, -1.0, -2.0],  # -0 == 0: the first
        [1.0, 2.0, 3.0, 4.0],
    ]).astype(dtype)
    labels = np.array([0, 1, 2, 3, 0, 1, 2, IGNORE, 3])
    for reduction in REDUCTIONS:
        r = fastml.cross_entropy(to_device(logits, device), to_device(labels, device),
                                 reduction=reduction, return_pred=True)
        assert isinstance(r, fastml.LossGradPred)
        pred = to_host(r.pred)
        assert pred.dtype == np.int64 and pred.shape == (9,)
        np.testing.assert_array_equal(pred, np.argmax(logits, axis=1))
        np.testing.assert_array_equal(pred, ref.row_argmax(logits))
    # Many random rows, with ties from rounding to a coarse grid.
    rng = np.random.default_rng(15)
    logits = np.round(rng.standard_normal((300, 17)) * 2).astype(dtype)
    logits[rng.random((300, 17)) < 0.01] = np.nan
    labels = rng.integers(0, 17, 300)
    r = fastml.cross_entropy(to_device(logits, device), to_device(labels, device),
                             return_pred=True)
    np.testing.assert_array_equal(to_host(r.pred), np.argmax(logits, axis=1))
    r = fastml.cross_entropy(to_device(logits, device), to_device(labels, device))
    assert isinstance(r, fastml.LossGrad) and len(r) == 2


def test_non_contiguous_inputs():
    base, labels = make_data((10, 12), np.float64, seed=16, ignored=0.2)
    weight = np.linspace(0.5, 2.0, 12)
    views = [
        (base[:, ::2], labels, weight[::2]),  # strided logits and weight
        (np.asfortranarray(base), labels, weight),  # Fortran order
        (base[::-1], labels[::-1].copy(), weight),  # negative strides
        (base[::2], labels[::2], weight),  # strided labels
    ]
    for logits, y, w in views:
        y = np.where(y >= logits.shape[1], 0, y)
        for reduction in REDUCTIONS:
            check_against_reference(logits, y, w, IGNORE, 0.1, reduction, return_pred=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_return_types_on_cpu(dtype):
    logits, labels = make_data((4, 3), dtype, seed=17)
    for reduction in ["mean", "sum"]:
        r = fastml.cross_entropy(logits, labels, reduction=reduction)
        assert isinstance(r, fastml.LossGrad)
        assert isinstance(r.loss, np.generic) and r.loss.dtype == dtype
        assert isinstance(r.grad, np.ndarray) and r.grad.dtype == dtype and r.grad.shape == (4, 3)
    r = fastml.cross_entropy(logits, labels, reduction="none", return_pred=True)
    assert isinstance(r.loss, np.ndarray) and r.loss.shape == (4,) and r.loss.dtype == dtype
    assert isinstance(r.pred, np.ndarray) and r.pred.dtype == np.int64


def torch_value_and_grad(torch, logits, labels, weight, ignore_index, smoothing, reduction,
                         grad_scale):
    x = torch.tensor(logits, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(
        x, torch.tensor(labels, dtype=torch.int64),
        weight=None if weight is None else torch.tensor(weight), ignore_index=ignore_index,
        label_smoothing=smoothing, reduction=reduction)
    loss.backward(torch.full_like(loss, grad_scale))
    return loss.detach().numpy(), x.grad.numpy()


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_pytorch(dtype):
    torch = pytest.importorskip("torch")
    cases = [make_data((8, 5), dtype, seed=18, ignored=0.25), make_data((3, 1), dtype, seed=19),
             make_data((6, 257), dtype, seed=20, ignored=0.2), extreme_data(dtype)]
    x_nan, y_nan = non_finite_data(dtype)
    # Without the ignored row: PyTorch gives an ignored row with NaN logits a NaN gradient.
    non_finite = (x_nan[:8], y_nan[:8])
    for ignore_index in [IGNORE, 1]:
        for logits, labels in cases + ([non_finite] if ignore_index == IGNORE else []):
            labels = np.where(labels == IGNORE, ignore_index, labels)
            c = logits.shape[1]
            for weight, smoothing in options(c, dtype, seed=21) + [(None, 1.0)]:
                for reduction in REDUCTIONS:
                    args = (logits, labels, weight, ignore_index, smoothing, reduction, 0.75)
                    if reduction == "mean" and (labels == ignore_index).all():
                        continue  # the documented difference, tested above
                    want_loss, want_grad = torch_value_and_grad(torch, *args)
                    r = fastml.cross_entropy(logits, labels, weight=weight,
                                             ignore_index=ignore_index, label_smoothing=smoothing,
                                             reduction=reduction, grad_scale=0.75)
                    loss_row, grad_row, d = error_bounds(logits, labels, weight, smoothing,
                                                         ignore_index, reduction, 0.75)
                    # Both sides round: twice the bounds against an exact value.
                    n = logits.shape[0]
                    if reduction == "none":
                        rtol, atol = 2 * tol(dtype), 2 * loss_row
                    else:
                        rtol, atol = 2 * sum_tol(dtype, n), 2 * np.nansum(loss_row) / d
                    name = f"C={c} ignore_index={ignore_index} w={weight is not None} " \
                           f"eps={smoothing} {reduction}"
                    assert_close(r.loss, want_loss, rtol=rtol, atol=atol, name=f"{name} loss")
                    g_rtol = 2 * grad_rtol(dtype, reduction, n)
                    assert_close(r.grad, want_grad, rtol=g_rtol, atol=2 * grad_row,
                                 name=f"{name} grad")
                    if dtype == np.float64:
                        ref_loss, ref_grad = ref.cross_entropy(*args)
                        assert_close(ref_loss, want_loss, rtol=rtol, atol=atol,
                                     name=f"reference {name} loss")
                        assert_close(ref_grad, want_grad, rtol=g_rtol, atol=2 * grad_row,
                                     name=f"reference {name} grad")


@pytest.mark.torch
def test_zero_total_weight_matches_pytorch():
    torch = pytest.importorskip("torch")
    logits, _ = make_data((6, 2), np.float64, seed=23)
    labels = np.array([0, IGNORE, 0, 0, IGNORE, 0])
    weight = np.array([0.0, 1.0])
    for smoothing in [0.0, 0.3, 1.0]:
        for reduction in REDUCTIONS:
            args = (logits, labels, weight, IGNORE, smoothing, reduction, 1.0)
            want_loss, want_grad = torch_value_and_grad(torch, *args)
            r = fastml.cross_entropy(logits, labels, weight=weight, label_smoothing=smoothing,
                                     reduction=reduction)
            loss_row, grad_row, d = error_bounds(logits, labels, weight, smoothing, IGNORE,
                                                 reduction, 1.0)
            rtol = 2 * sum_tol(np.float64, 6)
            atol = 2 * (loss_row if reduction == "none" else loss_row.sum())
            for got_loss, got_grad, who in [(r.loss, r.grad, "fastml"),
                                            (*ref.cross_entropy(*args), "reference")]:
                assert_close(got_loss, want_loss, rtol=rtol, atol=atol, name=f"{who} loss")
                assert_close(got_grad, want_grad, rtol=rtol, atol=2 * grad_row,
                             name=f"{who} grad")


@pytest.mark.torch
def test_torch_cpu_tensors_zero_copy():
    torch = pytest.importorskip("torch")
    logits, labels = make_data((5, 4), np.float32, seed=22, ignored=0.2)
    weight = np.array([1.0, 2.0, 0.5, 1.5], np.float32)
    want_loss, want_grad = ref.cross_entropy(logits, labels, weight, IGNORE, 0.1, "mean", 1.0)
    loss_row, grad_row, d = error_bounds(logits, labels, weight, 0.1, IGNORE, "mean", 1.0)
    x, y, w = torch.tensor(logits), torch.tensor(labels), torch.tensor(weight)
    out = torch.full((5, 4), -7.0)
    r = fastml.cross_entropy(x, y, weight=w, label_smoothing=0.1, out=out)
    assert r.grad is out
    g_rtol = grad_rtol(np.float32, "mean", 5)
    assert_close(out.numpy(), want_grad, rtol=g_rtol, atol=grad_row, name="torch out")
    assert_close(r.loss, want_loss, rtol=sum_tol(np.float32, 5), atol=loss_row.sum() / d)
    x = torch.tensor(logits, requires_grad=True)
    r = fastml.cross_entropy(x, y, weight=w, label_smoothing=0.1, out=x)  # in place
    assert r.grad is x
    assert_close(x.detach().numpy(), want_grad, rtol=g_rtol, atol=grad_row,
                 name="in place")


@st.composite
def ce_cases(draw, dtype):
    width = np.dtype(dtype).itemsize * 8
    n = draw(st.integers(1, 24))
    c = draw(st.integers(1, 40))
    logits = draw(hnp.arrays(dtype, (n, c), elements=st.floats(-1e4, 1e4, width=width)))
    labels = np.array(draw(st.lists(st.integers(0, c - 1) | st.just(IGNORE),
                                    min_size=n, max_size=n)))
    weight = draw(st.none() | hnp.arrays(dtype, (c,), elements=st.floats(0.0, 8.0,
                                                                         width=width)))
    smoothing = draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0))
    return logits, labels, weight, smoothing


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hypothesis(device, dtype, data):
    logits, labels, weight, smoothing = data.draw(ce_cases(dtype))
    reduction = data.draw(st.sampled_from(REDUCTIONS))
    grad_scale = data.draw(st.sampled_from([1.0, 0.5, -4.0]))
    check_against_reference(logits, labels, weight, IGNORE, smoothing, reduction, grad_scale,
                            device, return_pred=True)
