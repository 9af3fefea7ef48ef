"""Compilation options shared by every CPU kernel.

numba's on-disk cache is keyed on each kernel's own source file: after editing this file or a
helper module alone (``_math.py``, ``_grad.py``, ``_tensors.py``, ``kernels/sizes.py``), delete
``fastml/**/__pycache__/*.nb[ic]`` or the old machine code is loaded.

Never ``fastmath=True``: it implies ``nnan``/``ninf``, under which LLVM may delete the very
NaN/Inf checks the guards rely on and fold ``x != x`` to false. The flags below allow
reassociation (so float64 sums vectorize) and contraction into FMA, nothing that assumes finite
values. Not ``arcp`` either: it lets LLVM turn ``x / d`` into ``x * (1 / d)``, and for a
subnormal ``d`` (a mean over tiny class weights) ``1 / d`` overflows where ``x / d`` is finite.
"""

from numba import njit

FASTMATH = {"contract", "reassoc", "afn", "nsz"}

#: Fixed chunk length for parallel reductions. Partial sums are formed per chunk and added in
#: chunk order, so a result does not depend on the number of threads.
CHUNK = 1 << 14

#: IEEE division (x / 0 is inf or NaN) instead of Python's ZeroDivisionError: numba's check is a
#: branch per division, and LLVM vectorizes no loop that holds one (a BCE element took 11.7 ns
#: with it, 1.5 ns without). Kernels never divide by a user value that could be 0 unnoticed.
ERROR_MODEL = "numpy"

#: Serial kernels, and the small functions kernel loops call (``_math``'s exp and log1p, the
#: element functions): compiled on their own, and inlined by LLVM where a kernel calls them, so
#: the loops around the calls still vectorize.
serial = njit(nogil=True, cache=True, fastmath=FASTMATH, error_model=ERROR_MODEL)
parallel = njit(nogil=True, cache=True, fastmath=FASTMATH, parallel=True,
                error_model=ERROR_MODEL)
#: numba's own inlining, which types the callee's IR again at every call site: slow to compile
#: (the float32 BCE kernel took 17 s with its exp, log1p and element function inlined this way,
#: 8 s as ``serial`` functions, at the same speed). Kept for helpers whose loops may get one
#: array under two names (in place: LLVM must see a single pointer before it vectorizes the
#: loop) and for a few small ones.
inline = njit(inline="always", fastmath=FASTMATH, error_model=ERROR_MODEL)
