"""Optimizer state and checkpoints: state_dict / load_state_dict round trips, fastml.save /
fastml.load resuming bitwise (with a schedule, a loss scaler and a skipped step in the run), a
file that loads without pickle, atomic writes, and mismatched checkpoints refused with a clear
error before anything is written."""

import json
import os

import numpy as np
import pytest

import fastml
from fastml.kernels import step_plan as P

from .helpers import PARAM_SHAPES, assert_bitwise_equal, make_trajectory

# Trajectories of tiny arrays: one numba thread (see the one_thread fixture in conftest.py).
pytestmark = pytest.mark.usefixtures("one_thread")

KINDS = {
    "SGD": {"lr": 0.05, "momentum": 0.9, "nesterov": True},
    "Adam": {"lr": 0.01, "amsgrad": True, "weight_decay": 0.05},
    "AdamW": {"lr": 0.01},
    "RMSprop": {"lr": 0.01, "centered": True, "momentum": 0.5},
    "Adagrad": {"lr": 0.1, "lr_decay": 0.05, "initial_accumulator_value": 0.1},
}
STEPS, CUT, BAD_STEP = 16, 9, 6


def make(kind, params, scaler_scale=2.0**8, lr=None, **over):
    hyper = dict(KINDS[kind], **over)
    if lr is not None:
        hyper["lr"] = lr
    scaler = fastml.LossScaler(init_scale=scaler_scale, growth_interval=3)
    guard = fastml.Guard(clip_norm=3.0, scaler=scaler)
    return getattr(fastml, kind)(params, guard=guard, **hyper), scaler


def problem(dtype=np.float64, seed=40):
    params, grads = make_trajectory(PARAM_SHAPES, STEPS, dtype, seed=seed)
    grads[BAD_STEP] = [g.copy() for g in grads[BAD_STEP]]
    grads[BAD_STEP][1][2, 3] = np.nan
    return params, grads


def run(opt, scaler, grads):
    return [opt.step([g * g.dtype.type(scaler.scale) for g in gs]) for gs in grads]


def everything(opt, params):
    """params, ctl and every state buffer, as host copies."""
    sd = opt.state_dict()
    return [p.copy() for p in params], sd["ctl"], sd["state"]


def assert_same(a, b):
    (pa, ca, sa), (pb, cb, sb) = a, b
    for i, (x, y) in enumerate(zip(pa, pb, strict=True)):
        assert_bitwise_equal(x, y, f"params[{i}]")
    assert_bitwise_equal(ca, cb, "ctl")
    assert sorted(sa) == sorted(sb)
    for name in sa:
        for i, (x, y) in enumerate(zip(sa[name], sb[name], strict=True)):
            assert_bitwise_equal(x, y, f"{name}[{i}]")


# state_dict ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_state_dict_round_trip(kind):
    params, grads = problem()
    a_params = [p.copy() for p in params]
    a, a_scaler = make(kind, a_params)
    run(a, a_scaler, grads[:CUT])
    sd = a.state_dict()
    assert sd["kind"] == kind and sd["ctl"].dtype == np.float64
    assert sd["hyper"]["lr"] == KINDS[kind]["lr"]
    b_params = [p.copy() for p in a_params]
    b, b_scaler = make(kind, b_params, scaler_scale=1.0, lr=0.5)
    b.load_state_dict(sd)
    assert b.lr == a.lr and b_scaler.scale == a_scaler.scale
    assert_same(everything(b, b_params), everything(a, a_params))
    # state_dict hands out copies
    for arrays in sd["state"].values():
        arrays[0][...] = 123.0
    sd["ctl"][...] = 0.0
    assert_same(everything(b, b_params), everything(a, a_params))
    infos_a, infos_b = run(a, a_scaler, grads[CUT:]), run(b, b_scaler, grads[CUT:])
    assert [repr(i) for i in infos_a] == [repr(i) for i in infos_b]
    assert_same(everything(b, b_params), everything(a, a_params))


def test_state_dict_keeps_the_schedule_of_the_loading_optimizer():
    params, grads = problem()
    sched = fastml.schedules.cosine(0.01, 20)
    a, _ = make("Adam", [p.copy() for p in params], lr=sched)
    run(a, a.guard.scaler, grads[:4])
    sd = a.state_dict()
    assert sd["hyper"]["lr"] is None
    b, _ = make("Adam", [p.copy() for p in params], lr=sched)
    b.load_state_dict(sd)
    assert b.lr is sched
    c, _ = make("Adam", [p.copy() for p in params], lr=0.5)
    c.load_state_dict(sd)
    assert c.lr == 0.5


def test_a_scaled_checkpoint_does_not_scale_an_unscaled_optimizer():
    """The loss scale belongs to the scaler: an optimizer without one, resuming from a run
    that had one, must not divide its gradients by the old scale."""
    params, grads = problem()
    a, a_scaler = make("Adam", [p.copy() for p in params], scaler_scale=2.0**12)
    run(a, a_scaler, grads[:3])
    plain = [p.copy() for p in params]
    b = fastml.Adam(plain, **KINDS["Adam"])
    b.load_state_dict(a.state_dict())
    twin = [p.copy() for p in params]
    c = fastml.Adam(twin, **KINDS["Adam"])
    sd = a.state_dict()
    sd["ctl"][P.SCALE] = 1.0
    sd["ctl"][P.GROWTH] = 0.0
    c.load_state_dict(sd)
    assert b.step(grads[3]).scale == 1.0
    c.step(grads[3])
    for x, y in zip(plain, twin, strict=True):
        assert_bitwise_equal(x, y)


def test_an_unscaled_checkpoint_starts_a_scaler_at_its_init_scale(tmp_path):
    """A run without a scaler recorded scale 1; resuming with a scaler starts from init_scale."""
    params, grads = problem()
    plain = fastml.Adam([p.copy() for p in params], **KINDS["Adam"])
    plain.step(grads[0])
    a, a_scaler = make("Adam", [p.copy() for p in params], scaler_scale=2.0**10)
    a.load_state_dict(plain.state_dict())
    assert a_scaler.scale == 2.0**10
    fastml.save(tmp_path / "plain.npz", plain)
    b, b_scaler = make("Adam", [p.copy() for p in params], scaler_scale=2.0**9)
    fastml.load(tmp_path / "plain.npz", b)
    assert b_scaler.scale == 2.0**9
    assert b.step([g * g.dtype.type(b_scaler.scale) for g in grads[1]]).scale == 2.0**9


# save / load -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", KINDS)
def test_resume_from_a_checkpoint_is_bitwise_identical(kind, dtype, tmp_path):
    """Stop after CUT steps (a skipped step and loss-scale changes behind it), save, build a
    fresh optimizer on fresh parameters with another initial scale, load, go on: every later
    step, parameter and state bit equals the uninterrupted run's."""
    params, grads = problem(dtype)
    sched = fastml.schedules.warmup_cosine(KINDS[kind]["lr"], 3, STEPS)
    full_params = [p.copy() for p in params]
    full, full_scaler = make(kind, full_params, lr=sched)
    full_infos = run(full, full_scaler, grads)
    assert not full_infos[BAD_STEP].applied
    assert len({i.scale for i in full_infos}) > 2

    first_params = [p.copy() for p in params]
    first, first_scaler = make(kind, first_params, lr=sched)
    run(first, first_scaler, grads[:CUT])
    path = tmp_path / "run.npz"
    fastml.save(path, first)
    resumed_params = [np.zeros_like(p) for p in params]
    resumed, resumed_scaler = make(kind, resumed_params, scaler_scale=1.0, lr=sched)
    fastml.load(path, resumed)
    assert resumed_scaler.scale == first_scaler.scale
    assert_same(everything(resumed, resumed_params), everything(first, first_params))
    resumed_infos = run(resumed, resumed_scaler, grads[CUT:])
    assert [repr(i) for i in resumed_infos] == [repr(i) for i in full_infos[CUT:]]
    assert_same(everything(resumed, resumed_params), everything(full, full_params))


def test_flat_params_resume(tmp_path):
    params, grads = problem(np.float32)
    grads = [np.concatenate([g.ravel() for g in gs]) for gs in grads]

    def run(opt, scaler, grads):  # one array per step for a FlatParams
        return [opt.step(g * np.float32(scaler.scale)) for g in grads]

    names = [f"p{i}" for i in range(len(PARAM_SHAPES))]
    layout = dict(zip(names, PARAM_SHAPES, strict=True))
    init = np.concatenate([p.ravel() for p in params])
    flat = fastml.FlatParams(layout, dtype=np.float32, init=init)
    opt, scaler = make("Adam", flat)
    run(opt, scaler, grads[:CUT])
    fastml.save(tmp_path / "flat.npz", opt)
    again = fastml.FlatParams(layout, dtype=np.float32)
    opt2, scaler2 = make("Adam", again)
    fastml.load(tmp_path / "flat.npz", opt2)
    assert_same(everything(opt2, [again.data]), everything(opt, [flat.data]))
    run(opt, scaler, grads[CUT:])
    run(opt2, scaler2, grads[CUT:])
    assert_same(everything(opt2, [again.data]), everything(opt, [flat.data]))


def test_file_loads_without_pickle(tmp_path):
    params, grads = problem()
    opt, scaler = make("Adam", [p.copy() for p in params])
    run(opt, scaler, grads[:3])
    path = tmp_path / "ckpt.npz"
    fastml.save(path, opt)
    with np.load(path, allow_pickle=False) as f:
        entries = {name: f[name] for name in f.files}
    assert all(a.dtype.kind != "O" for a in entries.values())
    meta = json.loads(str(entries["meta"]))
    assert meta["kind"] == "Adam" and meta["n_params"] == len(PARAM_SHAPES)
    for i, p in enumerate(opt._params):
        assert_bitwise_equal(entries[f"param/{i}"].reshape(-1), p)
    assert_bitwise_equal(entries["ctl"], opt.state_dict()["ctl"])
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]  # no temporary file left behind


# Atomic writes -----------------------------------------------------------------------------------

def saved(tmp_path):
    params, grads = problem()
    ps = [p.copy() for p in params]
    opt, scaler = make("Adam", ps)
    run(opt, scaler, grads[:3])
    path = tmp_path / "ckpt.npz"
    fastml.save(path, opt)
    run(opt, scaler, grads[3:5])  # the live state moves on past the file
    return opt, path, path.read_bytes()


def test_failed_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    opt, path, old = saved(tmp_path)

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        fastml.save(path, opt)
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    opt, path, old = saved(tmp_path)
    real_savez = np.savez

    def interrupted(f, **arrays):
        real_savez(f, **arrays)
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fastml.save(tmp_path / "new.npz", opt)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"]
    assert path.read_bytes() == old


def test_saving_into_a_missing_folder_raises(tmp_path):
    opt, path, old = saved(tmp_path)
    with pytest.raises(FileNotFoundError):
        fastml.save(tmp_path / "missing" / "ckpt.npz", opt)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"] and path.read_bytes() == old


def test_saving_onto_a_folder_raises_and_cleans_up(tmp_path):
    opt, path, old = saved(tmp_path)
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(OSError):
        fastml.save(tmp_path / "dir.npz", opt)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz", "dir.npz"]
    assert not os.listdir(tmp_path / "dir.npz") and path.read_bytes() == old


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_saving_into_a_read_only_folder_raises(tmp_path):
    opt, path, old = saved(tmp_path)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            fastml.save(path, opt)
    finally:
        tmp_path.chmod(0o755)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.npz"] and path.read_bytes() == old


# Mismatched checkpoints are refused and change nothing -----------------------------------------

def _target(kind="Adam", shapes=PARAM_SHAPES, dtype=np.float64, **over):
    params, grads = make_trajectory(shapes, 3, dtype, seed=41)
    opt, scaler = make(kind, params, **over)
    run(opt, scaler, grads)
    return opt, params


MISMATCHES = {
    # name: (optimizer that wrote the file, error, message)
    "kind": (lambda: _target("SGD"), ValueError,
             "state must be of a Adam optimizer; got one of SGD"),
    "AdamW into Adam": (lambda: _target("AdamW"), ValueError, "got one of AdamW"),
    "amsgrad off": (lambda: _target(amsgrad=False), ValueError,
                    "state must come from an optimizer with amsgrad=True; got amsgrad=False"),
    "dtype": (lambda: _target(dtype=np.float32), fastml.DTypeError,
              "checkpoint param 0 must be float64; got float32"),
    "fewer params": (lambda: _target(shapes=PARAM_SHAPES[:3]), fastml.ShapeError,
                     "checkpoint must hold 4 parameter arrays; got 3"),
    "more params": (lambda: _target(shapes=PARAM_SHAPES + [(2,)]), fastml.ShapeError,
                    "checkpoint must hold 4 parameter arrays; got 5"),
    "other size": (lambda: _target(shapes=[(1,), (7, 6), (13,), (3, 1, 2)]), fastml.ShapeError,
                   r"checkpoint param 1 must have shape \(7, 5\)"),
    "transposed": (lambda: _target(shapes=[(1,), (5, 7), (13,), (3, 1, 2)]), fastml.ShapeError,
                   r"checkpoint param 1 must have shape \(7, 5\); got \(5, 7\)"),
}


@pytest.mark.parametrize("mismatch", MISMATCHES)
def test_mismatched_checkpoint_is_refused(mismatch, tmp_path):
    writer, error, text = MISMATCHES[mismatch]
    source, _ = writer()
    path = tmp_path / "other.npz"
    fastml.save(path, source)
    opt, params = _target()
    before = everything(opt, params)
    with pytest.raises(error, match=text):
        fastml.load(path, opt)
    assert_same(everything(opt, params), before)


@pytest.mark.parametrize("kind,over,text", [
    ("SGD", {"momentum": 0.0, "nesterov": False}, "nesterov=True; got nesterov=False"),
    ("RMSprop", {"centered": False}, "centered=True; got centered=False"),
    ("RMSprop", {"momentum": 0.0}, "state buffers must be"),
])
def test_other_state_buffers_are_refused(kind, over, text, tmp_path):
    source, _ = _target(kind, **over)
    fastml.save(tmp_path / "other.npz", source)
    opt, params = _target(kind)
    before = everything(opt, params)
    with pytest.raises(ValueError, match=text):
        fastml.load(tmp_path / "other.npz", opt)
    with pytest.raises(ValueError, match=text):
        opt.load_state_dict(source.state_dict())
    assert_same(everything(opt, params), before)


def test_flat_params_of_another_layout_are_refused(tmp_path):
    a = fastml.FlatParams({"w": (7, 5), "b": (5,)}, dtype=np.float64, init=np.arange(40.0))
    b = fastml.FlatParams({"b": (5,), "w": (7, 5)}, dtype=np.float64)
    fastml.save(tmp_path / "a.npz", fastml.SGD(a, lr=0.1))
    opt = fastml.SGD(b, lr=0.1)
    with pytest.raises(fastml.ShapeError, match="layout"):
        fastml.load(tmp_path / "a.npz", opt)
    assert not b.data.any()


def test_not_a_checkpoint_is_refused(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    opt, params = _target()
    before = everything(opt, params)
    with pytest.raises(ValueError, match="must be a fastml checkpoint"):
        fastml.load(tmp_path / "other.npz", opt)
    assert_same(everything(opt, params), before)


def test_bad_state_dicts_are_refused():
    opt, params = _target()
    good = opt.state_dict()
    before = everything(opt, params)

    def edited(**changes):
        sd = {**good, "state": {k: list(v) for k, v in good["state"].items()}}
        for key, value in changes.items():
            if key in sd["state"]:
                sd["state"][key] = value
            else:
                sd[key] = value
        return sd

    cases = [
        ({"kind": "SGD"}, ValueError, "state must be of a Adam optimizer"),
        ({"ctl": good["ctl"][:-1]}, fastml.ShapeError, "state ctl must be float64 of shape"),
        ({"ctl": good["ctl"].astype(np.float32)}, fastml.ShapeError, "state ctl must be float64"),
        ({"exp_avg": good["state"]["exp_avg"][:3]}, fastml.ShapeError,
         "state 'exp_avg' must hold 4 arrays; got 3"),
        ({"exp_avg_sq": [a.astype(np.float32) for a in good["state"]["exp_avg_sq"]]},
         fastml.DTypeError, r"state exp_avg_sq\[0\] must be float64; got float32"),
        ({"max_exp_avg_sq": [np.zeros(a.size + 1) for a in good["state"]["max_exp_avg_sq"]]},
         fastml.ShapeError, r"state max_exp_avg_sq\[0\] must have 1 elements"),
        ({"hyper": {"lr": 0.1}}, ValueError, "state hyper-parameters must be"),
    ]
    for changes, error, text in cases:
        with pytest.raises(error, match=text):
            opt.load_state_dict(edited(**changes))
        assert_same(everything(opt, params), before)
    for bad in [None, {}, {"kind": "Adam"}, [1, 2]]:
        with pytest.raises(ValueError, match="state must be a dict from state_dict"):
            opt.load_state_dict(bad)
    assert_same(everything(opt, params), before)
