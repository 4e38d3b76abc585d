"""Diagnostics during training (docs/method.md 4): the global aggregation against brute-force minimisation of the
summed MSE, Hutchinson inside training against the model's explicit Jacobian, the oracle's zero bias, the
record's diagnostics for DGMM (oracle, EMA), finite toy and plain toy cells, packed = per-run."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from conftest import TINY, compose_cfg

from mfsweep.tasks import build_task
from mfsweep.cli.train import train
from mfsweep.method.theory import JacobianScalars, MatrixTerms
from mfsweep.tasks.diagnostics import STATS, Ingredients, bin_statistics, record_summary, summarise

F64 = torch.float64
DIAG = ["diagnostics.every=10", "diagnostics.batch_size=64"]
BINS = (0.0, 0.1, 0.3, 1.0)


def _ingredients(seed: int, e: int = 2, b: int = 50, with_matrix: bool = True) -> Ingredients:
    g = torch.Generator().manual_seed(seed)
    u = lambda *shape: torch.rand(*shape, generator=g, dtype=F64)  # noqa: E731
    h = u(e, b) ** 2                                                    # most in the low bins, some high
    j_s = 4 * u(e, b) - 1
    j_F2 = j_s.pow(2) + u(e, b)                                         # j_F^2 >= j_s^2, as for any J
    matrix = MatrixTerms(u(e, b) - 0.3, u(e, b), u(e, b)) if with_matrix else None
    return Ingredients(h, JacobianScalars(j_s, j_F2), 0.5 + u(e, b), 0.2 * u(e, b), 0.1 * u(e, b), matrix)


def _summed_mse(alpha: torch.Tensor, ing: list[Ingredients], member: int, mask=lambda h: h >= 0) -> torch.Tensor:
    """docs/method.md 4's per-sample MSE(alpha)/d summed over every sample of every measurement."""
    total = torch.zeros_like(alpha)
    for i in ing:
        h, s, f = i.h[member], i.jacobian.j_s[member], i.jacobian.j_F2[member]
        keep = mask(h)
        h, s, f, sig, bias = h[keep], s[keep], f[keep], i.sigma2[member][keep], i.bias2[member][keep]
        a = alpha[:, None]
        total += (sig * (h**2 * (1 - a) ** 2 * f - 2 * h * (1 - a) * s + 1) + a**2 * h**2 * f * bias).sum(-1)
    return total


def test_record_summary_is_the_minimiser_of_the_summed_mse_overall_and_per_bin():
    ing = [_ingredients(0), _ingredients(1)]
    stats = [bin_statistics(i, BINS) for i in ing]
    assert stats[0].shape == (2, len(BINS), len(STATS))
    grid = torch.linspace(0, 1, 20_001, dtype=F64)
    for member in (0, 1):
        summary = record_summary([s[member] for s in stats], BINS)
        best = float(grid[_summed_mse(grid, ing, member).argmin()])
        assert summary["alpha_star_scalar"] == pytest.approx(best, abs=1e-4)
        for row, (lo, hi) in zip(summary["by_h_bin"], zip(BINS[:-1], BINS[1:])):
            in_bin = lambda h, lo=lo, hi=hi: (h >= lo) & (h < hi)  # noqa: E731
            assert row["n"] == sum(int(in_bin(i.h[member]).sum()) for i in ing)
            best = float(grid[_summed_mse(grid, ing, member, in_bin).argmin()])
            assert (row["h_lo"], row["h_hi"]) == (lo, hi)
            assert row["alpha_star_scalar"] == pytest.approx(best, abs=1e-4)
        assert sum(r["n"] for r in summary["by_h_bin"]) == summary["measured"]["n_samples"] == 100


def test_summary_values_are_ratios_of_sums_by_hand():
    ing = [_ingredients(2), _ingredients(3)]
    s = summarise(sum(bin_statistics(i, BINS) for i in ing)[:, -1])
    cat = lambda f: torch.cat([f(i) for i in ing], -1)  # noqa: E731
    h, js, jf, sig = cat(lambda i: i.h), cat(lambda i: i.jacobian.j_s), cat(lambda i: i.jacobian.j_F2), cat(lambda i: i.sigma2)
    bias2, gap = cat(lambda i: i.bias2), cat(lambda i: i.gap)
    num, fl, bi = (cat(lambda i, k=k: getattr(i.matrix, k)) for k in ("numerator", "fluctuation", "bias"))
    w = h**2 * jf
    kappa = 1 - (sig * h * js).sum(-1) / (sig * w).sum(-1)
    torch.testing.assert_close(s["kappa"], kappa)
    torch.testing.assert_close(s["c"], 1 / (1 - kappa))
    torch.testing.assert_close(s["j_s"], js.mean(-1))
    torch.testing.assert_close(s["j_F2"], jf.mean(-1))
    torch.testing.assert_close(s["sigma2"], (w * sig).sum(-1) / w.sum(-1))
    torch.testing.assert_close(s["bias2"], (w * bias2).sum(-1) / w.sum(-1))
    torch.testing.assert_close(s["bias2_ema_gap"], (w * gap).sum(-1) / w.sum(-1))
    torch.testing.assert_close(s["alpha_star_ub"], (num.sum(-1) / fl.sum(-1)).clamp(0, 1))
    torch.testing.assert_close(s["alpha_star_m"], (num.sum(-1) / (fl + bi).sum(-1)).clamp(0, 1))
    torch.testing.assert_close(s["alpha_star_ub_unclipped"], num.sum(-1) / fl.sum(-1))
    # without fluctuation draws (no posterior) the matrix forms are unknown, the rest is measured
    bare = record_summary([bin_statistics(_ingredients(4, with_matrix=False), BINS)[0]], BINS)
    assert bare["alpha_star_ub"] is None and bare["alpha_star_m_unclipped"] is None and bare["kappa"] is not None


def test_an_empty_bin_has_no_values():
    ing = _ingredients(5)
    ing.h = ing.h * 0.2                                                  # nothing reaches the top bin
    top = record_summary([bin_statistics(ing, BINS)[0]], BINS)["by_h_bin"][-1]
    assert top["n"] == 0 and all(top[k] is None for k in ("kappa", "c", "sigma2", "alpha_star_scalar"))


def _task(*overrides: str):
    cfg = compose_cfg(*TINY, *overrides)
    alphas, seeds = list(cfg.alpha.value), list(cfg.seed)
    return build_task(cfg, alphas, seeds)


def test_hutchinson_inside_training_equals_the_models_explicit_jacobian():
    """The diag/j_s, diag/j_F2 of one measurement, recomputed from the same batch and probes (replayed from a
    copy of each member's diagnostics generator; a set without posterior draws nothing else) with the explicit
    per-sample Jacobian of the member's MLP."""
    task = _task("dataset=two_moons", "tangent=ema", "alpha.value=[0.0,1.0]", "seed=[0,1]",
                 "diagnostics.batch_size=16", "diagnostics.n_probes=3")
    replay = copy.deepcopy(task.streams["diagnostics"])
    logged, _ = task.measure_diagnostics()
    b = replay.draw(16, task.time_cfg | {"ratio": 1.0})
    assert bool((b.r < b.t).all())
    z = (1 - b.t[..., None]) * b.x + b.t[..., None] * b.e
    for m, g in enumerate(replay.generators):
        probes = [torch.randint(0, 2, (16, 2), generator=g).float() * 2 - 1 for _ in range(3)]
        js, jf = [], []
        for i in range(16):
            def u(zi, m=m, i=i):
                zz = z.clone()
                zz[m, i] = zi
                return task.model(zz, b.r, b.t)[m, i]
            jac = torch.autograd.functional.jacobian(u, z[m, i])
            js.append(sum(float(p[i] @ jac @ p[i]) for p in probes) / (3 * 2))
            jf.append(sum(float((jac @ p[i]).pow(2).sum()) for p in probes) / (3 * 2))
        assert float(logged["diag/j_s"][m]) == pytest.approx(sum(js) / 16, rel=1e-4, abs=1e-7)
        assert float(logged["diag/j_F2"][m]) == pytest.approx(sum(jf) / 16, rel=1e-4)


def _diag(record: dict) -> dict:
    return record["diagnostics"]


def _check_scalar_form(d: dict) -> None:
    """The record's scalar-isotropic alpha* against docs/method.md 4 written out by hand from the record's own
    ingredients: c = h j_F^2 / j_s aggregates, kappa = 1 - 1/c, alpha* = clip(kappa sigma^2 / (sigma^2 + bias^2))."""
    kappa = 1 - 1 / d["c"]
    assert d["kappa"] == pytest.approx(kappa, rel=1e-6, abs=1e-9)
    js = d["sigma2"] / (d["sigma2"] + d["bias2"])
    assert d["alpha_star_scalar"] == pytest.approx(min(max(kappa * js, 0.0), 1.0), rel=1e-6, abs=1e-9)


def test_dgmm_cells_oracle_has_zero_bias_and_ema_cells_record_every_diagnostic(tmp_path):
    oracle = train(compose_cfg(*TINY, *DIAG, "dataset=dgmm", "dataset.dim=4", "tangent=oracle",
                               "alpha.value=[0.0,1.0]", "seed=0"), tmp_path / "oracle")
    ema = train(compose_cfg(*TINY, *DIAG, "dataset=dgmm", "dataset.dim=4", "tangent=ema", "alpha.value=0.5",
                            "seed=0"), tmp_path / "ema")
    for rec in oracle + ema:
        d = _diag(rec)
        assert rec["status"] == "completed" and rec["task"] == "dgmm" and rec["dim"] == 4
        for k in ("alpha_star_scalar", "alpha_star_ub", "alpha_star_m", "kappa", "c", "sigma2", "bias2",
                  "bias2_ema_gap", "j_s", "j_F2"):
            assert isinstance(d[k], float) and math.isfinite(d[k]), k
        assert 0 <= d["alpha_star_scalar"] <= 1 and 0 <= d["alpha_star_ub"] <= 1 and d["sigma2"] > 0
        _check_scalar_form(d)
        assert [(b["h_lo"], b["h_hi"]) for b in d["by_h_bin"]] == [(0.0, 0.05), (0.05, 0.1), (0.1, 0.2),
                                                                     (0.2, 0.4), (0.4, 1.0)]
        assert d["measured"]["n_measurements"] == 2 and d["measured"]["from_step"] == 30   # of 10, 20, 30, 40
        assert d["measured"]["sigma2_source"] == "exact" and d["measured"]["bias2_source"] == "oracle"
    for rec in oracle:
        assert _diag(rec)["bias2"] == pytest.approx(0.0, abs=1e-12)
        assert all(b["bias2"] in (None, 0.0) for b in _diag(rec)["by_h_bin"])
        # no bias: alpha*_M is the upper bound, and the scalar alpha* is kappa clipped
        assert _diag(rec)["alpha_star_m"] == pytest.approx(_diag(rec)["alpha_star_ub"])
        assert _diag(rec)["alpha_star_scalar"] == pytest.approx(min(max(_diag(rec)["kappa"], 0.0), 1.0))
    (e,) = ema
    assert _diag(e)["bias2"] > 0 and _diag(e)["measured"]["proxy"] == "ema"
    history = (tmp_path / "ema" / "alpha=0.5,seed=0" / "history.csv").read_text().splitlines()
    assert all(f"diag/{k}" in history[0] for k in ("j_s", "j_F2", "c", "kappa", "sigma2", "bias2", "bias2_ema_gap",
                                                   "alpha_star_scalar", "alpha_star_ub"))


def test_plain_toy_cell_measures_what_it_can_and_finite_toy_cell_has_an_exact_oracle(tmp_path):
    plain = train(compose_cfg(*TINY, *DIAG, "dataset=two_moons", "tangent=ema", "alpha.value=0.5"), tmp_path / "a")
    d = _diag(plain[0])
    assert d["alpha_star_ub"] is None and d["alpha_star_m"] is None
    assert d["sigma2"] > 0 and d["bias2"] == d["bias2_ema_gap"] and d["alpha_star_scalar"] is not None
    _check_scalar_form(d)
    assert d["measured"]["sigma2_source"] == "flow_matching_floor" and d["measured"]["bias2_source"] == "ema_tracking_gap"
    finite = train(compose_cfg(*TINY, *DIAG, "dataset=two_moons", "dataset.finite_size=200", "tangent=oracle",
                               "alpha.value=1.0"), tmp_path / "b")
    d = _diag(finite[0])
    assert finite[0]["status"] == "completed" and d["bias2"] == pytest.approx(0.0, abs=1e-12)
    assert d["alpha_star_ub"] is not None and d["measured"]["sigma2_source"] == "exact"


def test_packed_member_diagnostics_equal_the_per_run_cells(tmp_path):
    over = [*TINY, *DIAG, "dataset=dgmm", "dataset.dim=3", "tangent=ema"]
    packed = {(r["alpha"], r["seed"]): r for r in train(compose_cfg(*over, "alpha.value=[0.0,0.7]", "seed=[0,3]"),
                                                        tmp_path / "packed")}
    (single,) = train(compose_cfg(*over, "alpha.value=0.7", "seed=3"), tmp_path / "single")
    twin = _diag(packed[(0.7, 3)])
    for k in ("j_s", "j_F2", "kappa", "sigma2", "bias2", "alpha_star_scalar", "alpha_star_ub"):
        assert twin[k] == pytest.approx(_diag(single)[k], rel=1e-4, abs=1e-7), k


def test_diagnostics_off_leaves_the_record_empty_and_bad_keys_name_themselves(tmp_path):
    (rec,) = train(compose_cfg(*TINY, "diagnostics.every=0"), tmp_path / "off")
    assert rec["diagnostics"]["alpha_star_scalar"] is None and "by_h_bin" not in rec["diagnostics"]
    for override, key in [("diagnostics.bins=[0.0,0.5]", "diagnostics.bins"),
                          ("diagnostics.bins=[0.0,0.5,0.5,1.0]", "diagnostics.bins"),
                          ("diagnostics.n_probes=0", "diagnostics.n_probes"),
                          ("diagnostics.every=-1", "diagnostics.every"),
                          ("dataset=dgmm", "dataset.n_components"),
                          ("tangent=oracle", "tangent")]:
        extra = ["dataset.n_components=0"] if override == "dataset=dgmm" else []
        with pytest.raises(ValueError) as err:  # ConfigError, or the proxy's own ConfigValueError
            train(compose_cfg(*TINY, override, *extra), tmp_path / "bad")
        assert err.value.key == key
