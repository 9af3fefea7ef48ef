"""The demo's data: scikit-learn's bundled digits (8x8 images, 10 classes; no download), or a
synthetic 10-class problem of the same shape when scikit-learn is not installed.

Features are standardised with the training split's mean and standard deviation, as float32.
The batches of every epoch are drawn here once, so fastml and PyTorch train on the same ones.
"""

from typing import NamedTuple

import numpy as np


class Dataset(NamedTuple):
    name: str
    x_train: np.ndarray  # (n_train, 64) float32
    y_train: np.ndarray  # (n_train,) int64 in [0, 10)
    x_test: np.ndarray   # (n_test, 64) float32
    y_test: np.ndarray   # (n_test,) int64

    @property
    def num_features(self):
        return self.x_train.shape[1]

    @property
    def num_classes(self):
        return int(max(self.y_train.max(), self.y_test.max())) + 1


def _digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    x, y = load_digits(return_X_y=True)
    return "digits (scikit-learn)", x, y


def _synthetic(rng, n=1797, d=64, c=10):
    """Gaussian clusters around random centres: separable enough to learn, noisy enough that
    accuracy is not trivially 1."""
    centres = rng.standard_normal((c, d)) * 0.45
    y = rng.integers(0, c, n)
    return "synthetic (64 features, 10 classes)", centres[y] + rng.standard_normal((n, d)), y


def load(source="auto", seed=0, test_fraction=0.2):
    """The demo's train/test split.

    Parameters
    ----------
    source : "auto", "digits" or "synthetic"
        "auto" is digits when scikit-learn is installed, else synthetic.
    seed : int
        Seeds the split (and the synthetic data).
    """
    if source not in ("auto", "digits", "synthetic"):
        raise ValueError(f"source must be 'auto', 'digits' or 'synthetic'; got {source!r}")
    rng = np.random.default_rng(seed)
    found = _digits() if source != "synthetic" else None
    if found is None and source == "digits":
        raise ImportError("the digits data set needs scikit-learn (pip install scikit-learn)")
    name, x, y = found if found is not None else _synthetic(rng)
    order = rng.permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    mean = x[train].mean(axis=0)
    std = x[train].std(axis=0)
    std[std == 0] = 1.0  # constant pixels (always blank in digits) stay 0
    x = ((x - mean) / std).astype(np.float32)
    y = y.astype(np.int64)
    return Dataset(name, np.ascontiguousarray(x[train]), y[train],
                   np.ascontiguousarray(x[test]), y[test])


def epoch_batches(n, batch_size, epochs, seed):
    """For each epoch, the list of index arrays of its batches (a fresh shuffle per epoch; the
    last batch of an epoch may be smaller)."""
    rng = np.random.default_rng([seed, 1])
    out = []
    for _ in range(epochs):
        order = rng.permutation(n)
        out.append([order[k:k + batch_size] for k in range(0, n, batch_size)])
    return out
