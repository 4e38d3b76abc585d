"""Hand-made mutants of the functions mutmut does not mutate (decorated with `@torch.no_grad()` or
`@property`, docs/testing.md): each case applies one small source change to a copy of the function, patches
the copy in everywhere the original is bound, and asserts that the named tests fail on it. A no-op "mutant"
of each function checks that the copying itself changes nothing (the same tests pass on it).

A mutant "is detected" when one of its detector tests raises (an assertion or any other error)."""
from __future__ import annotations

import __future__
import importlib
import inspect
import math
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import test_classifier
import test_fid
import test_method_parts
import test_mutants
import test_theory
from mfsweep.models.mlp import EnsembleMLP

F64 = torch.float64


# --- detectors written for these mutants --------------------------------------------------------------

def test_ema_update_per_member_decay_lerps_each_member_by_its_own_weight():
    """decay (E,) for parameters stacked along E: member e moves by (1 - decay_e) of the gap, by hand."""
    ema = [torch.zeros(3, 2, 2, dtype=F64), torch.zeros(3, 4, dtype=F64)]
    params = [torch.ones(3, 2, 2, dtype=F64), torch.full((3, 4), 2.0, dtype=F64)]
    decay = torch.tensor([0.0, 0.5, 0.9], dtype=torch.float32)  # float32 decay on float64 parameters
    test_method_parts.ema_update(ema, params, decay)
    for e, keep in enumerate((0.0, 0.5, 0.9)):
        torch.testing.assert_close(ema[0][e], torch.full((2, 2), 1 - keep, dtype=F64), rtol=1e-6, atol=0)
        torch.testing.assert_close(ema[1][e], torch.full((4,), 2 * (1 - keep), dtype=F64), rtol=1e-6, atol=0)
    assert ema[0].dtype == F64
    ema2 = [torch.tensor([4.0])]
    test_method_parts.ema_update(iter(ema2), iter([torch.tensor([0.0])]), 0.25)  # generators work too
    torch.testing.assert_close(ema2[0], torch.tensor([1.0]))


def test_sampler_passes_r_then_t_and_steps_from_noise_to_data():
    """u(z, r, t) = z r + t: one step at (r, t) = (0, 1) gives e - 1; two steps (1 -> 0.5 -> 0) by hand."""
    e = torch.tensor([[1.0, 2.0]], dtype=F64)
    u_fn = lambda z, r, t: z * r[..., None] + t[..., None]  # noqa: E731
    torch.testing.assert_close(test_method_parts.sample(u_fn, e, 1), e - 1)
    z1 = e - 0.5 * (e * 0.5 + 1.0)
    torch.testing.assert_close(test_method_parts.sample(u_fn, e, 2), z1 - 0.5 * (z1 * 0.0 + 0.5))
    seen = []
    test_method_parts.sample(lambda z, r, t: seen.append((r.shape, t.shape)) or z * 0, torch.zeros(2, 3, 4), 1,
                             time_shape=(2,))
    assert seen == [(torch.Size([2]), torch.Size([2]))]


def test_init_member_draws_uniform_fan_in_weights_then_biases_for_that_member_only():
    """nn.Linear's init (uniform +-1/sqrt(fan_in)) replayed from the member's generator, layer by layer,
    weight then bias; the other members are left as they were."""
    m = EnsembleMLP(3, 2, width=5, depth=2)
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(7.0)
    m.init_member(1, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    for w, b, fan_in in zip(m.weights, m.biases, (4, 5, 5)):
        bound = 1 / math.sqrt(fan_in)
        torch.testing.assert_close(w[1], (torch.rand(w.shape[1:], generator=g) * 2 - 1) * bound)
        torch.testing.assert_close(b[1], (torch.rand(b.shape[1:], generator=g) * 2 - 1) * bound)
        assert bool((w[0] == 7).all() and (w[2] == 7).all() and (b[0] == 7).all() and (b[2] == 7).all())
    assert not any(p.grad is not None for p in m.parameters())


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
    terms = matrix_terms(test_theory._linear(a), z, r, t, delta, bias)
    eye = np.eye(d)
    for i in range(b):
        hj = float(h[i]) * a.numpy()
        dl = delta[i].numpy()
        assert float(terms.numerator[i]) == pytest.approx(np.mean([(hj @ x) @ ((hj - eye) @ x) for x in dl]), rel=1e-12)
        assert float(terms.fluctuation[i]) == pytest.approx(np.mean([(hj @ x) @ (hj @ x) for x in dl]), rel=1e-12)
        assert float(terms.bias[i]) == pytest.approx(float(((hj @ bias[i].numpy()) ** 2).sum()), rel=1e-12)
    no_bias = matrix_terms(test_theory._linear(a), z, r, t, delta)
    assert bool((no_bias.bias == 0).all())


# --- the mutants --------------------------------------------------------------------------------------

def _with_tmp(fn):
    def run(tmp_root: Path):
        tmp = tmp_root / fn.__name__
        tmp.mkdir()
        fn(tmp)
    run.needs_tmp, run.__name__ = True, fn.__name__
    return run


EMA = ["mfsweep.method.ema", "ema_update"]
EMA_DETECT = [test_method_parts.test_ema_update_is_elementwise_lerp,
              test_ema_update_per_member_decay_lerps_each_member_by_its_own_weight]
SAMPLE = ["mfsweep.method.sampler", "sample"]
SAMPLE_DETECT = [test_method_parts.test_one_step_sampler_is_e_minus_u, test_method_parts.test_n_step_sampler_follows_the_grid,
                 test_sampler_passes_r_then_t_and_steps_from_noise_to_data]
HUTCH = ["mfsweep.method.theory", "hutchinson_jacobian"]
HUTCH_DETECT = [test_theory.test_hutchinson_is_exact_for_diagonal_jacobians_with_rademacher_probes,
                test_theory.test_hutchinson_estimates_trace_and_frobenius_of_a_general_jacobian]
TERMS = ["mfsweep.method.theory", "matrix_terms"]
TERMS_DETECT = [test_matrix_terms_per_sample_by_hand, test_theory.test_matrix_form_is_global_ratio_for_general_jacobian_and_mixed_h,
                test_theory.test_matrix_form_keeps_leading_dims_and_checks_shapes,
                test_theory.test_upper_bound_on_isotropic_linear_model_is_one_minus_inverse_c]
UNCLIPPED = ["mfsweep.method.theory", "AlphaStarEstimate.unclipped"]
UNCLIPPED_DETECT = [test_mutants.test_alpha_star_estimate_is_clipped_to_the_unit_box,
                    test_theory.test_upper_bound_on_isotropic_linear_model_is_one_minus_inverse_c]
FINGERPRINT = ["mfsweep.metrics.fid", "FID.fingerprint"]
FINGERPRINT_DETECT = [_with_tmp(test_fid.test_reference_cache_round_trip_is_reused),
                      _with_tmp(test_fid.test_stale_cache_from_another_network_is_recomputed)]
ACCUMULATE = ["mfsweep.metrics.fid", "FID._accumulate"]
ACCUMULATE_DETECT = [test_fid.test_bad_inputs_are_refused, test_fid.test_identical_sets_score_zero, test_fid.test_matches_independent_scipy_frechet_distance,
                     _with_tmp(test_fid.test_reference_cache_round_trip_is_reused)]
CLF_INIT = ["mfsweep.metrics.classifier", "_init_"]
CLF_INIT_DETECT = [test_classifier.test_init_replays_uniform_fan_in_draws_from_the_generator_only]
INIT_MEMBER = ["mfsweep.models.mlp", "EnsembleMLP.init_member"]
INIT_MEMBER_DETECT = [test_init_member_draws_uniform_fan_in_weights_then_biases_for_that_member_only]

# (id, module, qualname, old, new, detectors): `old` occurs exactly once in the function's source.
MUTANTS = [
    ("ema-decay-for-1-minus-decay", *EMA, "torch._foreach_lerp_(ema, params, 1.0 - decay)", "torch._foreach_lerp_(ema, params, decay)", EMA_DETECT),
    ("ema-tensor-weight-is-decay", *EMA, "weight = 1.0 - decay", "weight = decay", EMA_DETECT),
    ("ema-tensor-weight-not-per-member", *EMA, ".view(-1, *([1] * (p.dim() - 1)))", ".mean()", EMA_DETECT),
    ("ema-tensor-weight-float32", *EMA, "weight.to(p.dtype)", "weight", EMA_DETECT),
    ("sample-step-sign", *SAMPLE, "z - (t_k - t_next) * u_fn", "z + (t_k - t_next) * u_fn", SAMPLE_DETECT),
    ("sample-r-t-swapped", *SAMPLE, "u_fn(z, r, t)", "u_fn(z, t, r)", SAMPLE_DETECT),
    ("sample-grid-reversed", *SAMPLE, "zip(grid[:-1], grid[1:])", "zip(grid[1:], grid[:-1])", SAMPLE_DETECT),
    ("sample-time-shape-ignored", *SAMPLE, "shape = noise.shape[:-1] if time_shape is None else time_shape",
     "shape = noise.shape[:-1]", SAMPLE_DETECT),
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
    ("fingerprint-constant", *FINGERPRINT, "return self._fingerprint", "return 'fid'", FINGERPRINT_DETECT),
    ("accumulate-everything-real", *ACCUMULATE, "self._metric.update(batch, real=real)", "self._metric.update(batch, real=True)",
     ACCUMULATE_DETECT),
    ("accumulate-image-by-image", *ACCUMULATE, "_batches(images, self.batch_size)", "_batches(images, 1)", ACCUMULATE_DETECT),
    ("accumulate-unprepared", *ACCUMULATE, "batch = self._prepare(batch)", "batch = batch", ACCUMULATE_DETECT),
    ("classifier-init-fan-in-of-whole-weight", *CLF_INIT, "m.weight[0].numel()", "m.weight.numel()", CLF_INIT_DETECT),
    ("classifier-init-weights-only", *CLF_INIT, "for p in (m.weight, m.bias):", "for p in (m.weight,):", CLF_INIT_DETECT),
    ("classifier-init-not-centred", *CLF_INIT, "* 2 - 1) * bound", "* 2) * bound", CLF_INIT_DETECT),
    ("classifier-init-linear-skipped", *CLF_INIT, "(nn.Conv2d, nn.Linear)", "(nn.Conv2d,)", CLF_INIT_DETECT),
    ("init-member-fan-out", *INIT_MEMBER, "w.shape[-1]", "w.shape[-2]", INIT_MEMBER_DETECT),
    ("init-member-always-member-0", *INIT_MEMBER, "w[i].copy_", "w[0].copy_", INIT_MEMBER_DETECT),
    ("init-member-half-range", *INIT_MEMBER, "w[i].copy_(torch.rand(w.shape[1:], generator=generator) * 2 * bound - bound)",
     "w[i].copy_(torch.rand(w.shape[1:], generator=generator) * bound)", INIT_MEMBER_DETECT),
    ("init-member-bias-before-weight", *INIT_MEMBER,
     "w[i].copy_(torch.rand(w.shape[1:], generator=generator) * 2 * bound - bound)\n"
     "        b[i].copy_(torch.rand(b.shape[1:], generator=generator) * 2 * bound - bound)",
     "b[i].copy_(torch.rand(b.shape[1:], generator=generator) * 2 * bound - bound)\n"
     "        w[i].copy_(torch.rand(w.shape[1:], generator=generator) * 2 * bound - bound)", INIT_MEMBER_DETECT),
]
TARGETS = {(module, qualname): detectors for _, module, qualname, _, _, detectors in MUTANTS}


def _mutated(module_name: str, qualname: str, old: str, new: str):
    """The original object and a copy compiled from its source with `old` replaced by `new` in the module's
    namespace (decorators included, so a `@torch.no_grad()` or `@property` copy is decorated the same way)."""
    module = importlib.import_module(module_name)
    owner, name = (module, qualname) if "." not in qualname else (getattr(module, qualname.split(".")[0]), qualname.split(".")[1])
    original = inspect.getattr_static(owner, name)
    func = original.fget if isinstance(original, property) else original
    source = textwrap.dedent(inspect.getsource(inspect.unwrap(func)))
    assert source.startswith("@"), f"{qualname} is not decorated"
    assert old == new == "" or source.count(old) == 1, f"{qualname}: {old!r} occurs {source.count(old)} times"
    namespace = dict(vars(module))
    code = compile(source.replace(old, new) if old else source, inspect.getsourcefile(module), "exec",
                   flags=__future__.annotations.compiler_flag, dont_inherit=True)
    exec(code, namespace)
    return owner, name, original, namespace[name]


def _patch_everywhere(monkeypatch: pytest.MonkeyPatch, owner, name: str, original, replacement) -> None:
    monkeypatch.setattr(owner, name, replacement)
    if inspect.ismodule(owner):  # also every module that imported the function by name
        for mod in list(sys.modules.values()):
            if mod is not owner and getattr(mod, name, None) is original:
                monkeypatch.setattr(mod, name, replacement)


def _run(detector, tmp_path: Path) -> None:
    if getattr(detector, "needs_tmp", False):
        detector(tmp_path)
    else:
        detector()


def _source_has_decorator(module_name: str, qualname: str) -> bool:
    module = importlib.import_module(module_name)
    owner = module if "." not in qualname else getattr(module, qualname.split(".")[0])
    obj = inspect.getattr_static(owner, qualname.split(".")[-1])
    func = obj.fget if isinstance(obj, property) else obj
    return textwrap.dedent(inspect.getsource(func)).startswith("@")


@pytest.mark.parametrize("module_name, qualname", sorted(TARGETS))
def test_an_unchanged_copy_passes_the_same_tests(module_name, qualname, tmp_path, monkeypatch):
    """The copy mechanism itself is faithful: the function recompiled without change passes its detectors."""
    assert _source_has_decorator(module_name, qualname)  # still a function mutmut skips
    owner, name, original, copy = _mutated(module_name, qualname, "", "")
    assert copy is not original
    _patch_everywhere(monkeypatch, owner, name, original, copy)
    for detector in TARGETS[(module_name, qualname)]:
        _run(detector, tmp_path)


@pytest.mark.parametrize("case", MUTANTS, ids=[m[0] for m in MUTANTS])
def test_hand_mutant_is_detected(case, tmp_path, monkeypatch):
    _, module_name, qualname, old, new, detectors = case
    owner, name, original, mutant = _mutated(module_name, qualname, old, new)
    _patch_everywhere(monkeypatch, owner, name, original, mutant)
    failures = []
    for detector in detectors:
        try:
            _run(detector, tmp_path)
        except (Exception, pytest.fail.Exception) as exc:  # noqa: BLE001  (a failed assert, pytest.raises or any error)
            failures.append(f"{getattr(detector, '__name__', detector)}: {type(exc).__name__}")
    assert failures, f"hand mutant {case[0]} survived {[getattr(d, '__name__', d) for d in detectors]}"
