"""GPU cases for ``fastml bench --device cuda``: the same :class:`~fastml.bench.cases.Case`
objects as on the CPU, on device arrays, with PyTorch CUDA peers and GPU floor kernels.

The floor of an op is a trivial grid-stride numba-cuda kernel with the op's byte pattern over
the same number of elements, timed interleaved with the op (CUDA events, see
:mod:`fastml.bench.gpu_timing`). Inputs are PyTorch CUDA tensors when PyTorch has CUDA
(fastml gets numba views of them made once, so no call pays the stream synchronisation of
``__cuda_array_interface__``), numba device arrays otherwise (then there are no peers).
The larger GPU suites with kernel variants stay in ``bench/gpu_bench.py`` and
``bench/gpu_optim.py``.
"""

import math

import numpy as np
from numba import cuda, float64, int64

import fastml

from ..kernels.cuda import _launch as L
from . import gpu_timing
from .cases import Case, Floor

_BLOCK = 256
_SHARED = 256  # threads per block of the floor kernels (a literal for the shared array)


def _grid(n):
    return min(max(1, -(-n // _BLOCK)), 65_536)


@cuda.jit
def _read2_write1_kernel(c, a, b):
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    for i in range(start, a.shape[0], int64(cuda.gridDim.x) * cuda.blockDim.x):
        c[i] = a[i] + b[i]


@cuda.jit
def _read1_write1_kernel(b, a, s):
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    for i in range(start, a.shape[0], int64(cuda.gridDim.x) * cuda.blockDim.x):
        b[i] = a[i] * s


@cuda.jit
def _read4_write3_kernel(p, g, m, v):
    # Adam's traffic: read p, g, m, v; write p, m, v (28 B/parameter in float32).
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    for i in range(start, p.shape[0], int64(cuda.gridDim.x) * cuda.blockDim.x):
        gi = g[i]
        m[i] = m[i] + gi
        v[i] = v[i] + gi * gi
        p[i] = p[i] - gi


@cuda.jit
def _sum_kernel(total, a):
    # Read once: a block sum in shared memory, one float64 atomic per block.
    sh = cuda.shared.array(_SHARED, float64)
    s = 0.0
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    for i in range(start, a.shape[0], int64(cuda.gridDim.x) * cuda.blockDim.x):
        s += a[i]
    s = L.block_sum(sh, s)
    if cuda.threadIdx.x == 0:
        cuda.atomic.add(total, 0, s)


@cuda.jit
def _scale_kernel(a, s):
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    for i in range(start, a.shape[0], int64(cuda.gridDim.x) * cuda.blockDim.x):
        a[i] = a[i] * s


def _launch(kernel, n, *args):
    kernel[_grid(n), _BLOCK](*args)


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


class _Arrays:
    """Device arrays for one case: torch tensors (and numba views) or numba arrays."""

    def __init__(self, seed=0):
        self.torch = _torch_cuda()
        self.rng = np.random.default_rng(seed)

    def new(self, host):
        """``(numba view, torch tensor or None)`` of a copy of ``host`` on the device."""
        if self.torch is not None:
            t = self.torch.from_numpy(np.ascontiguousarray(host)).to("cuda")
            return cuda.as_cuda_array(t), t
        return cuda.to_device(host), None

    def normal(self, shape, scale=1.0):
        return self.new((scale * self.rng.standard_normal(shape)).astype(np.float32))


def _floor(pattern, n, nbytes, arrays):
    a, _ = arrays.new(np.ones(n, np.float32))
    b, _ = arrays.new(np.ones(n, np.float32))
    if pattern == "read2_write1":
        c, _ = arrays.new(np.zeros(n, np.float32))
        return Floor(pattern, n, nbytes, lambda: _launch(_read2_write1_kernel, n, c, a, b))
    if pattern == "read1_write1":
        return Floor(pattern, n, nbytes,
                     lambda: _launch(_read1_write1_kernel, n, b, a, np.float32(1.0001)))
    total = cuda.to_device(np.zeros(1))
    if pattern == "sum_then_scale":
        def run():
            _launch(_sum_kernel, n, total, a)
            _launch(_scale_kernel, n, a, np.float32(1.0))
        return Floor(pattern, n, nbytes, run)
    m, _ = arrays.new(np.zeros(n, np.float32))
    v, _ = arrays.new(np.zeros(n, np.float32))
    p, _ = arrays.new(np.zeros(n, np.float32))
    if pattern == "read4_write3":
        return Floor(pattern, n, nbytes, lambda: _launch(_read4_write3_kernel, n, p, b, m, v))
    if pattern == "sum+read4_write3":
        def run():
            _launch(_sum_kernel, n, total, b)
            _launch(_read4_write3_kernel, n, p, b, m, v)
        return Floor(pattern, n, nbytes, run)
    raise ValueError(f"unknown floor pattern {pattern!r}")


def _loss_case(op, n):
    arr = _Arrays()
    x, xt = arr.normal(n, 2.0)
    if op == "bce_with_logits":
        t, tt = arr.new(arr.rng.random(n).astype(np.float32))
    else:
        t, tt = arr.normal(n)
    g, _ = arr.new(np.zeros(n, np.float32))
    fn = getattr(fastml, op)
    case = Case(op, f"{n:,} float32", 12 * n, _floor("read2_write1", n, 12 * n, arr),
                family="losses")
    case.impls["fastml"] = lambda: fn(x, t, out=g)
    if xt is not None:
        import torch.nn.functional as F

        tfn = {"mse": F.mse_loss, "l1": F.l1_loss, "huber": F.huber_loss,
               "bce_with_logits": F.binary_cross_entropy_with_logits}[op]
        leaf = xt.clone().requires_grad_(True)

        def torch_fwd_bwd():
            leaf.grad = None
            tfn(leaf, tt).backward()

        case.impls["torch"] = torch_fwd_bwd
    return case


def mse_case(n=16_777_216):
    """MSE (mean) loss + gradient on ``n`` float32 elements; peer ``F.mse_loss``."""
    return _loss_case("mse", n)


def bce_with_logits_case(n=16_777_216):
    """BCE on logits (mean); peer ``F.binary_cross_entropy_with_logits``."""
    return _loss_case("bce_with_logits", n)


def cross_entropy_case(shape=(8192, 1000)):
    """Softmax cross-entropy (mean) of ``shape`` float32 logits; peer ``F.cross_entropy``."""
    rows, classes = shape
    arr = _Arrays()
    x, xt = arr.normal(shape, 2.0)
    y, yt = arr.new(arr.rng.integers(0, classes, rows))
    g, _ = arr.new(np.zeros(shape, np.float32))
    size = rows * classes
    case = Case("cross_entropy", f"{rows}x{classes} float32", 8 * size,
                _floor("read1_write1", size, 8 * size, arr), family="losses")
    case.impls["fastml"] = lambda: fastml.cross_entropy(x, y, out=g)
    if xt is not None:
        import torch.nn.functional as F

        leaf = xt.clone().requires_grad_(True)

        def torch_fwd_bwd():
            leaf.grad = None
            F.cross_entropy(leaf, yt).backward()

        case.impls["torch"] = torch_fwd_bwd
    return case


def clip_grad_norm_case(n=16_777_216):
    """``clip_grad_norm`` of one gradient in place; peer ``torch.nn.utils.clip_grad_norm_``."""
    arr = _Arrays()
    g, gt = arr.normal(n)
    case = Case("clip_grad_norm", f"{n:,} float32", 12 * n,
                _floor("sum_then_scale", n, 12 * n, arr), family="guards")
    case.impls["fastml"] = lambda: fastml.clip_grad_norm(g, 1.0)
    if gt is not None:
        torch = arr.torch
        leaf = torch.zeros_like(gt).requires_grad_(True)
        leaf.grad = gt.clone()
        case.impls["torch"] = lambda: torch.nn.utils.clip_grad_norm_([leaf], 1.0)
    return case


def _adam_case(n, guarded):
    arr = _Arrays()
    p, pt = arr.normal(n)
    g, gt = arr.normal(n, 1e-3)
    guard = fastml.Guard(clip_norm=1.0, scaler=fastml.LossScaler()) if guarded else None
    opt = fastml.Adam(p, lr=1e-3, guard=guard)
    nbytes = (32 if guarded else 28) * n  # a guard reads the gradients once more
    pattern = "sum+read4_write3" if guarded else "read4_write3"
    op = "Adam + Guard" if guarded else "Adam"
    case = Case(op, f"{n:,} float32", nbytes, _floor(pattern, n, nbytes, arr),
                family="optimizers")
    case.impls["fastml"] = lambda: opt.step(g)
    if pt is not None:
        torch = arr.torch
        for kind in ("fused", "foreach"):
            leaf = pt.clone().requires_grad_(True)
            leaf.grad = gt.clone()
            topt = torch.optim.Adam([leaf], lr=1e-3, **{kind: True})
            if guarded:
                def step(leaf=leaf, topt=topt):
                    torch.nn.utils.clip_grad_norm_([leaf], 1.0)
                    topt.step()
                case.impls[f"torch_clip_{kind}"] = step
            else:
                case.impls[f"torch_{kind}"] = topt.step
    return case


def adam_case(n=16_777_216):
    """One ``Adam.step`` over ``n`` float32 parameters; peers torch Adam fused / foreach."""
    return _adam_case(n, guarded=False)


def guarded_adam_case(n=16_777_216):
    """``Adam.step`` with ``Guard(clip_norm=1, scaler)``; peers ``clip_grad_norm_`` + torch Adam
    fused / foreach (no finiteness skip or loss scaling: a lower bound for the peer)."""
    return _adam_case(n, guarded=True)


def cases():
    """The GPU cases, keyed by op (factories take ``n=`` or ``shape=``)."""
    return {
        "mse": mse_case,
        "bce_with_logits": bce_with_logits_case,
        "cross_entropy": cross_entropy_case,
        "clip_grad_norm": clip_grad_norm_case,
        "Adam": adam_case,
        "Adam + Guard": guarded_adam_case,
    }


def available():
    """``(True, device name)`` or ``(False, why not)``."""
    from numba import config

    try:
        ok = cuda.is_available()
    except Exception as exc:  # noqa: BLE001 - a broken driver reads as no GPU
        return False, f"numba.cuda.is_available() raised {exc!r}"
    if not ok:
        return False, "numba.cuda.is_available() is False (no CUDA GPU or driver found)"
    if config.ENABLE_CUDASIM:
        return True, "numba-cuda simulator (NUMBA_ENABLE_CUDASIM=1): timings mean nothing"
    try:
        name = cuda.get_current_device().name
        name = name.decode() if isinstance(name, bytes) else name
    except Exception:  # noqa: BLE001
        name = "CUDA device"
    return True, str(name)


def copy_bandwidth_gbs():
    """Device-to-device copy bandwidth in GB/s (bytes read + written), for reference."""
    bw = gpu_timing.copy_bandwidth()
    return bw if math.isfinite(bw) else None
