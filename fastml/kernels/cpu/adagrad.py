"""Adagrad (lr decay, initial accumulator): one pass over p, g and the sum of squares.

PyTorch's rule (``torch.optim.Adagrad``), with g the effective gradient and t the step:

    g   <- g + wd p
    sum <- sum + g^2
    p   <- p - clr g / (sqrt(sum) + eps),   clr = lr / (1 + (t - 1) lr_decay)   (from the plan)

``adagrad_step`` updates one array; ``adagrad_step_tensors`` many, in one call (``_tensors``).
Both run ``_adagrad_chunk`` on chunks of ``CHUNK`` elements.
"""

import numpy as np
from numba import prange

from .. import sizes
from ..step_plan import APPLIED, C0, CTL_SIZE
from ._grad import effective_grad, grad_coefs
from ._jit import parallel, serial
from ._tensors import chunk_count, chunk_row, chunk_span, state_extent, view


@serial
def _adagrad_chunk(p, g, state_sum, ctl, eps, weight_decay, maximize, clip_value):
    """The update of one chunk: arguments as in :func:`adagrad_step`, all arrays of one length."""
    dt = p.dtype.type
    unscale, lo, hi, coef = grad_coefs(p, ctl, maximize, clip_value)
    clr = dt(ctl[C0])
    eps_ = dt(eps)
    wd = dt(weight_decay)
    use_wd = weight_decay != 0.0
    for i in range(p.shape[0]):
        gi = effective_grad(g[i], unscale, lo, hi, coef)
        pi = p[i]
        if use_wd:
            gi = gi + wd * pi
        s = state_sum[i] + gi * gi
        state_sum[i] = s
        p[i] = pi - clr * (gi / (np.sqrt(s) + eps_))


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

    Raises ``ValueError``, before touching memory, if ``g`` or ``state_sum`` is not as long
    as ``p``, or ``ctl`` holds fewer than ``CTL_SIZE``.
    """
    n = p.shape[0]
    sizes.adagrad(p, g, state_sum, ctl)
    if ctl[APPLIED] == 0.0:
        return
    for c in prange(chunk_count(n)):
        a, b = chunk_span(c, n)
        _adagrad_chunk(p[a:b], g[a:b], state_sum[a:b], ctl, eps, weight_decay, maximize,
                       clip_value)


@parallel
def adagrad_step_tensors(chunks, p_addr, g_addr, state_sum, ctl, eps, weight_decay, maximize,
                         clip_value):
    """:func:`adagrad_step` over many arrays at once (``_tensors``).

    Parameters
    ----------
    chunks : (n_chunks, 4) int64 chunk table (``_tensors.chunk_table``)
    p_addr, g_addr : int64 addresses of each parameter and its gradient (``_tensors.addresses``)
    state_sum : the flat sum of squares, tensor after tensor; its dtype is the parameters'
    The other arguments as in :func:`adagrad_step`.

    The addresses are trusted (``_tensors``); the table, ``state_sum`` and ``ctl`` are checked
    as there, with ``ValueError`` before any memory is touched.
    """
    if state_sum.shape[0] < state_extent(chunks, min(p_addr.shape[0], g_addr.shape[0])):
        raise ValueError("state_sum must cover every chunk's state span")
    if ctl.shape[0] < CTL_SIZE:
        raise ValueError("ctl must hold at least CTL_SIZE elements")
    if ctl[APPLIED] == 0.0:
        return
    for c in prange(chunks.shape[0]):
        t, a, b, s = chunk_row(chunks, c)
        _adagrad_chunk(view(p_addr[t], a, b, state_sum), view(g_addr[t], a, b, state_sum),
                       state_sum[s:s + b - a], ctl, eps, weight_decay, maximize, clip_value)
