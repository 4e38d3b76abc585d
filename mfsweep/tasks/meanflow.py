"""The MeanFlow LightningModule shared by every task.

It trains `E >= 1` members at once, each with its own alpha schedule (`AlphaSchedule`, one alpha per member and
step, or per sample) and proxy (`Proxy`), with the paper's loss from `mfsweep.method`: tangent mixing
(docs/method.md 3), adaptive weighting and the flow-matching anchor. A task
subclass supplies the batches (`draw_batch`), how one value per member broadcasts against a batch
(`member_view`), and the evaluation. Members never interact: each has its own parameters (stacked),
hyperparameters (`MemberValues`: lr, betas, weight decay, clipping, EMA decays, loss weights, ...), optimizer
state (elementwise), gradient clipping, EMA and divergence flag, so member i trains exactly as a single run of
cell i would.

Here are the task hooks, the loss and the Lightning step; what is measured beside the loss (gradient variance,
diagnostics) is `mfsweep.tasks.measurement`, the history and the checkpointed state `mfsweep.tasks.history`.
The arguments come built from the config (`mfsweep.config.arguments`); the module never reads the config.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import lightning as L
import torch

from mfsweep.config.sections import DiagnosticsConfig, GradVarConfig, LossConfig, OptimConfig, section_values
from mfsweep.method.ema import ema_update
from mfsweep.method.loss import flow_matching_anchor, meanflow_loss
from mfsweep.method.proxy import Proxy
from mfsweep.method.schedule import AlphaSchedule
from mfsweep.method.tangent import boundary_r, mix_tangent
from mfsweep.tasks.diagnostics import Posterior, summarise
from mfsweep.tasks.history import MemberHistory
from mfsweep.tasks.measurement import Measurement
from mfsweep.tasks.members import MemberValues
from mfsweep.tasks.optim import MemberAdamW, clip_grad_norm_per_member, lr_factor

log = logging.getLogger("mfsweep")


@dataclass
class CellEval:
    """A member's evaluation: record metrics, how they were measured, and arrays to keep (`samples.npz`)."""

    metrics: dict[str, float]
    info: dict[str, Any]
    arrays: dict[str, Any] | None = None


@dataclass
class Batch:
    """`x` data, `e` noise, `t >= r` times (one per sample); `y` labels where the task has them."""

    x: torch.Tensor
    e: torch.Tensor
    t: torch.Tensor
    r: torch.Tensor
    y: torch.Tensor | None = None


def _frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    twin = copy.deepcopy(model)
    twin.requires_grad_(False)
    return twin


class MeanFlowModule(Measurement, MemberHistory, L.LightningModule):
    """MeanFlow training of E members; subclasses are the tasks (toy, dgmm, latent DiT)."""

    task_name = "meanflow"
    sample_ndim = 1

    def __init__(
        self,
        model: torch.nn.Module,
        schedule: AlphaSchedule,
        *,
        proxy: Proxy,
        loss: LossConfig,
        optim: OptimConfig,
        oracle: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        proxy_generators: Sequence[torch.Generator] | None = None,
        posterior: Posterior | None = None,
        grad_var: GradVarConfig,
        diagnostics: DiagnosticsConfig,
        log_every: int = 50,
        eval_every: int = 0,
        settings: Sequence[Mapping[str, Any]] | None = None,
        compile: bool = False,
    ):
        super().__init__()
        self.model = model
        self.ema = _frozen_copy(model)
        # The proxy's state (an EMA copy, a velocity head) is a submodule: it moves and checkpoints with the task.
        proxy.setup(model, marginal_velocity=oracle, generators=proxy_generators)
        proxy.check_schedule(schedule)
        self.proxy, self.schedule = proxy, schedule
        self.loss_cfg, self.optim_cfg, self.log_every, self.grad_var_cfg = loss, optim, log_every, grad_var
        self.eval_every = eval_every
        self.posterior, self.diag_cfg = posterior, diagnostics
        self.diag_stats: list[tuple[int, torch.Tensor]] = []  # (step, summed STATS (E, n_bins + 1, S))
        self.n_members = schedule.n_members
        base = section_values(optim, loss)
        members = settings or [{}] * self.n_members
        if len(members) != self.n_members:
            raise ValueError(f"one setting per member: got {len(members)} settings and {self.n_members} members")
        # Each member's own value of every per-member key the module uses (`settings` may hold others, e.g. time.*).
        self.hp = MemberValues([base | {k: v for k, v in m.items() if k in base} for m in members])
        self.anchor_on = self.hp.any_positive("loss.anchor_weight")
        # The training loss through torch.compile (inductor): SiLU, its tangent and the loss's elementwise work
        # fuse around the batched matmuls; measurements (grad_var, diagnostics) stay eager.
        self.train_losses = torch.compile(self.losses) if compile else self.losses
        self.register_buffer("alive", torch.ones(self.n_members, dtype=torch.bool))
        # The step at which each member's loss first went non-finite (0: never); read on the host every
        # log_every steps, so training needs no device-to-host sync per step.
        self.register_buffer("diverged_at", torch.zeros(self.n_members, dtype=torch.long))
        self.init_history(self.n_members)

    # --- task hooks -------------------------------------------------------------------------------
    def draw_batch(self, purpose: str = "train", batch_size: int | None = None) -> Batch:
        """A batch for every member from its `purpose` stream (`train`, or `gradvar` for the replicas)."""
        raise NotImplementedError

    def evaluate(self, **eval_cfg: Any) -> list[CellEval]:
        raise NotImplementedError

    def evaluate_during_training(self) -> dict[str, torch.Tensor]:
        """A cheaper evaluation logged every `eval.every` steps (`eval/...`, one value per member)."""
        return {}

    @property
    def data_dim(self) -> int:
        """The dimension d of one data sample (recorded as `dim`)."""
        raise NotImplementedError

    def member_view(self, values: torch.Tensor) -> torch.Tensor:
        """One value per member, shaped to broadcast against a batch `(E, B, *sample)`."""
        return values.view(-1, *([1] * (1 + self.sample_ndim)))

    def per_sample_view(self, values: torch.Tensor) -> torch.Tensor:
        """One value per member, shaped to broadcast against per-sample values and times `(E, B)`."""
        view = self.member_view(values)
        return view.reshape(view.shape[:view.dim() - self.sample_ndim])

    def hparam(self, key: str, view: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """Per-member `key` in float32, shaped by `view` (default: against per-sample values)."""
        return (view or self.per_sample_view)(self.hp.f32(key))

    def per_member(self, values: torch.Tensor) -> torch.Tensor:
        """A batch-reduced quantity as one value per member, `(E,)`."""
        return values.reshape(self.n_members)

    def u_fn(self, model: torch.nn.Module, batch: Batch) -> Callable[..., torch.Tensor]:
        """`u(z, r, t)` of `model` for this batch (a task with labels binds them here)."""
        return model

    def jvp_fn(self, batch: Batch) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
        return self.model.jvp

    def conditional_velocity(self, batch: Batch, z: torch.Tensor) -> torch.Tensor:
        """`v_c = e - x` (docs/method.md 1); a guided task replaces it with its guided field."""
        return batch.e - batch.x

    def diagnostics_generators(self) -> torch.Generator | list[torch.Generator] | None:
        """The diagnostics stream's generator(s), which `draw_batch("diagnostics")` draws from: one per member
        where the batch has a member axis, a single one where it has none; None: the task has no such stream."""
        return None

    def stream_state(self) -> Any:
        return None

    def load_stream_state(self, state: Any) -> None:
        pass

    # --- the method -------------------------------------------------------------------------------
    def _bcast_time(self, time: torch.Tensor) -> torch.Tensor:
        return time.reshape(time.shape + (1,) * self.sample_ndim)

    def z_t(self, batch: Batch) -> torch.Tensor:
        """The point on the straight path at time t, `z_t = (1 - t) x + t e` (docs/method.md 1)."""
        t = self._bcast_time(batch.t)
        return (1 - t) * batch.x + t * batch.e

    def proxy_velocity(self, batch: Batch, z: torch.Tensor) -> torch.Tensor | None:
        """The deterministic proxy `u_bar(z_t, t)` of docs/method.md 3, or None for the conditional tangent."""
        return self.proxy.velocity(self.model, z, batch.t, bind=lambda m: self.u_fn(m, batch),
                                   offset=self.hparam("loss.offset"))

    def reference_proxy(self, batch: Batch, z: torch.Tensor) -> torch.Tensor:
        """The cell's proxy, or for a cell without one (tangent=conditional) the evaluation EMA at (z, t - D, t),
        the EMA proxy it could mix in: what the diagnostics and figures measure against."""
        u_bar = self.proxy_velocity(batch, z)
        if u_bar is not None:
            return u_bar
        with torch.no_grad():
            return self.u_fn(self.ema, batch)(z, boundary_r(batch.t, self.hparam("loss.offset")), batch.t)

    def step_alpha(self, batch: Batch, step: int) -> torch.Tensor:
        """The schedule's alpha at `step` for each sample of `batch` (by member, or by t - r for adaptive_h),
        shaped to broadcast against the samples. Computed outside the (compiled) loss: the schedule is Python."""
        return self._bcast_time(self.schedule.alpha(step, batch.t - batch.r))

    def losses(self, batch: Batch, alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-member losses for one batch at the per-sample `alpha` (`step_alpha`): `mf` (as trained, weighted),
        `mse` (unweighted), `anchor`, `proxy` (the proxy's own loss, if any), `total`."""
        z = self.z_t(batch)
        v_c = self.conditional_velocity(batch, z)
        v_tan = mix_tangent(v_c, self.proxy_velocity(batch, z), alpha)
        terms = meanflow_loss(
            self.jvp_fn(batch), z, batch.r, batch.t, v_c, v_tan,
            p=self.hparam("loss.adaptive_p"), eps=self.hparam("loss.adaptive_eps"), sample_ndim=self.sample_ndim,
        )
        out = {"mf": self.per_member(terms.weighted()), "mse": self.per_member(terms.mse())}
        out["total"] = out["mf"]
        if self.anchor_on:
            anchor = flow_matching_anchor(
                self.u_fn(self.model, batch), z, batch.t, v_c, self.hparam("loss.offset"), sample_ndim=self.sample_ndim
            )
            out["anchor"] = self.per_member(anchor.mean(-1))
            weight = self.per_member(self.hp.f32("loss.anchor_weight"))
            # A member without the anchor trains on `mf` alone, as its single run does (0 * inf would be NaN).
            out["total"] = torch.where(weight > 0, out["mf"] + weight * out["anchor"], out["mf"])
        extra = self.proxy.extra_loss(z, batch.t, v_c, bind=lambda m: self.u_fn(m, batch))
        if extra is not None:
            out["proxy"] = self.per_member(extra.mean(-1))
            weight = self.per_member(self.proxy.extra_loss_weight().to(out["proxy"].dtype))
            out["total"] = out["total"] + weight * out["proxy"]
        return out

    # --- Lightning --------------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.diag_cfg.every and self.diagnostics_generators() is None:
            log.warning("task %s has no diagnostics stream: diagnostics.every=%d ignored",
                        self.task_name, self.diag_cfg.every)
            self.diag_cfg = dataclasses.replace(self.diag_cfg, every=0)

    def training_step(self, _batch: Any, _idx: int) -> torch.Tensor:
        batch = self.draw_batch()
        losses = self.train_losses(batch, self.step_alpha(batch, self.global_step))
        total = losses["total"]
        finite = torch.isfinite(total.detach())
        self.diverged_at.copy_(torch.where(self.alive & ~finite, self.global_step + 1, self.diverged_at))
        self.alive &= finite
        self._accumulate({f"train/loss_{k}" if k != "mf" else "train/loss_weighted": v for k, v in losses.items()})
        # A diverged member's loss is masked out; members never share gradients, so the others go on.
        return torch.where(self.alive, total, torch.zeros_like(total)).sum()

    def configure_optimizers(self) -> Any:
        # Adam(W) is elementwise, so on stacked parameters it is E independent optimizers, each with its own
        # hyperparameters; the lr is set per step (`member_lr`) before each update.
        return MemberAdamW(self.trained_parameters(), lr=self.hp["trainer.lr"].clone(), betas=self.hp["trainer.betas"],
                           weight_decay=self.hp["trainer.weight_decay"])

    def trained_parameters(self) -> list[torch.nn.Parameter]:
        """The network's parameters and the proxy's trainable ones (a velocity head), stacked per member."""
        return list(self.model.parameters()) + self.proxy.trainable_parameters()

    def member_lr(self, step: int) -> torch.Tensor:
        """Each member's learning rate at optimizer step `step` (0-based): its base lr times its schedule."""
        max_steps = self.trainer.max_steps if self._trainer is not None else 1
        factor = lr_factor(step, max_steps, self.hp.list("trainer.lr_schedule"), self.hp["trainer.warmup_steps"])
        return self.hp["trainer.lr"] * factor

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.hp.any_positive("trainer.grad_clip"):
            norms = clip_grad_norm_per_member(self.trained_parameters(), self.hp["trainer.grad_clip"])
            self._accumulate({"train/grad_norm": norms})
        optimizer.lr = self.member_lr(self.global_step)

    def update_emas(self) -> None:
        """One step of the evaluation EMA (per-member decays) and the proxy's own update (its EMA, if any)."""
        ema_update(list(self.ema.parameters()), list(self.model.parameters()), self.hp.f32("trainer.ema_decay"))
        self.proxy.update(self.model)

    def on_train_batch_end(self, *_: Any) -> None:
        self.update_emas()
        if self.global_step % self.log_every == 0 or self.global_step == self.trainer.max_steps:
            self.check_divergence()
            self._flush(self.global_step)
            # the alpha the last step trained with (already on its trajectory: no side effect)
            self.log_member_values(self.global_step, self.schedule.log_values(self.global_step - 1))
        every = self.grad_var_cfg.every
        if every and self.global_step % every == 0:
            self.log_member_values(self.global_step, self.measure_grad_var())
        if self.eval_every and self.global_step % self.eval_every == 0:
            self.log_member_values(self.global_step, self.evaluate_during_training())
        every, step = self.diag_cfg.every, self.global_step
        if (every and step % every == 0) or self.schedule.wants_diagnostics(step):
            logged, stats = self.measure_diagnostics()
            self.log_member_values(step, logged)
            if self.schedule.wants_diagnostics(step):
                self.schedule.observe(step, summarise(stats), self.diag_cfg.bins)

