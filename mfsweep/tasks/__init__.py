"""Lightning tasks: the shared MeanFlow module and the thin task modules, by `dataset.task`."""
from __future__ import annotations

from mfsweep.tasks.latent import LatentDiTTask
from mfsweep.tasks.meanflow import MeanFlowModule
from mfsweep.tasks.vector import GaussianMixtureTask, VectorTask

TASKS: dict[str, type[MeanFlowModule]] = {"toy": VectorTask, "dgmm": GaussianMixtureTask, "latent_dit": LatentDiTTask}


def task_class(name: str) -> type[MeanFlowModule]:
    if name not in TASKS:
        raise ValueError(f"dataset.task must be one of {sorted(TASKS)}, got {name!r}")
    return TASKS[name]
