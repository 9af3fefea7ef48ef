"""Small work runs on one thread.

A numba ``parallel`` kernel wakes every worker thread, and waits for all of them, on each call.
On a loaded machine (other processes, or NumPy's BLAS threads in the same training loop) a
worker that has lost its core makes a call on a handful of elements take milliseconds instead of
microseconds: an Adam step over one parameter took 1.4-8 ms with 2 threads and 0.03 ms with one.
So the API runs a CPU kernel on the calling thread alone when its largest array holds fewer than
:data:`SERIAL_BELOW` elements (a ``*_tensors`` kernel: when all its arrays together do), as
PyTorch does with its grain size. Results do not change: every reduction is chunked by a fixed
length, whatever the thread count.

Every CPU kernel call passes through :func:`call`, which is also where a process forked from
one whose numba pool cannot survive fork raises, before the pool kills it
(``fastml._threading_layer``).
"""

import numba
import numpy as np

from . import _threading_layer

#: Arrays smaller than this (elements) are processed by the calling thread alone.
SERIAL_BELOW = 1 << 15


def _thread_count_access():
    """``(get, set)`` of numba's per-thread count of worker threads.

    The public ``numba.get_num_threads``/``set_num_threads`` take a lock and validate on every
    call (about 8 us together here, a tenth of a small optimizer step); after the thread pool is
    up, numba's own unchecked accessors behind them do the same for well under a microsecond.
    Where a numba version lacks them, the public functions serve.
    """
    # First launch the pool: numba binds the accessors (module globals) only then, so reading
    # them before this call found none and fell back to the public functions every time.
    numba.get_num_threads()
    try:
        from numba.np.ufunc import parallel

        return parallel._get_num_threads, parallel._set_num_threads
    except (ImportError, AttributeError):  # pragma: no cover - other numba versions
        return numba.get_num_threads, numba.set_num_threads


_ACCESS = None


def _largest(args):
    n = 0
    for a in args:
        if isinstance(a, np.ndarray) and a.size > n:
            n = a.size
    return n


def call(kernel, n, *args):
    """``kernel(*args)``, on the calling thread alone when ``n`` (elements) is small.

    Raises RuntimeError in a child forked from a process whose numba pool ran on GNU OpenMP.
    """
    global _ACCESS
    if _threading_layer.fork_error is not None:
        raise RuntimeError(_threading_layer.fork_error)
    if n >= SERIAL_BELOW:
        return kernel(*args)
    if _ACCESS is None:
        _ACCESS = _thread_count_access()
    get, put = _ACCESS
    threads = get()
    if threads == 1:
        return kernel(*args)
    put(1)
    try:
        return kernel(*args)
    finally:
        put(threads)


def _serial_when_small(kernel):
    def run(*args):
        return call(kernel, _largest(args), *args)

    run.__name__ = getattr(kernel, "__name__", "kernel")
    run.__doc__ = getattr(kernel, "__doc__", None)
    run.__wrapped__ = kernel
    return run


class SerialWhenSmall:
    """The kernels of a module, each wrapped by :func:`_serial_when_small` on first use."""

    def __init__(self, module):
        self._module = module

    def __getattr__(self, name):
        value = getattr(self._module, name)
        if callable(value):
            value = _serial_when_small(value)
        setattr(self, name, value)  # later lookups skip __getattr__
        return value
