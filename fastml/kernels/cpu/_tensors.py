"""Many arrays in one kernel call: a table of chunks that covers them, and their addresses.

An optimizer step over a list of parameter arrays runs one ``*_tensors`` kernel, not one kernel
per array: a call through numba's dispatcher costs several microseconds, which over a model of
100 small arrays cost more than the update itself (bench/NOTES.md). The arrays themselves are
passed by address (``a.ctypes.data`` in an int64 array), since numba compiles a tuple of arrays
once per length and builds a typed list element by element; the optimizer's own state buffers
are one flat array per kind, laid out tensor after tensor.

A chunk table is an ``(n_chunks, 4)`` int64 array; row ``c`` covers elements ``[START, STOP)``
of array ``TENSOR``, whose state starts at element ``STATE`` of the flat state buffers. Each
array is cut into chunks of at most ``CHUNK`` elements, in array order, so a kernel's parallel
loop runs over the chunks of every array at once and its reductions are added in the same order
as one call per array would add them.

The addresses are trusted, as with ctypes: nothing can tell from an integer whether an array
lies there. The caller guarantees that every addressed array exists for the duration of the
call, is C-contiguous, of the dtype of the kernel's ``like`` argument (or state buffers), and
holds at least ``STOP`` elements for every row of the table that names it. What the kernels can
check they do, before touching memory (:func:`state_extent`): each ``TENSOR`` entry indexes the
address arrays, ``0 <= START <= STOP``, ``STATE >= 0``, and every state buffer the rule uses
covers every row's state span; otherwise ``ValueError``.
"""

import numpy as np
from numba import carray, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._jit import CHUNK, inline, serial

TENSOR, START, STOP, STATE = 0, 1, 2, 3  # the columns of a chunk table


def chunk_table(sizes):
    """The chunk table of arrays with ``sizes`` elements whose state is laid out in order."""
    sizes = np.asarray(sizes, dtype=np.int64).reshape(-1)
    counts = (sizes + CHUNK - 1) // CHUNK
    tensor = np.repeat(np.arange(sizes.shape[0]), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)  # each tensor's first row
    start = (np.arange(tensor.shape[0]) - first) * CHUNK
    table = np.empty((tensor.shape[0], 4), dtype=np.int64)
    table[:, TENSOR] = tensor
    table[:, START] = start
    table[:, STOP] = np.minimum(start + CHUNK, sizes[tensor])
    table[:, STATE] = (np.cumsum(sizes) - sizes)[tensor] + start
    return table


@serial
def data_address(a):
    """``a.ctypes.data``, four times faster than NumPy's (which builds a ctypes object)."""
    return a.ctypes.data


def addresses(arrays):
    """The int64 addresses of ``arrays``' first elements, for a ``*_tensors`` kernel."""
    return np.array([data_address(a) for a in arrays], dtype=np.int64)


@intrinsic
def _voidptr(typingctx, address):
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


_INT64_MAX = (1 << 63) - 1


@serial
def state_extent(chunks, n_tensors):
    """Check a chunk table against ``n_tensors`` addresses; return the length a flat state
    buffer needs to cover every row's state span (``max(STATE + STOP - START)``, 0 if none).

    Raises ``ValueError`` if the table has fewer than 4 columns, names a tensor outside
    ``[0, n_tensors)``, or has a row without ``0 <= START <= STOP`` and ``STATE >= 0`` (or
    whose span would pass the int64 range). One pass over the table: a row per ``CHUNK``
    elements, nothing next to the kernel's pass over the elements themselves.
    """
    if chunks.shape[1] < 4:
        raise ValueError("chunks must have 4 columns (TENSOR, START, STOP, STATE)")
    need = 0
    for c in range(chunks.shape[0]):
        t, a, b, s = chunks[c, TENSOR], chunks[c, START], chunks[c, STOP], chunks[c, STATE]
        if t < 0 or t >= n_tensors:
            raise ValueError("chunks[:, TENSOR] must index the address arrays")
        if a < 0 or b < a or s < 0 or s > _INT64_MAX - (b - a):
            raise ValueError("chunks must have 0 <= START <= STOP and 0 <= STATE in every row")
        need = max(need, s + (b - a))
    return need


@inline
def chunk_count(n):
    """How many chunks cover ``n`` elements (one-array kernels)."""
    return (n + CHUNK - 1) // CHUNK


@inline
def chunk_span(c, n):
    """``(start, stop)`` of chunk ``c`` of ``n`` elements (one-array kernels)."""
    start = c * CHUNK
    return start, min(n, start + CHUNK)


@inline
def chunk_row(chunks, c):
    """``(tensor, start, stop, state)`` of row ``c`` of a chunk table."""
    return chunks[c, TENSOR], chunks[c, START], chunks[c, STOP], chunks[c, STATE]


@inline
def view(address, start, stop, like):
    """Elements ``[start, stop)`` of the array of ``like``'s dtype at ``address``."""
    return carray(_voidptr(address + start * like.itemsize), (stop - start,), like.dtype)


@inline
def part(a, start, stop):
    """``a[start:stop]``, or ``a`` itself when it is empty (a state buffer a rule does not use)."""
    return a[start:stop] if a.shape[0] else a
