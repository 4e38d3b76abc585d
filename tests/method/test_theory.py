"""The optimal alpha of docs/method.md 4: scalar-isotropic closed form against brute-force minimisation of the
MSE, the matrix form against hand computation on linear models, and Hutchinson's Jacobian scalars."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hand_mutants import hand_mutant_tests

from mfsweep.method.theory import (
    AlphaStarEstimate,
    alpha_star,
    alpha_star_matrix,
    alpha_star_upper_bound,
    c_from_jacobian,
    hutchinson_jacobian,
    james_stein,
    kappa,
    kappa_from_jacobian,
    mse_curve,
)

F64 = torch.float64
GRID = torch.linspace(0, 1, 200_001, dtype=F64)


def _jvp_of(u_fn):
    """A package-style `jvp_fn(z, r, t, dz, dr, dt) -> (u, du)` for `u_fn(z, r, t)`."""
    return lambda z, r, t, dz, dr, dt: torch.func.jvp(u_fn, (z, r, t), (dz, dr, dt))


def _linear(a: torch.Tensor):
    """u = a z + t (so the time tangent would matter if it leaked into the spatial JVP): J = a."""
    return _jvp_of(lambda z, r, t: z @ a.T + t[..., None] - r[..., None])


# --- scalar-isotropic form --------------------------------------------------------------------------

@pytest.mark.parametrize("sigma2, bias2", [(1.0, 0.0), (0.3, 2.0), (2.0, 0.5)])
def test_alpha_star_is_zero_when_the_jacobi_factor_vanishes_or_c_below_one(sigma2, bias2):
    assert alpha_star(1.0, sigma2, bias2) == 0.0
    assert alpha_star(1.0, sigma2, bias2, clip=False) == 0.0
    for c in (0.1, 0.5, 0.99):
        assert alpha_star(c, sigma2, bias2, clip=False) < 0
        assert alpha_star(c, sigma2, bias2) == 0.0


def test_kappa_and_limits():
    assert kappa(2.0) == 0.5 and kappa(4.0) == 0.75 and kappa(-1.0) == 2.0
    assert kappa(-3.0) > 1 and alpha_star(-3.0, 1.0, 0.0) == 1.0 and alpha_star(-3.0, 1.0, 0.0, clip=False) > 1
    for c in (1.5, 3.0, 40.0):                                         # bias2 -> 0: alpha* -> kappa
        assert alpha_star(c, 0.7, 1e-12) == pytest.approx(kappa(c), abs=1e-10)
    assert kappa(1e9) == pytest.approx(1.0, abs=1e-8) and kappa(-1e9) == pytest.approx(1.0, abs=1e-8)
    assert alpha_star(1e9, 1.0, 0.0) == pytest.approx(1.0, abs=1e-8)
    assert james_stein(3.0, 1.0) == 0.75 and alpha_star(3.0, 3.0, 1.0) == pytest.approx(0.5)
    # flat MSE: h j_F = 0 (c = 0), or neither noise nor bias: every alpha is optimal, 0 (vanilla) is returned
    assert kappa(0.0) == 0.0 and alpha_star(0.0, 1.0, 1.0) == 0.0 and alpha_star(0.0, 1.0, 1.0, clip=False) == 0.0
    assert james_stein(0.0, 0.0) == 0.0 and alpha_star(3.0, 0.0, 0.0) == 0.0


def test_scalar_functions_broadcast_tensors_and_return_floats_for_floats():
    assert isinstance(alpha_star(2.0, 1.0, 0.0), float)
    c = torch.tensor([0.0, 1.0, 2.0, 10.0])
    out = alpha_star(c, 1.0, torch.tensor([[0.0], [1.0]]))
    assert out.shape == (2, 4) and out.dtype == torch.float32
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0, 0.5, 0.9], [0.0, 0.0, 0.25, 0.45]]))


@pytest.mark.parametrize(
    "c, sigma2, bias2",
    [
        (3.0, 1.0, 0.5), (10.0, 0.2, 0.05), (1.5, 2.0, 3.0), (25.0, 1.0, 0.0),    # interior
        (0.5, 1.0, 1.0), (-2.0, 1.0, 0.0), (-0.5, 1.0, 0.1),                     # clipped to 0, to 1, to 1
    ],
)
def test_alpha_star_minimises_mse_curve_on_the_box(c, sigma2, bias2):
    curve = mse_curve(GRID, c, sigma2, bias2)
    assert float(GRID[curve.argmin()]) == pytest.approx(alpha_star(c, sigma2, bias2), abs=2e-5)


def test_mse_curve_is_method_formula_for_isotropic_jacobian():
    """MSE/d = sigma^2 (h^2 (1 - a)^2 j_F^2 - 2 h (1 - a) j_s + 1) + a^2 h^2 j_F^2 bias2 with j_s = j, j_F^2 = j^2."""
    h, j, sigma2, bias2 = 0.3, 7.0, 0.8, 0.25
    for a in (0.0, 0.35, 1.0):
        method = sigma2 * (h**2 * (1 - a) ** 2 * j**2 - 2 * h * (1 - a) * j + 1) + a**2 * h**2 * j**2 * bias2
        assert mse_curve(a, h * j, sigma2, bias2) == pytest.approx(method, rel=1e-12)


@pytest.mark.parametrize("h, j_s, j_F2", [(0.4, 2.0, 9.0), (0.8, -1.0, 4.0), (0.5, 3.0, 6.5), (0.9, 1e-3, 2.0)])
def test_general_c_gives_minimiser_of_general_scalar_mse(h, j_s, j_F2):
    """For a non-isotropic J the docs/method.md 4 MSE in (j_s, j_F^2) is minimised at alpha_star(c = h j_F^2 / j_s)."""
    sigma2, bias2 = 1.0, 0.3
    a = GRID
    general = sigma2 * (h**2 * (1 - a) ** 2 * j_F2 - 2 * h * (1 - a) * j_s + 1) + a**2 * h**2 * j_F2 * bias2
    c = c_from_jacobian(h, j_s, j_F2)
    assert kappa(c) == pytest.approx(kappa_from_jacobian(h, j_s, j_F2), rel=1e-12)
    assert float(a[general.argmin()]) == pytest.approx(alpha_star(c, sigma2, bias2), abs=2e-5)
    assert c_from_jacobian(0.0, 1.0, 1.0) == 0.0 and kappa_from_jacobian(0.0, 1.0, 1.0) == 0.0
    assert c_from_jacobian(0.5, 0.0, 2.0) == math.inf and kappa_from_jacobian(0.5, 0.0, 2.0) == 1.0


# --- matrix form ------------------------------------------------------------------------------------

def _times(b: int, h):
    t = torch.full((b,), 0.9, dtype=F64)
    return t - torch.as_tensor(h, dtype=F64), t


def test_upper_bound_on_isotropic_linear_model_is_one_minus_inverse_c():
    g = torch.Generator().manual_seed(0)
    b, m, d, j, h = 16, 5, 3, 5.0, 0.5
    r, t = _times(b, h)
    z = torch.randn(b, d, generator=g, dtype=F64)
    delta = torch.randn(b, m, d, generator=g, dtype=F64)
    est = alpha_star_upper_bound(_linear(j * torch.eye(d, dtype=F64)), z, r, t, delta)
    c = h * j
    torch.testing.assert_close(est.unclipped, torch.tensor(1 - 1 / c, dtype=F64))
    torch.testing.assert_close(est.value, torch.tensor(1 - 1 / c, dtype=F64))
    torch.testing.assert_close(est.denominator, c**2 * delta.pow(2).sum() / m)
    low = alpha_star_upper_bound(_linear(1.0 * torch.eye(d, dtype=F64)), z, r, t, delta)       # c = 0.5
    torch.testing.assert_close(low.unclipped, torch.tensor(1 - 1 / 0.5, dtype=F64))
    assert float(low.value) == 0.0
    flat = alpha_star_upper_bound(_linear(torch.zeros(d, d, dtype=F64)), z, r, t, delta)
    assert float(flat.denominator) == 0.0 and float(flat.value) == 0.0


def test_matrix_form_matches_scalar_form_with_isotropic_fluctuations_and_bias():
    """With E||delta||^2 = d sigma^2 at every z and ||b||^2 = d bias2, alpha*_M = kappa sigma^2 / (sigma^2 + bias2)."""
    g = torch.Generator().manual_seed(1)
    b, m, d, j, h, sigma2, bias2 = 8, 6, 4, 3.0, 0.6, 0.7, 0.4
    r, t = _times(b, h)
    delta = torch.randn(b, m, d, generator=g, dtype=F64)
    delta = delta * (d * sigma2 / delta.pow(2).sum((1, 2), keepdim=True).div(m)).sqrt()
    bias = torch.randn(b, d, generator=g, dtype=F64)
    bias = bias * (d * bias2 / bias.pow(2).sum(-1, keepdim=True)).sqrt()
    z = torch.randn(b, d, generator=g, dtype=F64)
    est = alpha_star_matrix(_linear(j * torch.eye(d, dtype=F64)), z, r, t, delta, bias)
    assert float(est.value) == pytest.approx(alpha_star(h * j, sigma2, bias2), rel=1e-10)
    ub = alpha_star_upper_bound(_linear(j * torch.eye(d, dtype=F64)), z, r, t, delta)
    assert float(ub.value) == pytest.approx(kappa(h * j), rel=1e-10) and float(ub.value) >= float(est.value)


def test_matrix_form_is_global_ratio_for_general_jacobian_and_mixed_h():
    """Non-symmetric A (so J vs J^T matters) and per-sample h: the sums of per-sample numerators and
    denominators, computed here with explicit matrices, not the mean of per-sample optima."""
    g = torch.Generator().manual_seed(2)
    b, m, d = 10, 4, 3
    a = torch.randn(d, d, generator=g, dtype=F64) + 2 * torch.eye(d, dtype=F64)
    h = torch.rand(b, generator=g, dtype=F64) * 0.8 + 0.1
    r, t = _times(b, h)
    z = torch.randn(b, d, generator=g, dtype=F64)
    delta = torch.randn(b, m, d, generator=g, dtype=F64)
    bias = 0.5 * torch.randn(b, d, generator=g, dtype=F64)
    nums, dens = [], []
    for i in range(b):
        hj = h[i] * a
        nums.append(sum(float((hj @ dl) @ ((hj - torch.eye(d, dtype=F64)) @ dl)) for dl in delta[i]) / m)
        dens.append(sum(float((hj @ dl) @ (hj @ dl)) for dl in delta[i]) / m + float((hj @ bias[i]).pow(2).sum()))
    est = alpha_star_matrix(_linear(a), z, r, t, delta, bias)
    assert float(est.numerator) == pytest.approx(sum(nums), rel=1e-10)
    assert float(est.denominator) == pytest.approx(sum(dens), rel=1e-10)
    assert float(est.value) == pytest.approx(min(max(sum(nums) / sum(dens), 0.0), 1.0), rel=1e-10)
    per_sample_mean = sum(n / dd for n, dd in zip(nums, dens)) / b
    assert abs(float(est.unclipped) - per_sample_mean) > 1e-3


def test_matrix_form_keeps_leading_dims_and_checks_shapes():
    g = torch.Generator().manual_seed(3)
    e, b, m, d = 2, 6, 3, 2
    z = torch.randn(e, b, d, generator=g, dtype=F64)
    r, t = torch.zeros(e, b, dtype=F64), torch.full((e, b), 0.5, dtype=F64)
    delta = torch.randn(e, b, m, d, generator=g, dtype=F64)
    est = alpha_star_upper_bound(_linear(4.0 * torch.eye(d, dtype=F64)), z, r, t, delta)
    torch.testing.assert_close(est.value, torch.full((e,), 0.5, dtype=F64))
    with pytest.raises(ValueError, match="^delta must be"):
        alpha_star_upper_bound(_linear(torch.eye(d, dtype=F64)), z, r, t, delta[..., :1])
    with pytest.raises(ValueError, match="^bias must"):
        alpha_star_matrix(_linear(torch.eye(d, dtype=F64)), z, r, t, delta, torch.zeros(b, d, dtype=F64))


# --- Hutchinson -------------------------------------------------------------------------------------

def test_hutchinson_is_exact_for_diagonal_jacobians_with_rademacher_probes():
    """u = z * z elementwise: J = diag(2 z), per sample; Rademacher xi gives xi.J xi = tr J, ||J xi||^2 = ||J||_F^2."""
    g = torch.Generator().manual_seed(4)
    z = torch.randn(5, 7, generator=g, dtype=F64)
    r, t = torch.zeros(5, dtype=F64), torch.full((5,), 0.5, dtype=F64)
    est = hutchinson_jacobian(_jvp_of(lambda z, r, t: z * z + t[:, None]), z, r, t, 1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(est.j_s, (2 * z).mean(-1))
    torch.testing.assert_close(est.j_F2, (2 * z).pow(2).mean(-1))
    latents = torch.randn(2, 3, 4, 4, generator=g, dtype=F64)          # (B, C, H, W): d = 48 per sample
    est = hutchinson_jacobian(
        _jvp_of(lambda z, r, t: z * z), latents, r[:2], t[:2], 1, torch.Generator().manual_seed(0), sample_ndim=3
    )
    torch.testing.assert_close(est.j_F2, (2 * latents).pow(2).flatten(1).mean(-1))


def test_hutchinson_estimates_trace_and_frobenius_of_a_general_jacobian():
    g = torch.Generator().manual_seed(5)
    d, b, n = 6, 3, 1000
    a = torch.randn(d, d, generator=g, dtype=F64)
    z = torch.randn(b, d, generator=g, dtype=F64)
    r, t = torch.zeros(b, dtype=F64), torch.full((b,), 0.5, dtype=F64)
    est = hutchinson_jacobian(_linear(a), z, r, t, n, torch.Generator().manual_seed(1))
    # Rademacher variances: Var[xi.A xi] = 2 sum_{i != j} A_sym,ij^2, Var[||A xi||^2] = 2 sum_{i != j} (A^T A)_ij^2
    off = ~torch.eye(d, dtype=torch.bool)
    sym, gram = (a + a.T) / 2, a.T @ a
    se_s = math.sqrt(2 * float(sym[off].pow(2).sum()) / n) / d
    se_f = math.sqrt(2 * float(gram[off].pow(2).sum()) / n) / d
    torch.testing.assert_close(est.j_s, torch.full((b,), float(a.trace()) / d, dtype=F64), atol=5 * se_s, rtol=0)
    torch.testing.assert_close(est.j_F2, torch.full((b,), float(a.pow(2).sum()) / d, dtype=F64), atol=5 * se_f, rtol=0)
    again = hutchinson_jacobian(_linear(a), z, r, t, n, torch.Generator().manual_seed(1))
    torch.testing.assert_close(again.j_s, est.j_s, rtol=0, atol=0)
    with pytest.raises(ValueError, match="^n_probes must be"):
        hutchinson_jacobian(_linear(a), z, r, t, 0, torch.Generator())


# --- written against mutants and bugs that once survived the suite (docs/testing.md, "Where the mutant tests live") ---


def test_scalar_theory_functions_return_python_floats_by_hand():
    value = mse_curve(0.25, 3.0, 0.5, 0.2)
    assert isinstance(value, float) and value == pytest.approx(0.5 * (0.75 * 3 - 1) ** 2 + 0.0625 * 9 * 0.2)
    c = c_from_jacobian(0.5, 2.0, 3.0)
    assert isinstance(c, float) and c == pytest.approx(0.5 * 3.0 / 2.0)
    assert c_from_jacobian(0.0, 2.0, 3.0) == 0.0
    torch.testing.assert_close(c_from_jacobian(torch.tensor([0.5, 0.2], dtype=F64), 2.0, 3.0),
                               torch.tensor([0.75, 0.3], dtype=F64))


def test_alpha_star_estimate_is_clipped_to_the_unit_box():
    est = AlphaStarEstimate.from_sums(torch.tensor([3.0, -1.0, 0.5, 1.0]), torch.tensor([2.0, 2.0, 2.0, 0.0]))
    torch.testing.assert_close(est.value, torch.tensor([1.0, 0.0, 0.25, 0.0]))
    torch.testing.assert_close(est.unclipped, torch.tensor([1.5, -0.5, 0.25, 0.0]))


@pytest.mark.parametrize("with_bias", [False, True])
def test_matrix_forms_on_image_shaped_samples_by_hand(with_bias):
    """sample_ndim = 3 (latents (C, H, W)) with a linear u = M vec(z): J delta = M vec(delta); the sums by NumPy."""
    g = torch.Generator().manual_seed(1)
    b, m_draws = 5, 3
    mat = torch.randn(4, 4, generator=g, dtype=F64)

    def jvp_fn(z, r, t, dz, dr, dt):
        lin = lambda a: (a.flatten(-3) @ mat.T).reshape(a.shape)  # noqa: E731
        return lin(z), lin(dz)

    z = torch.randn(b, 1, 2, 2, generator=g, dtype=F64)
    t = torch.rand(b, generator=g, dtype=F64)
    r = t * torch.rand(b, generator=g, dtype=F64)
    delta = torch.randn(b, m_draws, 1, 2, 2, generator=g, dtype=F64)
    bias = torch.randn(b, 1, 2, 2, generator=g, dtype=F64) if with_bias else None
    est = (alpha_star_matrix(jvp_fn, z, r, t, delta, bias, sample_ndim=3) if with_bias
           else alpha_star_upper_bound(jvp_fn, z, r, t, delta, sample_ndim=3))
    mm, h, d = mat.numpy(), (t - r).numpy(), delta.reshape(b, m_draws, 4).numpy()
    hjd = h[:, None, None] * d @ mm.T
    num = (hjd * (hjd - d)).sum(-1).mean(1).sum()
    den = (hjd ** 2).sum(-1).mean(1).sum()
    if with_bias:
        den += ((h[:, None] * bias.reshape(b, 4).numpy() @ mm.T) ** 2).sum()
    assert float(est.numerator) == pytest.approx(num, rel=1e-10)
    assert float(est.denominator) == pytest.approx(den, rel=1e-10)
    assert float(est.value) == pytest.approx(min(max(num / den, 0.0), 1.0), rel=1e-10)


def test_james_stein_of_numbers_is_a_number():
    from mfsweep.method.theory import james_stein

    value = james_stein(1.0, 0.25)
    assert isinstance(value, float) and value == pytest.approx(0.8)


def test_rademacher_probes_with_one_generator_per_member():
    """Per-member generators: member e's probes are exactly those its own generator draws for one member
    (so a packed member's diagnostics equal its single run's), +-1 valued, shaped like z."""
    from mfsweep.method.theory import _rademacher

    z = torch.zeros(2, 3, 4, dtype=F64)
    probes = _rademacher(z, [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)])
    assert probes.shape == z.shape and probes.dtype == F64 and set(probes.unique().tolist()) == {-1.0, 1.0}
    for e, seed in enumerate((1, 2)):
        alone = _rademacher(z[e], torch.Generator().manual_seed(seed))
        torch.testing.assert_close(probes[e], alone, rtol=0, atol=0)
        want = torch.randint(0, 2, (3, 4), generator=torch.Generator().manual_seed(seed)).double() * 2 - 1
        torch.testing.assert_close(probes[e], want, rtol=0, atol=0)


def test_theory_tensors_take_the_first_tensors_dtype():
    """Mixed inputs are cast to the first tensor's floating dtype (an integer tensor gives the default dtype)."""
    from mfsweep.method.theory import alpha_star

    out = alpha_star(torch.tensor([3.0], dtype=torch.float32), torch.tensor([1.0], dtype=F64), 0.0)
    assert out.dtype == torch.float32 and out.tolist() == pytest.approx([2 / 3])
    curve = mse_curve(torch.tensor([0]), torch.tensor([3]), 1, 0)
    assert curve.dtype == torch.get_default_dtype() and curve.tolist() == [4.0]


def test_safe_ratio_has_a_finite_gradient_where_the_denominator_vanishes():
    """The double `where` idiom: at c = 0 kappa is 0 and its gradient is finite (0), not NaN."""
    from mfsweep.method.theory import kappa

    c = torch.tensor([0.0, 2.0], dtype=F64, requires_grad=True)
    kappa(c).sum().backward()
    torch.testing.assert_close(c.grad, torch.tensor([0.0, 0.25], dtype=F64))


def test_matrix_terms_per_sample_by_hand():
    """The terms before the sums, per sample: (hA d).((hA - I) d) and ||hA d||^2 averaged over draws, ||hA b||^2."""
    from mfsweep.method.theory import matrix_terms

    g = torch.Generator().manual_seed(8)
    b, m, d = 4, 3, 2
    a = torch.randn(d, d, generator=g, dtype=F64)
    h = torch.tensor([0.1, 0.3, 0.5, 0.7], dtype=F64)
    r, t = h * 0 + 0.2, h + 0.2
    z = torch.randn(b, d, generator=g, dtype=F64)
    delta = torch.randn(b, m, d, generator=g, dtype=F64)
    bias = torch.randn(b, d, generator=g, dtype=F64)
    terms = matrix_terms(_linear(a), z, r, t, delta, bias)
    eye = np.eye(d)
    for i in range(b):
        hj = float(h[i]) * a.numpy()
        dl = delta[i].numpy()
        assert float(terms.numerator[i]) == pytest.approx(np.mean([(hj @ x) @ ((hj - eye) @ x) for x in dl]), rel=1e-12)
        assert float(terms.fluctuation[i]) == pytest.approx(np.mean([(hj @ x) @ (hj @ x) for x in dl]), rel=1e-12)
        assert float(terms.bias[i]) == pytest.approx(float(((hj @ bias[i].numpy()) ** 2).sum()), rel=1e-12)
    no_bias = matrix_terms(_linear(a), z, r, t, delta)
    assert bool((no_bias.bias == 0).all())


def test_hutchinson_with_one_generator_per_member_equals_each_members_own_call():
    """Per-member probe streams: slice i of a stacked call equals a call on z[i] alone with generator i."""
    g = torch.Generator().manual_seed(7)
    z = torch.randn(3, 5, 4, generator=g, dtype=F64)
    r, t = torch.zeros(3, 5, dtype=F64), torch.full((3, 5), 0.5, dtype=F64)
    a = torch.randn(4, 4, generator=g, dtype=F64)
    jvp = lambda z, r, t, dz, dr, dt: torch.func.jvp(lambda z: torch.tanh(z @ a.T), (z,), (dz,))  # noqa: E731
    gens = [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    stacked = hutchinson_jacobian(jvp, z, r, t, 2, gens)
    for i, seed in enumerate((1, 2, 3)):
        alone = hutchinson_jacobian(jvp, z[i], r[i], t[i], 2, torch.Generator().manual_seed(seed))
        torch.testing.assert_close(stacked.j_s[i], alone.j_s)
        torch.testing.assert_close(stacked.j_F2[i], alone.j_F2)
    with pytest.raises(ValueError, match="^generator: one per leading index"):
        hutchinson_jacobian(jvp, z, r, t, 2, gens[:2])


# --- hand-made mutants of the decorated functions mutmut skips (tests/hand_mutants.py, docs/testing.md) ---

HUTCH = ["mfsweep.method.theory", "hutchinson_jacobian"]
HUTCH_DETECT = [test_hutchinson_is_exact_for_diagonal_jacobians_with_rademacher_probes,
                test_hutchinson_estimates_trace_and_frobenius_of_a_general_jacobian]
TERMS = ["mfsweep.method.theory", "matrix_terms"]
TERMS_DETECT = [test_matrix_terms_per_sample_by_hand, test_matrix_form_is_global_ratio_for_general_jacobian_and_mixed_h,
                test_matrix_form_keeps_leading_dims_and_checks_shapes,
                test_upper_bound_on_isotropic_linear_model_is_one_minus_inverse_c]
UNCLIPPED = ["mfsweep.method.theory", "AlphaStarEstimate.unclipped"]
UNCLIPPED_DETECT = [test_alpha_star_estimate_is_clipped_to_the_unit_box,
                    test_upper_bound_on_isotropic_linear_model_is_one_minus_inverse_c]
# (id, module, qualname, old, new, detectors): `old` occurs exactly once in the function's source.
MUTANTS = [
    ("hutchinson-frobenius-not-over-d", *HUTCH, "j_F2 / (n_probes * d)", "j_F2 / n_probes", HUTCH_DETECT),
    ("hutchinson-trace-without-probe", *HUTCH, "per_sample(xi * j_xi, sample_ndim)", "per_sample(j_xi, sample_ndim)", HUTCH_DETECT),
    ("hutchinson-one-probe-only", *HUTCH, "for _ in range(n_probes):", "for _ in range(1):", HUTCH_DETECT),
    ("hutchinson-zero-probes-accepted", *HUTCH, "n_probes < 1", "n_probes < 0", HUTCH_DETECT),
    ("hutchinson-d-of-last-axis", *HUTCH, "math.prod(z.shape[z.dim() - sample_ndim:])", "z.shape[-1]", HUTCH_DETECT),
    ("terms-minus-identity-dropped", *TERMS, "hj_delta * (hj_delta - delta_m)", "hj_delta * hj_delta", TERMS_DETECT),
    ("terms-h-sign", *TERMS, "h = (t - r)", "h = (r - t)", TERMS_DETECT),
    ("terms-first-draw-only", *TERMS, "delta_m = delta.select(m_axis, m)", "delta_m = delta.select(m_axis, 0)", TERMS_DETECT),
    ("terms-bias-ignored", *TERMS, "if bias is not None and bias.shape != z.shape:", "bias = None\n    if False:", TERMS_DETECT),
    ("unclipped-plain-division", *UNCLIPPED, "_safe_ratio(self.numerator, self.denominator)",
     "self.numerator / self.denominator", UNCLIPPED_DETECT),
    ("unclipped-is-the-clipped-value", *UNCLIPPED, "return _safe_ratio(self.numerator, self.denominator)", "return self.value",
     UNCLIPPED_DETECT),
]
test_an_unchanged_copy_passes_the_same_tests, test_hand_mutant_is_detected = hand_mutant_tests(MUTANTS)
