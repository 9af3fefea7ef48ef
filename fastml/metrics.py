"""Classification metrics with scikit-learn's semantics, derived from confusion counts that one
parallel pass computes (``fastml._counts``, ``fastml.kernels.*.confusion``).

Labels are integers in [0, 2**63). Integer ``y_pred`` are labels; float ``y_pred`` are scores:
1-D scores predict class 1 where ``score > threshold``, 2-D scores predict the row argmax (read
in place, no copy). For integer predictions every result equals scikit-learn's, including
``labels`` subsets, labels absent from the data, large and sparse labels, ``zero_division``
(0, 1, nan or "warn") and ``sample_weight`` (finite; negative weights are taken, as there).
Without ``num_classes`` the cost of a call follows the number of distinct labels, at most
16384, not their values.
"""

import functools
import math
import threading
import warnings
from typing import Any, NamedTuple

import numpy as np

from . import _arrays as A
from . import _counts as C
from . import _scalars as S
from . import _streams
from ._dispatch import backend
from .errors import DTypeError, NonFiniteError, ShapeError

__all__ = [
    "ConfusionMatrix", "UndefinedMetricWarning", "accuracy", "confusion_matrix", "f1", "fbeta",
    "precision", "precision_recall_fscore", "recall", "top_k_accuracy",
]

_AVERAGES = (None, "binary", "micro", "macro", "weighted")
_NORMALIZE = (None, "true", "pred", "all")


class UndefinedMetricWarning(UserWarning):
    """A metric divided by zero and was set by ``zero_division="warn"`` (scikit-learn's)."""


# Confusion matrix and accuracy ----------------------------------------------------------------

def _counts(y_true, y_pred, sample_weight, threshold, num_classes=None):
    """The counts of a functional call (arguments validated before any kernel runs)."""
    k = None if num_classes is None else C.num_classes_arg(num_classes)
    return C.counts(C.inputs(y_true, y_pred, sample_weight, threshold), k)


def _normalize_arg(normalize):
    return S.choice(normalize, "normalize", _NORMALIZE)


def _normalized(cm, normalize):
    if normalize is None:
        return cm
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
        present = np.flatnonzero(counts.seen)  # table indices, whatever labels they stand for
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
    normalize = _normalize_arg(normalize)
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
    return 0.0 if isinstance(zero_division, str) else zero_division


def _zero_division_arg(zero_division):
    """"warn", or the float 0.0, 1.0 or nan."""
    if isinstance(zero_division, str) and zero_division == "warn":
        return zero_division
    z = None
    if not isinstance(zero_division, (str, bytes)) and not np.iscomplexobj(zero_division):
        try:
            z = float(zero_division)
        except (TypeError, ValueError, OverflowError):
            pass
    if z is None or not (z in (0.0, 1.0) or math.isnan(z)):
        raise ValueError(f"zero_division must be 0, 1, nan or 'warn'; got "
                         f"{S.shown(zero_division)}")
    return z


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


class _PrfArgs(NamedTuple):
    beta: float
    average: Any  # one of _AVERAGES
    labels: Any  # (L,) int64 or None
    pos_label: Any  # int or None
    zero_division: Any  # "warn", 0.0, 1.0 or nan


def _prf_args(beta, average, labels, pos_label, zero_division):
    """The precision/recall/F arguments, validated before anything is counted."""
    beta = S.real(beta, "beta", low=0.0, expected=">= 0")
    average = S.choice(average, "average", _AVERAGES)
    if isinstance(pos_label, (bool, np.bool_)):
        pos_label = int(pos_label)  # True and False name the labels of boolean data
    elif pos_label is not None:
        pos_label = S.integer(pos_label, "pos_label")
    elif average == "binary":
        raise ValueError("pos_label must be an integer label when average='binary'; got None")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or np.dtype(labels.dtype).kind not in "iu":
            raise DTypeError(f"labels must be a 1-D sequence of integer labels; got "
                             f"{labels.dtype} of shape {labels.shape}")
        if labels.dtype == np.uint64 and labels.size and labels.max() > S.INT64_MAX:
            raise ValueError(f"labels must be integers below 2**63 (int64); got "
                             f"{int(labels.max())}")
        labels = labels.astype(np.int64)
    return _PrfArgs(beta, average, labels, pos_label, _zero_division_arg(zero_division))


def _select_labels(counts, args):
    """scikit-learn's ``_check_set_wise_labels``: the labels to score."""
    average, pos_label = args.average, args.pos_label
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
    if args.labels is None:
        return np.asarray(present, dtype=np.int64)
    return args.labels


def _prf(counts, args, warn_for):
    beta, average, zero_division = args.beta, args.average, args.zero_division
    chosen = _select_labels(counts, args)
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
    y_true : (N,) integer labels in [0, 2**63)
    y_pred : (N,) integer labels, (N,) float32/float64 scores (class 1 where ``> threshold``)
        or (N, C) float32/float64 scores (row argmax)
    average : "binary", "micro", "macro", "weighted" or None (per label)
    pos_label : int, the positive class for ``average="binary"``
    labels : sequence of int, optional; the labels to score (subsets and absent labels allowed)
    zero_division : 0, 1, nan or "warn" (0 with an ``UndefinedMetricWarning``)
    sample_weight : (N,) numbers, optional; NaN or infinite ones raise ``NonFiniteError``,
        negative ones are taken (as in scikit-learn)
    threshold : float (not NaN), for 1-D scores
"""


def precision_recall_fscore(y_true, y_pred, *, beta=1.0, average=None, labels=None,
                            pos_label=1, zero_division="warn", sample_weight=None,
                            threshold=0.5):
    """Precision, recall, F-beta and support (scikit-learn's
    ``precision_recall_fscore_support``). With ``average=None`` each is an array over the
    labels and ``support`` counts the true samples per label; otherwise three floats and None.
    """
    args = _prf_args(beta, average, labels, pos_label, zero_division)
    counts = _counts(y_true, y_pred, sample_weight, threshold)
    return _prf(counts, args, ("precision", "recall", "f-score"))


def precision(y_true, y_pred, *, average="binary", pos_label=1, labels=None,
              zero_division="warn", sample_weight=None, threshold=0.5):
    """Precision ``tp / (tp + fp)`` (scikit-learn's ``precision_score``)."""
    args = _prf_args(1.0, average, labels, pos_label, zero_division)
    counts = _counts(y_true, y_pred, sample_weight, threshold)
    return _prf(counts, args, ("precision",))[0]


def recall(y_true, y_pred, *, average="binary", pos_label=1, labels=None,
           zero_division="warn", sample_weight=None, threshold=0.5):
    """Recall ``tp / (tp + fn)`` (scikit-learn's ``recall_score``)."""
    args = _prf_args(1.0, average, labels, pos_label, zero_division)
    counts = _counts(y_true, y_pred, sample_weight, threshold)
    return _prf(counts, args, ("recall",))[1]


def fbeta(y_true, y_pred, beta, *, average="binary", pos_label=1, labels=None,
          zero_division="warn", sample_weight=None, threshold=0.5):
    """F-beta ``(1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp)`` (scikit-learn's ``fbeta_score``)."""
    args = _prf_args(beta, average, labels, pos_label, zero_division)
    counts = _counts(y_true, y_pred, sample_weight, threshold)
    return _prf(counts, args, ("f-score",))[2]


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
    k = S.integer(k, "k", low=1, high=math.inf, expected=">= 1")
    normalize = S.boolean(normalize, "normalize")
    cuda = A.device_of(y_true=y_true, scores=scores, sample_weight=sample_weight)
    yt = C.label_array(y_true, "y_true", cuda)
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
    if k >= c:
        warnings.warn(f"'k' ({k}) greater than or equal to 'n_classes' ({c}) will result in a "
                      "perfect score and is therefore meaningless.", UndefinedMetricWarning,
                      stacklevel=2)
    w, int_w = C.weights(sample_weight, n, cuda)
    s = A.contiguous_input(s, "scores", cuda)
    total = float(n)
    if w is not None and not cuda:
        total = float(w.sum())  # the denominator, and the proof that every weight is finite
        if not math.isfinite(total):
            C.check_finite(w)
    status = np.zeros(2)
    no_weight = np.zeros(0)
    record = np.full(2, -1, np.int64)
    stream = _streams.for_arrays(y_true, scores, sample_weight) if cuda else 0
    if cuda:
        status, no_weight, record = (_streams.to_device(a, stream)
                                     for a in (status, no_weight, record))
        if w is not None and not int_w:
            from .kernels.cuda import sample_weight as weight_kernels

            weight_kernels.first_non_finite(record, w, stream)
    # A row outranked by at least C - 1 columns still makes the top C: any k >= C counts
    # every row, and min() keeps k within the kernel's int64.
    backend(cuda, stream).top_k_hits(status, s, yt, no_weight if w is None else w, min(k, c))
    if cuda:
        status, record = (_streams.to_host(a, stream) for a in (status, record))
    if record[0] >= 0:
        raise NonFiniteError(C.weight_message(int(record[0]), _WEIGHT_CODES[int(record[1])]))
    if status[1] >= 0:
        bad = int(status[1])
        raise C.range_error("y_true", bad, int(C.item(yt, bad)), c)
    hits = float(status[0])
    if not normalize:
        return hits
    if w is not None and cuda:
        total = float(C.host(w).sum())
    return hits / total


#: ``sample_weight.first_non_finite``'s record codes, as the value in a message.
_WEIGHT_CODES = {0: "nan", 1: "inf", -1: "-inf"}


# Streaming --------------------------------------------------------------------------------------

class _DeviceCounts:
    """A ``ConfusionMatrix``'s tables on the GPU: counts (int64) and weighted sums (float64),
    added to by batches queued on any stream, and read back once, when the counts are asked for.

    Integer counts and integer weights go straight into the tables (the counting kernel adds
    nothing unless every label is valid). Float weights are checked on the device, and their
    batch is counted into a scratch table added to the running one only if they are all finite
    (``fastml.kernels.cuda.sample_weight``). A bad batch is reported like a bad label, by a
    later fastml call (``fastml._device_errors``): the host never waits for the check.
    """

    def __init__(self, k):
        self.k = k
        self.cm = {}  # dtype -> device table
        self.seen = None
        self.batch = None  # (batch table, batch seen) of float-weighted batches, kept zeroed
        self.integer_weights = True
        self.stream = 0

    def _table(self, dtype):
        if dtype not in self.cm:
            self.cm[dtype] = _streams.to_device(np.zeros((self.k, self.k), dtype), self.stream)
        return self.cm[dtype]

    def add(self, inp):
        from . import _device_errors

        stream, w = inp.stream, inp.weight
        if not _streams.same(stream, self.stream):
            if self.seen is not None:  # the tables were last written on another stream
                _streams.wait_for(stream, self.stream)
            self.stream = stream
        if self.seen is None:
            self.seen = _streams.to_device(np.zeros(self.k, np.bool_), stream)
        cm = self._table(np.float64 if w is not None else np.int64)
        self.integer_weights = self.integer_weights and inp.integer_weights
        log = _device_errors.log()
        status = log.open(functools.partial(_deferred_label_error, self.k))
        kernel = C.count_kernel(backend(True, stream), inp.form)
        if w is None or inp.integer_weights:
            kernel(cm, self.seen, status, inp.y_true, inp.y_pred,
                   _no_weight() if w is None else w, inp.threshold)
        else:
            from .kernels.cuda import sample_weight as weight_kernels

            if self.batch is None:
                self.batch = (_streams.to_device(np.zeros((self.k, self.k)), stream),
                              _streams.to_device(np.zeros(self.k, np.bool_), stream))
            batch, batch_seen = self.batch
            record = log.open(_deferred_weight_error, NonFiniteError)
            weight_kernels.first_non_finite(record, w, stream)
            kernel(batch, batch_seen, status, inp.y_true, inp.y_pred, w, inp.threshold)
            weight_kernels.add_batch_if_finite(cm, self.seen, batch, batch_seen, record, stream)
        _device_errors.raise_finished()

    def collect(self):
        """The tables as host ``Counts`` (waits for their stream; raises a batch's error)."""
        from . import _device_errors

        tables = {dtype: _streams.to_host(t, self.stream) for dtype, t in self.cm.items()}
        seen = (_streams.to_host(self.seen, self.stream) if self.seen is not None
                else np.zeros(self.k, np.bool_))
        _device_errors.raise_finished()  # the stream is done, and with it the batches' checks
        weighted = np.float64 in tables
        cm = sum(tables.values()) if tables else np.zeros((self.k, self.k), np.int64)
        return C.Counts(cm, seen, weighted, self.integer_weights)


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


def _deferred_weight_error(index, code, seq):
    return C.weight_message(
        index, f"{_WEIGHT_CODES[code]} in a GPU batch (found on the GPU after "
        f"ConfusionMatrix.update, checked call #{seq}, returned; the batch was not counted)")


class ConfusionMatrix:
    """Confusion counts accumulated over many batches (or merged across workers), with every
    metric derived from them exactly as the functional API would on the concatenated data.

    >>> cm = ConfusionMatrix(10)
    >>> for y, pred in batches:
    ...     cm.update(y, pred)
    >>> cm.f1(average="macro"), cm.compute()
    """

    def __init__(self, num_classes):
        self.num_classes = C.num_classes_arg(num_classes)
        # update, merge, reset and the reads take turns: no batch is lost or half read.
        self._lock = threading.RLock()
        self._clear()

    def _clear(self):
        k = self.num_classes
        self._host_counts = C.Counts(np.zeros((k, k), np.int64), np.zeros(k, np.bool_), False)
        self._device = None  # GPU batches: _DeviceCounts, folded in when the counts are read

    def update(self, y_true, y_pred, *, sample_weight=None, threshold=0.5):
        """Add one batch. Labels outside [0, num_classes) and NaN or infinite weights raise
        and add nothing.

        GPU batches are counted into tables on the device without waiting for it: a bad label
        or weight adds nothing there, and its error is raised by a later fastml call (the first
        that sees the device done, at the latest the next read of the counts; see
        ``fastml.check_device_errors``).

        Thread-safe: batches from several threads are all counted (a CPU batch is counted
        outside the lock, then added under it)."""
        inp = C.inputs(y_true, y_pred, sample_weight, threshold)
        if inp.cuda:
            with self._lock:
                if self._device is None:
                    self._device = _DeviceCounts(self.num_classes)
                self._device.add(inp)
            return self
        batch = C.counts(inp, self.num_classes, zero_weights=True)
        with self._lock:
            self._add(batch)
        return self

    @property
    def _counts(self):
        """A copy of all counts so far, on the host (reading GPU tables waits for their
        stream)."""
        with self._lock:
            if self._device is not None:
                batch, self._device = self._device.collect(), None
                self._add(batch)
            c = self._host_counts
            return C.Counts(c.cm.copy(), c.seen.copy(), c.weighted, c.integer_weights)

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
        theirs = other._counts  # a copy, taken under other's lock alone
        with self._lock:
            self._add(theirs)
        return self

    def reset(self):
        with self._lock:
            if self._device is not None:
                self._device.collect()  # raises a pending error of the batches being dropped
            self._clear()

    def compute(self, normalize=None):
        """The (num_classes, num_classes) matrix so far."""
        normalize = _normalize_arg(normalize)
        return _normalized(_table(self._counts, self.num_classes), normalize)

    def accuracy(self):
        return _accuracy(self._counts)

    def precision_recall_fscore(self, *, beta=1.0, average=None, labels=None, pos_label=1,
                                zero_division="warn"):
        args = _prf_args(beta, average, labels, pos_label, zero_division)
        return _prf(self._counts, args, ("precision", "recall", "f-score"))

    def precision(self, *, average="binary", pos_label=1, labels=None, zero_division="warn"):
        args = _prf_args(1.0, average, labels, pos_label, zero_division)
        return _prf(self._counts, args, ("precision",))[0]

    def recall(self, *, average="binary", pos_label=1, labels=None, zero_division="warn"):
        args = _prf_args(1.0, average, labels, pos_label, zero_division)
        return _prf(self._counts, args, ("recall",))[1]

    def fbeta(self, beta, *, average="binary", pos_label=1, labels=None, zero_division="warn"):
        args = _prf_args(beta, average, labels, pos_label, zero_division)
        return _prf(self._counts, args, ("f-score",))[2]

    def f1(self, *, average="binary", pos_label=1, labels=None, zero_division="warn"):
        return self.fbeta(1.0, average=average, pos_label=pos_label, labels=labels,
                          zero_division=zero_division)

    def __repr__(self):
        return f"ConfusionMatrix(num_classes={self.num_classes}, samples={self.compute().sum()})"
