"""The per-step scalar plan (``fastml.kernels.step_plan``) compiled for the CPU."""

from .. import step_plan as _shared
from ._jit import serial

plan_step = serial(_shared.plan_step)
schedule_lr = serial(_shared.schedule_lr)
