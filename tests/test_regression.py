"""mse, l1 and huber against the float64 references in tests/reference/losses.py and PyTorch."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastml

from .helpers import LARGE_DEVICES, assert_close, sum_tol, to_device, to_host, tol
from .reference import losses as ref

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]
# name -> (fastml function, reference function, keyword arguments of both)
LOSSES = {
    "mse": (fastml.mse, ref.mse, {}),
    "l1": (fastml.l1, ref.l1, {}),
    "huber": (fastml.huber, ref.huber, {"delta": 1.0}),
    "huber-0.25": (fastml.huber, ref.huber, {"delta": 0.25}),
    "huber-3": (fastml.huber, ref.huber, {"delta": 3.0}),
}
SHAPES = [(), (1,), (2,), (7,), (97,), (1, 1), (3, 1), (1, 5), (5, 13), (2, 3, 5)]


def make_data(shape, dtype, seed=0):
    """pred and target with exact ties (pred == target) and exact |pred - target| of 0.25, 1
    and 3 (the Huber thresholds tested), besides continuous values of both signs."""
    rng = np.random.default_rng(seed)
    pred = rng.standard_normal(shape) * 3
    target = rng.standard_normal(shape) * 3
    # Every other element on a grid of quarters, so differences such as 0.25, 1 or 3 are exact.
    grid = rng.integers(-16, 17, size=shape) / 4.0
    on_grid = (np.arange(pred.size).reshape(shape) % 2) == 0
    pred = np.where(on_grid, grid, pred)
    offset = rng.choice([0.0, 0.25, -0.25, 1.0, -1.0, 3.0, -3.0, 0.5], size=shape)
    target = np.where(on_grid, grid + offset, target)
    return pred.astype(dtype), target.astype(dtype)


def check_against_reference(name, pred, target, reduction, grad_scale=1.0, device="cpu"):
    fn, ref_fn, kw = LOSSES[name]
    dtype = pred.dtype
    want_loss, want_grad = ref_fn(pred, target, reduction=reduction, grad_scale=grad_scale, **kw)
    r = fn(to_device(pred, device), to_device(target, device), reduction=reduction,
           grad_scale=grad_scale, **kw)
    loss, grad = to_host(r.loss), to_host(r.grad)
    assert grad.dtype == dtype and grad.shape == pred.shape
    assert loss.dtype == dtype
    assert loss.shape == (pred.shape if reduction == "none" else ())
    # The elementwise terms are a few roundings away from the exact ones (float32 inputs: d is
    # rounded to float32 before it is squared); a reduction adds its summation error.
    rtol = tol(dtype) if reduction == "none" else sum_tol(dtype, pred.size)
    assert_close(loss, want_loss, rtol=rtol, name=f"{name} loss")
    assert_close(grad, want_grad, rtol=tol(dtype), name=f"{name} grad")


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_reference(device, dtype, name, shape):
    pred, target = make_data(shape, dtype, seed=len(shape) * 100 + sum(shape))
    for reduction in REDUCTIONS:
        check_against_reference(name, pred, target, reduction, device=device)


@pytest.mark.parametrize("device", LARGE_DEVICES)
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_several_chunks(device, dtype, name):
    # Longer than the CPU kernels' 16384-element chunks, and not a multiple of them.
    pred, target = make_data((40_009,), dtype, seed=1)
    for reduction in REDUCTIONS:
        check_against_reference(name, pred, target, reduction, device=device)


@pytest.mark.parametrize("grad_scale", [0.0, -2.5, 1 / 3, 1024.0])
@pytest.mark.parametrize("name", LOSSES)
def test_grad_scale_multiplies_the_gradient_only(device, name, grad_scale):
    pred, target = make_data((6, 7), np.float64, seed=2)
    for reduction in REDUCTIONS:
        check_against_reference(name, pred, target, reduction, grad_scale, device=device)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_out_receives_the_gradient_and_inputs_stay(device, dtype, name):
    fn, ref_fn, kw = LOSSES[name]
    pred, target = make_data((4, 9), dtype, seed=3)
    for reduction in REDUCTIONS:
        want_loss, want_grad = ref_fn(pred, target, reduction=reduction, grad_scale=0.5, **kw)
        p, t = to_device(pred, device), to_device(target, device)
        out = to_device(np.full(pred.shape, -7.0, dtype), device)
        r = fn(p, t, reduction=reduction, grad_scale=0.5, out=out, **kw)
        assert r.grad is out
        assert_close(out, want_grad, rtol=tol(dtype), name="out")
        rtol = tol(dtype) if reduction == "none" else sum_tol(dtype, pred.size)
        assert_close(r.loss, want_loss, rtol=rtol, name="loss")
        np.testing.assert_array_equal(to_host(p), pred)
        np.testing.assert_array_equal(to_host(t), target)


@pytest.mark.parametrize("which", ["pred", "target"])
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_in_place(device, dtype, name, which):
    fn, ref_fn, kw = LOSSES[name]
    pred, target = make_data((3, 11), dtype, seed=4)
    for reduction in REDUCTIONS:
        want_loss, want_grad = ref_fn(pred, target, reduction=reduction, grad_scale=2.0, **kw)
        p, t = to_device(pred, device), to_device(target, device)
        out = p if which == "pred" else t
        r = fn(p, t, reduction=reduction, grad_scale=2.0, out=out, **kw)
        assert r.grad is out
        assert_close(out, want_grad, rtol=tol(dtype), name=f"grad written over {which}")
        rtol = tol(dtype) if reduction == "none" else sum_tol(dtype, pred.size)
        assert_close(r.loss, want_loss, rtol=rtol, name="loss")
        other = to_host(t if which == "pred" else p)
        np.testing.assert_array_equal(other, target if which == "pred" else pred)


def non_finite_data(dtype):
    """NaN and +-Inf in either argument, against finite values and against each other."""
    inf, nan = np.inf, np.nan
    pred = np.array([nan, 1.0, nan, inf, -inf, inf, inf, -inf, 2.0, 0.5, 1e30, -1e30])
    target = np.array([1.0, nan, nan, 1.0, 1.0, inf, -inf, -inf, inf, -inf, -1e30, 1e30])
    return pred.astype(dtype), target.astype(dtype)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_nan_and_inf_propagate(device, dtype, name):
    pred, target = non_finite_data(dtype)
    for reduction in REDUCTIONS:
        check_against_reference(name, pred, target, reduction, device=device)
    # Nothing is masked: one NaN element makes a reduced loss NaN.
    fn, _, kw = LOSSES[name]
    r = fn(to_device(pred[:2], device), to_device(target[:2], device), **kw)
    assert np.isnan(to_host(r.loss))
    assert np.isnan(to_host(r.grad)).all()


@pytest.mark.parametrize("name", LOSSES)
def test_non_contiguous_inputs(name):
    base_p, base_t = make_data((8, 10), np.float64, seed=5)
    views = [
        (base_p[:, ::2], base_t[:, 1::2]),  # strided
        (base_p.T, base_t.T),  # Fortran order
        (base_p[::-1], base_t[::-1]),  # negative strides
    ]
    for pred, target in views:
        for reduction in REDUCTIONS:
            check_against_reference(name, pred, target, reduction)
    want_p, want_t = make_data((8, 10), np.float64, seed=5)
    np.testing.assert_array_equal(base_p, want_p)  # read through views, never written
    np.testing.assert_array_equal(base_t, want_t)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_return_types_on_cpu(dtype, name):
    fn, _, kw = LOSSES[name]
    for shape in [(), (5,), (2, 3)]:
        pred, target = make_data(shape, dtype, seed=6)
        for reduction in ["mean", "sum"]:
            r = fn(pred, target, reduction=reduction, **kw)
            assert isinstance(r, fastml.LossGrad)
            assert isinstance(r.loss, np.generic) and r.loss.dtype == dtype
            assert isinstance(r.grad, np.ndarray) and r.grad.dtype == dtype
            assert r.grad.shape == shape
        r = fn(pred, target, reduction="none", **kw)
        assert isinstance(r.loss, np.ndarray) and r.loss.shape == shape and r.loss.dtype == dtype


def torch_value_and_grad(torch, name, pred, target, reduction, grad_scale):
    F = torch.nn.functional
    kw = LOSSES[name][2]
    x = torch.tensor(pred, requires_grad=True)
    y = torch.tensor(target)
    if name == "mse":
        loss = F.mse_loss(x, y, reduction=reduction)
    elif name == "l1":
        loss = F.l1_loss(x, y, reduction=reduction)
    else:
        loss = F.huber_loss(x, y, reduction=reduction, **kw)
    loss.backward(torch.full_like(loss, grad_scale))
    grad = x.grad.numpy()
    if name == "l1":
        # PyTorch's sign(NaN) is 0, so its L1 gradient drops a NaN difference; fastml keeps it
        # (DESIGN: NaN propagates to the gradient, nothing is masked). Compare the rest.
        with np.errstate(invalid="ignore"):
            nan_d = np.isnan(pred.astype(np.float64) - target)
        assert (grad[nan_d] == 0).all()
        grad = np.where(nan_d, np.nan, grad)
    return loss.detach().numpy(), grad


@pytest.mark.torch
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_pytorch(dtype, name):
    torch = pytest.importorskip("torch")
    fn, ref_fn, kw = LOSSES[name]
    cases = [make_data((7, 13), dtype, seed=7), non_finite_data(dtype), make_data((), dtype)]
    for pred, target in cases:
        for reduction in REDUCTIONS:
            want_loss, want_grad = torch_value_and_grad(torch, name, pred, target, reduction, 0.75)
            r = fn(pred, target, reduction=reduction, grad_scale=0.75, **kw)
            # PyTorch rounds in the input dtype too: allow both results their round-off.
            rtol = 2 * sum_tol(dtype, pred.size)
            assert_close(r.loss, want_loss, rtol=rtol, name=f"{name} loss vs torch")
            assert_close(r.grad, want_grad, rtol=2 * tol(dtype), name=f"{name} grad vs torch")
            if dtype == np.float64:  # the reference itself is PyTorch's formula
                ref_loss, ref_grad = ref_fn(pred, target, reduction=reduction, grad_scale=0.75,
                                            **kw)
                assert_close(ref_loss, want_loss, rtol=rtol, name="reference loss vs torch")
                assert_close(ref_grad, want_grad, rtol=2 * tol(dtype), name="reference grad")


@pytest.mark.torch
@pytest.mark.parametrize("name", LOSSES)
def test_torch_cpu_tensors_zero_copy(name):
    torch = pytest.importorskip("torch")
    fn, ref_fn, kw = LOSSES[name]
    pred, target = make_data((5, 4), np.float32, seed=8)
    want_loss, want_grad = ref_fn(pred, target, reduction="sum", **kw)
    p, t = torch.tensor(pred), torch.tensor(target)
    out = torch.full((5, 4), -7.0)
    r = fn(p, t, reduction="sum", out=out, **kw)
    assert r.grad is out
    assert_close(out.numpy(), want_grad, rtol=tol(np.float32), name="torch out")
    assert_close(r.loss, want_loss, rtol=sum_tol(np.float32, 20), name="loss")
    # In place on a tensor that requires grad (fastml reads it through .detach()).
    p = torch.tensor(pred, requires_grad=True)
    r = fn(p, t, reduction="sum", out=p, **kw)
    assert r.grad is p
    assert_close(p.detach().numpy(), want_grad, rtol=tol(np.float32), name="in place")


def shapes_and_values(dtype):
    # Bounded so that d^2 cannot overflow float32: Inf is tested on purpose elsewhere.
    elements = st.floats(-2.0**40, 2.0**40, width=np.dtype(dtype).itemsize * 8)
    shape = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=9)
    return shape.flatmap(lambda s: st.tuples(hnp.arrays(dtype, s, elements=elements),
                                             hnp.arrays(dtype, s, elements=elements)))


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hypothesis(device, dtype, name, data):
    pred, target = data.draw(shapes_and_values(dtype))
    reduction = data.draw(st.sampled_from(REDUCTIONS))
    grad_scale = data.draw(st.sampled_from([1.0, 0.125, -3.0]))
    check_against_reference(name, pred, target, reduction, grad_scale, device=device)
