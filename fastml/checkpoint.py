"""Checkpoints of an optimizer and its parameters: one ``.npz`` file, no pickle, written
atomically (a temporary file in the same folder, then a rename), so a crash mid-write leaves the
previous checkpoint intact.

A save killed mid-write leaves its temporary file behind. Every save holds a shared ``flock``
on the folder while it writes, and the kernel drops it when the writer dies; a save that can
take the folder's lock exclusively knows no save is writing there, in this process, another one,
or another container sharing the folder, so it first deletes the temporaries that earlier saves
to the same path left (``_writing``): they cannot pile up, and a live writer's file is never
touched.

A load reads and checks the whole file before it writes anything (all or nothing): a file that
is not a readable fastml checkpoint raises ``CheckpointError``; one that is readable but belongs
to another optimizer (kind, number, shapes or dtypes of parameters and buffers) raises
``ValueError``, ``ShapeError`` or ``DTypeError``, as ``Optimizer.load_state_dict`` does.
"""

import contextlib
import hashlib
import json
import os
import tempfile

import numpy as np

from .errors import CheckpointError, DTypeError, ShapeError

try:
    import fcntl
except ImportError:  # not POSIX: temporaries of killed saves are left in place
    fcntl = None

_FORMAT = "fastml-checkpoint-1"
_TMP_SUFFIX = ".npz.tmp"


def save(path, opt):
    """Write ``opt``'s parameters and ``state_dict()`` to ``path`` (an ``.npz`` file)."""
    with opt._lock:  # the parameters and the state of the same step
        state = opt.state_dict()
        arrays = {"ctl": state["ctl"]}
        for i, (p, shape) in enumerate(zip(opt._params, opt._shapes, strict=True)):
            host = opt._host(p) if opt._cuda else p.copy()
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
    prefix = _temporary_prefix(name)
    with _writing(folder, prefix):
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=_TMP_SUFFIX, dir=folder)
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


def _temporary_prefix(name):
    """The start of the names of the temporaries of saves to ``name`` (a digest: any length of
    name, any characters, and no name is the prefix of another's)."""
    return f".fastml-{hashlib.sha1(name.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}-"


@contextlib.contextmanager
def _writing(folder, prefix):
    """Hold a shared lock on ``folder`` while a save writes there; first, if no other save
    holds it, delete the temporaries named ``prefix...`` (their writers have died)."""
    try:
        fd = os.open(folder, os.O_RDONLY) if fcntl is not None else None
    except OSError:
        fd = None
    if fd is None:  # no flock here: temporaries of killed saves are left in place
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another save is writing here (or the filesystem has no flock)
            pass
        else:
            _remove_temporaries(folder, prefix)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def _remove_temporaries(folder, prefix):
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for n in names:
        if n.startswith(prefix) and n.endswith(_TMP_SUFFIX):
            try:
                os.unlink(os.path.join(folder, n))
            except OSError:  # removed meanwhile, or not ours to remove
                pass


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
                params = [_float_entry(f, f"param/{i}") for i in range(n)]
                state = {"kind": meta["kind"], "hyper": meta["hyper"],
                         "ctl": _float_entry(f, "ctl"), "scaler": meta.get("scaler"),
                         "state": {name: [_float_entry(f, f"state/{name}/{i}")
                                          for i in range(count)]
                                   for name, count in counts.items()}}
        except CheckpointError as exc:
            if str(exc).startswith(path):
                raise
            raise CheckpointError(f"{path}: checkpoint {exc}") from None
        except Exception as exc:  # zip, npy header, JSON, missing entries: all one refusal
            raise CheckpointError(f"{path} must be a readable fastml checkpoint; got a damaged "
                                  f"file ({type(exc).__name__}: {exc})") from exc
    return meta, params, state


def _float_entry(f, key):
    """Entry ``key`` of an open ``.npz``: a float array, or the file is damaged (NumPy returns
    the raw bytes of a member whose header it cannot read)."""
    a = f[key]
    if not isinstance(a, np.ndarray) or a.dtype.kind != "f":
        got = f"{a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
        raise CheckpointError(f"entry {key} must be a float array; got {got}")
    return a


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
