"""Preemption-safe checkpoints: `last.ckpt` every N steps, at the end of training, when the process is
told to stop with SIGTERM (Lightning turns it into an exception at the next step boundary), and on the
preemption signal of a submitit job (USR2, sent `signal_delay_s` before a time limit): that one is held
until the next step boundary, the checkpoint is written, then submitit's own handler requeues the job.
The same command (or the requeued job) resumes where it stopped.

The checkpoint holds the weights, both EMA copies, the optimizer, the step, every cell's random streams
and the history, so a resumed run replays exactly what an uninterrupted one would have done.
"""
from __future__ import annotations

import logging
import os
import signal
import zipfile
from pathlib import Path
from types import FrameType
from typing import Any, Callable

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mfsweep.atomic import kill_point, storage_error

log = logging.getLogger("mfsweep")
PREEMPT_SIGNAL_ENV = "SUBMITIT_PREEMPT_SIGNAL"  # submitit's own variable (default USR2)


def preemption_signal() -> signal.Signals:
    """The signal submitit sends a job before its time limit or on preemption."""
    name = os.environ.get(PREEMPT_SIGNAL_ENV, "USR2")
    try:
        return signal.Signals[f"SIG{name}"]
    except KeyError:
        raise ValueError(f"{PREEMPT_SIGNAL_ENV}={name!r} names no signal (expected e.g. USR2)") from None


class LastCheckpoint(L.Callback):
    def __init__(self, path: Path, every: int):
        self.path, self.every, self._saved_at = Path(path), every, -1
        self._handover: tuple[signal.Signals, Callable[..., Any]] | None = None
        self._pending: tuple[int, FrameType | None] | None = None

    def resume_path(self) -> Path | None:
        """The checkpoint to resume from, or None to start afresh. An unreadable file raises ValueError
        naming it (Lightning's own error from torch.load does not say which file, or that it is corrupt)."""
        if not self.path.exists():
            return None
        # torch.save writes a zip archive whose directory sits at the end: a truncated or foreign file lacks it.
        if not zipfile.is_zipfile(self.path):
            raise ValueError(f"checkpoint {self.path} is corrupt or truncated (not a torch checkpoint): "
                             "delete it to train the job's cells from step 0")
        return self.path

    def save(self, trainer: L.Trainer) -> None:
        self._saved_at = trainer.global_step
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        try:
            trainer.save_checkpoint(tmp)  # every rank takes part; only rank 0 writes
            if trainer.is_global_zero:
                kill_point(self.path)
                os.replace(tmp, self.path)  # never a half-written checkpoint
        except OSError as exc:  # a full or failing disk: leave no partial file to fill it further
            tmp.unlink(missing_ok=True)
            raise storage_error(exc, self.path) from None

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        # Only a job runner's Python handler (submitit's) is deferred; the default action stays untouched.
        # Under DDP the ranks would see the signal at different steps, and saving is collective: there the
        # requeued job resumes from the last periodic checkpoint instead.
        sig = preemption_signal()
        handler = signal.getsignal(sig)
        if callable(handler) and trainer.world_size == 1:
            self._handover = (sig, handler)
            signal.signal(sig, self._hold)

    def _hold(self, signum: int, frame: FrameType | None) -> None:
        # The signal can land mid-step; a consistent checkpoint waits for the next step boundary.
        self._pending = (signum, frame)

    def on_train_batch_start(self, trainer: L.Trainer, *_: Any) -> None:
        # At a batch start every hook of the previous step (the EMA updates, the history) has run.
        if self._pending:
            self.save(trainer)
            self._hand_over(trainer)
        step = trainer.global_step
        if self.every and step and step % self.every == 0 and step != self._saved_at:
            self.save(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.save(trainer)
        if self._pending:  # it came during the last step: the final checkpoint is the one to resume from
            self._hand_over(trainer)
        self._restore()

    def _hand_over(self, trainer: L.Trainer) -> None:
        """After the checkpoint, the job runner's handler acts (submitit requeues the job and exits)."""
        (signum, frame), self._pending = self._pending, None
        log.warning("preemption signal %s: checkpoint at step %d in %s; handing over to requeue",
                    signal.Signals(signum).name, trainer.global_step, self.path)
        handler = self._handover[1]
        self._restore()
        handler(signum, frame)

    def _restore(self) -> None:
        if self._handover:
            signal.signal(*self._handover)
            self._handover = None

    def on_exception(self, trainer: L.Trainer, pl_module: Any, exception: BaseException) -> None:
        self._restore()
        if isinstance(exception, SIGTERMException) and trainer.global_step > 0:
            self.save(trainer)
