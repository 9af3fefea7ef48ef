"""Checkpoints of an optimizer and its parameters: one ``.npz`` file, no pickle, written
atomically (a temporary file in the same folder, then a rename), so a crash mid-write leaves the
previous checkpoint intact.

A save killed mid-write leaves its temporary file behind; each save first deletes the ones that
earlier saves to the same path on this machine left, once the process that wrote them is gone
(``_stale_temporaries``), so they cannot pile up.

A load reads and checks the whole file before it writes anything (all or nothing): a file that
is not a readable fastml checkpoint raises ``CheckpointError``; one that is readable but belongs
to another optimizer (kind, number, shapes or dtypes of parameters and buffers) raises
``ValueError``, ``ShapeError`` or ``DTypeError``, as ``Optimizer.load_state_dict`` does.
"""

import errno
import glob
import json
import os
import socket
import tempfile

import numpy as np

from .errors import CheckpointError, DTypeError, ShapeError

_FORMAT = "fastml-checkpoint-1"
_TMP_SUFFIX = ".fastml-tmp"


def save(path, opt):
    """Write ``opt``'s parameters and ``state_dict()`` to ``path`` (an ``.npz`` file)."""
    with opt._lock:  # parameters and state of one step, not of two
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
    folder, name = os.path.split(os.path.abspath(path))
    for stale in _stale_temporaries(folder, name):
        try:
            os.unlink(stale)
        except OSError:  # another save removed it first, or it is not ours to remove
            pass
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.{_owner_tag()}.", suffix=_TMP_SUFFIX,
                               dir=folder)
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


def _owner_tag():
    """``host-pid`` of this process, in the names of its temporary files."""
    host = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())
    return f"{host}-{os.getpid()}"


def _stale_temporaries(folder, name):
    """Temporary files of saves to ``folder/name`` by processes of this host that have ended."""
    prefix = os.path.join(folder, f".{glob.escape(name)}.")
    host = _owner_tag().rsplit("-", 1)[0]
    stale = []
    for tmp in glob.glob(f"{prefix}*{_TMP_SUFFIX}"):
        tag = os.path.basename(tmp)[len(name) + 2:].split(".", 1)[0]
        owner, _, pid = tag.rpartition("-")
        if owner == host and pid.isdigit() and not _alive(int(pid)):
            stale.append(tmp)
    return stale


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno != errno.ESRCH  # EPERM: it exists, owned by someone else
    return True


def _layout(opt):
    """A FlatParams' names and shapes, as JSON keeps them (None for arrays)."""
    flat = opt._flat
    return None if flat is None else [[name, list(shape)] for name, shape in flat.shapes.items()]


def _read(path):
    """``(meta, params, state)`` from a checkpoint file; ``CheckpointError`` if it is not a
    readable fastml checkpoint. A missing or unreadable file raises the usual ``OSError``."""
    with open(path, "rb") as raw:  # FileNotFoundError, PermissionError: not a damaged file
        try:
            with np.load(raw, allow_pickle=False) as f:
                if "meta" not in f.files:
                    raise CheckpointError(f"{path} must be a fastml checkpoint; it has no meta "
                                          "entry")
                meta = json.loads(str(f["meta"]))
                if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
                    got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
                    raise CheckpointError(f"{path} must be a {_FORMAT} file; got {got!r}")
                n, counts = meta["n_params"], meta["state"]
                if not isinstance(n, int) or n < 0 or not isinstance(counts, dict) or not all(
                        isinstance(c, int) and c >= 0 for c in counts.values()):
                    raise CheckpointError(f"{path} must be a fastml checkpoint; its meta entry "
                                          "is damaged (n_params and state counts)")
                params = [f[f"param/{i}"] for i in range(n)]
                state = {"kind": meta["kind"], "hyper": meta["hyper"], "ctl": f["ctl"],
                         "scaler": meta.get("scaler", False),
                         "state": {name: [f[f"state/{name}/{i}"] for i in range(count)]
                                   for name, count in counts.items()}}
        except CheckpointError:
            raise
        except Exception as exc:  # zip, npy header, JSON, missing entries: all one refusal
            raise CheckpointError(f"{path} must be a readable fastml checkpoint; got a damaged "
                                  f"file ({type(exc).__name__}: {exc})") from exc
    return meta, params, state


def load(path, opt):
    """Restore parameters and optimizer state saved by :func:`save` into ``opt``.

    The whole file is read and checked against ``opt`` before anything is written: a damaged
    file raises ``CheckpointError``, a checkpoint of another optimizer ``ValueError``,
    ``ShapeError`` or ``DTypeError``, and ``opt`` is unchanged.
    """
    path = os.fspath(path)
    meta, params, state = _read(path)
    with opt._lock:
        if meta["n_params"] != len(opt._params):
            raise ShapeError(f"checkpoint must hold {len(opt._params)} parameter arrays; got "
                             f"{meta['n_params']}")
        if meta.get("layout") != _layout(opt):
            raise ShapeError(f"checkpoint FlatParams layout must be {_layout(opt)}; got "
                             f"{meta.get('layout')}")
        for i, (src, dst, shape) in enumerate(zip(params, opt._params, opt._shapes,
                                                  strict=True)):
            if src.shape != shape:
                raise ShapeError(f"checkpoint param {i} must have shape {shape}; got "
                                 f"{src.shape}")
            if src.dtype != dst.dtype:
                raise DTypeError(f"checkpoint param {i} must be {dst.dtype}; got {src.dtype}")
        checked = opt._checked_state(state)
        for src, dst in zip(params, opt._params, strict=True):
            opt._write(dst, src.reshape(-1))
        opt._write_state(*checked)
