"""Training progress: a bar on a terminal; elsewhere (a pipe, a log file, a SLURM job) a plain line every
10% of the steps or every 30 s, whichever comes first, so a redirected run still says how far it is."""
from __future__ import annotations

import logging
import sys
import time
from typing import Any

import lightning as L
from tqdm.auto import tqdm

log = logging.getLogger("mfsweep")


class StepProgress(L.Callback):
    """Step, rate, ETA and members still alive, for one (packed) training run."""

    def __init__(self, label: str, every: int = 10, line_fraction: float = 0.1, line_seconds: float = 30.0,
                 terminal: bool | None = None):
        self.label, self.every = label, every
        self.line_fraction, self.line_seconds = line_fraction, line_seconds
        self.terminal = sys.stderr.isatty() if terminal is None else terminal  # tqdm draws on stderr
        self.bar = None

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.terminal:
            self.bar = tqdm(total=trainer.max_steps, initial=trainer.global_step, desc=self.label, unit="step",
                            dynamic_ncols=True, leave=True)
        self.start_step, self.start_time = trainer.global_step, time.monotonic()
        self.last_line_step, self.last_line_time = trainer.global_step, self.start_time

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *_: Any) -> None:
        step, end = trainer.global_step, trainer.global_step >= trainer.max_steps
        if self.bar is not None:
            done = step - self.bar.n
            if done >= self.every or end:
                self.bar.update(done)
                self.bar.set_postfix(members=_members(pl_module), refresh=False)
            return
        now = time.monotonic()
        due = (step - self.last_line_step >= self.line_fraction * trainer.max_steps
               or now - self.last_line_time >= self.line_seconds)
        if due and not end:  # the last step's line comes from on_train_end
            self._line(step, trainer.max_steps, now, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.bar is not None:
            self.bar.update(trainer.global_step - self.bar.n)
            self.bar.close()
        else:
            self._line(trainer.global_step, trainer.max_steps, time.monotonic(), pl_module)

    def _line(self, step: int, total: int, now: float, pl_module: Any) -> None:
        rate = (step - self.start_step) / max(now - self.start_time, 1e-9)
        eta = (total - step) / rate if rate > 0 else float("nan")
        log.info("%s: step %d/%d (%d%%), %.1f step/s, ETA %s, members %s", self.label, step, total,
                 100 * step // max(total, 1), rate, _duration(eta), _members(pl_module))
        self.last_line_step, self.last_line_time = step, now


def _members(pl_module: Any) -> str:
    return f"{int(pl_module.alive.sum())}/{pl_module.n_members}"


def _duration(seconds: float) -> str:
    if seconds != seconds:  # NaN: no step finished yet
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
