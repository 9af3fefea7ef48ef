"""The per-step scalar plan (``fastml.kernels.step_plan``) compiled for the GPU.

One thread runs the plan, so the skip decision, the loss scale, the step counter and the learning
rate of a built-in schedule never leave the device: a step does not wait for the host, and the
host never waits for it. ``plan_step_snapshot`` also copies the new control state into one row of
a ring of snapshots in the same launch, which is what a GPU ``StepInfo`` reads, later and lazily.
"""

from numba import cuda

from .. import step_plan as _shared

_plan_step = cuda.jit(device=True)(_shared.plan_step)


@cuda.jit
def _plan_step_kernel(ctl, red, cfg, scaler):
    _plan_step(ctl, red, cfg, scaler)


@cuda.jit
def _plan_step_snapshot_kernel(ctl, red, cfg, scaler, ring, row):
    _plan_step(ctl, red, cfg, scaler)
    for k in range(ctl.shape[0]):
        ring[row, k] = ctl[k]


def plan_step(ctl, red, cfg, scaler, stream=0):
    """Decide this step on the device and write its scalars into ``ctl``.

    Parameters
    ----------
    ctl : (16,) float64 device array, updated in place (see ``fastml.kernels.step_plan``)
    red : (2,) float64 device array, read, then zeroed for the next step's guard pass
    cfg : (16,) float64 device array, read
    scaler : (2,) float64 device array, the loss scale and its growth count, updated in place
        (``ctl[1:3]`` without a loss scaler)
    stream : numba stream or 0
    """
    _check_plan_arrays(ctl, red, cfg, scaler)
    _plan_step_kernel[1, 1, stream](ctl, red, cfg, scaler)


def plan_step_snapshot(ctl, red, cfg, scaler, ring, row, stream=0):
    """``plan_step``, then ``ring[row, :] = ctl`` in the same one-thread launch.

    Parameters
    ----------
    ctl, red, cfg, scaler : as in ``plan_step``
    ring : (slots, 16) float64 device array, row ``row`` written
    row : int
    stream : numba stream or 0
    """
    _check_plan_arrays(ctl, red, cfg, scaler)
    if ring.ndim != 2 or ring.shape[1] < ctl.shape[0] or not 0 <= row < ring.shape[0]:
        raise ValueError("ring must be (slots, len(ctl)) and row one of its rows")
    _plan_step_snapshot_kernel[1, 1, stream](ctl, red, cfg, scaler, ring, row)


def _check_plan_arrays(ctl, red, cfg, scaler):
    if (ctl.shape[0] < _shared.CTL_SIZE or red.shape[0] < _shared.RED_SIZE
            or cfg.shape[0] < _shared.CFG_SIZE or scaler.shape[0] < 2):
        raise ValueError("ctl, red, cfg and scaler must hold at least CTL_SIZE, RED_SIZE, "
                         "CFG_SIZE and 2 elements")
