"""Checkpoints written atomically and loaded safely.

File layout: an 8-byte magic ``b"BFCKPT1\\n"``, the 64-character hex SHA-256 of the payload and a
newline, then the payload: ``torch.save`` of a dict of tensors and plain Python values. Writing
goes to a temporary file in the same folder, which is flushed, fsync'ed and renamed over the
target (``os.replace`` is atomic on POSIX), then the folder is fsync'ed: a crash leaves either
the old or the new checkpoint, never a torn one. Loading checks the magic and the checksum
before unpickling with ``torch.load(weights_only=True)`` (no arbitrary code), so a truncated
or tampered file raises a clear :class:`~bayesfilt.errors.BayesfiltValueError`.
"""

from __future__ import annotations

import collections
import hashlib
import io
import os
import tempfile
from pathlib import Path

import torch

from ..errors import type_error, value_error

MAGIC = b"BFCKPT1\n"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename + folder fsync).

    The bytes go to a temporary file next to ``path``, which is flushed, fsync'ed and renamed
    over ``path`` (``os.replace``), then the folder is fsync'ed where the platform allows it.
    A crash leaves either the old file or the new one, never a partial write. Missing parent
    folders are created. Not validated: an internal helper that the public savers call.

    Args:
        path: the file to (over)write.
        data: its complete new contents.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "sub", "x.bin")
        >>> atomic_write_bytes(p, b"hi")
        >>> open(p, "rb").read(), os.listdir(os.path.dirname(p))
        (b'hi', ['x.bin'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)                                  # read the umask (no call reads it without setting it)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)                    # mkstemp's 0600 would survive the rename
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    try:
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Save ``payload`` (tensors, numbers, strings, lists, dicts) atomically with a checksum.

    The file holds the magic ``b"BFCKPT1\\n"``, the hex SHA-256 of the payload and a newline,
    then ``torch.save(payload)``; it is written with :func:`atomic_write_bytes`.

    Args:
        path: the checkpoint file to (over)write (not a folder).
        payload: a dict of tensors and plain Python values (what ``torch.load(weights_only=True)``
            can read back, e.g. a ``state_dict``).

    Raises:
        BayesfiltTypeError: ``path`` is not a str / PathLike or ``payload`` is not a dict.
        BayesfiltValueError: ``path`` is a folder or ``payload`` cannot be pickled.

    Example:
        >>> import tempfile, os, torch
        >>> p = os.path.join(tempfile.mkdtemp(), "ck.pt")
        >>> save_checkpoint(p, {"w": torch.ones(2), "step": 3})
        >>> load_checkpoint(p)["step"]
        3
    """
    if not isinstance(path, (str, os.PathLike)):
        raise type_error("path", f"is a {type(path).__name__}", "pass a file path (str or pathlib.Path)")
    if Path(path).is_dir():
        raise value_error("path", f"{str(path)!r} is a folder", "pass the path of a checkpoint file inside it")
    if not isinstance(payload, dict):
        raise type_error("payload", f"is a {type(payload).__name__}", "pass a dict of tensors and plain values")
    _check_plain(payload, "payload")
    buf = io.BytesIO()
    try:
        torch.save(payload, buf)
    except Exception as exc:  # unpicklable values (functions, open files, ...)
        raise value_error("payload", f"cannot be saved ({type(exc).__name__}: {exc})",
                          "save only tensors, numbers, strings, lists and dicts") from None
    body = buf.getvalue()
    digest = hashlib.sha256(body).hexdigest().encode()
    atomic_write_bytes(path, MAGIC + digest + b"\n" + body)


_PLAIN = (str, bytes, int, float, complex, bool, type(None))


def _check_plain(value, where: str) -> None:
    """Refuse values ``torch.load(weights_only=True)`` may not read back: anything but tensors,
    torch dtypes, plain scalars, strings, and lists, tuples (``torch.Size`` too), sets and dicts
    (str/int keys) of them. (``torch.save`` pickles e.g. a NumPy scalar happily; the safe loader
    then refuses the whole file.) A conservative list: the loader accepts a few more types."""
    if isinstance(value, (torch.Tensor, torch.dtype)) or type(value) in _PLAIN:
        return
    if type(value) in (dict, collections.OrderedDict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise value_error(where, f"has the key {key!r} of type {type(key).__name__}",
                                  "use str or int keys")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if type(value) in (list, tuple, torch.Size, set, frozenset):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    raise value_error(where, f"is a {type(value).__name__}, which the safe loader cannot read back",
                      "convert it to a tensor or a plain Python value (e.g. float(x), x.tolist())")


def load_checkpoint(path: str | os.PathLike, *, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint`, verifying magic and checksum.

    The payload is unpickled only after its checksum matches, and then with
    ``torch.load(weights_only=True)``, so no arbitrary code runs.

    Args:
        path: the checkpoint file (errors name it ``checkpoint``).
        map_location: where tensors are loaded (``torch.load``'s ``map_location``; default "cpu").

    Returns:
        The saved payload dict.

    Raises:
        BayesfiltTypeError: ``path`` is not a str / PathLike.
        BayesfiltValueError: the file is missing, truncated, tampered with or not a checkpoint.

    Example:
        >>> import tempfile, os, torch
        >>> p = os.path.join(tempfile.mkdtemp(), "ck.pt")
        >>> save_checkpoint(p, {"w": torch.arange(3.0), "step": 7})
        >>> ck = load_checkpoint(p)
        >>> ck["w"], ck["step"]
        (tensor([0., 1., 2.]), 7)
        >>> raw = open(p, "rb").read()
        >>> with open(p, "wb") as f:
        ...     _ = f.write(raw[:-1])                 # truncate the file by one byte
        >>> load_checkpoint(p)
        Traceback (most recent call last):
            ...
        bayesfilt.errors.BayesfiltValueError: ...checksum does not match...
    """
    if not isinstance(path, (str, os.PathLike)):
        raise type_error("checkpoint", f"is a {type(path).__name__}", "pass the path of a saved checkpoint")
    path = Path(path)
    if not path.is_file():
        raise value_error("checkpoint", f"no file at {str(path)!r}", "pass the path of a saved checkpoint")
    raw = path.read_bytes()
    head = len(MAGIC) + 65
    if len(raw) < head or not raw.startswith(MAGIC) or raw[head - 1:head] != b"\n":
        raise value_error("checkpoint", f"{str(path)!r} is not a bayesfilt checkpoint (bad header)",
                          "pass a file written by bayesfilt.nn.checkpoint.save_checkpoint")
    digest, body = raw[len(MAGIC):head - 1], raw[head:]
    if hashlib.sha256(body).hexdigest().encode() != digest:
        raise value_error("checkpoint", f"{str(path)!r} is corrupted: its checksum does not match "
                          f"({len(body)} payload bytes; truncated or modified)",
                          "restore the file or start the run again with --force")
    try:
        return torch.load(io.BytesIO(body), map_location=map_location, weights_only=True)
    except Exception as exc:  # a checksummed but unloadable payload (e.g. disallowed pickle globals)
        raise value_error("checkpoint", f"{str(path)!r} could not be loaded safely ({type(exc).__name__}: {exc})",
                          "only load checkpoints written by bayesfilt") from None
