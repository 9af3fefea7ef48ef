"""Guards on the CPU: skipped non-finite steps leave everything bitwise unchanged, skip counting
and NonFiniteError, norm and value clipping against torch.nn.utils, the LossScaler against
torch.amp.GradScaler, the stand-alone global_norm / all_finite / clip_grad_norm, thread-count
independence, and bad arguments."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastml
from fastml.kernels.cpu._jit import CHUNK

from .helpers import (
    PARAM_SHAPES,
    assert_bitwise_equal,
    assert_close,
    assert_trajectory_close,
    make_trajectory,
    sum_tol,
    tol,
)
from .reference import optim as ref

DTYPES = [np.float64, np.float32]
LR = {"SGD": 0.05, "Adam": 0.01, "AdamW": 0.01, "RMSprop": 0.01, "Adagrad": 0.1}
# Every state buffer each optimizer can have, all at once.
BUFFERED = {
    "SGD": {"momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
    "Adam": {"amsgrad": True, "weight_decay": 0.05},
    "AdamW": {"amsgrad": True, "maximize": True},
    "RMSprop": {"centered": True, "momentum": 0.5, "weight_decay": 0.01},
    "Adagrad": {"lr_decay": 0.05, "initial_accumulator_value": 0.1},
}
BAD = [math.nan, math.inf, -math.inf]


def make_opt(kind, params, guard, **extra):
    return getattr(fastml, kind)(params, lr=LR[kind], guard=guard, **BUFFERED[kind], **extra)


def snapshot(opt, params):
    state = {name: [a.copy() for a in arrays] for name, arrays in opt.state.items()}
    return [p.copy() for p in params], state


def assert_same(a, b, what=""):
    """Two (params, state) snapshots hold the very same bits."""
    (pa, sa), (pb, sb) = a, b
    for i, (x, y) in enumerate(zip(pa, pb, strict=True)):
        assert_bitwise_equal(x, y, f"{what} params[{i}]")
    assert sorted(sa) == sorted(sb)
    for name in sa:
        for i, (x, y) in enumerate(zip(sa[name], sb[name], strict=True)):
            assert_bitwise_equal(x, y, f"{what} {name}[{i}]")


def sprinkle(grads, bad, factor=100):
    """Copies of ``grads`` times ``factor`` (100: a step that, applied, would move everything)
    with ``bad`` = [(array, flat index, value)] written in."""
    out = [g * g.dtype.type(factor) for g in grads]
    for which, index, value in bad:
        a = out[which % len(out)]
        a.reshape(-1)[index % a.size] = value
    return out


# Skipped steps ---------------------------------------------------------------------------------

CLEAN_STEPS = 6
_clean_runs = {}


def clean_run(kind, dtype):
    """Snapshots after each of CLEAN_STEPS clean guarded steps (cached per kind and dtype)."""
    if (kind, dtype) not in _clean_runs:
        params, grads = make_trajectory(PARAM_SHAPES, CLEAN_STEPS, dtype, seed=11)
        ps = [p.copy() for p in params]
        opt = make_opt(kind, ps, fastml.Guard(clip_norm=3.0))
        snaps = [snapshot(opt, ps)]
        for g in grads:
            opt.step(g)
            snaps.append(snapshot(opt, ps))
        _clean_runs[kind, dtype] = (params, grads, snaps)
    return _clean_runs[kind, dtype]


bad_entries = st.lists(st.tuples(st.integers(0, len(PARAM_SHAPES) - 1),
                                 st.integers(0, 10**6), st.sampled_from(BAD)),
                       min_size=1, max_size=8)


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", BUFFERED)
@settings(max_examples=12, deadline=None)
@given(bad=st.lists(bad_entries, min_size=1, max_size=3), at=st.integers(0, CLEAN_STEPS - 1))
def test_nonfinite_steps_are_skipped_bitwise(kind, dtype, bad, at):
    """NaN/Inf anywhere: params and every state buffer keep their bits, the step counter stays,
    and the run then continues exactly as if the bad steps had never been taken (the next
    applied step uses the bias correction of the right step)."""
    params, grads, clean = clean_run(kind, dtype)
    ps = [p.copy() for p in params]
    opt = make_opt(kind, ps, fastml.Guard(clip_norm=3.0))
    for t, g in enumerate(grads):
        if t == at:
            for k, entries in enumerate(bad, start=1):
                before = snapshot(opt, ps)
                poisoned = sprinkle(g, entries)
                info = opt.step(poisoned)
                assert not info.applied
                assert (info.step, info.skipped_total, info.consecutive_skips) == (at, k, k)
                want_norm = ref.global_norm(poisoned)
                assert (math.isnan(info.grad_norm) if math.isnan(want_norm)
                        else info.grad_norm == want_norm == math.inf)
                assert_same(snapshot(opt, ps), before, f"after bad step {k}")
        info = opt.step(g)
        assert info.applied and info.step == t + 1 and info.consecutive_skips == 0
        assert info.skipped_total == (len(bad) if t >= at else 0)
        assert_same(snapshot(opt, ps), clean[t + 1], f"step {t + 1}")


def test_max_consecutive_skips_raises_naming_the_count():
    params, grads = make_trajectory(PARAM_SHAPES, 4, np.float64, seed=12)
    opt = make_opt("Adam", params, fastml.Guard(max_consecutive_skips=3))
    bad = sprinkle(grads[0], [(1, 4, math.nan)])
    opt.step(grads[0])
    assert opt.step(bad).consecutive_skips == 1
    assert opt.step(grads[1]).consecutive_skips == 0  # a clean step resets the run
    assert opt.step(bad).consecutive_skips == 1
    info = opt.step(bad)
    assert (info.consecutive_skips, info.skipped_total, info.applied) == (2, 3, False)
    before = snapshot(opt, params)
    with pytest.raises(fastml.NonFiniteError, match=r"NaN/Inf in 3 steps in a row "
                                                    r"\(max_consecutive_skips=3\); 4 skipped"):
        opt.step(bad)
    assert_same(snapshot(opt, params), before, "the raising step")
    info = opt.step(grads[2])
    assert info.applied and info.step == 3 and info.consecutive_skips == 0
    assert info.skipped_total == 4
    assert issubclass(fastml.NonFiniteError, FloatingPointError)


def test_max_consecutive_skips_of_one_raises_on_the_first_skip():
    p = np.zeros(3)
    opt = fastml.SGD(p, lr=0.1, guard=fastml.Guard(max_consecutive_skips=1))
    with pytest.raises(fastml.NonFiniteError, match="1 steps in a row"):
        opt.step(np.array([1.0, np.inf, 0.0]))
    assert not p.any()


# Guarded trajectories against the reference ------------------------------------------------------

def run_guarded(kind, dtype, guard_kw, scaler_kw=None, steps=60, seed=13, bad_at=(7, 8, 30)):
    """fastml and the reference over ``steps`` steps whose true gradients vary in size (so the
    norm clip sometimes acts and sometimes not), scaled by the live loss scale, with NaN/Inf
    in the steps ``bad_at``. Returns (fastml params, fastml infos, reference, reference infos)."""
    params, grads = make_trajectory(PARAM_SHAPES, steps, dtype, seed=seed)
    rng = np.random.default_rng(seed)
    sizes = rng.uniform(0.05, 3.0, size=steps)
    grads = [[(s * gi).astype(dtype) for gi in g] for s, g in zip(sizes, grads, strict=True)]
    for t in bad_at:
        grads[t] = sprinkle(grads[t], [(t, 3 * t, BAD[t % 3])], factor=1)
    scaler = fastml.LossScaler(**scaler_kw) if scaler_kw is not None else None
    ps = [p.copy() for p in params]
    opt = make_opt(kind, ps, fastml.Guard(scaler=scaler, **guard_kw))
    want = ref.Optimizer(kind, params, LR[kind], guard=guard_kw,
                         scaler=ref.Scaler(**scaler_kw) if scaler_kw is not None else None,
                         **BUFFERED[kind])
    infos, want_infos = [], []
    for g in grads:
        scale = scaler.scale if scaler is not None else 1.0
        assert scale == (want.scaler.scale if scaler is not None else 1.0)
        scaled = [(gi * scale).astype(dtype) for gi in g]  # exact: scales are powers of two
        infos.append(opt.step(scaled))
        want_infos.append(want.step(scaled))
    return ps, infos, want, want_infos


def check_infos(infos, want_infos, dtype, n):
    for t, (info, w) in enumerate(zip(infos, want_infos, strict=True)):
        assert info.applied == w["applied"], t
        assert (info.step, info.skipped_total, info.consecutive_skips) == (
            w["step"], w["skipped_total"], w["consecutive_skips"]), t
        assert info.scale == w["scale"], t
        # the norm of the clamped, unscaled gradients, accumulated in float64
        assert_close(info.grad_norm, w["grad_norm"], rtol=tol(dtype, 2) + sum_tol(np.float64, n),
                     name=f"grad_norm at {t}")
        assert_close(info.clip_coef, w["clip_coef"], rtol=tol(dtype, 2) + sum_tol(np.float64, n),
                     name=f"clip_coef at {t}")
        if info.applied:
            assert info.lr == w["lr"]


GUARDS = {
    "clip_norm": {"clip_norm": 4.0},
    "clip_value": {"clip_value": 0.8},
    "both": {"clip_value": 1.5, "clip_norm": 3.0},
}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("kind", BUFFERED)
def test_guarded_trajectory_matches_reference(kind, guard, dtype):
    scaler_kw = {"init_scale": 2.0**8, "growth_interval": 5, "backoff_factor": 0.25}
    ps, infos, want, want_infos = run_guarded(kind, dtype, GUARDS[guard], scaler_kw)
    check_infos(infos, want_infos, dtype, sum(math.prod(s) for s in PARAM_SHAPES))
    clipped = [i.clip_coef < 1.0 for i in infos if i.applied]
    if "clip_norm" in GUARDS[guard]:
        assert any(clipped) and not all(clipped)
    assert [i.applied for i in infos].count(False) == 3
    assert_trajectory_close(ps, want.params, want.bound)


@pytest.mark.torch
@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("guard", GUARDS)
@pytest.mark.parametrize("kind", ["SGD", "Adam", "RMSprop", "Adagrad"])
def test_clipping_matches_torch(kind, guard, dtype):
    """clip_grad_value_, then clip_grad_norm_ (its norm and coefficient reported in StepInfo),
    then the torch optimizer's step."""
    torch = pytest.importorskip("torch")
    clip = GUARDS[guard]
    ps, infos, want, _ = run_guarded(kind, dtype, clip, bad_at=())
    params, grads = make_trajectory(PARAM_SHAPES, len(infos), dtype, seed=13)
    sizes = np.random.default_rng(13).uniform(0.05, 3.0, size=len(infos))
    ts = [torch.tensor(p, requires_grad=True) for p in params]
    opt = getattr(torch.optim, kind)(ts, lr=LR[kind], foreach=False, **BUFFERED[kind])
    n = sum(math.prod(s) for s in PARAM_SHAPES)
    for t, (s, g) in enumerate(zip(sizes, grads, strict=True)):
        for tt, gi in zip(ts, g, strict=True):
            tt.grad = torch.tensor((s * gi).astype(dtype))
        if "clip_value" in clip:
            torch.nn.utils.clip_grad_value_(ts, clip["clip_value"])
        if "clip_norm" in clip:
            norm = float(torch.nn.utils.clip_grad_norm_(ts, clip["clip_norm"]))
            # torch sums float32 squares in float32
            assert_close(infos[t].grad_norm, norm, rtol=sum_tol(dtype, n), name="grad_norm")
            assert infos[t].clip_coef == min(1.0, clip["clip_norm"] / (infos[t].grad_norm + 1e-6))
        opt.step()
    assert_trajectory_close(ps, [tt.detach().numpy() for tt in ts], want.bound, implementations=2)


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_scaler_matches_torch_grad_scaler(dtype):
    """Same scale at every step (backoff on NaN/Inf, growth after growth_interval clean steps),
    same skipped steps, same parameters, as torch.amp.GradScaler driving torch.optim.Adam."""
    torch = pytest.importorskip("torch")
    kw = {"init_scale": 2.0**10, "growth_factor": 4.0, "backoff_factor": 0.25,
          "growth_interval": 3}
    steps = 40
    params, grads = make_trajectory(PARAM_SHAPES, steps, dtype, seed=14)
    for t in (4, 5, 13, 30):  # two bad steps in a row, and bad steps mid-growth
        grads[t] = sprinkle(grads[t], [(t, t, BAD[t % 3])], factor=1)
    scaler = fastml.LossScaler(**kw)
    assert scaler.scale == kw["init_scale"]  # not yet attached
    ps = [p.copy() for p in params]
    opt = fastml.Adam(ps, lr=0.01, amsgrad=True, guard=fastml.Guard(scaler=scaler))
    ts = [torch.tensor(p, requires_grad=True) for p in params]
    topt = torch.optim.Adam(ts, lr=0.01, amsgrad=True, foreach=False)
    tscaler = torch.amp.GradScaler("cpu", **kw)
    tscaler.scale(torch.ones(()))  # creates its scale tensor
    scales = []
    for g in grads:
        scale = scaler.scale
        assert scale == tscaler.get_scale()
        scaled = [(gi * scale).astype(dtype) for gi in g]
        info = opt.step(scaled)
        for tt, gi in zip(ts, scaled, strict=True):
            tt.grad = torch.tensor(gi)
        tscaler.step(topt)
        tscaler.update()
        assert info.scale == scale and info.applied == ref.all_finite(scaled)
        scales.append(scale)
    assert scaler.scale == tscaler.get_scale()
    assert len(set(scales)) > 3  # it grew and backed off
    want = ref.Optimizer("Adam", params, 0.01, guard={}, scaler=ref.Scaler(**kw), amsgrad=True)
    for g, s in zip(grads, scales, strict=True):
        want.step([gi * s for gi in g])
    assert want.scaler.scale == scaler.scale
    assert_trajectory_close(ps, want.params, want.bound)
    assert_trajectory_close(ps, [tt.detach().numpy() for tt in ts], want.bound, implementations=2)
    assert "LossScaler(scale=" in repr(scaler)


def test_loss_scaler_divides_the_gradients():
    """A scaled gradient gives the very update of the unscaled one (scales are powers of two)."""
    params, grads = make_trajectory(PARAM_SHAPES, 10, np.float32, seed=15)
    a, b = [p.copy() for p in params], [p.copy() for p in params]
    scaler = fastml.LossScaler(init_scale=2.0**12, growth_interval=4)
    opt_a = fastml.Adam(a, lr=0.01, guard=fastml.Guard(scaler=scaler))
    opt_b = fastml.Adam(b, lr=0.01, guard=fastml.Guard())
    for g in grads:
        info = opt_a.step([gi * np.float32(scaler.scale) for gi in g])
        opt_b.step(g)
        assert info.applied
    assert scaler.scale == 2.0**12 * 2.0**2  # grew twice in 10 clean steps
    for x, y in zip(a, b, strict=True):
        assert_bitwise_equal(x, y)


@pytest.mark.torch
def test_skip_nonfinite_false_lets_nan_through_like_torch():
    torch = pytest.importorskip("torch")
    params, grads = make_trajectory(PARAM_SHAPES, 5, np.float64, seed=16)
    grads[2][1][3, 4] = np.nan
    grads[3][2][7] = -np.inf
    ps = [p.copy() for p in params]
    opt = fastml.Adam(ps, lr=0.01, guard=fastml.Guard(skip_nonfinite=False))
    infos = [opt.step(g) for g in grads]
    assert all(i.applied for i in infos) and infos[-1].step == 5
    assert math.isnan(infos[2].grad_norm) and infos[3].grad_norm == math.inf
    torch_params, _ = _torch_adam(torch, params, grads)
    want = ref.Optimizer("Adam", params, 0.01, guard={"skip_nonfinite": False})
    for g in grads:
        want.step(g)
    assert np.isnan(ps[1][3, 4]) and np.isnan(ps[2][7])
    assert_trajectory_close(ps, want.params, want.bound)
    assert_trajectory_close(ps, torch_params, want.bound, implementations=2)


@pytest.mark.torch
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_skip_nonfinite_false_clips_like_torch(bad):
    """With a NaN norm PyTorch's clip coefficient is NaN, with an Inf norm 0: applied, the
    step spreads NaN exactly as clip_grad_norm_ followed by the optimizer does."""
    torch = pytest.importorskip("torch")
    params, grads = make_trajectory(PARAM_SHAPES, 3, np.float64, seed=18)
    grads[1][0][0] = bad
    ps = [p.copy() for p in params]
    opt = fastml.SGD(ps, lr=0.1, guard=fastml.Guard(clip_norm=1.0, skip_nonfinite=False))
    ts = [torch.tensor(p, requires_grad=True) for p in params]
    topt = torch.optim.SGD(ts, lr=0.1)
    for g in grads:
        info = opt.step(g)
        for tt, gi in zip(ts, g, strict=True):
            tt.grad = torch.tensor(gi)
        torch.nn.utils.clip_grad_norm_(ts, 1.0)
        topt.step()
        assert info.applied
    for x, tt in zip(ps, ts, strict=True):
        y = tt.detach().numpy()
        assert np.array_equal(np.isnan(x), np.isnan(y))
        np.testing.assert_allclose(x[~np.isnan(x)], y[~np.isnan(y)], rtol=1e-12, atol=1e-15)


def _torch_adam(torch, params, grads):
    ts = [torch.tensor(p, requires_grad=True) for p in params]
    opt = torch.optim.Adam(ts, lr=0.01, foreach=False)
    for g in grads:
        for tt, gi in zip(ts, g, strict=True):
            tt.grad = torch.tensor(gi)
        opt.step()
    return [tt.detach().numpy() for tt in ts], opt


# Thread count and repeatability ----------------------------------------------------------------

@pytest.mark.parametrize("kind", BUFFERED)
def test_thread_count_does_not_change_guarded_trajectories(kind, restore_num_threads):
    """1 and 2 numba threads give bitwise identical parameters, state and StepInfo, with arrays
    of several reduction chunks, a norm clip, a scaler and a skipped step."""
    import numba

    if restore_num_threads < 2:
        pytest.skip("numba has a single thread here")
    shapes = [(3 * CHUNK + 17,), (7, 5), (CHUNK + 1,)]
    params, grads = make_trajectory(shapes, 8, np.float32, seed=17)
    grads[3] = sprinkle(grads[3], [(0, 2 * CHUNK + 5, math.nan)], factor=1)
    runs = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        ps = [p.copy() for p in params]
        scaler = fastml.LossScaler(init_scale=2.0**6, growth_interval=2)
        opt = make_opt(kind, ps, fastml.Guard(clip_norm=50.0, clip_value=2.5, scaler=scaler))
        infos = [opt.step([gi * np.float32(scaler.scale) for gi in g]) for g in grads]
        runs.append((snapshot(opt, ps), infos))
    (snap1, infos1), (snap2, infos2) = runs
    assert [repr(i) for i in infos1] == [repr(i) for i in infos2]  # NaN norms included
    assert any(i.clip_coef < 1 for i in infos1) and not infos1[3].applied
    assert_same(snap1, snap2)


# Stand-alone global_norm, all_finite, clip_grad_norm ------------------------------------------

def grad_cases(dtype):
    rng = np.random.default_rng(18)
    clean = [rng.standard_normal(s).astype(dtype) for s in PARAM_SHAPES]

    def poisoned(*entries):
        out = [g.copy() for g in clean]
        for which, index, value in entries:
            out[which].reshape(-1)[index] = value
        return out

    return {
        "clean": clean,
        "small": [g * dtype(1e-3) for g in clean],  # under max_norm: left alone
        "zeros": [np.zeros_like(g) for g in clean],
        "nan": poisoned((1, 7, math.nan)),
        "inf": poisoned((3, 0, math.inf)),
        "-inf": poisoned((0, 0, -math.inf)),
        "nan and inf": poisoned((1, 7, math.inf), (2, 12, math.nan)),
        "huge": [g * dtype(1e30) for g in clean],  # squares overflow float32, not float64
    }


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["clean", "small", "zeros", "nan", "inf", "-inf",
                                  "nan and inf", "huge"])
def test_global_norm_and_clip_grad_norm_match_torch(case, dtype):
    torch = pytest.importorskip("torch")
    grads = grad_cases(dtype)[case]
    n = sum(g.size for g in grads)
    want = ref.global_norm(grads)
    norm = fastml.global_norm(grads)
    assert isinstance(norm, float)
    assert_close(norm, want, rtol=sum_tol(np.float64, n), name="global_norm")
    assert fastml.all_finite(grads) == ref.all_finite(grads) == (case in ("clean", "small",
                                                                          "zeros", "huge"))
    max_norm = 2.0
    got = [g.copy() for g in grads]
    total = fastml.clip_grad_norm(got, max_norm)
    assert_close(total, want, rtol=sum_tol(np.float64, n), name="clip_grad_norm's norm")
    coef = ref.clip_coef(want, max_norm)
    with np.errstate(invalid="ignore", over="ignore"):
        want_grads = [g.astype(np.float64) * coef if coef < 1 or math.isnan(coef) else g
                      for g in grads]
    for i, (g, w) in enumerate(zip(got, want_grads, strict=True)):
        assert_close(g, w, rtol=tol(dtype), name=f"clipped grads[{i}]")
    if case == "small":
        for g, h in zip(got, grads, strict=True):
            assert_bitwise_equal(g, h)
    # torch.nn.utils.clip_grad_norm_ on the same gradients
    ts = [torch.zeros(g.shape, dtype=getattr(torch, np.dtype(dtype).name)) for g in grads]
    for tt, g in zip(ts, grads, strict=True):
        tt.grad = torch.tensor(g)
    torch_total = float(torch.nn.utils.clip_grad_norm_(ts, max_norm))
    if case == "huge" and dtype == np.float32 and torch_total == math.inf:
        pass  # torch sums float32 squares in float32, which overflows; fastml sums in float64
    else:
        assert_close(norm, torch_total, rtol=sum_tol(dtype, n), name="norm vs torch")
        for i, (g, tt) in enumerate(zip(got, ts, strict=True)):
            assert_close(g, tt.grad.numpy(), rtol=2 * tol(dtype), name=f"grads[{i}] vs torch")


def test_global_norm_of_many_chunks_is_accurate():
    rng = np.random.default_rng(19)
    grads = [rng.standard_normal(5 * CHUNK + 3).astype(np.float32), rng.standard_normal(11)]
    grads[1] = grads[1].astype(np.float32)
    n = sum(g.size for g in grads)
    assert_close(fastml.global_norm(grads), ref.global_norm(grads),
                 rtol=sum_tol(np.float64, n), name="global_norm")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scale, clip_value", [(1.0, math.inf), (4.0, math.inf), (1.0, 0.5)])
@pytest.mark.parametrize("n", [1, 3, 4, 7, CHUNK - 1, CHUNK + 6, 2 * CHUNK + 3])
def test_guard_pass_reads_every_element(dtype, scale, clip_value, n):
    """The guard pass reads each chunk as four interleaved quarters and a tail: its sum counts
    every element once, and a NaN/Inf at any quarter's edge or in the tail is seen, in each of
    its loops (float32 plain, unscaled, clamped; float64)."""
    from fastml.kernels import cpu
    from fastml.kernels.step_plan import NONFINITE, SCALE, SUMSQ

    rng = np.random.default_rng(n)
    g = rng.standard_normal(n).astype(dtype)
    ctl = np.zeros(16)
    ctl[SCALE] = scale
    red = np.zeros(2)
    cpu.grad_stats(red, g, ctl, clip_value)
    want = np.sum(np.clip(g.astype(np.float64) / scale, -clip_value, clip_value) ** 2)
    assert red[NONFINITE] == 0
    assert_close(red[SUMSQ], want, rtol=1e-13, name="sum of squares")
    edges = set()
    for start in range(0, n, CHUNK):
        length = min(CHUNK, n - start)
        q = length // 4
        edges |= {start + k * q + d for k in range(5) for d in (-1, 0)}
        edges.add(start + length - 1)
    for at in sorted(e for e in edges if 0 <= e < n):
        for bad in BAD:
            h = g.copy()
            h[at] = bad
            red = np.zeros(2)
            cpu.grad_stats(red, h, ctl, clip_value)
            assert red[NONFINITE] >= 1, (at, bad)


def test_global_norm_accepts_one_array_and_a_flat_buffer():
    p = fastml.FlatParams({"w": (7, 5), "b": (5,)}, dtype=np.float64)
    p.grad["w"][...] = 1.0
    p.grad["b"][...] = -2.0
    want = math.sqrt(35 + 4 * 5)
    assert fastml.global_norm(p.grad) == pytest.approx(want, rel=1e-15)
    assert fastml.global_norm(p.grad.data) == pytest.approx(want, rel=1e-15)
    assert fastml.all_finite(p.grad)
    p.grad["b"][2] = np.nan
    assert not fastml.all_finite(p.grad)
    assert fastml.clip_grad_norm(np.full(4, 3.0), 1.0) == 6.0


def test_gradient_check_bad_input():
    from numba import cuda

    g = np.ones((4, 6))
    before = g.copy()
    with pytest.raises(ValueError, match="max_norm must be a positive number"):
        fastml.clip_grad_norm([g], 0.0)
    with pytest.raises(ValueError, match="max_norm must be a positive number"):
        fastml.clip_grad_norm([g], -1.0)
    with pytest.raises(TypeError, match="max_norm must be a positive number"):
        fastml.clip_grad_norm([g], "one")
    with pytest.raises(fastml.ShapeError, match="C-contiguous"):
        fastml.clip_grad_norm([g, g[:, ::2]], 0.1)
    with pytest.raises(fastml.DTypeError, match="float32 or float64"):
        fastml.global_norm([g, np.ones(3, dtype=np.int64)])
    with pytest.raises(ValueError, match="at least one array"):
        fastml.all_finite([])
    with pytest.raises(fastml.DeviceError, match="one device"):
        fastml.global_norm([g, cuda.to_device(np.ones(3))])
    assert_bitwise_equal(g, before)


# Bad guard and scaler arguments ----------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,text", [
    ({"clip_norm": 0.0}, ValueError, "clip_norm must be a positive number; got 0.0"),
    ({"clip_norm": -1.0}, ValueError, "clip_norm must be a positive number"),
    ({"clip_norm": math.nan}, ValueError, "clip_norm must be a positive number"),
    ({"clip_norm": "big"}, TypeError, "clip_norm must be a positive number"),
    ({"clip_value": 0}, ValueError, "clip_value must be a positive number"),
    ({"clip_value": -0.5}, ValueError, "clip_value must be a positive number"),
    ({"max_consecutive_skips": 0}, ValueError, "max_consecutive_skips must be a positive int"),
    ({"max_consecutive_skips": 2.5}, TypeError, "max_consecutive_skips must be a positive int"),
    ({"scaler": 2.0**16}, TypeError, "scaler must be a fastml.LossScaler"),
])
def test_bad_guard_arguments(kwargs, error, text):
    with pytest.raises(error, match=text):
        fastml.Guard(**kwargs)


@pytest.mark.parametrize("kwargs,error,text", [
    ({"init_scale": 0.0}, ValueError, "init_scale must be a positive number"),
    ({"init_scale": -2.0}, ValueError, "init_scale must be a positive number"),
    ({"init_scale": math.inf}, ValueError, "init_scale must be a positive"),
    ({"growth_factor": 1.0}, ValueError, "growth_factor must be > 1"),
    ({"growth_factor": 0.5}, ValueError, "growth_factor must be > 1"),
    ({"growth_factor": math.inf}, ValueError, "growth_factor must be"),
    ({"backoff_factor": 0.0}, ValueError, r"backoff_factor must be in \(0, 1\)"),
    ({"backoff_factor": 1.0}, ValueError, r"backoff_factor must be in \(0, 1\)"),
    ({"backoff_factor": 2.0}, ValueError, r"backoff_factor must be in \(0, 1\)"),
    ({"growth_interval": 0}, ValueError, "growth_interval must be a positive integer"),
    ({"growth_interval": 1.5}, TypeError, "growth_interval must be a positive integer"),
])
def test_bad_loss_scaler_arguments(kwargs, error, text):
    with pytest.raises(error, match=text):
        fastml.LossScaler(**kwargs)


def test_guard_repr():
    r = repr(fastml.Guard(clip_norm=1.0, max_consecutive_skips=5, scaler=fastml.LossScaler()))
    assert "clip_norm=1.0" in r and "max_consecutive_skips=5" in r and "scale=65536.0" in r
