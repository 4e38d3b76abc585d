"""Cell locks: a cell is locked while it trains, so two launches of one sweep, or a duplicated array task,
never train it at once (docs/design.md, "Execution modes").

The lock is `<cell>/train.lock`, created with O_CREAT | O_EXCL (atomic on local and NFS v3+ file systems),
holding its owner: host, pid, SLURM job id and when it expires (the job's time limit). A lock is stale, and
taken over, when its owner is a dead process on this host, is this same SLURM job (a requeued task resuming
its own cells), or has outlived its time limit. Writing the cell's record releases the lock.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("mfsweep")
LOCK = "train.lock"
_held: set[Path] = set()  # this process's locks, released at exit if no record released them first
# A lock's owner is written the instant it is created; one still unreadable after this was left by a process
# killed in between (or damaged since), and would otherwise keep its cell from ever training.
WRITE_GRACE_S = 60.0


def owner(time_limit_s: float | None) -> dict[str, Any]:
    now = time.time()
    return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job": os.environ.get("SLURM_JOB_ID"),
            "since": now, "expires": now + time_limit_s if time_limit_s else None}


def read_lock(cell_dir: Path) -> dict[str, Any] | None:
    """The lock's owner; None when the cell is not locked. A lock being written reads as an unknown owner."""
    return read_lock_file(Path(cell_dir) / LOCK)


def read_lock_file(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def stale(lock: dict[str, Any]) -> str | None:
    """Why `lock` may be taken over, or None while its owner may still be training."""
    if lock.get("expires") is not None and time.time() > lock["expires"]:
        return "older than its time limit"
    mine = os.environ.get("SLURM_JOB_ID")
    if mine and lock.get("slurm_job") == mine:
        return "left by an earlier run of this SLURM job"
    if lock.get("host") == socket.gethostname() and isinstance(lock.get("pid"), int) and not _alive(lock["pid"]):
        return f"its owner (pid {lock['pid']}) is dead"
    return None


def unwritten(path: Path) -> str | None:
    """Why an unreadable lock file may be taken over: it has been unreadable for longer than a write takes."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    return f"unreadable, and unchanged for {age:.0f} s" if age > WRITE_GRACE_S else None


def describe(lock: dict[str, Any]) -> str:
    job = f", SLURM job {lock['slurm_job']}" if lock.get("slurm_job") else ""
    return f"{lock.get('host', '?')} pid {lock.get('pid', '?')}{job}"


def acquire(cell_dir: Path, time_limit_s: float | None = None) -> bool:
    """Take the cell's lock; False when another live owner holds it. A stale lock is taken over (and logged)."""
    path = Path(cell_dir) / LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = read_lock(cell_dir)
            why = stale(held) if held else unwritten(path)
            if why is None:
                return False
            # Rename first: of two processes taking over the same stale lock, only one rename succeeds.
            grave = path.with_name(f".{LOCK}.{os.getpid()}.stale")
            try:
                os.rename(path, grave)
            except FileNotFoundError:
                continue
            if read_lock_file(grave) != held:
                # Another process took it over between our read and our rename: what we moved is its fresh
                # lock. Put it back (link fails if a third one got in meanwhile) and leave the cell to it.
                try:
                    os.link(grave, path)
                except FileExistsError:
                    pass
                grave.unlink(missing_ok=True)
                return False
            grave.unlink(missing_ok=True)
            log.warning("took over the lock of %s (%s): %s", cell_dir, describe(held), why)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(owner(time_limit_s), f)
        _held.add(path)
        return True
    return False


def release(cell_dir: Path) -> None:
    """Drop the cell's lock if this process holds it."""
    path = Path(cell_dir) / LOCK
    if path in _held:
        _held.discard(path)
        held = read_lock(cell_dir)
        if held and held.get("pid") == os.getpid() and held.get("host") == socket.gethostname():
            path.unlink(missing_ok=True)


@atexit.register
def release_all() -> None:
    """Drop every lock this process holds (at exit; and when a launch ends on an error that wrote no record)."""
    for path in list(_held):
        release(path.parent)


def claim(cells: list, time_limit_min: float | None, still_needed) -> list:
    """The cells of `cells` (objects with `.dir`) this process now holds the lock of and that
    `still_needed(cell)` (re-checked under the lock: another launch may have recorded it meanwhile); the others
    are skipped with a line saying why. Under DDP only rank 0 takes locks; the other ranks follow it."""
    if any(os.environ.get(k, "0") != "0" for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID")):
        return list(cells)
    time_limit_s = 60.0 * time_limit_min if time_limit_min else None
    mine = []
    for c in cells:
        if not acquire(c.dir, time_limit_s):
            held = read_lock(c.dir) or {}
            log.warning("skip %s: locked by %s (another launch is training it)", c.dir, describe(held))
        elif not still_needed(c):
            release(c.dir)
            log.info("skip %s: recorded by another launch meanwhile", c.dir)
        else:
            mine.append(c)
    return mine
