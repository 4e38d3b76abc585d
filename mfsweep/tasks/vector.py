"""Vector-data tasks: the six 2-D sets (`toy`) and Gaussian mixtures (`dgmm`), trained as an ensemble
of E members (E = 1 for a single run) with the stacked MLP."""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from mfsweep.method.proxy import Proxy
from mfsweep.method.sampler import sample
from mfsweep.method.schedule import AlphaSchedule
from mfsweep.metrics.sliced import PROJECTIONS_RECIPE, sliced_wasserstein
from mfsweep.models.mlp import EnsembleMLP
from mfsweep.config.arguments import check_vector, vector_arguments
from mfsweep.tasks.meanflow import Batch, CellEval, MeanFlowModule
from mfsweep.tasks.streams import Sampler, VectorStreams, generator


class _Ticks(IterableDataset):
    """Lightning wants a dataloader; batches come from the per-cell streams, so it only counts."""

    def __iter__(self) -> Iterator[int]:
        while True:
            yield 0


class VectorTask(MeanFlowModule):
    """MeanFlow on vectors in R^d for E members at once (member i: `schedule`'s alpha i, `seeds[i]`)."""

    task_name = "toy"
    sample_ndim = 1
    arguments = staticmethod(vector_arguments)  # its constructor's arguments from a composed config
    checks = staticmethod(check_vector)  # what it needs from the config beyond sections, dataset and model

    def __init__(
        self,
        dataset: Sampler,
        schedule: AlphaSchedule,
        seeds: Sequence[int],
        *,
        proxy: Proxy,
        width: int,
        depth: int,
        batch_size: int,
        time_cfg: dict[str, Any],
        curve_eval: dict[str, Any] | None = None,
        **kwargs: Any,
    ):
        if schedule.n_members != len(seeds):
            raise ValueError(f"one seed per member: got {schedule.n_members} members and {len(seeds)} seeds")
        model = EnsembleMLP(len(seeds), dataset.dim, width, depth)
        for i, seed in enumerate(seeds):
            model.init_member(i, generator(seed, "init"))
        # Gaussian mixtures and finite sets know their posterior: the oracle proxy and exact diagnostics.
        posterior = dataset if hasattr(dataset, "sample_posterior") else None
        oracle = posterior.marginal_velocity if posterior is not None else None
        super().__init__(model, schedule, proxy=proxy, oracle=oracle, posterior=posterior,
                         proxy_generators=[generator(seed, "proxy") for seed in seeds], **kwargs)
        self.dataset, self.seeds = dataset, list(seeds)
        self.batch_size, self.time_cfg = batch_size, dict(time_cfg)
        # Each member's (t, r) distribution: the job's, with the member's own time.* values.
        settings = kwargs.get("settings") or [{}] * len(seeds)
        self.member_time_cfgs = [self.time_cfg | {k.split(".", 1)[1]: v for k, v in s.items() if k.startswith("time.")}
                                 for s in settings]
        self.curve_eval = dict(curve_eval or {"every_n_samples": 2000, "n_steps": 1, "projection_seed": 0})
        self.streams = {p: VectorStreams(dataset, seeds, p) for p in ("train", "gradvar", "diagnostics")}

    @property
    def data_dim(self) -> int:
        return self.dataset.dim

    def draw_batch(self, purpose: str = "train", batch_size: int | None = None) -> Batch:
        # Diagnostics draw only r < t: samples with h = 0 add nothing to any sum of docs/method.md 4's alpha*.
        time_cfgs = [c | {"ratio": 1.0} for c in self.member_time_cfgs] if purpose == "diagnostics" \
            else self.member_time_cfgs
        b = self.streams[purpose].draw(batch_size or self.batch_size, time_cfgs)
        return Batch(*(v.to(self.device) for v in (b.x, b.e, b.t, b.r)))

    def diagnostics_generators(self) -> list[torch.Generator]:
        return self.streams["diagnostics"].generators

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Ticks(), batch_size=None)

    def stream_state(self) -> Any:
        return {p: s.get_state() for p, s in self.streams.items()}

    def load_stream_state(self, state: Any) -> None:
        for p, s in self.streams.items():
            s.set_state(state[p])

    @torch.no_grad()
    def generate(self, n: int, n_steps: int = 1, chunk: int = 4096) -> torch.Tensor:
        """`n` samples per member from the evaluation EMA, from each cell's own evaluation noise: (E, n, d)."""
        noise = torch.stack([torch.randn(n, self.dataset.dim, generator=generator(s, "eval")) for s in self.seeds])
        noise = noise.to(self.device)
        parts = [sample(self.ema, noise[:, i:i + chunk], n_steps) for i in range(0, n, chunk)]
        return torch.cat(parts, dim=1).cpu()

    def evaluate_during_training(self) -> dict[str, torch.Tensor]:
        """SW1/SW2 on `eval.every_n_samples` points and 200 directions: the convergence curve in the history."""
        c = self.curve_eval
        results = self.evaluate(c["every_n_samples"], 200, c["projection_seed"], c["n_steps"])
        nan = float("nan")
        return {f"eval/{k}": torch.tensor([r.metrics.get(k, nan) for r in results]) for k in ("sw1", "sw2")}

    def evaluate(self, n_samples: int, n_projections: int, projection_seed: int, n_steps: int = 1, **_: Any) -> list[CellEval]:
        """SW1/SW2 of each member's samples against a fresh reference set drawn from the cell's seed, and the
        noise floor `sw1_floor`/`sw2_floor`: the same distances between that reference set and a second,
        independent one of the same size (the value a perfect generator would score)."""
        generated = self.generate(n_samples, n_steps).numpy()
        info = {"n_samples": n_samples, "n_projections": n_projections, "projection_seed": projection_seed,
                "projections": PROJECTIONS_RECIPE, "n_steps": n_steps, "model": "evaluation EMA",
                "samples_file": "samples.npz"}
        results = []
        for i, seed in enumerate(self.seeds):
            reference = self.dataset.sample(n_samples, generator(seed, "reference")).numpy()
            gen = generated[i]
            metrics = sliced_wasserstein(gen, reference, n_projections, projection_seed) if np.isfinite(gen).all() else {}
            floor_set = self.dataset.sample(n_samples, generator(seed, "floor")).numpy()
            floor = sliced_wasserstein(floor_set, reference, n_projections, projection_seed)
            metrics |= {f"{k}_floor": v for k, v in floor.items()}
            results.append(CellEval(metrics, info, {"generated": gen, "reference": reference}))
        return results


class GaussianMixtureTask(VectorTask):
    task_name = "dgmm"
