"""LastCheckpoint's preemption path (without SLURM): submitit's USR2 handler is held until a step boundary,
where the checkpoint is written first; and an unreadable checkpoint is refused by name."""
from __future__ import annotations

import os
import signal
import time
from types import SimpleNamespace

import pytest
import torch

from mfsweep.tasks.checkpointing import LastCheckpoint, preemption_signal


class FakeTrainer(SimpleNamespace):
    """What LastCheckpoint uses of a single-process Trainer: the step, and a checkpoint writer that records
    the step saved."""

    is_global_zero, world_size = True, 1

    def save_checkpoint(self, path) -> None:
        torch.save({"global_step": self.global_step}, path)


@pytest.fixture
def runner_handler():
    """A stand-in for submitit's USR2 handler (it would requeue and exit); records when it runs."""
    calls: list[int] = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: calls.append(signum))
    yield calls
    signal.signal(signal.SIGUSR2, previous)


def _deliver(sig: signal.Signals, cb: LastCheckpoint) -> None:
    os.kill(os.getpid(), sig)
    deadline = time.monotonic() + 5
    while not cb._pending and time.monotonic() < deadline:  # Python runs handlers between bytecodes
        time.sleep(0.001)


def _wait_for(condition) -> None:
    deadline = time.monotonic() + 5
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.001)


def _saved_step(cb: LastCheckpoint) -> int:
    return torch.load(cb.path)["global_step"]


def test_usr2_is_held_to_the_next_step_boundary_and_checkpointed_first(tmp_path, runner_handler):
    cb, trainer = LastCheckpoint(tmp_path / "last.ckpt", every=100), FakeTrainer(global_step=7)
    runner = signal.getsignal(signal.SIGUSR2)
    cb.on_train_start(trainer, None)
    _deliver(signal.SIGUSR2, cb)
    assert runner_handler == [] and not cb.path.exists()  # mid-step: nothing happens yet
    trainer.global_step = 8
    cb.on_train_batch_start(trainer, None, None, 0)
    assert runner_handler == [signal.SIGUSR2] and _saved_step(cb) == 8
    assert signal.getsignal(signal.SIGUSR2) is runner  # the runner's own handler is back ...
    os.kill(os.getpid(), signal.SIGUSR2)
    _wait_for(lambda: len(runner_handler) == 2)
    assert runner_handler == [signal.SIGUSR2] * 2 and _saved_step(cb) == 8  # ... and a second USR2 goes straight to it


def test_usr2_in_the_last_step_hands_over_after_the_final_checkpoint(tmp_path, runner_handler):
    cb, trainer = LastCheckpoint(tmp_path / "last.ckpt", every=0), FakeTrainer(global_step=49)
    cb.on_train_start(trainer, None)
    _deliver(signal.SIGUSR2, cb)
    trainer.global_step = 50
    cb.on_train_end(trainer, None)
    assert runner_handler == [signal.SIGUSR2] and _saved_step(cb) == 50


def test_without_a_runner_handler_usr2_is_left_alone(tmp_path):
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    cb = LastCheckpoint(tmp_path / "last.ckpt", every=10)
    cb.on_train_start(FakeTrainer(global_step=0), None)
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL


def test_under_ddp_usr2_is_left_to_the_runner(tmp_path, runner_handler):
    cb = LastCheckpoint(tmp_path / "last.ckpt", every=10)
    runner = signal.getsignal(signal.SIGUSR2)
    cb.on_train_start(FakeTrainer(global_step=0, world_size=2), None)
    assert signal.getsignal(signal.SIGUSR2) is runner
    os.kill(os.getpid(), signal.SIGUSR2)  # delivered to the runner at once, nothing held, nothing written
    _wait_for(lambda: len(runner_handler) == 1)
    assert runner_handler == [signal.SIGUSR2] and not cb._pending and not cb.path.exists()


def test_periodic_checkpoints_every_n_steps(tmp_path):
    cb, trainer = LastCheckpoint(tmp_path / "last.ckpt", every=10), FakeTrainer(global_step=0)
    for step in range(0, 25):
        trainer.global_step = step
        cb.on_train_batch_start(trainer, None, None, step)
        if step in (10, 20):
            assert _saved_step(cb) == step
    assert _saved_step(cb) == 20


def test_resume_path_refuses_an_unreadable_checkpoint_by_name(tmp_path):
    cb = LastCheckpoint(tmp_path / "ckpt" / "last.ckpt", every=10)
    assert cb.resume_path() is None
    cb.save(FakeTrainer(global_step=3))
    assert cb.resume_path() == cb.path
    cb.path.write_bytes(cb.path.read_bytes()[:-30])  # truncated
    with pytest.raises(ValueError, match=f"checkpoint {cb.path} is corrupt or truncated"):
        cb.resume_path()


def test_preemption_signal_follows_submitit_variable(monkeypatch):
    monkeypatch.delenv("SUBMITIT_PREEMPT_SIGNAL", raising=False)
    assert preemption_signal() == signal.SIGUSR2
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR1")
    assert preemption_signal() == signal.SIGUSR1
    monkeypatch.setenv("SUBMITIT_PREEMPT_SIGNAL", "USR9")
    with pytest.raises(ValueError, match="SUBMITIT_PREEMPT_SIGNAL='USR9' names no signal"):
        preemption_signal()
