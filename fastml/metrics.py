"""Classification metrics with scikit-learn's semantics, derived from confusion counts that one
parallel pass computes (``fastml.kernels.*.confusion``).

Labels are non-negative integers. Integer ``y_pred`` are labels; float ``y_pred`` are scores:
1-D scores predict class 1 where ``score > threshold``, 2-D scores predict the row argmax (read
in place, no copy). For integer predictions every result equals scikit-learn's, including
``labels`` subsets, labels absent from the data, ``zero_division`` (0, 1, nan or "warn") and
``sample_weight``.
"""

import functools
import math
import operator
import warnings

import numpy as np

from . import _arrays as A
from . import _streams
from ._dispatch import backend
from .errors import DTypeError, ShapeError

__all__ = [
    "ConfusionMatrix", "UndefinedMetricWarning", "accuracy", "confusion_matrix", "f1", "fbeta",
    "precision", "precision_recall_fscore", "recall", "top_k_accuracy",
]

_AVERAGES = (None, "binary", "micro", "macro", "weighted")
_FIRST_TABLE = 64  # without num_classes, count into a 64 x 64 table; larger labels: a 2nd pass
_MAX_CLASSES = 1 << 14


class UndefinedMetricWarning(UserWarning):
    """A metric divided by zero and was set by ``zero_division="warn"`` (scikit-learn's)."""


# Inputs -----------------------------------------------------------------------------------------

def _label_array(x, name, cuda):
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
    return A.contiguous_input(a, name, cuda)


def _inputs(y_true, y_pred, sample_weight, threshold):
    """Validated kernel inputs: (y_true, y_pred, weight, kind, cuda, integer_weights, stream)."""
    cuda = A.device_of(y_true=y_true, y_pred=y_pred, sample_weight=sample_weight)
    yt = _label_array(y_true, "y_true", cuda)
    n = yt.shape[0]
    if n == 0:
        raise ShapeError("y_true must be non-empty; got 0 samples")
    yp = A.as_array(y_pred, "y_pred", cuda)
    kind = np.dtype(yp.dtype).kind
    if kind == "f":
        if yp.ndim not in (1, 2):
            raise ShapeError(f"y_pred scores must be 1-D or 2-D; got shape {tuple(yp.shape)}")
        form = "thresholded" if yp.ndim == 1 else "argmax"
        if yp.ndim == 2 and yp.shape[1] == 0:
            raise ShapeError("y_pred scores must have at least one column; got shape "
                             f"{tuple(yp.shape)}")
        yp = A.contiguous_input(yp, "y_pred", cuda)
    else:
        yp = _label_array(y_pred, "y_pred", cuda)
        form = "label"
    if yp.shape[0] != n:
        raise ShapeError(f"y_pred must have the length of y_true ({n}); got {yp.shape[0]}")
    threshold = float(threshold)
    w, int_weights = _weights(sample_weight, n, cuda)
    stream = _streams.for_arrays(y_true, y_pred, sample_weight) if cuda else 0
    return yt, yp, w, form, cuda, int_weights, stream


def _weights(sample_weight, n, cuda):
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


class _Counts:
    """A confusion table over labels 0..k-1 with the labels present in the data."""

    def __init__(self, cm, seen, weighted, integer_weights=True):
        self.cm = cm  # (k, k) host array, int64 or float64
        self.seen = seen  # (k,) bool
        self.weighted = weighted
        self.integer_weights = integer_weights

    @property
    def present(self):
        return np.flatnonzero(self.seen)

    def sums(self, labels):
        """Per-label tp, predicted and true sums (0 for labels outside the table)."""
        cm = self.cm.astype(np.float64) if self.weighted else self.cm
        k = cm.shape[0]
        labels = np.asarray(labels, dtype=np.int64)
        every = (np.diagonal(cm), cm.sum(axis=0), cm.sum(axis=1))
        if labels.size == 0 or (labels.min() >= 0 and labels.max() < k):  # the common case
            return tuple(x[labels] for x in every)
        inside = (labels >= 0) & (labels < k)
        safe = np.where(inside, labels, 0)
        return tuple(np.where(inside, x[safe], 0) for x in every)


def _count_kernel(kernels, form):
    """The confusion-counting kernel that reads ``y_pred`` of this form."""
    return {"label": kernels.confusion_counts,
            "thresholded": kernels.confusion_counts_thresholded,
            "argmax": kernels.confusion_counts_argmax}[form]


def _run_counts(yt, yp, w, form, cuda, threshold, k, stream):
    """One counting pass into a fresh (k, k) table; returns (cm, seen, status) on the host.

    On the GPU the kernels run on ``stream`` and the copies back wait for it, after which the
    inputs are ready for any further host read."""
    kernels = backend(cuda, stream)
    kernel = _count_kernel(kernels, form)
    dtype = np.float64 if w is not None else np.int64
    cm, seen, status = np.zeros((k, k), dtype), np.zeros(k, np.bool_), np.zeros(2, np.int64)
    no_weight = np.zeros(0)
    if cuda:
        cm, seen, status, no_weight = (_streams.to_device(a, stream)
                                       for a in (cm, seen, status, no_weight))
    kernel(cm, seen, status, yt, yp, no_weight if w is None else w, threshold)
    if cuda:
        return tuple(_streams.to_host(a, stream) for a in (cm, seen, status))
    return cm, seen, status


def _label_error(yt, yp, form, bad, k, threshold):
    value_t = int(_item(yt, bad))
    if not 0 <= value_t < k:
        return _range_error("y_true", bad, value_t, k)
    return _range_error("y_pred", bad, _predicted(yp, form, bad, threshold), k)


def _predicted(yp, form, i, threshold):
    """The label the kernels read off ``y_pred[i]`` (for messages)."""
    x = _item(yp, i)
    if form == "label":
        return int(x)
    if form == "thresholded":
        return int(x > threshold)
    nan = np.flatnonzero(np.isnan(x))  # argmax: first NaN, else first maximum
    return int(nan[0]) if nan.size else int(np.argmax(x))


def _item(a, i):
    # Read only after _run_counts (or top_k's status copy) has waited for the call's stream.
    return a[i:i + 1].copy_to_host()[0] if hasattr(a, "copy_to_host") else a[i]


def _range_error(name, i, value, k):
    if value < 0:
        return ShapeError(f"{name} must hold non-negative class labels; got {name}[{i}] = {value}")
    return ShapeError(f"{name} must hold labels in [0, {k}) (num_classes={k}); "
                      f"got {name}[{i}] = {value}")


def _counts(y_true, y_pred, sample_weight=None, threshold=0.5, num_classes=None,
            zero_weights=False, inputs=None):
    yt, yp, w, form, cuda, int_w, stream = inputs or _inputs(y_true, y_pred, sample_weight,
                                                             threshold)
    threshold = float(threshold)
    if num_classes is not None:
        k = _num_classes(num_classes)
        cm, seen, status = _run_counts(yt, yp, w, form, cuda, threshold, k, stream)
        if status[0] >= 0:
            raise _label_error(yt, yp, form, int(status[0]), k, threshold)
        if not zero_weights:
            _check_some_weight(cm, w)
        return _Counts(cm, seen, w is not None, int_w)
    k = _FIRST_TABLE if form != "argmax" else max(_FIRST_TABLE, yp.shape[1])
    cm, seen, status = _run_counts(yt, yp, w, form, cuda, threshold, k, stream)
    if status[0] >= 0:
        bad = int(status[0])
        value = min(int(_item(yt, bad)), int(_item(yp, bad)) if form == "label" else 0)
        if value < 0:
            raise _label_error(yt, yp, form, bad, k, threshold)
        k = int(status[1]) + 1
        if k > _MAX_CLASSES:
            raise ShapeError(f"labels must be below {_MAX_CLASSES} unless num_classes is given; "
                             f"got a label of {k - 1}")
        cm, seen, status = _run_counts(yt, yp, w, form, cuda, threshold, k, stream)
        if status[0] >= 0:  # a negative label after the first large one
            raise _label_error(yt, yp, form, int(status[0]), k, threshold)
    k = int(status[1]) + 1
    _check_some_weight(cm, w)
    return _Counts(cm[:k, :k].copy(), seen[:k].copy(), w is not None, int_w)


def _check_some_weight(cm, w):
    """scikit-learn rejects weights that are all 0. A table with a non-zero cell proves some
    weight is not, so the weights themselves are read only when every cell is 0."""
    if w is not None and not cm.any() and not _host(w).any():
        raise ValueError("sample_weight must contain at least one non-zero number; got all "
                         "zeros")


def _host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else a


def _num_classes(num_classes):
    try:
        k = operator.index(num_classes)
    except TypeError:
        raise TypeError(f"num_classes must be an integer; got {type(num_classes).__name__}") \
            from None
    if not 1 <= k <= _MAX_CLASSES:
        raise ValueError(f"num_classes must be in [1, {_MAX_CLASSES}]; got {k}")
    return k


# Confusion matrix and accuracy ----------------------------------------------------------------

def _normalized(cm, normalize):
    if normalize is None:
        return cm
    if normalize not in ("true", "pred", "all"):
        raise ValueError(f"normalize must be one of 'true', 'pred', 'all' or None; got "
                         f"{normalize!r}")
    cm = cm.astype(np.float64)
    with np.errstate(all="ignore"):
        if normalize == "true":
            cm = cm / cm.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            cm = cm / cm.sum(axis=0, keepdims=True)
        else:
            cm = cm / cm.sum()
    return np.nan_to_num(cm)


def _table(counts, num_classes):
    """scikit-learn's matrix: over the present labels, or over 0..num_classes-1."""
    cm = counts.cm
    if num_classes is None:
        present = counts.present
        cm = cm[np.ix_(present, present)]
    if counts.weighted and counts.integer_weights:
        cm = cm.astype(np.int64)
    return cm


def confusion_matrix(y_true, y_pred, *, num_classes=None, sample_weight=None, normalize=None,
                     threshold=0.5):
    """Confusion matrix ``C[i, j]``: samples of true class i predicted as j.

    Without ``num_classes`` the rows and columns are the labels present in ``y_true`` or
    ``y_pred``, sorted (scikit-learn's default); with it, labels 0..num_classes-1 (labels
    outside raise). ``normalize`` is "true", "pred", "all" or None, as in scikit-learn.
    Returns an int64 array, float64 with float weights or normalization.
    """
    if normalize not in (None, "true", "pred", "all"):
        raise ValueError(f"normalize must be one of 'true', 'pred', 'all' or None; got "
                         f"{normalize!r}")
    counts = _counts(y_true, y_pred, sample_weight, threshold, num_classes)
    cm = _normalized(_table(counts, num_classes), normalize)
    if cm.shape == (1, 1):  # scikit-learn's warning (it names its `labels` parameter)
        warnings.warn("A single label was found in 'y_true' and 'y_pred'. For the confusion "
                      "matrix to have the correct shape, use the 'num_classes' parameter to "
                      "pass the number of classes.", UserWarning, stacklevel=2)
    return cm


def _accuracy(counts):
    cm = counts.cm.astype(np.float64)
    return float(np.trace(cm) / cm.sum()) if cm.sum() != 0 else math.nan


def accuracy(y_true, y_pred, *, sample_weight=None, threshold=0.5):
    """Fraction of samples predicted right (weighted by ``sample_weight``): scikit-learn's
    ``accuracy_score``."""
    return _accuracy(_counts(y_true, y_pred, sample_weight, threshold))


# Precision, recall, F-beta ----------------------------------------------------------------------

def _divide(num, den, metric, modifier, average, warn_for, zero_division):
    """scikit-learn's ``_prf_divide``: num / den, with ``zero_division`` where den == 0."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    mask = den == 0
    if not mask.any():
        return num / den
    result = num / np.where(mask, 1.0, den)
    result[mask] = _zero_division_value(zero_division)
    if isinstance(zero_division, str) and metric in warn_for:
        axis = "due to" if result.shape[0] == 1 else "in labels with"
        warnings.warn(f"{metric.capitalize()} is ill-defined and being set to 0.0 {axis} no "
                      f"{modifier} samples. Use `zero_division` parameter to control this "
                      "behavior.", UndefinedMetricWarning, stacklevel=4)
    return result


def _zero_division_value(zero_division):
    if isinstance(zero_division, str):
        return 0.0
    return math.nan if math.isnan(zero_division) else float(zero_division)


def _check_zero_division(zero_division):
    if isinstance(zero_division, str):
        if zero_division != "warn":
            raise ValueError(f"zero_division must be 0, 1, nan or 'warn'; got {zero_division!r}")
        return
    try:
        z = float(zero_division)
    except (TypeError, ValueError):
        raise ValueError(f"zero_division must be 0, 1, nan or 'warn'; got "
                         f"{zero_division!r}") from None
    if not (z in (0.0, 1.0) or math.isnan(z)):
        raise ValueError(f"zero_division must be 0, 1, nan or 'warn'; got {zero_division!r}")


def _nanaverage(values, weights=None):
    """scikit-learn's ``_nanaverage``. ``sum() / size`` is ``np.mean``'s own arithmetic (the
    same pairwise sum, then one division), without its ~5 us of Python."""
    mask = np.isnan(values)
    if values.shape[0] == 0 or mask.all():
        return math.nan
    if mask.any():
        values = values[~mask]
        weights = None if weights is None else np.asarray(weights, dtype=np.float64)[~mask]
    if weights is None:
        return float(values.sum() / values.shape[0])
    weights = np.asarray(weights, dtype=np.float64)
    if weights.sum() == 0:
        return float(values.sum() / values.shape[0])
    return float(np.average(values, weights=weights))


def _select_labels(counts, average, labels, pos_label):
    """scikit-learn's ``_check_set_wise_labels``: the labels to score."""
    if average not in _AVERAGES:
        raise ValueError(f"average must be one of {', '.join(map(repr, _AVERAGES))}; got "
                         f"{average!r}")
    present = counts.present.tolist()
    if average == "binary":
        if len(present) > 2:
            raise ValueError("Target is multiclass but average='binary'. Please choose another "
                             "average setting, one of [None, 'micro', 'macro', 'weighted'].")
        if pos_label not in present and len(present) >= 2:
            raise ValueError(f"pos_label={pos_label} is not a valid label. It should be one of "
                             f"{present}")
        return np.array([pos_label], dtype=np.int64)
    if pos_label not in (None, 1):
        warnings.warn(f"Note that pos_label (set to {pos_label!r}) is ignored when average != "
                      f"'binary' (got {average!r}). You may use labels=[pos_label] to specify a "
                      "single positive class.", UserWarning, stacklevel=4)
    if labels is None:
        return np.asarray(present, dtype=np.int64)
    labels = np.asarray(labels)
    if labels.ndim != 1 or np.dtype(labels.dtype).kind not in "iu":
        raise DTypeError(f"labels must be a 1-D sequence of integer labels; got "
                         f"{labels.dtype} of shape {labels.shape}")
    return labels.astype(np.int64)


def _prf(counts, beta, average, labels, pos_label, zero_division, warn_for):
    _check_zero_division(zero_division)
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0; got {beta!r}")
    chosen = _select_labels(counts, average, labels, pos_label)
    tp, pred, true = counts.sums(chosen)
    if average == "micro":
        tp, pred, true = (np.array([x.sum()]) for x in (tp, pred, true))
    precision = _divide(tp, pred, "precision", "predicted", average, warn_for, zero_division)
    recall = _divide(tp, true, "recall", "true", average, warn_for, zero_division)
    if math.isinf(beta):
        fscore = recall
    elif beta == 0:
        fscore = precision
    else:
        b2 = beta * beta
        fscore = _divide((1 + b2) * np.asarray(tp, np.float64),
                         b2 * np.asarray(true, np.float64) + pred, "f-score",
                         "true nor predicted", average, warn_for, zero_division)
    if average is None:
        # scikit-learn's support is int64 without weights, except when no sample at all is
        # predicted right (its tp counts then start as float zeros): float64, as there.
        integer = not counts.weighted and np.trace(counts.cm) != 0
        support = true.astype(np.int64) if integer else true.astype(np.float64)
        return precision, recall, fscore, support
    weights = true if average == "weighted" else None
    return (_nanaverage(precision, weights), _nanaverage(recall, weights),
            _nanaverage(fscore, weights), None)


_PRF_DOC = """
    Parameters
    ----------
    y_true : (N,) non-negative integer labels
    y_pred : (N,) integer labels, (N,) float scores (class 1 where ``> threshold``) or (N, C)
        float scores (row argmax)
    average : "binary", "micro", "macro", "weighted" or None (per label)
    pos_label : int, the positive class for ``average="binary"``
    labels : sequence of int, optional; the labels to score (subsets and absent labels allowed)
    zero_division : 0, 1, nan or "warn" (0 with an ``UndefinedMetricWarning``)
    sample_weight : (N,) float, optional
    threshold : float, for 1-D scores
"""


def precision_recall_fscore(y_true, y_pred, *, beta=1.0, average=None, labels=None,
                            pos_label=1, zero_division="warn", sample_weight=None,
                            threshold=0.5):
    """Precision, recall, F-beta and support (scikit-learn's
    ``precision_recall_fscore_support``). With ``average=None`` each is an array over the
    labels and ``support`` counts the true samples per label; otherwise three floats and None.
    """
    counts = _counts(y_true, y_pred, sample_weight, threshold)
    return _prf(counts, float(beta), average, labels, pos_label, zero_division,
                ("precision", "recall", "f-score"))


def precision(y_true, y_pred, *, average="binary", pos_label=1, labels=None,
              zero_division="warn", sample_weight=None, threshold=0.5):
    """Precision ``tp / (tp + fp)`` (scikit-learn's ``precision_score``)."""
    counts = _counts(y_true, y_pred, sample_weight, threshold)
    return _prf(counts, 1.0, average, labels, pos_label, zero_division, ("precision",))[0]


def recall(y_true, y_pred, *, average="binary", pos_label=1, labels=None,
           zero_division="warn", sample_weight=None, threshold=0.5):
    """Recall ``tp / (tp + fn)`` (scikit-learn's ``recall_score``)."""
    counts = _counts(y_true, y_pred, sample_weight, threshold)
    return _prf(counts, 1.0, average, labels, pos_label, zero_division, ("recall",))[1]


def fbeta(y_true, y_pred, beta, *, average="binary", pos_label=1, labels=None,
          zero_division="warn", sample_weight=None, threshold=0.5):
    """F-beta ``(1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp)`` (scikit-learn's ``fbeta_score``)."""
    counts = _counts(y_true, y_pred, sample_weight, threshold)
    return _prf(counts, float(beta), average, labels, pos_label, zero_division, ("f-score",))[2]


def f1(y_true, y_pred, *, average="binary", pos_label=1, labels=None, zero_division="warn",
       sample_weight=None, threshold=0.5):
    """F1, the harmonic mean of precision and recall (scikit-learn's ``f1_score``)."""
    return fbeta(y_true, y_pred, 1.0, average=average, pos_label=pos_label, labels=labels,
                 zero_division=zero_division, sample_weight=sample_weight, threshold=threshold)


for _f in (precision, recall, fbeta, f1):
    _f.__doc__ += _PRF_DOC


# Top-k ------------------------------------------------------------------------------------------

def top_k_accuracy(y_true, scores, *, k=2, sample_weight=None, normalize=True):
    """Fraction of samples whose true class is among the ``k`` highest scores of its row.

    Columns of ``scores`` (N, C) are the classes 0..C-1. Ties rank as in scikit-learn's
    ``top_k_accuracy_score`` (the higher column index first; NaN above every number).
    Unlike scikit-learn, ``y_true`` need not contain every class.
    """
    cuda = A.device_of(y_true=y_true, scores=scores, sample_weight=sample_weight)
    yt = _label_array(y_true, "y_true", cuda)
    s = A.as_array(scores, "scores", cuda)
    A.check_float(s, "scores")
    if s.ndim != 2:
        raise ShapeError(f"scores must be 2-D (N, C); got shape {tuple(s.shape)}")
    n, c = s.shape
    if yt.shape[0] != n:
        raise ShapeError(f"y_true must have one label per row of scores ({n}); got "
                         f"{yt.shape[0]}")
    if n == 0 or c == 0:
        raise ShapeError(f"scores must be non-empty; got shape {tuple(s.shape)}")
    try:
        k = operator.index(k)
    except TypeError:
        raise TypeError(f"k must be an integer; got {type(k).__name__}") from None
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    if k >= c:
        warnings.warn(f"'k' ({k}) greater than or equal to 'n_classes' ({c}) will result in a "
                      "perfect score and is therefore meaningless.", UndefinedMetricWarning,
                      stacklevel=2)
    w, _ = _weights(sample_weight, n, cuda)
    s = A.contiguous_input(s, "scores", cuda)
    status = np.zeros(2)
    no_weight = np.zeros(0)
    stream = _streams.for_arrays(y_true, scores, sample_weight) if cuda else 0
    if cuda:
        status, no_weight = (_streams.to_device(a, stream) for a in (status, no_weight))
    backend(cuda, stream).top_k_hits(status, s, yt, no_weight if w is None else w, k)
    status = _streams.to_host(status, stream) if cuda else status
    if status[1] >= 0:
        bad = int(status[1])
        raise _range_error("y_true", bad, int(_item(yt, bad)), c)
    hits = float(status[0])
    if not normalize:
        return hits
    total = float(n) if w is None else float(_host_sum(w))
    return hits / total


def _host_sum(w):
    return (w.copy_to_host() if hasattr(w, "copy_to_host") else w).sum()


# Streaming --------------------------------------------------------------------------------------

class _DeviceCounts:
    """A ``ConfusionMatrix``'s tables on the GPU: counts (int64) and weighted sums (float64),
    added to by batches queued on any stream, and read back once, when the counts are asked for.
    """

    def __init__(self, k):
        self.k = k
        self.cm = {}  # dtype -> device table
        self.seen = None
        self.integer_weights = True
        self.stream = 0

    def _table(self, dtype):
        if dtype not in self.cm:
            self.cm[dtype] = _streams.to_device(np.zeros((self.k, self.k), dtype), self.stream)
        return self.cm[dtype]

    def add(self, inputs, threshold):
        from . import _device_errors

        yt, yp, w, form, _, int_w, stream = inputs
        if not _streams.same(stream, self.stream):
            if self.seen is not None:  # the tables were last written on another stream
                _streams.wait_for(stream, self.stream)
            self.stream = stream
        if self.seen is None:
            self.seen = _streams.to_device(np.zeros(self.k, np.bool_), stream)
        cm = self._table(np.float64 if w is not None else np.int64)
        self.integer_weights = self.integer_weights and int_w
        k = self.k
        status = _device_errors.log().open(functools.partial(_deferred_label_error, k))
        kernels = backend(True, stream)
        kernel = _count_kernel(kernels, form)
        kernel(cm, self.seen, status, yt, yp, _no_weight() if w is None else w, threshold)
        _device_errors.raise_finished()

    def collect(self):
        """The tables as host ``_Counts`` (waits for their stream; raises a batch's error)."""
        from . import _device_errors

        tables = {dtype: _streams.to_host(t, self.stream) for dtype, t in self.cm.items()}
        seen = (_streams.to_host(self.seen, self.stream) if self.seen is not None
                else np.zeros(self.k, np.bool_))
        _device_errors.raise_finished()  # the stream is done, and with it the batches' checks
        weighted = np.float64 in tables
        cm = sum(tables.values()) if tables else np.zeros((self.k, self.k), np.int64)
        return _Counts(cm, seen, weighted, self.integer_weights)


_NO_WEIGHT = []


def _no_weight():
    """An empty device array standing in for absent weights (nothing to copy, any stream)."""
    if not _NO_WEIGHT:
        from numba import cuda

        _NO_WEIGHT.append(cuda.device_array(0, dtype=np.float64))
    return _NO_WEIGHT[0]


def _deferred_label_error(k, index, largest, seq):
    return (f"y_true and y_pred must hold labels in [0, {k}) (num_classes={k}); got one outside "
            f"at sample {index} of a GPU batch (the largest label in it: {largest}; found on the "
            f"GPU after ConfusionMatrix.update, checked call #{seq}, returned; the batch was not "
            "counted)")


class ConfusionMatrix:
    """Confusion counts accumulated over many batches (or merged across workers), with every
    metric derived from them exactly as the functional API would on the concatenated data.

    >>> cm = ConfusionMatrix(10)
    >>> for y, pred in batches:
    ...     cm.update(y, pred)
    >>> cm.f1(average="macro"), cm.compute()
    """

    def __init__(self, num_classes):
        self.num_classes = _num_classes(num_classes)
        k = self.num_classes
        self._host_counts = _Counts(np.zeros((k, k), np.int64), np.zeros(k, np.bool_), False)
        self._device = None  # GPU batches: _DeviceCounts, folded in when the counts are read

    def update(self, y_true, y_pred, *, sample_weight=None, threshold=0.5):
        """Add one batch. Labels outside [0, num_classes) raise and add nothing.

        GPU batches are counted into tables on the device without waiting for it: a bad label
        adds nothing there, and its error is raised by a later fastml call (the first that sees
        the device done, at the latest the next read of the counts; see
        ``fastml.check_device_errors``)."""
        inputs = _inputs(y_true, y_pred, sample_weight, threshold)
        if inputs[4]:  # cuda
            if self._device is None:
                self._device = _DeviceCounts(self.num_classes)
            self._device.add(inputs, float(threshold))
            return self
        batch = _counts(y_true, y_pred, sample_weight, threshold, self.num_classes,
                        zero_weights=True, inputs=inputs)
        self._add(batch)
        return self

    @property
    def _counts(self):
        """All counts so far, on the host (reading GPU tables waits for their stream)."""
        if self._device is not None:
            batch, self._device = self._device.collect(), None
            self._add(batch)
        return self._host_counts

    def _add(self, other):
        mine = self._host_counts
        if other.weighted and not mine.weighted:
            mine.cm = mine.cm.astype(np.float64)
            mine.weighted = True
            mine.integer_weights = mine.integer_weights and other.integer_weights
        mine.cm += other.cm
        mine.seen |= other.seen
        mine.integer_weights = mine.integer_weights and other.integer_weights

    def merge(self, other):
        """Add another ``ConfusionMatrix``'s counts (e.g. from another worker)."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"other must be a ConfusionMatrix; got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ShapeError(f"other must have num_classes={self.num_classes}; got "
                             f"{other.num_classes}")
        self._add(_Counts(other._counts.cm, other._counts.seen, other._counts.weighted,
                          other._counts.integer_weights))
        return self

    def reset(self):
        if self._device is not None:
            self._device.collect()  # raises a pending error of the batches being dropped
        self.__init__(self.num_classes)

    def compute(self, normalize=None):
        """The (num_classes, num_classes) matrix so far."""
        return _normalized(_table(self._counts, self.num_classes), normalize)

    def accuracy(self):
        return _accuracy(self._counts)

    def precision_recall_fscore(self, *, beta=1.0, average=None, labels=None, pos_label=1,
                                zero_division="warn"):
        return _prf(self._counts, float(beta), average, labels, pos_label, zero_division,
                    ("precision", "recall", "f-score"))

    def precision(self, *, average="binary", pos_label=1, labels=None, zero_division="warn"):
        return _prf(self._counts, 1.0, average, labels, pos_label, zero_division,
                    ("precision",))[0]

    def recall(self, *, average="binary", pos_label=1, labels=None, zero_division="warn"):
        return _prf(self._counts, 1.0, average, labels, pos_label, zero_division,
                    ("recall",))[1]

    def fbeta(self, beta, *, average="binary", pos_label=1, labels=None, zero_division="warn"):
        return _prf(self._counts, float(beta), average, labels, pos_label, zero_division,
                    ("f-score",))[2]

    def f1(self, *, average="binary", pos_label=1, labels=None, zero_division="warn"):
        return self.fbeta(1.0, average=average, pos_label=pos_label, labels=labels,
                          zero_division=zero_division)

    def __repr__(self):
        return f"ConfusionMatrix(num_classes={self.num_classes}, samples={self.compute().sum()})"
