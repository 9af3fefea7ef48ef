"""From user objects to kernel arrays, and the checks every API function shares.

CPU arrays become NumPy arrays (PyTorch CPU tensors and buffer-protocol objects are viewed
zero-copy); anything with ``__cuda_array_interface__`` (numba device arrays, CuPy, PyTorch CUDA
tensors) becomes a numba device array over the same memory. Checks raise the types of
``fastml.errors`` with messages ``"<arg> must be <expected>; got <actual>"``.
"""

import numpy as np

from .errors import DeviceError, DTypeError, ShapeError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _detach(x):
    # A PyTorch tensor that requires grad refuses both __array__ and __cuda_array_interface__.
    if getattr(x, "requires_grad", False) and hasattr(x, "detach"):
        return x.detach()
    return x


def on_gpu(x):
    """True when ``x`` lives on a CUDA device."""
    is_cuda = getattr(x, "is_cuda", None)  # PyTorch: CPU tensors also define the interface
    if isinstance(is_cuda, bool):
        return is_cuda
    # The CUDA simulator's device arrays carry numba's marker but not the interface.
    return hasattr(x, "__cuda_array_interface__") or getattr(x, "__cuda_ndarray__", False) is True


def device_of(**arrays):
    """Return True if every non-None argument is on the GPU, False if all are on the CPU."""
    if all(type(x) is np.ndarray or x is None for x in arrays.values()):
        return False
    where = {name: on_gpu(x) for name, x in arrays.items() if x is not None}
    if len(set(where.values())) > 1:
        gpu = ", ".join(n for n, g in where.items() if g)
        cpu = ", ".join(n for n, g in where.items() if not g)
        raise DeviceError(
            f"arrays must all be on one device; got {gpu} on the GPU and {cpu} on the CPU "
            "(move them with cuda.to_device / .cuda() or copy_to_host / .cpu())"
        )
    return any(where.values())


def as_array(x, name, cuda):
    """View ``x`` as a NumPy array (``cuda=False``) or a numba device array, without copying."""
    if type(x) is np.ndarray and not cuda:
        return x
    x = _detach(x)
    if cuda:
        from numba import cuda as nb_cuda

        # numba's own device arrays pass through; anything else is wrapped, zero-copy, without
        # waiting for the stream its interface names: fastml queues its kernels on that stream
        # instead (fastml._streams), which the interface allows in place of a synchronization.
        return x if hasattr(x, "copy_to_host") else nb_cuda.as_cuda_array(x, sync=False)
    if hasattr(x, "numpy") and hasattr(x, "detach"):  # PyTorch CPU tensor: zero-copy view
        try:
            return x.numpy()
        except TypeError as exc:  # e.g. bfloat16, which NumPy cannot hold
            raise DTypeError(f"{name} must be a float32 or float64 array; got {x.dtype}") from exc
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise DTypeError(f"{name} must be an array; got {type(x).__name__}") from exc


def check_in_place(obj, a, name, cuda):
    """``a`` (``as_array(obj)``) must be ``obj``'s own memory, so that writing into ``a``
    updates ``obj``: ``np.asarray`` makes a private copy of lists, tuples and scalars, and a
    result written there would be lost."""
    if cuda or type(obj) is np.ndarray or a.size == 0:
        return
    again = as_array(obj, name, cuda)  # a copy is a new buffer each time; a view is not
    if again.ctypes.data != a.ctypes.data:
        raise DTypeError(f"{name} must be an array that can be updated in place (a NumPy "
                         "array, a PyTorch tensor, or a CUDA array); got a "
                         f"{type(obj).__name__}, of which only a private copy would change "
                         "(pass np.asarray(x, dtype=np.float32) and keep that array)")


def check_float(a, name):
    if np.dtype(a.dtype) not in FLOAT_DTYPES:
        raise DTypeError(
            f"{name} must be a float32 or float64 array; got {np.dtype(a.dtype)}"
            + (" (cast it with .astype(np.float32))" if np.dtype(a.dtype).kind in "iub" else "")
        )


def check_same_dtype(a, name, like, like_name):
    if np.dtype(a.dtype) != np.dtype(like.dtype):
        raise DTypeError(
            f"{name} must have the dtype of {like_name} ({np.dtype(like.dtype)}); "
            f"got {np.dtype(a.dtype)}"
        )


def check_same_shape(a, name, like, like_name):
    if tuple(a.shape) != tuple(like.shape):
        raise ShapeError(
            f"{name} must have the shape of {like_name} {tuple(like.shape)}; got {tuple(a.shape)}"
        )


def check_non_empty(a, name):
    if a.size == 0:
        raise ShapeError(f"{name} must be non-empty; got shape {tuple(a.shape)}")


def _is_c_contiguous(a):
    return a.flags["C_CONTIGUOUS"] if isinstance(a, np.ndarray) else a.is_c_contiguous()


def contiguous_input(a, name, cuda):
    """A C-contiguous version of an input: a copy on the CPU if needed, an error on the GPU."""
    if _is_c_contiguous(a):
        return a
    if cuda:
        raise ShapeError(
            f"{name} must be C-contiguous on the GPU; got strides {a.strides} "
            "(make a contiguous copy first, e.g. .contiguous() or cupy.ascontiguousarray)"
        )
    return np.ascontiguousarray(a)


def _byte_range(a):
    if isinstance(a, np.ndarray):
        start = a.ctypes.data  # twice as fast as building __array_interface__
    else:
        # A simulator device array has no __cuda_array_interface__; it forwards its host
        # array's.
        iface = getattr(a, "__cuda_array_interface__", None) or a.__array_interface__
        start = iface["data"][0]
    return start, start + a.size * a.dtype.itemsize


def check_out(out, like, like_name, inputs):
    """``out`` must match ``like`` and be writable and contiguous; it may *be* one of ``inputs``
    (in place) but must not partly overlap any of them."""
    check_same_shape(out, "out", like, like_name)
    check_same_dtype(out, "out", like, like_name)
    if not _is_c_contiguous(out):
        raise ShapeError(f"out must be C-contiguous; got strides {out.strides}")
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        raise ShapeError("out must be writeable; got a read-only array")
    lo, hi = None, None
    for name, a in inputs.items():
        if a is None or a is out:
            continue
        if isinstance(a, np.ndarray) and isinstance(out, np.ndarray) and not (
                np.may_share_memory(a, out)):  # a bounds test in C: no overlap, no more work
            continue
        if lo is None:
            lo, hi = _byte_range(out)
        a_lo, a_hi = _byte_range(a)
        same = (a_lo, a_hi) == (lo, hi) and tuple(a.shape) == tuple(out.shape)
        if not same and a_lo < hi and lo < a_hi:
            raise ShapeError(
                f"out must be {name} itself or not overlap it; got a partly overlapping view"
            )


def empty_like(a, cuda, shape=None, dtype=None):
    shape = a.shape if shape is None else shape
    dtype = a.dtype if dtype is None else dtype
    if cuda:
        from numba import cuda as nb_cuda

        return nb_cuda.device_array(shape, dtype=dtype)
    return np.empty(shape, dtype=dtype)


def flat(a):
    """A 1-D view of a C-contiguous array (CPU or GPU)."""
    return a.reshape(a.size) if a.ndim != 1 else a
