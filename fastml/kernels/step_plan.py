"""The scalar part of an optimizer step, written once and compiled for both devices.

A guarded step is three pieces: a reduction over the gradients (sum of squares and a non-finite
count, into ``red``), this plan, and the update pass. The plan is scalar work (skip or apply,
clip coefficient, loss-scale growth and backoff, the step counter, the learning rate of a
built-in schedule, bias corrections) done once per step, not once per element. It is plain
Python over float64 arrays so that ``kernels.cpu`` compiles it with ``@njit`` and
``kernels.cuda`` with ``@cuda.jit(device=True)`` inside a one-thread kernel: on the GPU the skip
decision and the step counter never leave the device, and no host synchronization is needed.

Arrays (float64):
  ``ctl``  persistent control state of one optimizer (indices below); also what ``StepInfo`` reads.
  ``red``  per-step gradient statistics: ``red[SUMSQ]``, ``red[NONFINITE]``.
  ``cfg``  hyper-parameters fixed between steps (indices below).
  ``scaler`` the live loss scale and its growth count, ``(2,)``: ``scaler[0]`` the scale,
         ``scaler[1]`` finite steps since it last changed. A ``LossScaler`` owns one such array
         and every optimizer that uses it passes the same one, so a backoff or growth decided
         in one optimizer's step is the scale of the next step of any of them. An optimizer
         without a scaler passes ``ctl[SCALE:GROWTH + 1]``, its own.
"""

import math

from numba.extending import register_jitable

# ctl: persistent state -------------------------------------------------------------------------
STEP = 0  # applied steps so far
SCALE = 1  # loss scale after the latest step (1 without a scaler; a copy of scaler[0])
GROWTH = 2  # finite steps since the last scale change (a copy of scaler[1])
SKIPPED = 3  # skipped steps in total
CONSEC = 4  # skipped steps in a row
APPLIED = 5  # 1.0 if the latest step was applied, 0.0 if skipped
NORM = 6  # global L2 norm of the unscaled (value-clipped) gradients; NaN when not computed
CLIP_COEF = 7  # factor the norm clip applied (1.0 when not clipping)
SCALE_USED = 8  # loss scale the latest step's gradients were divided by
UNSCALE = 9  # 1 / SCALE_USED: every kernel multiplies raw gradients by this
LR = 10  # learning rate of the latest step
C0 = 11  # rule constants: Adam step size lr / (1 - beta1^t); Adagrad lr / (1 + (t-1) lr_decay);
C1 = 12  #   Adam sqrt(1 - beta2^t); SGD 1.0 on the first step (the momentum buffer starts as g)
CTL_SIZE = 16

# red: gradient statistics of one step ----------------------------------------------------------
SUMSQ = 0
NONFINITE = 1
RED_SIZE = 2

# cfg: configuration ----------------------------------------------------------------------------
RULE = 0  # SGD, ADAM, RMSPROP or ADAGRAD
CLIP_NORM = 1  # inf: no norm clipping
CHECK_FINITE = 2  # 1.0: skip a step whose gradients hold NaN/Inf
USE_SCALER = 3
GROWTH_FACTOR = 4
BACKOFF_FACTOR = 5
GROWTH_INTERVAL = 6
LR_KIND = 7  # schedule kind (CONSTANT ... WARMUP_COSINE); HOST: cfg[LR_BASE] is set per step
LR_BASE = 8
LR_P0 = 9
LR_P1 = 10
LR_P2 = 11
BETA1 = 12
BETA2 = 13
LR_DECAY = 14
STATS = 15  # 1.0: a guard pass filled red this step
CFG_SIZE = 16

SGD, ADAM, RMSPROP, ADAGRAD = 0.0, 1.0, 2.0, 3.0
CONSTANT, STEP_DECAY, EXPONENTIAL, COSINE, WARMUP_COSINE = 0.0, 1.0, 2.0, 3.0, 4.0

CLIP_EPS = 1e-6  # PyTorch's clip_grad_norm_: coef = max_norm / (norm + 1e-6)


@register_jitable  # plain Python when called from Python; compiled inline by both targets
def schedule_lr(kind, base, p0, p1, p2, step):
    """Learning rate of a built-in schedule at ``step`` (applied steps before this one).

    CONSTANT: base. STEP_DECAY: base * p1^(step // p0). EXPONENTIAL: base * p0^step.
    COSINE: p1 + (base - p1)(1 + cos(pi min(step, p0) / p0)) / 2 over p0 steps, then p1.
    WARMUP_COSINE: base (step + 1) / p0 for the first p0 steps, then a cosine from base to p2
    over the remaining p1 - p0 steps, then p2.
    """
    if kind == STEP_DECAY:
        return base * p1 ** math.floor(step / p0)
    if kind == EXPONENTIAL:
        return base * p0**step
    if kind == COSINE:
        t = min(step, p0)
        return p1 + (base - p1) * (1.0 + math.cos(math.pi * t / p0)) * 0.5
    if kind == WARMUP_COSINE:
        if step < p0:
            return base * (step + 1.0) / p0
        span = max(p1 - p0, 1.0)
        t = min(step - p0, span)
        return p2 + (base - p2) * (1.0 + math.cos(math.pi * t / span)) * 0.5
    return base


def plan_step(ctl, red, cfg, scaler):
    """Decide this step and write its scalars into ``ctl``; update the loss scale in ``scaler``
    (see the module docstring)."""
    finite = red[NONFINITE] == 0.0
    apply = finite or cfg[CHECK_FINITE] == 0.0
    norm = math.sqrt(red[SUMSQ]) if cfg[STATS] != 0.0 else math.nan
    red[SUMSQ] = 0.0  # ready for the next step's guard pass, which adds to it
    red[NONFINITE] = 0.0
    ctl[NORM] = norm
    ctl[SCALE_USED] = scaler[0]
    ctl[UNSCALE] = 1.0 / scaler[0]
    coef = 1.0
    if cfg[CLIP_NORM] < math.inf:
        # PyTorch's clamp(max=1) keeps a NaN coefficient (NaN norm) and gives 0 for an Inf
        # norm; it only matters when a non-finite step is applied (skip_nonfinite=False).
        # Written as a comparison: CUDA's fmin would drop the NaN.
        coef = cfg[CLIP_NORM] / (norm + CLIP_EPS)
        coef = 1.0 if coef > 1.0 else coef
    ctl[CLIP_COEF] = coef
    if cfg[USE_SCALER] != 0.0:
        # torch.amp.GradScaler.update: back off on overflow, grow after growth_interval clean steps.
        if finite:
            scaler[1] += 1.0
            if scaler[1] >= cfg[GROWTH_INTERVAL]:
                grown = scaler[0] * cfg[GROWTH_FACTOR]
                if grown < math.inf:  # GradScaler keeps the old scale rather than overflow
                    scaler[0] = grown
                scaler[1] = 0.0
        else:
            scaler[0] = scaler[0] * cfg[BACKOFF_FACTOR]
            scaler[1] = 0.0
    ctl[SCALE] = scaler[0]
    ctl[GROWTH] = scaler[1]
    if not apply:
        ctl[APPLIED] = 0.0
        ctl[SKIPPED] += 1.0
        ctl[CONSEC] += 1.0
        return
    ctl[APPLIED] = 1.0
    ctl[CONSEC] = 0.0
    lr = schedule_lr(cfg[LR_KIND], cfg[LR_BASE], cfg[LR_P0], cfg[LR_P1], cfg[LR_P2], ctl[STEP])
    t = ctl[STEP] + 1.0
    ctl[STEP] = t
    ctl[LR] = lr
    rule = cfg[RULE]
    if rule == ADAM:
        # PyTorch's scalars, in float64 on the host there: step_size and sqrt(bias_correction2).
        ctl[C0] = lr / (1.0 - cfg[BETA1] ** t)
        ctl[C1] = math.sqrt(1.0 - cfg[BETA2] ** t)
    elif rule == ADAGRAD:
        ctl[C0] = lr / (1.0 + (t - 1.0) * cfg[LR_DECAY])
    elif rule == SGD:
        ctl[C0] = 1.0 if t == 1.0 else 0.0
