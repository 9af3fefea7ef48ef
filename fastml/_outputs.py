"""Arrays that fastml allocates for its results (a loss, a gradient without ``out=``, an argmax).

On the CPU they are NumPy arrays. On the GPU they come from the allocator of the caller's
library, so that a training loop neither waits for the device nor leaves PyTorch:

- For a PyTorch CUDA tensor, ``torch.empty`` on its device: PyTorch's caching allocator hands
  back a block freed earlier on the same stream without calling the driver, and the result is a
  tensor (``logits.backward(grad)`` takes it as it is). numba's allocator calls ``cuMemAlloc``
  for every array and, once about ten freed arrays are pending, ``cuMemFree``, which waits for
  the whole device: a loop that drops each step's loss would stall every tenth step.
  The block belongs to PyTorch's current stream; when fastml's kernels run on another one
  (``fastml.cuda_stream``), ``record_stream`` keeps PyTorch from reusing it before they finish.
- Anything else (numba device arrays, CuPy) gets a numba device array. Pass ``out=`` in a hot
  loop, or give numba a pooling allocator (its EMM plugin interface, e.g. RMM).
"""

import sys

import numpy as np


def new(like, shape, dtype, cuda, stream=0):
    """A new array for a result: ``(kernel, user)``, the numba view the kernels write and the
    object handed back to the caller (the same array except for PyTorch tensors).

    ``like`` is the caller's object the result goes with (a loss with its predictions);
    ``stream`` is the stream the kernels that write it run on.
    """
    if not cuda:
        a = np.empty(shape, dtype=dtype)
        return a, a
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(like, torch.Tensor) and like.is_cuda:
        return _torch_empty(torch, like.device, shape, dtype, stream)
    from numba import cuda as nb_cuda

    a = nb_cuda.device_array(shape, dtype=dtype)
    return a, a


def _torch_empty(torch, device, shape, dtype, stream):
    from numba import cuda as nb_cuda

    from .kernels.cuda._launch import stream_key

    # float32, float64 and int64 carry the same names in PyTorch.
    t = torch.empty(shape, dtype=getattr(torch, np.dtype(dtype).name), device=device)
    handle = stream_key(stream)
    if handle != torch.cuda.current_stream(device).cuda_stream:
        writer = (torch.cuda.default_stream(device) if handle == 0
                  else torch.cuda.ExternalStream(handle, device=device))
        t.record_stream(writer)
    return nb_cuda.as_cuda_array(t, sync=False), t
