"""The kernels one API call runs: CUDA launchers on the caller's stream, or the CPU kernels
(run on the calling thread alone when the arrays are small).

Every GPU call passes here before it launches anything, which is where errors the device found
in earlier calls are raised (``fastml._device_errors``)."""

_CPU = None


def backend(cuda, stream=0):
    """The kernel namespace for one call: ``fastml.kernels.cuda`` with ``stream`` filled in, or
    ``fastml.kernels.cpu`` behind :class:`fastml._threads.SerialWhenSmall`."""
    global _CPU
    if cuda:
        from . import _device_errors, _streams
        from .kernels import cuda as kernels

        _device_errors.raise_finished()  # an earlier call's error, if the device found one

        return kernels if isinstance(stream, int) and stream == 0 else _streams.Launchers(
            kernels, stream)
    if _CPU is None:
        from . import _threads
        from .kernels import cpu

        _CPU = _threads.SerialWhenSmall(cpu)
    return _CPU
