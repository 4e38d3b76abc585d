"""Check a composed config before anything trains; every error is a `ConfigValueError` naming the key.

Each part checks its own keys and this module only asks them in turn, so a new task, model, dataset, schedule,
proxy or config section needs no edit here: the config sections (`mfsweep.config.sections`, each member's values
where a per-member key holds a list), the keys members must share, the dataset (`mfsweep.data.check_dataset`),
the model (`mfsweep.models.check_model`), the task (`checks` of its class in `mfsweep.tasks.TASKS`), then the
schedule and proxy as the job's members will have them, with what they need from each other and the dataset.
Cheap checks come first: a bad number is reported before torch or the task's libraries are imported."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from mfsweep.config.validation import check_sections, check_shared
from mfsweep.method.errors import OneOf


def validate(cfg: DictConfig) -> None:
    """Raise ConfigValueError for the first invalid value (ranges, choices, incompatible combinations)."""
    from mfsweep.tasks import TASKS, task_class

    OneOf(tuple(TASKS))("dataset.task", cfg.dataset.get("task"))
    check_sections(cfg, cfg.dataset.task)
    check_shared(cfg)
    from mfsweep.data import check_dataset, has_exact_posterior
    from mfsweep.models import check_model

    check_dataset(cfg.dataset)
    check_model(cfg.model)
    task_class(cfg.dataset.task).checks(cfg)
    from mfsweep.config.build import check_components
    from mfsweep.sweep.cells import member_cells

    members = [c.values() for c in member_cells(Path(), "", cfg)]
    check_components(cfg, members, has_exact_posterior(cfg.dataset))

