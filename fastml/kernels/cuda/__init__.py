"""CUDA kernels: ``@cuda.jit`` kernels behind launchers with the CPU kernels' names and argument
order, plus an optional trailing ``stream`` (default 0).

Arrays are numba device arrays or anything with ``__cuda_array_interface__`` (viewed zero-copy).
Launchers compute the grid and return without synchronizing with the host; a reduced loss is
written to ``loss[0]`` on the device.
"""

from .adagrad import adagrad_step
from .adam import adam_step
from .bce_with_logits import bce_with_logits_fwd_bwd
from .confusion import confusion_counts, confusion_counts_argmax, confusion_counts_thresholded
from .cross_entropy import MEAN, NONE, SUM, cross_entropy_fwd_bwd
from .grad_stats import grad_stats, scale_inplace
from .labels import check_labels
from .regression import huber_fwd_bwd, l1_fwd_bwd, mse_fwd_bwd
from .rmsprop import rmsprop_step
from .sgd import sgd_step
from .step_plan import plan_step, plan_step_snapshot
from .top_k import top_k_hits

__all__ = [
    "MEAN", "NONE", "SUM",
    "bce_with_logits_fwd_bwd", "check_labels", "cross_entropy_fwd_bwd",
    "huber_fwd_bwd", "l1_fwd_bwd", "mse_fwd_bwd",
    "adagrad_step", "adam_step", "grad_stats", "plan_step", "plan_step_snapshot",
    "rmsprop_step", "scale_inplace", "sgd_step",
    "confusion_counts", "confusion_counts_argmax", "confusion_counts_thresholded", "top_k_hits",
]
