"""One setup per benchmarked op: inputs, the fastml call, its peers and its bandwidth floor.

Nothing here imports pytest: the ``bench/`` pytest-benchmark suites and the ``fastml bench``
command build the same cases. A :class:`Case` holds zero-argument callables;
every callable works on buffers allocated once in the setup, so a timed call measures the kernel
and not page faults on fresh memory (PyTorch's backward is the exception: it allocates its
gradient on every call, as it does in a training loop).

The floor of an op is the time of a trivial numba ``parallel`` kernel with the same byte pattern
over the same number of elements (read 2 arrays and write 1 for the regression losses, read 1 and
write 1 for cross-entropy), run in the same process with the same threads. Both the op and the
floor kernel use ordinary stores, so both pay the same read-for-ownership traffic on the written
array; bytes are counted as the op's useful reads + writes (docs/design.md section 3).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numba
import numpy as np
from numba import njit, prange

import fastml

try:  # PyTorch is an optional peer
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover - depends on the environment
    torch = None

REGRESSION_N = 10_000_000
CE_SHAPE = (8192, 1000)


# --- bandwidth floor kernels -------------------------------------------------------------------

@njit(parallel=True, nogil=True, cache=True)
def read2_write1(c, a, b):
    """c = a + b: the byte pattern of MSE/L1/Huber (12 B/element in float32)."""
    for i in prange(a.shape[0]):
        c[i] = a[i] + b[i]


@njit(parallel=True, nogil=True, cache=True)
def read1_write1(b, a, s):
    """b = a * s: the byte pattern of cross-entropy (8 B/element in float32). The multiply keeps
    LLVM from turning the loop into memcpy, whose non-temporal stores skip the
    read-for-ownership that the loss kernels pay."""
    for i in prange(a.shape[0]):
        b[i] = a[i] * s


@njit(parallel=True, nogil=True, cache=True)
def read4_write3(p, g, m, v, s):
    """Adam's pattern: p, m, v read and written in place, g read (28 B/param in float32)."""
    for i in prange(p.shape[0]):
        gi = g[i]
        p[i] = p[i] * s + gi
        m[i] = m[i] * s + gi
        v[i] = v[i] * s + gi


@njit(parallel=True, nogil=True, cache=True)
def read5_write3(p, g, m, v, g2, s):
    """A guarded Adam step's pattern: Adam's plus one more read of a gradient (32 B/param)."""
    for i in prange(p.shape[0]):
        gi = g[i] + g2[i]
        p[i] = p[i] * s + gi
        m[i] = m[i] * s + gi
        v[i] = v[i] * s + gi


@njit(parallel=True, nogil=True, cache=True)
def read3_write2(p, g, b, s):
    """SGD with momentum's pattern: p and buf read and written, g read (20 B/param)."""
    for i in prange(p.shape[0]):
        gi = g[i]
        p[i] = p[i] * s + gi
        b[i] = b[i] * s + gi


#: Read-only passes read each chunk as four interleaved streams (a quarter each): with one stream
#: per thread a read-only pass over 10M float32 ran at ~25 GB/s on the 2-core CI machine, with
#: four at ~33 GB/s, the speed of Adam's seven streams (bench/NOTES.md). fastml's read passes do
#: the same, and a floor must not be slower than the machine allows.
READ_CHUNK = 1 << 14


@njit(parallel=True, nogil=True, cache=True, fastmath={"reassoc"})
def read1_then_scale(g, s):
    """clip_grad_norm's pattern: a pass that reads g (the norm), then one that reads and writes
    it in place (the scale): 12 B/element in float32. The sum is in g's dtype and may be
    reassociated, so it vectorizes and the read pass runs at the memory's speed."""
    n = g.shape[0]
    nchunks = (n + READ_CHUNK - 1) // READ_CHUNK
    sums = np.empty(nchunks, dtype=g.dtype)
    for c in prange(nchunks):
        x = g[c * READ_CHUNK:min(n, (c + 1) * READ_CHUNK)]
        q = x.shape[0] // 4
        t0 = t1 = t2 = t3 = x.dtype.type(0.0)
        for i in range(q):
            t0 += x[i]
            t1 += x[i + q]
            t2 += x[i + 2 * q]
            t3 += x[i + 3 * q]
        for i in range(4 * q, x.shape[0]):
            t0 += x[i]
        sums[c] = (t0 + t1) + (t2 + t3)
    for i in prange(n):
        g[i] = g[i] * s
    return sums.sum()


@dataclass
class Floor:
    """A bandwidth kernel with a given byte pattern; ``run()`` executes it once."""

    pattern: str  # a key of FLOORS
    n: int  # elements per array
    bytes_moved: int
    run: Callable[[], object]


#: pattern -> (kernel, arrays it takes, bytes moved per element in units of the itemsize, the
#: scalar passed after the arrays or None). The scalars keep values bounded over any number of
#: calls on the same arrays.
FLOORS = {
    "read2_write1": (read2_write1, 3, 3, None),
    "read1_write1": (read1_write1, 2, 2, 1.0001),
    "read4_write3": (read4_write3, 4, 7, 0.5),
    "read5_write3": (read5_write3, 5, 8, 0.5),
    "read3_write2": (read3_write2, 3, 5, 0.5),
    "read1_then_scale": (read1_then_scale, 1, 3, 0.9999999),
}


def make_floor(pattern, n, dtype=np.float32):
    """The floor kernel of ``pattern`` over ``n`` elements, on arrays of its own (so no data is
    left in cache by the op it is compared with)."""
    if pattern not in FLOORS:
        raise ValueError(f"pattern must be one of {sorted(FLOORS)}; got {pattern!r}")
    kernel, count, units, scalar = FLOORS[pattern]
    rng = np.random.default_rng(1)
    args = [rng.standard_normal(n, dtype=np.float64).astype(dtype) for _ in range(count)]
    if scalar is not None:
        args.append(np.dtype(dtype).type(scalar))
    return Floor(pattern, n, units * np.dtype(dtype).itemsize * n, lambda: kernel(*args))


# --- cases -------------------------------------------------------------------------------------

@dataclass
class Case:
    """One op at one size: ``impls`` maps "fastml" and each available peer to a callable."""

    op: str
    shape: str
    bytes_moved: int  # the op's useful bytes: inputs read once + gradient written once
    floor: Floor
    impls: dict = field(default_factory=dict)
    check: Callable[[], float] | None = None  # max relative error of fastml vs a reference
    family: str = ""  # report section: "losses", "optimizers", "guards", "metrics"

    @property
    def peers(self):
        return [k for k in self.impls if k != "fastml"]


def threads():
    """The thread count every implementation gets (numba's, also given to PyTorch)."""
    n = numba.get_num_threads()
    if torch is not None:
        torch.set_num_threads(n)
    return n


def _rel_err(a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _torch_fwd_bwd(loss_fn, x, *others):
    """PyTorch's forward + backward of ``loss_fn(x, *others)`` over the NumPy buffers
    (zero-copy); its backward allocates a fresh gradient on every call, as in training."""
    xt = torch.from_numpy(x).requires_grad_(True)
    rest = [torch.from_numpy(o) for o in others]

    def run():
        xt.grad = None
        loss = loss_fn(xt, *rest)
        loss.backward()
        return loss

    return run


def _numpy_regression(op, p, t, d, tmp, g, delta):
    """Plain NumPy with preallocated buffers: several passes over memory."""
    n = p.size
    np.subtract(p, t, out=d)
    if op == "mse":
        loss = float(np.dot(d, d)) / n
        np.multiply(d, 2.0 / n, out=g)
    elif op == "l1":
        loss = float(np.abs(d, out=tmp).sum()) / n
        np.sign(d, out=g)
        g *= 1.0 / n
    else:
        np.abs(d, out=tmp)
        quad = tmp < delta
        loss = float(np.where(quad, 0.5 * d * d, delta * (tmp - 0.5 * delta)).sum()) / n
        np.clip(d, -delta, delta, out=g)
        g *= 1.0 / n
    return loss


def regression_case(op, n=REGRESSION_N, dtype=np.float32, delta=1.0):
    """MSE, L1 or Huber (mean) over ``n`` elements: loss + gradient."""
    if op not in ("mse", "l1", "huber"):
        raise ValueError(f"op must be 'mse', 'l1' or 'huber'; got {op!r}")
    threads()
    rng = np.random.default_rng(0)
    p = rng.standard_normal(n, dtype=np.float64).astype(dtype)
    t = rng.standard_normal(n, dtype=np.float64).astype(dtype)
    g = np.zeros_like(p)
    kwargs = {"delta": delta} if op == "huber" else {}
    fn = getattr(fastml, op)
    item = np.dtype(dtype).itemsize
    case = Case(op, f"{n:,} {np.dtype(dtype).name}", 3 * item * n,
                make_floor("read2_write1", n, dtype), family="losses")
    case.impls["fastml"] = lambda: fn(p, t, out=g, **kwargs)

    d, tmp, g_np = np.zeros_like(p), np.zeros_like(p), np.zeros_like(p)
    case.impls["numpy"] = lambda: _numpy_regression(op, p, t, d, tmp, g_np, delta)

    if torch is not None:
        tfn = {"mse": F.mse_loss, "l1": F.l1_loss,
               "huber": lambda a, b: F.huber_loss(a, b, delta=delta)}[op]
        case.impls["torch"] = _torch_fwd_bwd(tfn, p, t)

    def check():
        loss, grad = fn(p, t, out=g, **kwargs)
        ref = np.zeros(n)
        ref_loss = _numpy_regression(op, p.astype(np.float64), t.astype(np.float64),
                                     np.zeros(n), np.zeros(n), ref, delta)
        return max(_rel_err(grad, ref), abs(float(loss) - ref_loss) / abs(ref_loss))

    case.check = check
    return case


def _numpy_cross_entropy(x, y, g, rows):
    """Plain NumPy softmax cross-entropy (mean) writing the gradient into ``g``."""
    n = x.shape[0]
    m = x.max(axis=1, keepdims=True)
    np.subtract(x, m, out=g)
    np.exp(g, out=g)
    s = g.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(s[:, 0]) + m[:, 0] - x[rows, y]))
    g *= 1.0 / (s * n)
    g[rows, y] -= 1.0 / n
    return loss


def cross_entropy_case(shape=CE_SHAPE, dtype=np.float32):
    """Softmax cross-entropy (mean) of ``shape`` logits: loss + gradient."""
    threads()
    n, c = shape
    rng = np.random.default_rng(0)
    x = (2.0 * rng.standard_normal(shape)).astype(dtype)
    y = rng.integers(0, c, n)
    g = np.zeros_like(x)
    rows = np.arange(n)
    item = np.dtype(dtype).itemsize
    case = Case("cross_entropy", f"{n}x{c} {np.dtype(dtype).name}", 2 * item * x.size,
                make_floor("read1_write1", x.size, dtype), family="losses")
    case.impls["fastml"] = lambda: fastml.cross_entropy(x, y, out=g)

    g_np = np.zeros_like(x)
    case.impls["numpy"] = lambda: _numpy_cross_entropy(x, y, g_np, rows)

    if torch is not None:
        case.impls["torch"] = _torch_fwd_bwd(F.cross_entropy, x, y)

    def check():
        loss, grad = fastml.cross_entropy(x, y, out=g)
        ref = np.zeros(shape)
        ref_loss = _numpy_cross_entropy(x.astype(np.float64), y, ref, rows)
        return max(_rel_err(grad, ref), abs(float(loss) - ref_loss) / abs(ref_loss))

    case.check = check
    return case


def _numpy_bce(x, t, a, b, g):
    """Plain NumPy BCE-with-logits (mean) in the overflow-free form, writing the gradient into
    ``g``; ``a`` and ``b`` are scratch buffers. sigmoid(x) = (1 + tanh(x / 2)) / 2 needs no
    branch on the sign of x."""
    n = x.size
    np.abs(x, out=a)
    np.negative(a, out=a)
    np.exp(a, out=a)
    np.log1p(a, out=a)  # log(1 + exp(-|x|))
    np.maximum(x, 0, out=b)
    a += b
    np.multiply(x, t, out=b)
    a -= b  # max(x, 0) - x t + log(1 + exp(-|x|))
    loss = float(a.sum(dtype=np.float64)) / n
    np.multiply(x, 0.5, out=g)
    np.tanh(g, out=g)
    g *= 0.5
    g += 0.5
    g -= t
    g *= 1.0 / n  # d(loss)/dx = (sigmoid(x) - t) / n
    return loss


def bce_with_logits_case(n=REGRESSION_N, dtype=np.float32):
    """Binary cross-entropy on ``n`` logits (mean) with probability targets: loss + gradient.

    Floor: read 2 arrays + write 1 (12 B/element in float32), as for MSE. Peers: PyTorch
    ``F.binary_cross_entropy_with_logits`` forward + backward and plain NumPy.
    """
    threads()
    rng = np.random.default_rng(0)
    x = (2.0 * rng.standard_normal(n)).astype(dtype)
    t = rng.random(n).astype(dtype)
    g = np.zeros_like(x)
    item = np.dtype(dtype).itemsize
    case = Case("bce_with_logits", f"{n:,} {np.dtype(dtype).name}", 3 * item * n,
                make_floor("read2_write1", n, dtype), family="losses")
    case.impls["fastml"] = lambda: fastml.bce_with_logits(x, t, out=g)

    a, b, g_np = np.zeros_like(x), np.zeros_like(x), np.zeros_like(x)
    case.impls["numpy"] = lambda: _numpy_bce(x, t, a, b, g_np)

    if torch is not None:
        case.impls["torch"] = _torch_fwd_bwd(F.binary_cross_entropy_with_logits, x, t)

    def check():
        loss, grad = fastml.bce_with_logits(x, t, out=g)
        x64, t64 = x.astype(np.float64), t.astype(np.float64)
        ref = np.zeros(n)
        ref_loss = _numpy_bce(x64, t64, np.zeros(n), np.zeros(n), ref)
        return max(_rel_err(grad, ref), abs(float(loss) - ref_loss) / abs(ref_loss))

    case.check = check
    return case


# --- classification metrics --------------------------------------------------------------------

METRICS_N = 10_000_000
METRICS_CLASSES = 10


@njit(parallel=True, nogil=True, cache=True)
def read2_sum(a, b):
    """sum(a + b): reads two label arrays once and writes nothing, the byte pattern of the
    confusion-count pass (16 B/sample for int64 labels). Each array is read as two interleaved
    streams (halves of a chunk), four in all, as ``READ_CHUNK`` explains."""
    n = a.shape[0]
    nchunks = (n + READ_CHUNK - 1) // READ_CHUNK
    sums = np.empty(nchunks, dtype=a.dtype)
    for c in prange(nchunks):
        x = a[c * READ_CHUNK:min(n, (c + 1) * READ_CHUNK)]
        y = b[c * READ_CHUNK:min(n, (c + 1) * READ_CHUNK)]
        h = x.shape[0] // 2
        t0 = t1 = x.dtype.type(0)
        for i in range(h):
            t0 += x[i] + y[i]
            t1 += x[i + h] + y[i + h]
        for i in range(2 * h, x.shape[0]):
            t0 += x[i] + y[i]
        sums[c] = t0 + t1
    return sums.sum()


def _numpy_macro_f1(y_true, y_pred, k):
    """Macro F1 from one ``np.bincount`` of ``y_true * k + y_pred`` (a fast plain-NumPy peer;
    every class is present in the benchmark data, so no zero-division cases)."""
    cm = np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k).astype(np.float64)
    tp = np.diagonal(cm)
    return float(np.mean(2.0 * tp / (cm.sum(axis=0) + cm.sum(axis=1))))


def metrics_case(n=METRICS_N, k=METRICS_CLASSES):
    """Macro F1 of ``n`` int64 labels over ``k`` classes (a classifier right 70% of the time).

    Floor: read both label arrays once (16 B/sample), timed with :func:`read2_sum`. Peers:
    scikit-learn ``f1_score(average="macro")`` (seconds per call: run with few rounds) and
    plain NumPy (``bincount`` of ``t * k + p``, which allocates an n-element temporary).
    """
    import fastml.metrics

    threads()
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < 0.7, y_true, rng.integers(0, k, n))
    floor_a, floor_b = y_true.copy(), y_pred.copy()  # own arrays: no cache reuse
    floor = Floor("read2_sum", n, 16 * n, lambda: read2_sum(floor_a, floor_b))
    case = Case("f1_macro", f"{n:,} i64 k={k}", 16 * n, floor, family="metrics")
    case.impls["fastml"] = lambda: fastml.metrics.f1(y_true, y_pred, average="macro")
    case.impls["numpy"] = lambda: _numpy_macro_f1(y_true, y_pred, k)
    try:
        from sklearn.metrics import f1_score
    except ImportError:  # pragma: no cover - scikit-learn is an optional peer
        pass
    else:
        case.impls["sklearn"] = lambda: f1_score(y_true, y_pred, average="macro")

    def check():
        got = fastml.metrics.f1(y_true, y_pred, average="macro")
        want = _numpy_macro_f1(y_true, y_pred, k)
        return abs(got - want) / abs(want)

    case.check = check
    return case


def cases():
    """Every benchmarked case, keyed by op name (what ``fastml bench`` iterates).

    Each value builds the case at its default size when called with no arguments; ``fastml
    bench`` passes a size keyword the factory names (``n=`` or ``shape=``) to sweep sizes.
    """
    return {
        "mse": partial(regression_case, "mse"),
        "l1": partial(regression_case, "l1"),
        "huber": partial(regression_case, "huber"),
        "bce_with_logits": bce_with_logits_case,
        "cross_entropy": cross_entropy_case,
        "f1_macro": metrics_case,
    }
