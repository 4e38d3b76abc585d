"""Guided MeanFlow (docs/method.md 2, class conditioning): the guided field, label dropout, and how the latent DiT
task applies them."""
from __future__ import annotations

import pytest
import torch
from conftest import compose_cfg

from mfsweep.tasks import build_task
from mfsweep.method.guidance import drop_labels, guidance_active, guided_velocity
from mfsweep.method.time import sample_t_r
from mfsweep.config.sections import GuidanceConfig
from mfsweep.tasks.latent import LatentDiTTask
from mfsweep.tasks.streams import generator

TINY_DIT = ["experiment=digits_dit", "model.depth=1", "model.hidden_size=32", "model.num_heads=2",
            "trainer.batch_size=16"]


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_omega_one_mix_zero_gives_the_conditional_velocity_exactly():
    v_c, u_c, u_u = _randn(5, 1, 4, 4, seed=0), 1e6 * _randn(5, 1, 4, 4, seed=1), -1e6 * _randn(5, 1, 4, 4, seed=2)
    assert torch.equal(guided_velocity(v_c, u_c, u_u, omega=1.0, mix=0.0), v_c)


def test_guided_field_against_hand_computation():
    v_c, u_c, u_u = torch.tensor([1.0, 2.0]), torch.tensor([3.0, -1.0]), torch.tensor([0.5, 4.0])
    # omega 0.7, mix 0.5: 0.7 v_c + 0.5 u_c - 0.2 u_u
    expected = torch.tensor([0.7 + 1.5 - 0.1, 1.4 - 0.5 - 0.8])
    torch.testing.assert_close(guided_velocity(v_c, u_c, u_u, 0.7, 0.5), expected)
    # Coefficients sum to one: where all three agree the field is that velocity, for any (omega, mix).
    same = torch.tensor([0.3, -2.0])
    torch.testing.assert_close(guided_velocity(same, same, same, 2.5, -0.7), same)


def test_label_dropout_drops_exactly_where_the_draws_fall_below_p():
    y = torch.tensor([3, 1, 4, 1, 5])
    draws = torch.tensor([0.05, 0.5, 0.099, 0.1, 0.9])
    labels, dropped = drop_labels(y, draws, p=0.1, null_class=10)
    assert labels.tolist() == [10, 1, 10, 1, 5] and dropped.tolist() == [True, False, True, False, False]
    assert torch.equal(drop_labels(y, draws, 0.0, 10)[0], y)
    assert (drop_labels(y, draws, 1.0, 10)[0] == 10).all()
    # With uniform draws the dropped share is p (Monte Carlo, 100k labels: 6 standard errors is 0.006).
    many = torch.rand(100_000, generator=torch.Generator().manual_seed(0))
    share = drop_labels(torch.zeros(100_000, dtype=torch.long), many, 0.1, 10)[1].float().mean()
    assert abs(share.item() - 0.1) < 0.006
    with pytest.raises(ValueError, match="draws must have the shape of y"):
        drop_labels(y, draws[:3], 0.1, 10)


def test_guidance_interval_is_closed_and_skips_dropped_labels():
    t = torch.tensor([0.1, 0.2, 0.5, 0.8, 0.9, 0.5])
    dropped = torch.tensor([False, False, False, False, False, True])
    assert guidance_active(t, dropped, 0.2, 0.8).tolist() == [False, True, True, True, False, False]


def _task(*overrides: str) -> LatentDiTTask:
    return build_task(compose_cfg(*TINY_DIT, *overrides), [0.5], [3], cls=LatentDiTTask)


def _perturb(task: LatentDiTTask) -> None:
    """Give the zero-initialised output layers weights, so u depends on z, t and the label."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in task.model.named_parameters():
            if "adaLN_modulation" in name or name.startswith("final_layer.linear"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def test_task_batch_is_the_streams_draws_with_labels_dropped_from_the_same_stream():
    task = _task("guidance.label_dropout=0.5")
    batch = task.draw_batch()
    g, n = generator(3, "train"), 16  # the documented order: indices, noise, (t, r), dropout draws
    index = torch.randint(len(task.data), (n,), generator=g)
    e = torch.randn((n, 1, 16, 16), generator=g)
    t, r = sample_t_r(n, g, **task.time_cfg)
    dropped = torch.rand(n, generator=g) < 0.5
    x, y = task.data.fetch(index)
    for got, want in ((batch.x, x), (batch.e, e), (batch.t, t), (batch.r, r)):
        assert torch.equal(got, want)
    assert torch.equal(batch.y, torch.where(dropped, torch.full_like(y, task.model.null_class), y))
    assert 0 < int(dropped.sum()) < n


def test_task_guided_field_uses_the_online_network_at_r_equal_t():
    task = _task("guidance.omega=0.6", "guidance.mix=0.3", "guidance.t_min=0.2", "guidance.t_max=0.9")
    _perturb(task)
    batch = task.draw_batch()
    z = (1 - batch.t.view(-1, 1, 1, 1)) * batch.x + batch.t.view(-1, 1, 1, 1) * batch.e
    v_g = task.conditional_velocity(batch, z)
    null = task.model.null_class
    n_active = 0
    for i in range(len(z)):  # row by row, an independent computation
        v_c = batch.e[i] - batch.x[i]
        if 0.2 <= batch.t[i] <= 0.9 and batch.y[i] != null:
            n_active += 1
            zi, ti = z[i:i + 1], batch.t[i:i + 1]
            with torch.no_grad():
                u_c = task.model(zi, ti, ti, batch.y[i:i + 1])[0]
                u_u = task.model(zi, ti, ti, torch.tensor([null]))[0]
            torch.testing.assert_close(v_g[i], 0.6 * v_c + 0.3 * u_c + 0.1 * u_u, rtol=1e-5, atol=1e-6)
            assert not torch.allclose(v_g[i], v_c, atol=1e-3)
        else:
            assert torch.equal(v_g[i], v_c)
    assert 0 < n_active < len(z)


def test_task_with_guidance_off_trains_on_v_c():
    task = _task("guidance.omega=1.0", "guidance.mix=0.0")
    assert task.guidance == GuidanceConfig(label_dropout=0.1, omega=1.0, mix=0.0, t_min=0.0, t_max=1.0) and not task.guidance.enabled
    _perturb(task)
    batch = task.draw_batch()
    z = (1 - batch.t.view(-1, 1, 1, 1)) * batch.x + batch.t.view(-1, 1, 1, 1) * batch.e
    assert torch.equal(task.conditional_velocity(batch, z), batch.e - batch.x)


def test_jvp_stays_fp32_inside_a_bf16_autocast_step():
    task = _task()
    _perturb(task)
    batch = task.draw_batch()
    z = batch.e
    with torch.autocast("cpu", dtype=torch.bfloat16):
        u_fwd = task.u_fn(task.model, batch)(z, batch.r, batch.t)
        u, du = task.jvp_fn(batch)(z, batch.r, batch.t, batch.e, torch.zeros_like(batch.r), torch.ones_like(batch.t))
    assert u_fwd.dtype == torch.bfloat16  # the plain forward is autocast ...
    assert u.dtype == du.dtype == torch.float32  # ... the JVP is not
    tangent = (batch.e, torch.zeros_like(batch.r), torch.ones_like(batch.t))
    u32, du32 = task.model.jvp(z, batch.r, batch.t, *tangent, batch.y)
    jvp_rows = batch.r < batch.t
    assert 0 < int(jvp_rows.sum()) < len(z)
    # fp32 agreement (bf16 would be off by ~1e-2 relative); not bitwise: the subset batches reduce differently.
    torch.testing.assert_close(du[jvp_rows], du32[jvp_rows])
    torch.testing.assert_close(u[jvp_rows], u32[jvp_rows])
    assert not du[~jvp_rows].any()  # r = t rows skip the JVP: (t - r) du = 0 there


def test_skipping_the_jvp_where_r_equals_t_leaves_loss_and_gradient_unchanged():
    """Against the whole batch through `DiT.jvp` (math attention everywhere), an independent computation."""
    task = _task("guidance.omega=1.0", "guidance.mix=0.0")  # no guidance: the field is v_c in both
    _perturb(task)
    batch = task.draw_batch()
    assert 0 < int((batch.r < batch.t).sum()) < len(batch.t)
    params = [p for p in task.model.parameters()]
    loss = task.losses(batch, task.step_alpha(batch, 0))["total"].sum()
    grads = torch.autograd.grad(loss, params)
    t = batch.t.view(-1, 1, 1, 1)
    z = (1 - t) * batch.x + t * batch.e
    v_c = batch.e - batch.x
    with torch.no_grad():
        u_bar = task.proxy.ema(z, (batch.t - task.loss_cfg.offset).clamp_min(0), batch.t, batch.y)
    # The MeanFlow loss written out (not through `meanflow_loss`, which the task itself uses): one JVP of the
    # whole batch along (0.5 v_c + 0.5 u_bar, 0, 1), target sg(v_c - h du), weight 1 / sg(sq + 1e-3).
    u, du = task.model.jvp(z, batch.r, batch.t, 0.5 * v_c + 0.5 * u_bar, torch.zeros_like(batch.r),
                           torch.ones_like(batch.t), batch.y)
    sq = (u - (v_c - (batch.t - batch.r).view(-1, 1, 1, 1) * du).detach()).pow(2).sum((1, 2, 3))
    full = (sq / (sq.detach() + 1e-3)).mean()
    torch.testing.assert_close(loss, full, rtol=1e-5, atol=1e-6)
    for g, g_full in zip(grads, torch.autograd.grad(full, params)):
        torch.testing.assert_close(g, g_full, rtol=1e-4, atol=1e-6)
