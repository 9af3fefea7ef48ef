"""Error types raised by fastml's API layer.

Every message reads ``"<argument> must be <expected>; got <actual>"`` and adds a hint where a fix
is known. They subclass the built-in type a caller would already catch, so ``except ValueError``
keeps working.
"""

__all__ = ["ShapeError", "DTypeError", "DeviceError", "NonFiniteError", "CheckpointError"]


class ShapeError(ValueError):
    """An array has the wrong shape, size, layout or contents (such as a label out of range)."""


class DTypeError(TypeError):
    """An array has an unsupported or mismatched dtype."""


class DeviceError(ValueError):
    """Arrays live on different devices (CPU and GPU mixed in one call)."""


class NonFiniteError(FloatingPointError, ValueError):
    """NaN or Inf where a finite value is required (for example too many skipped steps, or a
    NaN sample weight). Also a ``ValueError``, which is what scikit-learn raises for the same
    input."""


class CheckpointError(ValueError):
    """A checkpoint file or state dict that is damaged or holds values the optimizer's
    constructor would refuse (unreadable entries, a negative learning rate, a NaN step counter).
    Nothing was written: the optimizer is as it was before the call."""
