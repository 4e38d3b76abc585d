"""FID (mfsweep.metrics.fid): against an independent scipy Frechet distance and torchmetrics, shift monotonicity, the
reference cache, and the Inception weights path (offline)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import scipy.linalg
import torch
from hand_mutants import hand_mutant_tests, with_tmp
from torch import nn

from mfsweep.metrics import fid as fid_mod
from mfsweep.metrics.fid import (FID, INCEPTION_WEIGHTS_KEY, BlockMoments, check_blocks, check_images,
                                 check_inception_weights, inception_fid)
from mfsweep.tasks.streams import single_threaded

N, SIZE = 96, 16


def _init_(module: nn.Module, seed: int) -> nn.Module:
    """Overwrite every parameter from an explicit generator (module init would use the global RNG)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
    return module


def feature_net(seed: int = 0) -> nn.Module:
    """A tiny conv net images (N, 3, H, W) -> (N, 16) features."""
    with torch.random.fork_rng():
        net = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2), nn.Tanh(),
            nn.Conv2d(8, 16, 3, stride=2), nn.Tanh(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
    return _init_(net, seed)


def images(seed: int, shift: float = 0.0, n: int = N) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, SIZE, SIZE, generator=g) * 0.5 + shift  # in [shift, shift + 0.5]


def scipy_fid(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """||mu_x - mu_y||^2 + tr(S_x + S_y - 2 (S_x S_y)^(1/2)), from the network's features in float64."""
    with torch.no_grad():
        fx, fy = (net(z).double().numpy() for z in (x, y))
    mx, my = fx.mean(0), fy.mean(0)
    sx, sy = np.cov(fx, rowvar=False), np.cov(fy, rowvar=False)
    root = scipy.linalg.sqrtm(sx @ sy).real
    return float(((mx - my) ** 2).sum() + np.trace(sx + sy - 2 * root))


class Counting:
    """An iterable of batches that counts how many batches were taken from it."""

    def __init__(self, x: torch.Tensor, batch: int = 32):
        self.x, self.batch, self.taken = x, batch, 0

    def __iter__(self):
        for b in self.x.split(self.batch):
            self.taken += 1
            yield b


def test_identical_sets_score_zero():
    fid = FID(feature_net())
    x = images(0)
    fid.set_reference(x)
    assert abs(fid.score(x)) < 1e-3
    assert abs(fid.score(list(x.split(10)))) < 1e-3  # batching does not matter


def test_matches_independent_scipy_frechet_distance():
    net = feature_net()
    x, y = images(0), images(1, shift=0.1)
    fid = FID(net, batch_size=40)
    fid.set_reference(x)
    ours = fid.score(y)
    assert ours > 1e-3
    assert ours == pytest.approx(scipy_fid(net, x, y), rel=1e-4)


def test_shift_increases_fid_monotonically_and_beyond_sampling_noise():
    fid = FID(feature_net())
    fid.set_reference(images(0))
    noise = fid.score(images(1))  # same distribution, another sample
    scores = [fid.score(images(1, shift=s)) for s in (0.05, 0.1, 0.2, 0.4)]
    assert all(a < b for a, b in zip(scores, scores[1:])), scores
    assert scores[0] > 3 * noise, (noise, scores)


def test_reference_cache_round_trip_is_reused(tmp_path: Path):
    cache = tmp_path / "ref" / "stats.npz"
    x, y = images(0), images(1, shift=0.1)
    first_ref = Counting(x)
    fid = FID(feature_net(), reference_cache=cache)
    fid.set_reference(first_ref)
    expected = fid.score(y)
    assert first_ref.taken == 3 and cache.is_file()
    with np.load(cache) as stats:
        mu, sigma, n = fid.reference_stats()
        np.testing.assert_array_equal(stats["mu"], mu)
        np.testing.assert_array_equal(stats["sigma"], sigma)
        assert int(stats["n"]) == n == N
        assert str(stats["fingerprint"]) == fid.fingerprint

    net = feature_net()
    calls = []
    net.register_forward_hook(lambda *_: calls.append(1))
    again_ref = Counting(x)
    fid2 = FID(net, reference_cache=cache)
    fid2.set_reference(again_ref)
    assert again_ref.taken == 0 and calls == []  # the reference was not recomputed
    assert fid2.score(y) == pytest.approx(expected, rel=1e-5)
    assert len(calls) == len(y.split(fid2.batch_size))  # only the generated images went through the net


def test_stale_cache_from_another_network_is_recomputed(tmp_path: Path):
    cache = tmp_path / "stats.npz"
    x = images(0)
    old = FID(feature_net(seed=0), reference_cache=cache)
    old.set_reference(x)
    new = FID(feature_net(seed=1), reference_cache=cache)
    assert new.fingerprint != old.fingerprint
    ref = Counting(x)
    new.set_reference(ref)
    assert ref.taken > 0
    assert abs(new.score(x)) < 1e-3
    with np.load(cache) as stats:
        assert str(stats["fingerprint"]) == new.fingerprint


def test_missing_inception_weights_name_the_key_and_path(tmp_path: Path):
    missing = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    with pytest.raises(ValueError, match=re.escape(INCEPTION_WEIGHTS_KEY) + ".*" + re.escape(str(missing))):
        inception_fid(missing)
    with pytest.raises(ValueError, match=re.escape(str(missing))):
        FID(inception_weights=missing)
    with pytest.raises(ValueError, match=re.escape(INCEPTION_WEIGHTS_KEY) + " is not set"):
        inception_fid(None)
    with pytest.raises(ValueError, match=re.escape(INCEPTION_WEIGHTS_KEY) + " is not set"):
        FID()
    assert INCEPTION_WEIGHTS_KEY == "metrics.fid.inception_weights"


def test_bad_inputs_are_refused():
    fid = FID(feature_net())
    with pytest.raises(RuntimeError, match="set_reference"):
        fid.score(images(0))
    with pytest.raises(ValueError, match=r"images: values must lie in \[0, 1\]"):
        fid.set_reference(images(0) * 4)
    with pytest.raises(ValueError, match=r"images: expected a float tensor \(N, 3, H, W\)"):
        fid.set_reference(torch.rand(4, 1, SIZE, SIZE))
    with pytest.raises(ValueError, match="at least 2"):
        fid.set_reference(images(0, n=1))
    with pytest.raises(ValueError, match="got 0"):
        fid.set_reference([])
    with pytest.raises(ValueError, match="not both"):
        FID(feature_net(), inception_weights="w.pth")


def test_inception_path_runs_offline_from_a_local_file(tmp_path: Path):
    """Random weights in the torch-fidelity Inception layout stand in for the real file; any download
    attempt fails the test."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download Inception weights")

    with torch.random.fork_rng(), mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: None), \
            mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    weights = tmp_path / "inception.pth"
    torch.save(_init_(net, seed=0).state_dict(), weights)

    with mock.patch.object(tfi, "load_state_dict_from_url", no_download):
        fid = inception_fid(weights, reference_cache=tmp_path / "ref.npz")
        fid.set_reference(images(0, n=2))  # uint8 quantisation and the 299 resize happen inside
    mu, sigma, n = fid.reference_stats()
    assert mu.shape == (2048,) and sigma.shape == (2048, 2048) and n == 2
    assert np.isfinite(mu).all() and np.abs(mu).max() > 0
    assert (tmp_path / "ref.npz").is_file()
    # The statistics against torch-fidelity's own extractor on the same file, fed the uint8 images FID promises
    # (round(255 x)); mean and covariance (n - 1) by NumPy.
    ref_net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    ref_net.eval()
    with torch.no_grad():
        feats = ref_net((images(0, n=2) * 255).round().to(torch.uint8))[0].double().numpy()
    np.testing.assert_allclose(mu, feats.mean(0), rtol=1e-4, atol=1e-6 * np.abs(feats).max())
    np.testing.assert_allclose(sigma, np.cov(feats, rowvar=False), rtol=1e-3, atol=1e-5 * np.abs(feats).max() ** 2)


# --- written against mutants and bugs that once survived the suite (docs/testing.md, "Where the mutant tests live") ---


def exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


def features(net: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return net(x).double().numpy()


def frechet(mu1, s1, mu2, s2) -> float:
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_inception_weights_messages_in_full(tmp_path: Path):
    with pytest.raises(ValueError, match=exactly(
            "metrics.fid.inception_weights is not set: FID with Inception needs torch-fidelity's local weights file "
            "weights-inception-2015-12-05-6726825d.pth (nothing is downloaded)")):
        check_inception_weights(None)
    missing = tmp_path / "w.pth"
    with pytest.raises(ValueError, match=exactly(
            f"metrics.fid.inception_weights: Inception weights file not found: {missing} "
            "(expected torch-fidelity's weights-inception-2015-12-05-6726825d.pth; nothing is downloaded)")):
        check_inception_weights(str(missing))
    missing.write_bytes(b"")
    assert check_inception_weights(str(missing)) == missing
    assert INCEPTION_WEIGHTS_KEY == "metrics.fid.inception_weights"


@pytest.mark.parametrize("bad, got", [
    ([[0.5]], "list"),
    (torch.rand(3, 4, 4), "(3, 4, 4)"),
    (torch.rand(2, 1, 4, 4), "(2, 1, 4, 4)"),
    (torch.rand(2, 4, 3, 3), "(2, 4, 3, 3)"),      # 3 on the wrong axis
    (torch.rand(2, 3, 4, 4, 1), "(2, 3, 4, 4, 1)"),
])
def test_images_of_the_wrong_kind_or_shape_are_refused_with_their_shape(bad, got):
    with pytest.raises(ValueError, match=exactly(f"images: expected a float tensor (N, 3, H, W) in [0, 1], got {got}")):
        check_images(bad)


def test_integer_images_are_refused_with_their_dtype():
    with pytest.raises(ValueError, match=exactly("images: expected floats in [0, 1], got dtype torch.uint8")):
        check_images(torch.zeros(2, 3, 4, 4, dtype=torch.uint8))


@pytest.mark.parametrize("low, high", [(-1e-3, 0.5), (0.2, 1.001), (0.2, 1.5), (-0.25, 1.25)])
def test_values_outside_the_unit_interval_are_refused_with_the_range(low, high):
    x = torch.full((2, 3, 4, 4), 0.5)
    x[0, 0, 0, 0], x[1, 2, 3, 3] = low, high
    with pytest.raises(ValueError, match=exactly(f"images: values must lie in [0, 1], got [{min(low, 0.5):.4g}, {high:.4g}]")):
        check_images(x)


def test_exactly_zero_and_one_and_an_empty_batch_are_accepted():
    x = torch.zeros(2, 3, 4, 4)
    x[1] = 1.0
    assert check_images(x) is x
    empty = torch.empty(0, 3, 4, 4)
    assert check_images(empty) is empty
    half = torch.full((1, 3, 2, 2), 0.5, dtype=torch.float64)
    assert check_images(half) is half


def test_constructor_messages_and_smallest_batch():
    with pytest.raises(ValueError, match=exactly(
            "FID: give either a feature network or metrics.fid.inception_weights, not both")):
        FID(feature_net(), inception_weights="w.pth")
    with pytest.raises(ValueError, match=exactly("batch_size must be >= 1, got 0")):
        FID(feature_net(), batch_size=0)
    fid = FID(feature_net(), batch_size=1)
    assert fid.batch_size == 1 and fid.device == torch.device("cpu") and fid.reference_cache is None
    assert FID(feature_net()).batch_size == 64
    assert FID(feature_net(), reference_cache=str(Path("a") / "b.npz")).reference_cache == Path("a") / "b.npz"


def test_no_reference_and_too_few_images_messages_in_full():
    fid = FID(feature_net())
    no_ref = exactly("FID: no reference set: call set_reference() first")
    with pytest.raises(RuntimeError, match=no_ref):
        fid.score(images(0))
    with pytest.raises(RuntimeError, match=no_ref):
        fid.reference_stats()
    with pytest.raises(ValueError, match=exactly("images: the reference set needs at least 2 images, got 1")):
        fid.set_reference(images(0, n=1))
    with pytest.raises(ValueError, match=exactly("images: the reference set needs at least 2 images, got 0")):
        fid.set_reference([])
    fid.set_reference(images(0))
    with pytest.raises(ValueError, match=exactly("generated: FID needs at least 2 generated images")):
        fid.score(images(1, n=1))


def test_two_images_on_each_side_are_enough_and_match_scipy():
    net = feature_net()
    x, y = images(0, n=2), images(1, shift=0.2, n=2)
    fid = FID(net)
    fid.set_reference(x)
    assert fid.reference_n == 2
    fx, fy = features(net, x), features(net, y)
    expected = frechet(fx.mean(0), np.cov(fx, rowvar=False), fy.mean(0), np.cov(fy, rowvar=False))
    assert fid.score(y) == pytest.approx(expected, rel=1e-3, abs=1e-6)


def test_a_second_set_reference_replaces_the_first():
    net = feature_net()
    fid = FID(net)
    fid.set_reference(images(0))
    fid.set_reference(images(5, shift=0.3, n=40))
    mu, sigma, n = fid.reference_stats()
    f = features(net, images(5, shift=0.3, n=40))
    assert n == 40 and fid.reference_n == 40
    np.testing.assert_allclose(mu, f.mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sigma, np.cov(f, rowvar=False), rtol=1e-4, atol=1e-7)
    y = images(1, shift=0.1)
    assert fid.score(y) == pytest.approx(scipy_fid(net, images(5, shift=0.3, n=40), y), rel=1e-4)


def test_cache_holds_numpy_moments_and_a_cached_reference_scores_like_scipy(tmp_path: Path):
    net = feature_net()
    cache = tmp_path / "a" / "b" / "ref.npz"  # two missing folders
    x, y = images(0), images(2, shift=0.15, n=50)
    fid = FID(net, reference_cache=cache)
    fid.set_reference(x)
    assert sorted(p.name for p in cache.parent.iterdir()) == ["ref.npz"]  # no temporary file left
    fx = features(net, x)
    with np.load(cache) as stats:
        assert sorted(stats.files) == ["fingerprint", "mu", "n", "sigma"]
        assert stats["n"].dtype == np.int64 and int(stats["n"]) == len(x)
        assert stats["mu"].dtype == stats["sigma"].dtype == np.float64
        np.testing.assert_allclose(stats["mu"], fx.mean(0), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(stats["sigma"], np.cov(fx, rowvar=False), rtol=1e-4, atol=1e-7)
        assert str(stats["fingerprint"]) == fid.fingerprint
        mu, sigma = stats["mu"], stats["sigma"]

    calls = []
    loaded = FID(feature_net(), reference_cache=cache)
    loaded._feature.register_forward_hook(lambda *_: calls.append(1))
    loaded.set_reference(x[:1])  # the cache is used: the (too small) set is never looked at
    assert calls == [] and loaded.reference_n == len(x)
    mu2, sigma2, n2 = loaded.reference_stats()
    np.testing.assert_allclose(mu2, mu, rtol=1e-12, atol=0)
    np.testing.assert_allclose(sigma2, sigma, rtol=1e-9, atol=1e-12)
    assert n2 == len(x)
    assert loaded._metric.real_features_sum.dtype == torch.float64
    fy = features(net, y)
    assert loaded.score(y) == pytest.approx(frechet(mu, sigma, fy.mean(0), np.cov(fy, rowvar=False)), rel=1e-4)


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path):
    fid = FID(feature_net(), reference_cache=tmp_path / "ref.npz")
    with mock.patch.object(fid_mod.os, "replace", side_effect=OSError("disk full")), pytest.raises(OSError, match="disk full"):
        fid.set_reference(images(0))
    assert list(tmp_path.iterdir()) == []


def hand_fingerprint(module: nn.Module, recipe: str) -> str:
    """fid._fingerprint's documented recipe: sha256 over recipe, repr, then per tensor of the state dict
    "name:dtype:shape" and its raw bytes."""
    h = hashlib.sha256(recipe.encode() + repr(module).encode())
    for name, value in module.state_dict().items():
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        h.update(value.numpy().tobytes())
    return h.hexdigest()


def test_fingerprint_is_the_documented_sha256_and_sees_architecture_buffers_and_values():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    fid = FID(net)
    assert fid.fingerprint == hand_fingerprint(net, "custom:float01")
    assert not net.training  # put in eval mode
    variants = []
    other_act = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    other_act.load_state_dict(net.state_dict())
    variants.append(other_act)                       # same tensors, another architecture
    for tweak in ("bias", "running_mean"):
        v = nn.Sequential(*[type(m)(*args) for m, args in zip(net, ((3, 4, 3), (4,), (), (1,), ()))])
        v.load_state_dict(net.state_dict())
        with torch.no_grad():
            (v[0].bias if tweak == "bias" else v[1].running_mean)[2] += 1e-3
        variants.append(v)                            # one parameter value, one buffer value
    prints = {fid.fingerprint, *(FID(v).fingerprint for v in variants)}
    assert len(prints) == 4
    assert FID(net.double()).fingerprint != fid.fingerprint  # dtype


class RecordingFID:
    """Stands in for torchmetrics' FrechetInceptionDistance: records its arguments, has an `inception`."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        with torch.random.fork_rng():
            self.inception = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten())
        self.moved_to = None

    def to(self, device):
        self.moved_to = device
        return self


def test_inception_branch_builds_torchmetrics_fid_as_documented(tmp_path: Path):
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"stand-in")
    with mock.patch.object(fid_mod, "FrechetInceptionDistance", RecordingFID):
        fid = FID(inception_weights=weights, reference_cache=tmp_path / "r.npz", batch_size=7)
    assert fid._metric.kwargs == dict(feature=2048, reset_real_features=False,
                                      feature_extractor_weights_path=str(weights), sync_on_compute=False)
    assert fid._metric.moved_to == torch.device("cpu")
    assert fid.fingerprint == hand_fingerprint(fid._metric.inception, "inception-2048:uint8-round")
    assert fid.reference_cache == tmp_path / "r.npz" and fid.batch_size == 7
    # Inception receives round(255 x) as uint8, by NumPy's round-half-even on the same values
    x = torch.tensor([0.0, 0.5 / 255, 1.5 / 255, 0.2, 0.7, 1.0]).reshape(1, 3, 1, 2)
    out = fid._prepare(x)
    assert out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), np.rint(x.numpy() * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="values must lie"):
        fid._prepare(x + 1)


def test_custom_network_receives_the_float_images_unchanged():
    seen = []
    net = feature_net()
    net.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    fid = FID(net, batch_size=50)
    x = images(0, n=60)
    fid.set_reference(x)
    assert all(s.dtype == torch.float32 for s in seen)
    torch.testing.assert_close(torch.cat(seen[1:]), x, rtol=0, atol=0)  # seen[0]: the one-image probe of F
    torch.testing.assert_close(seen[0], x[:1], rtol=0, atol=0)
    assert [len(s) for s in seen[1:]] == [50, 10]


def test_inception_fid_passes_its_arguments_and_defaults(tmp_path: Path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    with mock.patch.object(fid_mod, "FID") as fake:
        inception_fid(str(weights))
        inception_fid(weights, reference_cache="c.npz", batch_size=3, device="meta")
    assert fake.call_args_list == [
        mock.call(inception_weights=weights, reference_cache=None, batch_size=64, device="cpu"),
        mock.call(inception_weights=weights, reference_cache="c.npz", batch_size=3, device="meta"),
    ]


def test_a_ddp_rank_scores_only_its_own_images():
    """Inside a DDP job torchmetrics would all-gather the states at compute(); FID must not (sync_on_compute
    False): with a stand-in gather that adds another rank's copy, the score is unchanged."""
    net = feature_net()
    x, y = images(0), images(1, shift=0.1)
    fid = FID(net)
    fid.set_reference(x)
    alone = fid.score(y)
    fid._metric.distributed_available_fn = lambda: True
    fid._metric.dist_sync_fn = lambda tensor, group=None: [tensor, tensor * 1.5]  # another rank, other images
    assert fid.score(y) == pytest.approx(alone, rel=1e-9)
    assert alone == pytest.approx(scipy_fid(net, x, y), rel=1e-4)


def test_a_fresh_fid_given_no_images_names_the_count_zero():
    """'got 0' from a fresh FID (no metric built yet) for an empty list, an empty tensor and empty batches;
    empty batches before and after real ones add nothing; an empty generated tensor is 'fewer than 2'.
    (An empty tensor used to fail in the network's (N, F) reshape with an opaque RuntimeError.)"""
    message = exactly("images: the reference set needs at least 2 images, got 0")
    for nothing in ([], torch.empty(0, 3, 16, 16), [torch.empty(0, 3, 16, 16)] * 2):
        fid = FID(feature_net())
        with pytest.raises(ValueError, match=message):
            fid.set_reference(nothing)
        assert fid.reference_n is None
    fid = FID(feature_net())
    fid.set_reference([torch.empty(0, 3, 16, 16), images(0, n=3), torch.empty(0, 3, 16, 16)])
    assert fid.reference_n == 3
    with pytest.raises(ValueError, match=exactly("generated: FID needs at least 2 generated images")):
        fid.score(torch.empty(0, 3, 16, 16))


def test_moments_from_a_float32_cache_are_taken_in_float64(tmp_path: Path):
    """A cache whose moments are float32 (`_save_cache` writes float64; the .npz format allows either) loads
    into float64 sums: the reference moments are the stored values exactly widened to float64."""
    net = feature_net()
    fx = features(net, images(0, n=50))
    mu32, sigma32 = fx.mean(0).astype(np.float32), np.cov(fx, rowvar=False).astype(np.float32)
    cache = tmp_path / "ref.npz"
    np.savez(cache, mu=mu32, sigma=sigma32, n=np.int64(50), fingerprint=np.str_(hand_fingerprint(net, "custom:float01")))
    fid = FID(net, reference_cache=cache)
    fid.set_reference([])  # the cache is used
    mu, sigma, n = fid.reference_stats()
    assert n == 50 and mu.dtype == sigma.dtype == np.float64
    assert fid._metric.real_features_sum.dtype == fid._metric.real_features_cov_sum.dtype == torch.float64
    np.testing.assert_allclose(mu, mu32.astype(np.float64), rtol=1e-13, atol=0)
    np.testing.assert_allclose(sigma, sigma32.astype(np.float64), rtol=1e-10, atol=1e-14)
    y = images(1, shift=0.1)
    fy = features(net, y)
    expected = frechet(mu32.astype(np.float64), sigma32.astype(np.float64), fy.mean(0), np.cov(fy, rowvar=False))
    assert fid.score(y) == pytest.approx(expected, rel=1e-4)


class StaysPut(nn.Sequential):
    """A feature network that records the device `.to()` asks for and keeps its weights where they are."""

    def to(self, *args, **kwargs):
        self.moved_to = (args, kwargs)
        return self


def test_network_images_metric_and_loaded_cache_go_to_the_fids_device(tmp_path: Path):
    """On the meta device (no data, no compute), available without a GPU: FID asks for its device for the
    network, the images it prepares, the metric's states and the moments it loads from a cache."""
    meta = torch.device("meta")
    net = StaysPut(*feature_net())
    cache = tmp_path / "ref.npz"
    mu, sigma = np.linspace(-1, 1, 16), np.eye(16) * 0.5
    np.savez(cache, mu=mu, sigma=sigma, n=np.int64(7), fingerprint=np.str_(hand_fingerprint(net, "custom:float01")))
    fid = FID(net, reference_cache=cache, device="meta")
    assert net.moved_to == ((meta,), {}) and fid.device == meta
    assert fid._prepare(images(0, n=2)).device == meta
    fid.set_reference([])  # from the cache
    m = fid._metric
    states = (m.real_features_sum, m.real_features_cov_sum, m.real_features_num_samples,
              m.fake_features_sum, m.fake_features_cov_sum, m.fake_features_num_samples)
    assert [t.device for t in states] == [meta] * 6 and fid.reference_n == 7
    assert m.real_features_sum.shape == (16,) and m.real_features_cov_sum.shape == (16, 16)
    assert m.real_features_sum.dtype == m.real_features_cov_sum.dtype == torch.float64


# --- the generated side in jackknife blocks (docs/method.md 5) ---


class Float64Features(nn.Module):
    """`feature_net` in float64, with the `num_features` torchmetrics reads (so its FID computes in float64)."""

    num_features = 16

    def __init__(self) -> None:
        super().__init__()
        self.net = feature_net().double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.double())


def torchmetrics_fid(net: nn.Module, reference: torch.Tensor, generated: torch.Tensor) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    metric = FrechetInceptionDistance(feature=net)
    metric.update(reference, real=True)
    metric.update(generated, real=False)
    return float(metric.compute())


@pytest.mark.parametrize("n", [96, 8])
def test_frechet_from_the_moments_equals_torchmetrics_fid_on_the_same_features(n):
    """torchmetrics takes the general eigenvalues of S1 S2, FID those of the symmetric S1^(1/2) S2 S1^(1/2): equal
    to float64 rounding. With 8 images and 16 features both covariances are singular, and either way the
    rounding-zero eigenvalues enter through a square root, sqrt(1e-16) = 1e-8 each: hence the absolute slack."""
    net = Float64Features()
    x, y = images(0, n=n), images(1, shift=0.1, n=n)
    fid = FID(net, batch_size=40)
    fid.set_reference(x)
    ours = fid.score(y)
    assert ours > 1e-2
    assert ours == pytest.approx(torchmetrics_fid(net, x, y), rel=1e-10, abs=0 if n > 16 else 1e-6)


def test_leave_one_block_out_moments_are_those_of_the_remaining_images():
    """14 images in rounds of 3 into 2 blocks, fed in batches that cut across rounds: block 0 holds rounds 0, 2, 4
    (images 0-2, 6-8, 12-13), block 1 rounds 1, 3 (images 3-5, 9-11)."""
    f = torch.randn(14, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    moments = BlockMoments(2, 3, 5, torch.device("cpu"))
    for part in f.split(4):
        moments.add(part)
    blocks = {0: [0, 1, 2, 6, 7, 8, 12, 13], 1: [3, 4, 5, 9, 10, 11]}
    for without, kept in ((None, range(14)), (0, blocks[1]), (1, blocks[0])):
        mu, sigma, n = moments.moments(without)
        rows = f[list(kept)].numpy()
        assert n == len(rows)
        np.testing.assert_allclose(mu.numpy(), rows.mean(0), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(sigma.numpy(), np.cov(rows, rowvar=False), rtol=1e-10, atol=1e-13)


def test_each_leave_one_block_out_fid_is_the_fid_of_the_remaining_images():
    """FID_{-k}, recovered from the pseudo-values as (K FID - p_k) / (K - 1), against FID scored afresh on the
    images outside block k (5 blocks of rounds of 4); the standard error against its definition over the FID_{-k}."""
    net = Float64Features()
    fid = FID(net, batch_size=7)
    fid.set_reference(images(0))
    y = images(1, shift=0.1, n=60)
    jack = fid.jackknife(y, n_blocks=5, round_size=4)
    assert jack.fid == pytest.approx(fid.score(y), rel=1e-12)
    block = (torch.arange(60) // 4) % 5
    without = [fid.score(y[block != k]) for k in range(5)]
    np.testing.assert_allclose([(5 * jack.fid - p) / 4 for p in jack.pseudo_values], without, rtol=1e-9)
    spread = np.sum((np.array(without) - np.mean(without)) ** 2)
    assert jack.se == pytest.approx(np.sqrt(4 / 5 * spread), rel=1e-9)
    assert fid.jackknife(y).pseudo_values == () and fid.jackknife(y).se is None


def test_jackknife_blocks_that_cannot_hold_whole_rounds_are_refused_naming_the_key():
    for bad in (0, 2.0, True, None):
        with pytest.raises(ValueError, match=exactly(
                f"eval.n_splits: expected an integer >= 1 (FID's jackknife blocks), got {bad!r}")):
            check_blocks(bad, 100, 10)
    check_blocks(1, 2, 10)  # no jackknife: any number of images
    check_blocks(10, 100, 10)
    with pytest.raises(ValueError, match=exactly(
            "eval.n_splits: 11 jackknife blocks of 109 generated images need at least 11 whole rounds of 10 (one image "
            "per class) and 2 images outside each block; use at most 10 blocks or more images")):
        check_blocks(11, 109, 10)
    with pytest.raises(ValueError, match="use at most 3 blocks"):
        check_blocks(2, 3, 1)  # blocks of 2 and 1 images: one image outside the first
    fid = FID(feature_net())
    fid.set_reference(images(0))
    with pytest.raises(ValueError, match="^eval.n_splits: 4 jackknife blocks of 30 generated images"):
        fid.jackknife(images(1, n=30), n_blocks=4, round_size=10)


class GaussianFeatures(nn.Module):
    """Images whose pixels are Phi(z) have the features z: Gaussian features of known law, F = pixels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.ndtri(x.double().clamp(1e-7, 1 - 1e-7)).flatten(1)


def _mc_z(values: np.ndarray, ses: np.ndarray) -> tuple[float, float]:
    """(rms of the jackknife SEs / SD of the values over the draws, that log-ratio in units of its own Monte Carlo
    standard error): an SD from R draws is uncertain by sqrt((kurtosis - 1) / (4 R)) relative, a mean of squared
    SEs by SD(se^2) / sqrt(R), half of it for the root."""
    r = len(values)
    v = values - values.mean()
    rel_sd = np.sqrt(((v**4).mean() / (v**2).mean() ** 2 - 1) / (4 * r))
    rel_rms = 0.5 * (ses**2).std() / (ses**2).mean() / np.sqrt(r)
    ratio = np.sqrt((ses**2).mean()) / values.std(ddof=1)
    return ratio, np.log(ratio) / np.hypot(rel_sd, rel_rms)


def test_the_jackknife_se_is_the_sd_of_fid_and_of_a_paired_difference_over_independent_draws():
    """200 independent draws of 300 generated images of 10 classes (class i mod 10, the latent task's labels) with
    Gaussian features (F = 6) against one fixed reference; two "alphas" share each draw's noise. The rms
    jackknife SE (10 blocks of whole rounds of the classes) must match the SD over the draws of FID and of the
    paired difference within 3 of its Monte Carlo standard errors (about 5%; a correct estimator misses that
    only by chance, while an error of a factor sqrt(K) or K - 1 is off by 20 or more). Blocks of one class each
    (rounds of 1) see the classes' spread as noise: more than twice the SD."""
    from mfsweep.report.evaluation import paired_eval_se

    g = torch.Generator().manual_seed(0)
    classes, n = 10, 300
    means = 0.5 * torch.randn(classes, 6, generator=g, dtype=torch.float64)[torch.arange(n) % classes] + 0.3
    pixels = lambda z: torch.special.ndtr(z).float().reshape(-1, 3, 1, 2)  # noqa: E731
    fid = FID(GaussianFeatures(), batch_size=n)
    fid.set_reference(pixels(torch.randn(4000, 6, generator=g, dtype=torch.float64)))
    rows = []
    with single_threaded():
        for _ in range(200):
            z = torch.randn(n, 6, generator=g, dtype=torch.float64)
            a = fid.jackknife(pixels(z + means), 10, classes)
            b = fid.jackknife(pixels(1.1 * z + means + 0.05), 10, classes)
            by_class = fid.jackknife(pixels(z + means), 10, 1)
            pair = ({"eval": {"splits": {"fid": list(a.pseudo_values)}}}, {"eval": {"splits": {"fid": list(b.pseudo_values)}}})
            rows.append((a.fid, b.fid, a.se, paired_eval_se([pair], "fid"), by_class.se))
    fa, fb, se, se_diff, se_by_class = np.array(rows).T
    for values, ses in ((fa, se), (fa - fb, se_diff)):
        ratio, z = _mc_z(values, ses)
        assert abs(z) < 3, (ratio, z)
    assert _mc_z(fa, se_by_class)[0] > 2


# --- hand-made mutants of the decorated functions mutmut skips (tests/hand_mutants.py, docs/testing.md) ---

FINGERPRINT = ["mfsweep.metrics.fid", "FID.fingerprint"]
FINGERPRINT_DETECT = [with_tmp(test_reference_cache_round_trip_is_reused),
                      with_tmp(test_stale_cache_from_another_network_is_recomputed)]
ACCUMULATE = ["mfsweep.metrics.fid", "FID._accumulate"]
ACCUMULATE_DETECT = [test_bad_inputs_are_refused, test_identical_sets_score_zero, test_matches_independent_scipy_frechet_distance,
                     with_tmp(test_reference_cache_round_trip_is_reused)]
JACKKNIFE_SE = ["mfsweep.metrics.fid", "JackknifeFID.se"]
JACKKNIFE_SE_DETECT = [test_each_leave_one_block_out_fid_is_the_fid_of_the_remaining_images]
# (id, module, qualname, old, new, detectors): `old` occurs exactly once in the function's source.
MUTANTS = [
    ("fingerprint-constant", *FINGERPRINT, "return self._fingerprint", "return 'fid'", FINGERPRINT_DETECT),
    ("accumulate-everything-real", *ACCUMULATE, "generated.add(self._metric.inception(batch))",
     "self._metric.update(batch, real=True)", ACCUMULATE_DETECT),
    ("accumulate-image-by-image", *ACCUMULATE, "_batches(images, self.batch_size)", "_batches(images, 1)", ACCUMULATE_DETECT),
    ("accumulate-unprepared", *ACCUMULATE, "batch = self._prepare(batch)", "batch = batch", ACCUMULATE_DETECT),
    ("jackknife-se-ddof-0", *JACKKNIFE_SE, "ddof=1", "ddof=0", JACKKNIFE_SE_DETECT),
    ("jackknife-se-over-k", *JACKKNIFE_SE, "np.sqrt(len(p))", "len(p)", JACKKNIFE_SE_DETECT),
]
test_an_unchanged_copy_passes_the_same_tests, test_hand_mutant_is_detected = hand_mutant_tests(MUTANTS)
