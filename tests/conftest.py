"""Test set-up shared by every test module.

CUDA kernels run in numba-cuda's simulator unless ``FASTML_REAL_GPU=1`` (then on the real GPU).
The variable must be set before numba is first imported, hence here, at the top.

Tests that take the ``device`` fixture run once per device; the CUDA run carries the ``cuda``
marker, so ``-m "not cuda"`` leaves it out. Array helpers live in ``tests/helpers.py``.
"""

import os

if os.environ.get("FASTML_REAL_GPU") != "1":
    os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import sys  # noqa: E402
import threading  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REAL_GPU = os.environ.get("FASTML_REAL_GPU") == "1"
SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
DEVICES = ["cpu", "cuda"]


def _serialize_simulator_shared_arrays():
    """Make the simulator's ``cuda.shared.array`` allocation atomic.

    numba-cuda's simulator (0.30) gives a block one shared array per source line, created by
    the first thread that asks, with an unlocked check-then-set: two threads can both miss, and
    the loser works on a private array, so a block reduction silently drops its value (about 1
    launch in 300 with the switch interval below). Same key (file, line), under a lock.
    """
    from numba.cuda.simulator import kernelapi

    original = kernelapi.FakeCUDAShared.array
    if getattr(original, "serialized", False):
        return
    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory: one buffer, no race
            return original(self, shape, dtype, alignment)
        if isinstance(dtype, kernelapi.types.Type):
            dtype = kernelapi.numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)
        key = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            res = self._allocations.get(key)
            if res is None:
                res = self._allocations[key] = np.empty(shape, dtype)
        return res

    array.serialized = True
    kernelapi.FakeCUDAShared.array = array


@pytest.fixture(autouse=True, scope="session")
def _fast_simulator_barriers():
    # The simulator's block manager busy-polls its threads while holding the GIL, so each
    # syncthreads costs about one interpreter switch interval (5 ms by default) per waiting
    # thread; a shorter interval makes the simulated reductions several times faster.
    before = sys.getswitchinterval()
    if SIMULATOR:
        _serialize_simulator_shared_arrays()
        sys.setswitchinterval(5e-5)
    yield
    sys.setswitchinterval(before)


@pytest.fixture(params=DEVICES)
def device(request):
    """Run a test once on the CPU and once on CUDA (the simulator in CI)."""
    return request.param


#: The CUDA cross-entropy kernels (fastml/kernels/cuda/cross_entropy.py's streaming kernel and
#: cross_entropy_rows.py's register kernel). On a real GPU every test that uses ``ce_kernel``
#: runs with each; in the simulator (CI time) the tests marked ``helpers.both_ce_kernels`` do.
CE_KERNELS = ["stream", "rows"] if REAL_GPU else ["stream"]


@pytest.fixture(params=CE_KERNELS)
def ce_kernel(request, monkeypatch):
    """The CUDA cross-entropy kernel a test runs with (see CE_KERNELS)."""
    from fastml.kernels.cuda import cross_entropy

    monkeypatch.setattr(cross_entropy, "ROWS_IN_REGISTERS", request.param == "rows")
    return request.param


def pytest_collection_modifyitems(config, items):
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("device") == "cpu" and params.get("ce_kernel") == "rows":
            dropped.append(item)  # the CPU has one kernel: the "stream" run covers it
            continue
        if params.get("device") == "cuda":
            item.add_marker(pytest.mark.cuda)
        kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture
def restore_num_threads():
    """Give back numba's thread count after a test that changes it."""
    import numba

    before = numba.get_num_threads()
    yield numba.config.NUMBA_NUM_THREADS
    numba.set_num_threads(before)


@pytest.fixture
def one_thread(restore_num_threads):
    """Run a test on one numba thread (restored afterwards).

    For long option matrices of tiny arrays: on a busy 2-core machine every parallel launch
    waits for a second thread to be scheduled (milliseconds each). Kernels whose results do not
    depend on the thread count (tests/test_guards.py checks 1 vs 2 threads bitwise) lose nothing.
    """
    import numba

    numba.set_num_threads(1)
