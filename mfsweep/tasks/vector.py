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
from mfsweep.metrics.sliced import (DIRECTIONS_RECIPE, PROJECTIONS_RECIPE, directions, reference_quantiles,
                                    sliced_wasserstein, split_estimate, summarise_splits, sw_to_quantiles)
from mfsweep.models.mlp import EnsembleMLP
from mfsweep.config.arguments import check_vector, vector_arguments
from mfsweep.tasks.meanflow import Batch, CellEval, MeanFlowModule
from mfsweep.tasks.streams import Sampler, VectorStreams, derive_seed, generator

KEPT_SAMPLES = 10_000  # points of each set kept in samples.npz (for looking at; the estimate used all)


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
        # a config from before the estimators were named evaluated its curve sample against sample
        self.curve_eval = {"every_n_samples": 2000, "n_steps": 1, "projection_seed": 0, "estimator": "samples",
                           "n_projections": 200, "reference_ratio": 1} | dict(curve_eval or {})
        self._curve_reference: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # seed -> directions, block means
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
    def generate(self, n: int, n_steps: int = 1, chunk: int = 4096, draw: int = 0) -> torch.Tensor:
        """`n` samples per member from the evaluation EMA, from each cell's own evaluation noise of evaluation
        draw `draw`: (E, n, d)."""
        noise = torch.stack([torch.randn(n, self.dataset.dim, generator=generator(s, "eval", draw)) for s in self.seeds])
        noise = noise.to(self.device)
        parts = [sample(self.ema, noise[:, i:i + chunk], n_steps) for i in range(0, n, chunk)]
        return torch.cat(parts, dim=1).cpu()

    def evaluate_during_training(self) -> dict[str, torch.Tensor]:
        """SW1/SW2 on `eval.every_n_samples` points: the convergence curve in the history. The `quantile`
        estimator at that size in one split, against a pool reduced once per seed (evaluation draw 0 whatever
        `eval.draw`: the history is training's); the `samples` estimator over 200 directions."""
        c = self.curve_eval
        if c["estimator"] == "samples":
            results = self.evaluate(c["every_n_samples"], 200, c["projection_seed"], c["n_steps"], estimator="samples")
            nan = float("nan")
            return {f"eval/{k}": torch.tensor([r.metrics.get(k, nan) for r in results]) for k in ("sw1", "sw2")}
        n = c["every_n_samples"]
        generated = self.generate(n, c["n_steps"]).numpy()
        sw = np.full((2, len(self.seeds)), np.nan)
        for i, seed in enumerate(self.seeds):
            if seed not in self._curve_reference:
                dirs = directions(self.dataset.dim, c["n_projections"], self._direction_rng(c["projection_seed"], seed, 0))
                pool = self.dataset.sample(c["reference_ratio"] * n, generator(seed, "pool")).numpy()
                self._curve_reference[seed] = dirs, reference_quantiles(pool, dirs, n)
            if np.isfinite(generated[i]).all():
                sw[:, i] = [v[0] for v in sw_to_quantiles(generated[i][None], *self._curve_reference[seed])]
        return {"eval/sw1": torch.tensor(sw[0]), "eval/sw2": torch.tensor(sw[1])}

    @staticmethod
    def _direction_rng(projection_seed: int, seed: int, draw: int) -> np.random.Generator:
        return np.random.default_rng([int(projection_seed), derive_seed(seed, "directions", draw)])

    def split_directions(self, seed: int, n_splits: int, n_projections: int, projection_seed: int,
                         draw: int) -> list[np.ndarray]:
        """The `quantile` estimator's (d, L) directions of each split, for the members of `seed` in evaluation
        draw `draw`. Apart from `split_pools` and `generate` so that one source of the draw can vary alone
        (benchmarks/evaluation_sources.py)."""
        rng = self._direction_rng(projection_seed, seed, draw)
        return [directions(self.dataset.dim, n_projections, rng) for _ in range(n_splits)]

    def split_pools(self, seed: int, sizes: Sequence[int], reference_ratio: int, draw: int) -> list[np.ndarray]:
        """Each split's reference pool, `reference_ratio` points per generated point of its `sizes`, for the
        members of `seed` in evaluation draw `draw`."""
        pool_gen = generator(seed, "pool", draw)
        return [self.dataset.sample(reference_ratio * n, pool_gen).numpy() for n in sizes]

    def evaluate(self, n_samples: int, n_projections: int, projection_seed: int, n_steps: int = 1,
                 estimator: str = "samples", reference_ratio: int = 1, n_splits: int = 1, draw: int = 0,
                 **_: Any) -> list[CellEval]:
        """SW1/SW2 of each member's samples (evaluation draw `draw`) and the noise floor `sw1_floor`/`sw2_floor`:
        the same estimator applied to a fresh draw of the data, the value a perfect generator would score. The
        `quantile` estimator (docs/method.md 5) adds each value's standard error over its `n_splits` splits
        (`sw1_se`, ...) and keeps the per-split values in `eval.splits`, so a paired difference gets its own."""
        if estimator == "samples":
            return self._evaluate_samples(n_samples, n_projections, projection_seed, n_steps, draw)
        generated = self.generate(n_samples, n_steps, draw=draw).numpy()
        info = {"estimator": "quantile", "n_samples": n_samples, "reference_ratio": reference_ratio,
                "n_splits": n_splits, "n_projections": n_projections, "projection_seed": projection_seed,
                "draw": draw, "directions": DIRECTIONS_RECIPE, "n_steps": n_steps, "model": "evaluation EMA",
                "samples_file": "samples.npz", "samples": f"the first {KEPT_SAMPLES} generated and floor points"}
        parts = np.array_split(np.arange(n_samples), n_splits)
        results: list[CellEval | None] = [None] * len(self.seeds)
        for seed in dict.fromkeys(self.seeds):
            # The members of one seed (its alphas) share the pool, the directions and the floor set: common
            # random numbers, so their paired difference carries no reference noise of its own.
            members = [i for i, s in enumerate(self.seeds) if s == seed]
            dirs = self.split_directions(seed, len(parts), n_projections, projection_seed, draw)
            pools = self.split_pools(seed, [len(p) for p in parts], reference_ratio, draw)
            floor_set = self.dataset.sample(n_samples, generator(seed, "floor", draw)).numpy()
            points = np.concatenate([generated[members], floor_set[None]])
            est = split_estimate([points[:, p] for p in parts], pools, dirs)
            for j, i in enumerate(members):
                metrics, splits = {}, {}
                for k in ("sw1", "sw2"):
                    if np.isfinite(generated[i]).all():
                        metrics[k], metrics[f"{k}_se"] = summarise_splits(est[k][j])
                        splits[k] = est[k][j].tolist()
                    metrics[f"{k}_floor"], metrics[f"{k}_floor_se"] = summarise_splits(est[k][-1])
                    splits[f"{k}_floor"] = est[k][-1].tolist()
                results[i] = CellEval(metrics, info | {"splits": splits},
                                      {"generated": generated[i][:KEPT_SAMPLES], "reference": floor_set[:KEPT_SAMPLES]})
        return results

    def _evaluate_samples(self, n_samples: int, n_projections: int, projection_seed: int, n_steps: int,
                          draw: int) -> list[CellEval]:
        """The `samples` estimator: against a reference set of the same size drawn from the cell's seed, the
        floor between that set and a second one."""
        generated = self.generate(n_samples, n_steps, draw=draw).numpy()
        info = {"n_samples": n_samples, "n_projections": n_projections, "projection_seed": projection_seed,
                "projections": PROJECTIONS_RECIPE, "n_steps": n_steps, "model": "evaluation EMA",
                "samples_file": "samples.npz", "estimator": "samples", "draw": draw}
        results = []
        for i, seed in enumerate(self.seeds):
            reference = self.dataset.sample(n_samples, generator(seed, "reference", draw)).numpy()
            gen = generated[i]
            metrics = sliced_wasserstein(gen, reference, n_projections, projection_seed) if np.isfinite(gen).all() else {}
            floor_set = self.dataset.sample(n_samples, generator(seed, "floor", draw)).numpy()
            floor = sliced_wasserstein(floor_set, reference, n_projections, projection_seed)
            metrics |= {f"{k}_floor": v for k, v in floor.items()}
            results.append(CellEval(metrics, info, {"generated": gen, "reference": reference}))
        return results


class GaussianMixtureTask(VectorTask):
    task_name = "dgmm"
