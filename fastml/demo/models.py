"""The demo's models, with backpropagation written out in NumPy matmuls.

A model is a stack of dense layers ``z_i = h_{i-1} W_i + b_i`` with ReLU between them:
one layer is softmax regression, two layers an MLP. Every weight lives in one
``fastml.FlatParams`` (``w1, b1, w2, b2, ...``), so the optimizer updates the whole model in one
kernel launch, and the backward pass writes straight into the named views of ``p.grad``.
"""

import math

import numpy as np

import fastml


class Dense:
    """Dense layers of the given widths, e.g. ``Dense([64, 10])`` (softmax regression) or
    ``Dense([64, 128, 10])`` (an MLP with one hidden ReLU layer)."""

    def __init__(self, widths):
        self.widths = tuple(int(w) for w in widths)
        self.layers = list(zip(self.widths[:-1], self.widths[1:], strict=True))
        self.shapes = {}
        for i, (d_in, d_out) in enumerate(self.layers, start=1):
            self.shapes[f"w{i}"] = (d_in, d_out)  # (in, out): the forward pass is h @ W
            self.shapes[f"b{i}"] = (d_out,)

    def init(self, seed):
        """PyTorch's ``nn.Linear`` initialisation (weights and biases uniform in
        ``±1/sqrt(fan_in)``) as one float32 vector in the FlatParams layout."""
        rng = np.random.default_rng([seed, 2])
        parts = []
        for name, shape in self.shapes.items():
            fan_in = shape[0] if name.startswith("w") else self.shapes["w" + name[1:]][0]
            bound = 1.0 / math.sqrt(fan_in)
            parts.append(rng.uniform(-bound, bound, size=shape).ravel())
        return np.concatenate(parts).astype(np.float32)

    def forward(self, p, x):
        """Every layer's output, ReLU applied except to the last (the logits):
        ``[x, h1, ..., logits]``."""
        acts = [x]
        last = len(self.layers)
        for i in range(1, last + 1):
            z = acts[-1] @ p[f"w{i}"]
            z += p[f"b{i}"]
            if i < last:
                np.maximum(z, 0.0, out=z)
            acts.append(z)
        return acts

    def loss_and_grad(self, p, x, y):
        """Mean cross-entropy of a batch; its gradient w.r.t. every parameter lands in
        ``p.grad``. Returns the loss."""
        acts = self.forward(p, x)
        # Loss and dL/dlogits = (softmax - onehot) / N in one pass, written over the logits.
        loss, g = fastml.cross_entropy(acts[-1], y, out=acts[-1])
        for i in range(len(self.layers), 0, -1):
            # z_i = h W_i + b_i  =>  dW_i = h^T dz_i,  db_i = sum over rows of dz_i,
            # dh = dz_i W_i^T,  and through the ReLU dz_{i-1} = dh * [h > 0] (PyTorch's
            # choice of 0 for the subgradient at 0).
            h = acts[i - 1]
            np.matmul(h.T, g, out=p.grad[f"w{i}"])
            np.sum(g, axis=0, out=p.grad[f"b{i}"])
            if i > 1:
                g = g @ p[f"w{i}"].T
                g *= h > 0
        return float(loss)


def build(kind, num_features, num_classes, hidden=128):
    """``"softmax"`` (one layer) or ``"mlp"`` (one hidden ReLU layer of ``hidden`` units)."""
    if kind == "softmax":
        return Dense([num_features, num_classes])
    if kind == "mlp":
        return Dense([num_features, hidden, num_classes])
    raise ValueError(f"model must be 'softmax' or 'mlp'; got {kind!r}")
