"""Losses that return their value and gradient from one pass over memory.

Semantics follow ``torch.nn.functional``: same formulas, same denominators, same gradients.
Each function validates everything first (a rejected call writes nothing), then runs one CPU or
CUDA kernel chosen by where the arrays live.
"""

import functools
import math
from typing import Any, NamedTuple

import numpy as np

from . import _arrays as A
from . import _device_errors, _outputs, _streams
from . import _scalars as S
from ._dispatch import backend
from .errors import DTypeError, ShapeError

REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}  # codes shared with the kernels (NONE, SUM, MEAN)


class LossGrad(NamedTuple):
    """``loss``: a scalar of the input dtype (on the GPU a 0-d array: a tensor for PyTorch
    inputs, else a numba device array; see ``fastml._outputs``), or per-sample losses for
    ``reduction="none"``. ``grad``: d(loss)/d(first argument) times ``grad_scale``."""

    loss: Any
    grad: Any


class LossGradPred(NamedTuple):
    """``LossGrad`` plus ``pred``, the argmax of each logits row (int64)."""

    loss: Any
    grad: Any
    pred: Any


def _reduction_code(reduction):
    try:
        return REDUCTIONS[reduction]
    except (KeyError, TypeError):  # TypeError: unhashable, such as an array
        raise ValueError(
            f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}; got "
            f"{S.shown(reduction)}"
        ) from None


def _grad_out(out, like, like_name, cuda, inputs, user_like, stream):
    """The gradient buffer ``(kernel array, object returned)``: ``out`` checked (it may be an
    input, for in-place), or a new array of the kind of ``user_like`` (``fastml._outputs``)."""
    if out is None:
        return _outputs.new(user_like, like.shape, like.dtype, cuda, stream)
    out_arr = A.as_array(out, "out", cuda)
    A.check_out(out_arr, like, like_name, inputs)
    return out_arr, out


def _loss_result(loss, shape, reduction_code, dtype, cuda):
    """The loss to return, from the (n,) or (1,) array the kernel wrote."""
    if reduction_code == 0:
        return loss.reshape(shape)
    if cuda:
        return loss.reshape(())
    return dtype.type(loss[0])


def _pair(pred, target, pred_name, target_name, out):
    """Shared checks of (pred, target) losses; returns the kernel arrays and the device flag."""
    cuda = A.device_of(**{pred_name: pred, target_name: target, "out": out})
    p = A.as_array(pred, pred_name, cuda)
    t = A.as_array(target, target_name, cuda)
    A.check_float(p, pred_name)
    A.check_same_dtype(t, target_name, p, pred_name)
    A.check_same_shape(t, target_name, p, pred_name)
    A.check_non_empty(p, pred_name)
    return p, t, cuda, _streams.for_arrays(pred, target, out) if cuda else 0


def _regression(kernel_name, pred, target, reduction, grad_scale, out, delta=0.0):
    code = _reduction_code(reduction)
    grad_scale = S.real(grad_scale, "grad_scale", finite=True)
    p, t, cuda, stream = _pair(pred, target, "pred", "target", out)
    grad, user_grad = _grad_out(out, p, "pred", cuda, {"pred": p, "target": t}, pred, stream)
    p_in = A.contiguous_input(p, "pred", cuda)
    t_in = A.contiguous_input(t, "target", cuda)
    n = p.size
    loss, user_loss = _outputs.new(pred, (n if code == 0 else 1,), p.dtype, cuda, stream)
    gf, lf = (grad_scale / n, 1.0 / n) if code == 2 else (grad_scale, 1.0)
    kernel = getattr(backend(cuda, stream), kernel_name)
    kernel(A.flat(grad), loss, A.flat(p_in), A.flat(t_in), delta, gf, lf)
    return LossGrad(_loss_result(user_loss, p.shape, code, p.dtype, cuda), user_grad)


def mse(pred, target, *, reduction="mean", grad_scale=1.0, out=None):
    """Mean squared error ``(pred - target)^2`` and its gradient ``2 (pred - target)``.

    Parameters
    ----------
    pred, target : array of any shape, float32 or float64 (same shape and dtype)
    reduction : {"mean", "sum", "none"}
    grad_scale : float, finite
        Multiplies the gradient (not the loss): a loss scale, or a 1/accumulation-steps factor.
    out : array like ``pred``, optional
        Receives the gradient; may be ``pred`` or ``target`` itself.

    Returns
    -------
    LossGrad
        ``loss`` (a scalar, or an array shaped like ``pred`` for ``"none"``) and ``grad``.
    """
    return _regression("mse_fwd_bwd", pred, target, reduction, grad_scale, out)


def l1(pred, target, *, reduction="mean", grad_scale=1.0, out=None):
    """Mean absolute error ``|pred - target|`` and its gradient ``sign(pred - target)``
    (0 where they are equal, as in PyTorch). Arguments as in :func:`mse`."""
    return _regression("l1_fwd_bwd", pred, target, reduction, grad_scale, out)


def huber(pred, target, *, delta=1.0, reduction="mean", grad_scale=1.0, out=None):
    """Huber loss: ``0.5 d^2`` where ``|d| < delta``, else ``delta (|d| - 0.5 delta)``, with
    ``d = pred - target``; the gradient is ``d`` clipped to ``[-delta, delta]``.
    ``delta`` must be positive. Other arguments as in :func:`mse`."""
    delta = S.real(delta, "delta", low=0.0, low_open=True)
    return _regression("huber_fwd_bwd", pred, target, reduction, grad_scale, out, delta)


def _broadcast_index(w, shape, name):
    """(div, mod) such that element i of an array of ``shape`` reads ``w[(i // div) % mod]``.

    Any ``w`` that broadcasts to ``shape`` with its non-broadcast axes adjacent qualifies: a full
    array, a trailing vector such as (C,), a per-row column (N, 1), or a scalar.
    """
    ws = (1,) * (len(shape) - w.ndim) + tuple(w.shape)
    if w.ndim > len(shape) or any(a not in (1, b) for a, b in zip(ws, shape, strict=True)):
        raise ShapeError(f"{name} must broadcast to {tuple(shape)}; got shape {tuple(w.shape)}")
    kept = [k for k, (a, b) in enumerate(zip(ws, shape, strict=True)) if a == b != 1]
    if not kept:
        return 1, 1
    lo, hi = kept[0], kept[-1] + 1
    if any(ws[k] == 1 and shape[k] != 1 for k in range(lo, hi)):
        raise ShapeError(
            f"{name} must broadcast along leading and/or trailing axes only; got shape "
            f"{tuple(w.shape)} for input {tuple(shape)} (materialize it with np.broadcast_to)"
        )
    return math.prod(shape[hi:]), math.prod(shape[lo:hi])


def _weight_arg(w, name, like, like_name, cuda):
    if w is None:
        return None
    arr = A.as_array(w, name, cuda)
    A.check_same_dtype(arr, name, like, like_name)
    return A.contiguous_input(arr, name, cuda)


def bce_with_logits(logits, target, *, weight=None, pos_weight=None, reduction="mean",
                    grad_scale=1.0, out=None):
    """Binary cross-entropy on logits (PyTorch's ``binary_cross_entropy_with_logits``).

    ``l = -w [pw t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))]``, computed in the
    log-sum-exp form that cannot overflow. The mean divides by the number of elements.

    Parameters
    ----------
    logits, target : array of any shape, float32 or float64 (same shape and dtype)
        ``target`` holds probabilities in [0, 1].
    weight : array broadcastable to ``logits``, optional
        Per-element rescaling weight.
    pos_weight : array broadcastable to ``logits``, optional
        Weight of the positive term, typically shaped ``(C,)`` for ``(N, C)`` logits.
    reduction, grad_scale, out
        As in :func:`mse`; ``out`` may be ``logits`` or ``target`` itself.
    """
    code = _reduction_code(reduction)
    grad_scale = S.real(grad_scale, "grad_scale", finite=True)
    x, t, cuda, stream = _pair(logits, target, "logits", "target", out)
    A.device_of(logits=logits, weight=weight, pos_weight=pos_weight)
    w = _weight_arg(weight, "weight", x, "logits", cuda)
    pw = _weight_arg(pos_weight, "pos_weight", x, "logits", cuda)
    w_div, w_mod = _broadcast_index(w, x.shape, "weight") if w is not None else (1, 1)
    pw_div, pw_mod = _broadcast_index(pw, x.shape, "pos_weight") if pw is not None else (1, 1)
    grad, user_grad = _grad_out(out, x, "logits", cuda,
                                {"logits": x, "target": t, "weight": w, "pos_weight": pw},
                                logits, stream)
    one = _ones(x.dtype, cuda)
    x_in = A.contiguous_input(x, "logits", cuda)
    t_in = A.contiguous_input(t, "target", cuda)
    n = x.size
    loss, user_loss = _outputs.new(logits, (n if code == 0 else 1,), x.dtype, cuda, stream)
    gf, lf = (grad_scale / n, 1.0 / n) if code == 2 else (grad_scale, 1.0)
    backend(cuda, stream).bce_with_logits_fwd_bwd(
        A.flat(grad), loss, A.flat(x_in), A.flat(t_in),
        one if w is None else A.flat(w), w_div, w_mod,
        one if pw is None else A.flat(pw), pw_div, pw_mod, gf, lf)
    return LossGrad(_loss_result(user_loss, x.shape, code, x.dtype, cuda), user_grad)


_ONES = {}


def _ones(dtype, cuda):
    """A cached length-1 array of ones standing in for an absent weight."""
    key = (np.dtype(dtype), cuda)
    if key not in _ONES:
        host = np.ones(1, dtype=dtype)
        if cuda:
            from numba import cuda as nb_cuda

            host = nb_cuda.to_device(host)
            nb_cuda.synchronize()  # once: later calls read it from any stream
        _ONES[key] = host
    return _ONES[key]


def _labels_arg(labels, n_rows, cuda, c, ignore_index):
    y = A.as_array(labels, "labels", cuda)
    kind = np.dtype(y.dtype).kind
    if kind not in "iu":
        raise DTypeError(
            f"labels must be an integer array of class indices; got {np.dtype(y.dtype)}"
            + (" (class probabilities as targets are not supported)" if kind == "f" else "")
        )
    if y.ndim != 1 or y.shape[0] != n_rows:
        raise ShapeError(f"labels must have shape ({n_rows},); got {tuple(y.shape)}")
    if np.dtype(y.dtype) not in (np.dtype(np.int32), np.dtype(np.int64)):
        if cuda:
            raise DTypeError(f"labels must be int32 or int64 on the GPU; got {np.dtype(y.dtype)}")
        if np.dtype(y.dtype) == np.dtype(np.uint64) and y.size and y.max() > S.INT64_MAX:
            # int64 would wrap these to negative numbers and report a label nobody passed.
            bad = y >= c
            if ignore_index >= 0:
                bad &= y != ignore_index
            i = int(np.argmax(bad))
            raise ShapeError(_label_message(c, ignore_index, i, int(y[i])))
        y = y.astype(np.int64)
    return A.contiguous_input(y, "labels", cuda)


def _label_message(c, ignore_index, index, value, seq=None):
    text = (f"labels must be in [0, {c}) or ignore_index ({ignore_index}); "
            f"got labels[{index}] = {value}")
    if seq is not None:
        text += (f" (found on the GPU after cross_entropy call #{seq} of this process returned; "
                 "that call's loss and gradient are NaN)")
    return text


def cross_entropy(logits, labels, *, weight=None, ignore_index=-100, label_smoothing=0.0,
                  reduction="mean", grad_scale=1.0, out=None, return_pred=False):
    """Softmax cross-entropy over the rows of ``logits`` (PyTorch's ``cross_entropy``).

    Parameters
    ----------
    logits : (N, C) float32 or float64
    labels : (N,) integer class indices in [0, C), or ``ignore_index``
    weight : (C,) same dtype as ``logits``, optional
        Class weights; a weighted mean divides by the sum of the weights of non-ignored rows.
    ignore_index : int in [-2**63, 2**63)
        Rows with this label add nothing to the loss and get a zero gradient. If every row is
        ignored, a mean is 0.0 with a zero gradient (PyTorch gives NaN).
    label_smoothing : float in [0, 1]
    reduction, grad_scale
        As in :func:`mse`.
    out : (N, C) array, optional
        Receives the gradient; may be ``logits`` itself (in place).
    return_pred : bool
        Also return the argmax of each row, computed in the same pass.

    Returns
    -------
    LossGrad, or LossGradPred when ``return_pred``.
    """
    code = _reduction_code(reduction)
    grad_scale = S.real(grad_scale, "grad_scale", finite=True)
    label_smoothing = S.real(label_smoothing, "label_smoothing", low=0.0, high=1.0)
    # Any int64: labels are int32 or int64, so the kernels compare them with it in int64.
    ignore_index = S.integer(ignore_index, "ignore_index")
    return_pred = S.boolean(return_pred, "return_pred")
    cuda = A.device_of(logits=logits, labels=labels, weight=weight, out=out)
    x = A.as_array(logits, "logits", cuda)
    A.check_float(x, "logits")
    if x.ndim != 2:
        raise ShapeError(
            f"logits must be 2-D (N, C); got shape {tuple(x.shape)}"
            + (" (add a batch axis with logits[None])" if x.ndim == 1 else "")
        )
    A.check_non_empty(x, "logits")
    n, c = x.shape
    y = _labels_arg(labels, n, cuda, c, ignore_index)
    w = _weight_arg(weight, "weight", x, "logits", cuda)
    if w is not None and tuple(w.shape) != (c,):
        raise ShapeError(f"weight must have shape ({c},); got {tuple(w.shape)}")
    stream = _streams.for_arrays(logits, labels, weight, out) if cuda else 0
    grad, user_grad = _grad_out(out, x, "logits", cuda, {"logits": x, "labels": y, "weight": w},
                                logits, stream)
    x_in = A.contiguous_input(x, "logits", cuda)
    kernels = backend(cuda, stream)
    message = functools.partial(_label_message, c, ignore_index)
    if cuda:  # checked on the device, in the kernel's pre-pass; reported later (_device_errors)
        record = _device_errors.log().open(message)
    else:
        record = np.empty(2, np.int64)
        kernels.check_labels(record, y, c, ignore_index)
        if record[0] >= 0:
            raise ShapeError(message(int(record[0]), int(record[1])))
    loss, user_loss = _outputs.new(logits, (n if code == 0 else 1,), x.dtype, cuda, stream)
    # Empty arrays stand in for an argmax or a weight not asked for (numba allocates nothing).
    pred, user_pred = (_outputs.new(logits, (n,), np.int64, cuda, stream) if return_pred
                       else (A.empty_like(x, cuda, shape=(0,), dtype=np.int64),) * 2)
    no_weight = A.empty_like(x, cuda, shape=(0,)) if w is None else w
    kernels.cross_entropy_fwd_bwd(grad, loss, pred, x_in, y, no_weight, ignore_index,
                                  label_smoothing, grad_scale, code,
                                  **({"check": record} if cuda else {}))
    if cuda:
        _device_errors.raise_finished()
    loss = _loss_result(user_loss, (n,), code, x.dtype, cuda)
    return (LossGradPred(loss, user_grad, user_pred) if return_pred
            else LossGrad(loss, user_grad))
