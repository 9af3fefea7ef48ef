"""numba's thread pool: TBB, so that forked children and concurrent Python threads both work.

numba runs ``parallel=True`` kernels on one of three thread pools ("threading layers"), chosen
once per process when the pool starts (numba's first parallel call), in the order ``tbb``,
``omp``, ``workqueue`` unless ``NUMBA_THREADING_LAYER`` / ``NUMBA_THREADING_LAYER_PRIORITY``
say otherwise:

- ``omp`` (GNU OpenMP on Linux) does not survive ``fork``: once the parent has started it, a
  forked child is killed by its first parallel call ("Terminating: fork() called from a process
  already using GNU OpenMP, this is unsafe"). ``fork`` is multiprocessing's default start method
  on Linux, and PyTorch's DataLoader workers fork.
- ``workqueue`` survives ``fork``, but two Python threads running parallel kernels at once abort
  the process.
- ``tbb`` survives both. Against ``omp`` (``bench/NOTES.md``, "Threading layer"): as fast from
  1M elements up on a quiet machine, 1-60 us more per call at 32k-256k; on a loaded machine an
  ``omp`` call waits whole scheduler slices (milliseconds) for a worker that lost its core, a
  ``tbb`` call does not. Beside PyTorch, PyTorch's own calls keep their speed (its foreach Adam
  took 40x longer beside an ``omp`` pool), while a fastml call right after a PyTorch one may run
  on one thread (PyTorch's OpenMP worker still spins on the other core).

numba looks TBB up as ``libtbb.so.12`` through the dynamic loader, which does not search the
``lib/`` folder of a virtual environment or of ``pip install --user``, where the ``tbb`` wheel
(one of fastml's dependencies on Linux x86-64) puts it: there numba silently takes ``omp``.
So fastml, at import, loads the wheel's library by its path; numba's lookup by name then finds
it already loaded. Nothing is loaded when numba's pool has already started (its layer is fixed)
or when ``NUMBA_THREADING_LAYER`` names ``omp`` or ``workqueue`` (an explicit choice stands).

Where numba runs on ``omp`` anyway (no ``tbb`` wheel for the platform, a ``libtbb`` older than
2021.6 found first, a pool started before fastml's import, or the user's choice), a child forked
after the pool started gets a :class:`RuntimeError` with :data:`FORK_ADVICE` from its first
fastml CPU call, instead of being killed. Children started with ``spawn`` or ``forkserver``
(``multiprocessing.set_start_method``, DataLoader's ``multiprocessing_context``) start their own
pool and work on every layer.
"""

import ctypes
import os

from numba.core import config
from numba.np.ufunc import parallel

#: The TBB runtime numba's ``tbbpool`` is linked against (its ABI since oneTBB 2021).
TBB_SONAME = "libtbb.so.12"

FORK_ADVICE = (
    "fastml cannot run CPU kernels in this process: it was forked from a process whose numba "
    "thread pool is GNU OpenMP (numba's 'omp' threading layer), which does not survive fork. "
    "Install TBB (pip install 'tbb>=2021.6') so that numba uses its 'tbb' layer, or start "
    "child processes with the 'spawn' or 'forkserver' method "
    "(multiprocessing.get_context('spawn'); DataLoader(multiprocessing_context='spawn')).")

#: :data:`FORK_ADVICE` in a child forked from a process whose numba pool ran on ``omp``; None
#: everywhere else. fastml's CPU calls raise it (``fastml._threads.call``).
fork_error = None


def active():
    """The threading layer numba's pool runs on (``"tbb"``, ``"omp"``, ``"workqueue"``), or
    None while the pool has not started."""
    return parallel._threading_layer if parallel._is_initialized else None


def _tbb_wheel_library():
    """Path of ``libtbb.so.12`` as installed by the ``tbb`` wheel, or None."""
    from importlib import metadata

    try:
        files = metadata.distribution("tbb").files or ()
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if f.name == TBB_SONAME:
            path = str(f.locate())
            return path if os.path.exists(path) else None
    return None


def load_tbb():
    """Load the ``tbb`` wheel's ``libtbb.so.12`` so that numba can choose its ``tbb`` layer.

    Returns the path loaded, or None where nothing was loaded: numba's pool has started, the
    user named ``omp`` or ``workqueue``, the wheel is not installed or cannot be loaded (numba
    then looks for TBB on the loader's path itself, and falls back to ``omp``).
    """
    if parallel._is_initialized or str(config.THREADING_LAYER).lower() in ("omp", "workqueue"):
        return None
    path = _tbb_wheel_library()
    if path is None:
        return None
    try:
        ctypes.CDLL(path)
    except OSError:
        return None
    return path


def _after_fork_in_child():
    global fork_error
    if active() == "omp":
        fork_error = FORK_ADVICE


load_tbb()
os.register_at_fork(after_in_child=_after_fork_in_child)
