"""bce_with_logits against the float64 reference in tests/reference/losses.py and PyTorch."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastml

from .helpers import assert_close, sum_tol, to_device, to_host, tol
from .reference import losses as ref

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]
SHAPES = [(), (1,), (2,), (13,), (1, 1), (3, 1), (1, 4), (6, 5), (2, 3, 7)]


def make_data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal(shape) * 4
    # Hard labels, soft labels and the edges 0 and 1.
    target = np.where(rng.random(shape) < 0.5, rng.integers(0, 2, shape), rng.random(shape))
    return logits.astype(dtype), target.astype(dtype)


def weight_shapes(shape):
    """Every broadcast form the API takes: none, scalar-like, trailing vector, column, full."""
    forms = {"none": None, "()": (), "full": shape}
    if len(shape) >= 1:
        forms["(1,)"] = (1,)
        forms["(C,)"] = shape[-1:]
    if len(shape) >= 2:
        forms["(N,1)"] = shape[:-1] + (1,)
    return forms


def error_scales(logits, target, weight, pos_weight):
    """Sums of the magnitudes of the terms that make up each loss and gradient element.

    The loss ``(1 - t) x + lw (log1p(exp(-|x|)) + max(-x, 0))`` cancels when x is very negative
    and t = 0 (both terms near |x|, the loss near exp(x)), so its round-off is relative to
    these sums, not to the result: PyTorch's formula itself (in the reference too) is that
    accurate and no more.
    """
    x = logits.astype(np.float64)
    t = target.astype(np.float64)
    w = np.ones_like(x) if weight is None else np.broadcast_to(weight, x.shape)
    pw = np.ones_like(x) if pos_weight is None else np.broadcast_to(pos_weight, x.shape)
    with np.errstate(invalid="ignore", over="ignore"):
        lw = np.abs((pw - 1.0) * t) + 1.0
        loss = np.abs(w) * (np.abs((1.0 - t) * x) + lw * (np.log1p(np.exp(-np.abs(x)))
                                                           + np.maximum(-x, 0.0)))
        grad = np.abs(w) * (np.abs(pw * t + 1.0 - t) * ref.sigmoid(x) + np.abs(pw * t))
    # Where a term is Inf or NaN the result is too, and assert_close matches those exactly.
    return np.nan_to_num(loss, nan=0.0, posinf=0.0), np.nan_to_num(grad, nan=0.0, posinf=0.0)


def check_against_reference(logits, target, weight=None, pos_weight=None, reduction="mean",
                            grad_scale=1.0, device="cpu"):
    dtype = logits.dtype
    want_loss, want_grad = ref.bce_with_logits(logits, target, weight, pos_weight, reduction,
                                               grad_scale)
    r = fastml.bce_with_logits(
        to_device(logits, device), to_device(target, device), weight=to_device(weight, device),
        pos_weight=to_device(pos_weight, device), reduction=reduction, grad_scale=grad_scale)
    loss, grad = to_host(r.loss), to_host(r.grad)
    assert grad.dtype == dtype and grad.shape == logits.shape
    assert loss.dtype == dtype
    assert loss.shape == (logits.shape if reduction == "none" else ())
    loss_scale, grad_scale_el = error_scales(logits, target, weight, pos_weight)
    n = logits.size
    if reduction == "none":
        assert_close(loss, want_loss, rtol=tol(dtype), atol=tol(dtype) * loss_scale, name="loss")
    else:
        denom = n if reduction == "mean" else 1
        assert_close(loss, want_loss, rtol=sum_tol(dtype, n),
                     atol=tol(dtype) * loss_scale.sum() / denom, name="loss")
    factor = abs(grad_scale) / (n if reduction == "mean" else 1)
    assert_close(grad, want_grad, rtol=tol(dtype), atol=tol(dtype) * factor * grad_scale_el,
                 name="grad")


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_reference(device, dtype, shape):
    logits, target = make_data(shape, dtype, seed=sum(shape) + len(shape))
    for reduction in REDUCTIONS:
        check_against_reference(logits, target, reduction=reduction, device=device)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(7,), (5, 3), (2, 3, 4)], ids=str)
def test_weight_and_pos_weight_broadcasts(device, shape, dtype):
    logits, target = make_data(shape, dtype, seed=1)
    rng = np.random.default_rng(2)
    forms = weight_shapes(shape)
    for wname, wshape in forms.items():
        for pname, pshape in forms.items():
            if device == "cuda" and "none" not in (wname, pname) and wname != pname:
                continue  # each form on each side is enough for the slow simulator
            w = None if wshape is None else rng.uniform(0.1, 3.0, wshape).astype(dtype)
            pw = None if pshape is None else rng.uniform(0.1, 5.0, pshape).astype(dtype)
            for reduction in REDUCTIONS:
                try:
                    check_against_reference(logits, target, w, pw, reduction, 0.5, device)
                except AssertionError as exc:
                    raise AssertionError(f"weight {wname}, pos_weight {pname}: {exc}") from None


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_tiny_and_huge_pos_weight(device, dtype):
    # The gradient's factor (1 - t) + pw t must keep a tiny pw t where t = 1: written as
    # (pw t + 1) - t, the 1 swallows it and the gradient becomes -pw instead of pw (s - 1).
    pws = [1e-30, 1e-3, 1e30] + ([1e-200, 1e200] if dtype == np.float64 else [])
    x = np.repeat([-3.0, 0.0, 2.5], 3)
    t = np.tile([0.0, 0.5, 1.0], 3)
    for pw in pws:
        logits, target = np.tile(x, 2).astype(dtype), np.tile(t, 2).astype(dtype)
        for reduction in REDUCTIONS:
            check_against_reference(logits, target, None, np.array([pw], dtype), reduction,
                                    1.0, device)


def test_broadcast_weights_need_not_be_contiguous():
    logits, target = make_data((4, 6), np.float64, seed=3)
    w = np.broadcast_to(np.linspace(0.5, 2.0, 6), (4, 6))  # stride 0 along rows, read-only
    pw = np.linspace(1.0, 3.0, 12)[::2]  # strided (C,)
    for reduction in REDUCTIONS:
        check_against_reference(logits, target, w, pw, reduction)


@pytest.mark.parametrize("grad_scale", [0.0, -1.5, 1 / 3, 4096.0])
def test_grad_scale_multiplies_the_gradient_only(device, grad_scale):
    logits, target = make_data((5, 4), np.float64, seed=4)
    pw = np.array([1.0, 2.0, 0.5, 3.0])
    for reduction in REDUCTIONS:
        check_against_reference(logits, target, None, pw, reduction, grad_scale, device)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_out_and_in_place(device, dtype):
    logits, target = make_data((3, 8), dtype, seed=5)
    w = np.linspace(0.5, 1.5, 8).astype(dtype)
    pw = np.linspace(2.0, 1.0, 8).astype(dtype)
    for reduction in REDUCTIONS:
        want_loss, want_grad = ref.bce_with_logits(logits, target, w, pw, reduction, 2.0)
        loss_scale, grad_el = error_scales(logits, target, w, pw)
        factor = 2.0 / (logits.size if reduction == "mean" else 1)
        grad_atol = tol(dtype) * factor * grad_el
        for which in ["new", "logits", "target"]:
            x, t = to_device(logits, device), to_device(target, device)
            wd, pwd = to_device(w, device), to_device(pw, device)
            out = {"new": to_device(np.full(logits.shape, -7.0, dtype), device),
                   "logits": x, "target": t}[which]
            r = fastml.bce_with_logits(x, t, weight=wd, pos_weight=pwd, reduction=reduction,
                                       grad_scale=2.0, out=out)
            assert r.grad is out
            assert_close(out, want_grad, rtol=tol(dtype), atol=grad_atol, name=f"out={which}")
            rtol = tol(dtype) if reduction == "none" else sum_tol(dtype, logits.size)
            assert_close(r.loss, want_loss, rtol=rtol, name="loss")
            if which != "logits":
                np.testing.assert_array_equal(to_host(x), logits)
            if which != "target":
                np.testing.assert_array_equal(to_host(t), target)
            np.testing.assert_array_equal(to_host(wd), w)
            np.testing.assert_array_equal(to_host(pwd), pw)


def extreme_data(dtype):
    """Logits far beyond where exp overflows, against hard and soft targets."""
    x = np.array([1e4, -1e4, 100.0, -100.0, 30.0, -30.0, 0.0, 1e-8, -1e-8, 88.0, -88.0, 745.0])
    logits = np.repeat(x, 3)
    target = np.tile([0.0, 1.0, 0.25], x.size)
    return logits.astype(dtype), target.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_extreme_logits_stay_finite(device, dtype):
    logits, target = extreme_data(dtype)
    pw = np.array([3.0], dtype)
    for reduction in REDUCTIONS:
        for p in [None, pw]:
            check_against_reference(logits, target, None, p, reduction, 1.0, device)
            r = fastml.bce_with_logits(to_device(logits, device), to_device(target, device),
                                       pos_weight=to_device(p, device), reduction=reduction)
            assert np.isfinite(to_host(r.loss)).all()
            assert np.isfinite(to_host(r.grad)).all()
    # A confidently right logit costs (almost) nothing, a confidently wrong one |x|.
    r = fastml.bce_with_logits(to_device(logits[:6], device), to_device(target[:6], device),
                               reduction="none")
    np.testing.assert_allclose(to_host(r.loss)[:2], [1e4, 0.0], rtol=tol(dtype), atol=0)


def non_finite_data(dtype):
    inf, nan = np.inf, np.nan
    logits = np.array([nan, 1.0, inf, inf, inf, -inf, -inf, -inf, 2.0, nan])
    target = np.array([1.0, nan, 0.0, 1.0, 0.5, 0.0, 1.0, 0.5, inf, 0.0])
    return logits.astype(dtype), target.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_nan_and_inf_propagate(device, dtype):
    logits, target = non_finite_data(dtype)
    for reduction in REDUCTIONS:
        check_against_reference(logits, target, None, None, reduction, 1.0, device)
        check_against_reference(logits, target, None, np.array([2.0], dtype), reduction, 1.0,
                                device)
    # NaN in a weight propagates as well.
    x, t = make_data((4,), dtype, seed=6)
    w = np.array([1.0, np.nan, 1.0, 1.0], dtype)
    check_against_reference(x, t, w, None, "none", 1.0, device)
    r = fastml.bce_with_logits(to_device(x, device), to_device(t, device),
                               weight=to_device(w, device))
    assert np.isnan(to_host(r.loss))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_return_types_on_cpu(dtype):
    for shape in [(), (5,), (2, 3)]:
        x, t = make_data(shape, dtype, seed=7)
        for reduction in ["mean", "sum"]:
            r = fastml.bce_with_logits(x, t, reduction=reduction)
            assert isinstance(r, fastml.LossGrad)
            assert isinstance(r.loss, np.generic) and r.loss.dtype == dtype
            assert isinstance(r.grad, np.ndarray) and r.grad.dtype == dtype
            assert r.grad.shape == shape
        r = fastml.bce_with_logits(x, t, reduction="none")
        assert isinstance(r.loss, np.ndarray) and r.loss.shape == shape and r.loss.dtype == dtype


def torch_value_and_grad(torch, logits, target, weight, pos_weight, reduction, grad_scale):
    x = torch.tensor(logits, requires_grad=True)
    def as_t(a):
        return None if a is None else torch.tensor(a)

    loss = torch.nn.functional.binary_cross_entropy_with_logits(
        x, as_t(target), weight=as_t(weight), pos_weight=as_t(pos_weight), reduction=reduction)
    loss.backward(torch.full_like(loss, grad_scale))
    return loss.detach().numpy(), x.grad.numpy()


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_matches_pytorch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    logits, target = make_data((6, 5), dtype, seed=8)
    cases = [(logits, target, None, None)]
    for w_shape in [(5,), (6, 1), (6, 5), (1,)]:
        for pw_shape in [None, (5,), (1,)]:
            w = rng.uniform(0.1, 3.0, w_shape).astype(dtype)
            pw = None if pw_shape is None else rng.uniform(0.1, 4.0, pw_shape).astype(dtype)
            cases.append((logits, target, w, pw))
    cases.append(extreme_data(dtype) + (None, None))
    cases.append(non_finite_data(dtype) + (None, np.array([2.0], dtype)))
    for x, t, w, pw in cases:
        loss_scale, grad_el = error_scales(x, t, w, pw)
        for reduction in REDUCTIONS:
            want_loss, want_grad = torch_value_and_grad(torch, x, t, w, pw, reduction, 0.5)
            r = fastml.bce_with_logits(x, t, weight=w, pos_weight=pw, reduction=reduction,
                                       grad_scale=0.5)
            # Both sides round in their own way: twice the tolerance against an exact value.
            denom = x.size if reduction == "mean" else 1
            if reduction == "none":
                rtol, atol = 2 * tol(dtype), 2 * tol(dtype) * loss_scale
            else:
                rtol, atol = 2 * sum_tol(dtype, x.size), 2 * tol(dtype) * loss_scale.sum() / denom
            assert_close(r.loss, want_loss, rtol=rtol, atol=atol, name="loss vs torch")
            g_atol = 2 * tol(dtype) * 0.5 / denom * grad_el
            assert_close(r.grad, want_grad, rtol=2 * tol(dtype), atol=g_atol,
                         name="grad vs torch")
            if dtype == np.float64:
                ref_loss, ref_grad = ref.bce_with_logits(x, t, w, pw, reduction, 0.5)
                assert_close(ref_loss, want_loss, rtol=rtol, atol=atol, name="reference loss")
                assert_close(ref_grad, want_grad, rtol=2 * tol(dtype), atol=g_atol,
                             name="reference grad")


@pytest.mark.torch
def test_torch_cpu_tensors_zero_copy():
    torch = pytest.importorskip("torch")
    logits, target = make_data((4, 3), np.float32, seed=9)
    pw = np.array([1.0, 2.0, 3.0], np.float32)
    want_loss, want_grad = ref.bce_with_logits(logits, target, None, pw, "mean", 1.0)
    x, t, pwt = torch.tensor(logits), torch.tensor(target), torch.tensor(pw)
    out = torch.full((4, 3), -7.0)
    r = fastml.bce_with_logits(x, t, pos_weight=pwt, out=out)
    assert r.grad is out
    _, grad_el = error_scales(logits, target, None, pw)
    g_atol = tol(np.float32) / 12 * grad_el
    assert_close(out.numpy(), want_grad, rtol=tol(np.float32), atol=g_atol, name="torch out")
    assert_close(r.loss, want_loss, rtol=sum_tol(np.float32, 12), name="loss")
    r = fastml.bce_with_logits(x, t, pos_weight=pwt, out=x)  # in place on the tensor
    assert r.grad is x
    assert_close(x.numpy(), want_grad, rtol=tol(np.float32), atol=g_atol, name="in place")


@st.composite
def bce_cases(draw, dtype):
    width = np.dtype(dtype).itemsize * 8
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=8))
    logits = draw(hnp.arrays(dtype, shape, elements=st.floats(-2e4, 2e4, width=width)))
    target = draw(hnp.arrays(dtype, shape, elements=st.floats(0.0, 1.0, width=width)))
    forms = weight_shapes(shape)
    positive = st.floats(0.0, 10.0, width=width)
    w_shape = forms[draw(st.sampled_from(sorted(forms)))]
    pw_shape = forms[draw(st.sampled_from(sorted(forms)))]
    w = None if w_shape is None else draw(hnp.arrays(dtype, w_shape, elements=positive))
    pw = None if pw_shape is None else draw(hnp.arrays(dtype, pw_shape, elements=positive))
    return logits, target, w, pw


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hypothesis(device, dtype, data):
    logits, target, w, pw = data.draw(bce_cases(dtype))
    reduction = data.draw(st.sampled_from(REDUCTIONS))
    grad_scale = data.draw(st.sampled_from([1.0, 0.25, -2.0]))
    check_against_reference(logits, target, w, pw, reduction, grad_scale, device)
