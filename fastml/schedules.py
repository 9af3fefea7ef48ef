"""Learning-rate schedules: callables ``step -> lr``, where ``step`` counts the applied steps
before the current one (0 on the first step), as PyTorch's schedulers count ``scheduler.step()``.

The built-in schedules are evaluated by the optimizer's step plan itself, so on the GPU the
learning rate follows the device-side step counter without a host synchronization. Any other
callable works too; on the GPU it costs one read of the step counter per step.
"""

import math

from .kernels import step_plan as P


class Schedule:
    """A built-in schedule: ``kind`` and up to three parameters read by the step plan."""

    def __init__(self, kind, base, p0=0.0, p1=0.0, p2=0.0, text=""):
        self.kind, self.base, self.params = kind, float(base), (float(p0), float(p1), float(p2))
        self._text = text

    def __call__(self, step):
        return P.schedule_lr(self.kind, self.base, *self.params, float(step))

    def __repr__(self):
        return f"fastml.schedules.{self._text}"


def _positive(value, name):
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive number; got {value!r}")
    return value


def _lr(value):
    if not value >= 0 or not math.isfinite(value):
        raise ValueError(f"lr must be a non-negative number; got {value!r}")
    return value


def constant(lr):
    """``lr`` at every step."""
    return Schedule(P.CONSTANT, _lr(lr), text=f"constant({lr!r})")


def step_decay(lr, step_size, gamma=0.1):
    """``lr * gamma ** (step // step_size)`` (PyTorch's ``StepLR``)."""
    _positive(step_size, "step_size")
    # A negative gamma would give a negative lr at every other decay, which the plan applies.
    if not gamma >= 0 or not math.isfinite(gamma):
        raise ValueError(f"gamma must be a non-negative number; got {gamma!r}")
    return Schedule(P.STEP_DECAY, _lr(lr), step_size, gamma,
                    text=f"step_decay({lr!r}, {step_size!r}, gamma={gamma!r})")


def exponential(lr, gamma):
    """``lr * gamma ** step`` (PyTorch's ``ExponentialLR``)."""
    return Schedule(P.EXPONENTIAL, _lr(lr), _positive(gamma, "gamma"),
                    text=f"exponential({lr!r}, {gamma!r})")


def cosine(lr, total_steps, min_lr=0.0):
    """Half a cosine from ``lr`` to ``min_lr`` over ``total_steps``, then ``min_lr``
    (PyTorch's ``CosineAnnealingLR`` closed form with ``T_max=total_steps``)."""
    _positive(total_steps, "total_steps")
    return Schedule(P.COSINE, _lr(lr), total_steps, _lr(min_lr),
                    text=f"cosine({lr!r}, {total_steps!r}, min_lr={min_lr!r})")


def warmup_cosine(lr, warmup_steps, total_steps, min_lr=0.0):
    """Linear warm-up ``lr * (step + 1) / warmup_steps`` for ``warmup_steps`` steps, then half a
    cosine to ``min_lr`` at ``total_steps``, then ``min_lr``."""
    _positive(warmup_steps, "warmup_steps")
    if not total_steps > warmup_steps:
        raise ValueError(
            f"total_steps must be greater than warmup_steps ({warmup_steps}); got {total_steps!r}")
    return Schedule(P.WARMUP_COSINE, _lr(lr), warmup_steps, total_steps, _lr(min_lr),
                    text=f"warmup_cosine({lr!r}, {warmup_steps!r}, {total_steps!r}, "
                         f"min_lr={min_lr!r})")
