"""What keeping freed memory buys the packed step (mfsweep/tasks/allocator.py).

    python benchmarks/allocator.py [--pairs 3 --steps 10 --repeats 5 --threads 1]

The allocator's state depends on the whole history of a process, so each measurement is its own process running
the packed step alone (the settings of benchmarks/packed_step.py), with glibc's defaults or with
`keep_freed_memory()`; the two kinds alternate, `--pairs` times. Reported per process: the median ms a step over
`--repeats` windows of `--steps` steps, and minor page faults a step (getrusage).
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def measure(kept: bool, steps: int, repeats: int, threads: int) -> dict[str, float]:
    if kept:
        from mfsweep.tasks.allocator import keep_freed_memory

        keep_freed_memory()
    import torch

    from packed_step import packed_step, packed_task

    torch.set_num_threads(threads)
    step = packed_step(packed_task(33, 128, 256, False))
    for _ in range(5):
        step()
    times, faults = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        times.append((time.perf_counter() - start) * 1000 / steps)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (steps * repeats)
    return {"ms": statistics.median(times), "faults": faults}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", choices=["default", "kept"], help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(measure(a.child == "kept", a.steps, a.repeats, a.threads)))
        return
    results: dict[str, list[dict[str, float]]] = {"default": [], "kept": []}
    for _ in range(a.pairs):
        for kind in results:
            out = subprocess.run([sys.executable, __file__, "--child", kind, "--steps", str(a.steps), "--repeats",
                                  str(a.repeats), "--threads", str(a.threads)], cwd=Path(__file__).parent,
                                 capture_output=True, text=True, check=True)
            results[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for kind, runs in results.items():
        ms = ", ".join(f"{r['ms']:.1f}" for r in runs)
        faults = ", ".join(f"{r['faults']:.0f}" for r in runs)
        print(f"{kind:>8}: ms/step {ms}; page faults/step {faults}")
    ratio = statistics.median(r["ms"] for r in results["default"]) / statistics.median(r["ms"] for r in results["kept"])
    print(f"kept vs default (medians): {ratio:.2f}x")


if __name__ == "__main__":
    main()
