"""Errors the GPU finds in a call's input, reported without making the host wait.

A GPU call cannot both reject bad input before touching anything and return before the device
has looked at its input. For the one check that needs the data, labels out of range in
``cross_entropy``, fastml does the check on the device, in front of the kernel, and reports it
later:

- the kernel then writes NaN into the loss and the whole gradient (and -1 into ``pred``), so
  nothing downstream takes them for numbers: a guarded optimizer skips the step;
- the check writes its finding into a slot of host memory the device writes directly (mapped,
  pinned); the host reads the slots of the calls still unread, a memory read and no CUDA call,
  right after each checked launch and at the start of every GPU call, and raises the error of
  the earliest finished bad call there. In the simulator, and whenever the device is already
  done, that is the call itself;
- ``fastml.check_device_errors()`` waits for the device first, for code that must know now.

This is the one exception to "a rejected call changes nothing": on the GPU, where the check
cannot finish before the call returns, the call's outputs are poisoned instead.
"""

import threading

import numpy as np

from .errors import ShapeError

#: Slots in the log: how many checked GPU calls may be in flight before a new one waits.
SLOTS = 256
PENDING = -2  # record[0] until the device has written it; then -1 (fine) or the bad index


class _Log:
    def __init__(self):
        from numba import config, cuda

        self.records = cuda.mapped_array((SLOTS, 2), dtype=np.int64, portable=True)
        self.records[:, 0] = -1
        # The slots the kernels get: rows of a device view of the mapped memory. A NumPy row of
        # numba's MappedNDArray has no device pointer (a launch on a GPU refuses it as None);
        # the simulator has no such view and needs none.
        self.slots = self.records if config.ENABLE_CUDASIM else cuda.as_cuda_array(self.records)
        self.waiting = {}  # slot -> (sequence number, message prefix), in launch order
        self.count = 0
        self.lock = threading.Lock()

    def open(self, what, error=ShapeError):
        """A slot for the next checked launch; ``what(index, value, seq)`` words its error,
        raised as ``error``."""
        with self.lock:
            slot = self.count % SLOTS
            if slot in self.waiting:
                # SLOTS checked calls still unread: wait for the device rather than reuse one.
                from numba import cuda

                cuda.synchronize()
                self._raise_finished()
            self.count += 1
            self.records[slot, 1] = 0
            self.records[slot, 0] = PENDING
            self.waiting[slot] = (self.count, what, error)
            return self.slots[slot]

    def _raise_finished(self):
        """Forget the finished slots up to the first bad one, and raise its error."""
        for slot, (seq, what, error) in list(self.waiting.items()):
            index = int(self.records[slot, 0])
            if index == PENDING:
                continue
            del self.waiting[slot]
            if index >= 0:
                raise error(what(index, int(self.records[slot, 1]), seq))

    def raise_finished(self):
        if self.waiting:
            with self.lock:
                self._raise_finished()


_LOG = None


def log():
    """The process's log (created, with its pinned memory, on first use)."""
    global _LOG
    if _LOG is None:
        _LOG = _Log()
    return _LOG


def raise_finished():
    """Raise the error of the earliest checked GPU call that the device has finished and found
    bad, if any. Costs a few host memory reads; never waits for the device."""
    if _LOG is not None:
        _LOG.raise_finished()


def check_device_errors(wait=True):
    """Raise the error the GPU found in an earlier fastml call (a label out of range in
    ``cross_entropy``), if any has not been raised yet.

    GPU calls check such input on the device and report it at a later fastml call, so that the
    host never waits for the device (see ``fastml._device_errors``). With ``wait=True`` this
    first waits for all work queued on the device, so every call made so far is accounted for.
    """
    if _LOG is None:
        return
    if wait:
        from numba import cuda

        cuda.synchronize()
    _LOG.raise_finished()
