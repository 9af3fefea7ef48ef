"""Guards against NaN/Inf and exploding gradients.

``Guard`` is handed to an optimizer: each guarded step first reads the gradients once (global
norm and non-finite count in one pass), then the step plan decides to apply or skip, and the
update pass folds the unscale and clip factors into its gradient read. A skipped step leaves the
parameters and every state buffer bitwise unchanged. ``global_norm``, ``all_finite`` and
``clip_grad_norm`` are the same pass offered on their own.
"""

import math
import operator
import threading

import numpy as np

from . import _arrays as A
from . import _streams, _tensor_groups, _threads
from ._dispatch import backend
from ._hyper import real
from .errors import DeviceError, ShapeError
from .kernels import cpu as cpu_kernels
from .kernels import step_plan as P


def _positive(value, name, allow_none=True):
    if value is None and allow_none:
        return None
    try:
        v = real(value, name)
    except TypeError:
        raise TypeError(f"{name} must be a positive number; got {type(value).__name__}") from None
    if not v > 0:
        raise ValueError(f"{name} must be a positive number; got {value!r}")
    return v


class LossScaler:
    """Dynamic loss scaling, as ``torch.amp.GradScaler``: multiply the loss (or pass
    ``grad_scale=scaler.scale`` to a fastml loss), and the guarded optimizer divides the
    gradients by the same scale, backs off by ``backoff_factor`` on a NaN/Inf and grows by
    ``growth_factor`` after ``growth_interval`` clean steps in a row.

    One scaler holds one scale, however many optimizers use it (through their ``Guard``s):
    each guarded step divides by the scaler's scale at that moment, and the backoff or growth
    it decides is the scale of the next step of every one of them. Growth counts the clean
    steps of all of them together: with two optimizers stepping once per iteration, the scale
    grows after ``growth_interval / 2`` clean iterations (``torch.amp.GradScaler`` counts
    ``update()`` calls, one per iteration). Read ``scale`` for each loss after the previous
    step of any optimizer sharing the scaler: when one backward pass feeds several optimizers
    and the first of them backs off, the later ones divide by the new scale; to keep them
    consistent, step the parameters of one backward pass as one optimizer (a list of arrays or
    a ``FlatParams``).

    ``scale`` reads the live scale (on the GPU that read waits for the last step that used it).
    The scaler lives on the device of the first optimizer that uses it; optimizers on another
    device (the CPU, another GPU) cannot share it. A copy (pickle, ``copy.deepcopy``) holds the
    configuration and starts at ``init_scale``. Thread-safe: steps of different optimizers
    that share a scaler update its scale one at a time.
    """

    def __init__(self, init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000):
        self.init_scale = _positive(init_scale, "init_scale", allow_none=False)
        # An infinite scale makes every scaled loss Inf/NaN: every step would be skipped.
        if not math.isfinite(self.init_scale):
            raise ValueError(f"init_scale must be a positive finite number; got {init_scale!r}")
        self.growth_factor = real(growth_factor, "growth_factor")
        if not 1.0 < self.growth_factor < math.inf:
            raise ValueError(f"growth_factor must be > 1 and finite; got {growth_factor!r}")
        self.backoff_factor = real(backoff_factor, "backoff_factor")
        if not 0.0 < self.backoff_factor < 1.0:
            raise ValueError(f"backoff_factor must be in (0, 1); got {backoff_factor!r}")
        self.growth_interval = _count(growth_interval, "growth_interval")
        self._lock = threading.Lock()  # held while a step plans with (and updates) the scale
        self._state = None  # (2,) float64 [scale, growth count] on the device of its optimizers
        self._cuda = self._device = None  # that device: the CPU, or a GPU's id
        self._stream = 0  # GPU: the stream of the last step that updated the scale

    def _attach(self, cuda):
        """The live ``[scale, growth]`` array for an optimizer on the CPU (``cuda=False``) or
        the current GPU, created on first use."""
        device = _current_gpu() if cuda else None
        with self._lock:
            if self._state is None:
                host = np.array([self.init_scale, 0.0])
                if cuda:
                    from numba import cuda as nb_cuda

                    state = nb_cuda.to_device(host)
                    nb_cuda.synchronize()
                else:
                    state = host
                self._cuda, self._device, self._state = cuda, device, state
            elif (cuda, device) != (self._cuda, self._device):
                where = f"GPU {self._device}" if self._cuda else "the CPU"
                raise DeviceError(f"scaler must serve optimizers on one device; got one already "
                                  f"used on {where} (give each device its own LossScaler)")
            return self._state

    def _read(self):
        """A host copy of ``[scale, growth]`` (``[init_scale, 0]`` before first use)."""
        with self._lock:
            if self._state is None:
                return np.array([self.init_scale, 0.0])
            if self._cuda:
                return _streams.to_host(self._state, self._stream)
            return self._state.copy()

    def _write(self, scale, growth):
        """Set the live scale and growth count (a checkpoint being loaded); the caller holds
        the lock."""
        host = np.array([scale, growth], dtype=np.float64)
        if self._cuda:
            self._state.copy_to_device(host, stream=self._stream)
        else:
            self._state[:] = host

    def __getstate__(self):
        # A copy (pickle, deepcopy) is configuration only: it starts at init_scale, unattached.
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_lock", "_state", "_cuda", "_device", "_stream")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._state = self._cuda = self._device = None
        self._stream = 0

    @property
    def scale(self):
        """The current loss scale (``init_scale`` until an optimizer has used it)."""
        return float(self._read()[0])

    def __repr__(self):
        return (f"LossScaler(scale={self.scale!r}, growth_factor={self.growth_factor!r}, "
                f"backoff_factor={self.backoff_factor!r}, "
                f"growth_interval={self.growth_interval!r})")


def _current_gpu():
    from numba import cuda

    return getattr(cuda.get_current_device(), "id", 0)  # (the simulator's device has none)


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

    A Guard is configuration: treat it as read-only once an optimizer has it. One Guard may
    serve several optimizers and threads.
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


_FIELDS = ("applied", "grad_norm", "clip_coef", "scale", "lr", "step", "skipped_total",
           "consecutive_skips")


def _fields(c, guarded):
    """StepInfo's field values from a host copy of ``ctl``."""
    norm = float(c[P.NORM])
    return (bool(c[P.APPLIED]), norm if guarded else None, float(c[P.CLIP_COEF]),
            float(c[P.SCALE_USED]), float(c[P.LR]), int(c[P.STEP]), int(c[P.SKIPPED]),
            int(c[P.CONSEC]))


class StepInfo:
    """What one ``step()`` did (read-only fields).

    ``applied``: the update was applied (False: skipped, nothing changed). ``grad_norm``: global
    L2 norm of the unscaled gradients (None without a guard). ``clip_coef``: the factor the norm
    clip applied (1.0 when it did not clip). ``scale``: the loss scale this step's gradients were
    divided by. ``lr``: the learning rate used. ``step``: applied steps so far.
    ``skipped_total`` and ``consecutive_skips`` count skipped steps.

    On the CPU every field is filled when ``step()`` returns. On the GPU ``step()`` does not wait
    for the device: the StepInfo holds a device-side snapshot of the step's control state, and
    the first read of any field copies it to the host (that read waits for the step's kernels;
    later reads use the host copy). Snapshots live in a ring of ``fastml._snapshots.SLOTS`` (64)
    rows per optimizer, so first-read a GPU StepInfo within that many further steps: later, the
    read raises ``RuntimeError`` rather than return another step's values. With
    ``Guard(max_consecutive_skips=...)`` the step itself reads the snapshot (and so waits).

    A StepInfo never changes once filled, so threads may share it.
    """

    __slots__ = ("_values", "_snapshot", "_guarded")

    def __init__(self, applied, grad_norm, clip_coef, scale, lr, step, skipped_total,
                 consecutive_skips):
        self._values = (applied, grad_norm, clip_coef, scale, lr, step, skipped_total,
                        consecutive_skips)
        self._snapshot = self._guarded = None

    @classmethod
    def from_ctl(cls, ctl, guarded):
        """Read now from ``ctl`` (a host array, or a device array: then this copy waits)."""
        return cls(*_fields(_host(ctl), guarded))

    @classmethod
    def deferred(cls, snapshot, guarded):
        """Read on first access from ``snapshot.read()`` (a host copy of ``ctl``)."""
        info = cls.__new__(cls)
        info._values, info._snapshot, info._guarded = None, snapshot, guarded
        return info

    def _get(self):
        if self._values is None:
            self._values = _fields(self._snapshot.read(), self._guarded)
            self._snapshot = None
        return self._values

    applied = property(lambda self: self._get()[0])
    grad_norm = property(lambda self: self._get()[1])
    clip_coef = property(lambda self: self._get()[2])
    scale = property(lambda self: self._get()[3])
    lr = property(lambda self: self._get()[4])
    step = property(lambda self: self._get()[5])
    skipped_total = property(lambda self: self._get()[6])
    consecutive_skips = property(lambda self: self._get()[7])

    def __eq__(self, other):
        if not isinstance(other, StepInfo):
            return NotImplemented
        return self._get() == other._get()

    def __hash__(self):
        return hash(self._get())

    def __repr__(self):
        values = ", ".join(f"{k}={v!r}" for k, v in zip(_FIELDS, self._get(), strict=True))
        return f"StepInfo({values})"


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
    return arrays, cuda, _streams.for_arrays(grads) if cuda else 0


def _flat_inputs(arrays, cuda):
    """The arrays flat and C-contiguous (a copy of those that are not, on the CPU)."""
    return [A.flat(A.contiguous_input(a, f"grads[{i}]", cuda)) for i, a in enumerate(arrays)]


def _stats(arrays, cuda, stream, groups=None):
    """``(norm, finite)`` of ``arrays``: on the CPU one guard pass per dtype over all of them
    (``groups``: ``fastml._tensor_groups.each_group(arrays)``, when the caller has them), on
    the GPU one launch per array."""
    ctl = np.zeros(P.CTL_SIZE)
    ctl[P.SCALE] = 1.0
    red = np.zeros(P.RED_SIZE)
    if cuda:
        kernels = backend(cuda, stream)
        ctl, red = _streams.to_device(ctl, stream), _streams.to_device(red, stream)
        for a in arrays:
            kernels.grad_stats(red, a, ctl, math.inf)
        red = _streams.to_host(red, stream)
    else:
        for grp, addr in groups or _tensor_groups.each_group(arrays):
            _threads.call(cpu_kernels.grad_stats_tensors, grp.size, red, grp.chunks, addr, ctl,
                          math.inf, grp.like)
    return math.sqrt(red[P.SUMSQ]), red[P.NONFINITE] == 0


def global_norm(grads):
    """Global L2 norm over all gradients (float64 accumulation); NaN/Inf if any entry is."""
    arrays, cuda, stream = _grad_list(grads)
    return _stats(_flat_inputs(arrays, cuda), cuda, stream)[0]


def all_finite(grads):
    """True if no gradient entry is NaN or Inf."""
    arrays, cuda, stream = _grad_list(grads)
    return bool(_stats(_flat_inputs(arrays, cuda), cuda, stream)[1])


def clip_grad_norm(grads, max_norm):
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``, with
    PyTorch's coefficient ``min(1, max_norm / (norm + 1e-6))``; returns the norm before clipping.
    A NaN/Inf norm makes the gradients NaN, as in PyTorch (``error_if_nonfinite=False``)."""
    max_norm = _positive(max_norm, "max_norm", allow_none=False)
    arrays, cuda, stream = _grad_list(grads)
    from .params import FlatBuffer

    objs = ([grads.data] if isinstance(grads, FlatBuffer)
            else grads if isinstance(grads, (list, tuple)) else [grads])
    for i, (obj, a) in enumerate(zip(objs, arrays, strict=True)):
        A.check_in_place(obj, a, f"grads[{i}]", cuda)
        if not (a.flags["C_CONTIGUOUS"] if isinstance(a, np.ndarray) else a.is_c_contiguous()):
            raise ShapeError(f"grads[{i}] must be C-contiguous to be clipped in place")
        if isinstance(a, np.ndarray) and not a.flags.writeable:
            raise ShapeError(f"grads[{i}] must be writeable to be clipped in place; got a "
                             "read-only array")
    arrays = [A.flat(a) for a in arrays]
    groups = None if cuda else _tensor_groups.each_group(arrays)
    norm, _ = _stats(arrays, cuda, stream, groups)
    coef = min(1.0, max_norm / (norm + P.CLIP_EPS)) if not math.isnan(norm) else math.nan
    if coef != 1.0 and cuda:
        kernels = backend(cuda, stream)
        for a in arrays:
            kernels.scale_inplace(a, coef)
    elif coef != 1.0:
        for grp, addr in groups:
            _threads.call(cpu_kernels.scale_inplace_tensors, grp.size, grp.chunks, addr, coef,
                          grp.like)
    return norm
