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
def _plan_step_kernel(ctl, red, cfg):
    _plan_step(ctl, red, cfg)


@cuda.jit
def _plan_step_snapshot_kernel(ctl, red, cfg, ring, row):
    _plan_step(ctl, red, cfg)
    for k in range(ctl.shape[0]):
        ring[row, k] = ctl[k]


def plan_step(ctl, red, cfg, stream=0):
    """Decide this step on the device and write its scalars into ``ctl``.

    Parameters
    ----------
    ctl : (16,) float64 device array, updated in place (see ``fastml.kernels.step_plan``)
    red : (2,) float64 device array, read, then zeroed for the next step's guard pass
    cfg : (16,) float64 device array, read
    stream : numba stream or 0
    """
    _plan_step_kernel[1, 1, stream](ctl, red, cfg)


def plan_step_snapshot(ctl, red, cfg, ring, row, stream=0):
    """``plan_step``, then ``ring[row, :] = ctl`` in the same one-thread launch.

    Parameters
    ----------
    ctl, red, cfg : as in ``plan_step``
    ring : (slots, 16) float64 device array, row ``row`` written
    row : int
    stream : numba stream or 0
    """
    _plan_step_snapshot_kernel[1, 1, stream](ctl, red, cfg, ring, row)
