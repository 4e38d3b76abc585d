"""Preemption-safe checkpoints: `last.ckpt` every N steps, at the end of training, and when the process is
told to stop with SIGTERM (Lightning turns it into an exception at the next step boundary), so the same
command resumes where it stopped. A preemption that kills the process mid-step (submitit's USR2 requeue)
resumes from the last periodic checkpoint, which replays the same steps.

The checkpoint holds the weights, both EMA copies, the optimizer, the step, every cell's random streams
and the history, so a resumed run replays exactly what an uninterrupted one would have done.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class LastCheckpoint(L.Callback):
    def __init__(self, path: Path, every: int):
        self.path, self.every, self._saved_at = Path(path), every, -1

    def save(self, trainer: L.Trainer) -> None:
        self._saved_at = trainer.global_step
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp)
        os.replace(tmp, self.path)  # never a half-written checkpoint

    def on_train_batch_start(self, trainer: L.Trainer, *_: Any) -> None:
        # At a batch start every hook of the previous step (the EMA updates, the history) has run.
        step = trainer.global_step
        if self.every and step and step % self.every == 0 and step != self._saved_at:
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.save(trainer)

    def on_exception(self, trainer: L.Trainer, pl_module: Any, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException) and trainer.global_step > 0:
            self.save(trainer)
