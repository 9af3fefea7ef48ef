"""Guards against NaN/Inf and exploding gradients.

``Guard`` is handed to an optimizer: each guarded step first reads the gradients once (global
norm and non-finite count in one pass), then the step plan decides to apply or skip, and the
update pass folds the unscale and clip factors into its gradient read. A skipped step leaves the
parameters and every state buffer bitwise unchanged. ``global_norm``, ``all_finite`` and
``clip_grad_norm`` are the same pass offered on their own.
"""

import math
import operator
from dataclasses import dataclass

import numpy as np

from . import _arrays as A
from .errors import ShapeError
from .kernels import step_plan as P


def _positive(value, name, allow_none=True):
    if value is None and allow_none:
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a positive number; got {type(value).__name__}") from None
    if not v > 0:
        raise ValueError(f"{name} must be a positive number; got {value!r}")
    return v


class LossScaler:
    """Dynamic loss scaling, as ``torch.amp.GradScaler``: multiply the loss (or pass
    ``grad_scale=scaler.scale`` to a fastml loss), and the guarded optimizer divides the
    gradients by the same scale, backs off by ``backoff_factor`` on a NaN/Inf and grows by
    ``growth_factor`` after ``growth_interval`` clean steps in a row.

    The live scale belongs to the optimizer the scaler is attached to (through its ``Guard``):
    ``scale`` reads it (on the GPU that read synchronizes).
    """

    def __init__(self, init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000):
        self.init_scale = _positive(init_scale, "init_scale", allow_none=False)
        self.growth_factor = float(growth_factor)
        if not self.growth_factor > 1.0:
            raise ValueError(f"growth_factor must be > 1; got {growth_factor!r}")
        self.backoff_factor = float(backoff_factor)
        if not 0.0 < self.backoff_factor < 1.0:
            raise ValueError(f"backoff_factor must be in (0, 1); got {backoff_factor!r}")
        self.growth_interval = _count(growth_interval, "growth_interval")
        self._ctl = None  # the optimizer's control state, once attached

    @property
    def scale(self):
        """The current loss scale (``init_scale`` until attached to an optimizer)."""
        if self._ctl is None:
            return self.init_scale
        return float(_host(self._ctl)[P.SCALE])

    def __repr__(self):
        return (f"LossScaler(scale={self.scale!r}, growth_factor={self.growth_factor!r}, "
                f"backoff_factor={self.backoff_factor!r}, "
                f"growth_interval={self.growth_interval!r})")


def _count(value, name):
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a positive integer; got {type(value).__name__}") from None
    if v < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return v


class Guard:
    """What an optimizer checks and corrects before each step.

    Parameters
    ----------
    clip_norm : float, optional
        Clip by global L2 norm over all gradients: multiply by
        ``min(1, clip_norm / (norm + 1e-6))`` (PyTorch's ``clip_grad_norm_``).
    clip_value : float, optional
        Clamp every gradient element to ``[-clip_value, clip_value]`` (after unscaling, before
        the norm clip).
    skip_nonfinite : bool
        Skip a step whose gradients hold a NaN or Inf: parameters, state and the step counter
        stay as they were.
    max_consecutive_skips : int, optional
        Raise ``fastml.NonFiniteError`` once this many steps in a row were skipped.
    scaler : LossScaler, optional
        Divide gradients by the loss scale and update the scale after each step.
    """

    def __init__(self, clip_norm=None, clip_value=None, skip_nonfinite=True,
                 max_consecutive_skips=None, scaler=None):
        self.clip_norm = _positive(clip_norm, "clip_norm")
        self.clip_value = _positive(clip_value, "clip_value")
        self.skip_nonfinite = bool(skip_nonfinite)
        self.max_consecutive_skips = (None if max_consecutive_skips is None
                                      else _count(max_consecutive_skips, "max_consecutive_skips"))
        if scaler is not None and not isinstance(scaler, LossScaler):
            raise TypeError(f"scaler must be a fastml.LossScaler; got {type(scaler).__name__}")
        self.scaler = scaler

    def __repr__(self):
        return (f"Guard(clip_norm={self.clip_norm!r}, clip_value={self.clip_value!r}, "
                f"skip_nonfinite={self.skip_nonfinite!r}, "
                f"max_consecutive_skips={self.max_consecutive_skips!r}, scaler={self.scaler!r})")


def _host(a):
    return a.copy_to_host() if hasattr(a, "copy_to_host") else a


@dataclass(frozen=True)
class StepInfo:
    """What one ``step()`` did.

    ``applied``: the update was applied (False: skipped, nothing changed). ``grad_norm``: global
    L2 norm of the unscaled gradients (None without a guard). ``clip_coef``: the factor the norm
    clip applied (1.0 when it did not clip). ``scale``: the loss scale this step's gradients were
    divided by. ``lr``: the learning rate used. ``step``: applied steps so far.
    ``skipped_total`` and ``consecutive_skips`` count skipped steps.
    """

    applied: bool
    grad_norm: float | None
    clip_coef: float
    scale: float
    lr: float
    step: int
    skipped_total: int
    consecutive_skips: int

    @classmethod
    def from_ctl(cls, ctl, guarded):
        c = _host(ctl)
        norm = float(c[P.NORM])
        return cls(applied=bool(c[P.APPLIED]), grad_norm=norm if guarded else None,
                   clip_coef=float(c[P.CLIP_COEF]), scale=float(c[P.SCALE_USED]),
                   lr=float(c[P.LR]), step=int(c[P.STEP]), skipped_total=int(c[P.SKIPPED]),
                   consecutive_skips=int(c[P.CONSEC]))


# Stand-alone gradient checks -------------------------------------------------------------------

def _grad_list(grads):
    from .params import FlatBuffer

    if isinstance(grads, FlatBuffer):
        grads = [grads.data]
    elif not isinstance(grads, (list, tuple)):
        grads = [grads]
    if not grads:
        raise ValueError("grads must hold at least one array; got an empty list")
    cuda = A.device_of(**{f"grads[{i}]": g for i, g in enumerate(grads)})
    arrays = []
    for i, g in enumerate(grads):
        a = A.as_array(g, f"grads[{i}]", cuda)
        A.check_float(a, f"grads[{i}]")
        arrays.append(a)
    return arrays, cuda


def _stats(arrays, cuda):
    from .losses import _backend

    kernels = _backend(cuda)
    ctl = np.zeros(P.CTL_SIZE)
    ctl[P.SCALE] = 1.0
    red = np.zeros(P.RED_SIZE)
    if cuda:
        from numba import cuda as nb_cuda

        ctl, red = nb_cuda.to_device(ctl), nb_cuda.to_device(red)
    for a in arrays:
        kernels.grad_stats(red, A.flat(A.contiguous_input(a, "grads", cuda)), ctl, math.inf)
    red = _host(red)
    return math.sqrt(red[P.SUMSQ]), red[P.NONFINITE] == 0


def global_norm(grads):
    """Global L2 norm over all gradients (float64 accumulation); NaN/Inf if any entry is."""
    arrays, cuda = _grad_list(grads)
    return _stats(arrays, cuda)[0]


def all_finite(grads):
    """True if no gradient entry is NaN or Inf."""
    arrays, cuda = _grad_list(grads)
    return bool(_stats(arrays, cuda)[1])


def clip_grad_norm(grads, max_norm):
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``, with
    PyTorch's coefficient ``min(1, max_norm / (norm + 1e-6))``; returns the norm before clipping.
    A NaN/Inf norm makes the gradients NaN, as in PyTorch (``error_if_nonfinite=False``)."""
    max_norm = _positive(max_norm, "max_norm", allow_none=False)
    arrays, cuda = _grad_list(grads)
    for i, a in enumerate(arrays):
        if not (a.flags["C_CONTIGUOUS"] if isinstance(a, np.ndarray) else a.is_c_contiguous()):
            raise ShapeError(f"grads[{i}] must be C-contiguous to be clipped in place")
    norm, _ = _stats(arrays, cuda)
    coef = min(1.0, max_norm / (norm + P.CLIP_EPS)) if not math.isnan(norm) else math.nan
    if coef != 1.0:
        from .losses import _backend

        for a in arrays:
            _backend(cuda).scale_inplace(A.flat(a), coef)
    return norm
