"""Optimizers that update every parameter in one pass over memory per step.

Each step is: (guarded only) one read of the gradients for their norm and finiteness, the step
plan (scalar work, once per step: skip or apply, clip factor, loss scale, step counter, learning
rate, bias corrections), and one update pass that reads p, g and the state once and writes p and
the state once. The update rules are PyTorch's, to the letter. On the GPU all three run on the
device and the host never waits for them.

On the CPU a list of parameter arrays is updated by one kernel call per dtype (the ``*_tensors``
kernels, ``fastml._tensor_groups``), whose state buffers are flat, array after array
(``opt.state[name][i]`` are views into them); on the GPU, by one launch per array.
"""

import bisect
import math
import threading
from collections.abc import Mapping, Sequence

import numpy as np

from . import _arrays as A
from . import _device_errors, _streams, _tensor_groups, _threads
from . import _hyper as H
from ._dispatch import backend
from ._snapshots import CtlSnapshots
from .errors import CheckpointError, DTypeError, NonFiniteError, ShapeError
from .guards import Guard, StepInfo
from .kernels import cpu as cpu_kernels
from .kernels import step_plan as P
from .params import FlatBuffer, FlatParams
from .schedules import Schedule


def _check_param(a, name):
    A.check_float(a, name)
    if not (a.flags["C_CONTIGUOUS"] if isinstance(a, np.ndarray) else a.is_c_contiguous()):
        raise ShapeError(f"{name} must be C-contiguous; got strides {a.strides} "
                         "(optimizers update parameters in place)")
    if isinstance(a, np.ndarray) and not a.flags.writeable:
        raise ShapeError(f"{name} must be writeable; got a read-only array")


class _Ranges:
    """The byte ranges of the parameters, sorted, to find in O(log n) which parameter (if any)
    a buffer overlaps: a pairwise check would make a step over 1000 tensors cost 10^6 tests."""

    def __init__(self, arrays, names):
        spans = sorted((*A._byte_range(a), i) for i, a in enumerate(arrays) if a.size)
        for (_, hi0, i), (lo1, _, j) in zip(spans, spans[1:], strict=False):
            if lo1 < hi0:
                first, second = sorted((i, j))
                raise ShapeError(f"{names[second]} must not share memory with params[{first}]")
        self._starts = [lo for lo, _, _ in spans]
        self._spans = spans

    def first_overlap(self, starts, nbytes):
        """``(i, j)``: the first buffer (of ``nbytes[i]`` bytes from address ``starts[i]``) that
        shares memory with a parameter, and that parameter; or None."""
        for i, (lo, n) in enumerate(zip(starts, nbytes, strict=True)):
            k = bisect.bisect_left(self._starts, lo + n) - 1  # the last one starting below its end
            if n and k >= 0 and self._spans[k][1] > lo:  # disjoint and sorted: only it can overlap
                return i, self._spans[k][2]
        return None


#: State buffers that accumulate squares: never negative.
_SQUARE_SUMS = ("exp_avg_sq", "max_exp_avg_sq", "square_avg", "sum")


class Optimizer:
    """Base class: parameters, state buffers, the control state and the guard.

    Thread safety: ``step``, ``state_dict``, ``load_state_dict``, setting ``lr``, and
    ``fastml.save`` / ``fastml.load`` of one optimizer take its lock, so calls from several
    threads run one at a time and no update is lost. Different optimizers step in parallel
    (their kernels release the GIL).

    Subclasses set ``_rule``, ``_kernel``, ``_checked_hyper()`` (the constructor's rules, which a
    loaded state is held to as well), ``_state_names()`` and ``_kernel_args()``.
    """

    _rule = None
    _kernel = None  # the update kernel's name; "<name>_tensors" on the CPU

    def __init__(self, params, lr, guard, **hyper):
        if guard is not None and not isinstance(guard, Guard):
            raise TypeError(f"guard must be a fastml.Guard or None; got {type(guard).__name__}")
        self._hyper = hyper
        self._set_params(params)
        self._guard = guard
        # One step at a time: a step reads and writes the parameters, the state and ctl.
        self._lock = threading.RLock()
        self._stream = 0  # GPU: the stream of the last step, which every device read waits for
        self._kernels = backend(self._cuda)
        self.lr = lr  # validates and builds the configuration
        self.state = self._new_states()
        scaler = self._scaler
        # The live loss scale: the scaler's, shared with every optimizer that uses it.
        live = scaler._read() if scaler is not None else np.array([1.0, 0.0])
        ctl = np.zeros(P.CTL_SIZE)
        ctl[P.SCALE] = ctl[P.SCALE_USED] = live[0]
        ctl[P.GROWTH] = live[1]
        ctl[P.UNSCALE] = 1.0 / ctl[P.SCALE]
        ctl[P.CLIP_COEF] = 1.0
        ctl[P.NORM] = ctl[P.LR] = math.nan
        self._ctl = self._to_device(ctl)
        self._scale_state = (scaler._attach(self._cuda) if scaler is not None
                             else self._ctl[P.SCALE:P.GROWTH + 1])
        self._red = self._to_device(np.zeros(P.RED_SIZE))
        # GPU: where each step's control state is copied for its StepInfo (see StepInfo).
        self._snapshots = CtlSnapshots() if self._cuda else None
        if self._cuda:
            # The buffers above were copied on the default stream; the first step may run on
            # any stream (one synchronization, at construction).
            from numba import cuda

            cuda.synchronize()

    # parameters and gradients ------------------------------------------------------------------

    def _set_params(self, params):
        if isinstance(params, FlatParams):
            self._structure, objs = "flat", [params.data]
        elif isinstance(params, (list, tuple)):
            self._structure, objs = "list", list(params)
            if not objs:
                raise ValueError("params must hold at least one array; got an empty list")
        else:
            self._structure, objs = "single", [params]
        self._flat = params if isinstance(params, FlatParams) else None
        self._user_params = objs  # for the stream of a step whose grads name none
        self._cuda = A.device_of(**{f"params[{i}]": p for i, p in enumerate(objs)})
        arrays, names = [], []
        for i, obj in enumerate(objs):
            name = "params" if self._structure == "single" else f"params[{i}]"
            a = A.as_array(obj, name, self._cuda)
            _check_param(a, name)
            A.check_in_place(obj, a, name, self._cuda)
            arrays.append(a)
            names.append(name)
        self._ranges = _Ranges(arrays, names)
        self._shapes = [tuple(a.shape) for a in arrays]
        self._params = [A.flat(a) for a in arrays]
        self._nbytes = [a.size * a.dtype.itemsize for a in arrays]
        if not self._cuda:
            groups = _tensor_groups.each_group(self._params)
            self._groups = [grp for grp, _ in groups]
            self._p_addr = [addr for _, addr in groups]

    def _grad_arrays(self, grads):
        """Validate ``grads`` against the parameters; return flat kernel arrays and, on the
        CPU, their addresses (None on the GPU)."""
        if self._structure == "flat":
            if grads is None:
                grads = self._flat.grad
            objs = [grads.data if isinstance(grads, FlatBuffer) else grads]
        elif grads is None:
            raise TypeError("step() needs grads unless the parameters are a FlatParams")
        elif self._structure == "list":
            if not isinstance(grads, (list, tuple)) or len(grads) != len(self._params):
                got = (f"{len(grads)} arrays" if isinstance(grads, (list, tuple))
                       else type(grads).__name__)
                raise ShapeError(f"grads must be a list of {len(self._params)} arrays, one per "
                                 f"parameter; got {got}")
            objs = list(grads)
        else:
            objs = [grads]
        names = ["grads"] if len(objs) == 1 and self._structure != "list" else [
            f"grads[{i}]" for i in range(len(objs))]
        if self._cuda or not all(type(obj) is np.ndarray for obj in objs):  # NumPy's: CPU
            A.device_of(params=self._params[0], **dict(zip(names, objs, strict=True)))
        out = []
        for name, obj, p, shape in zip(names, objs, self._params, self._shapes, strict=True):
            g = A.as_array(obj, name, self._cuda)
            if g.dtype != p.dtype:
                raise DTypeError(f"{name} must have the dtype of its parameter ({p.dtype}); "
                                 f"got {np.dtype(g.dtype)}")
            if g.shape != shape and not (self._structure == "flat" and g.size == p.size
                                         and g.ndim == 1):
                raise ShapeError(f"{name} must have the shape of its parameter {shape}; "
                                 f"got {tuple(g.shape)}")
            out.append(A.flat(A.contiguous_input(g, name, self._cuda)))
        if self._cuda:
            starts = None
            hit = self._ranges.first_overlap([A._byte_range(g)[0] for g in out], self._nbytes)
        else:
            starts = [_tensor_groups.address(g) for g in out]
            hit = self._ranges.first_overlap(starts, self._nbytes)
        if hit is not None:
            i, j = hit
            raise ShapeError(f"{names[i]} must not share memory with params[{j}] "
                             "(a gradient buffer must be separate from the parameters)")
        return out, starts

    # state and configuration -------------------------------------------------------------------

    def _state_names(self, hyper=None):
        """The state buffers the rule keeps under ``hyper`` (default: this optimizer's)."""
        return ()

    @staticmethod
    def _checked_hyper(hyper):
        """``hyper`` (name -> value, without lr) by the constructor's rules, converted."""
        return dict(hyper)

    def _state_init(self, name):
        return 0.0

    def _new_states(self):
        """``{name: [one buffer per parameter]}``; on the CPU views into each group's flat
        buffer (``self._group_states``), which the ``*_tensors`` kernels update."""
        names = self._state_names()
        if self._cuda:
            return {name: [self._to_device(np.full(p.size, self._state_init(name), p.dtype))
                           for p in self._params] for name in names}
        state = {name: [None] * len(self._params) for name in names}
        self._group_states = []
        for grp in self._groups:
            flat = {name: np.full(grp.size, self._state_init(name), grp.like.dtype)
                    for name in names}
            for name in names:
                for i, (lo, hi) in zip(grp.positions, grp.spans, strict=True):
                    state[name][i] = flat[name][lo:hi]
            self._group_states.append(flat)
        return state

    def _to_device(self, host):
        if self._cuda:
            from numba import cuda

            return cuda.to_device(host)
        return host

    @property
    def lr(self):
        """The learning rate: a float or a schedule (``step -> lr``). Settable between steps."""
        return self._lr

    @lr.setter
    def lr(self, value):
        if not callable(value):
            value = H.learning_rate(value)
        with self._lock:
            self._lr = value
            self._build_cfg()

    @property
    def guard(self):
        """The ``Guard`` given at construction (None: unguarded); fixed for the optimizer's
        life, since its configuration and loss-scale array are built from it."""
        return self._guard

    @property
    def _scaler(self):
        return self._guard.scaler if self._guard is not None else None

    def _build_cfg(self):
        cfg = np.zeros(P.CFG_SIZE)
        cfg[P.RULE] = self._rule
        g = self.guard
        cfg[P.CLIP_NORM] = g.clip_norm if g is not None and g.clip_norm is not None else math.inf
        cfg[P.CHECK_FINITE] = 1.0 if g is not None and g.skip_nonfinite else 0.0
        cfg[P.STATS] = 1.0 if g is not None else 0.0
        s = g.scaler if g is not None else None
        if s is not None:
            cfg[P.USE_SCALER] = 1.0
            cfg[P.GROWTH_FACTOR] = s.growth_factor
            cfg[P.BACKOFF_FACTOR] = s.backoff_factor
            cfg[P.GROWTH_INTERVAL] = s.growth_interval
        lr = self._lr
        if isinstance(lr, Schedule):
            cfg[P.LR_KIND], cfg[P.LR_BASE] = lr.kind, lr.base
            cfg[P.LR_P0], cfg[P.LR_P1], cfg[P.LR_P2] = lr.params
        else:
            cfg[P.LR_KIND] = P.CONSTANT
            cfg[P.LR_BASE] = lr if not callable(lr) else math.nan
        self._fill_cfg(cfg)
        self._cfg_host = cfg
        self._upload_cfg()

    def _upload_cfg(self):
        if not self._cuda:
            self._cfg = self._cfg_host
        elif getattr(self, "_cfg", None) is None:
            self._cfg = _streams.to_device(self._cfg_host, self._stream)
        else:  # in place, queued after the steps that read the previous configuration
            self._cfg.copy_to_device(self._cfg_host, stream=self._stream)

    def _fill_cfg(self, cfg):
        """Rule-specific entries (betas, lr decay)."""

    def _kernel_args(self, state, empty):
        """``(state buffers, hyper-parameters)``: the update kernel's arguments before and after
        ``ctl``, from ``state`` (name -> buffer; ``empty`` stands for one the rule leaves
        unused)."""
        raise NotImplementedError

    @property
    def _clip_value(self):
        g = self.guard
        return g.clip_value if g is not None and g.clip_value is not None else math.inf

    # the step ----------------------------------------------------------------------------------

    def step(self, grads=None):
        """Apply one update from ``grads`` (same structure as the parameters; omitted for a
        ``FlatParams``, whose ``grad`` buffer is used). Returns a ``StepInfo`` (on the GPU it
        reads the device when first asked, so ``step()`` itself does not wait for the device).

        Steps of one optimizer from several threads run one at a time, in the order they take
        its lock; none is lost.

        Raises ``NonFiniteError`` after ``guard.max_consecutive_skips`` skipped steps in a row.
        """
        with self._lock:
            return self._step(grads)

    def _step(self, grads):
        gs, starts = self._grad_arrays(grads)
        g_addr = None if self._cuda else [grp.addresses(starts) for grp in self._groups]
        if self._cuda:
            _device_errors.raise_finished()  # e.g. the labels of the loss behind these grads
            self._use_stream(_streams.for_arrays(grads, self._user_params))
        k = self._kernels
        if callable(self._lr) and not isinstance(self._lr, Schedule):
            # A user callable is evaluated on the host at the applied-step count (on the GPU
            # reading that count synchronizes; built-in schedules avoid it). It runs before the
            # guard pass, so a callable that fails leaves no statistics behind in red.
            lr = float(self._lr(int(self._read_ctl()[P.STEP])))
            if not lr >= 0 or not math.isfinite(lr):
                raise ValueError(f"lr schedule must return a non-negative number; got {lr!r}")
            self._cfg_host[P.LR_BASE] = lr
            self._upload_cfg()
        if self.guard is not None and self._cuda:
            for g in gs:
                k.grad_stats(self._red, g, self._ctl, self._clip_value)
        elif self.guard is not None:
            for grp, addr in zip(self._groups, g_addr, strict=True):
                _threads.call(cpu_kernels.grad_stats_tensors, grp.size, self._red, grp.chunks,
                              addr, self._ctl, self._clip_value, grp.like)
        guarded = self.guard is not None
        snap = self._plan()
        if self._cuda:
            for i, (p, g) in enumerate(zip(self._params, gs, strict=True)):
                states, hyper = self._kernel_args({n: a[i] for n, a in self.state.items()},
                                                  p[:0])
                getattr(k, self._kernel)(p, g, *states, self._ctl, *hyper)
        else:
            kernel = getattr(cpu_kernels, self._kernel + "_tensors")
            for grp, p_addr, addr, flat in zip(self._groups, self._p_addr, g_addr,
                                               self._group_states, strict=True):
                states, hyper = self._kernel_args(flat, grp.like)
                _threads.call(kernel, grp.size, grp.chunks, p_addr, addr, *states, self._ctl,
                              *hyper)
        if self._cuda:
            info = StepInfo.deferred(snap, guarded)
        else:
            info = StepInfo.from_ctl(self._ctl, guarded)
        limit = self.guard.max_consecutive_skips if guarded else None
        # On the GPU this read of the skip count waits for the step (only with a limit set).
        if limit is not None and info.consecutive_skips >= limit:
            raise NonFiniteError(
                f"gradients must be finite; got NaN/Inf in {info.consecutive_skips} steps in a "
                f"row (max_consecutive_skips={limit}); {info.skipped_total} skipped in total "
                "(lower the learning rate, check the loss, or enable a LossScaler)")
        return info

    def _plan(self):
        """Run the step plan; on the GPU return the snapshot its StepInfo reads.

        A shared ``LossScaler``'s scale is read and updated by one plan at a time (its lock on
        the CPU; on the GPU its array is ordered on the streams of the steps that use it)."""
        scaler = self._scaler
        if scaler is None:
            return self._launch_plan()
        with scaler._lock:
            if self._cuda and not _streams.same(scaler._stream, self._stream):
                # The last step that changed the scale may have run on another stream.
                _streams.wait_for(self._stream, scaler._stream)
                scaler._stream = self._stream
            return self._launch_plan()

    def _launch_plan(self):
        k = self._kernels
        if not self._cuda:
            k.plan_step(self._ctl, self._red, self._cfg, self._scale_state)
            return None
        # The plan and a snapshot of its result in one launch; the StepInfo reads the
        # snapshot when first asked, so the host does not wait for the device here.
        snap = self._snapshots.take(self._stream)
        k.plan_step_snapshot(self._ctl, self._red, self._cfg, self._scale_state,
                             self._snapshots.ring, snap.row)
        return snap

    def _use_stream(self, stream):
        """Launch this and later steps on ``stream``; when it is not the last step's, it first
        waits (on the device) for the work queued on the last one, which owns the state."""
        if not _streams.same(stream, self._stream):
            _streams.wait_for(stream, self._stream)
            self._stream = stream
            self._kernels = backend(True, stream)

    def _host(self, a):
        """A host copy of one of this optimizer's arrays, after the last step has written it."""
        return _streams.to_host(a, self._stream) if self._cuda else a

    def _read_ctl(self):
        return self._host(self._ctl)

    # checkpoints -------------------------------------------------------------------------------

    def state_dict(self):
        """Host copies of everything a resumed run needs: kind, hyper-parameters, the control
        state (step counter, loss scale, skip counts) and every state buffer."""
        with self._lock:
            host = self._host if self._cuda else (lambda a: a.copy())
            ctl = host(self._ctl)
            if self._scaler is not None:  # the live scale, which other optimizers may have moved
                ctl[P.SCALE], ctl[P.GROWTH] = self._scaler._read()
            return {
                "kind": type(self).__name__,
                "hyper": dict(self._hyper, lr=self._lr if not callable(self._lr) else None),
                "ctl": ctl,
                "scaler": self._scaler is not None,
                "state": {name: [host(a) for a in arrays]
                          for name, arrays in self.state.items()},
            }

    def load_state_dict(self, state):
        """Restore ``state_dict()`` output, all or nothing.

        Everything is checked before anything is written: a state of another kind, with other
        buffers, shapes or dtypes is refused (``ValueError``, ``ShapeError``, ``DTypeError``),
        and so are values the constructor would refuse or a step could not use (a negative or
        NaN learning rate, ``beta1=7``, a step counter that is not a count:
        ``CheckpointError``). With a ``LossScaler``, the loaded scale becomes the scaler's, for
        every optimizer that shares it.
        """
        with self._lock:
            hyper, lr, ctl, buffers = self._checked_state(state)
            self._write_state(hyper, lr, ctl, buffers)

    def _write_state(self, hyper, lr, ctl, buffers):
        """Write a state that ``_checked_state`` accepted (nothing here can fail on its values)."""
        for name, arrays in self.state.items():
            for dst, src in zip(arrays, buffers[name], strict=True):
                self._write(dst, src)
        scaler = self._scaler
        if scaler is not None:
            with scaler._lock:
                scaler._write(ctl[P.SCALE], ctl[P.GROWTH])
        self._write(self._ctl, ctl)
        self._hyper = hyper
        if lr is not None and not callable(self._lr):
            self._lr = lr
        self._build_cfg()

    def _checked_state(self, state):
        """``(hyper, lr, ctl, buffers)`` of a ``state_dict()``, validated and converted: the
        hyper-parameters by the constructor's rules, ctl as a float64 array with its scale
        fields set for this optimizer, each buffer flat in its buffer's dtype."""
        kind = type(self).__name__
        if not isinstance(state, Mapping):
            raise ValueError("state must be a dict from state_dict() with kind, hyper, ctl and "
                             f"state; got {type(state).__name__}")
        try:
            got_kind, hyper, ctl, buffers = (state["kind"], state["hyper"], state["ctl"],
                                             state["state"])
        except KeyError:
            raise ValueError("state must be a dict from state_dict() with kind, hyper, ctl and "
                             "state") from None
        if not isinstance(got_kind, str) or got_kind != kind:
            raise ValueError(f"state must be of a {kind} optimizer; got one of {got_kind}")
        if not isinstance(hyper, Mapping) or set(hyper) != set(self._hyper) | {"lr"}:
            got = sorted(map(str, hyper)) if isinstance(hyper, Mapping) else type(hyper).__name__
            raise ValueError(f"state hyper-parameters must be {sorted(set(self._hyper) | {'lr'})}"
                             f"; got {got}")
        try:
            lr = None if hyper["lr"] is None else H.learning_rate(hyper["lr"], "state lr")
            new = self._checked_hyper({k: v for k, v in hyper.items() if k != "lr"})
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"state hyper-parameters must pass the {kind} constructor's "
                                  f"checks; {exc}") from None
        for key in ("amsgrad", "centered", "nesterov", "decoupled_weight_decay"):
            if key in self._hyper and new[key] != self._hyper[key]:
                raise ValueError(f"state must come from an optimizer with {key}="
                                 f"{self._hyper[key]}; got {key}={hyper[key]}")
        if not isinstance(buffers, Mapping) or set(buffers) != set(self.state):
            got = (sorted(map(str, buffers)) if isinstance(buffers, Mapping)
                   else type(buffers).__name__)
            raise ValueError(f"state buffers must be {sorted(self.state)}; got {got}")
        needed = self._state_names(new)
        if set(needed) != set(self.state):
            raise ValueError(
                f"state hyper-parameters must need the buffers this optimizer has "
                f"({sorted(self.state)}); got ones that need {sorted(needed)} (construct the "
                "optimizer with the checkpoint's hyper-parameters, e.g. momentum, to load it)")
        scaled = state.get("scaler")  # None: a state that does not say; its scale is kept
        if scaled is not None and not isinstance(scaled, (bool, np.bool_)):
            raise CheckpointError(f"state scaler must be True, False or None; got {scaled!r}")
        ctl = self._checked_ctl(ctl, scaled is None or bool(scaled))
        flat = {}
        for name, arrays in self.state.items():
            srcs = buffers[name]
            is_list = isinstance(srcs, Sequence) and not isinstance(srcs, (str, bytes))
            if not is_list or len(srcs) != len(arrays):
                got = f"{len(srcs)} arrays" if is_list else type(srcs).__name__
                raise ShapeError(f"state {name!r} must hold {len(arrays)} arrays; got {got}")
            flat[name] = []
            for i, (dst, src) in enumerate(zip(arrays, srcs, strict=True)):
                try:
                    src = np.asarray(src)
                except (TypeError, ValueError) as exc:
                    raise CheckpointError(f"state {name}[{i}] must be an array; got "
                                          f"{type(src).__name__} ({exc})") from None
                if src.size != dst.size:
                    raise ShapeError(f"state {name}[{i}] must have {dst.size} elements; got "
                                     f"shape {src.shape}")
                if src.dtype != dst.dtype:
                    raise DTypeError(f"state {name}[{i}] must be {dst.dtype}; got {src.dtype}")
                # A copy: a source that is a view of one of this optimizer's own buffers must
                # not change while the others are written.
                src = np.array(src.reshape(-1), copy=True)
                # A step divides by the square root of these: a negative or NaN entry would
                # make its parameter NaN.
                square = name in _SQUARE_SUMS
                ok = np.isfinite(src)
                if square:
                    ok &= src >= 0
                bad = np.flatnonzero(~ok)
                if bad.size:
                    raise CheckpointError(
                        f"state {name}[{i}] must be finite{' and >= 0' if square else ''}; "
                        f"got {float(src[bad[0]])!r} at index {bad[0]}")
                flat[name].append(src)
        return new, lr, ctl, flat

    def _checked_ctl(self, ctl, scaled):
        """The loaded control state as a new float64 array, its counters checked, its scale
        fields those this optimizer continues from."""
        try:
            ctl = np.array(ctl)
        except (TypeError, ValueError):
            raise CheckpointError(f"state ctl must be float64 of shape ({P.CTL_SIZE},); got "
                                  f"{type(ctl).__name__}") from None
        if ctl.shape != (P.CTL_SIZE,) or ctl.dtype != np.float64:
            raise ShapeError(f"state ctl must be float64 of shape ({P.CTL_SIZE},); got "
                             f"{ctl.dtype} {ctl.shape}")
        for field, name in ((P.STEP, "step"), (P.SKIPPED, "skipped"),
                            (P.CONSEC, "consecutive skips"), (P.GROWTH, "growth count")):
            v = ctl[field]
            if not (math.isfinite(v) and v >= 0 and v == math.floor(v) and v < 2.0**53):
                raise CheckpointError(f"state ctl {name} (ctl[{field}]) must be a count (a "
                                      f"whole number >= 0); got {float(v)!r}")
        if ctl[P.CONSEC] > ctl[P.SKIPPED]:
            raise CheckpointError("state ctl consecutive skips must be at most the skipped "
                                  f"total ({float(ctl[P.SKIPPED])!r}); got "
                                  f"{float(ctl[P.CONSEC])!r}")
        if ctl[P.APPLIED] not in (0.0, 1.0):
            raise CheckpointError(f"state ctl applied flag (ctl[{P.APPLIED}]) must be 0 or 1; "
                                  f"got {float(ctl[P.APPLIED])!r}")
        scaler = self._scaler
        if scaler is None:
            # The loss scale belongs to a scaler: without one, gradients are not scaled, so a
            # checkpoint of a scaled run must not make this optimizer divide them.
            ctl[P.SCALE], ctl[P.GROWTH] = 1.0, 0.0
        elif not scaled:
            # A run without a scaler recorded scale 1; a scaler starts from its own init_scale.
            ctl[P.SCALE], ctl[P.GROWTH] = scaler.init_scale, 0.0
        elif not (math.isfinite(ctl[P.SCALE]) and ctl[P.SCALE] > 0):
            raise CheckpointError(f"state ctl loss scale (ctl[{P.SCALE}]) must be a positive "
                                  f"finite number; got {float(ctl[P.SCALE])!r}")
        return ctl

    def _write(self, dst, src):
        if self._cuda:
            dst.copy_to_device(np.ascontiguousarray(src), stream=self._stream)
        else:
            dst[...] = src

    def __repr__(self):
        hyper = ", ".join(f"{k}={v!r}" for k, v in self._hyper.items())
        return f"{type(self).__name__}(lr={self._lr!r}, {hyper}, guard={self.guard!r})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay
    (``torch.optim.SGD``; see ``fastml.kernels.cpu.sgd`` for the update equation)."""

    _rule = P.SGD
    _kernel = "sgd_step"

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0, maximize=False, guard=None):
        super().__init__(params, lr, guard, **self._checked_hyper(dict(
            momentum=momentum, dampening=dampening, nesterov=nesterov,
            weight_decay=weight_decay, maximize=maximize)))

    @staticmethod
    def _checked_hyper(h):
        momentum = H.nonneg(h["momentum"], "momentum")
        dampening = H.nonneg(h["dampening"], "dampening")
        nesterov = H.flag(h["nesterov"], "nesterov")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov must come with momentum > 0 and dampening = 0; got "
                             f"momentum={momentum!r}, dampening={dampening!r}")
        return dict(momentum=momentum, dampening=dampening, nesterov=nesterov,
                    weight_decay=H.nonneg(h["weight_decay"], "weight_decay"),
                    maximize=H.flag(h["maximize"], "maximize"))

    def _state_names(self, hyper=None):
        h = self._hyper if hyper is None else hyper
        return ("momentum_buffer",) if h["momentum"] != 0 else ()

    def _kernel_args(self, state, empty):
        h = self._hyper
        return ((state.get("momentum_buffer", empty),),
                (h["momentum"], h["dampening"], h["nesterov"], h["weight_decay"], h["maximize"],
                 self._clip_value))


class Adam(Optimizer):
    """Adam, with L2 or decoupled weight decay and AMSGrad (``torch.optim.Adam``; see
    ``fastml.kernels.cpu.adam`` for the update equation)."""

    _rule = P.ADAM
    _kernel = "adam_step"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 decoupled_weight_decay=False, amsgrad=False, maximize=False, guard=None):
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2); got {betas!r}") from None
        super().__init__(params, lr, guard, **self._checked_hyper(dict(
            beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay,
            decoupled_weight_decay=decoupled_weight_decay, amsgrad=amsgrad, maximize=maximize)))

    @staticmethod
    def _checked_hyper(h):
        return dict(beta1=H.unit(h["beta1"], "betas[0]"), beta2=H.unit(h["beta2"], "betas[1]"),
                    eps=H.nonneg(h["eps"], "eps"),
                    weight_decay=H.nonneg(h["weight_decay"], "weight_decay"),
                    decoupled_weight_decay=H.flag(h["decoupled_weight_decay"],
                                                  "decoupled_weight_decay"),
                    amsgrad=H.flag(h["amsgrad"], "amsgrad"),
                    maximize=H.flag(h["maximize"], "maximize"))

    def _state_names(self, hyper=None):
        h = self._hyper if hyper is None else hyper
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if h["amsgrad"] else ())

    def _fill_cfg(self, cfg):
        cfg[P.BETA1], cfg[P.BETA2] = self._hyper["beta1"], self._hyper["beta2"]

    def _kernel_args(self, state, empty):
        h = self._hyper
        return ((state["exp_avg"], state["exp_avg_sq"], state.get("max_exp_avg_sq", empty)),
                (h["beta1"], h["beta2"], h["eps"], h["weight_decay"],
                 h["decoupled_weight_decay"], h["amsgrad"], h["maximize"], self._clip_value))


class AdamW(Adam):
    """Adam with decoupled weight decay (``torch.optim.AdamW``): ``p <- p (1 - lr wd)``."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False, maximize=False, guard=None):
        super().__init__(params, lr, betas, eps, weight_decay, True, amsgrad, maximize, guard)


class RMSprop(Optimizer):
    """RMSprop, centered and with momentum (``torch.optim.RMSprop``; see
    ``fastml.kernels.cpu.rmsprop`` for the update equation)."""

    _rule = P.RMSPROP
    _kernel = "rmsprop_step"

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                 centered=False, maximize=False, guard=None):
        super().__init__(params, lr, guard, **self._checked_hyper(dict(
            alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum,
            centered=centered, maximize=maximize)))

    @staticmethod
    def _checked_hyper(h):
        return dict(alpha=H.unit(h["alpha"], "alpha", upper_open=False),
                    eps=H.nonneg(h["eps"], "eps"),
                    weight_decay=H.nonneg(h["weight_decay"], "weight_decay"),
                    momentum=H.nonneg(h["momentum"], "momentum"),
                    centered=H.flag(h["centered"], "centered"),
                    maximize=H.flag(h["maximize"], "maximize"))

    def _state_names(self, hyper=None):
        h = self._hyper if hyper is None else hyper
        return (("square_avg",) + (("grad_avg",) if h["centered"] else ())
                + (("momentum_buffer",) if h["momentum"] > 0 else ()))

    def _kernel_args(self, state, empty):
        h = self._hyper
        return ((state["square_avg"], state.get("grad_avg", empty),
                 state.get("momentum_buffer", empty)),
                (h["alpha"], h["eps"], h["weight_decay"], h["momentum"], h["centered"],
                 h["maximize"], self._clip_value))


class Adagrad(Optimizer):
    """Adagrad with learning-rate decay and an initial accumulator (``torch.optim.Adagrad``;
    see ``fastml.kernels.cpu.adagrad`` for the update equation)."""

    _rule = P.ADAGRAD
    _kernel = "adagrad_step"

    def __init__(self, params, lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                 initial_accumulator_value=0.0, eps=1e-10, maximize=False, guard=None):
        super().__init__(params, lr, guard, **self._checked_hyper(dict(
            lr_decay=lr_decay, weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value, eps=eps, maximize=maximize)))

    @staticmethod
    def _checked_hyper(h):
        return dict(lr_decay=H.nonneg(h["lr_decay"], "lr_decay"),
                    weight_decay=H.nonneg(h["weight_decay"], "weight_decay"),
                    initial_accumulator_value=H.nonneg(h["initial_accumulator_value"],
                                                       "initial_accumulator_value"),
                    eps=H.nonneg(h["eps"], "eps"), maximize=H.flag(h["maximize"], "maximize"))

    def _state_names(self, hyper=None):
        return ("sum",)

    def _state_init(self, name):
        return self._hyper["initial_accumulator_value"]

    def _fill_cfg(self, cfg):
        cfg[P.LR_DECAY] = self._hyper["lr_decay"]

    def _kernel_args(self, state, empty):
        h = self._hyper
        return ((state["sum"],), (h["eps"], h["weight_decay"], h["maximize"], self._clip_value))
