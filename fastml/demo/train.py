"""The demo's training loop with fastml: fused cross-entropy, a guarded AdamW over one
FlatParams (one update launch per step), a warm-up + cosine schedule, test metrics per epoch.

The PyTorch loop in ``torch_peer.py`` mirrors this one line for line.
"""

import time
from typing import NamedTuple

import numpy as np

import fastml
from fastml._progress import Progress


class Config(NamedTuple):
    """Hyper-parameters shared by the fastml and PyTorch loops."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 1e-2
    clip_norm: float = 1.0
    warmup_fraction: float = 0.1  # of all steps

    def schedule(self, total_steps):
        """Linear warm-up to ``lr``, then half a cosine to 0 at ``total_steps``."""
        total = max(int(total_steps), 2)
        warmup = min(max(1, int(total * self.warmup_fraction)), total - 1)
        return fastml.schedules.warmup_cosine(self.lr, warmup, total)


class Epoch(NamedTuple):
    loss: float      # mean training loss over the epoch's batches
    accuracy: float  # on the test split
    f1: float        # macro F1 on the test split
    seconds: float   # training steps only (evaluation excluded)


class Result(NamedTuple):
    framework: str   # "fastml" or "torch"
    model: str
    epochs: list     # of Epoch
    params: dict     # name -> float32 array in the FlatParams layout
    samples: int     # training samples per epoch
    skipped: int     # steps the guard skipped (fastml only)

    @property
    def first_epoch_seconds(self):
        return self.epochs[0].seconds

    @property
    def samples_per_second(self):
        """Training throughput after the first epoch (which holds JIT compilation or cache
        loading and warm-up); the first epoch's when there is only one."""
        steady = self.epochs[1:] or self.epochs
        return self.samples * len(steady) / sum(e.seconds for e in steady)


def evaluate(logits, y):
    """Test accuracy and macro F1 from class scores (row argmax) with fastml.metrics."""
    return (fastml.metrics.accuracy(y, logits),
            fastml.metrics.f1(y, logits, average="macro", zero_division=0.0))


def train(model, name, data, batches, cfg, init, progress=True):
    """Train ``model`` (``models.Dense``) on ``data`` over ``batches`` (``data.epoch_batches``)
    from the flat parameter vector ``init``; returns a ``Result``."""
    p = fastml.FlatParams(model.shapes, dtype=np.float32, init=init)
    steps = sum(len(b) for b in batches)
    guard = fastml.Guard(clip_norm=cfg.clip_norm, skip_nonfinite=True, max_consecutive_skips=10)
    opt = fastml.AdamW(p, lr=cfg.schedule(steps), betas=cfg.betas, eps=cfg.eps,
                       weight_decay=cfg.weight_decay, guard=guard)
    x, y = data.x_train, data.y_train
    history, info = [], None
    with Progress(len(batches), f"{name} fastml", enabled=progress) as bar:
        for epoch in batches:
            start, total = time.perf_counter(), 0.0
            for idx in epoch:
                total += model.loss_and_grad(p, x[idx], y[idx]) * len(idx)
                info = opt.step()  # reads p.grad: clip, finite check and AdamW in two passes
            seconds = time.perf_counter() - start
            acc, f1 = evaluate(model.forward(p, data.x_test)[-1], data.y_test)
            history.append(Epoch(total / len(x), acc, f1, seconds))
            bar.set(f"loss {history[-1].loss:.4f} acc {acc:.4f}")
            bar.advance()
    params = {k: v.copy() for k, v in p.items()}
    return Result("fastml", name, history, params, len(x), info.skipped_total if info else 0)
