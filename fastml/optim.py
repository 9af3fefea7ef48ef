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

import numpy as np

from . import _arrays as A
from . import _device_errors, _streams, _tensor_groups, _threads
from ._dispatch import backend
from ._snapshots import CtlSnapshots
from .errors import DTypeError, NonFiniteError, ShapeError
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


class Optimizer:
    """Base class: parameters, state buffers, the control state and the guard.

    Subclasses set ``_rule``, ``_kernel``, ``_state_names()`` and ``_kernel_args()``.
    """

    _rule = None
    _kernel = None  # the update kernel's name; "<name>_tensors" on the CPU

    def __init__(self, params, lr, guard, **hyper):
        if guard is not None and not isinstance(guard, Guard):
            raise TypeError(f"guard must be a fastml.Guard or None; got {type(guard).__name__}")
        self._hyper = hyper
        self._set_params(params)
        self.guard = guard
        self._stream = 0  # GPU: the stream of the last step, which every device read waits for
        self._kernels = backend(self._cuda)
        self.lr = lr  # validates and builds the configuration
        self.state = self._new_states()
        ctl = np.zeros(P.CTL_SIZE)
        scaler = guard.scaler if guard is not None else None
        ctl[P.SCALE] = ctl[P.SCALE_USED] = scaler.init_scale if scaler is not None else 1.0
        ctl[P.UNSCALE] = 1.0 / ctl[P.SCALE]
        ctl[P.CLIP_COEF] = 1.0
        ctl[P.NORM] = ctl[P.LR] = math.nan
        self._ctl = self._to_device(ctl)
        self._red = self._to_device(np.zeros(P.RED_SIZE))
        # GPU: where each step's control state is copied for its StepInfo (see StepInfo).
        self._snapshots = CtlSnapshots() if self._cuda else None
        if scaler is not None:
            scaler._owner = self
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

    def _state_names(self):
        return ()

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
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise TypeError("lr must be a number or a schedule (a callable step -> lr); "
                                f"got {type(value).__name__}") from None
            if not value >= 0 or not math.isfinite(value):
                raise ValueError(f"lr must be a non-negative number; got {value!r}")
        self._lr = value
        self._build_cfg()

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

        Raises ``NonFiniteError`` after ``guard.max_consecutive_skips`` skipped steps in a row.
        """
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
        if self._cuda:
            # The plan and a snapshot of its result in one launch; the StepInfo reads the
            # snapshot when first asked, so the host does not wait for the device here.
            snap = self._snapshots.take(self._stream)
            k.plan_step_snapshot(self._ctl, self._red, self._cfg, self._snapshots.ring, snap.row)
        else:
            k.plan_step(self._ctl, self._red, self._cfg)
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
        host = self._host if self._cuda else (lambda a: a.copy())
        return {
            "kind": type(self).__name__,
            "hyper": dict(self._hyper, lr=self._lr if not callable(self._lr) else None),
            "ctl": host(self._ctl),
            "scaler": self.guard is not None and self.guard.scaler is not None,
            "state": {name: [host(a) for a in arrays] for name, arrays in self.state.items()},
        }

    def load_state_dict(self, state):
        """Restore ``state_dict()`` output. Everything is checked before anything is written:
        a checkpoint of another kind, with other buffers, shapes or dtypes is refused."""
        self._check_state_dict(state)
        for name, arrays in self.state.items():
            for dst, src in zip(arrays, state["state"][name], strict=True):
                self._write(dst, np.asarray(src).reshape(-1))
        ctl = np.array(state["ctl"], dtype=np.float64)
        scaler = self.guard.scaler if self.guard is not None else None
        if scaler is None:
            # The loss scale belongs to a scaler: without one, gradients are not scaled, so a
            # checkpoint of a scaled run must not make this optimizer divide them.
            ctl[P.SCALE], ctl[P.GROWTH] = 1.0, 0.0
        elif state.get("scaler") is False:
            # A run without a scaler recorded scale 1; a scaler starts from its own init_scale.
            ctl[P.SCALE], ctl[P.GROWTH] = scaler.init_scale, 0.0
        self._write(self._ctl, ctl)
        for key, value in state["hyper"].items():
            if key == "lr":
                if value is not None and not callable(self._lr):
                    self._lr = float(value)
            else:
                self._hyper[key] = value
        self._build_cfg()

    def _check_state_dict(self, state):
        kind = type(self).__name__
        try:
            got_kind, hyper, ctl, buffers = (state["kind"], state["hyper"], state["ctl"],
                                             state["state"])
        except (KeyError, TypeError):
            raise ValueError("state must be a dict from state_dict() with kind, hyper, ctl and "
                             "state") from None
        if got_kind != kind:
            raise ValueError(f"state must be of a {kind} optimizer; got one of {got_kind}")
        if set(hyper) != set(self._hyper) | {"lr"}:
            raise ValueError(f"state hyper-parameters must be {sorted(set(self._hyper) | {'lr'})}"
                             f"; got {sorted(hyper)}")
        for key in ("amsgrad", "centered", "nesterov", "decoupled_weight_decay"):
            if key in self._hyper and bool(hyper[key]) != bool(self._hyper[key]):
                raise ValueError(f"state must come from an optimizer with {key}="
                                 f"{self._hyper[key]}; got {key}={hyper[key]}")
        ctl = np.asarray(ctl)
        if ctl.shape != (P.CTL_SIZE,) or ctl.dtype != np.float64:
            raise ShapeError(f"state ctl must be float64 of shape ({P.CTL_SIZE},); got "
                             f"{ctl.dtype} {ctl.shape}")
        if set(buffers) != set(self.state):
            raise ValueError(f"state buffers must be {sorted(self.state)}; got {sorted(buffers)}")
        for name, arrays in self.state.items():
            if len(buffers[name]) != len(arrays):
                raise ShapeError(f"state {name!r} must hold {len(arrays)} arrays; got "
                                 f"{len(buffers[name])}")
            for i, (dst, src) in enumerate(zip(arrays, buffers[name], strict=True)):
                src = np.asarray(src)
                if src.size != dst.size:
                    raise ShapeError(f"state {name}[{i}] must have {dst.size} elements; got "
                                     f"shape {src.shape}")
                if src.dtype != dst.dtype:
                    raise DTypeError(f"state {name}[{i}] must be {dst.dtype}; got {src.dtype}")

    def _write(self, dst, src):
        if self._cuda:
            dst.copy_to_device(np.ascontiguousarray(src), stream=self._stream)
        else:
            dst[...] = src

    def __repr__(self):
        hyper = ", ".join(f"{k}={v!r}" for k, v in self._hyper.items())
        return f"{type(self).__name__}(lr={self._lr!r}, {hyper}, guard={self.guard!r})"


def _check_unit(value, name, *, upper_open=True):
    v = float(value)
    if not (0.0 <= v < 1.0 if upper_open else 0.0 <= v <= 1.0):
        raise ValueError(f"{name} must be in [0, 1{')' if upper_open else ']'}; got {value!r}")
    return v


def _check_nonneg(value, name):
    v = float(value)
    if not v >= 0.0 or not math.isfinite(v):
        raise ValueError(f"{name} must be a non-negative number; got {value!r}")
    return v


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay
    (``torch.optim.SGD``; see ``fastml.kernels.cpu.sgd`` for the update equation)."""

    _rule = P.SGD
    _kernel = "sgd_step"

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, nesterov=False,
                 weight_decay=0.0, maximize=False, guard=None):
        momentum = _check_nonneg(momentum, "momentum")
        dampening = _check_nonneg(dampening, "dampening")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov must come with momentum > 0 and dampening = 0; got "
                             f"momentum={momentum!r}, dampening={dampening!r}")
        super().__init__(params, lr, guard, momentum=momentum, dampening=dampening,
                         nesterov=bool(nesterov),
                         weight_decay=_check_nonneg(weight_decay, "weight_decay"),
                         maximize=bool(maximize))

    def _state_names(self):
        return ("momentum_buffer",) if self._hyper["momentum"] != 0 else ()

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
        super().__init__(params, lr, guard, beta1=_check_unit(beta1, "betas[0]"),
                         beta2=_check_unit(beta2, "betas[1]"), eps=_check_nonneg(eps, "eps"),
                         weight_decay=_check_nonneg(weight_decay, "weight_decay"),
                         decoupled_weight_decay=bool(decoupled_weight_decay),
                         amsgrad=bool(amsgrad), maximize=bool(maximize))

    def _state_names(self):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self._hyper["amsgrad"] else ())

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
        super().__init__(params, lr, guard, alpha=_check_unit(alpha, "alpha", upper_open=False),
                         eps=_check_nonneg(eps, "eps"),
                         weight_decay=_check_nonneg(weight_decay, "weight_decay"),
                         momentum=_check_nonneg(momentum, "momentum"), centered=bool(centered),
                         maximize=bool(maximize))

    def _state_names(self):
        h = self._hyper
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
        super().__init__(params, lr, guard, lr_decay=_check_nonneg(lr_decay, "lr_decay"),
                         weight_decay=_check_nonneg(weight_decay, "weight_decay"),
                         initial_accumulator_value=_check_nonneg(initial_accumulator_value,
                                                                 "initial_accumulator_value"),
                         eps=_check_nonneg(eps, "eps"), maximize=bool(maximize))

    def _state_names(self):
        return ("sum",)

    def _state_init(self, name):
        return self._hyper["initial_accumulator_value"]

    def _fill_cfg(self, cfg):
        cfg[P.LR_DECAY] = self._hyper["lr_decay"]

    def _kernel_args(self, state, empty):
        h = self._hyper
        return ((state["sum"],), (h["eps"], h["weight_decay"], h["maximize"], self._clip_value))
