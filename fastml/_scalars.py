"""Checks of the scalar arguments of the losses and metrics, made before any kernel sees them.

numba types a Python int as int64 and a float as float64, so a value beyond those (``2**70``), a
string, a complex number or an array would otherwise surface from inside a kernel call as a
numba typing error. Each check returns the value as the plain Python type the kernels take, or
raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right kind, out of range) with a
message ``"<arg> must be <expected>; got <actual>"``.
"""

import math
import operator

import numpy as np

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def shown(value):
    """``repr(value)``, cut short (a message must not quote a whole array)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bound(x):
    return {INT64_MIN: "-2**63", INT64_MAX: "2**63 - 1"}.get(x, str(x))


def integer(value, name, *, low=INT64_MIN, high=INT64_MAX, expected=None):
    """``value`` as a Python int in [low, high] (``expected`` words the range in messages).
    bool is refused: ``True`` as a count or an index is almost always a mistake, and
    ``operator.index`` would take it for 1."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer; got bool ({value!r})")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an integer; got {type(value).__name__}") from None
    if not low <= v <= high:
        expected = expected or f"in [{_bound(low)}, {_bound(high)}]"
        raise ValueError(f"{name} must be {expected}; got {v}")
    return v


def real(value, name, *, low=-math.inf, high=math.inf, low_open=False, finite=False,
         expected=None):
    """``value`` as a Python float in [low, high] (``(low, high]`` with ``low_open``;
    ``expected`` words the range in messages); NaN is always refused, infinities when
    ``finite``. Strings (``float`` would parse ``"1e-3"``), bools, complex numbers and arrays of
    one or more dimensions are refused."""
    if type(value) is float:  # the common case, without the checks below (~2 us)
        v = value
    elif (isinstance(value, (str, bytes, bool, np.bool_)) or np.iscomplexobj(value)
            or getattr(value, "ndim", 0) != 0):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    else:
        try:
            v = float(value)
        except (TypeError, ValueError, OverflowError):
            raise TypeError(f"{name} must be a real number; got {type(value).__name__}") \
                from None
    if math.isnan(v) or not (low < v if low_open else low <= v) or not v <= high:
        expected = expected or f"in {'(' if low_open else '['}{low}, {high}]"
        raise ValueError(f"{name} must be {expected}; got {shown(value)}")
    if finite and not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number; got {shown(value)}")
    return v


def boolean(value, name):
    """``value`` as a bool: True, False (Python or NumPy) or the integers 1 and 0. The truth
    value of anything else (an array, a string, None) says nothing about what was meant."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be True or False; got {type(value).__name__}") from None
    if v not in (0, 1):
        raise ValueError(f"{name} must be True or False; got {v}")
    return bool(v)


def choice(value, name, options):
    """``value`` if it is one of ``options`` (strings and None); compared without ``==`` on the
    value, which an array would answer element-wise."""
    if (value is None and None in options) or (isinstance(value, str) and value in options):
        return value
    listed = ", ".join(map(repr, options))
    raise ValueError(f"{name} must be one of {listed}; got {shown(value)}")
