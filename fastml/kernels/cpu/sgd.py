"""SGD with momentum, dampening, Nesterov and weight decay: one pass over p, g and the buffer.

PyTorch's rule (``torch.optim.SGD``), with g the effective gradient:

    g   <- g + wd p
    buf <- g on the first step, else momentum buf + (1 - dampening) g
    d   <- g + momentum buf (Nesterov) or buf
    p   <- p - lr d

Without momentum the buffer is not read or written (8 B/param fp32 less).

``sgd_step`` updates one array; ``sgd_step_tensors`` many, in one call (``_tensors``). Both run
``_sgd_chunk`` on chunks of ``CHUNK`` elements.
"""

from numba import prange

from .. import sizes
from ..step_plan import APPLIED, C0, CTL_SIZE, LR
from ._grad import effective_grad, grad_coefs
from ._jit import parallel, serial
from ._tensors import chunk_count, chunk_row, chunk_span, part, state_extent, view


@serial
def _sgd_chunk(p, g, buf, ctl, momentum, dampening, nesterov, weight_decay, maximize,
               clip_value):
    """The update of one chunk: arguments as in :func:`sgd_step`, all arrays of one length."""
    dt = p.dtype.type
    unscale, lo, hi, coef = grad_coefs(p, ctl, maximize, clip_value)
    lr = dt(ctl[LR])
    wd = dt(weight_decay)
    mom = dt(momentum)
    keep = dt(1.0 - dampening)
    first = ctl[C0] != 0.0
    use_wd = weight_decay != 0.0
    use_momentum = momentum != 0.0
    for i in range(p.shape[0]):
        d = effective_grad(g[i], unscale, lo, hi, coef)
        pi = p[i]
        if use_wd:
            d = d + wd * pi
        if use_momentum:
            b = d if first else mom * buf[i] + keep * d
            buf[i] = b
            d = d + mom * b if nesterov else b
        p[i] = pi - lr * d


@parallel
def sgd_step(p, g, buf, ctl, momentum, dampening, nesterov, weight_decay, maximize, clip_value):
    """One SGD step, in place, unless ``ctl[APPLIED] == 0``.

    Parameters
    ----------
    p : (n,) float32 or float64, updated in place
    g : (n,) same dtype, read
    buf : (n,) or (0,) same dtype, momentum buffer, updated in place when ``momentum != 0``
    ctl : (16,) float64, read: ``APPLIED``, ``UNSCALE``, ``CLIP_COEF``, ``LR``, ``C0`` (first step)
    momentum, dampening, weight_decay : float
    nesterov, maximize : bool
    clip_value : float (inf: none)

    Raises ``ValueError``, before touching memory, if ``g``, or ``buf`` while
    ``momentum != 0``, is not as long as ``p``, or ``ctl`` holds fewer than ``CTL_SIZE``.
    """
    n = p.shape[0]
    sizes.sgd(p, g, buf, ctl, momentum)
    if ctl[APPLIED] == 0.0:
        return
    for c in prange(chunk_count(n)):
        a, b = chunk_span(c, n)
        _sgd_chunk(p[a:b], g[a:b], part(buf, a, b), ctl, momentum, dampening, nesterov,
                   weight_decay, maximize, clip_value)


@parallel
def sgd_step_tensors(chunks, p_addr, g_addr, buf, ctl, momentum, dampening, nesterov,
                     weight_decay, maximize, clip_value):
    """:func:`sgd_step` over many arrays at once (``_tensors``).

    Parameters
    ----------
    chunks : (n_chunks, 4) int64 chunk table (``_tensors.chunk_table``)
    p_addr, g_addr : int64 addresses of each parameter and its gradient (``_tensors.addresses``)
    buf : the flat momentum buffer, tensor after tensor, or (0,) without momentum; its dtype
        is the parameters'
    The other arguments as in :func:`sgd_step`.

    The addresses are trusted (``_tensors``); the table, ``buf`` (while ``momentum != 0``)
    and ``ctl`` are checked as there, with ``ValueError`` before any memory is touched.
    """
    need = state_extent(chunks, min(p_addr.shape[0], g_addr.shape[0]))
    if momentum != 0.0 and buf.shape[0] < need:
        raise ValueError("buf must cover every chunk's state span when momentum != 0")
    if ctl.shape[0] < CTL_SIZE:
        raise ValueError("ctl must hold at least CTL_SIZE elements")
    if ctl[APPLIED] == 0.0:
        return
    for c in prange(chunks.shape[0]):
        t, a, b, s = chunk_row(chunks, c)
        _sgd_chunk(view(p_addr[t], a, b, buf), view(g_addr[t], a, b, buf),
                   part(buf, s, s + b - a), ctl, momentum, dampening, nesterov, weight_decay,
                   maximize, clip_value)
