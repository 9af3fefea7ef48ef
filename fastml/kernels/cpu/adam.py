"""Adam / AdamW (and AMSGrad): one pass that reads p, g, m, v and writes p, m, v (28 B/param fp32).

PyTorch's rule (``torch.optim.Adam``, single-tensor path), with g the effective gradient:

    g  <- g + wd p                       (L2 weight decay)        | p <- p (1 - lr wd)  (decoupled)
    m  <- lerp(m, g, 1 - beta1)
    v  <- beta2 v + (1 - beta2) g^2
    vmax <- max(vmax, v)                  (AMSGrad; v below means vmax)
    p  <- p - step_size m / (sqrt(v) / sqrt(bc2) + eps)

step_size = lr / (1 - beta1^t) and sqrt(bc2) = sqrt(1 - beta2^t) come from the step plan (once
per step, in float64); eps is added outside the square root after bias correction, as PyTorch does.

``adam_step`` updates one array; ``adam_step_tensors`` many, in one call (``_tensors``). Both run
``_adam_chunk`` on chunks of ``CHUNK`` elements.
"""

import numpy as np
from numba import prange

from .. import sizes
from ..step_plan import APPLIED, C0, C1, CTL_SIZE, LR
from ._grad import effective_grad, grad_coefs, lerp
from ._jit import parallel, serial
from ._tensors import chunk_count, chunk_row, chunk_span, part, state_extent, view


@serial
def _adam_chunk(p, g, m, v, vmax, ctl, beta1, beta2, eps, weight_decay, decoupled, amsgrad,
                maximize, clip_value):
    """The update of one chunk: arguments as in :func:`adam_step`, all arrays of one length."""
    dt = p.dtype.type
    unscale, lo, hi, coef = grad_coefs(p, ctl, maximize, clip_value)
    b1w = dt(1.0 - beta1)
    b1c = dt(1.0) - b1w
    b2 = dt(beta2)
    b2w = dt(1.0 - beta2)
    eps_ = dt(eps)
    step_size = dt(ctl[C0])
    bc2_sqrt = dt(ctl[C1])
    l2 = dt(0.0 if decoupled else weight_decay)
    decay = dt(1.0 - ctl[LR] * weight_decay if decoupled else 1.0)
    use_l2 = weight_decay != 0.0 and not decoupled
    use_decay = weight_decay != 0.0 and decoupled
    for i in range(p.shape[0]):
        gi = effective_grad(g[i], unscale, lo, hi, coef)
        pi = p[i]
        if use_l2:
            gi = gi + l2 * pi
        if use_decay:
            pi = pi * decay
        mi = lerp(m[i], gi, b1w, b1c)
        vi = b2 * v[i] + b2w * (gi * gi)
        m[i] = mi
        v[i] = vi
        if amsgrad:
            vi = max(vmax[i], vi)
            vmax[i] = vi
        p[i] = pi - step_size * (mi / (np.sqrt(vi) / bc2_sqrt + eps_))


@parallel
def adam_step(p, g, m, v, vmax, ctl, beta1, beta2, eps, weight_decay, decoupled, amsgrad,
              maximize, clip_value):
    """One Adam step, in place, unless ``ctl[APPLIED] == 0`` (then nothing is touched).

    Parameters
    ----------
    p : (n,) float32 or float64, updated in place
    g : (n,) same dtype, read (raw: scaled by the loss scale, unclipped)
    m, v : (n,) same dtype, updated in place
    vmax : (n,) or (0,) same dtype, updated in place when ``amsgrad``
    ctl : (16,) float64, read: ``APPLIED``, ``UNSCALE``, ``CLIP_COEF``, ``LR``, ``C0``, ``C1``
    beta1, beta2, eps, weight_decay : float
    decoupled, amsgrad, maximize : bool
    clip_value : float (inf: none)

    Raises ``ValueError``, before touching memory, if ``g``, ``m``, ``v`` or ``vmax`` while
    ``amsgrad`` is not as long as ``p``, or ``ctl`` holds fewer than ``CTL_SIZE``.
    """
    n = p.shape[0]
    sizes.adam(p, g, m, v, vmax, ctl, amsgrad)
    if ctl[APPLIED] == 0.0:
        return
    for c in prange(chunk_count(n)):
        a, b = chunk_span(c, n)
        _adam_chunk(p[a:b], g[a:b], m[a:b], v[a:b], part(vmax, a, b), ctl, beta1, beta2, eps,
                    weight_decay, decoupled, amsgrad, maximize, clip_value)


@parallel
def adam_step_tensors(chunks, p_addr, g_addr, m, v, vmax, ctl, beta1, beta2, eps, weight_decay,
                      decoupled, amsgrad, maximize, clip_value):
    """:func:`adam_step` over many arrays at once (``_tensors``).

    Parameters
    ----------
    chunks : (n_chunks, 4) int64 chunk table (``_tensors.chunk_table``)
    p_addr, g_addr : int64 addresses of each parameter and its gradient (``_tensors.addresses``)
    m, v, vmax : the flat state buffers, tensor after tensor (vmax (0,) unless ``amsgrad``);
        their dtype is the parameters'
    The other arguments as in :func:`adam_step`.

    The addresses are trusted (``_tensors``); the table, the state buffers the rule uses and
    ``ctl`` are checked as there, with ``ValueError`` before any memory is touched.
    """
    need = state_extent(chunks, min(p_addr.shape[0], g_addr.shape[0]))
    if m.shape[0] < need or v.shape[0] < need:
        raise ValueError("m and v must cover every chunk's state span")
    if amsgrad and vmax.shape[0] < need:
        raise ValueError("vmax must cover every chunk's state span when amsgrad")
    if ctl.shape[0] < CTL_SIZE:
        raise ValueError("ctl must hold at least CTL_SIZE elements")
    if ctl[APPLIED] == 0.0:
        return
    for c in prange(chunks.shape[0]):
        t, a, b, s = chunk_row(chunks, c)
        e = s + b - a
        _adam_chunk(view(p_addr[t], a, b, m), view(g_addr[t], a, b, m), m[s:e], v[s:e],
                    part(vmax, s, e), ctl, beta1, beta2, eps, weight_decay, decoupled, amsgrad,
                    maximize, clip_value)
