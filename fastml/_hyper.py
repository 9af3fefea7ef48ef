"""The rules for optimizer hyper-parameters, shared by the constructors and by checkpoint loads
(a loaded value is held to the rule the constructor applies to the same argument)."""

import math

import numpy as np


def real(value, name):
    """``value`` as a Python float; strings, ``None`` and complex numbers are refused."""
    if isinstance(value, (str, bytes)) or value is None:
        raise TypeError(f"{name} must be a number; got {type(value).__name__}")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"{name} must be a number; got {type(value).__name__}") from None


def nonneg(value, name):
    v = real(value, name)
    if not v >= 0.0 or not math.isfinite(v):
        raise ValueError(f"{name} must be a non-negative number; got {value!r}")
    return v


def unit(value, name, *, upper_open=True):
    v = real(value, name)
    if not (0.0 <= v < 1.0 if upper_open else 0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be in [0, 1{')' if upper_open else ']'}; got {value!r}")
    return v


def flag(value, name):
    """``value`` as a bool: True, False, None (False), or a number equal to 1 or 0."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{name} must be True or False; got {value!r}")


def learning_rate(value, name="lr"):
    """A constant learning rate: a non-negative finite float."""
    try:
        v = real(value, name)
    except TypeError:
        raise TypeError(f"{name} must be a number or a schedule (a callable step -> lr); got "
                        f"{type(value).__name__}") from None
    if not v >= 0 or not math.isfinite(v):
        raise ValueError(f"{name} must be a non-negative number; got {value!r}")
    return v
