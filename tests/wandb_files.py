"""Read a W&B offline run file (`run-*.wandb`) back, independently of the wandb client: a LevelDB-style
log (':W&B' header, 32 KiB blocks, records of checksum/length/type) of `wandb_internal_pb2.Record`s."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
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


def finished_records(path: Path, timeout: float = 20.0) -> list[pb.Record]:
    """The records of a run file once its `exit` record is there: `run.finish()` returns before wandb's
    service has written the offline file (it can still hold only its header)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = records(path)
        except DecodeError:  # a record still being written
            found = []
        if any(r.WhichOneof("record_type") == "exit" for r in found) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def run_contents(run_dir: Path, wait_s: float = 20.0) -> dict[str, Any]:
    """The run's id, group, job type, tags, config (flat top-level keys), history rows and summary, once its
    exit record is written (up to `wait_s`; pass 0 for a run whose process is gone, e.g. killed)."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    info: dict[str, Any] = {"config": {}, "history": [], "summary": {}, "group": None, "job_type": None, "tags": [],
                            "id": None, "exited": False, "exit_code": None}
    for r in finished_records(path, wait_s):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            info["group"], info["job_type"], info["tags"] = r.run.run_group, r.run.job_type, list(r.run.tags)
            info["id"] = r.run.run_id
            info["config"].update({i.key: json.loads(i.value_json) for i in r.run.config.update})
        elif kind == "config":
            info["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "history":
            info["history"].append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            info["summary"].update({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.summary.update})
        elif kind == "exit":
            info["exited"], info["exit_code"] = True, r.exit.exit_code
    return info
