"""The training process keeps freed memory (mfsweep/tasks/allocator.py): a packed step's multi-megabyte activations
are served from reused memory, so its pages are not faulted in again every step."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# One packed ensemble of 33 members (width 128, batch 256: activations of 4 MB), stepped without and then with
# keep_freed_memory(); minor page faults per step counted by the kernel (getrusage), not timed.
SCRIPT = """
import json, resource, sys
import torch
sys.path.insert(0, {bench!r})
from packed_step import packed_task, packed_step
from mfsweep.tasks.allocator import keep_freed_memory
torch.set_num_threads(1)
step = packed_step(packed_task(33, 128, 256, False))
def faults_per_step(n=4):
    for _ in range(4):  # the heap grows to the step's peak first
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n
default = faults_per_step()
took = keep_freed_memory()
print(json.dumps({{"default": default, "took": took, "kept": faults_per_step()}}))
"""


def test_packed_steps_fault_no_pages_once_freed_memory_is_kept():
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(bench=str(ROOT / "benchmarks"))], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    faults = json.loads(out.stdout.strip().splitlines()[-1])
    assert faults["took"] is True
    # glibc's defaults return a step's freed activations to the system: thousands of 4 KiB pages a step (~20 MB).
    assert faults["default"] > 1000, faults
    # Kept: none, after the heap has grown to the step's peak (allow a stray page or two per step).
    assert faults["kept"] <= 2, faults
