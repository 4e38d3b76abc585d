"""The MeanFlow module's per-member history and the training state a checkpoint carries beside the weights.

A mixin of `MeanFlowModule`: losses are summed on the device every step and averaged into one history row per
member every `log_every` steps (no device-to-host sync per step); one-off values (alpha, gradient variance,
diagnostics, evaluations) join the row of their step; `pending` holds the rows not yet sent to the trackers.
The checkpoint's `mfsweep` entry (streams, history, divergence, partial sums, diagnostics, the schedule's state)
is what a resumed cell needs to continue exactly where it stopped."""
from __future__ import annotations

from typing import Any

import torch


class MemberHistory:
    """Each member's history rows and divergence step (`MeanFlowModule` supplies `n_members` and the streams)."""

    def init_history(self, n_members: int) -> None:
        self.diverged_step: list[int | None] = [None] * n_members
        self.history: list[list[dict[str, float]]] = [[] for _ in range(n_members)]
        self.pending: list[tuple[int, list[dict[str, float]]]] = []
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def check_divergence(self) -> None:
        """Copy the device-side divergence flags to the host (`diverged_step`); stop when every member diverged."""
        for i, step in enumerate(self.diverged_at.tolist()):
            if step and self.diverged_step[i] is None:
                self.diverged_step[i] = step
        if all(s is not None for s in self.diverged_step):
            self.trainer.should_stop = True

    def _accumulate(self, values: dict[str, torch.Tensor]) -> None:
        for k, v in values.items():
            v = v.detach().reshape(self.n_members)
            self._sums[k] = self._sums[k] + v if k in self._sums else v.clone()
        self._count += int("train/loss_total" in values)

    def log_member_values(self, step: int, values: dict[str, torch.Tensor]) -> None:
        """Append one-off per-member values (diagnostics) to the history at `step`."""
        rows = [{"step": step} | {k: float(v[i]) for k, v in values.items()} for i in range(self.n_members)]
        for i, row in enumerate(rows):
            if self.history[i] and self.history[i][-1]["step"] == step:
                self.history[i][-1].update(row)  # one history row per step
            else:
                self.history[i].append(dict(row))
        self.pending.append((step, rows))

    def _flush(self, step: int) -> None:
        if not self._count:
            return
        counts = {k: self._count for k in self._sums}
        means = {k: s / counts[k] for k, s in self._sums.items()}
        self._sums, self._count = {}, 0
        self.log_member_values(step, means)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.check_divergence()  # the host-side record of divergence must be as current as the weights
        checkpoint["mfsweep"] = {
            "streams": self.stream_state(), "history": self.history, "diverged_step": self.diverged_step,
            "sums": self._sums, "count": self._count, "diag_stats": self.diag_stats,
            "schedule": self.schedule.state_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["mfsweep"]
        self.load_stream_state(state["streams"])
        self.history, self.diverged_step = state["history"], state["diverged_step"]
        self._sums, self._count = state["sums"], state["count"]
        self.diag_stats = state.get("diag_stats", [])
        self.schedule.load_state_dict(state["schedule"])
