"""The demo's training loop written with PyTorch on the CPU, step for step the loop of
``train.py``: ``torch.nn.Linear`` layers from the same initial values, ``F.cross_entropy``,
``clip_grad_norm_``, ``torch.optim.AdamW`` and the same schedule through ``LambdaLR``, on the
same batches."""

import time

from fastml import FlatParams
from fastml._progress import Progress

from .train import Epoch, Result, evaluate


def _network(torch, model, params):
    layers = []
    for i, (d_in, d_out) in enumerate(model.layers, start=1):
        linear = torch.nn.Linear(d_in, d_out)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(params[f"w{i}"].T))  # torch stores (out, in)
            linear.bias.copy_(torch.from_numpy(params[f"b{i}"]))
        layers.append(linear)
        if i < len(model.layers):
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def train(model, name, data, batches, cfg, init, progress=True):
    """As ``train.train``, with PyTorch."""
    import torch
    import torch.nn.functional as F

    net = _network(torch, model, FlatParams(model.shapes, dtype=init.dtype, init=init))
    steps = sum(len(b) for b in batches)
    schedule = cfg.schedule(steps)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                            weight_decay=cfg.weight_decay)
    # LambdaLR multiplies the initial lr by lambda(step), step counting scheduler.step() calls:
    # the same count as fastml's applied steps.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: schedule(step) / cfg.lr)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    x_test = torch.from_numpy(data.x_test)
    history = []
    with Progress(len(batches), f"{name} torch ", enabled=progress) as bar:
        for epoch in batches:
            start, total = time.perf_counter(), 0.0
            for idx in epoch:
                idx = torch.from_numpy(idx)
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(net(x[idx]), y[idx])
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_norm)
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
            seconds = time.perf_counter() - start
            with torch.no_grad():
                logits = net(x_test).numpy()
            acc, f1 = evaluate(logits, data.y_test)
            history.append(Epoch(total / len(x), acc, f1, seconds))
            bar.set(f"loss {history[-1].loss:.4f} acc {acc:.4f}")
            bar.advance()
    params = {}
    for i, linear in enumerate(net[::2], start=1):
        params[f"w{i}"] = linear.weight.detach().numpy().T.copy()
        params[f"b{i}"] = linear.bias.detach().numpy().copy()
    return Result("torch", name, history, params, len(x), 0)
