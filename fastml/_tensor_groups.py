"""CPU arrays in groups of one dtype, each group read or updated by one ``*_tensors`` kernel
call (``fastml.kernels.cpu._tensors``) instead of one call per array."""

import functools

import numpy as np

from .kernels.cpu import _tensors as T


class TensorGroup:
    """The arrays of one dtype in a list, by position: the chunk table over them, and where
    each one's elements lie in a flat buffer of ``size`` elements laid out array after array
    (``spans``; an optimizer's state buffers are laid out so)."""

    def __init__(self, positions, sizes, dtype):
        self.positions = positions
        self.chunks = T.chunk_table(sizes)
        bounds = np.cumsum([0, *sizes]).tolist()
        self.spans = list(zip(bounds[:-1], bounds[1:], strict=True))
        self.size = bounds[-1]
        self.like = np.empty(0, dtype)  # the dtype, for the kernels

    def addresses(self, addresses):
        """This group's entries of ``addresses`` (one per array of the grouped list)."""
        return np.array([addresses[i] for i in self.positions], dtype=np.int64)


def by_dtype(arrays):
    """The groups of ``arrays`` (1-D, C-contiguous NumPy arrays), in order of first appearance
    of their dtypes. Groups are kept for the last few layouts seen: a chunk table takes ~20 us
    of NumPy calls to build, more than a guard pass over a small gradient."""
    return _groups(tuple((a.dtype, a.size) for a in arrays))


@functools.lru_cache(maxsize=64)
def _groups(layout):
    positions = {}
    for i, (dtype, _) in enumerate(layout):
        positions.setdefault(dtype, []).append(i)
    return tuple(TensorGroup(pos, [layout[i][1] for i in pos], dtype)
                 for dtype, pos in positions.items())


def each_group(arrays):
    """``(group, addresses of its arrays)`` for each dtype group of ``arrays``."""
    starts = [address(a) for a in arrays]
    return [(grp, grp.addresses(starts)) for grp in by_dtype(arrays)]


def address(a):
    """The address of the first element of the NumPy array ``a``."""
    return T.data_address(a)
