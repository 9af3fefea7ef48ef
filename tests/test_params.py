"""FlatParams: named views into one buffer (parameters and gradients), shapes, repr, bad
arguments, and one optimizer update over the whole buffer equal to per-array updates."""

import math

import numpy as np
import pytest

import fastml

from .helpers import (
    PARAM_SHAPES,
    assert_bitwise_equal,
    assert_trajectory_close,
    make_trajectory,
    to_host,
)
from .reference import optim as ref

# Trajectories of tiny arrays: one numba thread (see the one_thread fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")

DTYPES = [np.float64, np.float32]
LAYOUT = {"w1": (7, 5), "b1": 5, "one": (1,), "odd": (3, 1, 2), "empty": (0, 4), "b2": (13,)}
SIZES = {"w1": 35, "b1": 5, "one": 1, "odd": 6, "empty": 0, "b2": 13}
SHAPES = {"w1": (7, 5), "b1": (5,), "one": (1,), "odd": (3, 1, 2), "empty": (0, 4), "b2": (13,)}


@pytest.mark.parametrize("dtype", DTYPES)
def test_views_share_memory_with_data(dtype):
    p = fastml.FlatParams(LAYOUT, dtype=dtype)
    size = sum(SIZES.values())
    assert p.size == size and p.dtype == dtype and p.device == "cpu"
    for buf in (p, p.grad):
        assert buf.data.shape == (size,) and buf.data.dtype == dtype
        assert buf.data.flags["C_CONTIGUOUS"] and not buf.data.any()
    assert not np.shares_memory(p.data, p.grad.data)
    offset = 0
    for name, shape in SHAPES.items():
        for buf in (p, p.grad):
            view = buf[name]
            assert view.shape == shape and view.dtype == dtype
            assert view.size == 0 or np.shares_memory(view, buf.data)
            view[...] = np.arange(1, view.size + 1).reshape(shape) + (100 if buf is p else 200)
            want = np.arange(1, SIZES[name] + 1) + (100 if buf is p else 200)
            assert_bitwise_equal(buf.data[offset:offset + SIZES[name]], want.astype(dtype))
        offset += SIZES[name]
    # and the other way round: writing .data shows through the views
    p.data[35:40] = -1.0
    assert (p["b1"] == -1.0).all() and p["w1"][-1, -1] == 135
    p.grad.data[:] = 0.5
    assert all((p.grad[n] == 0.5).all() for n in p.grad)


def test_mapping_interface_and_repr():
    p = fastml.FlatParams(LAYOUT, dtype=np.float32)
    assert list(p) == list(LAYOUT) == list(p.keys()) == list(p.grad)
    assert len(p) == len(p.grad) == 6
    assert p.shapes == SHAPES == p.grad.shapes
    assert [name for name, _ in p.items()] == list(LAYOUT)
    assert all(np.shares_memory(v, p.data) for name, v in p.items() if v.size)
    assert repr(p) == "FlatParams(6 arrays, 60 float32 elements on cpu)"
    with pytest.raises(KeyError, match="no parameter named 'w3'; the names are w1, b1, one"):
        p["w3"]
    with pytest.raises(KeyError, match="no parameter named 'w3'"):
        p.grad["w3"]


def test_init():
    init = np.arange(60.0)
    p = fastml.FlatParams(LAYOUT, dtype=np.float32, init=init)
    assert_bitwise_equal(p.data, init.astype(np.float32))
    assert not np.shares_memory(p.data, init)  # a copy: the buffer belongs to FlatParams
    assert (p["b2"] == np.arange(47.0, 60.0)).all()
    assert not p.grad.data.any()
    p = fastml.FlatParams({"a": 2, "b": (1, 2)}, dtype=np.float64, init=[1, 2, 3, 4])
    assert (p["b"] == [[3.0, 4.0]]).all()


@pytest.mark.parametrize("kwargs,error,text", [
    ({"shapes": LAYOUT, "dtype": np.int32}, fastml.DTypeError,
     "dtype must be float32 or float64; got int32"),
    ({"shapes": LAYOUT, "dtype": np.float16}, fastml.DTypeError, "dtype must be float32 or"),
    ({"shapes": LAYOUT, "device": "gpu"}, ValueError, "device must be 'cpu' or 'cuda'; got 'gpu'"),
    ({"shapes": {}}, fastml.ShapeError, "shapes must name at least one parameter"),
    ({"shapes": {"a": (0,), "b": (3, 0)}}, fastml.ShapeError, "at least one element"),
    ({"shapes": {"a": (2, -3)}}, fastml.ShapeError, r"shape of 'a' must be non-negative; "
                                                    r"got \(2, -3\)"),
    ({"shapes": {"a": -1}}, fastml.ShapeError, "shape of 'a' must be non-negative"),
    ({"shapes": LAYOUT, "init": np.zeros(59)}, fastml.ShapeError,
     r"init must have shape \(60,\); got \(59,\)"),
    ({"shapes": LAYOUT, "init": np.zeros((6, 10))}, fastml.ShapeError,
     r"init must have shape \(60,\)"),
], ids=["int", "float16", "device", "no-names", "all-empty", "negative", "negative-int",
        "init-size", "init-2d"])
def test_bad_arguments(kwargs, error, text):
    with pytest.raises(error, match=text):
        fastml.FlatParams(**kwargs)


def test_views_on_the_cuda_device():
    """device="cuda" (the simulator in CI): both buffers on the device, views into them."""
    p = fastml.FlatParams({"w": (2, 3), "b": (3,)}, dtype=np.float32, device="cuda")
    assert p.device == "cuda" and hasattr(p.data, "copy_to_host")
    p["b"].copy_to_device(np.array([1, 2, 3], dtype=np.float32))
    p.grad["w"].copy_to_device(np.full((2, 3), 7, dtype=np.float32))
    assert_bitwise_equal(to_host(p.data), np.array([0] * 6 + [1, 2, 3], dtype=np.float32))
    assert_bitwise_equal(to_host(p.grad.data), np.array([7] * 6 + [0] * 3, dtype=np.float32))
    assert repr(p) == "FlatParams(2 arrays, 9 float32 elements on cuda)"


test_views_on_the_cuda_device = pytest.mark.cuda(test_views_on_the_cuda_device)


# One update for the whole model --------------------------------------------------------------

NAMES = [f"p{i}" for i in range(len(PARAM_SHAPES))]
KINDS = {
    "SGD": {"lr": 0.05, "momentum": 0.9, "dampening": 0.1, "weight_decay": 0.01},
    "Adam": {"lr": 0.01, "amsgrad": True, "weight_decay": 0.05},
    "AdamW": {"lr": 0.01, "maximize": True},
    "RMSprop": {"lr": 0.01, "centered": True, "momentum": 0.5},
    "Adagrad": {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.1},
}


def flat_and_list(dtype, seed, steps=20):
    params, grads = make_trajectory(PARAM_SHAPES, steps, dtype, seed=seed)
    flat = fastml.FlatParams(dict(zip(NAMES, PARAM_SHAPES, strict=True)), dtype=dtype,
                             init=np.concatenate([p.ravel() for p in params]))
    return params, grads, flat, [p.copy() for p in params]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("guard", [None, "clip_value"])
@pytest.mark.parametrize("kind", KINDS)
def test_one_update_equals_per_array_updates(kind, guard, dtype):
    """Elementwise rules: the whole-model update is bitwise the per-array one."""
    params, grads, flat, arrays = flat_and_list(dtype, seed=30)
    grads[7] = [g.copy() for g in grads[7]]
    grads[7][2][4] = np.nan  # skipped by the guard, applied (NaN) without one
    make_guard = (lambda: fastml.Guard(clip_value=0.7)) if guard else (lambda: None)
    opt_flat = getattr(fastml, kind)(flat, guard=make_guard(), **KINDS[kind])
    opt_list = getattr(fastml, kind)(arrays, guard=make_guard(), **KINDS[kind])
    for g in grads:
        for name, gi in zip(NAMES, g, strict=True):
            flat.grad[name][...] = gi
        a, b = opt_flat.step(), opt_list.step(g)
        assert a.applied == b.applied == (guard is None or all(np.isfinite(gi).all() for gi in g))
    for name, a in zip(NAMES, arrays, strict=True):
        assert_bitwise_equal(flat[name], a, name)
    for state, arrays_state in zip(opt_flat.state.values(), opt_list.state.values(), strict=True):
        assert_bitwise_equal(state[0], np.concatenate(arrays_state))


@pytest.mark.parametrize("kind", KINDS)
def test_one_update_with_norm_clip_matches_the_reference(kind):
    """With a norm clip the global norm is summed in another order over one buffer than over
    four arrays (a last-bit difference in the clip factor); both follow the reference."""
    params, grads, flat, arrays = flat_and_list(np.float32, seed=31, steps=40)
    lr = KINDS[kind]["lr"]
    hyper = {k: v for k, v in KINDS[kind].items() if k != "lr"}
    opt_flat = getattr(fastml, kind)(flat, lr=lr, guard=fastml.Guard(clip_norm=2.0), **hyper)
    opt_list = getattr(fastml, kind)(arrays, lr=lr, guard=fastml.Guard(clip_norm=2.0), **hyper)
    want = ref.Optimizer(kind, params, lr, guard={"clip_norm": 2.0}, **hyper)
    for g in grads:
        a, b = opt_flat.step(np.concatenate([gi.ravel() for gi in g])), opt_list.step(g)
        w = want.step(g)
        assert a.clip_coef < 1.0 and math.isclose(a.grad_norm, w["grad_norm"], rel_tol=1e-14)
        assert math.isclose(a.grad_norm, b.grad_norm, rel_tol=1e-14)
    assert_trajectory_close([flat[n] for n in NAMES], want.params, want.bound)
    assert_trajectory_close(arrays, want.params, want.bound)


def test_flat_params_bad_grads_change_nothing():
    params, grads, flat, _ = flat_and_list(np.float64, seed=32, steps=2)
    opt = fastml.Adam(flat, lr=0.01, guard=fastml.Guard(clip_norm=1.0))
    opt.step(np.concatenate([g.ravel() for g in grads[0]]))
    before, state = flat.data.copy(), opt.state_dict()
    other = fastml.FlatParams({"a": (7, 5), "b": (5,)}, dtype=np.float64)
    other32 = fastml.FlatParams(dict(zip(NAMES, PARAM_SHAPES, strict=True)), dtype=np.float32)
    for grads_, error in [(other.grad, fastml.ShapeError), (np.zeros(flat.size + 1),
                                                            fastml.ShapeError),
                          (np.zeros((5, flat.size // 5)), fastml.ShapeError),
                          (other32.grad, fastml.DTypeError), (flat, fastml.ShapeError),
                          (flat.data, fastml.ShapeError), (flat.data[5:], fastml.ShapeError),
                          ([flat.grad.data], fastml.ShapeError)]:
        with pytest.raises(error, match="must"):
            opt.step(grads_)
        assert_bitwise_equal(flat.data, before)
        now = opt.state_dict()
        assert_bitwise_equal(now["ctl"], state["ctl"])
        for name in now["state"]:
            assert_bitwise_equal(now["state"][name][0], state["state"][name][0])
