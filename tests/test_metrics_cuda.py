"""Classification metrics on CUDA: each kernel equals the CPU kernel on the same inputs, and the
public API on numba device arrays equals the CPU result.

In CI this runs in numba-cuda's simulator (tiny grids: 2 blocks of 32 threads, so a few hundred
samples already cover several grid-stride steps and both blocks); with ``FASTML_REAL_GPU=1`` the
same tests run on a GPU with larger sizes added. Integer counts must match the CPU exactly;
weighted sums within a few roundings (the two devices add in different orders), and bitwise
from one CUDA run to the next.
"""

import numpy as np
import pytest
from numba import cuda

from fastml import metrics as M
from fastml.errors import ShapeError
from fastml.kernels import cpu as K
from fastml.kernels import cuda as G

from .conftest import REAL_GPU
from .helpers import assert_bitwise_equal
from .reference import metrics as R

pytestmark = pytest.mark.cuda

SIZES = [0, 1, 37, 300] + ([100_003, 2_000_003] if REAL_GPU else [])
CLASSES = [1, 3, 10, 70]  # 70: k*k above the shared-memory table, the global fallback


def dev(a):
    return cuda.to_device(np.ascontiguousarray(a))


def both(name, y_true, y_pred, k, weight=None, threshold=0.5, cm=None):
    """Run the CPU kernel and the CUDA launcher ``name`` on copies of the same arguments."""
    w = np.zeros(0) if weight is None else weight
    if cm is None:
        cm = np.zeros((k, k), np.int64 if weight is None else np.float64)
    out = []
    for device in ("cpu", "cuda"):
        args = [cm.copy(), np.zeros(k, np.bool_), np.full(2, -7, np.int64), y_true, y_pred, w]
        if device == "cpu":
            getattr(K, name)(*args, threshold)
            out.append(args[:3])
        else:
            d = [dev(a) for a in args]
            getattr(G, name)(*d, threshold)
            out.append([a.copy_to_host() for a in d[:3]])
    return out


def assert_counts_equal(cpu, gpu, weighted, name):
    (cm_c, seen_c, st_c), (cm_g, seen_g, st_g) = cpu, gpu
    if weighted:
        np.testing.assert_allclose(cm_g, cm_c, rtol=1e-12, atol=1e-12, err_msg=f"{name} cm")
    else:
        np.testing.assert_array_equal(cm_g, cm_c, err_msg=f"{name} cm")
    np.testing.assert_array_equal(seen_g, seen_c, err_msg=f"{name} seen")
    assert st_g.tolist() == st_c.tolist(), f"{name} status: cuda {st_g}, cpu {st_c}"


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("k", CLASSES)
@pytest.mark.parametrize("weighted", [False, True])
def test_counts_parity(n, k, weighted):
    rng = np.random.default_rng(n + k)
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < 0.5, y_true, rng.integers(0, k, n)).astype(np.int32)
    w = rng.standard_normal(n) if weighted else None
    cpu, gpu = both("confusion_counts", y_true, y_pred, k, w)
    assert_counts_equal(cpu, gpu, weighted, "labels")
    assert gpu[2][0] == -1


@pytest.mark.parametrize("k", [3, 70])
@pytest.mark.parametrize("weighted", [False, True])
def test_bad_labels_parity(k, weighted):
    rng = np.random.default_rng(k)
    n = 300
    y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
    w = rng.random(n) if weighted else None
    before = np.arange(k * k, dtype=np.float64 if weighted else np.int64).reshape(k, k)
    for name, where, value in [("y_true", n - 1, -1), ("y_pred", 150, k), ("y_true", 0, 1000),
                               ("y_pred", 33, -(2**40))]:
        yt, yp = y_true.copy(), y_pred.copy()
        (yt if name == "y_true" else yp)[where] = value
        yp[200] = k + 3  # a later bad label in the other block: the first one is reported
        cpu, gpu = both("confusion_counts", yt, yp, k, None if w is None else w, cm=before)
        assert_counts_equal(cpu, gpu, weighted, f"{name}[{where}] = {value}")
        assert gpu[2][0] == min(where, 200)
        np.testing.assert_array_equal(gpu[0], before)  # nothing added
        assert not gpu[1].any()


@pytest.mark.parametrize("n", [1, 300] + ([100_003] if REAL_GPU else []))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_score_forms_parity(n, dtype):
    rng = np.random.default_rng(n)
    c = 5
    y_true = rng.integers(0, c, n)
    scores = rng.integers(0, 3, (n, c)).astype(dtype)  # ties: the first maximum
    scores[rng.random(n) < 0.1, 2] = np.nan  # the first NaN
    w = rng.random(n)
    for k in (c, 70):
        for weight in (None, w):
            cpu, gpu = both("confusion_counts_argmax", y_true, scores, k, weight)
            assert_counts_equal(cpu, gpu, weight is not None, f"argmax k={k}")
    s = rng.random(n).astype(dtype)
    s[::3] = dtype(0.25)
    s[::7] = np.nan
    for k in (1, 2):  # k=1: a score above the threshold predicts the out-of-range class 1
        for weight in (None, w):
            cpu, gpu = both("confusion_counts_thresholded", y_true % k, s, k, weight,
                            threshold=0.25)
            assert_counts_equal(cpu, gpu, weight is not None, f"thresholded k={k}")


def test_weighted_counts_bitwise_reproducible():
    n = 100_003 if REAL_GPU else 300
    rng = np.random.default_rng(4)
    y_true, y_pred = rng.integers(0, 10, n), rng.integers(0, 10, n)
    w = rng.standard_normal(n) * 1e3
    for k in (10, 70):
        runs = [both("confusion_counts", y_true, y_pred, k, w)[1][0] for _ in range(2)]
        assert_bitwise_equal(runs[1], runs[0], f"weighted cm k={k}")
    scores = rng.random((n, 7))
    hits = []
    for _ in range(2):
        status = dev(np.zeros(2))
        G.top_k_hits(status, dev(scores), dev(y_true % 7), dev(w), 3)
        hits.append(status.copy_to_host())
    assert_bitwise_equal(hits[1], hits[0], "top-k hits")


@pytest.mark.parametrize("n,c", [(1, 3), (300, 5), (64, 70)] + ([(100_003, 10)] if REAL_GPU
                                                                  else []))
def test_top_k_parity(n, c):
    rng = np.random.default_rng(n + c)
    scores = rng.integers(0, 4, (n, c)).astype(np.float32)
    scores[rng.random((n, c)) < 0.05] = np.nan
    y_true = rng.integers(0, c, n)
    w = rng.random(n)
    for k in (1, 2, c):
        for weight in (np.zeros(0), w):
            cpu = np.zeros(2)
            K.top_k_hits(cpu, scores, y_true, weight, k)
            gpu = dev(np.zeros(2))
            G.top_k_hits(gpu, dev(scores), dev(y_true), dev(weight), k)
            np.testing.assert_allclose(gpu.copy_to_host(), cpu, rtol=1e-12, err_msg=f"k={k}")
    y_bad = y_true.copy()
    y_bad[n - 1] = c
    if n > 2:
        y_bad[n // 2] = -1
    cpu = np.zeros(2)
    K.top_k_hits(cpu, scores, y_bad, np.zeros(0), 2)
    gpu = dev(np.zeros(2))
    G.top_k_hits(gpu, dev(scores), dev(y_bad), dev(np.zeros(0)), 2)
    assert gpu.copy_to_host()[1] == cpu[1] == (n // 2 if n > 2 else n - 1)


# ---------------------------------------------------------------------------------------------
# The public API on device arrays


def assert_same_result(got, want, name):
    if isinstance(want, tuple):
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same_result(g, w, f"{name}[{i}]")
        return
    if want is None:
        assert got is None, name
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, want {want.dtype}"
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("c,weights", [(2, None), (2, "float"), (10, "int"), (70, None),
                                       (70, "float")])
def test_api_on_device_equals_cpu(c, weights):
    rng = np.random.default_rng(c)
    n = 257
    y_true = rng.integers(0, c, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, c, n))
    w = {None: None, "float": rng.random(n), "int": rng.integers(1, 4, n)}[weights]
    d_true, d_pred, d_w = dev(y_true), dev(y_pred), None if w is None else dev(w)
    for normalize in (None, "true"):
        assert_same_result(M.confusion_matrix(d_true, d_pred, sample_weight=d_w,
                                              normalize=normalize),
                           M.confusion_matrix(y_true, y_pred, sample_weight=w,
                                              normalize=normalize), "cm")
    assert_same_result(M.confusion_matrix(d_true, d_pred, num_classes=c + 1, sample_weight=d_w),
                       M.confusion_matrix(y_true, y_pred, num_classes=c + 1, sample_weight=w),
                       "cm num_classes")
    for average in ("micro", "macro", "weighted", None) + (("binary",) if c == 2 else ()):
        assert_same_result(
            M.precision_recall_fscore(d_true, d_pred, average=average, sample_weight=d_w,
                                      zero_division=0),
            M.precision_recall_fscore(y_true, y_pred, average=average, sample_weight=w,
                                      zero_division=0), f"prf {average}")
    assert_same_result(M.accuracy(d_true, d_pred, sample_weight=d_w),
                       M.accuracy(y_true, y_pred, sample_weight=w), "accuracy")


def test_api_scores_bool_and_streaming_on_device():
    rng = np.random.default_rng(9)
    n = 200
    y_true = rng.integers(0, 4, n)
    scores = rng.random((n, 4)).astype(np.float32)
    scores[::11, 1] = np.nan
    assert_same_result(M.f1(dev(y_true), dev(scores), average="macro"),
                       M.f1(y_true, scores, average="macro"), "argmax f1")
    assert_same_result(M.f1(y_true, scores, average="macro"),
                       R.precision_recall_fscore(y_true, R.argmax_labels(scores),
                                                 average="macro")[0][2], "argmax vs reference")
    s = rng.random(n)
    assert_same_result(M.confusion_matrix(dev(y_true % 2), dev(s), threshold=0.3),
                       M.confusion_matrix(y_true % 2, s, threshold=0.3), "thresholded")
    b_true, b_pred = rng.random(n) < 0.5, rng.random(n) < 0.5
    assert_same_result(M.confusion_matrix(dev(b_true), dev(b_pred)),
                       M.confusion_matrix(b_true, b_pred), "bool labels")
    w = rng.random(n)
    assert_same_result(M.top_k_accuracy(dev(y_true), dev(scores), k=2, sample_weight=dev(w)),
                       M.top_k_accuracy(y_true, scores, k=2, sample_weight=w), "top-k")
    stream = M.ConfusionMatrix(5)
    host = M.ConfusionMatrix(5)
    y_pred = rng.integers(0, 5, n)
    for lo, hi in ((0, 1), (1, 90), (90, n)):
        stream.update(dev(y_true[lo:hi]), dev(y_pred[lo:hi]))
        host.update(y_true[lo:hi], y_pred[lo:hi])
    assert_same_result(stream.compute(), host.compute(), "streaming")
    before = stream.compute().copy()
    # On the GPU the batch is checked on the device and its error raised later, at the latest
    # when the counts are read; the batch adds nothing.
    with pytest.raises(ShapeError, match=r"outside at sample 1 of a GPU batch \(the largest "
                       r"label in it: 7"):
        stream.update(dev(np.array([0, 1, 2])), dev(np.array([0, 5, 7])))
        stream.compute()
    np.testing.assert_array_equal(stream.compute(), before)


def test_streaming_on_device_matches_the_host_with_weights_and_merges():
    rng = np.random.default_rng(4)
    n, k = 150, 6
    y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
    w = rng.integers(0, 3, n).astype(np.float64)
    gpu, cpu = M.ConfusionMatrix(k), M.ConfusionMatrix(k)
    cuts = ((0, 40, False), (40, 41, True), (41, 100, False), (100, n, True))
    for lo, hi, weighted in cuts:
        kw = {"sample_weight": w[lo:hi]} if weighted else {}
        cpu.update(y_true[lo:hi], y_pred[lo:hi], **kw)
        gpu.update(dev(y_true[lo:hi]), dev(y_pred[lo:hi]),
                   **({"sample_weight": dev(w[lo:hi])} if weighted else {}))
    assert gpu._device is not None  # nothing read back yet
    assert_same_result(gpu.compute(), cpu.compute(), "weighted streaming")
    assert gpu.f1(average="macro") == cpu.f1(average="macro")
    gpu.update(dev(y_true), dev(y_pred))  # device batches after a read, then a merge
    cpu.update(y_true, y_pred)
    both_cm = M.ConfusionMatrix(k).merge(gpu).merge(cpu)
    np.testing.assert_array_equal(both_cm.compute(), 2 * cpu.compute())
    gpu.reset()
    assert gpu.compute().sum() == 0


def test_api_errors_on_device():
    y = dev(np.array([0, 1, 2, -1]))
    with pytest.raises(ShapeError, match=r"y_true\[3\] = -1"):
        M.confusion_matrix(y, dev(np.array([0, 1, 2, 0])))
    with pytest.raises(ShapeError, match=r"y_pred\[0\] = 1$"):
        M.confusion_matrix(dev(np.array([0, 0])), dev(np.array([[0.0, 1.0], [1.0, 0.0]])),
                           num_classes=1)
    with pytest.raises(ShapeError, match=r"y_true\[1\] = 3"):
        M.top_k_accuracy(dev(np.array([0, 3])), dev(np.zeros((2, 3))))
    with pytest.raises(ValueError, match="at least one non-zero"):
        M.f1(dev(np.array([0, 1])), dev(np.array([0, 1])), sample_weight=dev(np.zeros(2)))


# ---------------------------------------------------------------------------------------------
# Sample weights that are not finite, and large labels, on the device


def test_first_non_finite_kernel():
    from fastml.kernels.cuda import sample_weight as SW

    rng = np.random.default_rng(7)
    for n in (1, 37, 300):
        for dtype in (np.float32, np.float64):
            w = rng.standard_normal(n).astype(dtype)
            cases = [(None, None)] + [(i, v) for i in sorted({0, n // 2, n - 1})
                                      for v in (np.nan, np.inf, -np.inf)]
            for where, value in cases:
                x = w.copy()
                if where is not None:
                    x[where + 1:] = np.nan  # later bad weights: the first one is reported
                    x[where] = value
                record = dev(np.full(2, -7, np.int64))
                SW.first_non_finite(record, dev(x), 0)
                got = record.copy_to_host().tolist()
                if where is None:
                    assert got == [-1, 0]
                else:
                    code = SW.NAN if np.isnan(value) else (SW.POS_INF if value > 0 else
                                                           SW.NEG_INF)
                    assert got == [where, code], (n, dtype, where, value)


@pytest.mark.parametrize("clean", [True, False])
def test_add_batch_if_finite_kernel(clean):
    from fastml.kernels.cuda import sample_weight as SW

    k = 9  # k*k above one block of the simulator's grid
    rng = np.random.default_rng(k)
    cm, batch = rng.random((k, k)), rng.random((k, k))
    seen, batch_seen = rng.random(k) < 0.3, rng.random(k) < 0.5
    d = [dev(a) for a in (cm, seen, batch, batch_seen)]
    SW.add_batch_if_finite(*d, dev(np.array([-1 if clean else 4, 0])))
    got_cm, got_seen, got_batch, got_batch_seen = (a.copy_to_host() for a in d)
    np.testing.assert_array_equal(got_cm, cm + batch if clean else cm)
    np.testing.assert_array_equal(got_seen, seen | batch_seen if clean else seen)
    assert not got_batch.any() and not got_batch_seen.any()  # zeroed for the next batch


def test_api_non_finite_weights_on_device():
    from fastml.errors import NonFiniteError

    rng = np.random.default_rng(5)
    n = 200
    y_true, y_pred = dev(rng.integers(0, 4, n)), dev(rng.integers(0, 4, n))
    scores = dev(rng.random((n, 4)))
    for dtype in (np.float64, np.float32):
        for bad, shown in ((np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")):
            w = np.ones(n, dtype)
            w[[33, 150]] = bad
            msg = rf"sample_weight must be finite; got sample_weight\[33\] = {shown}"
            for call in (lambda d: M.accuracy(y_true, y_pred, sample_weight=d),
                         lambda d: M.confusion_matrix(y_true, y_pred, sample_weight=d,
                                                      num_classes=4),
                         lambda d: M.f1(y_true, y_pred, sample_weight=d, average="macro"),
                         lambda d: M.top_k_accuracy(y_true, scores, sample_weight=d),
                         lambda d: M.top_k_accuracy(y_true, scores, sample_weight=d,
                                                    normalize=False)):
                with pytest.raises(NonFiniteError, match=msg):
                    call(dev(w))


def test_streaming_non_finite_weight_on_device_adds_nothing():
    from fastml.errors import NonFiniteError

    rng = np.random.default_rng(8)
    n, k = 120, 5
    y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
    w = rng.random(n)
    gpu, cpu = M.ConfusionMatrix(k), M.ConfusionMatrix(k)
    gpu.update(dev(y_true), dev(y_pred), sample_weight=dev(w))
    cpu.update(y_true, y_pred, sample_weight=w)
    bad = w.copy()
    bad[70] = np.nan
    # Checked on the device; raised by a later fastml call at the latest (here the read).
    with pytest.raises(NonFiniteError, match=r"sample_weight\[70\] = nan in a GPU batch"):
        gpu.update(dev(y_pred), dev(y_true), sample_weight=dev(bad))
        gpu.compute()
    assert_same_result(gpu.compute(), cpu.compute(), "after a rejected batch")
    # The next weighted batch is counted, from a clean scratch table.
    gpu.update(dev(y_pred), dev(y_true), sample_weight=dev(w))
    cpu.update(y_pred, y_true, sample_weight=w)
    assert_same_result(gpu.compute(), cpu.compute(), "after a good batch")
    assert_same_result(gpu.f1(average="macro"), cpu.f1(average="macro"), "f1")


@pytest.mark.parametrize("top", [1000, 16383, 2**62])
def test_api_sparse_labels_on_device_equal_cpu(top):
    # 1000: a dense table on the device; 16383 and 2**62: the labels present, on the host.
    rng = np.random.default_rng(3)
    n = 150
    y_true = rng.integers(0, 4, n) * (top // 4)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 4, n) * (top // 4))
    y_true[9] = top
    w = rng.random(n)
    for weight in (None, w):
        d_w = None if weight is None else dev(weight)
        assert_same_result(M.confusion_matrix(dev(y_true), dev(y_pred), sample_weight=d_w),
                           M.confusion_matrix(y_true, y_pred, sample_weight=weight), "cm")
        for average in ("micro", "macro", None):
            assert_same_result(
                M.precision_recall_fscore(dev(y_true), dev(y_pred), average=average,
                                          sample_weight=d_w, zero_division=0,
                                          labels=[top, 0, 5]),
                M.precision_recall_fscore(y_true, y_pred, average=average, sample_weight=weight,
                                          zero_division=0, labels=[top, 0, 5]), average)
    scores = rng.random((n, 3)).astype(np.float32)
    assert_same_result(M.confusion_matrix(dev(y_true), dev(scores)),
                       M.confusion_matrix(y_true, scores), "argmax")
    with pytest.raises(ShapeError, match=r"y_pred\[4\] = -1"):
        y_bad = y_pred.copy()
        y_bad[4] = -1
        M.accuracy(dev(y_true), dev(y_bad))
