"""The CPU demo's FID feature network (mfsweep.metrics.classifier), against independent computations: the
forward pass written out in NumPy, the init's uniform(+-1/sqrt(fan_in)) draws replayed from the generator,
training against a hand-written Adam loop over the same batch order, and the on-disk cache."""
from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hand_mutants import hand_mutant_tests
from numpy.lib.stride_tricks import sliding_window_view

from mfsweep.metrics import classifier as clf
from mfsweep.metrics.classifier import (
    FEATURES, ClassifierFeatures, DigitClassifier, _init_, cached_classifier_features, train_classifier,
)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _conv3x3_same(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross-correlation with a 3x3 kernel and zero padding 1: (N, C, H, W) -> (N, O, H, W)."""
    windows = sliding_window_view(np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))), (3, 3), axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, w) + b[None, :, None, None]


def _silu(z: np.ndarray) -> np.ndarray:
    return z / (1 + np.exp(-z))


def _pool(x: np.ndarray, k: int) -> np.ndarray:
    n, c, h, w = x.shape
    return x.reshape(n, c, h // k, k, w // k, k).mean((3, 5))


def numpy_body(net: DigitClassifier, x: np.ndarray) -> np.ndarray:
    """docs of DigitClassifier: conv(1->w) SiLU avgpool2, conv(w->2w) SiLU adaptive avgpool to 4x4, flatten,
    linear(2w*16 -> 64) SiLU; x (N, 1, H, W) with H, W multiples of 8."""
    c1, c2, lin = net.body[0], net.body[3], net.body[7]
    h = _pool(_silu(_conv3x3_same(x, _np(c1.weight), _np(c1.bias))), 2)
    h = _silu(_conv3x3_same(h, _np(c2.weight), _np(c2.bias)))
    h = _pool(h, h.shape[-1] // 4).reshape(len(x), -1)  # adaptive average pool to 4 x 4 (exact division)
    return _silu(h @ _np(lin.weight).T + _np(lin.bias))


def _seeded(num_classes: int = 3, seed: int = 0) -> DigitClassifier:
    with torch.random.fork_rng(devices=[]):
        net = DigitClassifier(num_classes)
    _init_(net, torch.Generator().manual_seed(seed))
    return net


def _data(n: int = 40, size: int = 8, classes: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.rand(n, 1, size, size, generator=g) * 0.4 - 0.8 + 0.4 * y[:, None, None, None]  # class-shifted
    return x, y


def test_layout_and_forward_against_numpy():
    net = _seeded(num_classes=5)
    shapes = [tuple(p.shape) for p in net.parameters()]
    assert shapes == [(16, 1, 3, 3), (16,), (32, 16, 3, 3), (32,), (FEATURES, 512), (FEATURES,), (5, FEATURES), (5,)]
    assert FEATURES == 64
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        body, logits = net.body(x), net(x)
    expected = numpy_body(net, _np(x))
    np.testing.assert_allclose(_np(body), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_np(logits), expected @ _np(net.head.weight).T + _np(net.head.bias), rtol=1e-4, atol=1e-5)
    wide = DigitClassifier(2, width=4, features=7)
    assert [tuple(p.shape) for p in wide.parameters()] == [(4, 1, 3, 3), (4,), (8, 4, 3, 3), (8,), (7, 128), (7,), (2, 7), (2,)]


def test_features_are_the_body_on_grey_images_mapped_to_minus_one_one():
    net = _seeded()
    feats = ClassifierFeatures(net)
    assert feats.body is net.body
    rgb = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = feats(rgb)
    assert out.shape == (4, FEATURES)
    grey = _np(rgb).mean(1, keepdims=True) * 2 - 1
    np.testing.assert_allclose(_np(out), numpy_body(net, grey), rtol=1e-4, atol=1e-5)


def test_init_replays_uniform_fan_in_draws_from_the_generator_only():
    with torch.random.fork_rng(devices=[]):
        net = DigitClassifier(3)
    state = torch.get_rng_state()
    _init_(net, torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is not touched
    g = torch.Generator().manual_seed(7)
    layers = [net.body[0], net.body[3], net.body[7], net.head]
    for layer, fan_in in zip(layers, (9, 16 * 9, 512, FEATURES)):
        bound = 1 / np.sqrt(fan_in)
        for p in (layer.weight, layer.bias):  # weight then bias, layer by layer, all with the weight's fan-in
            expected = (torch.rand(p.shape, generator=g) * 2 - 1) * bound
            torch.testing.assert_close(p.detach(), expected, rtol=0, atol=0)
            assert float(p.detach().abs().max()) <= bound
    assert not any(p.grad is not None for p in net.parameters())


def _reference_training(x, y, num_classes, seed, epochs, batch_size, lr) -> DigitClassifier:
    """The documented recipe by hand: init from the seed's generator, then per epoch a permutation from the
    same generator, Adam(lr) on the mean cross-entropy (log-softmax written out) of each batch."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        net = DigitClassifier(num_classes)
    for layer in (net.body[0], net.body[3], net.body[7], net.head):
        bound = 1 / np.sqrt(layer.weight[0].numel())
        with torch.no_grad():
            for p in (layer.weight, layer.bias):
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * bound)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for start in range(0, len(y), batch_size):
            idx = perm[start:start + batch_size]
            logits = net(x[idx])
            loss = -(logits.gather(1, y[idx, None]) - logits.logsumexp(1, keepdim=True)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def test_training_equals_a_hand_written_adam_loop_and_leaves_the_global_rng_alone():
    x, y = _data(n=40)
    state = torch.get_rng_state()
    net = train_classifier(x, y, 3, seed=4, epochs=2, batch_size=16, lr=1e-2)  # batches 16, 16, 8
    assert torch.equal(torch.get_rng_state(), state)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    ref = _reference_training(x, y, 3, seed=4, epochs=2, batch_size=16, lr=1e-2)
    for (name, p), q in zip(net.named_parameters(), ref.parameters()):
        # Adam's first steps are nearly lr * sign(g): rounding in the loss moves a few near-zero-gradient weights
        # by ~1e-4; a changed lr, batch or epoch count moves them by ~lr or more.
        torch.testing.assert_close(p, q.detach(), rtol=0, atol=1e-3, msg=lambda m: f"{name}: {m}")


def test_training_defaults_are_eight_epochs_of_64_at_lr_3e_3_and_it_learns():
    x, y = _data(n=80)  # two batches per epoch at 64
    net = train_classifier(x, y, 3, seed=0)
    ref = _reference_training(x, y, 3, seed=0, epochs=8, batch_size=64, lr=3e-3)
    for p, q in zip(net.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q.detach(), rtol=0, atol=1e-3)  # one more epoch: 7e-3, batch 65: 3e-2
    with torch.no_grad():
        first = F.cross_entropy(_seeded(3, 0)(x), y)
        after = F.cross_entropy(net(x), y)
    assert float(after) < 0.8 * float(first)


def test_cache_is_named_by_set_seed_and_epochs_written_once_and_reloaded(tmp_path: Path):
    x, y = _data(n=24)
    cache = tmp_path / "deep" / "cache"
    real_train = clf.train_classifier
    with mock.patch.object(clf, "train_classifier", wraps=real_train) as spy:
        feats = cached_classifier_features(cache, "toy", x, y, 3, seed=2, epochs=1)
    spy.assert_called_once_with(x, y, 3, 2, 1)
    path = cache / "toy-seed2-ep1.pt"
    assert sorted(p.name for p in cache.iterdir()) == ["toy-seed2-ep1.pt"]  # no temporary file left
    trained = real_train(x, y, 3, 2, 1)
    saved = torch.load(path, weights_only=True)
    assert saved.keys() == trained.state_dict().keys()
    for k, v in trained.state_dict().items():
        torch.testing.assert_close(saved[k], v, rtol=0, atol=0)
    assert isinstance(feats, ClassifierFeatures)
    rgb = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = trained.body(rgb.mean(1, keepdim=True) * 2 - 1)
        torch.testing.assert_close(feats(rgb), expected, rtol=0, atol=0)

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the cache exists")

    state = torch.get_rng_state()
    with mock.patch.object(clf, "train_classifier", no_training):
        again = cached_classifier_features(cache, "toy", x, y, 3, seed=2, epochs=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert not again.body.training and not any(p.requires_grad for p in again.parameters())
    with torch.no_grad():
        torch.testing.assert_close(again(rgb), expected, rtol=0, atol=0)


def test_cache_defaults_seed_zero_eight_epochs(tmp_path: Path):
    x, y = _data(n=8)
    calls = []

    def fake_train(x_, y_, num_classes, seed, epochs):
        calls.append((num_classes, seed, epochs))
        return _seeded(num_classes, 0).eval().requires_grad_(False)

    with mock.patch.object(clf, "train_classifier", fake_train):
        cached_classifier_features(tmp_path, "digits16", x, y, 4)
    assert calls == [(4, 0, 8)]
    assert (tmp_path / "digits16-seed0-ep8.pt").is_file()


def test_cache_dir_with_a_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    x, y = _data(n=8)
    with mock.patch.object(clf, "train_classifier", lambda *a: _seeded(3, 0).eval().requires_grad_(False)):
        cached_classifier_features("~/c", "toy", x, y, 3, seed=1, epochs=1)
    assert (tmp_path / "c" / "toy-seed1-ep1.pt").is_file()


class _NotWeights:
    """Stands for arbitrary code a crafted cache file could make pickle run."""


def test_a_cache_file_holding_more_than_weights_is_refused_not_unpickled(tmp_path: Path):
    """The cache is read with `weights_only=True`: a file in the cache folder that pickles an object (a
    tampered or foreign file) is refused by the unpickler before anything in it runs."""
    import pickle

    path = tmp_path / "toy-seed0-ep1.pt"
    torch.save({"weight": _NotWeights()}, path)
    x, y = torch.rand(6, 16, 16, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        cached_classifier_features(tmp_path, "toy", x, y, 3, seed=0, epochs=1)


# --- hand-made mutants of the decorated functions mutmut skips (tests/hand_mutants.py, docs/testing.md) ---

CLF_INIT = ["mfsweep.metrics.classifier", "_init_"]
CLF_INIT_DETECT = [test_init_replays_uniform_fan_in_draws_from_the_generator_only]
# (id, module, qualname, old, new, detectors): `old` occurs exactly once in the function's source.
MUTANTS = [
    ("classifier-init-fan-in-of-whole-weight", *CLF_INIT, "m.weight[0].numel()", "m.weight.numel()", CLF_INIT_DETECT),
    ("classifier-init-weights-only", *CLF_INIT, "for p in (m.weight, m.bias):", "for p in (m.weight,):", CLF_INIT_DETECT),
    ("classifier-init-not-centred", *CLF_INIT, "* 2 - 1) * bound", "* 2) * bound", CLF_INIT_DETECT),
    ("classifier-init-linear-skipped", *CLF_INIT, "(nn.Conv2d, nn.Linear)", "(nn.Conv2d,)", CLF_INIT_DETECT),
]
test_an_unchanged_copy_passes_the_same_tests, test_hand_mutant_is_detected = hand_mutant_tests(MUTANTS)
