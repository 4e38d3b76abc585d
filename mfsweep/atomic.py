"""Atomic file writes: write a temporary file beside the target, then rename over it, so a reader (or a
resumed sweep) never sees a half-written record, sample file or history.

A write the file system refuses (full, over quota, an I/O error, read-only) removes its temporary file and
raises `StorageError` naming the target: the sweep did nothing wrong, and the same command resumes once the
cause is fixed (docs/testing.md, "Faults"). `MFSWEEP_KILL_AT` is the fault-injection suite's hook (tests/faults):
unset, it does nothing."""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import signal
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

# What the machine, not the sweep, got wrong: out of space or quota, an I/O error, a read-only file system.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})
KILL_AT = "MFSWEEP_KILL_AT"  # "<file name>[#n]": SIGKILL this process as its n-th write of that file lands
_reached: Counter[str] = Counter()


class StorageError(OSError):
    """A write the file system refused; `filename` is the file being written."""


def storage_error(err: OSError, path: str | os.PathLike) -> OSError:
    """`err` as a StorageError naming `path` when the file system is at fault; otherwise `err` itself."""
    if isinstance(err, StorageError) or err.errno not in STORAGE_ERRNOS:
        return err
    return StorageError(err.errno, err.strerror or os.strerror(err.errno), str(path))


def kill_point(path: str | os.PathLike) -> None:
    """The fault-injection suite's crash point: with `MFSWEEP_KILL_AT=<name>[#n]` set, the process kills itself
    (SIGKILL: no handler, no cleanup) when it is about to rename its n-th written `<name>` into place, its
    temporary file complete on disk. Inert when the variable is unset."""
    spec = os.environ.get(KILL_AT)
    if not spec:
        return
    name, _, n = spec.partition("#")
    if Path(path).name == name:
        _reached[name] += 1
        if _reached[name] == int(n or 1):
            os.kill(os.getpid(), signal.SIGKILL)


def temporaries(folder: str | os.PathLike, name: str) -> list[Path]:
    """The temporary files that writes of `folder/name` leave when their process dies mid-write."""
    return sorted(Path(folder).glob(f".{name}.*tmp"))


def remove_temporaries(folder: str | os.PathLike, names: Iterable[str]) -> None:
    """Remove what killed writers of `names` left in `folder`; only its one writer (a cell's lock holder,
    the launching process for the plan) may call this."""
    for name in names:
        for tmp in temporaries(folder, name):
            tmp.unlink(missing_ok=True)


def set_aside(path: Path) -> Path:
    """Rename an unreadable file to `<name>.unreadable-<time>` beside it, kept for the user to look at."""
    grave = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%dT%H%M%S')}")
    os.replace(path, grave)
    return grave


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; records are read by others on a shared cluster
        kill_point(path)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise storage_error(exc, path) from None
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    return write_bytes_atomic(path, (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode())


def write_npz_atomic(path: str | os.PathLike, **arrays: np.ndarray) -> Path:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return write_bytes_atomic(path, buf.getvalue())


def write_csv_atomic(path: str | os.PathLike, rows: Iterable[Mapping[str, Any]], fieldnames: list[str]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return write_bytes_atomic(path, buf.getvalue().encode())
