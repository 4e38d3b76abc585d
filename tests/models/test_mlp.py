"""The stacked MLP ensemble (mfsweep/models/mlp.py): its layout and forward pass against NumPy per member, its
sizes checked by key, its per-member initialisation replayed from the member's generator."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hand_mutants import hand_mutant_tests

from mfsweep.models.mlp import EnsembleMLP

F64 = torch.float64


@pytest.mark.parametrize("kwargs,key", [(dict(n_members=0), "n_members"), (dict(dim=-1), "dim"),
                                        (dict(width=0), "model.width"), (dict(depth=0), "model.depth"),
                                        (dict(width=2.0), "model.width")])
def test_mlp_refuses_non_positive_sizes_by_key(kwargs, key):
    from mfsweep.models.mlp import EnsembleMLP

    args = {**dict(n_members=2, dim=2, width=4, depth=2), **kwargs}
    value = kwargs[next(iter(kwargs))]
    with pytest.raises(ValueError, match=f"^{key} must be a positive integer, got {value!r}$"):
        EnsembleMLP(**args)


def test_mlp_layout_and_forward_against_numpy_per_member():
    """Stacked layers [d + 2 -> width -> ... -> d] (inputs z, t, t - r), SiLU between, member by member in NumPy."""
    from mfsweep.models.mlp import EnsembleMLP

    m = EnsembleMLP(3, 2, width=5, depth=2).double()
    assert (m.n_members, m.dim, m.width, m.depth) == (3, 2, 5, 2)
    assert [tuple(w.shape) for w in m.weights] == [(3, 5, 4), (3, 5, 5), (3, 2, 5)]
    assert [tuple(b.shape) for b in m.biases] == [(3, 1, 5), (3, 1, 5), (3, 1, 2)]
    for i in range(3):
        m.init_member(i, torch.Generator().manual_seed(i))
    g = torch.Generator().manual_seed(9)
    z = torch.randn(3, 4, 2, generator=g, dtype=F64)
    t = torch.rand(3, 4, generator=g, dtype=F64)
    r = t * torch.rand(3, 4, generator=g, dtype=F64)
    with torch.no_grad():
        got = m(z, r, t).numpy()
    silu = lambda a: a / (1 + np.exp(-a))  # noqa: E731
    for e in range(3):
        h = np.concatenate([z[e].numpy(), t[e].numpy()[:, None], (t[e] - r[e]).numpy()[:, None]], 1)
        layers = [(w[e].detach().numpy(), b[e, 0].detach().numpy()) for w, b in zip(m.weights, m.biases)]
        for k, (w, b) in enumerate(layers):
            h = h @ w.T + b
            if k < len(layers) - 1:
                h = silu(h)
        np.testing.assert_allclose(got[e], h, rtol=1e-12, atol=1e-12)


def test_mlp_defaults_and_the_smallest_valid_sizes():
    from mfsweep.models.mlp import EnsembleMLP

    m = EnsembleMLP(1, 2)
    assert (m.width, m.depth) == (128, 3) and len(m.weights) == 4  # the documented defaults: 3 hidden layers of 128
    tiny = EnsembleMLP(1, 1, width=1, depth=1)  # 1 is a positive integer everywhere
    assert [tuple(w.shape) for w in tiny.weights] == [(1, 1, 3), (1, 1, 1)]


def test_mlp_io_kwargs_rebuild_a_network_with_the_same_inputs_and_outputs():
    """`io_kwargs()` is what a learned velocity head is built from (method/proxy.py): the constructor's own keys,
    so a network of another width and depth beside it takes and returns the same shapes."""
    from mfsweep.models.mlp import EnsembleMLP

    m = EnsembleMLP(3, 5, width=8, depth=2)
    assert m.io_kwargs() == {"n_members": 3, "dim": 5}
    head = EnsembleMLP(**m.io_kwargs(), width=4, depth=1)
    z, t = torch.randn(3, 7, 5), torch.rand(3, 7)
    assert head(z, t, t).shape == m(z, t, t).shape == (3, 7, 5)


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


# --- hand-made mutants of the decorated functions mutmut skips (tests/hand_mutants.py, docs/testing.md) ---

INIT_MEMBER = ["mfsweep.models.mlp", "EnsembleMLP.init_member"]
INIT_MEMBER_DETECT = [test_init_member_draws_uniform_fan_in_weights_then_biases_for_that_member_only]
# (id, module, qualname, old, new, detectors): `old` occurs exactly once in the function's source.
MUTANTS = [
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
test_an_unchanged_copy_passes_the_same_tests, test_hand_mutant_is_detected = hand_mutant_tests(MUTANTS)
