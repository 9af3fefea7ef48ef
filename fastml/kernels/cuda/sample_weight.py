"""Sample-weight check on the GPU, without a host round trip, and the batch add it gates.

``first_non_finite`` writes where the first NaN or infinite weight is into ``record``:
device-visible host memory that the caller reads later (``fastml._device_errors``), or a device
array it copies back. ``add_batch_if_finite`` then adds a batch's confusion table into a running
one only if the record says every weight was finite, so a batch with a bad weight adds nothing
even though the host learns of it only later. Both are launches on the caller's stream, queued
behind the counting kernel, with no synchronization.

The CPU needs neither: its metrics read the batch table before adding it (a NaN or infinite
weight leaves a cell of it non-finite) and scan the weights with NumPy.
"""

import math

from numba import cuda, float64, int64

from . import _launch as L

#: ``record[1]`` after a bad weight: what it was (the index is in ``record[0]``).
NAN, POS_INF, NEG_INF = 0, 1, -1


# Grid-stride scan; each thread stops at its first bad weight (its smallest index, since its
# indices rise) and an integer atomic min keeps the smallest over the grid (L.first_index).
@cuda.jit
def _first_non_finite_kernel(first, weight):
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    stride = int64(cuda.gridDim.x) * cuda.blockDim.x
    for i in range(start, weight.shape[0], stride):
        x = float64(weight[i])
        if math.isnan(x) or math.isinf(x):
            cuda.atomic.min(first, 0, i)
            break


@cuda.jit
def _finish_kernel(record, first, weight):
    i = first[0]
    if i < weight.shape[0]:
        x = float64(weight[i])
        L.publish(record, i, NAN if math.isnan(x) else (POS_INF if x > 0 else NEG_INF))
    else:
        L.publish(record, -1, 0)


def first_non_finite(record, weight, stream=0):
    """Find the first NaN or infinite weight (launches only).

    Parameters
    ----------
    record : (2,) int64 device-visible array (e.g. mapped host memory), written
        ``[i, NAN | POS_INF | NEG_INF]`` for the first bad ``weight[i]``, else ``[-1, 0]``;
        ``record[0]`` is written last, so a host polling it sees a complete record once it
        changes.
    weight : (N,) float32 or float64 device array, read
    stream : numba stream or 0
    """
    weight = L.as_device(weight)
    n = weight.shape[0]
    first = L.first_index(n, stream)
    _first_non_finite_kernel[L.grid(n, L.THREADS), L.THREADS, stream](first, weight)
    _finish_kernel[1, 1, stream](record, first, weight)


@cuda.jit
def _add_batch_kernel(cm, seen, batch, batch_seen, record):
    k = cm.shape[0]
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    stride = int64(cuda.gridDim.x) * cuda.blockDim.x
    clean = record[0] == -1
    for c in range(start, k * k, stride):
        a = c // k
        b = c - a * k
        if clean:
            cm[a, b] += batch[a, b]
        batch[a, b] = 0.0  # ready for the next batch, added or not
    for j in range(start, k, stride):
        if clean and batch_seen[j]:
            seen[j] = True
        batch_seen[j] = False


def add_batch_if_finite(cm, seen, batch, batch_seen, record, stream=0):
    """``cm += batch`` and ``seen |= batch_seen`` if ``record[0] == -1`` (every weight of the
    batch was finite); then zero ``batch`` and ``batch_seen`` either way (launches only).

    Parameters
    ----------
    cm : (k, k) float64 device array, updated in place
    seen : (k,) bool device array, updated in place
    batch : (k, k) float64 device array, read, then zeroed
    batch_seen : (k,) bool device array, read, then cleared
    record : (2,) int64 device-visible array, read: ``first_non_finite``'s, written earlier on
        ``stream``
    stream : numba stream or 0
    """
    k = cm.shape[0]
    _add_batch_kernel[L.grid(k * k, L.THREADS), L.THREADS, stream](cm, seen, batch, batch_seen,
                                                                   record)
