"""A progress bar for a (packed) training run: step, it/s, ETA, members still alive, mean loss."""
from __future__ import annotations

from typing import Any

import lightning as L
from tqdm.auto import tqdm


class StepProgress(L.Callback):
    def __init__(self, label: str, every: int = 10):
        self.label, self.every, self.bar = label, every, None

    def on_train_start(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.bar = tqdm(total=trainer.max_steps, initial=trainer.global_step, desc=self.label, unit="step",
                        dynamic_ncols=True, leave=True)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, *_: Any) -> None:
        done = trainer.global_step - self.bar.n
        if done >= self.every or trainer.global_step >= trainer.max_steps:
            self.bar.update(done)
            alive = int(pl_module.alive.sum())
            self.bar.set_postfix(members=f"{alive}/{pl_module.n_members}", refresh=False)

    def on_train_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.bar is not None:
            self.bar.update(trainer.global_step - self.bar.n)
            self.bar.close()
