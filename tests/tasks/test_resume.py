"""Preemption-safe resume: a run killed half way and started again ends exactly where an uninterrupted one
ends (bitwise on the CPU)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from conftest import TINY

ARGS = [a for a in TINY if not a.startswith("trainer.max_steps")] + [
    "trainer.max_steps=600", "trainer.checkpoint_every=25", "tangent=ema", "alpha.value=0.0,0.5", "seed=7",
    "sweep.mode=packed",
]


def _run(root: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mfsweep.cli.entry", "-m", *ARGS, f"hydra.sweep.dir={root}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _cells(root: Path) -> dict[str, Path]:
    return {p.parent.name: p.parent for p in root.rglob("result.json")}


def test_sigterm_then_rerun_equals_uninterrupted(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert _run(whole).wait(timeout=300) == 0
    proc = _run(cut)
    deadline = time.time() + 120
    while not list(cut.rglob("last.ckpt")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert not _cells(cut)  # interrupted: no record written
    again = _run(cut)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "resuming from" in out + err
    a, b = _cells(whole), _cells(cut)
    assert sorted(a) == sorted(b) == ["alpha=0,seed=7", "alpha=0.5,seed=7"]
    for name in a:
        ra, rb = (json.loads((d[name] / "result.json").read_text()) for d in (a, b))
        ra.pop("wall_s"), rb.pop("wall_s")
        assert ra == rb
        sa, sb = np.load(a[name] / "samples.npz"), np.load(b[name] / "samples.npz")
        assert np.array_equal(sa["generated"], sb["generated"])
        assert (a[name] / "history.csv").read_text() == (b[name] / "history.csv").read_text()
