"""The per-step scalar plan (``fastml.kernels.step_plan``) compiled for the CPU."""

from .. import step_plan as _shared
from ._jit import serial

_plan_step = serial(_shared.plan_step)
schedule_lr = serial(_shared.schedule_lr)


@serial
def plan_step(ctl, red, cfg, scaler):
    """Decide this step and write its scalars into ``ctl`` (``fastml.kernels.step_plan``).

    Parameters
    ----------
    ctl : (16,) float64, updated in place
    red : (2,) float64, read, then zeroed for the next step's guard pass
    cfg : (16,) float64, read
    scaler : (2,) float64, the loss scale and its growth count, updated in place (``ctl[1:3]``
        without a loss scaler)
    """
    if (ctl.shape[0] < _shared.CTL_SIZE or red.shape[0] < _shared.RED_SIZE
            or cfg.shape[0] < _shared.CFG_SIZE or scaler.shape[0] < 2):
        raise ValueError("ctl, red, cfg and scaler must hold at least CTL_SIZE, RED_SIZE, "
                         "CFG_SIZE and 2 elements")
    _plan_step(ctl, red, cfg, scaler)
