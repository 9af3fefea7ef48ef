"""Test set-up shared by every test module.

CUDA kernels run in numba-cuda's simulator unless ``FASTML_REAL_GPU=1`` (then on the real GPU).
The variable must be set before numba is first imported, hence here, at the top.
"""

import os

if os.environ.get("FASTML_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REAL_GPU = os.environ.get("FASTML_REAL_GPU") == "1"
DEVICES = ["cpu", "cuda"]


@pytest.fixture(params=DEVICES)
def device(request):
    """Run a test once on the CPU and once on CUDA (the simulator in CI)."""
    return request.param


def to_device(a, device):
    """Put a NumPy array where ``device`` says (None passes through)."""
    if a is None or device == "cpu":
        return a
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(a))


def to_host(a):
    """A NumPy copy of a CPU array, device array or NumPy scalar."""
    if hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    return np.asarray(a)
