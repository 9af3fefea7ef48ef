"""Optimizers on the CPU: 100-step trajectories against the float64 references in
tests/reference/optim.py and against torch.optim, for every optimizer and option combination,
float32 and float64, one array / a list of odd shapes / a FlatParams; dtypes survive; bad input
is rejected before anything is written."""

import itertools

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

STEPS = 100
DTYPES = [np.float64, np.float32]
LR = {"SGD": 0.05, "Adam": 0.01, "AdamW": 0.01, "RMSprop": 0.01, "Adagrad": 0.1}


def _grid(**axes):
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def _cases():
    """(kind, keyword arguments) for every combination of every option, each at a non-default
    value; arguments PyTorch refuses (Nesterov without momentum or with dampening) left out."""
    cases = []
    for h in _grid(momentum=[0.0, 0.9], dampening=[0.0, 0.3], nesterov=[False, True],
                   weight_decay=[0.0, 0.01], maximize=[False, True]):
        if h["nesterov"] and (h["momentum"] == 0 or h["dampening"] != 0):
            continue
        if h["momentum"] == 0 and h["dampening"] != 0:
            continue  # dampening only acts on the momentum buffer
        cases.append(("SGD", h))
    for h in _grid(weight_decay=[0.0, 0.05], decoupled_weight_decay=[False, True],
                   amsgrad=[False, True], maximize=[False, True]):
        if h["decoupled_weight_decay"] and h["weight_decay"] == 0:
            continue
        cases.append(("Adam", h))
    cases.append(("Adam", {"betas": (0.5, 0.8), "eps": 1e-3, "amsgrad": True}))
    for h in _grid(amsgrad=[False, True], maximize=[False, True]):
        cases.append(("AdamW", h))
    cases.append(("AdamW", {"weight_decay": 0.3, "betas": (0.0, 0.5), "eps": 1e-4}))
    for h in _grid(centered=[False, True], momentum=[0.0, 0.5], weight_decay=[0.0, 0.01],
                   maximize=[False, True]):
        cases.append(("RMSprop", h))
    cases.append(("RMSprop", {"alpha": 0.9, "eps": 1e-3, "centered": True}))
    for h in _grid(lr_decay=[0.0, 0.05], initial_accumulator_value=[0.0, 0.1],
                   weight_decay=[0.0, 0.01], maximize=[False, True]):
        cases.append(("Adagrad", h))
    cases.append(("Adagrad", {"eps": 1e-3, "lr_decay": 0.5}))
    return cases


CASES = _cases()


def case_id(case):
    kind, hyper = case
    return kind + "(" + ",".join(f"{k}={v}" for k, v in hyper.items()) + ")"


# One case per kind with the most state buffers and options at once.
RICH = {
    "SGD": {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "Adam": {"amsgrad": True, "weight_decay": 0.05, "maximize": True},
    "AdamW": {"amsgrad": True},
    "RMSprop": {"centered": True, "momentum": 0.5, "weight_decay": 0.01},
    "Adagrad": {"lr_decay": 0.05, "initial_accumulator_value": 0.1, "weight_decay": 0.01},
}


def run_reference(kind, hyper, params, grads, lr=None, **kw):
    want = ref.Optimizer(kind, params, LR[kind] if lr is None else lr, **kw, **hyper)
    for g in grads:
        want.step(g)
    return want


def run_torch(torch, kind, hyper, params, grads, lr=None):
    """torch.optim on copies of ``params``; returns (params, per-parameter state) as NumPy."""
    ts = [torch.tensor(p, requires_grad=True) for p in params]
    opt = getattr(torch.optim, kind)(ts, lr=LR[kind] if lr is None else lr, foreach=False,
                                     **hyper)
    for g in grads:
        for t, gi in zip(ts, g, strict=True):
            t.grad = torch.tensor(gi)
        opt.step()
    state = [{k: v.numpy() for k, v in opt.state[t].items() if k != "step"} for t in ts]
    return [t.detach().numpy() for t in ts], state


def fastml_state(opt, name):
    return [to_host(a) for a in opt.state[name]]


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_trajectory_matches_reference(case, dtype):
    kind, hyper = case
    params, grads = make_trajectory(PARAM_SHAPES, STEPS, dtype)
    want = run_reference(kind, hyper, params, grads)
    got = [p.copy() for p in params]
    opt = getattr(fastml, kind)(got, lr=LR[kind], **hyper)
    infos = [opt.step(g) for g in grads]

    assert all(i.applied for i in infos)
    assert [i.step for i in infos] == list(range(1, STEPS + 1))
    assert all(i.lr == LR[kind] for i in infos)
    assert_trajectory_close(got, want.params, want.bound)
    assert sorted(opt.state) == sorted(ref.state_names(kind, hyper))
    for name in opt.state:
        assert_trajectory_close(fastml_state(opt, name), [s[name] for s in want.state],
                                [b[name] for b in want.state_bound], name=name)
    # dtypes survive: parameters and every state buffer stay in the parameters' dtype
    assert all(p.dtype == dtype for p in got)
    assert all(a.dtype == dtype for arrays in opt.state.values() for a in arrays)


@pytest.mark.torch
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_trajectory_matches_torch(case, dtype):
    torch = pytest.importorskip("torch")
    kind, hyper = case
    params, grads = make_trajectory(PARAM_SHAPES, STEPS, dtype, seed=1)
    want = run_reference(kind, hyper, params, grads)  # for the error scale only
    torch_params, torch_state = run_torch(torch, kind, hyper, params, grads)
    got = [p.copy() for p in params]
    opt = getattr(fastml, kind)(got, lr=LR[kind], **hyper)
    for g in grads:
        opt.step(g)
    # Both are rounded implementations of the same rule: their errors add.
    assert_trajectory_close(got, torch_params, want.bound, implementations=2)
    for name in opt.state:
        assert_trajectory_close(fastml_state(opt, name), [s[name] for s in torch_state],
                                [b[name] for b in want.state_bound], implementations=2,
                                name=name)


# Parameter structures --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", RICH)
def test_single_array(kind):
    hyper = RICH[kind]
    params, grads = make_trajectory([(7, 5)], STEPS, np.float64, seed=2)
    want = run_reference(kind, hyper, params, grads)
    p = params[0].copy()
    opt = getattr(fastml, kind)(p, lr=LR[kind], **hyper)
    for g in grads:
        opt.step(g[0])
    assert p.shape == (7, 5)
    assert_trajectory_close([p], want.params, want.bound)


@pytest.mark.parametrize("kind", RICH)
def test_flat_params(kind):
    """A FlatParams steps from its own grad buffer, from grads=p.grad and from a 1-D array."""
    hyper = RICH[kind]
    params, grads = make_trajectory(PARAM_SHAPES, STEPS, np.float64, seed=3)
    want = run_reference(kind, hyper, params, grads)
    names = [f"p{i}" for i in range(len(PARAM_SHAPES))]
    flat = fastml.FlatParams(dict(zip(names, PARAM_SHAPES, strict=True)), dtype=np.float64,
                             init=np.concatenate([p.ravel() for p in params]))
    opt = getattr(fastml, kind)(flat, lr=LR[kind], **hyper)
    for t, g in enumerate(grads):
        for name, gi in zip(names, g, strict=True):
            flat.grad[name][...] = gi
        if t % 3 == 0:
            opt.step()
        elif t % 3 == 1:
            opt.step(flat.grad)
        else:
            opt.step(np.concatenate([gi.ravel() for gi in g]))
    assert_trajectory_close([flat[n] for n in names], want.params, want.bound)


def test_unguarded_step_info():
    p = np.zeros(3)
    info = fastml.SGD(p, lr=0.5).step(np.ones(3))
    assert info.applied and info.grad_norm is None
    assert (info.clip_coef, info.scale, info.lr, info.step) == (1.0, 1.0, 0.5, 1)
    assert (info.skipped_total, info.consecutive_skips) == (0, 0)


def test_unguarded_nonfinite_goes_through_like_torch():
    """Without a guard, NaN/Inf reach the update (PyTorch does the same)."""
    torch = pytest.importorskip("torch")
    params, grads = make_trajectory([(13,)], 3, np.float64, seed=4)
    grads[1][0][3] = np.nan
    grads[1][0][5] = np.inf
    got = [params[0].copy()]
    opt = fastml.Adam(got, lr=0.01)
    for g in grads:
        assert opt.step(g).applied
    torch_params, _ = run_torch(torch, "Adam", {}, params, grads, lr=0.01)
    want = run_reference("Adam", {}, params, grads, lr=0.01)
    assert np.isnan(got[0][[3, 5]]).all() and np.isfinite(np.delete(got[0], [3, 5])).all()
    assert_trajectory_close(got, torch_params, want.bound, implementations=2)


def test_torch_cpu_tensors_update_in_place():
    torch = pytest.importorskip("torch")
    params, grads = make_trajectory(PARAM_SHAPES, 20, np.float32, seed=5)
    want = run_reference("Adam", {}, params, grads)
    ts = [torch.tensor(p, requires_grad=True) for p in params]
    opt = fastml.Adam(ts, lr=LR["Adam"])
    for g in grads:
        opt.step([torch.from_numpy(gi) for gi in g])
    assert_trajectory_close([t.detach().numpy() for t in ts], want.params, want.bound)


def test_non_contiguous_grads_are_read_as_copies():
    params, grads = make_trajectory([(7, 5)], 5, np.float64, seed=6)
    a, b = params[0].copy(), params[0].copy()
    opt_a, opt_b = fastml.Adam(a, lr=0.01), fastml.Adam(b, lr=0.01)
    for g in grads:
        wide = np.zeros((7, 10))
        wide[:, ::2] = g[0]
        opt_a.step(g[0])
        opt_b.step(wide[:, ::2])
    assert_bitwise_equal(b, a)


def test_lr_set_between_steps_matches_torch():
    """``opt.lr = x`` takes effect at the next step, as setting param_groups' lr does."""
    torch = pytest.importorskip("torch")
    params, grads = make_trajectory(PARAM_SHAPES, 60, np.float64, seed=7)
    got = [p.copy() for p in params]
    opt = fastml.Adam(got, lr=0.01, amsgrad=True)
    ts = [torch.tensor(p, requires_grad=True) for p in params]
    topt = torch.optim.Adam(ts, lr=0.01, amsgrad=True, foreach=False)
    lrs = []
    for t, g in enumerate(grads):
        if t in (20, 40):
            opt.lr = topt.param_groups[0]["lr"] = 0.003 if t == 20 else 0.02
        for tt, gi in zip(ts, g, strict=True):
            tt.grad = torch.tensor(gi)
        topt.step()
        lrs.append(opt.step(g).lr)
    assert lrs == [0.01] * 20 + [0.003] * 20 + [0.02] * 20
    lr_of = {t: lrs[t] for t in range(60)}
    want = run_reference("Adam", {"amsgrad": True}, params, grads, lr=lambda s: lr_of[s])
    assert_trajectory_close(got, want.params, want.bound)
    assert_trajectory_close(got, [t.detach().numpy() for t in ts], want.bound, implementations=2)


@pytest.mark.parametrize("kind", RICH)
def test_same_run_twice_is_bitwise_identical(kind):
    params, grads = make_trajectory(PARAM_SHAPES, 30, np.float32, seed=8)
    runs = []
    for _ in range(2):
        got = [p.copy() for p in params]
        opt = getattr(fastml, kind)(got, lr=LR[kind],
                                    guard=fastml.Guard(clip_norm=2.0, clip_value=1.5),
                                    **RICH[kind])
        for g in grads:
            opt.step(g)
        runs.append((got, opt.state_dict()))
    (a, sa), (b, sb) = runs
    for x, y in zip(a, b, strict=True):
        assert_bitwise_equal(x, y)
    assert_bitwise_equal(sa["ctl"], sb["ctl"])
    for name in sa["state"]:
        for x, y in zip(sa["state"][name], sb["state"][name], strict=True):
            assert_bitwise_equal(x, y, name)


# Bad input: rejected with a clear error, before anything is written ---------------------------

def _snapshot(opt, params):
    return [p.copy() for p in params], opt.state_dict()


def assert_unchanged(opt, params, snap):
    before_params, before = snap
    for i, (p, q) in enumerate(zip(params, before_params, strict=True)):
        assert_bitwise_equal(p, q, f"params[{i}]")
    now = opt.state_dict()
    assert_bitwise_equal(now["ctl"], before["ctl"], "ctl")
    for name, arrays in before["state"].items():
        for i, (a, b) in enumerate(zip(now["state"][name], arrays, strict=True)):
            assert_bitwise_equal(a, b, f"{name}[{i}]")


def _warm_optimizer(kind="Adam", hyper=None, guard=None):
    """An optimizer on the odd shapes that has taken three steps (state is not all zeros)."""
    hyper = RICH[kind] if hyper is None else hyper
    params, grads = make_trajectory(PARAM_SHAPES, 3, np.float64, seed=9)
    opt = getattr(fastml, kind)(params, lr=LR[kind], guard=guard, **hyper)
    for g in grads:
        opt.step(g)
    return opt, params, grads[-1]


def _bad_grads(params, good):
    """(name, grads, expected error) for a list of parameters."""
    from numba import cuda

    swapped = [g.copy() for g in good]
    swapped[1] = np.zeros((5, 7))
    return [
        ("too few", good[:-1], fastml.ShapeError),
        ("too many", good + [good[0]], fastml.ShapeError),
        ("not a list", good[0], fastml.ShapeError),
        ("missing", None, TypeError),
        ("shape", swapped, fastml.ShapeError),
        ("dtype", [good[0].astype(np.float32)] + good[1:], fastml.DTypeError),
        ("int dtype", [good[0].astype(np.int64)] + good[1:], fastml.DTypeError),
        ("not an array", ["abc"] + good[1:], fastml.DTypeError),
        ("on the GPU", [cuda.to_device(good[0])] + good[1:], fastml.DeviceError),
        ("all on the GPU", [cuda.to_device(g) for g in good], fastml.DeviceError),
        ("aliasing params", [params[0]] + good[1:], fastml.ShapeError),
        ("view of params", [params[0], params[1][:, :]] + good[2:], fastml.ShapeError),
    ]


@pytest.mark.parametrize("kind", RICH)
def test_bad_grads_change_nothing(kind):
    opt, params, good = _warm_optimizer(kind, guard=fastml.Guard(clip_norm=1.0))
    for what, grads, error in _bad_grads(params, good):
        snap = _snapshot(opt, params)
        with pytest.raises(error) as exc:
            opt.step(grads)
        assert "must" in str(exc.value) or what == "missing", what
        assert_unchanged(opt, params, snap)
    # and the optimizer still takes the very step it would have taken
    twin, twin_params, _ = _warm_optimizer(kind, guard=fastml.Guard(clip_norm=1.0))
    assert opt.step(good) == twin.step(good)
    for p, q in zip(params, twin_params, strict=True):
        assert_bitwise_equal(p, q)


def test_grad_error_messages_name_the_argument():
    opt, params, good = _warm_optimizer("SGD")
    with pytest.raises(fastml.ShapeError, match=r"grads\[1\] must have the shape of its "
                                                r"parameter \(7, 5\); got \(5, 7\)"):
        opt.step([good[0], np.zeros((5, 7))] + good[2:])
    with pytest.raises(fastml.ShapeError, match="grads must be a list of 4 arrays.*got 3"):
        opt.step(good[:3])
    with pytest.raises(fastml.DTypeError, match=r"grads\[0\] must have the dtype of its "
                                                r"parameter \(float64\); got float32"):
        opt.step([good[0].astype(np.float32)] + good[1:])
    with pytest.raises(fastml.ShapeError, match=r"grads\[0\] must not share memory"):
        opt.step([params[0]] + good[1:])


def test_bad_params_are_rejected():
    a = np.zeros((4, 6))
    read_only = np.zeros(5)
    read_only.flags.writeable = False
    shared = np.zeros(10)
    cases = [
        (a[:, ::2], fastml.ShapeError, "C-contiguous"),
        (a.T, fastml.ShapeError, "C-contiguous"),
        ([np.zeros(3), a[::2]], fastml.ShapeError, "C-contiguous"),
        (read_only, fastml.ShapeError, "writeable"),
        (np.zeros(3, dtype=np.int32), fastml.DTypeError, "float32 or float64"),
        (np.zeros(3, dtype=np.float16), fastml.DTypeError, "float32 or float64"),
        ([shared[:6], shared[4:]], fastml.ShapeError, "share memory"),
        ([], ValueError, "at least one array"),
        ("abc", fastml.DTypeError, "float32 or float64"),
    ]
    for params, error, text in cases:
        for kind in RICH:
            with pytest.raises(error, match=text):
                getattr(fastml, kind)(params)
    assert not read_only.any() and not a.any()


@pytest.mark.parametrize("kind,kwargs,error,text", [
    ("SGD", {"lr": -0.1}, ValueError, "lr must be a non-negative number; got -0.1"),
    ("Adam", {"lr": float("nan")}, ValueError, "lr must be a non-negative number"),
    ("Adagrad", {"lr": float("inf")}, ValueError, "lr must be a non-negative number"),
    ("RMSprop", {"lr": "fast"}, TypeError, "lr must be a number or a schedule"),
    ("Adam", {"betas": (1.0, 0.999)}, ValueError, r"betas\[0\] must be in \[0, 1\)"),
    ("Adam", {"betas": (0.9, 1.0)}, ValueError, r"betas\[1\] must be in \[0, 1\)"),
    ("AdamW", {"betas": (-0.1, 0.9)}, ValueError, r"betas\[0\] must be in \[0, 1\)"),
    ("AdamW", {"betas": (0.9, 1.5)}, ValueError, r"betas\[1\] must be in \[0, 1\)"),
    ("Adam", {"betas": 0.9}, ValueError, "betas must be a pair"),
    ("Adam", {"betas": (0.9, 0.99, 0.999)}, ValueError, "betas must be a pair"),
    ("Adam", {"eps": -1e-8}, ValueError, "eps must be a non-negative number"),
    ("Adam", {"weight_decay": -0.1}, ValueError, "weight_decay must be a non-negative"),
    ("SGD", {"nesterov": True}, ValueError, "nesterov must come with momentum > 0"),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}, ValueError,
     "nesterov must come with momentum > 0 and dampening = 0"),
    ("SGD", {"momentum": -0.9}, ValueError, "momentum must be a non-negative number"),
    ("SGD", {"dampening": -0.1}, ValueError, "dampening must be a non-negative number"),
    ("RMSprop", {"alpha": 1.5}, ValueError, r"alpha must be in \[0, 1\]"),
    ("RMSprop", {"alpha": -0.5}, ValueError, r"alpha must be in \[0, 1\]"),
    ("RMSprop", {"momentum": -0.5}, ValueError, "momentum must be a non-negative"),
    ("Adagrad", {"lr_decay": -0.1}, ValueError, "lr_decay must be a non-negative"),
    ("Adagrad", {"initial_accumulator_value": -1.0}, ValueError,
     "initial_accumulator_value must be a non-negative"),
    ("Adam", {"guard": "clip"}, TypeError, "guard must be a fastml.Guard or None"),
])
def test_bad_hyper_parameters_are_rejected(kind, kwargs, error, text):
    p = np.ones(5)
    with pytest.raises(error, match=text):
        getattr(fastml, kind)(p, **kwargs)
    assert_bitwise_equal(p, np.ones(5))


def test_bad_lr_set_between_steps_changes_nothing():
    opt, params, good = _warm_optimizer("Adam")
    for bad, error in [(-1e-3, ValueError), (float("nan"), ValueError), ("x", TypeError)]:
        with pytest.raises(error, match="lr must be"):
            opt.lr = bad
        assert opt.lr == LR["Adam"]
    twin, twin_params, _ = _warm_optimizer("Adam")
    assert opt.step(good) == twin.step(good)
    for p, q in zip(params, twin_params, strict=True):
        assert_bitwise_equal(p, q)


@pytest.mark.parametrize("bad", [-0.01, float("nan"), float("inf")])
def test_lr_schedule_returning_a_bad_value_changes_nothing(bad):
    """A callable lr that fails is caught before anything is written, the gradient statistics
    of the guard included: the next step equals the same step of an optimizer that never saw
    the rejected call (a leftover sum of squares would change the norm clip)."""
    calls = []

    def lr(step):
        calls.append(step)
        return bad if len(calls) == 1 else 0.01

    guard = fastml.Guard(clip_norm=0.5)
    opt, params, good = _warm_optimizer("Adam", guard=guard)
    opt.lr = lr
    snap = _snapshot(opt, params)
    with pytest.raises(ValueError, match="lr schedule must return a non-negative number"):
        opt.step([10 * g for g in good])
    assert_unchanged(opt, params, snap)
    twin, twin_params, _ = _warm_optimizer("Adam", guard=fastml.Guard(clip_norm=0.5))
    info, twin_info = opt.step(good), twin.step(good)
    assert info == twin_info
    assert info.clip_coef < 1.0
    for p, q in zip(params, twin_params, strict=True):
        assert_bitwise_equal(p, q)
    assert calls == [3, 3]  # called with the applied-step count, not the attempt count


def test_repr_names_the_options():
    r = repr(fastml.Adam(np.zeros(2), lr=0.1, amsgrad=True, guard=fastml.Guard(clip_norm=1.0)))
    assert r.startswith("Adam(lr=0.1") and "amsgrad=True" in r and "clip_norm=1.0" in r
