"""CPU kernels: ``@njit(nogil=True, cache=True)`` functions, callable from user ``@njit`` code."""

from ._math import exp32, fast_exp
from .bce_with_logits import bce_with_logits_fwd_bwd
from .cross_entropy import MEAN, NONE, SUM, cross_entropy_fwd_bwd
from .labels import first_bad_label
from .regression import huber_fwd_bwd, l1_fwd_bwd, mse_fwd_bwd

__all__ = [
    "MEAN", "NONE", "SUM",
    "bce_with_logits_fwd_bwd", "cross_entropy_fwd_bwd", "exp32", "fast_exp", "first_bad_label",
    "huber_fwd_bwd", "l1_fwd_bwd", "mse_fwd_bwd",
]
