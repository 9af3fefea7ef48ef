"""Classification metrics on the CPU: equal to scikit-learn's and to the float64 reference.

Every comparison runs against ``tests/reference/metrics.py`` (plain NumPy, no scikit-learn) and,
where scikit-learn is installed, against scikit-learn itself: values, result dtypes, warnings
(raised exactly when scikit-learn raises one, with its message) and errors. Random data spans
1 to ~10^5 samples and 1, 2, 3, 10 and 70 classes (70 is above the API's first 64-label table,
so those calls take the second counting pass). The CUDA path is in ``test_metrics_cuda.py``.
"""

import math
import warnings

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastml
from fastml import metrics as M
from fastml.errors import DeviceError, DTypeError, ShapeError
from fastml.kernels import cpu as K

from .helpers import assert_bitwise_equal
from .reference import metrics as R

# fastml, like scikit-learn, warns about a 1 x 1 confusion matrix; tests that compare warnings
# record them themselves (``run``).
pytestmark = pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")

AVERAGES = ["binary", "micro", "macro", "weighted", None]
ZERO_DIVISIONS = ["warn", 0, 1, np.nan]
SIZES = [1, 2, 7, 100, 1009, 65_537, 100_003]
CLASSES = [1, 2, 3, 10, 70]
WEIGHTS = [None, "float", "int"]
RTOL = 1e-9  # weighted sums are added in another order than scikit-learn's


def sklearn_metrics():
    return pytest.importorskip("sklearn.metrics")


def run(fn, *args, **kwargs):
    """``(result or the exception raised, [(warning category name, message), ...])``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn(*args, **kwargs)
        except (ValueError, TypeError) as exc:
            result = exc
    return result, sorted((w.category.__name__, str(w.message)) for w in caught)


def assert_same(got, want, name="result", rtol=RTOL):
    """Equal values (NaN matching NaN), shapes and, for arrays, dtypes."""
    if isinstance(want, tuple):
        assert isinstance(got, tuple) and len(got) == len(want), f"{name}: {got!r} vs {want!r}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{name}[{i}]", rtol)
        return
    if want is None:
        assert got is None, f"{name}: {got!r}, want None"
        return
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), f"{name}: {type(got).__name__}, want an array"
        assert got.shape == want.shape, f"{name}: shape {got.shape}, want {want.shape}"
        assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, want {want.dtype}"
    else:
        assert isinstance(got, float), f"{name}: {type(got).__name__}, want float"
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               rtol=rtol, atol=0, equal_nan=True, err_msg=name)


def sk_warnings(caught):
    """scikit-learn's warnings under fastml's category names."""
    return sorted((c.replace("UndefinedMetricWarning", M.UndefinedMetricWarning.__name__), m)
                  for c, m in caught)


def um_warnings(messages):
    return sorted(("UndefinedMetricWarning", m) if not m.startswith("Note that") else
                  ("UserWarning", m) for m in messages)


def labels_data(n, c, seed=0, weights=None):
    rng = np.random.default_rng(seed + 1000 * c + n)
    y_true = rng.integers(0, c, n)
    # Mostly right, as a classifier would be; every class still gets some wrong predictions.
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, c, n))
    w = None
    if weights == "float":
        w = rng.uniform(0.0, 2.0, n)
    elif weights == "int":
        w = rng.integers(0, 4, n)
        w[0] = 1  # never all zero (scikit-learn rejects that; tested apart)
    return y_true, y_pred, w


# ---------------------------------------------------------------------------------------------
# The CPU kernels themselves


def kernel_run(kernel, y_true, y_pred, k, weight=None, threshold=0.5, cm=None):
    cm = np.zeros((k, k), np.int64 if weight is None else np.float64) if cm is None else cm
    seen = np.zeros(k, np.bool_)
    status = np.full(2, -7, np.int64)
    kernel(cm, seen, status, y_true, y_pred, np.zeros(0) if weight is None else weight,
           threshold)
    return cm, seen, status


@pytest.mark.parametrize("n", [0, 1, 5, 4096, 100_003])
@pytest.mark.parametrize("k", [1, 3, 64, 70])
def test_kernel_counts(n, k):
    rng = np.random.default_rng(n + k)
    y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
    w = rng.standard_normal(n)
    want = np.zeros((k, k), np.int64)
    np.add.at(want, (y_true, y_pred), 1)
    want_w = np.zeros((k, k))
    np.add.at(want_w, (y_true, y_pred), w)
    seen = np.zeros(k, np.bool_)
    seen[y_true] = seen[y_pred] = True
    top = max(y_true.max(), y_pred.max()) if n else 0
    for dtype in (np.int64, np.int32):
        cm, s, status = kernel_run(K.confusion_counts, y_true.astype(dtype), y_pred.astype(dtype),
                                   k)
        np.testing.assert_array_equal(cm, want)
        np.testing.assert_array_equal(s, seen)
        assert status.tolist() == [-1, top]
    cm, s, status = kernel_run(K.confusion_counts, y_true, y_pred, k, weight=w)
    np.testing.assert_allclose(cm, want_w, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(s, seen)
    assert status.tolist() == [-1, top]


@pytest.mark.parametrize("n", [9, 100_003])
@pytest.mark.parametrize("weighted", [False, True])
def test_kernel_bad_labels_add_nothing(n, weighted):
    rng = np.random.default_rng(n)
    k = 5
    y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
    w = rng.random(n) if weighted else None
    before = np.arange(k * k, dtype=np.float64 if weighted else np.int64).reshape(k, k)
    for name, where, value in [("y_true", n - 1, -1), ("y_pred", n // 2, k), ("y_true", 3, 99),
                               ("y_pred", 0, -(2**40))]:
        yt, yp = y_true.copy(), y_pred.copy()
        (yt if name == "y_true" else yp)[where] = value
        yt[n - 2] = k + 7  # a later bad label: the first one is reported
        cm, seen, status = kernel_run(K.confusion_counts, yt, yp, k, weight=w, cm=before.copy())
        assert status[0] == min(where, n - 2)
        assert status[1] == max(k + 7, value, y_true.max(), y_pred.max())
        np.testing.assert_array_equal(cm, before)
        assert not seen.any()


def test_kernel_prediction_forms():
    rng = np.random.default_rng(3)
    n, c = 5000, 6
    y_true = rng.integers(0, c, n)
    scores = rng.integers(0, 3, (n, c)).astype(np.float32)  # many ties
    scores[rng.random(n) < 0.05, rng.integers(0, c)] = np.nan
    pred = R.argmax_labels(scores)
    cm, _, status = kernel_run(K.confusion_counts_argmax, y_true, scores, c)
    want = np.zeros((c, c), np.int64)
    np.add.at(want, (y_true, pred), 1)
    np.testing.assert_array_equal(cm, want)
    s = rng.random(n)
    s[::7] = 0.25  # == threshold: not above it
    s[::11] = np.nan
    cm, _, status = kernel_run(K.confusion_counts_thresholded, y_true % 2, s, 2, threshold=0.25)
    want = np.zeros((2, 2), np.int64)
    np.add.at(want, (y_true % 2, (s > 0.25).astype(np.int64)), 1)
    np.testing.assert_array_equal(cm, want)
    assert status.tolist() == [-1, 1]


def test_kernel_embeds_in_user_njit():
    # The kernels are plain @njit functions: callable from user code compiled by numba.
    @numba.njit
    def user(cm, seen, status, y_true, y_pred):
        K.confusion_counts(cm, seen, status, y_true, y_pred, np.zeros(0), 0.5)
        return cm.sum()

    y = np.array([0, 1, 1, 2])
    assert user(np.zeros((3, 3), np.int64), np.zeros(3, np.bool_), np.zeros(2, np.int64),
                y, y) == 4


# ---------------------------------------------------------------------------------------------
# Against scikit-learn and the reference, on random data


def _check_prf(y_true, y_pred, w, average, zero_division, labels=None, pos_label=1,
               sk=None, singles=True):
    """One precision_recall_fscore call and (``singles``) the three single-metric functions."""
    kw = dict(average=average, zero_division=zero_division, sample_weight=w, labels=labels,
              pos_label=pos_label)
    got, got_warned = run(M.precision_recall_fscore, y_true, y_pred, **kw)
    present = R.present_labels(y_true, y_pred)
    if average == "binary" and len(present) > 2:
        assert isinstance(got, ValueError) and "Target is multiclass" in str(got)
    elif average == "binary" and len(present) == 2 and pos_label not in present:
        assert isinstance(got, ValueError) and "is not a valid label" in str(got)
    else:
        want, warned = R.precision_recall_fscore(y_true, y_pred, **kw)
        assert_same(got, want, f"prf {kw}")
        assert got_warned == um_warnings(warned), kw
    if sk is not None:
        want, warned = run(sk.precision_recall_fscore_support, y_true, y_pred, **kw)
        if isinstance(want, Exception):
            assert type(got) is type(want), f"{kw}: {got!r}, scikit-learn {want!r}"
        else:
            assert_same(got, want, f"prf {kw}")
            assert got_warned == sk_warnings(warned), kw
    for mine, theirs in ((M.precision, "precision_score"), (M.recall, "recall_score"),
                         (M.f1, "f1_score")) if singles else ():
        got1, got1_warned = run(mine, y_true, y_pred, **kw)
        index = {"precision": 0, "recall": 1, "f1": 2}[mine.__name__]
        if isinstance(got, Exception):
            assert type(got1) is type(got)
            continue
        assert_same(got1, got[index], f"{mine.__name__} {kw}")
        if sk is not None:
            want1, warned1 = run(getattr(sk, theirs), y_true, y_pred, **kw)
            assert_same(got1, want1, f"{mine.__name__} {kw}")
            assert got1_warned == sk_warnings(warned1), (mine.__name__, kw)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("c", CLASSES)
def test_prf_random(n, c, one_thread):
    try:
        import sklearn.metrics as sk
    except ImportError:  # the reference still runs
        sk = None
    for weights in WEIGHTS:
        y_true, y_pred, w = labels_data(n, c, weights=weights)
        for average in AVERAGES:
            for zero_division in ZERO_DIVISIONS:
                if n > 5000 and zero_division not in ("warn", 1):
                    continue  # large inputs: the counts matter, not every option again
                _check_prf(y_true, y_pred, w, average, zero_division, sk=sk,
                           singles=n <= 5000)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("c", CLASSES)
@pytest.mark.parametrize("weights", WEIGHTS)
def test_confusion_matrix_and_accuracy_random(n, c, weights, one_thread):
    y_true, y_pred, w = labels_data(n, c, weights=weights)
    for normalize in (None, "true", "pred", "all"):
        got = M.confusion_matrix(y_true, y_pred, sample_weight=w, normalize=normalize)
        assert_same(got, R.confusion_matrix(y_true, y_pred, sample_weight=w,
                                            normalize=normalize), f"cm {normalize}")
    got = M.confusion_matrix(y_true, y_pred, sample_weight=w, num_classes=c + 2)
    assert_same(got, R.confusion_matrix(y_true, y_pred, labels=range(c + 2), sample_weight=w))
    assert_same(M.accuracy(y_true, y_pred, sample_weight=w),
                R.accuracy(y_true, y_pred, sample_weight=w))


@pytest.mark.parametrize("n", [1, 100, 100_003])
@pytest.mark.parametrize("c", CLASSES)
@pytest.mark.parametrize("weights", WEIGHTS)
def test_confusion_matrix_and_accuracy_sklearn(n, c, weights, one_thread):
    sk = sklearn_metrics()
    y_true, y_pred, w = labels_data(n, c, weights=weights)
    for normalize in (None, "true", "pred", "all"):
        got, warned = run(M.confusion_matrix, y_true, y_pred, sample_weight=w,
                          normalize=normalize)
        want, their = run(sk.confusion_matrix, y_true, y_pred, sample_weight=w,
                          normalize=normalize)
        assert_same(got, want, f"cm {normalize}")
        # scikit-learn warns about a 1 x 1 matrix (and names its `labels` for num_classes).
        assert [c for c, _ in warned] == [c for c, _ in their]
    assert_same(M.confusion_matrix(y_true, y_pred, sample_weight=w, num_classes=c + 2),
                sk.confusion_matrix(y_true, y_pred, sample_weight=w, labels=range(c + 2)))
    assert_same(M.accuracy(y_true, y_pred, sample_weight=w),
                sk.accuracy_score(y_true, y_pred, sample_weight=w))


@pytest.mark.parametrize("weights", WEIGHTS)
def test_labels_subsets_and_absent(weights, one_thread):
    try:
        import sklearn.metrics as sk
    except ImportError:
        sk = None
    y_true, y_pred, w = labels_data(500, 6, weights=weights)
    y_pred[y_pred == 4] = 5  # label 4 only in y_true
    for labels in ([2, 0], [0, 1, 2, 3, 4, 5], [5], [7], [3, 99, 1], [6, 0, 2],
                   np.array([1, 4], np.int32), [-1, 1]):
        for average in ("micro", "macro", "weighted", None):
            for zero_division in ("warn", np.nan):
                _check_prf(y_true, y_pred, w, average, zero_division, labels=labels, sk=sk)


def test_pos_label(one_thread):
    try:
        import sklearn.metrics as sk
    except ImportError:
        sk = None
    rng = np.random.default_rng(5)
    y_true, y_pred = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    for pos_label in (0, 1):
        _check_prf(y_true, y_pred, None, "binary", "warn", pos_label=pos_label, sk=sk)
    a, b = y_true * 4 + 3, y_pred * 4 + 3  # labels {3, 7}
    for pos_label in (3, 7):
        _check_prf(a, b, None, "binary", "warn", pos_label=pos_label, sk=sk)
    with pytest.raises(ValueError, match=r"pos_label=1 is not a valid label.*\[3, 7\]"):
        M.f1(a, b)
    # One class only: pos_label need not be present (precision and recall are ill-defined).
    for pos_label in (1, 2):
        _check_prf(np.full(9, 2), np.full(9, 2), None, "binary", "warn", pos_label=pos_label,
                   sk=sk)
    # pos_label with another average: ignored, with scikit-learn's UserWarning.
    _check_prf(y_true, y_pred, None, "macro", "warn", pos_label=0, sk=sk)


@pytest.mark.parametrize("zero_division", ZERO_DIVISIONS)
def test_documented_edge_cases(zero_division, one_thread):
    try:
        import sklearn.metrics as sk
    except ImportError:
        sk = None
    cases = [
        (np.zeros(6, np.int64), np.zeros(6, np.int64)),  # all negative (binary): tp = 0
        (np.array([0, 0, 1]), np.array([0, 0, 0])),  # never predicted positive
        (np.array([0, 0, 0]), np.array([1, 0, 0])),  # no true positive
        (np.full(4, 3), np.full(4, 3)),  # a single class
        (np.array([0]), np.array([1])),
        (np.array([0, 1, 2, 3]), np.array([1, 2, 3, 0])),  # every prediction wrong
    ]
    for y_true, y_pred in cases:
        for average in AVERAGES:
            _check_prf(y_true, y_pred, None, average, zero_division, sk=sk)
            _check_prf(y_true, y_pred, None, average, zero_division, labels=[0, 5], sk=sk)
    for beta in (0.0, 0.5, 2.0, math.inf):
        y_true, y_pred, _ = labels_data(200, 4)
        got = M.precision_recall_fscore(y_true, y_pred, beta=beta, average="macro")
        want, _ = R.precision_recall_fscore(y_true, y_pred, beta=beta, average="macro")
        assert_same(got, want, f"beta={beta}")
        if sk is not None and not math.isinf(beta):
            assert_same(M.fbeta(y_true, y_pred, beta, average=None),
                        sk.fbeta_score(y_true, y_pred, beta=beta, average=None))


def test_sample_weight_dtypes(one_thread):
    sk = sklearn_metrics()
    y_true, y_pred, _ = labels_data(300, 4)
    rng = np.random.default_rng(0)
    for w in (rng.integers(0, 5, 300), rng.integers(0, 5, 300).astype(np.uint8),
              rng.random(300) < 0.5, rng.random(300), rng.random(300).astype(np.float32)):
        got = M.confusion_matrix(y_true, y_pred, sample_weight=w)
        want = sk.confusion_matrix(y_true, y_pred, sample_weight=w)
        assert_same(got, want, f"weights {w.dtype}")
        got = M.precision_recall_fscore(y_true, y_pred, sample_weight=w)
        assert_same(got, sk.precision_recall_fscore_support(y_true, y_pred, sample_weight=w))
    # All weights 0: scikit-learn refuses them, and so does fastml.
    for fn in (M.confusion_matrix, M.accuracy, M.f1):
        with pytest.raises(ValueError, match="sample_weight must contain at least one non-zero"):
            fn(y_true, y_pred, sample_weight=np.zeros(300))
    # Weights that cancel are not all zero.
    w = np.zeros(300)
    w[:2] = [1.0, -1.0]
    y = np.zeros(300, np.int64)
    assert_same(M.confusion_matrix(y, y, sample_weight=w),
                sk.confusion_matrix(y, y, sample_weight=w))


def test_float_predictions(one_thread):
    try:
        import sklearn.metrics as sk
    except ImportError:
        sk = None
    rng = np.random.default_rng(8)
    n = 2000
    y_true = rng.integers(0, 2, n)
    for dtype in (np.float32, np.float64):
        scores = rng.random(n).astype(dtype)
        scores[::9] = dtype(0.5)  # == threshold: predicted 0
        scores[::13] = np.nan  # NaN > t is false: predicted 0
        for threshold in (0.5, 0.1, 0.0):
            labels = (scores > threshold).astype(np.int64)
            for average in ("binary", "macro"):
                got = M.precision_recall_fscore(y_true, scores, average=average,
                                                threshold=threshold)
                want, _ = R.precision_recall_fscore(y_true, labels, average=average)
                assert_same(got, want)
                if sk is not None:
                    assert_same(got, sk.precision_recall_fscore_support(y_true, labels,
                                                                        average=average))
            assert_same(M.confusion_matrix(y_true, scores, threshold=threshold),
                        R.confusion_matrix(y_true, labels))
            assert_same(M.accuracy(y_true, scores, threshold=threshold),
                        R.accuracy(y_true, labels))
    y_true = rng.integers(0, 5, n)
    for dtype in (np.float32, np.float64):
        scores = rng.integers(0, 3, (n, 5)).astype(dtype)  # ties: the first maximum wins
        scores[::17, 3] = np.nan  # NaN: the first NaN wins
        scores[5, :] = np.nan
        pred = R.argmax_labels(scores)
        for average in ("micro", "macro", None):
            got = M.precision_recall_fscore(y_true, scores, average=average)
            want, _ = R.precision_recall_fscore(y_true, pred, average=average)
            assert_same(got, want)
        assert_same(M.confusion_matrix(y_true, scores), R.confusion_matrix(y_true, pred))
        # Non-contiguous scores are read through a copy, with the same result.
        wide = np.repeat(scores, 2, axis=1)[:, ::2]
        assert_same(M.confusion_matrix(y_true, wide), R.confusion_matrix(y_true, pred))
    # A 2-D score table wider than 64 columns: the first table is sized to the columns.
    scores = rng.random((300, 80))
    y = rng.integers(0, 80, 300)
    assert_same(M.confusion_matrix(y, scores), R.confusion_matrix(y, R.argmax_labels(scores)))


def test_bool_and_narrow_labels(one_thread):
    rng = np.random.default_rng(2)
    y_true, y_pred = rng.random(200) < 0.4, rng.random(200) < 0.5
    yt, yp = y_true.astype(np.int64), y_pred.astype(np.int64)
    assert_same(M.confusion_matrix(y_true, y_pred), R.confusion_matrix(yt, yp))
    assert_same(M.f1(y_true, y_pred), R.precision_recall_fscore(yt, yp, average="binary")[0][2])
    for dtype in (np.int32, np.uint8):  # (each label dtype compiles the kernel again)
        assert_same(M.confusion_matrix(yt.astype(dtype), yp.astype(dtype)),
                    R.confusion_matrix(yt, yp))
    sk = pytest.importorskip("sklearn.metrics")
    assert_same(M.confusion_matrix(y_true, y_pred), sk.confusion_matrix(y_true, y_pred))


def test_torch_cpu_tensors():
    torch = pytest.importorskip("torch")
    y_true, y_pred, w = labels_data(500, 4, weights="float")
    got = M.precision_recall_fscore(torch.from_numpy(y_true), torch.from_numpy(y_pred),
                                    sample_weight=torch.from_numpy(w), average="macro")
    assert_same(got, M.precision_recall_fscore(y_true, y_pred, sample_weight=w,
                                               average="macro"))


# ---------------------------------------------------------------------------------------------
# Top-k accuracy


def topk_data(n, c, seed=0):
    rng = np.random.default_rng(seed + n + c)
    scores = rng.integers(0, 4, (n, c)).astype(np.float64)  # many ties
    scores[rng.random((n, c)) < 0.03] = np.nan
    return rng.integers(0, c, n), scores


@pytest.mark.parametrize("n,c", [(1, 3), (7, 3), (500, 4), (2000, 10), (300, 70), (20_000, 5)])
def test_top_k_random(n, c, one_thread):
    try:
        import sklearn.metrics as sk
    except ImportError:
        sk = None
    y_true, scores = topk_data(n, c)
    finite = np.nan_to_num(scores, nan=1.5)  # scikit-learn refuses NaN scores
    w = np.random.default_rng(1).random(n)
    for k in (1, 2, c - 1):
        for weight in (None, w):
            for normalize in (True, False):
                got = M.top_k_accuracy(y_true, scores, k=k, sample_weight=weight,
                                       normalize=normalize)
                want = R.top_k_accuracy(y_true, scores, k, weight, normalize)
                assert_same(got, want, f"k={k}")
                if sk is not None:
                    got = M.top_k_accuracy(y_true, finite, k=k, sample_weight=weight,
                                           normalize=normalize)
                    their = sk.top_k_accuracy_score(y_true, finite, k=k, labels=np.arange(c),
                                                    sample_weight=weight, normalize=normalize)
                    assert_same(got, their, f"k={k} sklearn")
    for dtype in (np.float32,):
        got = M.top_k_accuracy(y_true, scores.astype(dtype), k=2)
        assert_same(got, R.top_k_accuracy(y_true, scores, 2))


def test_top_k_ties_and_warning():
    # Equal scores rank the higher column first (scikit-learn's reversed stable argsort).
    scores = np.array([[1.0, 1.0, 1.0], [0.0, 2.0, 2.0], [np.nan, 5.0, 1.0], [1.0, 1.0, np.nan]])
    y_true = np.array([0, 1, 0, 1])
    assert M.top_k_accuracy(y_true, scores, k=1) == 0.25  # only row 2: NaN ranks first
    assert M.top_k_accuracy(y_true, scores, k=2) == 0.75  # rows 1, 2, 3
    sk = None
    try:
        import sklearn.metrics as sk
    except ImportError:
        pass
    finite = np.nan_to_num(scores, nan=9.0)  # scikit-learn refuses NaN: put 9 in its place
    for k in (1, 2):
        assert M.top_k_accuracy(y_true, scores, k=k) == R.top_k_accuracy(y_true, scores, k)
        assert M.top_k_accuracy(y_true, finite, k=k) == R.top_k_accuracy(y_true, scores, k)
        if sk is not None:
            assert M.top_k_accuracy(y_true, finite, k=k) == sk.top_k_accuracy_score(
                y_true, finite, k=k, labels=[0, 1, 2])
    for k in (3, 4):
        got, warned = run(M.top_k_accuracy, y_true, scores, k=k)
        assert got == 1.0
        msg = (f"'k' ({k}) greater than or equal to 'n_classes' (3) will result in a perfect "
               "score and is therefore meaningless.")
        assert warned == [("UndefinedMetricWarning", msg)]
        if sk is not None:
            _, their = run(sk.top_k_accuracy_score, y_true, finite, k=k, labels=[0, 1, 2])
            assert warned == sk_warnings(their)
    _, warned = run(M.top_k_accuracy, y_true, scores, k=2)
    assert warned == []


def test_top_k_bad_input():
    y, s = np.array([0, 1, 2]), np.zeros((3, 3))
    with pytest.raises(ShapeError, match=r"y_true\[1\] = 3"):
        M.top_k_accuracy(np.array([0, 3, -1]), s)
    with pytest.raises(ShapeError, match=r"y_true\[2\] = -1"):
        M.top_k_accuracy(np.array([0, 1, -1]), s)
    with pytest.raises(ShapeError, match="scores must be 2-D"):
        M.top_k_accuracy(y, np.zeros((3, 3, 1)))
    with pytest.raises(ShapeError, match="one label per row"):
        M.top_k_accuracy(y[:2], s)
    with pytest.raises(ValueError, match="k must be >= 1"):
        M.top_k_accuracy(y, s, k=0)
    with pytest.raises(DTypeError):
        M.top_k_accuracy(y, s.astype(np.int64))
    with pytest.raises(DTypeError):
        M.top_k_accuracy(y.astype(np.float64), s)
    with pytest.raises(ShapeError, match="non-empty"):
        M.top_k_accuracy(y[:0], s[:0])


# ---------------------------------------------------------------------------------------------
# Determinism and streaming


def test_weighted_counts_bitwise_reproducible(restore_num_threads):
    # 300_007 samples: 9 chunks, so the 1- and 2-thread runs split the work differently.
    y_true, y_pred, w = labels_data(300_007, 10, weights="float")
    w = w * 1e3 + np.random.default_rng(0).standard_normal(w.size) * 1e-3  # rounding matters
    runs = []
    for threads in (1, 2, 1, min(2, restore_num_threads)):
        numba.set_num_threads(threads)
        runs.append((M.confusion_matrix(y_true, y_pred, sample_weight=w),
                     M.precision_recall_fscore(y_true, y_pred, sample_weight=w, average=None)))
    for cm, prf in runs[1:]:
        assert_bitwise_equal(cm, runs[0][0], "confusion matrix")
        for got, want in zip(prf, runs[0][1], strict=True):
            assert_bitwise_equal(got, want, "prf")
    scores = np.random.default_rng(1).random((50_001, 7))
    y = np.random.default_rng(2).integers(0, 7, 50_001)
    results = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        results.append(M.top_k_accuracy(y, scores, k=3, sample_weight=w[:50_001]))
    assert results[0] == results[1]


@pytest.mark.parametrize("weights", [None, "float"])
def test_streaming_equals_one_shot(weights, one_thread):
    y_true, y_pred, w = labels_data(10_007, 12, weights=weights)
    k = 14
    cm = M.ConfusionMatrix(k)
    halves = [M.ConfusionMatrix(k), M.ConfusionMatrix(k)]
    bounds = [0, 1, 2, 100, 101, 5000, 5003, 9999, 10_007]
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        sw = None if w is None else w[lo:hi]
        cm.update(y_true[lo:hi], y_pred[lo:hi], sample_weight=sw)
        halves[i >= 4].update(y_true[lo:hi], y_pred[lo:hi], sample_weight=sw)
    merged = halves[0].merge(halves[1])
    want = M.confusion_matrix(y_true, y_pred, num_classes=k, sample_weight=w)
    for streamed in (cm, merged):
        np.testing.assert_allclose(streamed.compute(), want, rtol=1e-12)
        assert streamed.compute().dtype == want.dtype
        for average in ("micro", "macro", "weighted", None):
            assert_same(streamed.precision_recall_fscore(average=average),
                        M.precision_recall_fscore(y_true, y_pred, sample_weight=w,
                                                  average=average), rtol=1e-12)
            assert_same(streamed.f1(average=average),
                        M.f1(y_true, y_pred, sample_weight=w, average=average), rtol=1e-12)
        assert_same(streamed.accuracy(), M.accuracy(y_true, y_pred, sample_weight=w),
                    rtol=1e-12)
        for normalize in ("true", "pred", "all"):
            np.testing.assert_allclose(streamed.compute(normalize), M.confusion_matrix(
                y_true, y_pred, num_classes=k, sample_weight=w, normalize=normalize),
                rtol=1e-12)


def test_streaming_rejected_update_changes_nothing():
    cm = M.ConfusionMatrix(4)
    cm.update(np.array([0, 1, 2, 3]), np.array([0, 1, 1, 3]))
    before = cm.compute().copy()
    with pytest.raises(ShapeError, match=r"y_pred\[2\] = 4"):
        cm.update(np.array([0, 1, 2, 3]), np.array([0, 1, 4, 5]))
    with pytest.raises(ShapeError, match=r"y_true\[1\] = -1"):
        cm.update(np.array([0, -1, 2, 3]), np.array([0, 1, 2, 3]), sample_weight=np.ones(4))
    np.testing.assert_array_equal(cm.compute(), before)
    assert cm.compute().dtype == np.int64  # the rejected weighted batch did not convert it
    # A batch whose weights are all 0 is fine in a stream (it adds nothing).
    cm.update(np.array([0]), np.array([1]), sample_weight=np.zeros(1))
    np.testing.assert_array_equal(cm.compute(), before)
    with pytest.raises(ShapeError, match="other must have num_classes=4; got 3"):
        cm.merge(M.ConfusionMatrix(3))
    cm.reset()
    assert cm.compute().sum() == 0


# ---------------------------------------------------------------------------------------------
# Large and sparse labels: counted in the space of the labels present


def sparse_labels(n, spread, seed=0):
    """Five labels ``spread`` apart (0, spread, ..., 4 spread), mostly predicted right, with one
    label only in y_true (``4 spread + 1``) and one only in y_pred (``3 spread + 7``)."""
    rng = np.random.default_rng(seed + n)
    y_true = rng.integers(0, 5, n) * spread
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 5, n) * spread)
    y_true[n // 3] = 4 * spread + 1
    y_pred[n // 2] = 3 * spread + 7
    return y_true, y_pred


# 16383 and 8191: one large label among small ones (the dense table was quadratic in it); 1000:
# a moderate range (presence table); 2**40 .. 2**62: ranges only a sort can compact.
SPREADS = [16383 // 4, 1000, 2**40, 2**61 - 1]


@pytest.mark.parametrize("spread", SPREADS)
@pytest.mark.parametrize("weights", WEIGHTS)
def test_sparse_labels_equal_sklearn(spread, weights, one_thread):
    sk = sklearn_metrics()
    n = 3001
    y_true, y_pred = sparse_labels(n, spread)
    _, _, w = labels_data(n, 5, weights=weights)
    present = np.union1d(y_true, y_pred)
    assert_same(M.confusion_matrix(y_true, y_pred, sample_weight=w),
                sk.confusion_matrix(y_true, y_pred, sample_weight=w), "cm")
    for normalize in ("true", "pred", "all"):
        assert_same(M.confusion_matrix(y_true, y_pred, sample_weight=w, normalize=normalize),
                    sk.confusion_matrix(y_true, y_pred, sample_weight=w, normalize=normalize),
                    f"cm {normalize}")
    assert_same(M.accuracy(y_true, y_pred, sample_weight=w),
                sk.accuracy_score(y_true, y_pred, sample_weight=w), "accuracy")
    subsets = [None, present[::-2].tolist(), [int(present[-1]), 5, 0, 3 * spread + 8]]
    for labels in subsets:
        for average in ("micro", "macro", "weighted", None):
            _check_prf(y_true, y_pred, w, average, "warn", labels=labels, sk=sk,
                       singles=labels is None)
    # Two large labels: average="binary" with either as pos_label.
    yt, yp = (np.where(a == 0, 2**62, 2**40) for a in (y_true % 2, y_pred % 2))
    for pos_label in (2**62, 2**40):
        _check_prf(yt, yp, w, "binary", "warn", pos_label=pos_label, sk=sk)
    with pytest.raises(ValueError, match=r"pos_label=1 is not a valid label"):
        M.f1(yt, yp)


def test_sparse_labels_with_scores(one_thread):
    sk = sklearn_metrics()
    rng = np.random.default_rng(6)
    n = 500
    scores = rng.random((n, 4))
    y_true = rng.integers(0, 4, n)
    y_true[::50] = 2**50  # a true class no column predicts
    pred = scores.argmax(axis=1)
    assert_same(M.confusion_matrix(y_true, scores), sk.confusion_matrix(y_true, pred))
    for average in ("micro", "macro", "weighted", None):
        assert_same(M.precision_recall_fscore(y_true, scores, average=average, zero_division=0),
                    sk.precision_recall_fscore_support(y_true, pred, average=average,
                                                       zero_division=0), average)
    s = rng.random(n)
    y2 = (s > 0.5).astype(np.int64)
    y2[7] = 16383
    assert_same(M.confusion_matrix(y2, s), sk.confusion_matrix(y2, (s > 0.5).astype(np.int64)))
    assert_same(M.accuracy(y2, s), sk.accuracy_score(y2, (s > 0.5).astype(np.int64)))


def test_sparse_labels_cost_follows_distinct_labels(monkeypatch, one_thread):
    """Tables follow the number of distinct labels, never the largest value: 1,000 samples
    with one label of 16383 count into an 11 x 11 table, not a 16384 x 16384 one."""
    from fastml import _counts

    sizes = []
    real = _counts.run_counts
    monkeypatch.setattr(_counts, "run_counts", lambda inp, k: sizes.append(k) or real(inp, k))
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 10, 1000)
    y_pred = y_true.copy()
    y_true[500] = 16383
    assert M.accuracy(y_true, y_pred) == 0.999
    assert sizes == [64, 11]  # the first 64 x 64 pass, then the 11 labels present
    for top in (2**62, 2**63 - 1):
        sizes.clear()
        y_true[500] = top
        assert M.accuracy(y_true, y_pred) == 0.999
        assert sizes == [64, 11]
    # Labels 0..299, all present: ranks are the labels themselves, counted without a map.
    sizes.clear()
    y = np.arange(1000) % 300
    assert M.accuracy(y, y) == 1.0 and sizes == [64, 300]


def test_sparse_labels_streamed_against_num_classes(one_thread):
    # The compact space and a dense num_classes table give the same metrics.
    y_true, y_pred = sparse_labels(2000, 101)
    _, _, w = labels_data(2000, 5, weights="float")
    k = int(max(y_true.max(), y_pred.max())) + 1
    for average in ("micro", "macro", "weighted", None):
        got = M.precision_recall_fscore(y_true, y_pred, sample_weight=w, average=average,
                                        zero_division=0)
        cm = M.ConfusionMatrix(k).update(y_true, y_pred, sample_weight=w)
        assert_same(got, cm.precision_recall_fscore(average=average, zero_division=0),
                    rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Sample weights that are not finite: refused as scikit-learn refuses them (ValueError)

NON_FINITE = [np.nan, np.inf, -np.inf]


def weight_calls(y_true, y_pred, scores):
    """Every metric entry that takes sample_weight, as ``name -> f(sample_weight)``."""
    return {
        "accuracy": lambda w: M.accuracy(y_true, y_pred, sample_weight=w),
        "confusion_matrix": lambda w: M.confusion_matrix(y_true, y_pred, sample_weight=w),
        "confusion_matrix k": lambda w: M.confusion_matrix(y_true, y_pred, sample_weight=w,
                                                           num_classes=5),
        "precision": lambda w: M.precision(y_true, y_pred, sample_weight=w, average="macro"),
        "recall": lambda w: M.recall(y_true, y_pred, sample_weight=w, average="micro"),
        "f1": lambda w: M.f1(y_true, y_pred, sample_weight=w, average="macro"),
        "fbeta": lambda w: M.fbeta(y_true, y_pred, 2.0, sample_weight=w, average="weighted"),
        "prf": lambda w: M.precision_recall_fscore(y_true, y_pred, sample_weight=w),
        "scores": lambda w: M.f1(y_true, scores, sample_weight=w, average="macro"),
        "top_k": lambda w: M.top_k_accuracy(y_true, scores, k=2, sample_weight=w),
        "top_k sum": lambda w: M.top_k_accuracy(y_true, scores, k=2, sample_weight=w,
                                                normalize=False),
    }


@pytest.mark.parametrize("bad", NON_FINITE)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_non_finite_weights_are_refused(bad, dtype, one_thread):
    rng = np.random.default_rng(3)
    n = 300
    y_true, y_pred = rng.integers(0, 5, n), rng.integers(0, 5, n)
    scores = rng.random((n, 5))
    w = rng.random(n).astype(dtype)
    w[[17, 200]] = bad
    shown = {"nan": "nan", "inf": "inf", "-inf": "-inf"}[str(dtype(bad))]
    for name, call in weight_calls(y_true, y_pred, scores).items():
        with pytest.raises(fastml.NonFiniteError,
                           match=rf"^sample_weight must be finite; got sample_weight\[17\] = "
                                 rf"{shown}") as info:
            call(w)
        assert isinstance(info.value, ValueError), name  # what scikit-learn raises
    # scikit-learn refuses the same weights.
    sk = pytest.importorskip("sklearn.metrics")
    with pytest.raises(ValueError):
        sk.accuracy_score(y_true, y_pred, sample_weight=w)
    # Large labels (the compact path) and a single bad weight among integer-valued ones.
    big = y_true * 2**40
    w = np.ones(n)
    w[n - 1] = bad
    with pytest.raises(fastml.NonFiniteError, match=rf"sample_weight\[{n - 1}\] = {shown}"):
        M.f1(big, y_pred, sample_weight=w, average="macro")


@pytest.mark.parametrize("bad", NON_FINITE)
def test_non_finite_weight_update_adds_nothing(bad, one_thread):
    cm = M.ConfusionMatrix(4)
    y = np.array([0, 1, 2, 3, 1])
    cm.update(y, y)
    before = cm.compute().copy()
    with pytest.raises(fastml.NonFiniteError, match=r"sample_weight\[3\]"):
        cm.update(y, y[::-1], sample_weight=np.array([1.0, 2.0, 0.5, bad, 1.0]))
    np.testing.assert_array_equal(cm.compute(), before)
    assert cm.compute().dtype == np.int64  # the rejected batch did not make the table float
    assert cm.accuracy() == 1.0


def test_negative_and_huge_weights_as_sklearn(one_thread):
    sk = sklearn_metrics()
    rng = np.random.default_rng(4)
    n = 400
    y_true, y_pred = rng.integers(0, 4, n), rng.integers(0, 4, n)
    w = rng.standard_normal(n)  # negative weights: scikit-learn takes them, and so does fastml
    assert_same(M.confusion_matrix(y_true, y_pred, sample_weight=w),
                sk.confusion_matrix(y_true, y_pred, sample_weight=w))
    assert_same(M.accuracy(y_true, y_pred, sample_weight=w),
                sk.accuracy_score(y_true, y_pred, sample_weight=w))
    for average in ("micro", "macro", "weighted", None):
        got, _ = run(M.precision_recall_fscore, y_true, y_pred, sample_weight=w,
                     average=average, zero_division=0)
        want, _ = run(sk.precision_recall_fscore_support, y_true, y_pred, sample_weight=w,
                      average=average, zero_division=0)
        assert_same(got, want, average)
    scores = rng.random((n, 4))
    assert_same(M.top_k_accuracy(y_true, scores, k=2, sample_weight=w),
                sk.top_k_accuracy_score(y_true, scores, k=2, sample_weight=w))
    # Finite weights whose sum overflows are finite weights: no NonFiniteError.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        M.accuracy(np.zeros(3, np.int64), np.zeros(3, np.int64), sample_weight=np.full(3, 1e308))


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bad_input():
    y = np.array([0, 1, 2, 1])
    with pytest.raises(ShapeError, match=r"y_pred must have the length of y_true \(4\); got 3"):
        M.f1(y, y[:3], average="macro")
    with pytest.raises(ShapeError, match=r"sample_weight must have shape \(4,\)"):
        M.f1(y, y, average="macro", sample_weight=np.ones(3))
    with pytest.raises(ShapeError, match=r"y_true\[3\] = -1"):
        M.confusion_matrix(np.array([0, 1, 2, -1]), y)
    with pytest.raises(ShapeError, match=r"y_pred\[0\] = -5"):
        M.f1(y, np.array([-5, 1, 2, -1]), average="macro")
    with pytest.raises(ShapeError, match=r"labels in \[0, 2\) \(num_classes=2\); got y_true\[2\]"
                       r" = 2"):
        M.confusion_matrix(y, y, num_classes=2)
    with pytest.raises(ShapeError, match=r"y_true\[2\] = -1"):  # after a label above 64
        M.confusion_matrix(np.array([0, 100, -1]), np.zeros(3, np.int64))
    with pytest.raises(ShapeError, match=r"y_pred\[1\] = -3"):  # after a label of 2**40
        M.confusion_matrix(np.array([0, 1 << 40, 5]), np.array([0, -3, 2**62]))
    with pytest.raises(ShapeError, match=r"at most 16384 distinct labels; got 16385"):
        M.confusion_matrix(np.arange(16385) * 1000, np.zeros(16385, np.int64))
    with pytest.raises(ShapeError, match=r"at most 16384 columns \(classes\) unless num_classes"):
        M.accuracy(np.zeros(2, np.int64), np.zeros((2, 16385)))
    with pytest.raises(ShapeError, match=r"y_true must hold labels below 2\*\*63 \(int64\); got "
                       r"y_true\[1\] = 9223372036854775808"):
        M.accuracy(np.array([0, 2**63], np.uint64), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="Target is multiclass but average='binary'"):
        M.f1(y, y)
    with pytest.raises(ValueError, match="average must be one of"):
        M.f1(y, y, average="samples")
    with pytest.raises(ValueError, match="zero_division must be"):
        M.f1(y, y, average="macro", zero_division=0.5)
    with pytest.raises(ValueError, match="normalize must be"):
        M.confusion_matrix(y, y, normalize="rows")
    with pytest.raises(DTypeError, match="y_true must be an integer array"):
        M.f1(y.astype(np.float64), y, average="macro")
    with pytest.raises(DTypeError, match="y_pred must be an integer array"):
        M.f1(y, np.array(["a", "b", "c", "d"]), average="macro")
    with pytest.raises(DTypeError, match="sample_weight must be numeric"):
        M.f1(y, y, average="macro", sample_weight=np.array(["a"] * 4))
    with pytest.raises(DTypeError, match="labels must be a 1-D sequence"):
        M.f1(y, y, average="macro", labels=[0.5])
    with pytest.raises(ShapeError, match="non-empty"):
        M.f1(y[:0], y[:0], average="macro")
    with pytest.raises(ShapeError, match="1-D or 2-D"):
        M.f1(y, np.zeros((4, 2, 2)), average="macro")
    with pytest.raises(ShapeError, match="y_true must be 1-D"):
        M.f1(y.reshape(2, 2), y, average="macro")
    with pytest.raises(ShapeError, match="at least one column"):
        M.f1(y, np.zeros((4, 0)), average="macro")
    with pytest.raises(ValueError, match="num_classes must be in"):
        M.ConfusionMatrix(0)
    with pytest.raises(TypeError, match="num_classes must be an integer"):
        M.ConfusionMatrix(2.5)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        M.fbeta(y, y, -1.0, average="macro")


def test_mixed_devices():
    from numba import cuda

    y = np.array([0, 1, 1])
    d = cuda.to_device(y)
    with pytest.raises(DeviceError, match="y_pred on the GPU and y_true on the CPU"):
        M.f1(y, d)
    with pytest.raises(DeviceError, match="sample_weight on the GPU"):
        M.confusion_matrix(y, y, sample_weight=cuda.to_device(np.ones(3)))
    with pytest.raises(DeviceError):
        M.top_k_accuracy(d, np.zeros((3, 2)))
    assert issubclass(DeviceError, ValueError) and fastml.DeviceError is DeviceError


# ---------------------------------------------------------------------------------------------
# Hypothesis


@st.composite
def metric_case(draw):
    n = draw(st.integers(1, 40))
    c = draw(st.integers(1, 5))
    y_true = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    y_pred = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    kind = draw(st.sampled_from(["none", "int", "float"]))
    w = None
    if kind == "int":
        w = np.array(draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    elif kind == "float":
        w = np.array(draw(st.lists(st.floats(0.0, 4.0), min_size=n, max_size=n)))
    labels = draw(st.one_of(st.none(), st.lists(st.integers(0, c + 1), min_size=1, max_size=4,
                                                unique=True)))
    average = draw(st.sampled_from(AVERAGES))
    zero_division = draw(st.sampled_from(ZERO_DIVISIONS))
    pos_label = draw(st.sampled_from([1, 0]))
    return y_true, y_pred, w, labels, average, zero_division, pos_label


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(case=metric_case())
def test_hypothesis(case, one_thread):
    try:
        import sklearn.metrics as sk
    except ImportError:
        sk = None
    y_true, y_pred, w, labels, average, zero_division, pos_label = case
    if w is not None and not w.any():
        with pytest.raises(ValueError, match="at least one non-zero"):
            M.precision_recall_fscore(y_true, y_pred, sample_weight=w)
        return
    _check_prf(y_true, y_pred, w, average, zero_division, labels=labels, pos_label=pos_label,
               sk=sk)
    assert_same(M.confusion_matrix(y_true, y_pred, sample_weight=w),
                R.confusion_matrix(y_true, y_pred, sample_weight=w))
    assert_same(M.accuracy(y_true, y_pred, sample_weight=w),
                R.accuracy(y_true, y_pred, sample_weight=w))

