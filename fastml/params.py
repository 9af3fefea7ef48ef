"""``FlatParams``: every parameter of a model in one contiguous buffer, with named views.

One buffer means one kernel launch per optimizer step for the whole model, and a gradient buffer
with the same layout (``p.grad``) that loss code writes into through its own named views.
"""

import math

import numpy as np

from .errors import DTypeError, ShapeError


class FlatBuffer:
    """A 1-D buffer (``.data``) and named, reshaped views into it (``buf["w1"]``)."""

    def __init__(self, data, layout):
        self.data = data
        self._layout = layout  # name -> (offset, shape)

    def __getitem__(self, name):
        try:
            offset, shape = self._layout[name]
        except KeyError:
            raise KeyError(
                f"no parameter named {name!r}; the names are {', '.join(self._layout)}") from None
        return self.data[offset:offset + math.prod(shape)].reshape(shape)

    def __iter__(self):
        return iter(self._layout)

    def __len__(self):
        return len(self._layout)

    def keys(self):
        return self._layout.keys()

    def items(self):
        return ((name, self[name]) for name in self._layout)

    @property
    def shapes(self):
        return {name: shape for name, (_, shape) in self._layout.items()}


class FlatParams(FlatBuffer):
    """Parameters in one contiguous buffer, with a gradient buffer of the same layout.

    Parameters
    ----------
    shapes : dict of name -> shape
        Views are laid out in this order.
    dtype : float32 or float64
    device : "cpu" or "cuda"
        Where both buffers live. On "cuda" they are numba device arrays (zero-copy into PyTorch
        with ``torch.as_tensor(p.data, device="cuda")`` or CuPy with ``cupy.asarray``).
    init : "zeros" or a 1-D array of the total size, optional

    Thread safety: the buffers are plain arrays with no lock of their own. An optimizer's step
    holds the optimizer's lock, not the FlatParams': code that writes ``p.grad`` in one thread
    while another steps must order the two itself, as with any NumPy array.

    Examples
    --------
    >>> p = FlatParams({"w": (784, 256), "b": (256,)}, dtype=np.float32)
    >>> p["w"][:] = np.random.randn(784, 256) * 0.01
    >>> opt = fastml.Adam(p, lr=1e-3)
    >>> ...  # write gradients into p.grad["w"], p.grad["b"]
    >>> opt.step()
    """

    def __init__(self, shapes, dtype=np.float32, device="cpu", init="zeros"):
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise DTypeError(f"dtype must be float32 or float64; got {dtype}")
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda'; got {device!r}")
        if not shapes:
            raise ShapeError("shapes must name at least one parameter; got an empty dict")
        layout, offset = {}, 0
        for name, shape in shapes.items():
            shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
            if any(s < 0 for s in shape):
                raise ShapeError(f"shape of {name!r} must be non-negative; got {shape}")
            layout[name] = (offset, shape)
            offset += math.prod(shape)
        if offset == 0:
            raise ShapeError("shapes must hold at least one element; got only empty shapes")
        self.size, self.dtype, self.device = offset, dtype, device
        host = np.zeros(offset, dtype)
        if not (isinstance(init, str) and init == "zeros"):
            init = np.asarray(init, dtype=dtype)
            if init.shape != (offset,):
                raise ShapeError(f"init must have shape ({offset},); got {init.shape}")
            host[:] = init
        if device == "cuda":
            from numba import cuda

            data, grad = cuda.to_device(host), cuda.to_device(np.zeros(offset, dtype))
        else:
            data, grad = host, np.zeros(offset, dtype)
        super().__init__(data, layout)
        self.grad = FlatBuffer(grad, layout)

    def __repr__(self):
        return (f"FlatParams({len(self)} arrays, {self.size} {self.dtype} elements "
                f"on {self.device})")
