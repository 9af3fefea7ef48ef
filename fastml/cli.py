"""The ``fastml`` command: ``fastml demo`` trains a small model with fastml's kernels."""

import argparse
import sys
import time

import numpy as np


def _demo(args):
    """Softmax regression on a synthetic 10-class problem, trained with ``fastml.cross_entropy``
    (loss and gradient in one pass) and plain gradient descent."""
    import fastml

    rng = np.random.default_rng(args.seed)
    n, d, c = args.samples, 64, 10
    centers = rng.standard_normal((c, d)).astype(np.float32) * 0.3
    y = rng.integers(0, c, n)
    x = (centers[y] + rng.standard_normal((n, d))).astype(np.float32)
    w = np.zeros((d, c), np.float32)
    b = np.zeros(c, np.float32)
    lr, batch = 0.1, 256
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = rng.permutation(n)
        total = 0.0
        for k in range(0, n, batch):
            idx = order[k:k + batch]
            logits = x[idx] @ w + b
            loss, grad = fastml.cross_entropy(logits, y[idx], out=logits)  # grad overwrites logits
            w -= lr * (x[idx].T @ grad)
            b -= lr * grad.sum(axis=0)
            total += float(loss) * len(idx)
        _, _, pred = fastml.cross_entropy(x @ w + b, y, return_pred=True)
        print(f"epoch {epoch + 1}: loss {total / n:.4f}  accuracy {np.mean(pred == y):.4f}")
    seconds = time.perf_counter() - start
    print(f"{args.epochs * n / seconds:,.0f} samples/s (including numba compile on first use)")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train a softmax regression with fastml's fused loss")
    demo.add_argument("--epochs", type=int, default=5)
    demo.add_argument("--samples", type=int, default=20_000)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
