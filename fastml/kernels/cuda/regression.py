"""MSE, L1 and Huber on the GPU: per-element loss and gradient in one pass over memory.

One grid-stride kernel per loss, specialised by an inlined element function, reads ``pred`` and
``target`` once and writes ``grad`` once (12 B/element in float32). Element arithmetic stays in
the input dtype; a reduced loss is summed in float64 per thread, then per block (shared memory),
then across blocks by a one-block kernel in a fixed order: deterministic, no host round trip.
"""

from numba import cuda, float64, int64

from . import _launch as L
from ._grad import load4
from ._launch import SHARED


@cuda.jit(device=True)
def _sign(d, one):
    # np.sign: 0 at 0, NaN for NaN (as PyTorch's l1 gradient). Comparing with a typed zero keeps
    # float32 compares in float32.
    zero = one - one
    if d > zero:
        return one
    if d < zero:
        return -one
    return d * zero  # +-0 stays 0; NaN stays NaN


@cuda.jit(device=True)
def _mse(d, delta, one):
    # l = d^2, dl/dpred = 2 d
    return d * d, d + d


@cuda.jit(device=True)
def _l1(d, delta, one):
    return abs(d), _sign(d, one)


@cuda.jit(device=True)
def _huber(d, delta, one):
    # Quadratic inside |d| < delta, linear outside; the gradient is d clamped to [-delta, delta].
    half = one / (one + one)  # typed like d: a float64 literal would promote float32 math
    ad = abs(d)
    if ad < delta:
        return half * d * d, d
    return delta * (ad - half * delta), delta * _sign(d, one)


def _make_kernel(elem):
    @cuda.jit(device=True)
    def put(grad, loss, i, d, s, delta, one, grad_factor, loss_factor, per_element):
        # One element's gradient, and its loss stored or added to the thread's float64 sum.
        li, g = elem(d, delta, one)
        grad[i] = g * grad_factor
        if per_element:
            loss[i] = li * loss_factor
        else:
            s += float64(li)
        return s

    @cuda.jit
    def kernel(grad, loss, buf, pred, target, delta, grad_factor, loss_factor):
        # delta, grad_factor, loss_factor: scalars of the input dtype.
        sh = cuda.shared.array(SHARED, float64)
        n = pred.shape[0]
        per_element = loss.shape[0] == n
        one = pred.dtype.type(1.0)
        t = int64(cuda.blockDim.x)
        tile = 4 * t  # eight loads in flight per thread, as in the update kernels
        s = 0.0
        for j in range(int64(cuda.blockIdx.x) * tile + cuda.threadIdx.x, n,
                       int64(cuda.gridDim.x) * tile):
            if j + 3 * t < n:
                # All of a tile's inputs are read before any gradient is stored: grad may be
                # pred or target itself, and each index is read and written by one thread.
                p0, p1, p2, p3 = load4(pred, j, t)
                t0, t1, t2, t3 = load4(target, j, t)
                s = put(grad, loss, j, p0 - t0, s, delta, one, grad_factor, loss_factor,
                        per_element)
                s = put(grad, loss, j + t, p1 - t1, s, delta, one, grad_factor, loss_factor,
                        per_element)
                s = put(grad, loss, j + 2 * t, p2 - t2, s, delta, one, grad_factor,
                        loss_factor, per_element)
                s = put(grad, loss, j + 3 * t, p3 - t3, s, delta, one, grad_factor,
                        loss_factor, per_element)
            else:  # the last, partial tile
                for i in range(j, n, t):
                    s = put(grad, loss, i, pred[i] - target[i], s, delta, one, grad_factor,
                            loss_factor, per_element)
        if not per_element:  # uniform across the grid, so every thread reaches the barriers
            total = L.block_sum(sh, s)
            if cuda.threadIdx.x == 0:
                buf[L.LOSS_OFF + cuda.blockIdx.x] = total

    return kernel


_DOC = """{name} loss and its gradient in one pass, on the GPU (launches without synchronizing).

    Parameters
    ----------
    grad : (n,) float32 or float64 device array, written
        ``grad_factor * d{name}/dpred``. May be ``pred`` or ``target`` itself (in place).
    loss : (n,) or (1,) device array, same dtype as ``pred``, written
        ``(n,)``: per-element losses times ``loss_factor``; ``(1,)``: their float64 sum times
        ``loss_factor``, cast to the dtype, computed on the device.
    pred, target : (n,) float32 or float64 device arrays, read
    delta : float
        Huber threshold; ignored by MSE and L1.
    grad_factor, loss_factor : float
        ``grad_scale / n`` and ``1 / n`` for a mean, ``grad_scale`` and ``1`` for a sum.
    stream : numba stream or 0

    Raises ``ValueError``, before launching, if ``grad`` or ``target`` is not as long as
    ``pred``, or ``loss`` has neither n entries nor 1.
    """


def _make_launcher(kernel, name):
    def launcher(grad, loss, pred, target, delta, grad_factor, loss_factor, stream=0):
        grad, loss, pred, target = map(L.as_device, (grad, loss, pred, target))
        n = pred.shape[0]
        if grad.shape[0] != n or target.shape[0] != n:
            raise ValueError("grad and target must have the length of pred")
        if loss.shape[0] != n and loss.shape[0] != 1:
            raise ValueError("loss must have the length of pred or 1")
        dt = pred.dtype.type
        blocks = L.grid(n, 4 * L.THREADS)  # tiles of four per thread
        buf = L.scratch(stream)
        kernel[blocks, L.THREADS, stream](grad, loss, buf, pred, target, dt(delta),
                                          dt(grad_factor), dt(loss_factor))
        if loss.shape[0] != n:
            L.sum_partials(loss, buf, blocks, loss_factor, stream)

    launcher.__name__ = launcher.__qualname__ = f"{name.lower()}_fwd_bwd"
    launcher.__doc__ = _DOC.format(name=name)
    return launcher


_mse_kernel = _make_kernel(_mse)
_l1_kernel = _make_kernel(_l1)
_huber_kernel = _make_kernel(_huber)

mse_fwd_bwd = _make_launcher(_mse_kernel, "MSE")
l1_fwd_bwd = _make_launcher(_l1_kernel, "L1")
huber_fwd_bwd = _make_launcher(_huber_kernel, "Huber")
