"""Label range check on the GPU, without a host round trip.

``check_labels`` writes its answer into ``record``: device-visible host memory that the caller
reads later (``fastml._device_errors``), so the host never waits for the check. It is the twin
of the CPU kernel, for code that checks labels before its own kernels; ``cross_entropy_fwd_bwd``
does the same check inside its pre-pass (``check=record``), in 2 launches where this takes 3
plus its own.
"""

from numba import cuda, int64

from . import _launch as L


# Grid-stride scan; each thread stops at its first bad label (its smallest, since its indices
# rise) and an integer atomic min keeps the smallest over the grid: the same answer every run.
@cuda.jit
def _first_bad_label_kernel(first, labels, n_classes, ignore_index):
    start = int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
    stride = int64(cuda.gridDim.x) * cuda.blockDim.x
    for i in range(start, labels.shape[0], stride):
        y = labels[i]
        if (y < 0 or y >= n_classes) and y != ignore_index:
            cuda.atomic.min(first, 0, i)
            break


@cuda.jit
def _finish_kernel(record, first, labels):
    i = first[0]
    if i < labels.shape[0]:
        L.publish(record, i, int64(labels[i]))
    else:
        L.publish(record, -1, 0)


def check_labels(record, labels, n_classes, ignore_index, stream=0):
    """Find the first label outside [0, n_classes) that is not ``ignore_index`` (launches only).

    Parameters
    ----------
    record : (2,) int64 device-visible array (e.g. mapped host memory), written
        ``[i, labels[i]]`` for the first bad label, else ``[-1, 0]``; ``record[0]`` is written
        last, so a host polling it sees a complete record once it changes.
    labels : (N,) int32 or int64 device array, read
    n_classes, ignore_index : int
    stream : numba stream or 0

    Raises ``ValueError``, before launching, if ``record`` holds fewer than 2 elements.
    """
    if record.shape[0] < 2:
        raise ValueError("record must hold at least 2 elements")
    labels = L.as_device(labels)
    n = labels.shape[0]
    first = L.first_index(n, stream)
    _first_bad_label_kernel[L.grid(n, L.THREADS), L.THREADS, stream](
        first, labels, int(n_classes), int(ignore_index))
    _finish_kernel[1, 1, stream](record, first, labels)
