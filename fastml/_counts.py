"""The metrics' inputs, validated, and the confusion counts every metric is read from.

One parallel pass (``fastml.kernels.*.confusion``) counts a batch into a table. Without
``num_classes`` the first pass uses a 64 x 64 table, which holds the usual small labels; a
larger label sends the call to a table over the labels present (``fastml._label_space``), so
what a call costs follows the number of distinct labels, not their values.

Sample weights must be finite (scikit-learn refuses NaN and infinities too; negative weights
are taken, as there). Each weight of a batch is added to exactly one cell of its table, so a
table whose cells are all finite proves every weight finite: the O(k^2) table is read instead
of the O(N) weights, which are scanned only when a cell is not finite.
"""

from typing import Any, NamedTuple

import numpy as np

from . import _arrays as A
from . import _label_space, _streams
from . import _scalars as S
from ._dispatch import backend
from .errors import DTypeError, NonFiniteError, ShapeError

FIRST_TABLE = 64  # without num_classes, the first pass counts into a 64 x 64 table
MAX_CLASSES = 1 << 14  # num_classes, or the distinct labels present when it is not given


class Inputs(NamedTuple):
    """A metric call's arrays as the kernels take them (host or device)."""

    y_true: Any  # (N,) integer labels
    y_pred: Any  # (N,) integer labels, (N,) float scores or (N, C) float scores
    weight: Any  # (N,) numeric or None
    form: str  # "label", "thresholded" (1-D scores) or "argmax" (2-D scores)
    cuda: bool
    integer_weights: bool  # no weights, or integer/bool ones: the counts stay integers
    stream: Any
    threshold: float


def label_array(x, name, cuda):
    a = A.as_array(x, name, cuda)
    kind = np.dtype(a.dtype).kind
    if kind == "b":
        if not cuda:  # (the CUDA kernels read bool labels as 0/1 in place)
            a = a.astype(np.int64)
    elif kind not in "iu":
        raise DTypeError(f"{name} must be an integer array of class labels; got "
                         f"{np.dtype(a.dtype)}")
    if a.ndim != 1:
        raise ShapeError(f"{name} must be 1-D; got shape {tuple(a.shape)}")
    if not cuda and np.dtype(a.dtype) == np.dtype(np.uint64):
        # The kernels read labels as int64, where these would wrap to negative numbers.
        i = _label_space.first_invalid(a)
        if i >= 0:
            raise range_error(name, i, int(a[i]), None)
        a = a.astype(np.int64)
    return A.contiguous_input(a, name, cuda)


def inputs(y_true, y_pred, sample_weight, threshold):
    """Validated kernel inputs (``Inputs``)."""
    threshold = S.real(threshold, "threshold")
    cuda = A.device_of(y_true=y_true, y_pred=y_pred, sample_weight=sample_weight)
    yt = label_array(y_true, "y_true", cuda)
    n = yt.shape[0]
    if n == 0:
        raise ShapeError("y_true must be non-empty; got 0 samples")
    yp = A.as_array(y_pred, "y_pred", cuda)
    kind = np.dtype(yp.dtype).kind
    if kind == "f":
        if np.dtype(yp.dtype) not in A.FLOAT_DTYPES:
            raise DTypeError(f"y_pred scores must be float32 or float64; got "
                             f"{np.dtype(yp.dtype)} (cast them with .astype(np.float32))")
        if yp.ndim not in (1, 2):
            raise ShapeError(f"y_pred scores must be 1-D or 2-D; got shape {tuple(yp.shape)}")
        form = "thresholded" if yp.ndim == 1 else "argmax"
        if yp.ndim == 2 and yp.shape[1] == 0:
            raise ShapeError("y_pred scores must have at least one column; got shape "
                             f"{tuple(yp.shape)}")
        yp = A.contiguous_input(yp, "y_pred", cuda)
    else:
        yp = label_array(y_pred, "y_pred", cuda)
        form = "label"
    if yp.shape[0] != n:
        raise ShapeError(f"y_pred must have the length of y_true ({n}); got {yp.shape[0]}")
    w, int_w = weights(sample_weight, n, cuda)
    stream = _streams.for_arrays(y_true, y_pred, sample_weight) if cuda else 0
    return Inputs(yt, yp, w, form, cuda, int_w, stream, threshold)


def weights(sample_weight, n, cuda):
    """``(weights as the kernels take them or None, whether they are integers)``."""
    if sample_weight is None:
        return None, True
    w = A.as_array(sample_weight, "sample_weight", cuda)
    kind = np.dtype(w.dtype).kind
    if kind not in "iufb":
        raise DTypeError(f"sample_weight must be numeric; got {np.dtype(w.dtype)}")
    if w.ndim != 1 or w.shape[0] != n:
        raise ShapeError(f"sample_weight must have shape ({n},); got {tuple(w.shape)}")
    if np.dtype(w.dtype) != np.dtype(np.float64) and not cuda:
        w = w.astype(np.float64)  # (the CUDA kernels convert each weight to float64 in place)
    return A.contiguous_input(w, "sample_weight", cuda), kind in "iub"


def num_classes_arg(num_classes):
    return S.integer(num_classes, "num_classes", low=1, high=MAX_CLASSES)


# Sample weights -------------------------------------------------------------------------------

def weight_message(index, value, count=1):
    more = f" ({count} non-finite weights in all)" if count > 1 else ""
    return (f"sample_weight must be finite; got sample_weight[{index}] = {value}{more} (drop "
            "those samples, or give them a finite weight, e.g. with np.nan_to_num)")


def check_finite(w):
    """Raise ``NonFiniteError`` for the first NaN or infinite weight of a host array."""
    bad = np.flatnonzero(~np.isfinite(w))
    if bad.size:
        raise NonFiniteError(weight_message(int(bad[0]), w[bad[0]], bad.size))


def check_counted_weights(cm, w, integer_weights):
    """The weights counted into the table ``cm`` are finite (see the module docstring)."""
    if w is not None and not integer_weights and not np.isfinite(cm).all():
        check_finite(host(w))  # finite weights whose sum overflowed pass


def check_some_weight(cm, w):
    """scikit-learn rejects weights that are all 0. A table with a non-zero cell proves some
    weight is not, so the weights themselves are read only when every cell is 0."""
    if w is not None and not cm.any() and not host(w).any():
        raise ValueError("sample_weight must contain at least one non-zero number; got all "
                         "zeros")


def host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else a


# Counts ---------------------------------------------------------------------------------------

class Counts:
    """A confusion table with the labels present in the data.

    Table index i stands for label ``values[i]``, or for label i when ``values`` is None."""

    def __init__(self, cm, seen, weighted, integer_weights=True, values=None):
        self.cm = cm  # (k, k) host array, int64 or float64
        self.seen = seen  # (k,) bool
        self.weighted = weighted
        self.integer_weights = integer_weights
        self.values = values  # (k,) int64, sorted, or None

    @property
    def present(self):
        """The labels present, sorted."""
        index = np.flatnonzero(self.seen)
        return index if self.values is None else self.values[index]

    def sums(self, labels):
        """Per-label tp, predicted and true sums (0 for labels outside the table)."""
        cm = self.cm.astype(np.float64) if self.weighted else self.cm
        k = cm.shape[0]
        labels = np.asarray(labels, dtype=np.int64)
        every = (np.diagonal(cm), cm.sum(axis=0), cm.sum(axis=1))
        if self.values is not None:  # label -> table index, where the label has one
            index = np.minimum(np.searchsorted(self.values, labels), k - 1)
            inside = self.values[index] == labels
            return tuple(np.where(inside, x[index], 0) for x in every)
        if labels.size == 0 or (labels.min() >= 0 and labels.max() < k):  # the common case
            return tuple(x[labels] for x in every)
        inside = (labels >= 0) & (labels < k)
        safe = np.where(inside, labels, 0)
        return tuple(np.where(inside, x[safe], 0) for x in every)


def count_kernel(kernels, form):
    """The confusion-counting kernel that reads ``y_pred`` of this form."""
    return {"label": kernels.confusion_counts,
            "thresholded": kernels.confusion_counts_thresholded,
            "argmax": kernels.confusion_counts_argmax}[form]


def run_counts(inp, k):
    """One counting pass into a fresh (k, k) table; returns (cm, seen, status) on the host.

    On the GPU the kernels run on the call's stream and the copies back wait for it, after
    which the inputs are ready for any further host read."""
    cuda, stream = inp.cuda, inp.stream
    kernels = backend(cuda, stream)
    dtype = np.float64 if inp.weight is not None else np.int64
    cm, seen, status = np.zeros((k, k), dtype), np.zeros(k, np.bool_), np.zeros(2, np.int64)
    no_weight = np.zeros(0)
    if cuda:
        cm, seen, status, no_weight = (_streams.to_device(a, stream)
                                       for a in (cm, seen, status, no_weight))
    count_kernel(kernels, inp.form)(cm, seen, status, inp.y_true, inp.y_pred,
                                    no_weight if inp.weight is None else inp.weight,
                                    inp.threshold)
    if cuda:
        return tuple(_streams.to_host(a, stream) for a in (cm, seen, status))
    return cm, seen, status


def counts(inp, num_classes=None, zero_weights=False):
    """The call's counts on the host: over 0..num_classes-1, or over the labels present.

    Raises for a label out of range, a NaN or infinite weight, and (unless ``zero_weights``)
    weights that are all 0; a table that raised is never seen by the caller."""
    if num_classes is not None:
        cm, seen, status = run_counts(inp, num_classes)
        if status[0] >= 0:
            raise label_error(inp, int(status[0]), num_classes)
        result = Counts(cm, seen, inp.weight is not None, inp.integer_weights)
    else:
        result = _present_counts(inp)
    check_counted_weights(result.cm, inp.weight, inp.integer_weights)
    if not zero_weights:
        check_some_weight(result.cm, inp.weight)
    return result


def _present_counts(inp):
    n = inp.y_true.shape[0]
    weighted = inp.weight is not None
    k = FIRST_TABLE
    if inp.form == "argmax":  # every column is a class the scores may predict
        k = max(FIRST_TABLE, inp.y_pred.shape[1])
        if k > MAX_CLASSES:
            raise ShapeError(f"y_pred scores must have at most {MAX_CLASSES} columns (classes) "
                             f"unless num_classes is given; got {k}")
    cm, seen, status = run_counts(inp, k)
    if status[0] < 0:  # the common case: every label below k
        k = int(status[1]) + 1
        return Counts(cm[:k, :k].copy(), seen[:k].copy(), weighted, inp.integer_weights)
    bad = int(status[0])
    values = [int(item(inp.y_true, bad))]
    if inp.form == "label":
        values.append(int(item(inp.y_pred, bad)))
    if not all(0 <= v <= S.INT64_MAX for v in values):
        raise label_error(inp, bad, None)
    top = int(status[1])  # the largest label (negative ones after `bad` are found below)
    if top < MAX_CLASSES and _label_space.dense_fits(top + 1, n, inp.cuda):
        cm, seen, status = run_counts(inp, top + 1)
        if status[0] >= 0:
            raise label_error(inp, int(status[0]), None)
        return Counts(cm, seen, weighted, inp.integer_weights)
    return _compact_counts(inp, top)


def _compact_counts(inp, top):
    """Counts in the space of the labels present (``fastml._label_space``). The rare path:
    on the GPU the labels and weights come to the host once, and are counted there."""
    yt, yp, w = inp.y_true, inp.y_pred, inp.weight
    if inp.cuda:
        yt, yp = host(yt), host(yp)
        w = None if w is None else host(w).astype(np.float64)
    labels = yp if inp.form == "label" else None
    bad = [i for i in (_label_space.first_invalid(yt),
                       -1 if labels is None else _label_space.first_invalid(labels)) if i >= 0]
    if bad:
        raise label_error(inp, min(bad), None)
    n_scores = yp.shape[1] if inp.form == "argmax" else 2
    values, yt, labels = _label_space.compact(yt, labels, n_scores, top)
    k = values.size
    if k > MAX_CLASSES:
        raise ShapeError(f"y_true and y_pred must hold at most {MAX_CLASSES} distinct labels; "
                         f"got {k} (a confusion table over them would take over 2 GiB)")
    mapped = inp._replace(y_true=yt, y_pred=yp if labels is None else labels, weight=w,
                          cuda=False, stream=0)
    cm, seen, _ = run_counts(mapped, k)
    identity = int(values[-1]) == k - 1
    return Counts(cm, seen, w is not None, inp.integer_weights, None if identity else values)


# Label errors ---------------------------------------------------------------------------------

def label_error(inp, bad, k):
    """The error for sample ``bad``, one of whose labels is outside [0, k) (k None: outside
    the int64 labels [0, 2**63))."""
    value_t = int(item(inp.y_true, bad))
    if not _valid(value_t, k):
        return range_error("y_true", bad, value_t, k)
    return range_error("y_pred", bad, predicted(inp.y_pred, inp.form, bad, inp.threshold), k)


def _valid(value, k):
    return 0 <= value and (value <= S.INT64_MAX if k is None else value < k)


def predicted(yp, form, i, threshold):
    """The label the kernels read off ``y_pred[i]`` (for messages)."""
    x = item(yp, i)
    if form == "label":
        return int(x)
    if form == "thresholded":
        return int(x > threshold)
    nan = np.flatnonzero(np.isnan(x))  # argmax: first NaN, else first maximum
    return int(nan[0]) if nan.size else int(np.argmax(x))


def item(a, i):
    # Read only after run_counts (or top_k's status copy) has waited for the call's stream.
    return a[i:i + 1].copy_to_host()[0] if hasattr(a, "copy_to_host") else a[i]


def range_error(name, i, value, k):
    if value < 0:
        return ShapeError(f"{name} must hold non-negative class labels; got {name}[{i}] = {value}")
    if k is None or value > S.INT64_MAX:
        return ShapeError(f"{name} must hold labels below 2**63 (int64); got {name}[{i}] = "
                          f"{value}")
    return ShapeError(f"{name} must hold labels in [0, {k}) (num_classes={k}); "
                      f"got {name}[{i}] = {value}")
