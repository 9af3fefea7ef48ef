"""fastml: compiled fused kernels for training loops (CPU via Numba, GPU via numba-cuda)."""

from . import errors
from .errors import DeviceError, DTypeError, NonFiniteError, ShapeError
from .losses import LossGrad, LossGradPred, bce_with_logits, cross_entropy, huber, l1, mse

__version__ = "0.1.0"

__all__ = [
    "DTypeError", "DeviceError", "LossGrad", "LossGradPred", "NonFiniteError", "ShapeError",
    "bce_with_logits", "cross_entropy", "errors", "huber", "l1", "mse",
]
