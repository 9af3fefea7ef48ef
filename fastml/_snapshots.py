"""Device-side snapshots of an optimizer's control state, so that ``step()`` on the GPU returns
without waiting for the device.

Each GPU step copies ``ctl`` into the next row of a small ring on the device, in the same
one-thread launch as the step plan. The step's ``StepInfo`` keeps its row and reads it on first
access (one copy to the host, which waits for that step's kernels). Rows are reused after
``SLOTS`` steps; a ``StepInfo`` first read after its row was reused raises instead of returning
another step's values. Everything here runs on the host and costs no synchronization.
"""

import numpy as np

from . import _streams
from .kernels import step_plan as P

#: Rows in each optimizer's ring: how many steps later a GPU StepInfo can still be read first.
SLOTS = 64


class CtlSnapshots:
    """A ring of ``(SLOTS, CTL_SIZE)`` float64 on the device and the count of rows handed out."""

    def __init__(self, slots=None):
        from numba import cuda

        self.slots = SLOTS if slots is None else int(slots)
        self.ring = cuda.device_array((self.slots, P.CTL_SIZE), dtype=np.float64)
        self._taken = 0

    def take(self, stream=0):
        """The snapshot of the step being launched on ``stream``: its row is ``.row``,
        ``.read()`` reads it."""
        snap = _Snapshot(self, self._taken, stream)
        self._taken += 1
        return snap


class _Snapshot:
    __slots__ = ("_owner", "_seq", "_stream")

    def __init__(self, owner, seq, stream):
        self._owner, self._seq, self._stream = owner, seq, stream

    @property
    def row(self):
        return self._seq % self._owner.slots

    def read(self):
        """A host copy of the snapshot (waits for the step that wrote it)."""
        owner = self._owner
        later = owner._taken - 1 - self._seq  # steps launched since this one
        if later >= owner.slots:
            raise RuntimeError(
                f"a GPU StepInfo must be read within {owner.slots} steps of the optimizer's; got "
                f"a first read {later} steps later, after its device snapshot was reused (read "
                "the fields you need before that, e.g. info.applied right after step(); "
                "fastml._snapshots.SLOTS sets the ring size)")
        return _streams.to_host(owner.ring[self.row], self._stream)
