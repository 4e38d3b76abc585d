"""What the MeanFlow module measures while it trains, beside the loss: the total variance of the minibatch
gradient (docs/method.md 5) and the ingredients of the optimal alpha (docs/method.md 4, `mfsweep.tasks.diagnostics`).

A mixin of `MeanFlowModule`: it reads the module's batches (`draw_batch`), losses and proxies, and keeps the
diagnostics' summed statistics (`diag_stats`, in the checkpoint) for the record."""
from __future__ import annotations

from typing import Any

import torch

from mfsweep.method.gradvar import StreamingTotalVariance
from mfsweep.method.tangent import boundary_r
from mfsweep.tasks.diagnostics import LOGGED, STATS, bin_statistics, mean_square, measure, record_summary, \
    sample_fluctuations, summarise


class Measurement:
    """Gradient variance and diagnostics of every member (`MeanFlowModule` supplies the rest)."""

    diag_stats: list[tuple[int, torch.Tensor]]  # (step, summed STATS (E, n_bins + 1, S))

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
        z = self.z_t(batch)
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
