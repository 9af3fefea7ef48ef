"""Label range check on the GPU, shared by the losses and the metrics."""

import numpy as np
from numba import cuda, int64

from . import _launch as L


# Grid-stride scan; each thread stops at its first bad label (its smallest, since its indices
# rise) and an integer atomic min keeps the smallest over the grid: the same answer every run.
@cuda.jit
def _first_bad_label_kernel(result, labels, n_classes, ignore_index):
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    stride = int64(cuda.gridDim.x) * cuda.blockDim.x
    for i in range(start, labels.shape[0], stride):
        y = labels[i]
        if (y < 0 or y >= n_classes) and y != ignore_index:
            cuda.atomic.min(result, 0, i)
            break


def first_bad_label(labels, n_classes, ignore_index, stream=0):
    """Index of the first label outside [0, n_classes) that is not ``ignore_index``; -1 if none.

    Unlike the other launchers this one returns a Python int, so it waits for the device.

    Parameters
    ----------
    labels : (N,) int32 or int64 device array, read
    n_classes, ignore_index : int
    stream : numba stream or 0
    """
    labels = L.as_device(labels)
    n = labels.shape[0]
    result = L.index_scratch(stream)
    result.copy_to_device(np.array([n], dtype=np.int64), stream=stream)
    blocks = L.grid(n, L.THREADS)
    _first_bad_label_kernel[blocks, L.THREADS, stream](result, labels, int(n_classes),
                                                       int(ignore_index))
    first = int(result.copy_to_host(stream=stream)[0])
    if not isinstance(stream, int):
        stream.synchronize()
    return -1 if first >= n else first
