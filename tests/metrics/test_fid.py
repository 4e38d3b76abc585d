"""FID (mfsweep.metrics.fid): against an independent scipy Frechet distance, shift monotonicity, the
reference cache, and the Inception weights path (offline)."""
from __future__ import annotations

import re
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from mfsweep.metrics.fid import FID, INCEPTION_WEIGHTS_KEY, inception_fid

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
