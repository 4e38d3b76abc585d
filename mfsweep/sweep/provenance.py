"""Where a record came from (docs/design.md, "The per-cell record"): code version, machine and a hash of what
the cell computes, so a report can tell when the records it compares were not made by the same code and
config."""
from __future__ import annotations

import functools
import hashlib
import json
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# Sections of the resolved config that do not change what a cell computes (as cells.NEUTRAL_PREFIXES for
# folders): a relaunch with another logger or launcher must not look like a different config.
NEUTRAL_SECTIONS = ("hydra", "launcher", "logger", "sweep")
NEUTRAL_TRAINER_KEYS = ("progress", "accelerator", "devices")


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """mfsweep's version, and its git commit and dirty flag when it runs from a checkout (else null)."""
    try:
        version = metadata.version("mfsweep")
    except metadata.PackageNotFoundError:
        version = None
    commit = dirty = None
    try:
        git = ["git", "-C", str(PACKAGE_DIR)]
        done = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if done.returncode == 0:
            commit = done.stdout.strip()
            # Tracked files only: sweep outputs inside the checkout are untracked and do not change the code.
            status = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, timeout=30)
            dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return {"mfsweep": version, "git_commit": commit, "git_dirty": dirty}


def config_hash(config: dict[str, Any]) -> str:
    """sha256 (first 16 hex digits) of the resolved config without alpha, seed and the sections that do not
    change what a cell computes: equal for every cell of one setting trained by the same command."""
    c = {k: v for k, v in config.items() if k not in NEUTRAL_SECTIONS and k != "seed"}
    if isinstance(c.get("alpha"), dict):
        c["alpha"] = {k: v for k, v in c["alpha"].items() if k != "value"}
    if isinstance(c.get("trainer"), dict):
        c["trainer"] = {k: v for k, v in c["trainer"].items() if k not in NEUTRAL_TRAINER_KEYS}
    return hashlib.sha256(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:16]


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def provenance(config: dict[str, Any] | None) -> dict[str, Any]:
    """The record's `provenance` block; `config_hash` is null when no config is given."""
    return code_version() | {
        "torch": torch.__version__, "device": device_name(), "hostname": socket.gethostname(),
        "config_hash": config_hash(config) if config is not None else None,
    }


def provenance_differences(records: list[dict[str, Any]]) -> list[str]:
    """What differs across `records` in code version or config hash, as short phrases ('git_commit: 2
    values (1a2b3c4, 5d6e7f8)'); records without provenance (older ones) are left out."""
    out = []
    for key in ("mfsweep", "git_commit", "git_dirty", "config_hash"):
        values = sorted({str((r.get("provenance") or {}).get(key)) for r in records if r.get("provenance")})
        if len(values) > 1:
            shown = ", ".join(v[:10] for v in values)
            out.append(f"{key}: {len(values)} values ({shown})")
    return out
