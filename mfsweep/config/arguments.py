"""Each task's side of the config: its constructor arguments from a composed config (built objects: sections, the
schedule and proxy, the dataset, so that a task never reads the config itself, as lightning-hydra-template's
modules receive `net, optimizer`), and its own checks of what it needs from the rest of the config. A task
class names both (`arguments`, `checks`); `mfsweep.tasks.TASKS` is the one registry of tasks.

Where packed per-member keys hold lists, the job-level values are the first ones; `settings` are each member's
own values, which override them in the module."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from mfsweep.config.build import member_keys, member_proxy, member_schedule
from mfsweep.config.members import first_values, is_packed
from mfsweep.config.sections import (DiagnosticsConfig, FIDConfig, GradVarConfig, GuidanceConfig, LossConfig,
                                     OptimConfig)
from mfsweep.method.errors import ConfigValueError, OneOf
from mfsweep.method.proxy import Proxy
from mfsweep.method.schedule import AlphaSchedule

Settings = Sequence[Mapping[str, Any]] | None

# `trainer.compile=auto` compiles when the run has at least this many member-steps (max_steps x members): the
# compile costs about 30-90 s on 2 cores and the compiled step saves a few ms per member-step, so shorter runs
# (tests, smoke runs) stay eager.
AUTO_COMPILE_MEMBER_STEPS = 50_000


# The evaluation keys of the checkpoint curve (eval/sw1); a config from before the estimators were named lacks some.
CURVE_KEYS = ("every_n_samples", "n_steps", "projection_seed", "estimator", "n_projections", "reference_ratio")

def use_compile(setting: Any, max_steps: int, n_members: int) -> bool:
    """`trainer.compile` (true | false | auto) resolved for a run of `max_steps` steps of `n_members` members."""
    if setting == "auto":
        if max_steps * n_members < AUTO_COMPILE_MEMBER_STEPS:
            return False
        # An automatic choice must not fail a run where inductor cannot build (e.g. no C++ compiler): such a
        # step falls back to eager. `trainer.compile=true` keeps errors loud.
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
        return True
    return bool(setting)


def member_components(cfg: DictConfig, alphas: Sequence[float | None],
                      settings: Settings = None) -> tuple[AlphaSchedule, Proxy]:
    """The job's alpha schedule and proxy, member i with `alpha.value = alphas[i]` (unless None: a schedule
    without it) and its own values of the components' keys in `settings[i]`."""
    members = [({} if a is None else {"alpha.value": a}) | dict(s)
               for a, s in zip(alphas, settings or [{}] * len(alphas))]
    return member_schedule(cfg, members), member_proxy(cfg, members)


def module_arguments(cfg: DictConfig, alphas: Sequence[float | None], settings: Settings = None) -> dict[str, Any]:
    """The MeanFlowModule arguments every task takes the same way: the schedule and proxy of its members, the
    sections, the cadences."""
    schedule, proxy = member_components(cfg, alphas, settings)
    cfg = first_values(cfg)
    diagnostics = dict(cfg.diagnostics) | {"bins": tuple(float(b) for b in cfg.diagnostics.bins)}
    return dict(
        schedule=schedule, proxy=proxy,
        settings=list(settings) if settings is not None else None,
        log_every=cfg.trainer.log_every,
        loss=LossConfig.from_node(cfg.loss),
        optim=OptimConfig.from_node(cfg.trainer),
        grad_var=GradVarConfig.from_node(cfg.grad_var),
        eval_every=cfg.eval.every,
        diagnostics=DiagnosticsConfig.from_node(diagnostics),
    )


def vector_arguments(cfg: DictConfig, alphas: Sequence[float | None], seeds: Sequence[int],
                     settings: Settings = None) -> dict[str, Any]:
    """`VectorTask`'s arguments for members `(alphas[i], seeds[i], settings[i])`: `alphas[i]` is member i's
    `alpha.value` (None under a schedule without one), `settings[i]` its values of the other per-member keys
    (`{"trainer.lr": 0.003, "time.ratio": 0.75, "alpha.end": 0.5}`)."""
    from mfsweep.data import make_vector_dataset

    kwargs = module_arguments(cfg, alphas, settings)
    cfg = first_values(cfg)
    return kwargs | dict(
        dataset=make_vector_dataset(**{k: v for k, v in cfg.dataset.items() if k != "task"}),
        seeds=list(seeds), width=cfg.model.width, depth=cfg.model.depth, batch_size=cfg.trainer.batch_size,
        time_cfg=dict(cfg.time), curve_eval={k: cfg.eval[k] for k in CURVE_KEYS if k in cfg.eval},
        compile=use_compile(cfg.trainer.get("compile", False), cfg.trainer.max_steps, len(seeds)),
    )


def latent_arguments(cfg: DictConfig, alphas: Sequence[float | None], seeds: Sequence[int],
                     settings: Settings = None) -> dict[str, Any]:
    """`LatentDiTTask`'s arguments for its one cell `(alphas[0], seeds[0])`."""
    from mfsweep.data.images import make_image_data

    if len(alphas) != 1 or len(seeds) != 1:
        raise ConfigValueError("alpha.value", "latent_dit trains one cell per process: give one alpha.value and one "
                                              "seed (sweep them with a per-run multirun, -m alpha.value=0.0,0.5)")
    ds, m = cfg.dataset, cfg.model
    return module_arguments(cfg, alphas, settings) | dict(
        data=make_image_data(**ds), seed=seeds[0],
        model_cfg={k: m[k] for k in ("patch_size", "hidden_size", "depth", "num_heads", "mlp_ratio")},
        num_classes=ds.num_classes, batch_size=cfg.trainer.batch_size, time_cfg=dict(cfg.time),
        guidance=GuidanceConfig.from_node(cfg.guidance), fid=FIDConfig.from_node(cfg.metrics.fid),
        fid_samples=cfg.eval.fid_samples, eval_samples=cfg.eval.every_n_samples, eval_steps=cfg.eval.n_steps,
        threads=cfg.trainer.get("threads"),
    )


def check_vector(cfg: DictConfig) -> None:
    """What the vector tasks need beyond their sections, dataset and model: the stacked MLP, and the SW
    estimator's own keys (`mfsweep.metrics.sliced.check_settings`)."""
    from mfsweep.metrics.sliced import check_settings

    OneOf(("mlp",))("model.name", cfg.model.name)
    try:
        check_settings(cfg.eval)
    except ValueError as exc:
        raise ConfigValueError(*str(exc).split(": ", 1)) from None


def check_latent(cfg: DictConfig) -> None:
    """What the latent DiT task needs beyond its sections, dataset and model: a DiT whose patches tile the
    samples, one cell per process, FID features that exist for the dataset, jackknife blocks (`eval.n_splits`)
    of whole rounds of the classes (`mfsweep.metrics.fid.check_blocks`)."""
    from mfsweep.data.images import check_image_data
    from mfsweep.metrics.fid import check_blocks

    if not str(cfg.model.name).startswith("DiT"):
        raise ConfigValueError("model.name", f"the latent_dit task trains a DiT (e.g. model=dit_b_4), "
                                             f"got {cfg.model.name!r}")
    for key, vector in member_keys(cfg).items():
        if is_packed(key, OmegaConf.select(cfg, key), vector):
            raise ConfigValueError(key, "latent_dit trains one cell per process: give one value and sweep with a "
                                        "per-run multirun (-m alpha.value=0.0,0.5)")
    OneOf(("per_run",))("sweep.mode", cfg.sweep.mode)
    side = check_image_data(**{k: v for k, v in cfg.dataset.items() if k != "task"})
    if side % cfg.model.patch_size:
        raise ConfigValueError("model.patch_size", f"must divide the sample size {side}, got {cfg.model.patch_size}")
    if cfg.metrics.fid.features == "classifier" and cfg.dataset.name != "digits":
        raise ConfigValueError("metrics.fid.features", "the classifier features exist for dataset=digits only; "
                                                       "use inception")
    try:
        check_blocks(cfg.eval.n_splits, cfg.eval.fid_samples, cfg.dataset.num_classes)
    except ValueError as exc:
        raise ConfigValueError(*str(exc).split(": ", 1)) from None
