"""Float64 NumPy references for the optimizers, the guard and the loss scaler.

Written from PyTorch's documented algorithms (the pseudo-code in the docstrings of
``torch.optim.SGD``, ``Adam``, ``AdamW``, ``RMSprop`` and ``Adagrad``; ``torch.nn.utils.
clip_grad_norm_`` / ``clip_grad_value_``; ``torch.amp.GradScaler.unscale_``, ``step`` and
``update``), one formula per line, in float64, slow on purpose. Nothing here calls fastml or torch.

A step of :class:`Optimizer` is what this PyTorch loop does::

    scaler.unscale_(opt)                       # g <- g / scale; found_inf = any NaN/Inf in g
    clip_grad_value_(params, clip_value)       # g <- clamp(g, -clip_value, clip_value)
    norm = clip_grad_norm_(params, clip_norm)  # g <- g * min(1, clip_norm / (norm + 1e-6))
    scaler.step(opt)                           # skipped when found_inf (the step counter too)
    scaler.update()                            # backoff on found_inf, growth after an interval

with fastml's guard rules on top: without a scaler a non-finite step is skipped too (unless
``skip_nonfinite=False``), and the norm clip is not applied to a non-finite step (it is skipped,
or with ``skip_nonfinite=False`` its gradient is used unclipped, NaN and all).

State buffers carry PyTorch's names (``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``,
``square_avg``, ``grad_avg``, ``momentum_buffer``, ``sum``), which are also fastml's.
"""

import math

import numpy as np

CLIP_EPS = 1e-6  # clip_grad_norm_: clip_coef = max_norm / (total_norm + 1e-6)


def _f64(a):
    return np.array(a, dtype=np.float64)  # a copy


# Update rules: one parameter array, in place. ``t`` is the step number (1 on the first step). ---

def sgd(p, g, state, t, lr, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0,
        maximize=False):
    """torch.optim.SGD: b_1 = g; b_t = mu b_{t-1} + (1 - tau) g; g <- g + mu b (Nesterov) or b."""
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    if momentum != 0:
        if t == 1:
            buf = g.copy()
        else:
            buf = momentum * state["momentum_buffer"] + (1.0 - dampening) * g
        state["momentum_buffer"] = buf
        g = g + momentum * buf if nesterov else buf
    p -= lr * g


def adam(p, g, state, t, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
         decoupled_weight_decay=False, amsgrad=False, maximize=False):
    """torch.optim.Adam / AdamW: m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t),
    p <- p - lr m_hat / (sqrt(v_hat) + eps) (AMSGrad: the running max of v instead of v)."""
    beta1, beta2 = betas
    if maximize:
        g = -g
    if weight_decay != 0:
        if decoupled_weight_decay:
            p *= 1.0 - lr * weight_decay
        else:
            g = g + weight_decay * p
    m = beta1 * state["exp_avg"] + (1.0 - beta1) * g
    v = beta2 * state["exp_avg_sq"] + (1.0 - beta2) * g * g
    state["exp_avg"], state["exp_avg_sq"] = m, v
    if amsgrad:
        v = np.maximum(state["max_exp_avg_sq"], v)
        state["max_exp_avg_sq"] = v
    m_hat = m / (1.0 - beta1**t)
    v_hat = v / (1.0 - beta2**t)
    p -= lr * m_hat / (np.sqrt(v_hat) + eps)


def adamw(p, g, state, t, lr, weight_decay=1e-2, **hyper):
    """torch.optim.AdamW: Adam with decoupled weight decay p <- p (1 - lr wd)."""
    adam(p, g, state, t, lr, weight_decay=weight_decay, decoupled_weight_decay=True, **hyper)


def rmsprop(p, g, state, t, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
            centered=False, maximize=False):
    """torch.optim.RMSprop: v = alpha v + (1 - alpha) g^2; centered: v - g_ave^2 under the
    root; b = mu b + g / (sqrt(v) + eps), p <- p - lr b (momentum) or p <- p - lr g / (...)."""
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    v = alpha * state["square_avg"] + (1.0 - alpha) * g * g
    state["square_avg"] = v
    if centered:
        g_ave = alpha * state["grad_avg"] + (1.0 - alpha) * g
        state["grad_avg"] = g_ave
        avg = np.sqrt(v - g_ave * g_ave) + eps
    else:
        avg = np.sqrt(v) + eps
    if momentum > 0:
        buf = momentum * state["momentum_buffer"] + g / avg
        state["momentum_buffer"] = buf
        p -= lr * buf
    else:
        p -= lr * g / avg


def adagrad(p, g, state, t, lr, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
            eps=1e-10, maximize=False):
    """torch.optim.Adagrad: clr = lr / (1 + (t - 1) lr_decay); sum += g^2;
    p <- p - clr g / (sqrt(sum) + eps)."""
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g + weight_decay * p
    clr = lr / (1.0 + (t - 1) * lr_decay)
    state["sum"] = state["sum"] + g * g
    p -= clr * g / (np.sqrt(state["sum"]) + eps)


RULES = {"SGD": sgd, "Adam": adam, "AdamW": adamw, "RMSprop": rmsprop, "Adagrad": adagrad}


def state_names(kind, hyper):
    """The state buffers PyTorch keeps for ``kind`` with these options."""
    if kind == "SGD":
        return ("momentum_buffer",) if hyper.get("momentum", 0.0) != 0 else ()
    if kind in ("Adam", "AdamW"):
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if hyper.get("amsgrad") else ())
    if kind == "RMSprop":
        return (("square_avg",) + (("grad_avg",) if hyper.get("centered") else ())
                + (("momentum_buffer",) if hyper.get("momentum", 0.0) > 0 else ()))
    if kind == "Adagrad":
        return ("sum",)
    raise ValueError(f"unknown optimizer {kind!r}")


# Gradient checks ---------------------------------------------------------------------------------

def global_norm(grads):
    """L2 norm over all entries of all arrays, exactly rounded sum of squares (NaN/Inf: IEEE)."""
    squares = np.concatenate([_f64(g).ravel() ** 2 for g in grads])
    if not np.isfinite(squares).all():
        return float(np.sum(squares))
    return math.sqrt(math.fsum(squares))


def all_finite(grads):
    return all(bool(np.isfinite(_f64(g)).all()) for g in grads)


def clip_coef(norm, max_norm):
    """clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)); NaN for a NaN norm."""
    return min(1.0, max_norm / (norm + CLIP_EPS)) if not math.isnan(norm) else math.nan


class Scaler:
    """torch.amp.GradScaler's scale update (``_amp_update_scale_``)."""

    def __init__(self, init_scale=2.0**16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000):
        self.scale = float(init_scale)
        self.growth_factor, self.backoff_factor = growth_factor, backoff_factor
        self.growth_interval = growth_interval
        self.growth_tracker = 0

    def update(self, found_inf):
        if found_inf:
            self.scale *= self.backoff_factor
            self.growth_tracker = 0
            return
        self.growth_tracker += 1
        if self.growth_tracker == self.growth_interval:
            grown = self.scale * self.growth_factor
            if math.isfinite(grown):
                self.scale = grown
            self.growth_tracker = 0


class Optimizer:
    """A whole training step: guard, scaler and update rule over a list of float64 arrays.

    Parameters
    ----------
    kind : "SGD", "Adam", "AdamW", "RMSprop" or "Adagrad"
    params : list of arrays (copied to float64; read the trajectory from ``self.params``)
    lr : float or callable ``step -> lr`` (``step`` = applied steps before this one)
    guard : dict with ``clip_norm``, ``clip_value``, ``skip_nonfinite``, optional
        None: an unguarded optimizer (NaN/Inf goes straight into the update, as in PyTorch).
    scaler : Scaler, optional
    **hyper : the update rule's keyword arguments (PyTorch's names, ``betas`` as a pair)

    ``bound`` holds, per element, ``|p_0|`` plus the sum over applied steps of
    ``|p_t| + |p_t - p_{t-1}|``: the first-order scale of the rounding error a dtype adds along
    the trajectory (each step rounds the new parameter and a handful of operations on the
    update, and the rules do not amplify earlier errors). ``state_bound`` is the same sum for
    every state buffer.
    """

    def __init__(self, kind, params, lr, guard=None, scaler=None, **hyper):
        self.kind, self.rule, self.hyper = kind, RULES[kind], hyper
        self.params = [_f64(p) for p in params]
        self.lr, self.guard, self.scaler = lr, guard, scaler
        init = hyper.get("initial_accumulator_value", 0.0)
        self.state = [{name: np.full(p.shape, init if name == "sum" else 0.0)
                       for name in state_names(kind, hyper)} for p in self.params]
        self.t = 0
        self.skipped_total = 0
        self.consecutive_skips = 0
        self.bound = [np.abs(p) for p in self.params]
        self.state_bound = [{name: np.abs(a) for name, a in s.items()} for s in self.state]

    def step(self, grads):
        """One step; returns a dict with StepInfo's fields."""
        gs = [_f64(g) for g in grads]
        finite = all_finite(gs)
        scale = self.scaler.scale if self.scaler is not None else 1.0
        guard = self.guard or {}
        with np.errstate(invalid="ignore", over="ignore"):
            gs = [g * (1.0 / scale) for g in gs]
            if guard.get("clip_value") is not None:
                v = guard["clip_value"]
                gs = [np.clip(g, -v, v) for g in gs]  # NaN stays NaN
            norm = global_norm(gs) if self.guard is not None else None
            coef = 1.0
            if guard.get("clip_norm") is not None:
                coef = clip_coef(norm, guard["clip_norm"])
                gs = [g * coef for g in gs]
        if self.scaler is not None:
            self.scaler.update(found_inf=not finite)
        info = {"grad_norm": norm, "clip_coef": coef, "scale": scale}
        if not finite and self.guard is not None and guard.get("skip_nonfinite", True):
            self.skipped_total += 1
            self.consecutive_skips += 1
            return dict(info, applied=False, lr=None, step=self.t,
                        skipped_total=self.skipped_total,
                        consecutive_skips=self.consecutive_skips)
        lr = float(self.lr(self.t)) if callable(self.lr) else self.lr
        self.t += 1
        self.consecutive_skips = 0
        with np.errstate(invalid="ignore", over="ignore"):
            for p, g, s, b, sb in zip(self.params, gs, self.state, self.bound,
                                      self.state_bound, strict=True):
                before, s_before = p.copy(), dict(s)
                self.rule(p, g, s, self.t, lr, **self.hyper)
                b += np.abs(p) + np.abs(p - before)
                for name, a in s.items():
                    sb[name] = sb[name] + np.abs(a) + np.abs(a - s_before[name])
        return dict(info, applied=True, lr=lr, step=self.t, skipped_total=self.skipped_total,
                    consecutive_skips=0)


# Learning-rate schedules, closed forms (step = applied steps before this one) ----------------

def step_decay(lr, step_size, gamma, step):
    """StepLR: lr gamma^floor(step / step_size)."""
    return lr * gamma ** (step // step_size)


def exponential(lr, gamma, step):
    """ExponentialLR: lr gamma^step."""
    return lr * gamma**step


def cosine(lr, total_steps, min_lr, step):
    """CosineAnnealingLR's closed form for step <= T_max, then min_lr (fastml stops there)."""
    t = min(step, total_steps)
    return min_lr + (lr - min_lr) * (1.0 + math.cos(math.pi * t / total_steps)) / 2.0


def warmup_cosine(lr, warmup_steps, total_steps, min_lr, step):
    """LinearLR(start_factor=1/W, total_iters=W-1) for W steps, then the cosine over the rest."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    return cosine(lr, total_steps - warmup_steps, min_lr, step - warmup_steps)
