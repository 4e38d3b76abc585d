"""One launch of a sweep, as the Hydra sweeper runs it: plan every cell (plan.json), submit only the jobs with
a cell left to train, record which array task owns which cell, and end with the sweep's status, exiting
non-zero when it leaves failed or diverged cells untrained (unless `sweep.rerun=none` says it accepts them).
"""
from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from omegaconf import DictConfig, OmegaConf

from mfsweep.sweep.cells import needs_training
from mfsweep.sweep.plan import (assign_tasks, job_cells, merge_plan, plan_entries, overrides_label, submitted_tasks,
                                varying, write_plan)
from mfsweep.sweep.states import planned_cells

POLL_S = 1.0  # how often the launching process looks for newly submitted array tasks


class LeftUntrained(SystemExit):
    """Exit status 1 after the summary: a relaunch left failed or diverged cells as they were."""


class PlannedLaunch:
    def __init__(self, root: Path, command: list[str], launcher: str, rerun: str, rerun_explicit: bool) -> None:
        self.root, self.command, self.launcher = Path(root), command, launcher
        self.rerun, self.rerun_explicit = rerun, rerun_explicit
        self.plan: dict[str, Any] = {}
        self.batches: list[list[int]] = []  # the job numbers of each submitted batch
        self.kept: list[str] = []  # this launch's cells not submitted because their record stands
        self.earlier: set[str] = set()
        self.entries: list[dict[str, Any]] = []  # the cells the latest `select` planned
        self._lock = threading.Lock()

    @classmethod
    def from_hydra(cls, config: DictConfig, arguments: Sequence[str]) -> "PlannedLaunch":
        launcher = OmegaConf.select(config, "hydra.runtime.choices")["hydra/launcher"]
        explicit = any(a.lstrip("+") == "sweep.rerun=none" for a in arguments)
        return cls(Path(config.hydra.sweep.dir), list(sys.argv), str(launcher), config.sweep.rerun, explicit)

    def select(self, batches: list[list[list[str]]], compose: Callable[[list[str]], DictConfig]) -> list[list[list[str]]]:
        """Plan every job's cells and write plan.json; return the batches without the jobs whose every cell
        is recorded (and not to be retrained), numbering the kept jobs as Hydra will. A race (sweep.until=resolved)
        selects once a round; each round's jobs are numbered from 0, as a launch's."""
        entries, kept_batches, job = [], [], 0
        self.batches = []
        for batch in batches:
            kept = []
            for overrides in batch:
                cfg = compose(list(overrides))
                todo = [c for c in job_cells(cfg, self.root, overrides) if needs_training(c, self.rerun)]
                launched = bool(todo)
                for e in plan_entries(cfg, self.root, overrides, job if launched else None):
                    e["launched"] = launched and any(c.dir == self.root / e["dir"] for c in todo)
                    entries.append(e)
                    if not e["launched"]:
                        self.kept.append(e["dir"])
                if launched:
                    kept.append(overrides)
                    job += 1
            if kept:
                kept_batches.append(kept)
                self.batches.append(list(range(job - len(kept), job)))
        with self._lock:  # the polling thread reads the plan
            self.earlier = submitted_tasks(self.root)
            self.plan = merge_plan(self.root, self.command, self.launcher, entries)
            write_plan(self.root, self.plan)
        self.entries = entries
        return kept_batches

    def set_race(self, race: dict[str, Any]) -> None:
        """Keep the race's state (its settings and decided rounds, mfsweep/sweep/race.py) in plan.json."""
        with self._lock:
            self.plan["race"] = race
            write_plan(self.root, self.plan)

    def record_tasks(self) -> None:
        """Give the submitted cells their array tasks in plan.json, as far as submitit has made their folders."""
        with self._lock:
            if not self.plan:  # the jobs are not planned yet (the poll starts with the sweep)
                return
            if assign_tasks(self.plan, submitted_tasks(self.root) - self.earlier, self.batches):
                write_plan(self.root, self.plan)

    @contextmanager
    def watching(self) -> Iterator[None]:
        """While the launcher blocks on its jobs, record their array tasks as they are submitted."""
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(POLL_S):
                self.record_tasks()

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.record_tasks()

    def untrained(self) -> list[str]:
        """This launch's failed or diverged cells that it did not train again, with their first error line."""
        kept = set(self.kept)
        cells = planned_cells(self.root, self.plan)
        keys = varying(c.entry["setting"] for c in cells)
        out = []
        for c in cells:
            if c.entry["dir"] in kept and c.state in ("failed", "diverged"):
                error = (c.record.get("error") or f"diverged at step {c.record.get('diverged_step')}").strip()
                out.append(f"{overrides_label(c.entry['setting'], keys)} alpha={c.entry['alpha']:g} "
                           f"seed={c.entry['seed']} ({c.state}: {error.splitlines()[0][:120]})")
        return out

    def interrupted(self, exc: Exception, status_text: str) -> None:
        """After a job raised: print the sweep's status. A task that ended without a result (cancelled, timed
        out past its requeues) is no error of the code: say so in one line instead of submitit's log dump."""
        if status_text:
            print(status_text, flush=True)
        if "DNS SRV lookup failed" in str(exc):
            print("mfsweep-train: SLURM found no slurm.conf (SLURM_CONF unset?): for the local cluster of "
                  "scripts/slurm, `source DIR/env.sh` in this shell first.", file=sys.stderr, flush=True)
        if type(exc).__name__ == "UncompletedJobError":
            print("mfsweep-train: some array tasks ended without a result (cancelled, or timed out past their "
                  "requeues; see above); relaunch the same command to resume them.", file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    def finish(self, status_text: str) -> None:
        """Print the sweep's status; exit 1 when failed or diverged cells were left untrained unasked."""
        print(status_text, flush=True)
        if self.rerun_explicit:
            return
        left = self.untrained()
        if left:
            print(f"mfsweep-train: {len(left)} failed or diverged cells were not trained again (sweep.rerun="
                  f"{self.rerun}):\n  " + "\n  ".join(left) + "\nsweep.rerun=failed trains them again; "
                  "sweep.rerun=none on the command line accepts them as they are.", file=sys.stderr, flush=True)
            raise LeftUntrained(1)
