"""Label range check, shared by the losses and the metrics."""

from ._jit import serial


@serial
def first_bad_label(labels, n_classes, ignore_index):
    """Index of the first label outside [0, n_classes) that is not ``ignore_index``; -1 if none.

    Parameters
    ----------
    labels : (N,) int32 or int64, read
    n_classes, ignore_index : int
    """
    for i in range(labels.shape[0]):
        y = labels[i]
        if (y < 0 or y >= n_classes) and y != ignore_index:
            return i
    return -1


@serial
def check_labels(record, labels, n_classes, ignore_index):
    """The label check of ``cross_entropy``, in the CUDA launcher's shape.

    Parameters
    ----------
    record : (2,) int64, written
        ``[i, labels[i]]`` for the first label outside [0, n_classes) that is not
        ``ignore_index``; ``[-1, 0]`` if there is none.
    labels : (N,) int32 or int64, read
    n_classes, ignore_index : int

    Raises ``ValueError`` if ``record`` holds fewer than 2 elements.
    """
    if record.shape[0] < 2:
        raise ValueError("record must hold at least 2 elements")
    i = first_bad_label(labels, n_classes, ignore_index)
    record[0] = i
    record[1] = labels[i] if i >= 0 else 0
