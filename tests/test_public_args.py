"""Hostile values for every argument of every public loss and metric.

Each call either works or raises a fastml error type, or a plain ``TypeError``/``ValueError``,
whose message reads ``"<arg> must be <expected>; got <actual>"`` (or repeats scikit-learn's
own wording, where fastml reproduces its errors). Never numba's typing errors,
``NotImplementedError``, ``KeyError``, ``IndexError``, ``OverflowError`` or ``SystemError``: every
public entry validates Python-level arguments before a kernel sees them. A rejected call leaves
the ``out`` it was given, and a ``ConfusionMatrix``'s counts, as they were.

Every valid value here keeps the dtypes of the base calls, so no call compiles a new kernel
signature (each would take seconds).
"""

import re
import warnings

import numba.core.errors
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastml
from fastml import metrics as M
from fastml.errors import DeviceError, DTypeError, NonFiniteError, ShapeError

FORBIDDEN = (numba.core.errors.NumbaError, NotImplementedError, KeyError, IndexError,
             OverflowError, SystemError, AttributeError, ZeroDivisionError)
FASTML_ERRORS = (ShapeError, DTypeError, DeviceError, NonFiniteError)
HOUSE = re.compile(r"\bmust\b.*; got ", re.S)
# scikit-learn's own messages, which fastml repeats word for word.
SKLEARN = re.compile(r"is not a valid label|Target is multiclass")
SENTINEL = -12345.0


class _Opaque:
    def __repr__(self):
        return "<opaque>"


# Scalars that are out of range, of the wrong kind, or containers.
SCALARS = [2**70, -2**70, 2**63, -1, 0, "abc", "", None, float("nan"), float("inf"),
           float("-inf"), 1.5, 1 + 2j, np.complex128(1j), b"mean", np.array(3), np.array(0.5),
           np.array([1, 2]), np.float16(1.0), np.longdouble(1.0), True, np.bool_(False),
           _Opaque(), [1, 2], {"a": 1}]
# Arrays of dtypes the argument does not take (for labels: floats; for scores: narrow,
# extended or non-float types), 0-d arrays, and non-arrays.
ARRAYS = [np.ones(6, np.float16), np.ones(6, np.longdouble), np.array([1, "a"] * 3, object),
          np.ones(6, np.bool_), np.arange(6), np.zeros((6, 3), np.int64),
          np.ones(6, np.complex128), np.array(2.0), np.array(2), np.ones((4, 3), np.float16),
          np.ones((4, 3), np.longdouble), np.ones((4, 3), np.int64), np.ones((4, 3), np.bool_),
          np.array([0, 2**63], np.uint64), np.array([0, 2**64 - 1, 1, 0], np.uint64),
          "abc", b"abc", None, 2**70, float("nan"), 1 + 2j, np.zeros(0), np.ones(6)]

Y_TRUE = np.array([0, 1, 2, 1, 0, 2])
Y_PRED = np.array([0, 2, 2, 1, 0, 1])
SCORES = np.random.default_rng(0).random((6, 3))
LOGITS = np.random.default_rng(1).standard_normal((4, 3))
TARGET = np.random.default_rng(2).random((4, 3))
CE_LABELS = np.array([0, 2, 1, 0])


def _streamed():
    cm = M.ConfusionMatrix(3)
    cm.update(Y_TRUE, Y_PRED)
    return cm


def _pair(fn):
    return lambda **kw: fn(**{"pred": LOGITS, "target": TARGET, **kw})


PRF = dict(average="macro", labels=None, pos_label=1, zero_division="warn")
CALLS = {
    # name: (function taking keywords, base keywords, arguments to substitute)
    "accuracy": (M.accuracy, dict(y_true=Y_TRUE, y_pred=Y_PRED, sample_weight=None,
                                  threshold=0.5)),
    "confusion_matrix": (M.confusion_matrix, dict(y_true=Y_TRUE, y_pred=Y_PRED, num_classes=3,
                                                  sample_weight=None, normalize=None,
                                                  threshold=0.5)),
    "precision_recall_fscore": (M.precision_recall_fscore,
                                dict(y_true=Y_TRUE, y_pred=Y_PRED, beta=1.0, **PRF,
                                     sample_weight=None, threshold=0.5)),
    "precision": (M.precision, dict(y_true=Y_TRUE, y_pred=Y_PRED, **PRF, sample_weight=None)),
    "recall": (M.recall, dict(y_true=Y_TRUE, y_pred=Y_PRED, **PRF, sample_weight=None)),
    "fbeta": (M.fbeta, dict(y_true=Y_TRUE, y_pred=Y_PRED, beta=2.0, **PRF, sample_weight=None)),
    "f1 binary": (M.f1, dict(y_true=Y_TRUE % 2, y_pred=Y_PRED % 2, average="binary",
                             pos_label=1, sample_weight=None)),
    "top_k_accuracy": (M.top_k_accuracy, dict(y_true=Y_TRUE, scores=SCORES, k=2,
                                              sample_weight=None, normalize=True)),
    "ConfusionMatrix": (M.ConfusionMatrix, dict(num_classes=3)),
    "ConfusionMatrix.update": (lambda **kw: _streamed().update(**kw),
                               dict(y_true=Y_TRUE, y_pred=Y_PRED, sample_weight=None,
                                    threshold=0.5)),
    "ConfusionMatrix.compute": (lambda **kw: _streamed().compute(**kw), dict(normalize=None)),
    "ConfusionMatrix.precision_recall_fscore": (
        lambda **kw: _streamed().precision_recall_fscore(**kw), dict(beta=1.0, **PRF)),
    "ConfusionMatrix.fbeta": (lambda **kw: _streamed().fbeta(**kw), dict(beta=0.5, **PRF)),
    "ConfusionMatrix.merge": (lambda **kw: _streamed().merge(**kw), dict(other=_streamed())),
    "mse": (_pair(fastml.mse), dict(reduction="mean", grad_scale=1.0, out=None)),
    "l1": (_pair(fastml.l1), dict(reduction="sum", grad_scale=1.0, out=None)),
    "huber": (_pair(fastml.huber), dict(delta=1.0, reduction="mean", grad_scale=1.0,
                                        out=None)),
    "bce_with_logits": (fastml.bce_with_logits,
                        dict(logits=LOGITS, target=TARGET, weight=None, pos_weight=None,
                             reduction="mean", grad_scale=1.0, out=None)),
    "cross_entropy": (fastml.cross_entropy,
                      dict(logits=LOGITS, labels=CE_LABELS, weight=None, ignore_index=-100,
                           label_smoothing=0.0, reduction="mean", grad_scale=1.0, out=None,
                           return_pred=False)),
}
ARRAY_ARGS = {"y_true", "y_pred", "scores", "sample_weight", "pred", "target", "logits",
              "labels", "weight", "pos_weight", "out"}


def _call(name, arg, value):
    """Call ``name`` with ``arg`` replaced; returns (result, exception or None)."""
    fn, base = CALLS[name]
    kwargs = dict(base, **{arg: value})
    out = kwargs.get("out")
    before = None if not isinstance(out, np.ndarray) else out.copy()
    stream = _streamed() if name == "ConfusionMatrix.update" else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ill-defined metrics, k >= C and the like
            if stream is not None:
                return stream.update(**kwargs), None
            return fn(**kwargs), None
    except Exception as exc:  # noqa: BLE001 - the point is to look at whatever was raised
        if before is not None:
            np.testing.assert_array_equal(out, before, err_msg=f"{name}({arg}=...) wrote out")
        if stream is not None:
            np.testing.assert_array_equal(stream.compute(), _streamed().compute(),
                                          err_msg=f"{name}({arg}=...) counted a rejected batch")
        return None, exc


def _check(name, arg, value):
    _, exc = _call(name, arg, value)
    if exc is None:
        return
    where = f"{name}({arg}={value!r:.60}) raised {type(exc).__module__}.{type(exc).__name__}"
    assert not isinstance(exc, FORBIDDEN), f"{where}: {exc}"
    assert isinstance(exc, (TypeError, ValueError)), f"{where}: {exc}"
    message = str(exc)
    assert HOUSE.search(message) or SKLEARN.search(message), f"{where}: {message!r}"


def _cases():
    for name, (_, base) in CALLS.items():
        for arg in base:
            values = ARRAYS if arg in ARRAY_ARGS else SCALARS
            yield name, arg, values


@pytest.mark.parametrize(("name", "arg", "values"),
                         [pytest.param(*c, id=f"{c[0]}-{c[1]}") for c in _cases()])
def test_hostile_arguments(name, arg, values, one_thread):
    for value in values:
        _check(name, arg, value)


def test_rejected_out_is_unchanged():
    # The losses with an out= buffer given and one hostile argument each: out keeps its bits.
    for name in ("mse", "l1", "huber", "bce_with_logits", "cross_entropy"):
        for arg in CALLS[name][1]:
            if arg == "out":
                continue
            for value in (ARRAYS if arg in ARRAY_ARGS else SCALARS)[:8]:
                out = np.full((4, 3), SENTINEL)
                fn, base = CALLS[name]
                kwargs = dict(base, out=out, **{arg: value})
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fn(**kwargs)
                except (TypeError, ValueError):
                    assert (out == SENTINEL).all(), f"{name}({arg}={value!r:.40}) wrote out"


def test_leaks_that_were_found():
    """The cases an adversarial pass found, each with the error it now gets."""
    with pytest.raises(DTypeError, match=r"y_pred scores must be float32 or float64; got float16"):
        M.f1(Y_TRUE, SCORES.astype(np.float16), average="macro")
    with pytest.raises(DTypeError, match=r"y_pred scores must be float32 or float64; got "
                                         r"float128|longdouble"):
        M.accuracy(Y_TRUE, SCORES.astype(np.longdouble))
    with pytest.raises(ValueError, match=r"ignore_index must be in \[-2\*\*63, 2\*\*63 - 1\]; got "
                                         r"1180591620717411303424"):
        fastml.cross_entropy(LOGITS, CE_LABELS, ignore_index=2**70)
    with pytest.raises(ValueError, match=r"pos_label must be in .*; got 1180591620717411303424"):
        M.f1(Y_TRUE % 2, Y_PRED % 2, pos_label=2**70)
    with pytest.raises(ValueError, match=r"labels must be integers below 2\*\*63"):
        M.f1(Y_TRUE, Y_PRED, average=None, labels=[2**63])
    with pytest.raises(TypeError, match=r"threshold must be a real number; got str"):
        M.accuracy(Y_TRUE, Y_PRED, threshold="abc")
    with pytest.raises(TypeError, match=r"beta must be a real number; got str"):
        M.fbeta(Y_TRUE, Y_PRED, "abc", average="macro")
    with pytest.raises(ValueError, match=r"average must be one of .*; got array"):
        M.f1(Y_TRUE, Y_PRED, average=np.array(["macro"]))
    with pytest.raises(TypeError, match=r"normalize must be True or False; got ndarray"):
        M.top_k_accuracy(Y_TRUE, SCORES, normalize=np.array([True, False]))
    with pytest.raises(ValueError, match=r"grad_scale must be a finite number; got inf"):
        fastml.mse(LOGITS, TARGET, grad_scale=float("inf"))
    with pytest.raises(ShapeError, match=r"labels\[1\] = 18446744073709551615"):
        fastml.cross_entropy(LOGITS, np.array([0, 2**64 - 1, 1, 0], np.uint64))
    # Valid, if extreme: k beyond int64 means every row is a hit.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert M.top_k_accuracy(Y_TRUE, SCORES, k=2**70) == 1.0


HOSTILE = st.one_of(
    st.integers(min_value=2**63), st.integers(max_value=-(2**63) - 1), st.integers(-3, -1),
    st.floats(allow_nan=True, allow_infinity=True), st.complex_numbers(),
    st.text(max_size=4), st.binary(max_size=4), st.none(), st.booleans(),
    st.floats(allow_nan=True).map(np.array),
    st.sampled_from([np.float16(np.inf), np.longdouble("1e400"), np.int8(-1), np.uint64(2**64 - 1),
                     np.array([], np.int64), np.array(["x"])]),
)
SCALAR_CASES = [(name, arg) for name, (_, base) in CALLS.items() for arg in base
                if arg not in ARRAY_ARGS and arg != "other"]


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=st.sampled_from(SCALAR_CASES), value=HOSTILE)
def test_hostile_scalars_hypothesis(case, value, one_thread):
    _check(*case, value)
