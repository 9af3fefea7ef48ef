"""No input reachable from Python makes a kernel read or write out of bounds.

Every public CPU kernel (``fastml.kernels.cpu``) and CUDA launcher (``fastml.kernels.cuda``)
checks the lengths it indexes by before touching memory: a state buffer the rule uses but that
is empty or short, a short gradient, ``ctl``, ``red`` or ``status``, a loss or gradient output
of the wrong shape, a class-weight vector shorter than C, a broadcast weight shorter than its
modulus. Each such call raises ``ValueError`` and leaves every array as it was. Labels index
memory only after a check: the CPU cross-entropy rejects the call, the CUDA one makes the row
NaN; confusion counts and top-k report them in ``status``.

The ``*_tensors`` kernels take raw addresses, which are trusted (``_tensors``); their chunk
table and flat state buffers are checked.

Each table below starts from a valid call (``_VALID``); a bad case changes one argument.
"""

import math
import re

import numpy as np
import pytest

from fastml.kernels import cpu
from fastml.kernels.cpu import _tensors as T
from fastml.kernels.step_plan import (
    APPLIED,
    C0,
    C1,
    CLIP_COEF,
    CTL_SIZE,
    LR,
    RED_SIZE,
    SCALE,
    UNSCALE,
)

from .helpers import both_ce_kernels, to_device, to_host

N = 37  # elements: not a multiple of a CUDA tile, so the partial tail runs too
C = 11  # classes
K = 4  # confusion-table size


def _vec(n, seed=0, dtype=np.float32, positive=False):
    x = np.random.default_rng(seed).standard_normal(n).astype(dtype)
    return np.abs(x) if positive else x


def _ctl():
    """A step plan's output for an applied step."""
    ctl = np.zeros(CTL_SIZE)
    ctl[APPLIED] = ctl[SCALE] = ctl[UNSCALE] = ctl[CLIP_COEF] = 1.0
    ctl[LR] = 0.01
    ctl[C0] = 0.013
    ctl[C1] = 0.21
    return ctl


def _labels(n, k, seed=3):
    return np.random.default_rng(seed).integers(0, k, n)


def _sgd():
    return dict(p=_vec(N, 1), g=_vec(N, 2), buf=_vec(N, 3), ctl=_ctl(), momentum=0.9,
                dampening=0.0, nesterov=False, weight_decay=0.0, maximize=False,
                clip_value=math.inf)


def _rmsprop():
    return dict(p=_vec(N, 1), g=_vec(N, 2), square_avg=_vec(N, 3, positive=True),
                grad_avg=_vec(N, 4) * 0.01, buf=_vec(N, 5), ctl=_ctl(), alpha=0.99, eps=1e-8,
                weight_decay=0.0, momentum=0.9, centered=True, maximize=False,
                clip_value=math.inf)


def _adam():
    return dict(p=_vec(N, 1), g=_vec(N, 2), m=_vec(N, 3), v=_vec(N, 4, positive=True),
                vmax=_vec(N, 5, positive=True), ctl=_ctl(), beta1=0.9, beta2=0.999, eps=1e-8,
                weight_decay=0.0, decoupled=False, amsgrad=True, maximize=False,
                clip_value=math.inf)


def _adagrad():
    return dict(p=_vec(N, 1), g=_vec(N, 2), state_sum=_vec(N, 3, positive=True), ctl=_ctl(),
                eps=1e-10, weight_decay=0.0, maximize=False, clip_value=math.inf)


def _grad_stats():
    return dict(red=np.zeros(RED_SIZE), g=_vec(N, 2), ctl=_ctl(), clip_value=math.inf)


def _scale_inplace():
    return dict(g=_vec(N, 2), factor=0.5)


def _cross_entropy():
    return dict(grad=np.zeros((N, C), np.float32), loss=np.zeros(1, np.float32),
                pred=np.zeros(N, np.int64), logits=_vec(N * C, 1).reshape(N, C),
                labels=_labels(N, C), weight=_vec(C, 2, positive=True), ignore_index=-100,
                label_smoothing=0.1, grad_scale=1.0, reduction=cpu.MEAN)


def _bce():
    return dict(grad=np.zeros(N, np.float32), loss=np.zeros(1, np.float32), logits=_vec(N, 1),
                target=_vec(N, 2, positive=True).clip(0, 1), weight=_vec(N, 3, positive=True),
                w_div=1, w_mod=N, pos_weight=np.ones(1, np.float32), pw_div=1, pw_mod=1,
                grad_factor=1.0 / N, loss_factor=1.0 / N)


def _regression():
    return dict(grad=np.zeros(N, np.float32), loss=np.zeros(1, np.float32), pred=_vec(N, 1),
                target=_vec(N, 2), delta=1.0, grad_factor=1.0 / N, loss_factor=1.0 / N)


def _confusion(y_pred, k=K):
    return dict(cm=np.zeros((k, k), np.int64), seen=np.zeros(k, np.bool_),
                status=np.zeros(2, np.int64), y_true=_labels(N, k), y_pred=y_pred,
                weight=np.zeros(0), threshold=0.5)


def _top_k():
    return dict(status=np.zeros(2), scores=_vec(N * C, 1).reshape(N, C), y_true=_labels(N, C),
                weight=np.zeros(0), k=2)


def _check_labels():
    return dict(record=np.zeros(2, np.int64), labels=_labels(N, C), n_classes=C,
                ignore_index=-100)


#: kernel name -> a valid call's arguments, by name, in the kernel's order.
_VALID = {
    "sgd_step": _sgd,
    "rmsprop_step": _rmsprop,
    "adam_step": _adam,
    "adagrad_step": _adagrad,
    "grad_stats": _grad_stats,
    "scale_inplace": _scale_inplace,
    "cross_entropy_fwd_bwd": _cross_entropy,
    "bce_with_logits_fwd_bwd": _bce,
    "mse_fwd_bwd": _regression,
    "l1_fwd_bwd": _regression,
    "huber_fwd_bwd": _regression,
    "confusion_counts": lambda: _confusion(_labels(N, K, seed=4)),
    "confusion_counts_thresholded": lambda: _confusion(_vec(N, 4), k=2),
    "confusion_counts_argmax": lambda: _confusion(_vec(N * K, 4).reshape(N, K)),
    "top_k_hits": _top_k,
    "check_labels": _check_labels,
}

#: Valid calls with the state buffers the rule leaves unused passed empty.
_VALID_UNUSED_EMPTY = [
    ("sgd_step", dict(buf=_vec(0), momentum=0.0)),
    ("rmsprop_step", dict(grad_avg=_vec(0), buf=_vec(0), centered=False, momentum=0.0)),
    ("adam_step", dict(vmax=_vec(0), amsgrad=False)),
    ("cross_entropy_fwd_bwd", dict(pred=np.zeros(0, np.int64), weight=_vec(0))),
]

#: (kernel, what changes, the message's start): each must raise ValueError on both devices.
_BAD = [
    ("sgd_step", dict(buf=_vec(0)), "buf must have the length of p when momentum != 0"),
    ("sgd_step", dict(buf=_vec(N - 1)), "buf must have the length of p"),
    ("sgd_step", dict(g=_vec(N - 1)), "g must have the length of p"),
    ("sgd_step", dict(g=_vec(N + 1)), "g must have the length of p"),
    ("sgd_step", dict(ctl=_ctl()[:CTL_SIZE - 1]), "ctl must hold at least CTL_SIZE"),
    ("rmsprop_step", dict(buf=_vec(0)), "buf must have the length of p when momentum > 0"),
    ("rmsprop_step", dict(grad_avg=_vec(0)), "grad_avg must have the length of p when centered"),
    ("rmsprop_step", dict(square_avg=_vec(N - 1)), "square_avg must have the length of p"),
    ("rmsprop_step", dict(square_avg=_vec(0), momentum=0.0, centered=False),
     "square_avg must have the length of p"),
    ("rmsprop_step", dict(g=_vec(N - 1)), "g must have the length of p"),
    ("rmsprop_step", dict(ctl=np.zeros(0)), "ctl must hold at least CTL_SIZE"),
    ("adam_step", dict(vmax=_vec(0)), "vmax must have the length of p when amsgrad"),
    ("adam_step", dict(m=_vec(N - 1)), "m and v must have the length of p"),
    ("adam_step", dict(v=_vec(0)), "m and v must have the length of p"),
    ("adam_step", dict(g=_vec(N - 1)), "g must have the length of p"),
    ("adam_step", dict(ctl=_ctl()[:APPLIED + 1]), "ctl must hold at least CTL_SIZE"),
    ("adagrad_step", dict(state_sum=_vec(N - 1)), "state_sum must have the length of p"),
    ("adagrad_step", dict(g=_vec(0)), "g must have the length of p"),
    ("adagrad_step", dict(ctl=_ctl()[:CTL_SIZE - 1]), "ctl must hold at least CTL_SIZE"),
    ("grad_stats", dict(red=np.zeros(1)), "red must hold at least RED_SIZE"),
    ("grad_stats", dict(ctl=_ctl()[:1]), "ctl must hold at least CTL_SIZE"),
    ("cross_entropy_fwd_bwd", dict(logits=np.zeros((N, 0), np.float32),
                                   grad=np.zeros((N, 0), np.float32), weight=_vec(0)),
     "logits must have at least one column"),
    ("cross_entropy_fwd_bwd", dict(grad=np.zeros((N - 1, C), np.float32)),
     "grad must have the shape of logits"),
    ("cross_entropy_fwd_bwd", dict(grad=np.zeros((N, C - 1), np.float32)),
     "grad must have the shape of logits"),
    ("cross_entropy_fwd_bwd", dict(loss=np.zeros(0, np.float32)),
     "loss must have N entries when reduction is NONE, else 1"),
    ("cross_entropy_fwd_bwd", dict(loss=np.zeros(1, np.float32), reduction=cpu.NONE),
     "loss must have N entries when reduction is NONE, else 1"),
    ("cross_entropy_fwd_bwd", dict(pred=np.zeros(N - 1, np.int64)),
     "pred must have N entries or none"),
    ("cross_entropy_fwd_bwd", dict(labels=_labels(N - 1, C)),
     "labels must have N entries, one per row of logits"),
    ("cross_entropy_fwd_bwd", dict(weight=_vec(C - 1)), "weight must have C entries or none"),
    ("bce_with_logits_fwd_bwd", dict(grad=np.zeros(N - 1, np.float32)),
     "grad and target must have the length of logits"),
    ("bce_with_logits_fwd_bwd", dict(target=_vec(N - 1)),
     "grad and target must have the length of logits"),
    ("bce_with_logits_fwd_bwd", dict(loss=np.zeros(0, np.float32)),
     "loss must have the length of logits or 1"),
    ("bce_with_logits_fwd_bwd", dict(weight=_vec(N - 1)), "weight must have at least w_mod"),
    ("bce_with_logits_fwd_bwd", dict(w_div=0), "weight must have at least w_mod"),
    ("bce_with_logits_fwd_bwd", dict(pos_weight=_vec(0)), "pos_weight must have at least"),
    ("bce_with_logits_fwd_bwd", dict(pw_mod=0), "pos_weight must have at least"),
    ("mse_fwd_bwd", dict(grad=np.zeros(N - 1, np.float32)),
     "grad and target must have the length of pred"),
    ("l1_fwd_bwd", dict(target=_vec(N - 1)), "grad and target must have the length of pred"),
    ("huber_fwd_bwd", dict(loss=np.zeros(0, np.float32)), "loss must have the length of pred"),
    ("mse_fwd_bwd", dict(loss=np.zeros(2, np.float32)), "loss must have the length of pred"),
    ("confusion_counts", dict(cm=np.zeros((K, K - 1), np.int64)), "cm must be square"),
    ("confusion_counts", dict(seen=np.zeros(K - 1, np.bool_)), "seen must have k entries"),
    ("confusion_counts", dict(status=np.zeros(1, np.int64)), "status must hold at least 2"),
    ("confusion_counts", dict(y_pred=_labels(N - 1, K)), "y_pred must have the length of y_true"),
    ("confusion_counts", dict(weight=np.ones(N - 1)),
     "weight must have the length of y_true or none"),
    ("confusion_counts_thresholded", dict(y_pred=_vec(N + 1)),
     "y_pred must have the length of y_true"),
    ("confusion_counts_argmax", dict(y_pred=np.zeros((N, 0), np.float32)),
     "y_pred scores must have at least one column"),
    ("top_k_hits", dict(status=np.zeros(1)), "status must hold at least 2"),
    ("top_k_hits", dict(y_true=_labels(N - 1, C)), "y_true must have N entries"),
    ("top_k_hits", dict(weight=np.ones(N - 1)), "weight must have N entries or none"),
    ("top_k_hits", dict(scores=np.zeros((N, 0), np.float32)),
     "scores must have at least one column"),
    ("check_labels", dict(record=np.zeros(1, np.int64)), "record must hold at least 2"),
]


def _kernels(device):
    if device == "cpu":
        return cpu
    from fastml.kernels import cuda

    return cuda


def _call(name, changes, device):
    """Run ``name`` on ``device`` with a valid call's arguments, ``changes`` applied; returns
    (host copies of the arrays before, the arguments as passed)."""
    args = {**_VALID[name](), **changes}
    before = {k: np.array(v, copy=True) for k, v in args.items() if isinstance(v, np.ndarray)}
    passed = {k: to_device(v, device) if isinstance(v, np.ndarray) else v
              for k, v in args.items()}
    return before, passed


def _assert_unchanged(before, passed):
    for name, old in before.items():
        new = to_host(passed[name])
        assert new.tobytes() == old.tobytes(), f"{name} changed by a rejected call"


def _id(case):
    name, changes = case[0], case[1]
    return name + "-" + ",".join(f"{k}={_describe(v)}" for k, v in changes.items())


def _describe(v):
    return f"{v.shape}" if isinstance(v, np.ndarray) else repr(v)


@pytest.mark.parametrize("case", _BAD, ids=[_id(c) for c in _BAD])
def test_rejected_before_touching_memory(case, device):
    name, changes, message = case
    before, passed = _call(name, changes, device)
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        getattr(_kernels(device), name)(*passed.values())
    _assert_unchanged(before, passed)


_GOOD = [(name, {}) for name in _VALID] + _VALID_UNUSED_EMPTY


@pytest.mark.parametrize("case", _GOOD, ids=[_id(c) if c[1] else c[0] for c in _GOOD])
def test_valid_call_still_runs(case, device):
    """The checks reject nothing valid; on CUDA the result matches the CPU kernel's."""
    name, changes = case
    before, ref = _call(name, changes, "cpu")
    getattr(cpu, name)(*ref.values())
    assert any(ref[k].tobytes() != v.tobytes() for k, v in before.items()), "nothing written"
    if device == "cpu":
        return
    _, got = _call(name, changes, device)
    getattr(_kernels(device), name)(*got.values())
    for k in before:
        want = ref[k]
        if want.dtype.kind == "f":
            np.testing.assert_allclose(to_host(got[k]), want, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}: {k}")
        else:
            np.testing.assert_array_equal(to_host(got[k]), want, err_msg=f"{name}: {k}")


@pytest.mark.parametrize("bad", [C, C + 1000, -1, -99])
def test_cross_entropy_rejects_bad_label_on_cpu(bad):
    labels = _labels(N, C)
    labels[N // 2] = bad
    labels[1] = -100  # ignored rows stay allowed
    before, passed = _call("cross_entropy_fwd_bwd", dict(labels=labels), "cpu")
    for reduction in (cpu.NONE, cpu.SUM, cpu.MEAN):
        passed["reduction"] = reduction
        passed["loss"] = np.zeros(N if reduction == cpu.NONE else 1, np.float32)
        before["loss"] = passed["loss"].copy()
        with pytest.raises(ValueError, match=r"^labels must be in \[0, C\) or ignore_index"):
            cpu.cross_entropy_fwd_bwd(*passed.values())
        _assert_unchanged(before, passed)


@pytest.mark.cuda
@both_ce_kernels
@pytest.mark.parametrize("bad", [C, C + 1000, -1])
def test_cross_entropy_bad_label_makes_its_row_nan_on_cuda(bad):
    """Unchecked (no ``check``), a bad label is compared with C on the device, never used as
    an index: its row's loss and gradient are NaN, the other rows as on the CPU."""
    from fastml.kernels import cuda

    labels = _labels(N, C)
    row = N // 2
    labels[row] = bad
    args = {**_cross_entropy(), "labels": labels, "reduction": cpu.NONE,
            "loss": np.zeros(N, np.float32)}
    ok_labels = labels.copy()
    ok_labels[row] = -100
    ref = {**args, "labels": ok_labels}
    ref = {k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v for k, v in ref.items()}
    cpu.cross_entropy_fwd_bwd(*ref.values())
    got = {k: to_device(v, "cuda") if isinstance(v, np.ndarray) else v for k, v in args.items()}
    cuda.cross_entropy_fwd_bwd(*got.values())
    grad, loss = to_host(got["grad"]), to_host(got["loss"])
    assert np.isnan(loss[row]) and np.isnan(grad[row]).all()
    keep = np.arange(N) != row
    np.testing.assert_allclose(loss[keep], ref["loss"][keep], rtol=1e-5)
    np.testing.assert_allclose(grad[keep], ref["grad"][keep], rtol=1e-5, atol=1e-7)


@pytest.mark.cuda
def test_cross_entropy_short_check_record_on_cuda():
    from fastml.kernels import cuda

    before, passed = _call("cross_entropy_fwd_bwd", {}, "cuda")
    with pytest.raises(ValueError, match="^check must hold at least 2"):
        cuda.cross_entropy_fwd_bwd(*passed.values(), check=np.zeros(1, np.int64))
    _assert_unchanged(before, passed)


# The *_tensors kernels (CPU only) ------------------------------------------------------------

SIZES = [5, 3]
STATE = sum(SIZES)


class _Tensors:
    """Parameter and gradient arrays addressed by a chunk table, kept alive by this object."""

    def __init__(self):
        self.p = [_vec(n, 10 + i) for i, n in enumerate(SIZES)]
        self.g = [_vec(n, 20 + i) for i, n in enumerate(SIZES)]
        self.chunks = T.chunk_table(SIZES)
        self.p_addr = T.addresses(self.p)
        self.g_addr = T.addresses(self.g)

    def arrays(self):
        return self.p + self.g


def _state(seed, n=STATE):
    return _vec(n, seed, positive=True)


def _tensor_args(name, t):
    """A valid ``*_tensors`` call's arguments, by name, in the kernel's order."""
    inf = math.inf
    table = dict(chunks=t.chunks, p_addr=t.p_addr, g_addr=t.g_addr)
    if name == "sgd_step_tensors":
        return dict(**table, buf=_state(1), ctl=_ctl(), momentum=0.9, dampening=0.0,
                    nesterov=False, weight_decay=0.0, maximize=False, clip_value=inf)
    if name == "rmsprop_step_tensors":
        return dict(**table, square_avg=_state(1), grad_avg=_state(2) * 0.01, buf=_state(3),
                    ctl=_ctl(), alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.9,
                    centered=True, maximize=False, clip_value=inf)
    if name == "adam_step_tensors":
        return dict(**table, m=_state(1), v=_state(2), vmax=_state(3), ctl=_ctl(), beta1=0.9,
                    beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=True,
                    maximize=False, clip_value=inf)
    if name == "adagrad_step_tensors":
        return dict(**table, state_sum=_state(1), ctl=_ctl(), eps=1e-10, weight_decay=0.0,
                    maximize=False, clip_value=inf)
    if name == "grad_stats_tensors":
        return dict(red=np.zeros(RED_SIZE), chunks=t.chunks, g_addr=t.g_addr, ctl=_ctl(),
                    clip_value=inf, like=_vec(0))
    assert name == "scale_inplace_tensors"
    return dict(chunks=t.chunks, g_addr=t.g_addr, factor=0.5, like=_vec(0))


def _table(**rows):
    """The chunk table of SIZES with entries changed: ``{"r0c1": value}`` sets row 0, col 1."""
    chunks = T.chunk_table(SIZES)
    for key, value in rows.items():
        chunks[int(key[1]), int(key[3])] = value
    return chunks


_UPDATE_TENSORS = ["sgd_step_tensors", "rmsprop_step_tensors", "adam_step_tensors",
                   "adagrad_step_tensors"]
_ALL_TENSORS = _UPDATE_TENSORS + ["grad_stats_tensors", "scale_inplace_tensors"]
_TABLE_MESSAGES = {
    "tensor": "chunks[:, TENSOR] must index the address arrays",
    "span": "chunks must have 0 <= START <= STOP and 0 <= STATE in every row",
    "columns": "chunks must have 4 columns",
}
_BAD_TABLES = [  # (what, chunks or an address array change, message key)
    ("tensor past addresses", dict(chunks=_table(r1c0=2)), "tensor"),
    ("negative tensor", dict(chunks=_table(r0c0=-1)), "tensor"),
    ("g_addr short", dict(g_addr=lambda t: t.g_addr[:1]), "tensor"),
    ("start after stop", dict(chunks=_table(r0c1=6)), "span"),
    ("negative start", dict(chunks=_table(r0c1=-2)), "span"),
    ("negative state", dict(chunks=_table(r1c3=-1)), "span"),
    ("state near int64 max", dict(chunks=_table(r1c3=(1 << 63) - 2)), "span"),
    ("three columns", dict(chunks=T.chunk_table(SIZES)[:, :3].copy()), "columns"),
]
_BAD_TENSOR_STATE = [  # (kernel, changes, message)
    ("sgd_step_tensors", dict(buf=_vec(0)),
     "buf must cover every chunk's state span when momentum != 0"),
    ("sgd_step_tensors", dict(chunks=_table(r1c3=6)),
     "buf must cover every chunk's state span when momentum != 0"),
    ("rmsprop_step_tensors", dict(square_avg=_state(1, STATE - 1)),
     "square_avg must cover every chunk's state span"),
    ("rmsprop_step_tensors", dict(grad_avg=_vec(0)),
     "grad_avg must cover every chunk's state span when centered"),
    ("rmsprop_step_tensors", dict(buf=_vec(0)),
     "buf must cover every chunk's state span when momentum > 0"),
    ("adam_step_tensors", dict(m=_state(1, STATE - 1)), "m and v must cover"),
    ("adam_step_tensors", dict(v=_vec(0)), "m and v must cover"),
    ("adam_step_tensors", dict(vmax=_vec(0)),
     "vmax must cover every chunk's state span when amsgrad"),
    ("adagrad_step_tensors", dict(state_sum=_state(1, 1)), "state_sum must cover"),
    ("grad_stats_tensors", dict(red=np.zeros(1)), "red must hold at least RED_SIZE"),
] + [(name, dict(ctl=_ctl()[:CTL_SIZE - 1]), "ctl must hold at least CTL_SIZE")
     for name in _UPDATE_TENSORS + ["grad_stats_tensors"]]


def _run_tensors_rejected(name, changes, message):
    t = _Tensors()
    args = _tensor_args(name, t)
    for key, value in changes.items():
        if key in args:
            args[key] = value(t) if callable(value) else np.array(value, copy=True)
    before = [a.copy() for a in t.arrays()]
    states = {k: v.copy() for k, v in args.items() if isinstance(v, np.ndarray)}
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        getattr(cpu, name)(*args.values())
    for old, new in zip(before, t.arrays(), strict=True):
        assert new.tobytes() == old.tobytes(), "an addressed array changed"
    for k, old in states.items():
        assert args[k].tobytes() == old.tobytes(), f"{k} changed"


@pytest.mark.parametrize("name", _ALL_TENSORS)
@pytest.mark.parametrize("case", _BAD_TABLES, ids=[c[0] for c in _BAD_TABLES])
def test_tensors_rejects_bad_chunk_table(name, case):
    _, changes, key = case
    _run_tensors_rejected(name, changes, _TABLE_MESSAGES[key])


@pytest.mark.parametrize("name", _UPDATE_TENSORS)
def test_tensors_rejects_short_p_addr(name):
    _run_tensors_rejected(name, dict(p_addr=lambda t: t.p_addr[:1]), _TABLE_MESSAGES["tensor"])


@pytest.mark.parametrize("case", _BAD_TENSOR_STATE, ids=[_id(c) for c in _BAD_TENSOR_STATE])
def test_tensors_rejects_short_state(case):
    _run_tensors_rejected(*case)


_GOOD_TENSORS = [(name, {}) for name in _ALL_TENSORS] + [
    ("sgd_step_tensors", dict(buf=_vec(0), momentum=0.0)),
    ("rmsprop_step_tensors", dict(grad_avg=_vec(0), buf=_vec(0), centered=False, momentum=0.0)),
    ("adam_step_tensors", dict(vmax=_vec(0), amsgrad=False)),
]


def _one_array_args(name, args, p, g, span):
    """The one-array kernel's arguments for one addressed array: its own p and g, its span of
    each flat state buffer (an empty buffer stays empty), and a fresh ``red``."""
    out = {}
    for k in _VALID[name]():
        v = args.get(k)
        if k in ("p", "g"):
            out[k] = (p if k == "p" else g).copy()
        elif k == "red":
            out[k] = np.zeros(RED_SIZE)
        elif isinstance(v, np.ndarray):
            out[k] = (v[span] if v.shape[0] == STATE else v).copy()
        else:
            out[k] = v
    return out


@pytest.mark.parametrize("case", _GOOD_TENSORS,
                         ids=[_id(c) if c[1] else c[0] for c in _GOOD_TENSORS])
def test_tensors_valid_call_matches_one_array_kernel(case):
    """With unused buffers empty too; each array as the one-array kernel updates it."""
    name, changes = case
    single = name.removesuffix("_tensors")
    t = _Tensors()
    args = {**_tensor_args(name, t), **changes}
    bounds = np.cumsum([0, *SIZES])
    spans = [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
    refs = []
    for p, g, span in zip(t.p, t.g, spans, strict=True):
        one = _one_array_args(single, args, p, g, span)
        getattr(cpu, single)(*one.values())
        refs.append(one)
    getattr(cpu, name)(*args.values())
    if single == "grad_stats":
        np.testing.assert_allclose(args["red"], refs[0]["red"] + refs[1]["red"], rtol=1e-12)
        return
    for i, (ref, span) in enumerate(zip(refs, spans, strict=True)):
        got = t.p[i] if "p" in ref else t.g[i]
        np.testing.assert_allclose(got, ref["p"] if "p" in ref else ref["g"], rtol=1e-6)
        for k, v in args.items():
            if isinstance(v, np.ndarray) and v.shape[0] == STATE:
                np.testing.assert_allclose(v[span], ref[k], rtol=1e-6, err_msg=k)
