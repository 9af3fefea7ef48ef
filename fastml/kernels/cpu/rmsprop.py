"""RMSprop (centered, momentum): one pass over p, g and its state buffers.

PyTorch's rule (``torch.optim.RMSprop``), with g the effective gradient:

    g  <- g + wd p
    sq <- alpha sq + (1 - alpha) g^2
    ga <- lerp(ga, g, 1 - alpha)                   (centered)
    avg <- sqrt(sq - ga^2) + eps  (centered)  or  sqrt(sq) + eps
    buf <- momentum buf + g / avg;  p <- p - lr buf     (momentum > 0)
    p  <- p - lr g / avg                                 (otherwise)

``rmsprop_step`` updates one array; ``rmsprop_step_tensors`` many, in one call (``_tensors``).
Both run ``_rmsprop_chunk`` on chunks of ``CHUNK`` elements.
"""

import numpy as np
from numba import prange

from .. import sizes
from ..step_plan import APPLIED, CTL_SIZE, LR
from ._grad import effective_grad, grad_coefs, lerp
from ._jit import parallel, serial
from ._tensors import chunk_count, chunk_row, chunk_span, part, state_extent, view


@serial
def _rmsprop_chunk(p, g, square_avg, grad_avg, buf, ctl, alpha, eps, weight_decay, momentum,
                   centered, maximize, clip_value):
    """The update of one chunk: arguments as in :func:`rmsprop_step`, all arrays of one length."""
    dt = p.dtype.type
    unscale, lo, hi, coef = grad_coefs(p, ctl, maximize, clip_value)
    lr = dt(ctl[LR])
    a = dt(alpha)
    aw = dt(1.0 - alpha)
    awc = dt(1.0) - aw
    eps_ = dt(eps)
    wd = dt(weight_decay)
    mom = dt(momentum)
    use_wd = weight_decay != 0.0
    use_momentum = momentum > 0.0
    for i in range(p.shape[0]):
        gi = effective_grad(g[i], unscale, lo, hi, coef)
        pi = p[i]
        if use_wd:
            gi = gi + wd * pi
        sq = a * square_avg[i] + aw * (gi * gi)
        square_avg[i] = sq
        if centered:
            ga = lerp(grad_avg[i], gi, aw, awc)
            grad_avg[i] = ga
            avg = np.sqrt(sq - ga * ga) + eps_
        else:
            avg = np.sqrt(sq) + eps_
        if use_momentum:
            b = mom * buf[i] + gi / avg
            buf[i] = b
            p[i] = pi - lr * b
        else:
            p[i] = pi - lr * (gi / avg)


@parallel
def rmsprop_step(p, g, square_avg, grad_avg, buf, ctl, alpha, eps, weight_decay, momentum,
                 centered, maximize, clip_value):
    """One RMSprop step, in place, unless ``ctl[APPLIED] == 0``.

    Parameters
    ----------
    p : (n,) float32 or float64, updated in place
    g : (n,) same dtype, read
    square_avg : (n,) same dtype, updated in place
    grad_avg : (n,) or (0,), updated in place when ``centered``
    buf : (n,) or (0,), updated in place when ``momentum > 0``
    ctl : (16,) float64, read: ``APPLIED``, ``UNSCALE``, ``CLIP_COEF``, ``LR``
    alpha, eps, weight_decay, momentum : float
    centered, maximize : bool
    clip_value : float (inf: none)

    Raises ``ValueError``, before touching memory, if ``g``, ``square_avg``, ``grad_avg``
    while ``centered`` or ``buf`` while ``momentum > 0`` is not as long as ``p``, or ``ctl``
    holds fewer than ``CTL_SIZE``.
    """
    n = p.shape[0]
    sizes.rmsprop(p, g, square_avg, grad_avg, buf, ctl, centered, momentum)
    if ctl[APPLIED] == 0.0:
        return
    for c in prange(chunk_count(n)):
        a, b = chunk_span(c, n)
        _rmsprop_chunk(p[a:b], g[a:b], square_avg[a:b], part(grad_avg, a, b), part(buf, a, b),
                       ctl, alpha, eps, weight_decay, momentum, centered, maximize, clip_value)


@parallel
def rmsprop_step_tensors(chunks, p_addr, g_addr, square_avg, grad_avg, buf, ctl, alpha, eps,
                         weight_decay, momentum, centered, maximize, clip_value):
    """:func:`rmsprop_step` over many arrays at once (``_tensors``).

    Parameters
    ----------
    chunks : (n_chunks, 4) int64 chunk table (``_tensors.chunk_table``)
    p_addr, g_addr : int64 addresses of each parameter and its gradient (``_tensors.addresses``)
    square_avg, grad_avg, buf : the flat state buffers, tensor after tensor (grad_avg and buf
        (0,) when unused); their dtype is the parameters'
    The other arguments as in :func:`rmsprop_step`.

    The addresses are trusted (``_tensors``); the table, the state buffers the rule uses and
    ``ctl`` are checked as there, with ``ValueError`` before any memory is touched.
    """
    need = state_extent(chunks, min(p_addr.shape[0], g_addr.shape[0]))
    if square_avg.shape[0] < need:
        raise ValueError("square_avg must cover every chunk's state span")
    if centered and grad_avg.shape[0] < need:
        raise ValueError("grad_avg must cover every chunk's state span when centered")
    if momentum > 0.0 and buf.shape[0] < need:
        raise ValueError("buf must cover every chunk's state span when momentum > 0")
    if ctl.shape[0] < CTL_SIZE:
        raise ValueError("ctl must hold at least CTL_SIZE elements")
    if ctl[APPLIED] == 0.0:
        return
    for c in prange(chunks.shape[0]):
        t, a, b, s = chunk_row(chunks, c)
        e = s + b - a
        _rmsprop_chunk(view(p_addr[t], a, b, square_avg), view(g_addr[t], a, b, square_avg),
                       square_avg[s:e], part(grad_avg, s, e), part(buf, s, e), ctl, alpha, eps,
                       weight_decay, momentum, centered, maximize, clip_value)
