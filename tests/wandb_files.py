"""Read a W&B offline run file (`run-*.wandb`) back, independently of the wandb client: a LevelDB-style
log (':W&B' header, 32 KiB blocks, records of checksum/length/type) of `wandb_internal_pb2.Record`s."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> list[pb.Record]:
    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    pos, out, parts = HEADER, [], b""
    while pos + HEADER <= len(data):
        if BLOCK - pos % BLOCK < HEADER:  # a block's tail too short for a record header is padding
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        chunk = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            out.append(chunk)
        elif kind == FIRST:
            parts = chunk
        elif kind == MIDDLE:
            parts += chunk
        elif kind == LAST:
            out.append(parts + chunk)
    parsed = []
    for raw in out:
        r = pb.Record()
        r.ParseFromString(raw)
        parsed.append(r)
    return parsed


def run_contents(run_dir: Path) -> dict[str, Any]:
    """The run's group, job type, config (flat top-level keys), history rows and summary."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    info: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "group": None, "job_type": None, "tags": []}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            info["group"], info["job_type"], info["tags"] = r.run.run_group, r.run.job_type, list(r.run.tags)
            info["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            info["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "history":
            info["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            info["summary"].update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.summary.update})
    return info
