"""Checkpoints of an optimizer and its parameters: one ``.npz`` file, no pickle, written
atomically (a temporary file in the same folder, then a rename), so a crash mid-write leaves the
previous checkpoint intact.
"""

import json
import os
import tempfile

import numpy as np

from .errors import DTypeError, ShapeError

_FORMAT = "fastml-checkpoint-1"


def save(path, opt):
    """Write ``opt``'s parameters and ``state_dict()`` to ``path`` (an ``.npz`` file)."""
    state = opt.state_dict()
    arrays = {"ctl": state["ctl"]}
    for i, (p, shape) in enumerate(zip(opt._params, opt._shapes, strict=True)):
        host = opt._host(p)
        arrays[f"param/{i}"] = host.reshape(shape)  # the user's shape, checked on load
    for name, buffers in state["state"].items():
        for i, a in enumerate(buffers):
            arrays[f"state/{name}/{i}"] = a
    meta = {"format": _FORMAT, "kind": state["kind"], "hyper": state["hyper"],
            "n_params": len(opt._params), "state": {k: len(v) for k, v in state["state"].items()},
            "scaler": state["scaler"],
            "layout": _layout(opt)}
    arrays["meta"] = np.array(json.dumps(meta))  # a unicode array: loads without pickle
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastml-", suffix=".npz.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _layout(opt):
    """A FlatParams' names and shapes, as JSON keeps them (None for arrays)."""
    flat = opt._flat
    return None if flat is None else [[name, list(shape)] for name, shape in flat.shapes.items()]


def load(path, opt):
    """Restore parameters and optimizer state saved by :func:`save` into ``opt``.

    The file is checked against ``opt`` (kind, number, shapes and dtypes of parameters and
    buffers) before anything is written: a mismatched checkpoint raises and changes nothing.
    """
    with np.load(os.fspath(path), allow_pickle=False) as f:
        files = set(f.files)
        if "meta" not in files:
            raise ValueError(f"{path} must be a fastml checkpoint; it has no meta entry")
        meta = json.loads(str(f["meta"]))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path} must be a {_FORMAT} file; got {meta.get('format')!r}")
        if meta["n_params"] != len(opt._params):
            raise ShapeError(f"checkpoint must hold {len(opt._params)} parameter arrays; got "
                             f"{meta['n_params']}")
        params = [f[f"param/{i}"] for i in range(meta["n_params"])]
        state = {"kind": meta["kind"], "hyper": meta["hyper"], "ctl": f["ctl"],
                 "scaler": meta.get("scaler"),
                 "state": {name: [f[f"state/{name}/{i}"] for i in range(count)]
                           for name, count in meta["state"].items()}}
    if meta.get("layout") != _layout(opt):
        raise ShapeError(f"checkpoint FlatParams layout must be {_layout(opt)}; got "
                         f"{meta.get('layout')}")
    for i, (src, dst, shape) in enumerate(zip(params, opt._params, opt._shapes, strict=True)):
        if src.shape != shape:
            raise ShapeError(f"checkpoint param {i} must have shape {shape}; got {src.shape}")
        if src.dtype != dst.dtype:
            raise DTypeError(f"checkpoint param {i} must be {dst.dtype}; got {src.dtype}")
    opt._check_state_dict(state)
    for src, dst in zip(params, opt._params, strict=True):
        opt._write(dst, src.reshape(-1))
    opt.load_state_dict(state)
