"""The latent DiT task (`dataset.task=latent_dit`): class-conditional MeanFlow with a DiT (docs/method.md 2) on
VAE latents (ImageNet 256, the paper's DiT-B/4 sweep) or on small pixel images (the CPU demo), scored by FID.

One cell per process: one alpha, one seed (E = 1 member); a grid is a per-run multirun, one job per cell.
Tangent mixing, the EMA proxy, the anchor and the adaptive weight are the shared MeanFlowModule's.

Random streams. Every draw is made outside the model, from the cell's generators (`streams.generator`).
Per step, in this order, from the `train` stream: B data indices (uniform over the N samples, WITH
replacement), the noise (B, C, H, W), (t, r) (`method.time.sample_t_r`), B uniforms for label dropout.
Sampling with replacement keeps the data stream a pure function of seed and step (no DataLoader or epoch
state), so a resumed run replays it exactly; an "epoch" is N / B steps in expectation.

Distributed (Lightning DDP). `trainer.batch_size` is the global batch. Every rank draws the same global
batch from the same generator and keeps its rows (rank k of W: rows k B / W to (k + 1) B / W), so W
processes take the gradient of the whole batch's mean loss, as one process would (DDP averages the
per-rank means of equal slices). The JVP is taken on the DiT itself (`self.model`), which Lightning's DDP
wrapper only encloses: `torch.func.jvp` never sees the wrapper, and the loss backpropagates through the
JVP's primal output, so DDP's gradient hooks all-reduce as for any forward (tests/tasks/test_ddp.py checks it).
Logged losses and the divergence flag are averaged over ranks, so every rank stops at the same step.
Gradient-variance replicas use the whole batch on every rank. FID runs on rank 0 only.

Precision. With `trainer.precision=bf16-mixed` Lightning autocasts the training step to bf16. The JVP pass
is taken out of autocast and fed fp32 inputs (the parameters stay fp32 under mixed precision), so `du/dt`
and the target `v - (t - r) du/dt` are fp32, as in py-meanflow (which disables autocast around its JVP);
the plain forwards run in bf16 (the r = t rows' prediction, guidance u's, EMA proxy, anchor).
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from mfsweep.config.arguments import check_latent, latent_arguments
from mfsweep.config.sections import FIDConfig, GuidanceConfig
from mfsweep.data.images import ImageData
from mfsweep.method.guidance import drop_labels, guidance_active, guided_velocity
from mfsweep.method.sampler import sample
from mfsweep.method.schedule import AlphaSchedule
from mfsweep.method.time import sample_t_r
from mfsweep.metrics.fid import FID, JackknifeFID, check_blocks
from mfsweep.models.dit import DiT
from mfsweep.tasks.meanflow import Batch, CellEval, MeanFlowModule
from mfsweep.tasks.streams import derive_seed, generator
from mfsweep.tasks.vector import _Ticks

# Every cell scores against the same reference set (so its statistics are computed once per sweep).
REFERENCE_SEED = 0
# samples.npz is for looking at: eval.n_samples (10,000 by default, sized for the 2-D sets) is capped.
MAX_KEPT_IMAGES = 256


class _NonFinite(Exception):
    """Generated samples hold NaN/inf: no FID (the record says diverged)."""


def _uint8_nhwc(images: torch.Tensor) -> np.ndarray:
    return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class LatentDiTTask(MeanFlowModule):
    """Guided MeanFlow with a class-conditional DiT on one image-like set, for one (alpha, seed) cell."""

    task_name = "latent_dit"
    sample_ndim = 3
    arguments = staticmethod(latent_arguments)  # its constructor's arguments from a composed config
    checks = staticmethod(check_latent)  # what it needs from the config beyond sections, dataset and model

    def __init__(
        self,
        data: ImageData,
        schedule: AlphaSchedule,
        seed: int,
        *,
        model_cfg: dict[str, Any],
        num_classes: int,
        batch_size: int,
        time_cfg: dict[str, Any],
        guidance: GuidanceConfig,
        fid: FIDConfig,
        fid_samples: int = 50_000,
        eval_samples: int = 5_000,
        eval_steps: int = 1,
        threads: int | None = None,
        **kwargs: Any,
    ):
        c, h, w = data.shape
        if h != w:
            raise ValueError(f"the DiT takes square samples, got {data.shape}")
        if data.num_classes != num_classes:
            raise ValueError(f"dataset.num_classes is {num_classes} but the data has {data.num_classes} classes")
        # DiT's initialisation draws from the global RNG: seed it from the cell's init stream, in a fork.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(seed, "init"))
            model = DiT(input_size=h, in_channels=c, num_classes=num_classes, **model_cfg)
        super().__init__(model, schedule, proxy_generators=[generator(seed, "proxy")], **kwargs)
        self.data, self.seed, self.batch_size, self.time_cfg = data, seed, batch_size, dict(time_cfg)
        self.guidance, self.fid_cfg = guidance, fid
        self.fid_samples, self.eval_samples, self.eval_steps = fid_samples, eval_samples, eval_steps
        self.generators = {p: generator(seed, p) for p in ("train", "gradvar", "diagnostics")}
        self.threads, self._saved_threads = threads, None
        self._fid: FID | None = None

    @property
    def data_dim(self) -> int:
        return math.prod(self.data.shape)

    # --- batches ----------------------------------------------------------------------------------
    def _world(self) -> tuple[int, int]:
        """(rank, world size); (0, 1) outside a trainer."""
        trainer = self._trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def draw_batch(self, purpose: str = "train", batch_size: int | None = None) -> Batch:
        """The global batch of the `purpose` stream; for training, this rank's rows of it. Diagnostics draw only
        r < t (samples with h = 0 add nothing to docs/method.md 4's sums)."""
        g, n = self.generators[purpose], batch_size or self.batch_size
        index = torch.randint(len(self.data), (n,), generator=g)
        e = torch.randn((n, *self.data.shape), generator=g)
        t, r = sample_t_r(n, g, **(self.time_cfg | {"ratio": 1.0} if purpose == "diagnostics" else self.time_cfg))
        draws = torch.rand(n, generator=g)
        rows = slice(None)
        rank, world = self._world()
        if purpose == "train" and world > 1:
            if n % world:
                raise ValueError(f"trainer.batch_size {n} must be divisible by the number of processes {world}")
            rows = slice(rank * n // world, (rank + 1) * n // world)
        x, y = self.data.fetch(index[rows])
        y, _ = drop_labels(y, draws[rows], self.guidance.label_dropout, self.model.null_class)
        return Batch(*(v.to(self.device) for v in (x, e[rows], t[rows], r[rows], y)))

    # Small models on a busy CPU run far faster on one intra-op thread (`trainer.threads`, the CPU demo's 1):
    # for training and evaluation, restored afterwards.
    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.threads:
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def on_fit_end(self) -> None:
        if self._saved_threads:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    @contextlib.contextmanager
    def _cpu_threads(self) -> Iterator[None]:
        saved = torch.get_num_threads()
        torch.set_num_threads(self.threads or saved)
        try:
            yield
        finally:
            torch.set_num_threads(saved)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Ticks(), batch_size=None)

    def diagnostics_generators(self) -> torch.Generator:
        return self.generators["diagnostics"]

    def stream_state(self) -> Any:
        return {p: g.get_state() for p, g in self.generators.items()}

    def load_stream_state(self, state: Any) -> None:
        for p, g in self.generators.items():
            g.set_state(state[p])

    # --- the method's hooks -------------------------------------------------------------------------
    def member_view(self, values: torch.Tensor) -> torch.Tensor:
        # One member and no member axis: the batch is (B, C, H, W).
        return values.view(*([1] * (1 + self.sample_ndim)))

    def u_fn(self, model: torch.nn.Module, batch: Batch) -> Callable[..., torch.Tensor]:
        return lambda z, r, t: model(z, r, t, batch.y)

    def jvp_fn(self, batch: Batch) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
        """`(u, du)` along `(dz, dr, dt)`, with the JVP taken only where r < t.

        MeanFlow uses `du` only as `(t - r) du` (docs/method.md 2), so rows with r = t (a share 1 - time.ratio of
        the batch, 75% in the MF-B/4 recipe) get `du = 0` and their `u` from one plain forward (fused
        attention, bf16 under bf16-mixed): the loss and its gradient are unchanged, and forward-mode AD runs
        on the r < t rows only, in fp32 outside autocast. Diagnostics draw r < t only, where `du` is exact.
        """
        y = batch.y

        def jvp(z, r, t, dz, dr, dt):
            rows, flat = torch.nonzero(r < t).flatten(), torch.nonzero(r >= t).flatten()
            u = z.new_zeros(z.shape, dtype=torch.float32)
            du = torch.zeros_like(u)
            if len(rows):
                with torch.autocast(z.device.type, enabled=False):  # fp32 JVP under a bf16 training step
                    u_j, du_j = self.model.jvp(*(a[rows].float() for a in (z, r, t, dz, dr, dt)), y[rows])
                u, du = u.index_put((rows,), u_j), du.index_put((rows,), du_j)
            if len(flat):
                u = u.index_put((flat,), self.model(z[flat], r[flat], t[flat], y[flat]).float())
            return u, du
        return jvp

    def conditional_velocity(self, batch: Batch, z: torch.Tensor) -> torch.Tensor:
        """The guided field `v_g` (docs/method.md 2) where guidance applies, `v_c = e - x` elsewhere.

        The two u's are the ONLINE network's instantaneous velocities `u(z, t, t | y)` and `u(z, t, t | null)`
        (current weights, not the EMA), under no_grad, in one forward of the doubled batch: MeanFlow's
        definition, with the network under stop-gradient. (py-meanflow, the PyTorch port, trains unconditional
        CIFAR-10 and has no guidance to copy; it evaluates its JVP with the online network too.)
        """
        v_c = batch.e - batch.x
        g = self.guidance
        if not g.enabled:
            return v_c
        null = torch.full_like(batch.y, self.model.null_class)
        with torch.no_grad():
            both = self.model(torch.cat([z, z]), torch.cat([batch.t, batch.t]), torch.cat([batch.t, batch.t]),
                              torch.cat([batch.y, null]))
        u_cond, u_uncond = both.float().chunk(2)
        active = guidance_active(batch.t, batch.y == null, g.t_min, g.t_max)
        return torch.where(self._bcast_time(active), guided_velocity(v_c, u_cond, u_uncond, g.omega, g.mix), v_c)

    def losses(self, batch: Batch, alpha: torch.Tensor) -> dict[str, torch.Tensor]:
        out = super().losses(batch, alpha)
        if self._world()[1] == 1:
            return out
        # Each value becomes the global batch's (for the logs and the divergence flag, which every rank must
        # agree on); the gradient stays this rank's, which DDP averages itself.
        keys = list(out)
        mean = self.trainer.strategy.reduce(torch.stack([out[k].detach() for k in keys]), reduce_op="mean")
        return {k: out[k] + (mean[i] - out[k].detach()) for i, k in enumerate(keys)}

    # --- evaluation ---------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, n: int, n_steps: int = 1, draw: int = 0) -> Iterator[torch.Tensor]:
        """`n` samples from the evaluation EMA in batches, classes balanced (sample i has class i mod K), from
        the cell's evaluation noise of evaluation draw `draw` (the same at every evaluation, so FID-vs-step
        compares like with like; the same for every alpha of a seed, so their FIDs are paired sample by sample)."""
        g, size = generator(self.seed, "eval", draw), self.fid_cfg.batch_size
        for start in range(0, n, size):
            m = min(size, n - start)
            noise = torch.randn((m, *self.data.shape), generator=g).to(self.device)
            y = (torch.arange(start, start + m) % self.data.num_classes).to(self.device)
            yield sample(lambda z, r, t: self.ema(z, r, t, y), noise, n_steps, time_shape=(m,))

    def _reference_index(self, n: int) -> torch.Tensor:
        return torch.randperm(len(self.data), generator=generator(REFERENCE_SEED, "reference"))[:n]

    def _images(self, index: torch.Tensor) -> Iterator[torch.Tensor]:
        for part in index.split(self.fid_cfg.batch_size):
            yield self.data.to_images(self.data.fetch(part)[0].to(self.device))

    def fid(self) -> FID:
        """The FID scorer, with its reference statistics: the file `metrics.fid.reference_stats`, or the first
        `eval.fid_samples` samples (capped at the set's size) of one fixed permutation of the training set,
        as FID sees them (decoded), computed once and cached under `metrics.fid.cache_dir`."""
        if self._fid is None:
            with self._cpu_threads():
                self._fid = self._make_fid()
        return self._fid

    def _make_fid(self) -> FID:
        cfg = self.fid_cfg
        cache = Path(cfg.cache_dir).expanduser()
        n_ref = min(self.fid_samples, len(self.data))
        source = cfg.reference_stats or f"{self.data.description}|first {n_ref} of permutation {REFERENCE_SEED}"
        key = hashlib.sha1(f"{cfg.features}|{source}".encode()).hexdigest()[:16]
        common = dict(reference_cache=cache / f"fid_reference-{key}.npz", batch_size=cfg.batch_size, device=self.device)
        if cfg.features == "inception":
            fid = FID(inception_weights=cfg.inception_weights, **common)
        elif cfg.features == "classifier":
            from mfsweep.metrics.classifier import cached_classifier_features

            x, y = self.data.fetch(torch.arange(len(self.data)))
            name = f"classifier-{'x'.join(map(str, self.data.shape))}-{self.data.num_classes}classes"
            fid = FID(feature=cached_classifier_features(cache, name, x, y, self.data.num_classes), **common)
        else:
            raise ValueError(f"metrics.fid.features must be 'inception' or 'classifier', got {cfg.features!r}")
        if cfg.reference_stats:
            _install_reference_stats(fid, Path(cfg.reference_stats).expanduser())
        fid.set_reference(self._images(self._reference_index(n_ref)))
        return fid

    def _score(self, n: int, n_steps: int, keep: int = 0, n_blocks: int = 1,
               draw: int = 0) -> tuple[JackknifeFID, np.ndarray]:
        """FID of `n` generated samples (evaluation draw `draw`) with its jackknife over `n_blocks` blocks of whole
        rounds of the classes, and the first `keep` samples as uint8 (N, H, W, 3) images."""
        kept: list[np.ndarray] = []

        def images() -> Iterator[torch.Tensor]:
            have = 0
            for z in self.generate(n, n_steps, draw):
                if not torch.isfinite(z).all():
                    raise _NonFinite
                batch = self.data.to_images(z)
                if have < keep:
                    kept.append(_uint8_nhwc(batch[: keep - have]))
                    have += len(kept[-1])
                yield batch

        fid = self.fid().jackknife(images(), n_blocks, self.data.num_classes)
        return fid, (np.concatenate(kept) if kept else np.zeros((0, 0, 0, 3), np.uint8))

    def evaluate_during_training(self) -> dict[str, torch.Tensor]:
        """FID of `eval.every_n_samples` samples against the same reference, as `eval/fid` (rank 0 only)."""
        if self.global_rank != 0:
            return {}
        try:
            fid = self._score(self.eval_samples, self.eval_steps)[0].fid
        except _NonFinite:
            fid = float("nan")
        return {"eval/fid": torch.tensor([fid])}

    def evaluate(self, fid_samples: int, n_samples: int, n_steps: int = 1, n_splits: int = 1, draw: int = 0,
                 **_: Any) -> list[CellEval]:
        """FID of `fid_samples` one-step (or `n_steps`) samples of the evaluation EMA (evaluation draw `draw`) and,
        for `n_splits` K >= 2, its jackknife standard error over the generated samples (`fid_se`; the K
        pseudo-values in `eval.splits`, docs/method.md 5); `samples.npz` keeps the first `n_samples` (at most
        MAX_KEPT_IMAGES) generated and reference images, uint8 (N, H, W, 3), for looking at, not rescoring."""
        check_blocks(n_splits, fid_samples, self.data.num_classes)
        with self._cpu_threads():
            return self._evaluate(fid_samples, min(n_samples, MAX_KEPT_IMAGES), n_steps, n_splits, draw)

    def _evaluate(self, fid_samples: int, n_samples: int, n_steps: int, n_blocks: int, draw: int) -> list[CellEval]:
        cfg, fid = self.fid_cfg, self.fid()
        info = {
            "n_samples": fid_samples, "n_steps": n_steps, "draw": draw, "model": "evaluation EMA",
            "labels": "balanced: sample i has class i mod num_classes",
            "jackknife_blocks": n_blocks,
            "blocks": "sample i in block (i // num_classes) mod jackknife_blocks; eval.splits.fid: the blocks' "
                      "jackknife pseudo-values K fid - (K - 1) fid without the block",
            "fid_features": (f"Inception-v3 pool3 (torch-fidelity weights {cfg.inception_weights})"
                             if cfg.features == "inception" else "penultimate layer of a digit classifier (seed 0)"),
            "fid_reference": cfg.reference_stats or f"{fid.reference_n} training samples: {self.data.description}",
            "samples_file": "samples.npz",
            "samples": f"first {n_samples} generated and reference images, uint8 (N, H, W, 3); not the FID sets",
        }
        try:
            score, generated = self._score(fid_samples, n_steps, n_samples, n_blocks, draw)
        except _NonFinite:
            return [CellEval({}, info)]
        reference = np.concatenate([_uint8_nhwc(b) for b in self._images(self._reference_index(n_samples))])
        if score.pseudo_values:
            info["splits"] = {"fid": list(score.pseudo_values)}
        return [CellEval({"fid": score.fid, "fid_se": score.se}, info, {"generated": generated, "reference": reference})]


def _install_reference_stats(fid: FID, path: Path) -> None:
    """Make `fid` use the `mu`, `sigma` of an .npz (e.g. ADM's VIRTUAL_imagenet256_labeled.npz) as its reference,
    by writing them into its reference cache under its fingerprint (the cache's documented format)."""
    with np.load(path) as stats:
        mu, sigma = stats["mu"], stats["sigma"]
        n = int(stats["n"]) if "n" in stats else 50_000  # only needed to rebuild torchmetrics' sums
    cache = fid.reference_cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, mu=mu.astype(np.float64), sigma=sigma.astype(np.float64), n=np.int64(n),
                 fingerprint=np.str_(fid.fingerprint))
    os.replace(tmp, cache)

