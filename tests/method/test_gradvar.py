"""Gradient variance (docs/method.md 5) against a brute-force loop over replicas."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mfsweep.data.toy import ToyDataset
from mfsweep.method.gradvar import StreamingTotalVariance, total_variance
from mfsweep.method.proxy import EMAProxy
from mfsweep.method.schedule import ConstantAlpha
from mfsweep.tasks.meanflow import GradVarConfig, LossConfig, OptimConfig
from mfsweep.tasks.vector import VectorTask

F64 = torch.float64


def _task(anchor_weight=0.0) -> VectorTask:
    return VectorTask(
        ToyDataset("eight_gaussians"), ConstantAlpha([0.0, 0.6]), [1, 2], width=16, depth=2, batch_size=32,
        time_cfg={"dist": "uniform", "ratio": 0.5}, proxy=EMAProxy(0.99, 2), loss=LossConfig(anchor_weight=anchor_weight),
        optim=OptimConfig(), grad_var=GradVarConfig(every=1, replicas=5, batch_size=24),
    )


def test_streaming_equals_two_pass_formula():
    g = torch.randn(6, 3, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = StreamingTotalVariance()
    for row in g:
        s.add(row)
    want = ((g - g.mean(0)) ** 2).sum(-1).sum(0) / 5
    torch.testing.assert_close(s.value(), want)
    torch.testing.assert_close(total_variance(g), want)
    with pytest.raises(ValueError, match="at least 2 replicas"):
        StreamingTotalVariance().value()


@pytest.mark.parametrize("anchor_weight", [0.0, 0.5])
def test_grad_var_matches_brute_force_loop(anchor_weight):
    task, twin = _task(anchor_weight), _task(anchor_weight)
    got = task.measure_grad_var()
    per_member = {"mf": [[], []], "total": [[], []]}
    for _ in range(5):
        batch = twin.draw_batch("gradvar", 24)  # the same replica stream, replayed
        for i in range(2):
            for part in ("mf", "total"):
                twin.zero_grad()
                twin.losses(batch, twin.step_alpha(batch, -1))[part][i].backward()  # as measure_grad_var
                per_member[part][i].append(torch.cat([p.grad[i].flatten() for p in twin.model.parameters()]).numpy())
    for part, key in (("mf", "diag/grad_var"), ("total", "diag/grad_var_total")):
        for i in range(2):
            g = np.stack(per_member[part][i]).astype(np.float64)
            want = ((g - g.mean(0)) ** 2).sum() / (len(g) - 1)
            assert got[key][i].item() == pytest.approx(want, rel=1e-5)
    if anchor_weight == 0:
        torch.testing.assert_close(got["diag/grad_var"], got["diag/grad_var_total"])


def test_grad_var_is_zero_when_every_replica_sees_the_same_batch(monkeypatch):
    task = _task()
    fixed = task.draw_batch("gradvar", 24)
    monkeypatch.setattr(task, "draw_batch", lambda *a, **k: fixed)
    got = task.measure_grad_var()["diag/grad_var"]
    assert torch.all(got.abs() < 1e-12)


def test_measuring_does_not_touch_training_stream_or_grads():
    a, b = _task(), _task()
    a.measure_grad_var()
    assert all(p.grad is None for p in a.model.parameters())
    for x, y in zip(a.draw_batch().__dict__.values(), b.draw_batch().__dict__.values()):
        if x is not None:
            assert torch.equal(x, y)


# --- written against mutants and bugs that once survived the suite (docs/testing.md, "Where the mutant tests live") ---


def test_total_variance_needs_two_replicas_and_two_give_half_the_squared_difference():
    with pytest.raises(ValueError, match=r"needs at least 2 replicas, got 1$"):
        total_variance(torch.ones(1, 5))
    g = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(total_variance(g), ((g[0] - g[1]) ** 2).sum(-1) / 2)


@pytest.mark.parametrize("n_replicas", [2, 5])
def test_streaming_variance_equals_total_variance_for_any_leading_shape(n_replicas):
    """Welford, replica by replica, equals the batch formula for replicas (..., P) of any leading shape
    (here (E, A, P)), from two replicas on; one replica is refused by message."""
    from mfsweep.method.gradvar import StreamingTotalVariance

    g = torch.randn(n_replicas, 2, 3, 7, generator=torch.Generator().manual_seed(5), dtype=F64)
    acc = StreamingTotalVariance()
    acc.add(g[0])
    with pytest.raises(ValueError, match=r"needs at least 2 replicas, got 1$"):
        acc.value()
    for replica in g[1:]:
        acc.add(replica)
    torch.testing.assert_close(acc.value(), total_variance(g))
    assert acc.value().shape == (2, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_streaming_variance_stays_on_the_gradients_device():
    """Gradients on a GPU: the accumulator lives there too (an m2 left on the CPU fails at the second add)."""
    from mfsweep.method.gradvar import StreamingTotalVariance

    g = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    acc = StreamingTotalVariance()
    for replica in g:
        acc.add(replica.cuda())
    assert acc.value().device.type == "cuda"
    torch.testing.assert_close(acc.value().cpu(), total_variance(g))
