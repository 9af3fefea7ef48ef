"""Loads that trust nothing: a state dict or checkpoint file with edited values is refused by
the constructor's rules, damaged files raise one error type (``fastml.CheckpointError``), and
every refusal leaves the optimizer exactly as it was (no half load). Hypothesis edits every
field at random. Saves killed mid-write leave no temporaries that pile up."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastml
from fastml.kernels import step_plan as P

pytestmark = pytest.mark.usefixtures("one_thread")

REFUSALS = (ValueError, TypeError)  # fastml's error types derive from these two


def _adam(amsgrad=True):
    params = [np.linspace(-1, 1, 7), np.arange(6, dtype=np.float64).reshape(2, 3)]
    opt = fastml.Adam(params, lr=0.01, amsgrad=amsgrad,
                      guard=fastml.Guard(clip_norm=1.0, scaler=fastml.LossScaler(2.0**8)))
    for k in range(3):
        opt.step([np.full(p.shape, 256.0 * (k + 1)) for p in params])
    return opt, params


def _everything(opt, params):
    sd = opt.state_dict()
    return ([p.copy() for p in params], sd["ctl"].copy(), sd["hyper"],
            {k: [a.copy() for a in v] for k, v in sd["state"].items()},
            opt.guard.scaler.scale, opt.lr)


def _assert_unchanged(before, after):
    (pa, ca, ha, sa, sca, la), (pb, cb, hb, sb, scb, lb) = before, after
    for x, y in zip(pa, pb, strict=True):
        assert x.tobytes() == y.tobytes()
    assert ca.tobytes() == cb.tobytes()
    assert ha == hb and sca == scb and la == lb
    for name in sa:
        for x, y in zip(sa[name], sb[name], strict=True):
            assert x.tobytes() == y.tobytes()


# Values the constructor or a step would refuse -----------------------------------------------

HYPER_EDITS = [
    ("lr", -5.0), ("lr", math.nan), ("lr", math.inf), ("lr", "fast"), ("lr", [0.1]),
    ("beta1", 7), ("beta1", "abc"), ("beta1", None), ("beta2", 1.0), ("beta2", -0.1),
    ("eps", -1), ("eps", "abc"), ("eps", math.nan), ("weight_decay", -0.5),
    ("amsgrad", "abc"), ("maximize", 2), ("maximize", "yes"), ("decoupled_weight_decay", [1]),
]


def _assert_refused_whole(edit, match):
    """A state dict changed by ``edit(sd)`` is refused with ``CheckpointError`` and the
    optimizer is left bitwise as it was."""
    opt, params = _adam()
    sd = opt.state_dict()
    edit(sd)
    before = _everything(opt, params)
    with pytest.raises(fastml.CheckpointError, match=match):
        opt.load_state_dict(sd)
    _assert_unchanged(before, _everything(opt, params))


@pytest.mark.parametrize("key, value", HYPER_EDITS)
def test_hyper_parameters_the_constructor_refuses_are_refused_on_load(key, value):
    _assert_refused_whole(lambda sd: sd["hyper"].update({key: value}), "constructor")


CTL_EDITS = [
    (P.STEP, math.nan), (P.STEP, -3.0), (P.STEP, 1.5), (P.STEP, math.inf),
    (P.SKIPPED, -1.0), (P.CONSEC, 0.25), (P.CONSEC, 99.0), (P.GROWTH, math.nan),
    (P.APPLIED, 0.5), (P.SCALE, math.nan), (P.SCALE, 0.0), (P.SCALE, -4.0), (P.SCALE, math.inf),
]


@pytest.mark.parametrize("field, value", CTL_EDITS)
def test_control_state_a_step_cannot_use_is_refused(field, value):
    _assert_refused_whole(lambda sd: sd["ctl"].__setitem__(field, value), "ctl")


@pytest.mark.parametrize("name, value", [
    ("exp_avg", np.nan), ("exp_avg", -np.inf), ("exp_avg_sq", -1e-3), ("exp_avg_sq", np.nan),
    ("max_exp_avg_sq", -2.0),
])
def test_state_buffers_a_step_cannot_use_are_refused(name, value):
    _assert_refused_whole(lambda sd: sd["state"][name][1].__setitem__(1, value), name)


def test_a_file_with_an_edited_learning_rate_changes_nothing(tmp_path):
    """A value refused on load leaves parameters and state as they were."""
    src, _ = _adam()
    path = tmp_path / "ck.npz"
    fastml.save(path, src)
    _rewrite(path, lambda meta: meta["hyper"].update(lr="fast"))
    opt, params = _adam()
    opt.step([np.ones(p.shape) for p in params])
    before = _everything(opt, params)
    with pytest.raises(fastml.CheckpointError):
        fastml.load(path, opt)
    _assert_unchanged(before, _everything(opt, params))


# Damaged files ---------------------------------------------------------------------------------

def _entries(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _rewrite(path, edit_meta):
    entries = _entries(path)
    meta = json.loads(str(entries["meta"]))
    edit_meta(meta)
    entries["meta"] = np.array(json.dumps(meta))
    np.savez(path, **entries)


def _rezip(path, member, transform):
    """Rewrite one zip member's bytes (with a valid CRC, so the damage reaches the reader)."""
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i.filename) for i in z.infolist()}
    members[member] = transform(members[member])
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(os.urandom(4096)),
    "not json": lambda p: _rezip(p, "meta.npy", lambda b: b.replace(b"{", b"[", 1)),
    "npy header": lambda p: _rezip(p, "ctl.npy", lambda b: b.replace(b"'descr'", b"'descr", 1)),
    "npy version": lambda p: _rezip(p, "ctl.npy", lambda b: b[:6] + b"\x09" + b[7:]),
    "short array": lambda p: _rezip(p, "param/0.npy", lambda b: b[:-16]),
    "meta a list": lambda p: _rezip(p, "meta.npy", lambda b: b),  # replaced below
    "missing param": lambda p: _drop(p, "param/1.npy"),
    "missing ctl": lambda p: _drop(p, "ctl.npy"),
    "n_params text": lambda p: _rewrite(p, lambda m: m.update(n_params="2")),
    "state counts": lambda p: _rewrite(p, lambda m: m.update(state=[1, 2])),
    "no kind": lambda p: _rewrite(p, lambda m: m.pop("kind")),
    "format": lambda p: _rewrite(p, lambda m: m.update(format="other")),
}
DAMAGE["meta a list"] = lambda p: _replace_meta(p, json.dumps([1, 2]))


def _drop(path, member):
    _rezip(path, member, lambda b: b)
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i.filename) for i in z.infolist() if i.filename != member}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _replace_meta(path, text):
    entries = _entries(path)
    entries["meta"] = np.array(text)
    np.savez(path, **entries)


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_file_raises_checkpoint_error_and_changes_nothing(tmp_path, damage):
    src, _ = _adam()
    path = tmp_path / "ck.npz"
    fastml.save(path, src)
    DAMAGE[damage](path)
    opt, params = _adam()
    before = _everything(opt, params)
    with pytest.raises(fastml.CheckpointError, match="ck.npz"):
        fastml.load(path, opt)
    _assert_unchanged(before, _everything(opt, params))


def test_a_missing_file_is_not_called_damaged(tmp_path):
    opt, _ = _adam()
    with pytest.raises(FileNotFoundError):
        fastml.load(tmp_path / "nothing.npz", opt)


# Random edits (hypothesis) -------------------------------------------------------------------

ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
    st.text(max_size=5), st.lists(st.floats(allow_nan=False), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _odd_array(draw, like):
    kind = draw(st.sampled_from(["values", "shape", "dtype", "object"]))
    if not (isinstance(like, np.ndarray) and like.dtype.kind == "f"):
        kind = "object"  # an earlier edit made it something else
    if kind == "values":
        a = np.array(like, copy=True).reshape(-1)
        if a.size:
            a[draw(st.integers(0, a.size - 1))] = draw(st.floats(allow_nan=True,
                                                                 allow_infinity=True))
        return a.reshape(np.shape(like))
    if kind == "shape":
        return np.zeros(draw(st.integers(0, 20)))
    if kind == "dtype":
        with np.errstate(over="ignore", invalid="ignore"):
            return like.astype(draw(st.sampled_from([np.float32, np.int64, np.bool_])))
    return draw(ODD_VALUES)


@st.composite
def edited_state(draw, sd):
    sd = {"kind": sd["kind"], "hyper": dict(sd["hyper"]), "ctl": sd["ctl"].copy(),
          "scaler": sd["scaler"], "state": {k: list(v) for k, v in sd["state"].items()}}
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["kind", "hyper", "hyper key", "ctl", "ctl array",
                                      "scaler", "state", "state list", "drop"]))
        hyper, ctl, state = sd.get("hyper"), sd.get("ctl"), sd.get("state")
        lists = sorted(k for k, v in state.items() if isinstance(v, list) and v) if isinstance(
            state, dict) else []
        if where == "kind":
            sd["kind"] = draw(st.one_of(st.sampled_from(["SGD", "AdamW", "Adam"]), ODD_VALUES))
        elif where == "hyper" and isinstance(hyper, dict) and hyper:
            hyper[draw(st.sampled_from(sorted(map(str, hyper))))] = draw(ODD_VALUES)
        elif where == "hyper key" and isinstance(hyper, dict):
            hyper[draw(st.text(max_size=4))] = draw(ODD_VALUES)
        elif where == "ctl" and isinstance(ctl, np.ndarray) and ctl.dtype == np.float64 \
                and ctl.size:
            ctl.reshape(-1)[draw(st.integers(0, ctl.size - 1))] = draw(
                st.floats(allow_nan=True, allow_infinity=True))
        elif where == "ctl array" and ctl is not None:
            sd["ctl"] = _odd_array(draw, ctl)
        elif where == "scaler":
            sd["scaler"] = draw(ODD_VALUES)
        elif where == "state" and lists:
            name = draw(st.sampled_from(lists))
            i = draw(st.integers(0, len(state[name]) - 1))
            state[name][i] = _odd_array(draw, state[name][i])
        elif where == "state list" and lists:
            name = draw(st.sampled_from(lists))
            state[name] = draw(st.one_of(ODD_VALUES, st.just(state[name][:1])))
        elif where == "drop" and sd:
            sd.pop(draw(st.sampled_from(sorted(sd))))
    return sd


_SOURCE = _adam()[0].state_dict()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edited_state(_SOURCE))
def test_random_edits_of_a_state_dict_load_whole_or_not_at_all(sd):
    opt, params = _adam()
    before = _everything(opt, params)
    try:
        opt.load_state_dict(sd)
    except REFUSALS as exc:
        assert type(exc).__module__ in ("fastml.errors", "builtins"), type(exc)
        assert " must " in str(exc), str(exc)
        _assert_unchanged(before, _everything(opt, params))
        return
    # Accepted: the optimizer now holds exactly the loaded state, and it steps.
    got = opt.state_dict()
    for name, arrays in got["state"].items():
        for a, b in zip(arrays, sd["state"][name], strict=True):
            assert a.tobytes() == np.asarray(b).reshape(a.shape).tobytes()
    for field in (P.STEP, P.SKIPPED, P.CONSEC):
        assert got["ctl"][field] == sd["ctl"][field]
    opt.step([np.ones(p.shape) for p in params])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_edits_of_a_checkpoint_file_load_whole_or_not_at_all(tmp_path, data):
    src, _ = _adam()
    path = tmp_path / "ck.npz"
    fastml.save(path, src)
    how = data.draw(st.sampled_from(["meta", "member bytes", "file bytes"]))
    if how == "meta":
        key = data.draw(st.sampled_from(["format", "kind", "hyper", "n_params", "state",
                                         "scaler", "layout"]))
        value = data.draw(ODD_VALUES)
        _rewrite(path, lambda meta: meta.update({key: value}))
    elif how == "member bytes":
        member = data.draw(st.sampled_from(sorted(zipfile.ZipFile(path).namelist())))
        i = data.draw(st.integers(0, 200))
        byte = data.draw(st.integers(0, 255))
        _rezip(path, member, lambda b: b[:i] + bytes([byte]) + b[i + 1:] if i < len(b) else b)
    else:
        raw = bytearray(path.read_bytes())
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        path.write_bytes(bytes(raw))
    opt, params = _adam()
    before = _everything(opt, params)
    try:
        fastml.load(path, opt)
    except REFUSALS as exc:
        assert type(exc).__module__ in ("fastml.errors", "builtins"), type(exc)
        assert " must " in str(exc), str(exc)
        _assert_unchanged(before, _everything(opt, params))
        return
    opt.step([np.ones(p.shape) for p in params])


# Temporaries of interrupted saves ---------------------------------------------------------------

def _temporaries(folder):
    return sorted(n for n in os.listdir(folder) if n.startswith(".fastml-")
                  and n.endswith(".npz.tmp"))


HOLDER = textwrap.dedent("""
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)  # what a save holds on its folder while it writes
    print("locked", flush=True)
    time.sleep(120)
""")


@pytest.mark.parametrize("folder", ["plain", "run[1]*?", "n" * 200])
def test_a_save_removes_the_temporaries_of_its_target_once_no_save_is_writing(tmp_path, folder):
    from fastml.checkpoint import _temporary_prefix

    here = tmp_path / folder
    here.mkdir()
    name = "c" * 230 + ".npz"  # a long name: the temporaries' names are fixed-length
    ours = [here / f"{_temporary_prefix(name)}{k}.npz.tmp" for k in ("full", "empty")]
    other = here / f"{_temporary_prefix('other.npz')}dead.npz.tmp"
    ours[0].write_bytes(b"partial")
    ours[1].write_bytes(b"")
    other.write_bytes(b"partial")
    twin = tmp_path / "run1"  # what an unescaped glob of "run[1]" would have matched
    twin.mkdir()
    (twin / ours[0].name).write_bytes(b"partial")
    everything = sorted(f.name for f in [*ours, other])
    opt, _ = _adam()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(here)], stdout=subprocess.PIPE,
                              text=True)
    try:  # another process is writing in the folder: its temporary may be one of these
        assert holder.stdout.readline().strip() == "locked"
        fastml.save(here / name, opt)
        assert _temporaries(here) == everything
    finally:
        holder.kill()
        holder.wait(timeout=60)
    fastml.save(here / name, opt)  # no writer left: our target's temporaries go
    assert _temporaries(here) == [other.name]
    assert _temporaries(twin) == [ours[0].name]
    fastml.load(here / name, _adam()[0])


SAVER = textwrap.dedent("""
    import sys, numpy as np, fastml
    opt = fastml.SGD(np.ones(2_000_000), lr=0.1, momentum=0.9)
    print("ready", flush=True)
    while True:
        fastml.save(sys.argv[1], opt)
""")


def test_saves_killed_mid_write_leave_no_temporaries_behind_the_next_save(tmp_path):
    """SIGKILL a process that saves in a loop, three times: each kill can leave one partial
    file; the next save (of any process) removes them, and the checkpoint still loads."""
    path = tmp_path / "ck.npz"
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            deadline = time.monotonic() + 60
            while not _temporaries(tmp_path) and time.monotonic() < deadline:
                time.sleep(0.002)  # kill while a temporary is being written
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait(timeout=60)
    assert len(_temporaries(tmp_path)) >= 1  # the kills did interrupt writes
    opt = fastml.SGD(np.ones(2_000_000), lr=0.1, momentum=0.9)
    fastml.save(path, opt)
    assert _temporaries(tmp_path) == []
    fastml.load(path, opt)


def test_load_takes_str_and_path_objects(tmp_path):
    """``load`` takes ``os.PathLike`` and ``str`` alike."""
    src, _ = _adam()
    fastml.save(str(tmp_path / "a.npz"), src)
    opt, params = _adam()
    opt.step([np.ones(p.shape) for p in params])
    fastml.load(tmp_path / "a.npz", opt)
    assert opt.state_dict()["ctl"].tobytes() == src.state_dict()["ctl"].tobytes()
