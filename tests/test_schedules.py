"""Learning-rate schedules: closed forms against the reference, PyTorch's StepLR, ExponentialLR,
CosineAnnealingLR and LinearLR + CosineAnnealingLR fed the same steps, the optimizer's use of
them (device-side plan for the built-ins, the host for a user callable), ``opt.lr = x``
between steps, and bad arguments."""

import math

import numpy as np
import pytest

import fastml
from fastml import schedules

from .helpers import PARAM_SHAPES, assert_close, assert_trajectory_close, make_trajectory, tol
from .reference import optim as ref

# Trajectories of tiny arrays: one numba thread (see the one_thread fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = 60
BASE = 0.1
# name -> (fastml schedule, reference closed form step -> lr, steps to compare with torch)
SCHEDULES = {
    "constant": (schedules.constant(BASE), lambda s: BASE),
    "step_decay": (schedules.step_decay(BASE, 7, gamma=0.5),
                   lambda s: ref.step_decay(BASE, 7, 0.5, s)),
    "exponential": (schedules.exponential(BASE, 0.95), lambda s: ref.exponential(BASE, 0.95, s)),
    "cosine": (schedules.cosine(BASE, 50, min_lr=1e-3), lambda s: ref.cosine(BASE, 50, 1e-3, s)),
    "warmup_cosine": (schedules.warmup_cosine(BASE, 8, 50, min_lr=1e-3),
                      lambda s: ref.warmup_cosine(BASE, 8, 50, 1e-3, s)),
}


def torch_schedule(torch, name):
    """A torch optimizer with the matching scheduler (base lr BASE)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=BASE)
    S = torch.optim.lr_scheduler
    if name == "constant":
        return opt, S.LambdaLR(opt, lambda e: 1.0)
    if name == "step_decay":
        return opt, S.StepLR(opt, step_size=7, gamma=0.5)
    if name == "exponential":
        return opt, S.ExponentialLR(opt, gamma=0.95)
    if name == "cosine":
        return opt, S.CosineAnnealingLR(opt, T_max=50, eta_min=1e-3)
    warm = S.LinearLR(opt, start_factor=1 / 8, end_factor=1.0, total_iters=7)
    cos = S.CosineAnnealingLR(opt, T_max=50 - 8, eta_min=1e-3)
    return opt, S.SequentialLR(opt, [warm, cos], milestones=[8])


def torch_lrs(torch, name, steps):
    opt, sched = torch_schedule(torch, name)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out)


@pytest.mark.parametrize("name", SCHEDULES)
def test_closed_form(name):
    sched, want = SCHEDULES[name]
    got = np.array([sched(s) for s in range(STEPS)])
    assert_close(got, [want(s) for s in range(STEPS)], rtol=tol(np.float64), name=name)
    assert (got >= 0).all()


@pytest.mark.torch
@pytest.mark.parametrize("name", SCHEDULES)
def test_matches_torch_scheduler(name):
    """PyTorch updates its lr step by step (a product of factors, or the cosine recursion):
    each step adds a rounding, so the tolerance grows with the step count."""
    torch = pytest.importorskip("torch")
    steps = 51  # CosineAnnealingLR climbs back after T_max = 50; fastml stays at min_lr
    sched, _ = SCHEDULES[name]
    got = np.array([sched(s) for s in range(steps)])
    assert_close(got, torch_lrs(torch, name, steps), rtol=steps * tol(np.float64),
                 atol=steps * tol(np.float64) * BASE, name=name)


@pytest.mark.parametrize("name", ["cosine", "warmup_cosine"])
def test_cosine_stays_at_min_lr_after_total_steps(name):
    sched, _ = SCHEDULES[name]
    assert [sched(s) for s in range(50, 80)] == [1e-3] * 30


@pytest.mark.parametrize("name", SCHEDULES)
def test_optimizer_uses_the_schedule_at_the_applied_step(name):
    """The step plan evaluates the built-in schedule (compiled) at the applied-step count: a
    skipped step does not advance it."""
    sched, want = SCHEDULES[name]
    params, grads = make_trajectory(PARAM_SHAPES, STEPS, np.float64, seed=20)
    grads[10] = [g * np.nan for g in grads[10]]
    ps = [p.copy() for p in params]
    opt = fastml.SGD(ps, lr=sched, momentum=0.9, guard=fastml.Guard())
    infos = [opt.step(g) for g in grads]
    applied = [i for i in infos if i.applied]
    assert len(applied) == STEPS - 1
    assert_close([i.lr for i in applied], [want(s) for s in range(STEPS - 1)],
                 rtol=tol(np.float64), name="StepInfo.lr")
    reference = ref.Optimizer("SGD", params, lambda s: want(s), guard={}, momentum=0.9)
    for g in grads:
        reference.step(g)
    assert_trajectory_close(ps, reference.params, reference.bound)


@pytest.mark.torch
@pytest.mark.parametrize("name", SCHEDULES)
def test_optimizer_with_schedule_matches_torch(name):
    torch = pytest.importorskip("torch")
    sched, _ = SCHEDULES[name]
    steps = 51
    params, grads = make_trajectory(PARAM_SHAPES, steps, np.float64, seed=21)
    ps = [p.copy() for p in params]
    opt = fastml.Adam(ps, lr=sched, amsgrad=True)
    ts = [torch.tensor(p, requires_grad=True) for p in params]
    topt = torch.optim.Adam(ts, lr=BASE, amsgrad=True, foreach=False)
    lrs = torch_lrs(torch, name, steps)  # the scheduler's lr at each step
    for g, lr in zip(grads, lrs, strict=True):
        topt.param_groups[0]["lr"] = lr
        for tt, gi in zip(ts, g, strict=True):
            tt.grad = torch.tensor(gi)
        topt.step()
        opt.step(g)
    want = ref.Optimizer("Adam", params, lambda s: lrs[s], amsgrad=True)
    for g in grads:
        want.step(g)
    # PyTorch's lr carries up to `steps` roundings of its own (test_matches_torch_scheduler),
    # and each update is proportional to the lr: that adds steps * tol * sum |dp| to the bound.
    assert_trajectory_close(ps, [tt.detach().numpy() for tt in ts], want.bound,
                            implementations=2 + steps)


def test_user_callable_is_called_with_the_applied_step_count():
    calls = []

    def lr(step):
        calls.append(step)
        return 0.05 / (1 + step)

    params, grads = make_trajectory(PARAM_SHAPES, 30, np.float32, seed=22)
    grads[5] = [g * np.inf for g in grads[5]]
    ps = [p.copy() for p in params]
    opt = fastml.Adam(ps, lr=lr, guard=fastml.Guard())
    infos = [opt.step(g) for g in grads]
    assert calls == list(range(6)) + list(range(5, 29))  # the skipped step 5 is asked again
    assert [i.lr for i in infos if i.applied] == [np.float64(0.05 / (1 + s)) for s in range(29)]
    want = ref.Optimizer("Adam", params, lambda s: 0.05 / (1 + s), guard={})
    for g in grads:
        want.step(g)
    assert_trajectory_close(ps, want.params, want.bound)


@pytest.mark.torch
def test_user_callable_matches_torch_lambda_lr():
    torch = pytest.importorskip("torch")
    params, grads = make_trajectory(PARAM_SHAPES, 40, np.float64, seed=23)
    ps = [p.copy() for p in params]
    opt = fastml.RMSprop(ps, lr=lambda s: 0.01 * 0.9 ** (s // 3), centered=True)
    ts = [torch.tensor(p, requires_grad=True) for p in params]
    topt = torch.optim.RMSprop(ts, lr=0.01, centered=True, foreach=False)
    tsched = torch.optim.lr_scheduler.LambdaLR(topt, lambda e: 0.9 ** (e // 3))
    for g in grads:
        for tt, gi in zip(ts, g, strict=True):
            tt.grad = torch.tensor(gi)
        topt.step()
        tsched.step()
        opt.step(g)
    want = ref.Optimizer("RMSprop", params, lambda s: 0.01 * 0.9 ** (s // 3), centered=True)
    for g in grads:
        want.step(g)
    assert_trajectory_close(ps, want.params, want.bound)
    assert_trajectory_close(ps, [tt.detach().numpy() for tt in ts], want.bound, implementations=2)


def test_switching_between_a_float_and_a_schedule():
    """A schedule set mid-run starts at the current applied-step count."""
    params, grads = make_trajectory(PARAM_SHAPES, 30, np.float64, seed=24)
    sched = schedules.exponential(0.2, 0.9)
    ps = [p.copy() for p in params]
    opt = fastml.SGD(ps, lr=0.05)
    lrs = []
    for t, g in enumerate(grads):
        if t == 10:
            opt.lr = sched
        elif t == 20:
            opt.lr = 0.01
        lrs.append(opt.step(g).lr)
    want_lrs = [0.05] * 10 + [sched(s) for s in range(10, 20)] + [0.01] * 10
    assert_close(lrs, want_lrs, rtol=tol(np.float64), name="lr")
    assert opt.lr == 0.01
    want = ref.Optimizer("SGD", params, lambda s: want_lrs[s])
    for g in grads:
        want.step(g)
    assert_trajectory_close(ps, want.params, want.bound)


@pytest.mark.parametrize("make,text", [
    (lambda: schedules.constant(-0.1), "lr must be a non-negative number"),
    (lambda: schedules.constant(math.nan), "lr must be a non-negative number"),
    (lambda: schedules.constant(math.inf), "lr must be a non-negative number"),
    (lambda: schedules.step_decay(0.1, 0), "step_size must be a positive number"),
    (lambda: schedules.step_decay(0.1, -5), "step_size must be a positive number"),
    (lambda: schedules.step_decay(0.1, 5, gamma=-0.5), "gamma must be a non-negative number"),
    (lambda: schedules.step_decay(0.1, 5, gamma=math.nan), "gamma must be a non-negative"),
    (lambda: schedules.step_decay(-0.1, 5), "lr must be a non-negative number"),
    (lambda: schedules.exponential(0.1, 0.0), "gamma must be a positive number"),
    (lambda: schedules.exponential(0.1, -0.9), "gamma must be a positive number"),
    (lambda: schedules.exponential(-0.1, 0.9), "lr must be a non-negative number"),
    (lambda: schedules.cosine(0.1, 0), "total_steps must be a positive number"),
    (lambda: schedules.cosine(0.1, 10, min_lr=-1e-3), "lr must be a non-negative number"),
    (lambda: schedules.warmup_cosine(0.1, 0, 10), "warmup_steps must be a positive number"),
    (lambda: schedules.warmup_cosine(0.1, 10, 10), "total_steps must be greater than warmup"),
    (lambda: schedules.warmup_cosine(0.1, 2, 10, min_lr=math.nan), "lr must be a non-negative"),
])
def test_bad_schedule_arguments(make, text):
    with pytest.raises(ValueError, match=text):
        make()


def test_no_built_in_schedule_goes_negative():
    for sched in [schedules.step_decay(0.1, 3, gamma=0.0), schedules.exponential(0.1, 1.5),
                  schedules.cosine(0.1, 10, min_lr=0.1), schedules.warmup_cosine(0.0, 1, 2)]:
        assert all(sched(s) >= 0 for s in range(40)), sched


def test_repr():
    assert repr(SCHEDULES["cosine"][0]) == "fastml.schedules.cosine(0.1, 50, min_lr=0.001)"
    assert repr(SCHEDULES["step_decay"][0]) == "fastml.schedules.step_decay(0.1, 7, gamma=0.5)"
    assert "exponential(0.1, 0.95)" in repr(fastml.SGD(np.zeros(2), lr=SCHEDULES["exponential"][0]))
