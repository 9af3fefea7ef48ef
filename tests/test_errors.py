"""Bad input to the losses: the error type, a message of the form "<arg> must be <expected>; got
<actual>", and a rejected call that wrote nothing (``out``, filled with a sentinel, and every
input keep their bits)."""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest

import fastml
from fastml.errors import DeviceError, DTypeError, ShapeError

from .helpers import assert_bitwise_equal, to_device, to_host

SENTINEL = -12345.0
F64, F32 = np.float64, np.float32


class Case(NamedTuple):
    name: str
    build: Callable  # put -> (function, args, kwargs); put(a) moves a NumPy array to the device
    error: type
    match: str
    devices: tuple = ("cpu", "cuda")


def sentinel(shape, dtype=F64):
    return np.full(shape, SENTINEL, dtype)


def arange(shape, dtype=F64):
    return (np.arange(int(np.prod(shape))).reshape(shape) % 7 - 3.0).astype(dtype)


def cpu(a):
    return np.array(a, copy=True)


def keep(a):
    """For arrays a case has already placed (views of one buffer must stay views)."""
    return a


def pair(fn, pred, target, put, **kw):
    """A (pred, target) loss call with a sentinel out shaped like pred, unless kw names out."""
    kw.setdefault("out", put(sentinel(np.shape(pred), getattr(pred, "dtype", F64))))
    return fn, (put(pred), put(target)), kw


def ce(logits, labels, put, **kw):
    kw.setdefault("out", put(sentinel(np.shape(logits), getattr(logits, "dtype", F64))))
    return fastml.cross_entropy, (put(logits), put(labels)), kw


def overlapping(put, n=12):
    """Two 6-element views of one buffer that share 3 elements: (input, out)."""
    base = put(arange((n,)))
    return base[0:6], base[3:9]


def regression_cases(name, fn):
    x, y = arange((4, 3)), arange((4, 3)) * 0.5
    return [
        Case(f"{name}-shape", lambda put: pair(fn, x, arange((3, 4)), put), ShapeError,
             r"target must have the shape of pred \(4, 3\); got \(3, 4\)"),
        Case(f"{name}-int-pred", lambda put: pair(fn, x.astype(np.int64), y, put), DTypeError,
             r"pred must be a float32 or float64 array; got int64 \(cast it with"),
        Case(f"{name}-float16", lambda put: pair(fn, x.astype(np.float16), y.astype(np.float16),
                                                 put), DTypeError,
             r"pred must be a float32 or float64 array; got float16"),
        Case(f"{name}-target-dtype", lambda put: pair(fn, x, y.astype(F32), put), DTypeError,
             r"target must have the dtype of pred \(float64\); got float32"),
        Case(f"{name}-int-target", lambda put: pair(fn, x, y.astype(np.int32), put), DTypeError,
             r"target must have the dtype of pred \(float64\); got int32"),
        Case(f"{name}-empty", lambda put: pair(fn, np.zeros((0,)), np.zeros((0,)), put),
             ShapeError, r"pred must be non-empty; got shape \(0,\)"),
        Case(f"{name}-empty-2d", lambda put: pair(fn, np.zeros((3, 0)), np.zeros((3, 0)), put),
             ShapeError, r"pred must be non-empty; got shape \(3, 0\)"),
        Case(f"{name}-reduction", lambda put: pair(fn, x, y, put, reduction="avg"), ValueError,
             r"reduction must be one of 'none', 'sum', 'mean'; got 'avg'"),
        Case(f"{name}-reduction-none", lambda put: pair(fn, x, y, put, reduction=None),
             ValueError, r"reduction must be one of .*; got None"),
        Case(f"{name}-grad-scale-nan", lambda put: pair(fn, x, y, put, grad_scale=float("nan")),
             ValueError, r"grad_scale must be in .*; got nan"),
        Case(f"{name}-grad-scale-str", lambda put: pair(fn, x, y, put, grad_scale="1"),
             TypeError, r"grad_scale must be a real number; got str"),
        Case(f"{name}-out-shape", lambda put: pair(fn, x, y, put, out=put(sentinel((3, 4)))),
             ShapeError, r"out must have the shape of pred \(4, 3\); got \(3, 4\)"),
        Case(f"{name}-out-dtype", lambda put: pair(fn, x, y, put, out=put(sentinel((4, 3), F32))),
             DTypeError, r"out must have the dtype of pred \(float64\); got float32"),
        Case(f"{name}-out-strided",
             lambda put: pair(fn, x[:, :2], y[:, :2], put, out=put(sentinel((4, 4)))[:, ::2]),
             ShapeError, r"out must be C-contiguous; got strides"),
        Case(f"{name}-out-overlap",
             lambda put: (lambda v: pair(fn, v[0], put(arange((6,))), keep, out=v[1]))(
                 overlapping(put)),
             ShapeError, r"out must be pred itself or not overlap it; got a partly overlapping"),
        Case(f"{name}-out-overlap-target",
             lambda put: (lambda v: pair(fn, put(arange((6,))), v[0], keep, out=v[1]))(
                 overlapping(put)),
             ShapeError, r"out must be target itself or not overlap it"),
        Case(f"{name}-out-read-only",
             lambda put: pair(fn, x, y, put, out=_read_only(sentinel((4, 3)))), ShapeError,
             r"out must be writeable; got a read-only array", devices=("cpu",)),
        Case(f"{name}-mixed-devices", lambda put: (fn, (put(x), cpu(y)), {"out": put(sentinel(
            (4, 3)))}), DeviceError,
             r"arrays must all be on one device; got pred, out on the GPU and target on the CPU",
             devices=("cuda",)),
        Case(f"{name}-out-on-other-device",
             lambda put: (fn, (cpu(x), cpu(y)), {"out": to_device(sentinel((4, 3)), "cuda")}),
             DeviceError, r"got out on the GPU and pred, target on the CPU", devices=("cpu",)),
    ]


def _read_only(a):
    a.flags.writeable = False
    return a


def huber_cases():
    x, y = arange((5,)), arange((5,)) * 2
    return [
        Case(f"huber-delta-{d}", lambda put, d=d: pair(fastml.huber, x, y, put, delta=d),
             ValueError, rf"delta must be in \(0.0, inf\]; got {d}")
        for d in [0.0, -1.0, float("nan")]
    ] + [Case("huber-delta-str", lambda put: pair(fastml.huber, x, y, put, delta="big"),
              TypeError, r"delta must be a real number; got str")]


def bce_cases():
    fn = fastml.bce_with_logits
    x, t = arange((4, 3)), np.full((4, 3), 0.5)
    return [
        Case("bce-shape", lambda put: pair(fn, x, np.full((4, 2), 0.5), put), ShapeError,
             r"target must have the shape of logits \(4, 3\); got \(4, 2\)"),
        Case("bce-int-logits", lambda put: pair(fn, x.astype(np.int32), t, put), DTypeError,
             r"logits must be a float32 or float64 array; got int32"),
        Case("bce-target-dtype", lambda put: pair(fn, x, t.astype(F32), put), DTypeError,
             r"target must have the dtype of logits \(float64\); got float32"),
        Case("bce-weight-dtype", lambda put: pair(fn, x, t, put, weight=put(np.ones(3, F32))),
             DTypeError, r"weight must have the dtype of logits \(float64\); got float32"),
        Case("bce-pos-weight-dtype",
             lambda put: pair(fn, x, t, put, pos_weight=put(np.ones(3, np.int64))), DTypeError,
             r"pos_weight must have the dtype of logits \(float64\); got int64"),
        Case("bce-weight-shape", lambda put: pair(fn, x, t, put, weight=put(np.ones(4))),
             ShapeError, r"weight must broadcast to \(4, 3\); got shape \(4,\)"),
        Case("bce-weight-too-many-dims",
             lambda put: pair(fn, x, t, put, weight=put(np.ones((1, 4, 3)))), ShapeError,
             r"weight must broadcast to \(4, 3\); got shape \(1, 4, 3\)"),
        Case("bce-pos-weight-shape",
             lambda put: pair(fn, x, t, put, pos_weight=put(np.ones((2, 3)))), ShapeError,
             r"pos_weight must broadcast to \(4, 3\); got shape \(2, 3\)"),
        Case("bce-weight-middle-axis",  # a documented limit: broadcast on outer axes only
             lambda put: pair(fn, arange((2, 3, 4)), np.full((2, 3, 4), 0.5), put,
                              weight=put(np.ones((2, 1, 4)))), ShapeError,
             r"weight must broadcast along leading and/or trailing axes only; got shape "
             r"\(2, 1, 4\) for input \(2, 3, 4\)"),
        Case("bce-empty", lambda put: pair(fn, np.zeros((0, 3)), np.zeros((0, 3)), put),
             ShapeError, r"logits must be non-empty; got shape \(0, 3\)"),
        Case("bce-reduction", lambda put: pair(fn, x, t, put, reduction="Mean"), ValueError,
             r"reduction must be one of 'none', 'sum', 'mean'; got 'Mean'"),
        Case("bce-out-strided", lambda put: pair(fn, x, t, put, out=put(sentinel((4, 6)))[:, ::2]),
             ShapeError, r"out must be C-contiguous"),
        Case("bce-out-overlap-weight",
             lambda put: (lambda v: pair(fn, put(arange((6,))), put(np.full(6, 0.5)), keep,
                                         weight=v[0], out=v[1]))(overlapping(put)),
             ShapeError, r"out must be weight itself or not overlap it"),
        Case("bce-out-read-only",
             lambda put: pair(fn, x, t, put, out=_read_only(sentinel((4, 3)))), ShapeError,
             r"out must be writeable", devices=("cpu",)),
        Case("bce-weight-on-other-device",
             lambda put: pair(fn, x, t, cpu, weight=to_device(np.ones(3), "cuda")), DeviceError,
             r"got weight on the GPU and logits on the CPU", devices=("cpu",)),
        Case("bce-mixed-devices", lambda put: (fn, (put(x), cpu(t)), {}), DeviceError,
             r"arrays must all be on one device; got logits on the GPU and target on the CPU",
             devices=("cuda",)),
    ]


def ce_cases():
    x = arange((4, 3))
    y = np.array([0, 2, 1, 0])
    return [
        Case("ce-1d-logits", lambda put: ce(arange((5,)), np.array([0]), put), ShapeError,
             r"logits must be 2-D \(N, C\); got shape \(5,\) \(add a batch axis"),
        Case("ce-3d-logits", lambda put: ce(arange((2, 3, 4)), np.array([0, 1]), put),
             ShapeError, r"logits must be 2-D \(N, C\); got shape \(2, 3, 4\)"),
        Case("ce-0d-logits", lambda put: ce(np.array(1.0), np.array([0]), put), ShapeError,
             r"logits must be 2-D \(N, C\); got shape \(\)"),
        Case("ce-int-logits", lambda put: ce(x.astype(np.int64), y, put), DTypeError,
             r"logits must be a float32 or float64 array; got int64"),
        Case("ce-float-labels", lambda put: ce(x, y.astype(F64), put), DTypeError,
             r"labels must be an integer array of class indices; got float64 \(class "
             r"probabilities as targets are not supported\)"),
        Case("ce-bool-labels", lambda put: ce(x, y.astype(bool), put), DTypeError,
             r"labels must be an integer array of class indices; got bool"),
        Case("ce-labels-shape", lambda put: ce(x, np.array([0, 1, 2, 0, 1]), put), ShapeError,
             r"labels must have shape \(4,\); got \(5,\)"),
        Case("ce-labels-2d", lambda put: ce(x, y[:, None], put), ShapeError,
             r"labels must have shape \(4,\); got \(4, 1\)"),
        # Bad label values: on the GPU they are found on the device after the call returns,
        # and the call's outputs are poisoned instead (test_bad_labels_on_the_gpu below).
        Case("ce-label-too-big", lambda put: ce(x, np.array([0, 1, 2, 7]), put), ShapeError,
             r"labels must be in \[0, 3\) or ignore_index \(-100\); got labels\[3\] = 7",
             devices=("cpu",)),
        Case("ce-first-bad-label", lambda put: ce(x, np.array([0, -1, 5, 3]), put), ShapeError,
             r"got labels\[1\] = -1$", devices=("cpu",)),
        Case("ce-label-int32", lambda put: ce(x, np.array([0, 3, 1, 0], np.int32), put),
             ShapeError, r"got labels\[1\] = 3$", devices=("cpu",)),
        Case("ce-ignore-index-is-not-a-label",
             lambda put: ce(x, np.array([0, -100, 1, 0]), put, ignore_index=-1), ShapeError,
             r"labels must be in \[0, 3\) or ignore_index \(-1\); got labels\[1\] = -100",
             devices=("cpu",)),
        # Weighted: the GPU's pre-pass sums w[y] for the mean, and must never index the weights
        # with a bad label (w[10**9] would read far outside the weights on a device).
        Case("ce-weighted-label-far-out",
             lambda put: ce(x, np.array([0, 1, 10**9, 0]), put, weight=put(np.ones(3))),
             ShapeError, r"got labels\[2\] = 1000000000$", devices=("cpu",)),
        Case("ce-weighted-smoothed-sum-negative-label",
             lambda put: ce(x, np.array([0, -7, 1, 0]), put, weight=put(np.ones(3)),
                            reduction="sum", label_smoothing=0.1),
             ShapeError, r"got labels\[1\] = -7$", devices=("cpu",)),
        Case("ce-ignore-index-float", lambda put: ce(x, y, put, ignore_index=1.5), TypeError,
             r"ignore_index must be an integer; got float"),
        Case("ce-weight-shape", lambda put: ce(x, y, put, weight=put(np.ones(4))), ShapeError,
             r"weight must have shape \(3,\); got \(4,\)"),
        Case("ce-weight-2d", lambda put: ce(x, y, put, weight=put(np.ones((1, 3)))), ShapeError,
             r"weight must have shape \(3,\); got \(1, 3\)"),
        Case("ce-weight-dtype", lambda put: ce(x, y, put, weight=put(np.ones(3, F32))),
             DTypeError, r"weight must have the dtype of logits \(float64\); got float32"),
        Case("ce-smoothing-high", lambda put: ce(x, y, put, label_smoothing=1.5), ValueError,
             r"label_smoothing must be in \[0.0, 1.0\]; got 1.5"),
        Case("ce-smoothing-negative", lambda put: ce(x, y, put, label_smoothing=-0.1),
             ValueError, r"label_smoothing must be in \[0.0, 1.0\]; got -0.1"),
        Case("ce-smoothing-nan", lambda put: ce(x, y, put, label_smoothing=float("nan")),
             ValueError, r"label_smoothing must be in \[0.0, 1.0\]; got nan"),
        Case("ce-reduction", lambda put: ce(x, y, put, reduction="elementwise_mean"), ValueError,
             r"reduction must be one of 'none', 'sum', 'mean'; got 'elementwise_mean'"),
        Case("ce-empty-batch", lambda put: ce(np.zeros((0, 3)), np.zeros(0, np.int64), put),
             ShapeError, r"logits must be non-empty; got shape \(0, 3\)"),
        Case("ce-no-classes", lambda put: ce(np.zeros((2, 0)), np.zeros(2, np.int64), put),
             ShapeError, r"logits must be non-empty; got shape \(2, 0\)"),
        Case("ce-out-shape", lambda put: ce(x, y, put, out=put(sentinel((3, 4)))), ShapeError,
             r"out must have the shape of logits \(4, 3\); got \(3, 4\)"),
        Case("ce-out-strided", lambda put: ce(x, y, put, out=put(sentinel((4, 6)))[:, ::2]),
             ShapeError, r"out must be C-contiguous"),
        Case("ce-out-overlap",
             lambda put: (lambda base: ce(base[0:4], put(y), keep, out=base[1:5]))(
                 put(arange((5, 3)))), ShapeError,
             r"out must be logits itself or not overlap it; got a partly overlapping view"),
        Case("ce-out-read-only", lambda put: ce(x, y, put, out=_read_only(sentinel((4, 3)))),
             ShapeError, r"out must be writeable", devices=("cpu",)),
        Case("ce-in-place-strided-logits",
             lambda put: (lambda v: ce(v, y, keep, out=v))(cpu(arange((4, 6)))[:, ::2]),
             ShapeError, r"out must be C-contiguous", devices=("cpu",)),
        Case("ce-mixed-devices", lambda put: (fastml.cross_entropy, (put(x), cpu(y)), {}),
             DeviceError, r"got logits on the GPU and labels on the CPU", devices=("cuda",)),
        Case("ce-weight-on-other-device",
             lambda put: ce(x, y, cpu, weight=to_device(np.ones(3), "cuda")), DeviceError,
             r"got weight on the GPU and logits, labels, out on the CPU", devices=("cpu",)),
        Case("ce-gpu-int16-labels", lambda put: ce(x, y.astype(np.int16), put), DTypeError,
             r"labels must be int32 or int64 on the GPU; got int16", devices=("cuda",)),
        Case("ce-gpu-strided-logits",
             lambda put: ce(put(arange((4, 6)))[:, ::2], put(y), keep, out=put(sentinel((4, 3)))),
             ShapeError,
             r"logits must be C-contiguous on the GPU; got strides", devices=("cuda",)),
    ]


CASES = (regression_cases("mse", fastml.mse) + regression_cases("l1", fastml.l1)
         + regression_cases("huber", fastml.huber) + huber_cases() + bce_cases() + ce_cases())
PARAMS = [pytest.param(case, device, id=f"{device}-{case.name}")
          for case in CASES for device in ("cpu", "cuda") if device in case.devices]


def _arrays(args, kwargs):
    """Every array among the call's arguments, by name."""
    named = {f"arg{i}": a for i, a in enumerate(args)}
    named.update(kwargs)
    return {k: v for k, v in named.items()
            if hasattr(v, "copy_to_host") or isinstance(v, np.ndarray)}


@pytest.mark.parametrize(("case", "device"), PARAMS)
def test_rejected_call_writes_nothing(case, device):
    fn, args, kwargs = case.build(lambda a: to_device(a, device))
    arrays = _arrays(args, kwargs)
    before = {k: to_host(v) for k, v in arrays.items()}
    with pytest.raises(case.error, match=case.match):
        fn(*args, **kwargs)
    for k, v in arrays.items():  # out (a sentinel, or a view of an input) included
        assert_bitwise_equal(to_host(v), before[k], name=k)


BAD_LABEL_CASES = [c for c in CASES if c.name in (
    "ce-label-too-big", "ce-first-bad-label", "ce-label-int32", "ce-ignore-index-is-not-a-label",
    "ce-weighted-label-far-out", "ce-weighted-smoothed-sum-negative-label")]


@pytest.mark.cuda
@pytest.mark.parametrize("case", BAD_LABEL_CASES, ids=lambda c: c.name)
def test_bad_labels_on_the_gpu(case):
    """The one documented exception to 'a rejected call writes nothing': on the GPU a label is
    checked on the device, so the call cannot be refused before it is queued. It raises the
    CPU's message, at the call or at a later fastml call (here check_device_errors), leaves its
    inputs alone and writes NaN into the gradient it was given, so a guarded step skips it."""
    fn, args, kwargs = case.build(lambda a: to_device(a, "cuda"))
    out = kwargs.pop("out")
    arrays = _arrays(args, kwargs)
    before = {k: to_host(v) for k, v in arrays.items()}
    message = case.match.rstrip("$") + r" \(found on the GPU after cross_entropy call #\d+"
    with pytest.raises(case.error, match=message):
        fn(*args, **kwargs, out=out)
        fastml.check_device_errors()
    for k, v in arrays.items():
        assert_bitwise_equal(to_host(v), before[k], name=k)
    assert np.isnan(to_host(out)).all()


def test_every_message_reads_must_be_got():
    """The message form of the contract, over every case above (on the CPU)."""
    for case in CASES:
        if "cpu" not in case.devices:
            continue
        fn, args, kwargs = case.build(cpu)
        with pytest.raises(case.error) as info:
            fn(*args, **kwargs)
        assert " must " in str(info.value) and "; got " in str(info.value), case.name


@pytest.mark.torch
def test_rejected_torch_out_is_unchanged():
    torch = pytest.importorskip("torch")
    x = torch.arange(12, dtype=torch.float64).reshape(4, 3)
    out = torch.full((4, 3), SENTINEL, dtype=torch.float64)
    with pytest.raises(ShapeError, match=r"labels\[2\] = 3"):
        fastml.cross_entropy(x, torch.tensor([0, 1, 3, 0]), out=out)
    assert (out == SENTINEL).all()
    with pytest.raises(DTypeError, match=r"out must have the dtype of pred \(float64\); got "
                                         r"float32"):
        fastml.mse(x, x, out=torch.zeros((4, 3), dtype=torch.float32))
    with pytest.raises(DTypeError, match=r"pred must be a float32 or float64 array; got "
                                         r"torch.bfloat16"):
        fastml.mse(x.to(torch.bfloat16), x.to(torch.bfloat16))
