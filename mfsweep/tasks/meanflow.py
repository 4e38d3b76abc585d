"""The MeanFlow LightningModule shared by every task.

It trains `E >= 1` members at once, each with its own alpha schedule (`AlphaSchedule`, one alpha per member and
step, or per sample) and proxy (`Proxy`), with the paper's loss from `mfsweep.method`: tangent mixing
(docs/method.md 3), adaptive weighting and the flow-matching anchor. A task
subclass supplies the batches (`draw_batch`), how one value per member broadcasts against a batch
(`member_view`), and the evaluation. Members never interact: each has its own parameters (stacked),
hyperparameters (`MemberValues`: lr, betas, weight decay, clipping, EMA decays, loss weights, ...), optimizer
state (elementwise), gradient clipping, EMA and divergence flag, so member i trains exactly as a single run of
cell i would.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import lightning as L
import torch

from mfsweep.config.sections import DiagnosticsConfig, GradVarConfig, LossConfig, OptimConfig, Section
from mfsweep.method.ema import ema_update
from mfsweep.method.gradvar import StreamingTotalVariance
from mfsweep.method.loss import flow_matching_anchor, meanflow_loss
from mfsweep.method.proxy import Proxy
from mfsweep.method.schedule import AlphaSchedule
from mfsweep.method.tangent import boundary_r, mix_tangent
from mfsweep.tasks.diagnostics import (
    LOGGED,
    STATS,
    Posterior,
    bin_statistics,
    mean_square,
    measure,
    record_summary,
    sample_fluctuations,
    summarise,
)
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


def job_values(*sections: Section) -> dict[str, Any]:
    """The module's per-member keys at their job-level values, by config key (`trainer.lr`)."""
    return {f"{s.group}.{f.name}": (list(v) if isinstance(v := getattr(s, f.name), tuple) else v)
            for s in sections for f in dataclasses.fields(s)}


class MeanFlowModule(L.LightningModule):
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
        base = job_values(optim, loss)
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
        self.diverged_step: list[int | None] = [None] * self.n_members
        self.history: list[list[dict[str, float]]] = [[] for _ in range(self.n_members)]
        self.pending: list[tuple[int, list[dict[str, float]]]] = []
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

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
        t = self._bcast_time(batch.t)
        z = (1 - t) * batch.x + t * batch.e
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

    def check_divergence(self) -> None:
        """Copy the device-side divergence flags to the host (`diverged_step`); stop when every member diverged."""
        for i, step in enumerate(self.diverged_at.tolist()):
            if step and self.diverged_step[i] is None:
                self.diverged_step[i] = step
        if all(s is not None for s in self.diverged_step):
            self.trainer.should_stop = True

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

    # --- gradient variance (docs/method.md 5) ------------------------------------------------------------
    def member_gradients(self, loss: torch.Tensor, retain_graph: bool = False) -> torch.Tensor:
        """d(loss_i)/d(theta_i) flattened per member, `(E, P)`; leaves `.grad` untouched (before clipping)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss.sum(), params, retain_graph=retain_graph, allow_unused=True)
        rows = self.n_members if getattr(self.model, "n_members", None) else 1
        flat = [(g if g is not None else torch.zeros_like(p)).reshape(rows, -1) for g, p in zip(grads, params)]
        return torch.cat(flat, dim=1)

    def measure_grad_var(self) -> dict[str, torch.Tensor]:
        """Total variance of the minibatch gradient over `replicas` independent minibatches, per member:
        `diag/grad_var` for the MeanFlow term as trained (its weighting included, the anchor excluded) so that
        alphas compare, `diag/grad_var_total` for the whole objective."""
        cfg = self.grad_var_cfg
        mf, total = StreamingTotalVariance(), StreamingTotalVariance()
        for _ in range(cfg.replicas):
            batch = self.draw_batch("gradvar", cfg.batch_size)
            # the alpha of the step just trained (on the schedule's trajectory already: no side effect)
            losses = self.losses(batch, self.step_alpha(batch, self.global_step - 1))
            g_mf = self.member_gradients(losses["mf"], retain_graph="anchor" in losses)
            mf.add(g_mf)
            if "anchor" in losses:
                weight = self.hp["loss.anchor_weight"].to(g_mf.dtype).view(-1, 1)
                g_mf = g_mf + weight * self.member_gradients(losses["anchor"])
            total.add(g_mf)
        return {"diag/grad_var": mf.value().float(), "diag/grad_var_total": total.value().float()}

    # --- diagnostics (docs/method.md 4) -------------------------------------------------------------------
    @torch.no_grad()
    def measure_diagnostics(self) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The ingredients of docs/method.md 4 and the predicted alpha* on a batch of the diagnostics stream, one
        value per member (`mfsweep.tasks.diagnostics`), and the summed statistics `(E, n_bins + 1, S)` (kept for
        the record, and what an adaptive schedule observes).

        The proxy is the cell's own (`reference_proxy`: its `Proxy.velocity`, e.g. the proxy EMA at
        (z, t - D, t) or the oracle); a cell without one (tangent=conditional) is measured against the
        evaluation EMA at (z, t - D, t), the EMA proxy it could mix in. sigma2 is exact where the dataset has a
        posterior, else the flow-matching floor `||u_theta(z, t, t) - v_c||^2 / d`: its expectation given z is
        `tr(Sigma) / d` plus the network's own error `||u_theta(z, t, t) - v||^2 / d`, so it bounds sigma2 from
        above, tightly once the network has learned v. bias2 is exact against the oracle where known, else the
        tracking gap `||u_theta(z, t - D, t) - u_bar(z, t)||^2 / d` to that proxy, which is always logged too.
        """
        cfg, nd = self.diag_cfg, self.sample_ndim
        batch = self.draw_batch("diagnostics", cfg.batch_size)
        gens = self.diagnostics_generators()
        z = (1 - self._bcast_time(batch.t)) * batch.x + self._bcast_time(batch.t) * batch.e
        r_near = boundary_r(batch.t, self.hparam("loss.offset"))
        u_near = self.u_fn(self.model, batch)(z, r_near, batch.t)
        u_bar = self.reference_proxy(batch, z)
        gap = mean_square(u_near - u_bar, nd)
        delta = bias = None
        if self.posterior is None:
            v_c = self.conditional_velocity(batch, z)
            sigma2, bias2 = mean_square(self.u_fn(self.model, batch)(z, batch.t, batch.t) - v_c, nd), gap
        else:
            bias = u_bar - self.posterior.marginal_velocity(z, batch.t)
            sigma2, bias2 = self.posterior.sigma2(z, batch.t), mean_square(bias, nd)
            delta = sample_fluctuations(self.posterior, z, batch.t, cfg.n_fluctuations, gens)
        ingredients = measure(self.jvp_fn(batch), z, batch.r, batch.t, generators=gens, n_probes=cfg.n_probes,
                              sigma2=sigma2, bias2=bias2, gap=gap, delta=delta, bias=bias, sample_ndim=nd)
        stats = bin_statistics(ingredients, cfg.bins).reshape(self.n_members, len(cfg.bins), len(STATS))
        self.diag_stats.append((self.global_step, stats.cpu()))
        values = summarise(stats[:, -1])
        return {f"diag/{k}": values[k].float() for k in LOGGED if not bool(values[k].isnan().all())}, stats

    def diagnostics_summary(self, member: int) -> dict[str, Any] | None:
        """The record's `diagnostics` for `member`, or None when nothing was measured: sums over the last half
        of the measurements (the second half of training, as for grad_var), overall and per t - r bin."""
        if not self.diag_stats:
            return None
        tail = self.diag_stats[-max(1, int(round(len(self.diag_stats) * 0.5))):]
        summary = record_summary([stats[member] for _, stats in tail], self.diag_cfg.bins)
        exact = self.posterior is not None
        summary["measured"] |= {
            "from_step": tail[0][0],
            "proxy": {"conditional": "evaluation_ema"}.get(self.proxy.name, self.proxy.name),
            "sigma2_source": "exact" if exact else "flow_matching_floor",
            "bias2_source": "oracle" if exact else "ema_tracking_gap",
        }
        return summary

    # --- history ----------------------------------------------------------------------------------
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
