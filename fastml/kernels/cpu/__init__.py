"""CPU kernels: ``@njit(nogil=True, cache=True)`` functions, callable from user ``@njit`` code."""

from ._math import exp32, fast_exp
from .adagrad import adagrad_step, adagrad_step_tensors
from .adam import adam_step, adam_step_tensors
from .bce_with_logits import bce_with_logits_fwd_bwd
from .confusion import confusion_counts, confusion_counts_argmax, confusion_counts_thresholded
from .cross_entropy import MEAN, NONE, SUM, cross_entropy_fwd_bwd
from .grad_stats import grad_stats, grad_stats_tensors, scale_inplace, scale_inplace_tensors
from .labels import check_labels, first_bad_label
from .regression import huber_fwd_bwd, l1_fwd_bwd, mse_fwd_bwd
from .rmsprop import rmsprop_step, rmsprop_step_tensors
from .sgd import sgd_step, sgd_step_tensors
from .step_plan import plan_step, schedule_lr
from .top_k import top_k_hits

__all__ = [
    "MEAN", "NONE", "SUM",
    "adagrad_step", "adagrad_step_tensors", "adam_step", "adam_step_tensors",
    "bce_with_logits_fwd_bwd", "check_labels", "confusion_counts", "confusion_counts_argmax",
    "confusion_counts_thresholded", "cross_entropy_fwd_bwd", "exp32", "fast_exp",
    "first_bad_label", "grad_stats", "grad_stats_tensors", "huber_fwd_bwd", "l1_fwd_bwd",
    "mse_fwd_bwd", "plan_step", "rmsprop_step", "rmsprop_step_tensors", "scale_inplace",
    "scale_inplace_tensors", "schedule_lr", "sgd_step", "sgd_step_tensors", "top_k_hits",
]
