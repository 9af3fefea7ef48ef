"""Adagrad (lr decay, initial accumulator): one pass over p, g and the sum of squares.

PyTorch's rule (``torch.optim.Adagrad``), with g the effective gradient and t the step:

    g   <- g + wd p
    sum <- sum + g^2
    p   <- p - clr g / (sqrt(sum) + eps),   clr = lr / (1 + (t - 1) lr_decay)   (from the plan)
"""

import numpy as np
from numba import prange

from ..step_plan import APPLIED, C0
from ._grad import effective_grad, grad_coefs
from ._jit import parallel


@parallel
def adagrad_step(p, g, state_sum, ctl, eps, weight_decay, maximize, clip_value):
    """One Adagrad step, in place, unless ``ctl[APPLIED] == 0``.

    Parameters
    ----------
    p : (n,) float32 or float64, updated in place
    g : (n,) same dtype, read
    state_sum : (n,) same dtype, updated in place
    ctl : (16,) float64, read: ``APPLIED``, ``UNSCALE``, ``CLIP_COEF``, ``C0`` (clr)
    eps, weight_decay : float
    maximize : bool
    clip_value : float (inf: none)
    """
    if ctl[APPLIED] == 0.0:
        return
    dt = p.dtype.type
    unscale, lo, hi, coef = grad_coefs(p, ctl, maximize, clip_value)
    clr = dt(ctl[C0])
    eps_ = dt(eps)
    wd = dt(weight_decay)
    use_wd = weight_decay != 0.0
    for i in prange(p.shape[0]):
        gi = effective_grad(g[i], unscale, lo, hi, coef)
        pi = p[i]
        if use_wd:
            gi = gi + wd * pi
        s = state_sum[i] + gi * gi
        state_sum[i] = s
        p[i] = pi - clr * (gi / (np.sqrt(s) + eps_))
