"""Float64 NumPy references for the losses: value and gradient, written from PyTorch's formulas.

Plain and slow on purpose: one formula per line, a Python loop over rows where that reads better,
and sums taken exactly (``math.fsum``) so the reference adds no rounding error of its own worth
mentioning. Nothing here calls fastml. Each function takes arrays of any float dtype, computes
in float64 and returns ``(loss, grad)``:

- ``loss``: a float64 scalar for ``"mean"`` and ``"sum"``, an array of per-sample losses for
  ``"none"``;
- ``grad``: d(loss)/d(first argument) times ``grad_scale``; for ``"none"`` the gradient of the
  sum of the per-sample losses (PyTorch's ``loss.backward(torch.ones_like(loss))``).

Sources (``aten/src/ATen/native``): ``Loss.cpp`` (mse, l1, huber, binary_cross_entropy_with_logits
and their backward functions) and ``LossNLL.cpp`` (``cross_entropy_loss_label_smoothing``,
``nll_loss``); ``log_softmax`` is ``x - max - log(sum(exp(x - max)))``.
"""

import math

import numpy as np

REDUCTIONS = ("none", "sum", "mean")


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _difference(pred, target):
    with np.errstate(invalid="ignore"):  # inf - inf is NaN, as intended
        return _f64(pred) - _f64(target)


def exact_sum(values):
    """The correctly rounded sum (math.fsum); NaN/Inf follow IEEE addition, as a plain sum would."""
    values = _f64(values).ravel()
    if not np.isfinite(values).all():
        return np.float64(np.sum(values))
    try:
        return np.float64(math.fsum(values))
    except OverflowError:  # finite terms whose sum overflows
        return np.float64(np.sum(values))


def _reduce(per_element, grad, reduction, grad_scale):
    """Elementwise losses: the mean divides by the number of elements (PyTorch's rule)."""
    if reduction == "none":
        return per_element, grad * grad_scale
    if reduction == "sum":
        return exact_sum(per_element), grad * grad_scale
    if reduction == "mean":
        n = per_element.size
        return exact_sum(per_element) / n, grad * grad_scale / n
    raise ValueError(f"unknown reduction {reduction!r}")


def mse(pred, target, reduction="mean", grad_scale=1.0):
    """``(pred - target)^2``; gradient ``2 (pred - target)``."""
    d = _difference(pred, target)
    return _reduce(d * d, 2.0 * d, reduction, grad_scale)


def l1(pred, target, reduction="mean", grad_scale=1.0):
    """``|pred - target|``; gradient ``sign(pred - target)``: 0 at 0, NaN for NaN.

    PyTorch's ``sign`` maps NaN to 0, so its L1 gradient is 0 where the difference is NaN;
    fastml's is NaN there (DESIGN: NaN propagates to the gradient, nothing is masked)."""
    d = _difference(pred, target)
    return _reduce(np.abs(d), np.sign(d), reduction, grad_scale)


def huber(pred, target, delta=1.0, reduction="mean", grad_scale=1.0):
    """PyTorch's ``huber_loss``:

        z = |d|,  loss = 0.5 z^2 if z < delta else delta (z - 0.5 delta)
        grad = -delta if d < -delta, delta if d > delta, else d     (so NaN stays NaN)
    """
    d = _difference(pred, target)
    z = np.abs(d)
    with np.errstate(invalid="ignore"):
        loss = np.where(z < delta, 0.5 * z * z, delta * (z - 0.5 * delta))
        grad = np.where(d < -delta, -delta, np.where(d > delta, delta, d))
    return _reduce(loss, grad, reduction, grad_scale)


def bce_with_logits(logits, target, weight=None, pos_weight=None, reduction="mean",
                    grad_scale=1.0):
    """PyTorch's ``binary_cross_entropy_with_logits``:

        lw   = (pos_weight - 1) t + 1
        loss = weight [(1 - t) x + lw (log1p(exp(-|x|)) + max(-x, 0))]
        grad = weight [(1 - t + pos_weight t) sigmoid(x) - pos_weight t]

    (without ``pos_weight`` both reduce to the same with ``pos_weight = 1``). ``weight`` and
    ``pos_weight`` broadcast against ``logits`` by NumPy's rules. The mean divides by the number
    of elements.
    """
    x = _f64(logits)
    t = _f64(target)
    w = np.ones_like(x) if weight is None else np.broadcast_to(_f64(weight), x.shape)
    pw = np.ones_like(x) if pos_weight is None else np.broadcast_to(_f64(pos_weight), x.shape)
    with np.errstate(over="ignore", invalid="ignore"):
        log_weight = (pw - 1.0) * t + 1.0
        loss = w * ((1.0 - t) * x + log_weight * (np.log1p(np.exp(-np.abs(x)))
                                                  + np.maximum(-x, 0.0)))
        # (1 - t) + pw t, not PyTorch's (pw t + 1) - t: the same number, but a tiny pw t
        # survives the addition.
        grad = w * (((1.0 - t) + pw * t) * sigmoid(x) - pw * t)
    return _reduce(loss, grad, reduction, grad_scale)


def sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow: ``exp(x) / (1 + exp(x))`` for negative x."""
    x = _f64(x)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(-np.abs(x))
        return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def log_softmax(row):
    """``x - max - log(sum(exp(x - max)))``: a NaN, or an Inf that meets its own kind in the
    subtraction, makes the whole row NaN, as in PyTorch."""
    row = _f64(row)
    m = np.max(row)
    with np.errstate(invalid="ignore"):
        shifted = row - m
        return shifted - np.log(exact_sum(np.exp(shifted)))


def cross_entropy(logits, labels, weight=None, ignore_index=-100, label_smoothing=0.0,
                  reduction="mean", grad_scale=1.0):
    """PyTorch's ``cross_entropy`` (log_softmax, then nll_loss mixed with the smoothing loss).

    For a row with logp = log_softmax(x), label y, class weights w (ones when absent),
    W = sum_c w_c, smoothing eps over C classes:

        nll    = -w_y logp_y
        smooth = -sum_c w_c logp_c
        loss   = (1 - eps) nll + (eps / C) smooth
        grad   = (1 - eps) w_y (p - onehot_y) + (eps / C) (W p - w),     p = exp(logp)

    Rows labelled ``ignore_index`` add no loss and get a zero gradient. ``"mean"`` divides the
    summed loss and the gradient by D = sum of w_y over the other rows.

    fastml's documented departures from PyTorch, both about ignored rows:
    - if every row is ignored, ``"mean"`` gives loss 0 and a zero gradient (PyTorch: NaN);
    - an ignored row's gradient is zero even when its logits hold NaN or Inf (PyTorch's
      log_softmax backward computes ``0 - p * 0`` there, which is NaN).
    """
    x = _f64(logits)
    labels = np.asarray(labels)
    n, c = x.shape
    w = np.ones(c) if weight is None else _f64(weight)
    w_total = exact_sum(w)
    eps = float(label_smoothing)
    kept = labels != ignore_index

    nll = np.zeros(n)
    smooth = np.zeros(n)
    grad_nll = np.zeros((n, c))
    grad_smooth = np.zeros((n, c))
    for i in range(n):
        if not kept[i]:
            continue
        y = int(labels[i])
        logp = log_softmax(x[i])
        p = np.exp(logp)
        onehot = np.zeros(c)
        onehot[y] = 1.0
        with np.errstate(invalid="ignore"):
            nll[i] = -w[y] * logp[y]
            grad_nll[i] = w[y] * (p - onehot)
            smooth[i] = -exact_sum(w * logp)
            grad_smooth[i] = w_total * p - w

    # PyTorch reduces the two terms separately (nll_loss, then the smoothing sum), then mixes
    # them; so with D = 0 (zero weights on every label present) a mean is 0/0 = NaN.
    if reduction == "none":
        d, nll_r, smooth_r = 1.0, nll, smooth
    elif reduction == "sum":
        d, nll_r, smooth_r = 1.0, exact_sum(nll[kept]), exact_sum(smooth[kept])
    elif reduction == "mean":
        if not kept.any():
            return np.float64(0.0), np.zeros((n, c))
        d = exact_sum(w[labels[kept]])
        with np.errstate(divide="ignore", invalid="ignore"):
            nll_r, smooth_r = exact_sum(nll[kept]) / d, exact_sum(smooth[kept]) / d
    else:
        raise ValueError(f"unknown reduction {reduction!r}")
    with np.errstate(divide="ignore", invalid="ignore"):
        grad_nll[kept] /= d
        grad_smooth[kept] /= d
        if eps == 0.0:  # PyTorch skips the smoothing term (where it is Inf, 0 * Inf is NaN)
            return nll_r, grad_nll * grad_scale
        loss = (1.0 - eps) * nll_r + (eps / c) * smooth_r
        grad = ((1.0 - eps) * grad_nll + (eps / c) * grad_smooth) * grad_scale
    return loss, grad


def mean_denominator(labels, weight=None, ignore_index=-100):
    """D of a ``"mean"`` cross-entropy: the sum of ``weight[y]`` over non-ignored rows."""
    labels = np.asarray(labels)
    kept = labels[labels != ignore_index]
    if weight is None:
        return float(kept.size)
    return float(exact_sum(_f64(weight)[kept]))


def row_argmax(logits):
    """Index of each row's maximum: the first NaN if the row has one, else the first maximum
    (NumPy's and PyTorch's rule), written as a loop."""
    x = _f64(logits)
    out = np.zeros(x.shape[0], dtype=np.int64)
    for i, row in enumerate(x):
        best = 0
        for j, v in enumerate(row):
            if math.isnan(v):
                best = j
                break
            if v > row[best]:
                best = j
        out[i] = best
    return out
