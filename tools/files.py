"""Files that concurrent runs share safely: atomic writes and an exclusive lock.

Two `make run`s started at once in one checkout write the same tables, figures, README blocks
and cache entries. Each file is written to a temporary file in its folder and renamed over the
old one (a reader sees the old file or the new one, never half of one); the README's
read-modify-write and the training of a missing checkpoint run under a lock, so that no update is
lost and no model is trained twice.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from tools.code_key import outside_key

try:
    import fcntl
except ImportError:            # Windows: no advisory locks; atomic writes still hold
    fcntl = None


@outside_key
def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` to `path` through a temporary file and a rename; parents are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


@outside_key
def save_torch(path: str | Path, obj) -> Path:
    """torch.save of `obj` written atomically (checkpoints, training states, cached tensors)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return write_atomic(path, buffer.getvalue())


@outside_key
@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created if missing) for the block; another
    process asking for the same lock waits until the block ends."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)
