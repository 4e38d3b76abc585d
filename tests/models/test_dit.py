"""The latent DiT: shapes, adaLN-Zero init, the JVP against finite differences, attention paths, sizes."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from mfsweep.models.dit import DiT, DiT_models, count_parameters, math_attention, size_arguments

TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=32, depth=2, num_heads=2, num_classes=10)

REPO = Path(__file__).resolve().parents[2]


def _tiny(dtype: torch.dtype = torch.float32, perturb: bool = True, **overrides) -> DiT:
    """A tiny DiT; with `perturb`, its zero-initialised (adaLN-Zero) layers get small random weights so the
    blocks and the output are non-trivial functions of every input."""
    model = DiT(**{**TINY, **overrides}).to(dtype)
    if perturb:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "adaLN_modulation" in name or name.startswith("final_layer.linear"):
                    p.copy_(0.2 * torch.randn(p.shape, generator=g, dtype=dtype))
    return model


def _inputs(n: int = 3, dtype: torch.dtype = torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 4, 8, 8, generator=g, dtype=dtype)
    a, b = torch.rand(n, generator=g, dtype=dtype), torch.rand(n, generator=g, dtype=dtype)
    r, t = torch.minimum(a, b), torch.maximum(a, b)
    y = torch.randint(0, 11, (n,), generator=g)  # index 10 is the null class
    return z, r, t, y


def _tangent(n: int = 3, dtype: torch.dtype = torch.float32, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 4, 8, 8, generator=g, dtype=dtype), torch.randn(n, generator=g, dtype=dtype),
            torch.randn(n, generator=g, dtype=dtype))


def test_output_shape_and_adaln_zero_init_gives_exactly_zero():
    model = _tiny(perturb=False)
    z, r, t, y = _inputs()
    u = model(z, r, t, y)
    assert u.shape == z.shape
    assert torch.equal(u, torch.zeros_like(z))
    _, du = model.jvp(z, r, t, *_tangent(), y)
    assert torch.equal(du, torch.zeros_like(z))


def test_jvp_matches_central_finite_difference_in_float64():
    model = _tiny(torch.float64)
    z, r, t, y = _inputs(dtype=torch.float64)
    dz, dr, dt = _tangent(dtype=torch.float64)
    u, du = model.jvp(z, r, t, dz, dr, dt, y)
    eps = 1e-6
    with torch.no_grad():
        plus = model(z + eps * dz, r + eps * dr, t + eps * dt, y)
        minus = model(z - eps * dz, r - eps * dr, t - eps * dt, y)
    fd = (plus - minus) / (2 * eps)
    assert du.abs().max() > 1e-2, "the directional derivative is trivial; the check would prove nothing"
    torch.testing.assert_close(du, fd, rtol=1e-6, atol=1e-8)
    # The time directions alone (dz = 0) reach the output through both time embedders.
    for dr_, dt_ in ((dr, torch.zeros_like(dt)), (torch.zeros_like(dr), dt)):
        _, du_time = model.jvp(z, r, t, torch.zeros_like(dz), dr_, dt_, y)
        with torch.no_grad():
            plus, minus = model(z, r + eps * dr_, t + eps * dt_, y), model(z, r - eps * dr_, t - eps * dt_, y)
        fd_time = (plus - minus) / (2 * eps)
        assert du_time.abs().max() > 1e-4
        torch.testing.assert_close(du_time, fd_time, rtol=1e-6, atol=1e-8)


def test_math_and_fused_attention_agree_and_are_different_paths(monkeypatch):
    model = _tiny()
    for block in model.blocks:
        block.attn.fused_attn = True
    calls = []
    sdpa = nn.functional.scaled_dot_product_attention

    def counting_sdpa(*args, **kwargs):
        calls.append(1)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(nn.functional, "scaled_dot_product_attention", counting_sdpa)
    z, r, t, y = _inputs()
    with torch.no_grad():
        fused = model(z, r, t, y)
        assert len(calls) == len(model.blocks)
        with math_attention(model):
            assert not any(block.attn.fused_attn for block in model.blocks)
            explicit = model(z, r, t, y)
    assert len(calls) == len(model.blocks), "math_attention still called the fused kernel"
    assert all(block.attn.fused_attn for block in model.blocks), "math_attention did not restore the flags"
    assert fused.abs().max() > 1e-2
    torch.testing.assert_close(explicit, fused, rtol=1e-5, atol=1e-6)


def test_math_attention_restores_flags_after_an_error():
    model = _tiny()
    before = [block.attn.fused_attn for block in model.blocks]
    with pytest.raises(RuntimeError, match="boom"):
        with math_attention(model):
            raise RuntimeError("boom")
    assert [block.attn.fused_attn for block in model.blocks] == before


def test_jvp_primal_equals_forward_and_carries_the_same_gradients():
    # float64, so that the two attention paths agree far below the tolerances and the check is about the graph.
    model = _tiny(torch.float64)
    z, r, t, y = _inputs(dtype=torch.float64)
    u_jvp, du = model.jvp(z, r, t, *_tangent(dtype=torch.float64), y)
    u_fwd = model(z, r, t, y)
    torch.testing.assert_close(u_jvp, u_fwd, rtol=1e-10, atol=1e-12)

    target = torch.randn(z.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    params = [p for p in model.parameters() if p.requires_grad]
    # The MeanFlow loss shape: du only enters the (detached) target, u carries the gradient.
    grads_jvp = torch.autograd.grad(((u_jvp - (target - du).detach()) ** 2).sum(), params, allow_unused=True)
    grads_fwd = torch.autograd.grad(((u_fwd - (target - du).detach()) ** 2).sum(), params, allow_unused=True)
    assert all(g is not None for g in grads_jvp), "some parameter gets no gradient through u from jvp()"
    assert sum(g.abs().sum() for g in grads_jvp) > 0
    for g_jvp, g_fwd in zip(grads_jvp, grads_fwd):
        torch.testing.assert_close(g_jvp, g_fwd, rtol=1e-9, atol=1e-12)


def test_conditioning_reaches_the_output_through_label_and_interval():
    model = _tiny()
    z, r, t, y = _inputs()
    assert model.null_class == TINY["num_classes"]
    with torch.no_grad():
        base = model(z, r, t, y)
        null = model(z, r, t, torch.full_like(y, model.null_class))
        shorter = model(z, (r + t) / 2, t, y)  # same t, different h = t - r
    assert (base - null).abs().max() > 1e-3
    assert (base - shorter).abs().max() > 1e-3


def test_positional_embedding_layout():
    model = _tiny(perturb=False)
    d, grid = TINY["hidden_size"], TINY["input_size"] // TINY["patch_size"]
    pe = model.pos_embed[0]
    assert pe.shape == (grid * grid, d)
    assert "pos_embed" not in dict(model.named_parameters())
    for row, col in ((0, 0), (1, 2), (3, 1)):
        token = pe[row * grid + col]
        # First half encodes the column, second half the row; each half is [sin, cos] at frequency 1 first.
        expected = [math.sin(col), math.cos(col), math.sin(row), math.cos(row)]
        got = [token[0], token[d // 4], token[d // 2], token[3 * d // 4]]
        assert [float(v) for v in got] == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("config", [
    TINY,
    dict(input_size=16, patch_size=4, in_channels=3, hidden_size=48, depth=3, num_heads=4, mlp_ratio=2.5,
         num_classes=0),
    dict(input_size=8, patch_size=1, in_channels=2, hidden_size=64, depth=1, num_heads=8, num_classes=7),
])
def test_count_parameters_equals_the_built_model(config):
    assert count_parameters(config) == sum(p.numel() for p in DiT(**config).parameters())


# Published DiT-XL/2 at ImageNet 256 (32x32x4 latents, 1000 classes): 675,129,632, the count DiT's train.py
# logs ("675M" in the paper). Published DiT-B sizes are only given rounded: 130M.
DIT_XL_2_PUBLISHED = 675_129_632
DIT_B_PUBLISHED_ROUNDED = 130_000_000


def _ours_from_published(published: int, hidden: int, patch: int, channels: int = 4, latent: int = 32) -> int:
    """Published DiT count -> ours, from the three differences only."""
    tokens = (latent // patch) ** 2
    frozen_pos_embed = tokens * hidden                    # a frozen nn.Parameter in DiT, a buffer here
    sigma_rows = patch * patch * channels * (hidden + 1)  # learned-sigma rows of the final linear (weights + bias)
    interval_embedder = (256 * hidden + hidden) + (hidden * hidden + hidden)  # second TimestepEmbedder, for t - r
    return published - frozen_pos_embed - sigma_rows + interval_embedder


def test_xl2_size_follows_from_the_published_count():
    ours = count_parameters(dict(input_size=32, in_channels=4, num_classes=1000, hidden_size=1152, depth=28,
                                 patch_size=2, num_heads=16))
    assert ours == _ours_from_published(DIT_XL_2_PUBLISHED, hidden=1152, patch=2) == 676_440_592
    with torch.device("meta"):  # no weights allocated
        assert sum(p.numel() for p in DiT_models["DiT-XL/2"]().parameters()) == ours


def test_b4_size_follows_from_the_published_count_to_its_rounding():
    ours = count_parameters(dict(input_size=32, in_channels=4, num_classes=1000, hidden_size=768, depth=12,
                                 patch_size=4, num_heads=12))
    derived = _ours_from_published(DIT_B_PUBLISHED_ROUNDED, hidden=768, patch=4)
    assert abs(ours - derived) <= 500_000, f"{ours} is not {derived} up to the published rounding (0.5M)"
    with torch.device("meta"):
        assert sum(p.numel() for p in DiT_models["DiT-B/4"]().parameters()) == ours


@pytest.mark.parametrize("name, hidden, depth, heads", [
    ("S", 384, 12, 6), ("B", 768, 12, 12), ("L", 1024, 24, 16), ("XL", 1152, 28, 16),
])
@pytest.mark.parametrize("patch", [2, 4, 8])
def test_model_zoo(name, hidden, depth, heads, patch):
    factory = DiT_models[f"DiT-{name}/{patch}"]
    with torch.device("meta"):
        model = factory(input_size=16, in_channels=3, num_classes=5)
    built = (model.pos_embed.shape[-1], len(model.blocks), model.num_heads, model.patch_size)
    assert built == (hidden, depth, heads, patch)
    config = dict(input_size=16, in_channels=3, num_classes=5, hidden_size=hidden, depth=depth, num_heads=heads,
                  patch_size=patch)
    assert sum(p.numel() for p in model.parameters()) == count_parameters(config)


@pytest.mark.parametrize("path", sorted((REPO / "conf" / "model").glob("dit_*.yaml")), ids=lambda p: p.stem)
def test_each_dit_yaml_is_its_zoo_size(path):
    """conf/model/dit_*.yaml spell out for Hydra the sizes models/dit.py defines: the file's name, its `name` and
    its sizes must all be one zoo entry's."""
    cfg = yaml.safe_load(path.read_text())
    size, patch = path.stem.removeprefix("dit_").split("_")
    assert cfg["name"] == f"DiT-{size.upper()}/{patch}"
    assert {k: cfg[k] for k in ("depth", "hidden_size", "patch_size", "num_heads")} == size_arguments(cfg["name"])


def test_zoo_has_exactly_the_twelve_models():
    assert sorted(DiT_models) == sorted(f"DiT-{s}/{p}" for s in ("S", "B", "L", "XL") for p in (2, 4, 8))


@pytest.mark.parametrize("overrides, match", [
    (dict(input_size=9), "input_size 9 is not divisible by patch_size 2"),
    (dict(num_heads=3), "hidden_size 32 is not divisible by num_heads 3"),
    (dict(hidden_size=18, num_heads=2), "hidden_size must be a multiple of 4"),
    (dict(depth=0), "depth must be a positive integer"),
    (dict(num_classes=-1), "num_classes must be a non-negative integer"),
    (dict(mlp_ratio=0.0), "mlp_ratio must be positive"),
])
def test_bad_config_is_rejected(overrides, match):
    with pytest.raises(ValueError, match=match):
        DiT(**{**TINY, **overrides})
    with pytest.raises(ValueError, match=match):
        count_parameters({**TINY, **overrides})


def test_count_parameters_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown DiT config key.*learn_sigma"):
        count_parameters({**TINY, "learn_sigma": True})


def test_bad_input_shapes_are_rejected():
    model = _tiny(perturb=False)
    z, r, t, y = _inputs()
    with pytest.raises(ValueError, match=r"z must have shape \(N, 4, 8, 8\), got \(3, 3, 8, 8\)"):
        model(z[:, :3], r, t, y)
    with pytest.raises(ValueError, match=r"t must have shape \(3,\)"):
        model(z, r, t[:2], y)
    with pytest.raises(ValueError, match=r"y must have shape \(3,\)"):
        model(z, r, t, y[:, None])
