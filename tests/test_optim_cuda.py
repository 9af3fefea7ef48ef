"""Optimizers and guards on the GPU (``fastml.kernels.cuda`` update kernels, guard pass and step
plan, and the API path around them) against the CPU optimizers, which are the specification.

In CI this runs in numba-cuda's simulator; with ``FASTML_REAL_GPU=1`` it runs on a GPU. Every
case builds the same optimizer twice, on CPU arrays and on device arrays, feeds both the same
gradients, and compares parameters, every state buffer and the ``StepInfo`` fields.
"""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import config, cuda

import fastml
from fastml import _snapshots
from fastml.kernels import cuda as G

from .conftest import REAL_GPU
from .helpers import assert_bitwise_equal, assert_close, to_host, tol

pytestmark = [
    pytest.mark.cuda,
    # The simulator runs the kernels on NumPy scalars, which warn at inf - inf (the finiteness
    # test of the guard pass); compiled kernels do not.
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
]

SIMULATOR = bool(config.ENABLE_CUDASIM)
SIZES = (1, 7, 37, 300)  # one element, a partial tile only, and full tiles plus a tail
if REAL_GPU:
    SIZES += (1_000_003,)  # many blocks, several grid-stride sweeps


@pytest.fixture(autouse=True, scope="module")
def _fast_simulator_barriers():
    # The simulator busy-polls its threads at each syncthreads for about one interpreter switch
    # interval (5 ms by default); the guard pass's reductions run much faster with a short one.
    before = sys.getswitchinterval()
    if SIMULATOR:
        sys.setswitchinterval(5e-4)
    yield
    sys.setswitchinterval(before)


def close(got, want, dtype, name):
    """GPU vs CPU. Both evaluate the same expression in the same order, each within a few
    roundings of the exact value of the terms it combines, and the terms are bounded by the
    array's largest magnitude: float32 to 8 epsilons of each element and of that magnitude,
    float64 to 1e-12 of both (the CPU may contract a*b+c into an FMA where the simulator does not,
    and the CPU's float32 lerp promotes to float64)."""
    want = np.asarray(want, dtype=np.float64)
    finite = want[np.isfinite(want)]
    scale = float(np.abs(finite).max()) if finite.size else 1.0
    rtol = tol(np.float32, 8) if np.dtype(dtype) == np.float32 else 1e-12
    assert_close(got, want, rtol=rtol, atol=rtol * scale, name=name)


def host_state(opt):
    """Host copies of the parameters and every state buffer, by name."""
    out = {f"param{i}": to_host(p) for i, p in enumerate(opt._params)}
    for name, arrays in opt.state.items():
        for i, a in enumerate(arrays):
            out[f"{name}{i}"] = to_host(a)
    return out


def make_pair(kind, kw, dtype, sizes=SIZES, guard=None, seed=0):
    """The same optimizer on CPU and GPU copies of the same parameters. ``guard`` is a
    zero-argument factory (each optimizer needs its own Guard: a scaler belongs to one)."""
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(n).astype(dtype) for n in sizes]
    cls = getattr(fastml, kind)
    cpu = cls([p.copy() for p in params], **kw, guard=guard() if guard else None)
    gpu = cls([cuda.to_device(p) for p in params], **kw, guard=guard() if guard else None)
    return cpu, gpu


def grads_like(opt, rng, scale=1.0):
    return [(rng.standard_normal(p.size) * scale).astype(p.dtype) for p in opt._params]


def step_both(cpu, gpu, grads):
    a = cpu.step(grads)
    b = gpu.step([cuda.to_device(g) for g in grads])
    return a, b


def assert_same_state(cpu, gpu, dtype, what=""):
    want, got = host_state(cpu), host_state(gpu)
    assert want.keys() == got.keys()
    for name in want:
        close(got[name], want[name], dtype, f"{what}{name}")


def assert_info_close(a, b, dtype):
    assert (a.applied, a.step, a.skipped_total, a.consecutive_skips) == (
        b.applied, b.step, b.skipped_total, b.consecutive_skips)
    assert a.scale == b.scale
    for name in ("lr", "clip_coef", "grad_norm"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None or np.isnan(x):
            assert (x is None and y is None) or (np.isnan(x) and np.isnan(y)), name
        else:
            # The norm is a float64 sum in another order (per block vs per chunk).
            assert x == y or abs(x - y) <= 1e-13 * abs(x), (name, x, y)


# ---------------------------------------------------------------------------------------------
# Update rules: every optimizer and option, float32 and float64, GPU == CPU

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02, maximize=True)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, weight_decay=0.1)),  # L2
    ("Adam", dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True, amsgrad=True)),
    # beta1 = 0.3: lerp weight 0.7 takes PyTorch's second lerp form
    ("Adam", dict(lr=1e-2, betas=(0.3, 0.9), amsgrad=True, maximize=True)),
    ("AdamW", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2)),
    ("RMSprop", dict(lr=1e-2, centered=True, momentum=0.9, weight_decay=0.01)),
    ("RMSprop", dict(lr=1e-2, alpha=0.3, centered=True, maximize=True)),
    ("RMSprop", dict(lr=1e-2, momentum=0.5, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.5, weight_decay=0.01,
                     maximize=True)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind,kw", CONFIGS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CONFIGS)])
def test_update_matches_cpu(kind, kw, dtype):
    cpu, gpu = make_pair(kind, kw, dtype)
    rng = np.random.default_rng(1)
    for t in range(3):
        a, b = step_both(cpu, gpu, grads_like(cpu, rng))
        assert_info_close(a, b, dtype)
        assert_same_state(cpu, gpu, dtype, f"step {t + 1}: ")


# ---------------------------------------------------------------------------------------------
# Guards: skipped steps change nothing; scaler, clipping and norms as on the CPU

GUARDED = [
    ("SGD", dict(lr=0.05, momentum=0.9), np.float32),
    ("Adam", dict(lr=1e-2, amsgrad=True, weight_decay=0.1), np.float32),
    ("Adam", dict(lr=1e-2), np.float64),
    ("RMSprop", dict(lr=1e-2, centered=True, momentum=0.9), np.float32),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01), np.float64),
]


@pytest.mark.parametrize("kind,kw,dtype", GUARDED, ids=[f"{k}-{np.dtype(d)}" for k, _, d in
                                                         GUARDED])
def test_nonfinite_step_is_skipped_bitwise(kind, kw, dtype):
    def guard():
        return fastml.Guard(clip_norm=5.0, scaler=fastml.LossScaler(init_scale=8.0))

    cpu, gpu = make_pair(kind, kw, dtype, sizes=(7, 37), guard=guard)
    rng = np.random.default_rng(2)
    step_both(cpu, gpu, grads_like(cpu, rng))
    before = host_state(gpu)
    for bad in (np.nan, np.inf, -np.inf):
        gs = grads_like(cpu, rng)
        gs[1][5] = bad  # one bad entry in one array is enough to skip the whole step
        a, b = step_both(cpu, gpu, gs)
        assert not b.applied and b.step == 1
        assert_info_close(a, b, dtype)
        for name, arr in host_state(gpu).items():
            assert_bitwise_equal(arr, before[name], name=f"{name} after a {bad} gradient")
    assert b.skipped_total == 3 and b.consecutive_skips == 3
    a, b = step_both(cpu, gpu, grads_like(cpu, rng))  # and training goes on
    assert b.applied and b.step == 2 and b.consecutive_skips == 0
    assert_info_close(a, b, dtype)
    assert_same_state(cpu, gpu, dtype)


def test_max_consecutive_skips_raises_on_the_gpu():
    p = cuda.to_device(np.ones(7, np.float32))
    opt = fastml.SGD(p, lr=0.1, guard=fastml.Guard(max_consecutive_skips=2))
    bad = cuda.to_device(np.full(7, np.nan, np.float32))
    assert not opt.step(bad).applied
    with pytest.raises(fastml.NonFiniteError, match="2 steps in a row"):
        opt.step(bad)
    assert_bitwise_equal(p, np.ones(7, np.float32))


def test_loss_scaler_growth_and_backoff_match_cpu():
    def guard():
        return fastml.Guard(scaler=fastml.LossScaler(init_scale=2.0**10, growth_factor=4.0,
                                                     backoff_factor=0.25, growth_interval=2))

    cpu, gpu = make_pair("Adam", dict(lr=1e-2), np.float32, sizes=(37,), guard=guard)
    rng = np.random.default_rng(3)
    scales = []
    for finite in (True, True, True, False, True, False, False, True, True):
        g = grads_like(cpu, rng, scale=2.0**10)
        if not finite:
            g[0][3] = np.inf
        a, b = step_both(cpu, gpu, g)
        assert_info_close(a, b, np.float32)
        assert cpu.guard.scaler.scale == gpu.guard.scaler.scale
        scales.append(b.scale)
    # growth after two clean steps, backoff on each overflow
    assert scales == [2.0**10, 2.0**10, 2.0**12, 2.0**12, 2.0**10, 2.0**10, 2.0**8, 2.0**6,
                      2.0**6]
    assert_same_state(cpu, gpu, np.float32)


@pytest.mark.parametrize("clip", [dict(clip_norm=0.5), dict(clip_value=0.3),
                                  dict(clip_norm=2.0, clip_value=0.4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clipping_matches_cpu(clip, dtype):
    cpu, gpu = make_pair("SGD", dict(lr=0.1, momentum=0.9), dtype, sizes=(7, 300),
                         guard=lambda: fastml.Guard(**clip))
    rng = np.random.default_rng(4)
    for _ in range(2):
        a, b = step_both(cpu, gpu, grads_like(cpu, rng))
        assert_info_close(a, b, dtype)
        if "clip_norm" in clip:
            assert b.clip_coef < 1.0  # the clip is active
    assert_same_state(cpu, gpu, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_norm_all_finite_and_clip_grad_norm_on_the_gpu(dtype):
    rng = np.random.default_rng(5)
    gs = [rng.standard_normal(n).astype(dtype) for n in (7, 300)]
    dev = [cuda.to_device(g) for g in gs]
    norm = fastml.global_norm(gs)
    assert abs(fastml.global_norm(dev) - norm) <= 1e-13 * norm
    assert fastml.all_finite(dev) is True
    got = fastml.clip_grad_norm(dev, 1.5)
    want = fastml.clip_grad_norm(gs, 1.5)
    assert abs(got - want) <= 1e-13 * want
    for d, g in zip(dev, gs, strict=True):
        close(to_host(d), g, dtype, "clipped gradient")
    bad = [cuda.to_device(g) for g in gs]
    bad[1][17:18].copy_to_device(np.array([np.nan], dtype))
    assert fastml.all_finite(bad) is False
    assert np.isnan(fastml.global_norm(bad))  # NaN, not the Inf a NaN-dropping max would give


# ---------------------------------------------------------------------------------------------
# FlatParams, schedules, devices, checkpoints, StepInfo


def test_flat_params_on_the_gpu_update_in_one_launch(monkeypatch):
    shapes = {"w1": (5, 7), "b1": (7,), "w2": (7, 3), "b2": (3,)}
    rng = np.random.default_rng(6)
    init = rng.standard_normal(sum(int(np.prod(s)) for s in shapes.values())).astype(np.float32)
    cpu_p = fastml.FlatParams(shapes, init=init)
    gpu_p = fastml.FlatParams(shapes, init=init, device="cuda")
    cpu = fastml.Adam(cpu_p, lr=1e-2, guard=fastml.Guard(clip_norm=1.0))
    gpu = fastml.Adam(gpu_p, lr=1e-2, guard=fastml.Guard(clip_norm=1.0))
    calls = {"adam_step": 0, "grad_stats": 0}
    for name in calls:
        real = getattr(G, name)

        def counted(*args, _real=real, _name=name, **kw):
            calls[_name] += 1
            return _real(*args, **kw)

        monkeypatch.setattr(G, name, counted)
    for t in range(2):
        g = rng.standard_normal(cpu_p.size).astype(np.float32)
        cpu_p.grad.data[:] = g
        gpu_p.grad.data.copy_to_device(g)
        a, b = cpu.step(), gpu.step()
        assert calls == {"adam_step": t + 1, "grad_stats": t + 1}
        assert_info_close(a, b, np.float32)
    close(to_host(gpu_p.data), cpu_p.data, np.float32, "FlatParams data")
    close(to_host(gpu_p["w2"]), cpu_p["w2"], np.float32, "FlatParams view w2")


@pytest.mark.parametrize("schedule", [
    fastml.schedules.constant(0.1),
    fastml.schedules.step_decay(0.1, 2, gamma=0.5),
    fastml.schedules.exponential(0.1, 0.9),
    fastml.schedules.cosine(0.1, 4, min_lr=0.01),
    fastml.schedules.warmup_cosine(0.1, 2, 5, min_lr=0.01),
], ids=lambda s: repr(s).split("(")[0].split(".")[-1])
def test_builtin_schedules_on_the_device_match_cpu(schedule):
    cpu = fastml.SGD(np.zeros(1), lr=schedule, guard=fastml.Guard())
    gpu = fastml.SGD(cuda.to_device(np.zeros(1)), lr=schedule, guard=fastml.Guard())
    lrs = []
    for t in range(7):
        g = np.array([np.nan if t == 2 else 1.0])  # a skipped step does not advance the schedule
        a, b = cpu.step(g), gpu.step(cuda.to_device(g))
        assert (a.applied, a.step) == (b.applied, b.step)
        if a.applied:
            assert abs(a.lr - b.lr) <= 4 * np.finfo(np.float64).eps * a.lr
            assert abs(b.lr - schedule(b.step - 1)) <= 4 * np.finfo(np.float64).eps * a.lr
            lrs.append(b.lr)
    assert len(lrs) == 6
    close(to_host(gpu._params[0]), cpu._params[0], np.float64, "params")


def test_user_callable_lr_on_the_gpu():
    cpu = fastml.SGD(np.zeros(3), lr=lambda t: 0.1 / (t + 1))
    gpu = fastml.SGD(cuda.to_device(np.zeros(3)), lr=lambda t: 0.1 / (t + 1))
    for _ in range(3):
        a, b = cpu.step(np.ones(3)), gpu.step(cuda.to_device(np.ones(3)))
        assert a.lr == b.lr
    close(to_host(gpu._params[0]), cpu._params[0], np.float64, "params")


def test_mixed_devices_raise_before_anything_is_written():
    p = cuda.to_device(np.ones(7, np.float32))
    q = cuda.to_device(np.ones(3, np.float32))
    opt = fastml.Adam([p, q], lr=0.1, guard=fastml.Guard(clip_norm=1.0))
    ctl = to_host(opt._ctl)
    with pytest.raises(fastml.DeviceError, match="grads"):
        opt.step([cuda.to_device(np.ones(7, np.float32)), np.ones(3, np.float32)])
    with pytest.raises(fastml.DeviceError):
        fastml.SGD(cuda.to_device(np.ones(7, np.float32)), lr=0.1).step(np.ones(7, np.float32))
    with pytest.raises(fastml.DeviceError, match="params"):
        fastml.SGD([p, np.ones(3, np.float32)], lr=0.1)
    assert_bitwise_equal(p, np.ones(7, np.float32))
    assert_bitwise_equal(q, np.ones(3, np.float32))
    assert_bitwise_equal(opt._ctl, ctl, "ctl")
    assert_bitwise_equal(opt._red, np.zeros(2), "red")
    assert all((to_host(a) == 0).all() for arrays in opt.state.values() for a in arrays)


def test_state_dict_and_checkpoint_round_trip_on_the_gpu(tmp_path):
    def make(seed, device=True):
        rng = np.random.default_rng(seed)
        params = [rng.standard_normal(n).astype(np.float32) for n in (7, 37)]
        if device:
            params = [cuda.to_device(p) for p in params]
        guard = fastml.Guard(clip_norm=1.0, scaler=fastml.LossScaler(init_scale=4.0))
        return fastml.Adam(params, lr=1e-2, amsgrad=True, guard=guard)

    rng = np.random.default_rng(7)
    grads = [[rng.standard_normal(n).astype(np.float32) for n in (7, 37)] for _ in range(3)]
    src = make(0)
    for g in grads[:2]:
        src.step([cuda.to_device(a) for a in g])
    saved = host_state(src)
    fastml.save(tmp_path / "ckpt.npz", src)
    by_dict = make(1)
    for d, s in zip(by_dict._params, src._params, strict=True):
        d.copy_to_device(s)
    by_dict.load_state_dict(src.state_dict())
    by_file = make(2)
    fastml.load(tmp_path / "ckpt.npz", by_file)
    on_cpu = make(3, device=False)  # a GPU checkpoint loads into a CPU optimizer too
    fastml.load(tmp_path / "ckpt.npz", on_cpu)
    for opt, how in ((by_dict, "state_dict"), (by_file, "checkpoint"), (on_cpu, "on the CPU")):
        for name, arr in host_state(opt).items():
            assert_bitwise_equal(arr, saved[name], f"{how}: {name}")
        assert opt.guard.scaler.scale == src.guard.scaler.scale == 4.0
    infos = [opt.step([cuda.to_device(a) for a in grads[2]]) for opt in (src, by_dict, by_file)]
    assert {(i.step, i.scale, i.lr) for i in infos} == {(3, 4.0, 1e-2)}
    for opt, how in ((by_dict, "state_dict"), (by_file, "checkpoint")):
        for name, arr in host_state(src).items():
            assert_bitwise_equal(host_state(opt)[name], arr, f"{how}, one step on: {name}")
    on_cpu.step(grads[2])
    assert_same_state(on_cpu, src, np.float32, "on the CPU, one step on: ")


def test_gpu_step_does_not_copy_to_the_host(monkeypatch):
    p = cuda.to_device(np.zeros(37, np.float32))
    g = cuda.to_device(np.ones(37, np.float32))
    opt = fastml.Adam(p, lr=fastml.schedules.cosine(0.1, 10),
                      guard=fastml.Guard(clip_norm=1.0, clip_value=2.0,
                                         scaler=fastml.LossScaler(init_scale=2.0)))
    copies = []
    real = type(p).copy_to_host

    def counted(self, *args, **kw):
        copies.append(self.shape)
        return real(self, *args, **kw)

    monkeypatch.setattr(type(p), "copy_to_host", counted)
    infos = [opt.step(g) for _ in range(3)]
    assert copies == []  # nothing waited for the device
    assert [i.step for i in infos] == [1, 2, 3]  # read later, each its own step's values
    assert len(copies) == 3  # one copy per StepInfo, on first access
    assert infos[0].lr == 0.1 and infos[0].scale == 2.0
    assert len(copies) == 3  # later fields come from the host copy
    # With max_consecutive_skips the step reads the skip count, so it waits: one copy a step.
    opt.guard.max_consecutive_skips = 5
    opt.step(g)
    assert len(copies) == 4


def test_stale_gpu_stepinfo_raises_instead_of_lying(monkeypatch):
    monkeypatch.setattr(_snapshots, "SLOTS", 2)
    opt = fastml.SGD(cuda.to_device(np.zeros(3)), lr=0.5)
    g = cuda.to_device(np.ones(3))
    first, second = opt.step(g), opt.step(g)
    assert second.step == 2
    third = opt.step(g)  # reuses the first one's row
    with pytest.raises(RuntimeError, match="within 2 steps"):
        _ = first.applied
    assert (second.step, third.step) == (2, 3)
    # On the CPU a StepInfo is filled at once and never goes stale.
    cpu = fastml.SGD(np.zeros(3), lr=0.5)
    infos = [cpu.step(np.ones(3)) for _ in range(3)]
    assert [i.step for i in infos] == [1, 2, 3]
    assert infos[2] == third


# ---------------------------------------------------------------------------------------------
# Real-GPU compilation, checked without a GPU

TYPECHECK = textwrap.dedent("""
    import importlib, re, types
    from numba import types as T
    import numba.cuda.dispatcher as dispatcher
    from numba.cuda.compiler import compile_cuda
    # Device functions ask the current device for its compute capability; there is none here.
    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=(9, 0))
    mod = {m: importlib.import_module("fastml.kernels.cuda." + m)
           for m in ("adam", "sgd", "rmsprop", "adagrad", "grad_stats", "step_plan")}

    def lower(kernel, *args, elementwise=True):
        ir = compile_cuda(kernel.py_func, T.void, args, cc=(9, 0)).library.get_llvm_str()
        # NaN must survive clamping: libdevice fmax/fmin (numba-cuda's float max/min) drop it.
        assert not (elementwise and re.search(r"__nv_fm(ax|in)", ir)), kernel
        return ir

    f8, b, i8 = T.float64[::1], T.boolean, T.int64
    # float32 everywhere (where float64 could sneak into the element math); float64 once.
    for dt in (T.float32, T.float64):
        a = dt[::1]
        ir = lower(mod["adam"]._adam_step_kernel, a, a, a, a, a, f8, dt, dt, dt, dt, dt,
                   T.float64, b, b, b, dt)
        if dt == T.float64:
            break
        irs = [
            ir,
            lower(mod["sgd"]._sgd_step_kernel, a, a, a, f8, dt, b, dt, b, dt, b, b, dt),
            lower(mod["rmsprop"]._rmsprop_step_kernel, a, a, a, a, a, f8, dt, dt, dt, dt, b, dt,
                  b, b, b, dt),
            lower(mod["adagrad"]._adagrad_step_kernel, a, a, a, f8, dt, dt, b, b, dt),
        ]
        for ir in irs:  # no double division or square root per element
            assert "fdiv double" not in ir and '@"__nv_sqrt"' not in ir
            assert "llvm.sqrt.f64" not in ir
        for kernel in mod["grad_stats"]._KERNELS.values():
            lower(kernel, f8, a, f8, dt)
        lower(mod["grad_stats"]._scale_inplace_kernel, a, dt)
    lower(mod["grad_stats"]._grad_stats_finish_kernel, f8, f8, i8)
    # The plan's min/max only ever see finite values.
    lower(mod["step_plan"]._plan_step_snapshot_kernel, f8, f8, f8, f8, T.float64[:, ::1], i8,
          elementwise=False)
    print("ok")
""")


@pytest.mark.skipif(REAL_GPU, reason="the real-GPU run compiles every kernel for real")
def test_optimizer_kernels_type_check_for_a_real_gpu():
    """numba-cuda's typing and lowering to NVVM IR, which the simulator skips, needs no GPU."""
    pytest.importorskip("numba.cuda.compiler")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", TYPECHECK], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
