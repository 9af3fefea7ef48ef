"""Raw kernels: arrays and scalars in, arrays out. No validation, no policy.

``fastml.kernels.cpu`` holds ``@njit`` kernels that user code may call from its own ``@njit``
functions; ``fastml.kernels.cuda`` holds launchers with the same names and argument order (plus a
trailing ``stream``), so the API layer dispatches with one table. ``cuda`` is imported lazily: CPU
users never pay for numba-cuda's import.
"""
