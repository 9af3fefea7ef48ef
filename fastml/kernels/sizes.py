"""The length checks at the entry of every kernel, written once for both devices.

Each function raises ``ValueError`` when an array is shorter (or longer) than what its kernel
indexes, before anything is read or written. They are plain Python that ``kernels.cpu`` kernels
compile inline (``register_jitable``) and ``kernels.cuda`` launchers call on the host, where
they read shapes only: no device synchronization.
"""

from numba.extending import register_jitable

from .step_plan import CTL_SIZE


@register_jitable
def _update(p, g, ctl):
    if g.shape[0] != p.shape[0]:
        raise ValueError("g must have the length of p")
    if ctl.shape[0] < CTL_SIZE:
        raise ValueError("ctl must hold at least CTL_SIZE elements")


@register_jitable
def sgd(p, g, buf, ctl, momentum):
    _update(p, g, ctl)
    if momentum != 0.0 and buf.shape[0] != p.shape[0]:
        raise ValueError("buf must have the length of p when momentum != 0")


@register_jitable
def adam(p, g, m, v, vmax, ctl, amsgrad):
    _update(p, g, ctl)
    n = p.shape[0]
    if m.shape[0] != n or v.shape[0] != n:
        raise ValueError("m and v must have the length of p")
    if amsgrad and vmax.shape[0] != n:
        raise ValueError("vmax must have the length of p when amsgrad")


@register_jitable
def rmsprop(p, g, square_avg, grad_avg, buf, ctl, centered, momentum):
    _update(p, g, ctl)
    n = p.shape[0]
    if square_avg.shape[0] != n:
        raise ValueError("square_avg must have the length of p")
    if centered and grad_avg.shape[0] != n:
        raise ValueError("grad_avg must have the length of p when centered")
    if momentum > 0.0 and buf.shape[0] != n:
        raise ValueError("buf must have the length of p when momentum > 0")


@register_jitable
def adagrad(p, g, state_sum, ctl):
    _update(p, g, ctl)
    if state_sum.shape[0] != p.shape[0]:
        raise ValueError("state_sum must have the length of p")


@register_jitable
def cross_entropy(logits, grad, loss, pred, labels, weight, per_row):
    """``per_row``: the reduction is NONE (one loss per row)."""
    n, c = logits.shape
    if c == 0:
        raise ValueError("logits must have at least one column")
    if grad.shape[0] != n or grad.shape[1] != c:
        raise ValueError("grad must have the shape of logits")
    if loss.shape[0] != (n if per_row else 1):
        raise ValueError("loss must have N entries when reduction is NONE, else 1")
    if pred.shape[0] != n and pred.shape[0] != 0:
        raise ValueError("pred must have N entries or none")
    if labels.shape[0] != n:
        raise ValueError("labels must have N entries, one per row of logits")
    if weight.shape[0] != c and weight.shape[0] != 0:
        raise ValueError("weight must have C entries or none")


@register_jitable
def bce_with_logits(logits, grad, target, loss, weight, w_div, w_mod, pos_weight, pw_div,
                    pw_mod):
    n = logits.shape[0]
    if grad.shape[0] != n or target.shape[0] != n:
        raise ValueError("grad and target must have the length of logits")
    if loss.shape[0] != n and loss.shape[0] != 1:
        raise ValueError("loss must have the length of logits or 1")
    if w_div < 1 or w_mod < 1 or weight.shape[0] < w_mod:
        raise ValueError("weight must have at least w_mod >= 1 entries, and w_div >= 1")
    if pw_div < 1 or pw_mod < 1 or pos_weight.shape[0] < pw_mod:
        raise ValueError("pos_weight must have at least pw_mod >= 1 entries, and pw_div >= 1")


@register_jitable
def top_k(scores, status, y_true, weight):
    n, c = scores.shape
    if c == 0:
        raise ValueError("scores must have at least one column")
    if status.shape[0] < 2:
        raise ValueError("status must hold at least 2 elements")
    if y_true.shape[0] != n:
        raise ValueError("y_true must have N entries, one per row of scores")
    if weight.shape[0] != n and weight.shape[0] != 0:
        raise ValueError("weight must have N entries or none")


@register_jitable
def confusion(cm, seen, status, y_true, y_pred, weight):
    n = y_true.shape[0]
    k = cm.shape[0]
    if cm.shape[1] != k:
        raise ValueError("cm must be square (k, k)")
    if seen.shape[0] != k:
        raise ValueError("seen must have k entries, one per row of cm")
    if status.shape[0] < 2:
        raise ValueError("status must hold at least 2 elements")
    if y_pred.shape[0] != n:
        raise ValueError("y_pred must have the length of y_true")
    if y_pred.size == 0 and n != 0:  # 2-D scores without a column (1-D: size is n)
        raise ValueError("y_pred scores must have at least one column")
    if weight.shape[0] != n and weight.shape[0] != 0:
        raise ValueError("weight must have the length of y_true or none")
