"""The noise floor in the records (metrics.sw1_floor, sw2_floor): SW between two independent reference draws of
the evaluation's size, with the evaluation's projections. Checked against fresh draws of the same distribution
and a shifted one, on the session's tiny sweep."""
from __future__ import annotations

import numpy as np
import torch

from mfsweep.data import make_vector_dataset
from mfsweep.metrics.sliced import sliced_wasserstein
from mfsweep.sweep.record import read_record


def test_floor_is_sw_between_two_draws_of_the_same_distribution(tiny_sweep):
    records = [read_record(p.parent) for p in sorted(tiny_sweep.rglob("result.json"))]
    rec = next(r for r in records if r["status"] == "completed")
    cell = next(p.parent for p in tiny_sweep.rglob("result.json") if read_record(p.parent) == rec)
    with np.load(cell / rec["eval"]["samples_file"]) as z:
        reference = z["reference"]
    ev, floor = rec["eval"], rec["metrics"]["sw1_floor"]
    dataset = make_vector_dataset("swiss_roll")
    draws = [sliced_wasserstein(dataset.sample(len(reference), torch.Generator().manual_seed(1000 + k)).numpy(),
                                reference, ev["n_projections"], ev["projection_seed"])["sw1"] for k in range(12)]
    # The recorded floor is one such draw: within the spread of a dozen independent ones.
    assert abs(floor - np.mean(draws)) < 4 * np.std(draws, ddof=1)
    shift = 0.5 * reference.std(axis=0)
    shifted = sliced_wasserstein(reference + shift, reference, ev["n_projections"], ev["projection_seed"])["sw1"]
    assert shifted > 3 * max(draws)
    assert rec["metrics"]["sw2_floor"] >= floor  # SW2 >= SW1 for the same pair of sets


def test_floor_is_shared_across_alphas_of_a_seed(tiny_sweep):
    """The two reference draws come from the seed's own streams, not the alpha's: paired differences of the
    excess over the floor equal those of SW1."""
    floors = {}
    for p in tiny_sweep.rglob("result.json"):
        r = read_record(p.parent)
        floors.setdefault(r["seed"], set()).add(r["metrics"]["sw1_floor"])
    assert all(len(f) == 1 for f in floors.values()) and len({f.pop() for f in floors.values()}) == len(floors)
