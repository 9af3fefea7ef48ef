"""Which CUDA stream a GPU call launches on, and host reads ordered on it.

One rule for every GPU call: its kernels go on the caller's stream, so they run after the work
that produced the inputs and before the work that reads the outputs, and the host never waits.
The caller's stream is, first match wins:

1. the stream of an enclosing ``with fastml.cuda_stream(s):`` (a numba stream, a
   ``torch.cuda.Stream``, a CuPy stream, or a raw ``cudaStream_t`` handle as an int);
2. for a PyTorch CUDA tensor, ``torch.cuda.current_stream(tensor.device)``: PyTorch's
   ``__cuda_array_interface__`` (version 2) names no stream, and its non-default streams do not
   synchronize with CUDA's legacy default stream, so launching on stream 0 would race;
3. the ``stream`` entry of an input's ``__cuda_array_interface__`` (version 3; CuPy exports its
   current stream there): 1 is the legacy default stream, 2 the per-thread default stream,
   anything else a handle. The interface lets a consumer either synchronize on that stream or
   queue its work on it; fastml queues, which is why it wraps arrays with ``sync=False``;
4. numba's default stream, 0.

Inputs produced on another stream than the one chosen (say, under ``cuda_stream`` with tensors
written on PyTorch's current stream) must be ordered by the caller, as with any two CUDA streams.

Anything that reads the device for the host (a Python number, a ``StepInfo`` field, a
checkpoint) copies on the stream the kernels ran on and waits for that stream alone.
"""

import contextlib
import functools
import sys
import threading

_local = threading.local()
_EXTERNAL = {}  # handle -> numba stream (external streams are plain wrappers: keep one each)
_MAX_EXTERNAL = 64


def _numba_cuda():
    from numba import cuda

    return cuda


def _from_handle(handle):
    """A numba stream for a raw ``cudaStream_t`` handle (0: numba's default stream)."""
    handle = int(handle)
    if handle == 0:
        return 0
    cuda = _numba_cuda()
    if handle == 1:
        return cuda.legacy_default_stream()
    if handle == 2:
        return cuda.per_thread_default_stream()
    stream = _EXTERNAL.get(handle)
    if stream is None:
        if len(_EXTERNAL) >= _MAX_EXTERNAL:
            _EXTERNAL.pop(next(iter(_EXTERNAL)))
        stream = _EXTERNAL[handle] = cuda.external_stream(handle)
    return stream


def as_numba_stream(stream):
    """A numba stream (or 0) for ``stream``: a numba stream, a PyTorch or CuPy stream, or an int
    handle."""
    if isinstance(stream, bool):
        raise TypeError("stream must be a CUDA stream or an int handle; got bool")
    if isinstance(stream, int):
        return _from_handle(stream)
    for attr in ("cuda_stream", "ptr"):  # torch.cuda.Stream, cupy.cuda.Stream
        handle = getattr(stream, attr, None)
        if isinstance(handle, int):
            return _from_handle(handle)
    if isinstance(stream, type(_numba_cuda().default_stream())):  # numba's own
        return stream
    raise TypeError("stream must be a numba, PyTorch or CuPy CUDA stream or an int handle; "
                    f"got {type(stream).__name__}")


@contextlib.contextmanager
def cuda_stream(stream):
    """Launch fastml's GPU work in this block (this thread) on ``stream``.

    ``stream``: a numba stream, a ``torch.cuda.Stream``, a CuPy stream or a raw ``cudaStream_t``
    handle. Without this block, fastml uses the stream of its inputs (PyTorch's current stream
    for PyTorch tensors, the ``__cuda_array_interface__`` stream for CuPy arrays), else numba's
    default stream.
    """
    chosen = as_numba_stream(stream)
    previous = getattr(_local, "stream", None)
    _local.stream = chosen
    try:
        yield chosen
    finally:
        _local.stream = previous


def _producer_stream(x):
    """The stream ``x`` is being produced on, or None if it names none."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return _from_handle(torch.cuda.current_stream(x.device).cuda_stream) if x.is_cuda else None
    if hasattr(x, "copy_to_host"):  # numba device arrays carry no producer stream
        return None
    iface = getattr(x, "__cuda_array_interface__", None)
    handle = iface.get("stream") if isinstance(iface, dict) else None
    return None if handle is None else _from_handle(handle)


def for_arrays(*objs):
    """The stream for a GPU call on the user objects ``objs`` (None entries are skipped; a list
    counts through its items)."""
    chosen = getattr(_local, "stream", None)
    if chosen is not None:
        return chosen
    for x in objs:
        for item in (x if isinstance(x, (list, tuple)) else (x,)):
            if item is not None:
                found = _producer_stream(item)
                if found is not None:
                    return found
    return 0


def same(a, b):
    """True if ``a`` and ``b`` are the same stream."""
    if a is b:
        return True
    from .kernels.cuda._launch import stream_key

    return stream_key(a) == stream_key(b)


def wait_for(stream, earlier):
    """Make work queued on ``stream`` from now on wait (on the device) for the work already
    queued on ``earlier``. The host does not wait."""
    from .kernels.cuda._launch import SIMULATOR

    cuda = _numba_cuda()
    event = cuda.event() if SIMULATOR else cuda.event(timing=False)  # (no arguments there)
    event.record(earlier)
    event.wait(stream)


def to_host(a, stream=0):
    """A host copy of device array ``a`` once the work queued on ``stream`` has written it."""
    if isinstance(stream, int):
        return a.copy_to_host()
    host = a.copy_to_host(stream=stream)
    stream.synchronize()
    return host


def to_device(host, stream=0):
    """A device copy of ``host`` queued on ``stream`` (ordered before the kernels that read it)."""
    return _numba_cuda().to_device(host, stream=stream)


class Launchers:
    """The launchers of a CUDA kernel module with ``stream=`` filled in."""

    def __init__(self, module, stream):
        self._module, self._stream = module, stream

    def __getattr__(self, name):
        value = getattr(self._module, name)
        if callable(value):
            value = functools.partial(value, stream=self._stream)
        setattr(self, name, value)  # later lookups skip __getattr__
        return value
