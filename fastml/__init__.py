"""fastml: compiled fused kernels for training loops (CPU via Numba, GPU via numba-cuda)."""

from . import errors, metrics, schedules
from ._device_errors import check_device_errors
from ._streams import cuda_stream
from .checkpoint import load, save
from .errors import CheckpointError, DeviceError, DTypeError, NonFiniteError, ShapeError
from .guards import Guard, LossScaler, StepInfo, all_finite, clip_grad_norm, global_norm
from .losses import LossGrad, LossGradPred, bce_with_logits, cross_entropy, huber, l1, mse
from .optim import SGD, Adagrad, Adam, AdamW, Optimizer, RMSprop
from .params import FlatParams

__version__ = "0.1.0"

__all__ = [
    "SGD", "Adagrad", "Adam", "AdamW", "CheckpointError", "DTypeError", "DeviceError",
    "FlatParams", "Guard",
    "LossGrad", "LossGradPred", "LossScaler", "NonFiniteError", "Optimizer", "RMSprop",
    "ShapeError", "StepInfo", "all_finite", "bce_with_logits", "check_device_errors",
    "clip_grad_norm",
    "cross_entropy", "cuda_stream", "errors", "global_norm", "huber", "l1", "load", "metrics",
    "mse", "save", "schedules",
]
