"""The latent DiT task end to end: the ImageNet path in miniature (images -> mfsweep-encode shards with a tiny
random AutoencoderKL -> guided MeanFlow on the latents -> decoded samples -> Inception FID from a local
file), the CPU demo (`experiment=digits_dit`), and every bad input named."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import compose_cfg
from PIL import Image

from mfsweep.cli.evaluate import main as evaluate
from mfsweep.cli.report import main as report
from mfsweep.cli.train import train
from mfsweep.data.images import LatentImages
from mfsweep.data.latents import encode_folder
from mfsweep.method.errors import ConfigValueError
from mfsweep.report.page import build_report
from mfsweep.tasks.sample_figure import tile
from mfsweep.sweep.record import read_record
from mfsweep.tasks import build_task
from mfsweep.tasks.latent import LatentDiTTask

TINY_DIT = ["model=dit_s_4", "model.depth=1", "model.hidden_size=32", "model.num_heads=2", "trainer=dit",
            "trainer.accelerator=cpu", "trainer.threads=1", "trainer.max_steps=4", "trainer.batch_size=8",
            "trainer.log_every=2", "trainer.progress=false", "logger=csv", "tangent=ema", "alpha.value=0.5",
            "grad_var.every=2", "grad_var.replicas=2", "grad_var.batch_size=4", "diagnostics.every=0",
            "eval.every=0", "eval.n_samples=2"]


@pytest.fixture(scope="module")
def latents(tmp_path_factory) -> Path:
    """Six random 32x32 PNGs in two classes, encoded by a tiny random AutoencoderKL: 12 latents (4, 16, 16)."""
    from diffusers import AutoencoderKL

    root = tmp_path_factory.mktemp("latent_task")
    rng = np.random.default_rng(0)
    for i in range(6):
        (root / "images" / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"class{i % 2}" / f"{i}.png")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        vae = AutoencoderKL(block_out_channels=(32, 64), latent_channels=4, norm_num_groups=8, layers_per_block=1,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                            sample_size=32)
    vae.save_pretrained(root / "vae")
    encode_folder(root / "images", root / "latents", root / "vae", image_size=32, shard_size=4, progress=False)
    return root / "latents"


@pytest.fixture(scope="module")
def inception_weights(tmp_path_factory) -> Path:
    """Random weights in torch-fidelity's Inception layout stand in for the real file (nothing downloads)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    with torch.random.fork_rng(), mock.patch.object(tfi, "load_state_dict_from_url", lambda *a, **k: None), \
            mock.patch.object(tfi.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None):
        torch.manual_seed(0)
        net = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path_factory.mktemp("inception") / "weights-inception-2015-12-05-6726825d.pth"
    torch.save(net.state_dict(), path)
    return path


def _imagenet(latents: Path, weights: Path | str, cache: Path, *extra: str) -> list[str]:
    return ["dataset=imagenet_latents", f"dataset.path={latents}", "dataset.num_classes=2", *TINY_DIT,
            f"metrics.fid.inception_weights={weights}", f"metrics.fid.cache_dir={cache}", "metrics.fid.batch_size=4",
            "eval.fid_samples=2", "eval.n_splits=1", *extra]  # one round of the 2 classes: no jackknife


def test_imagenet_path_in_miniature_writes_a_record_with_fid(tmp_path, latents, inception_weights):
    cfg = compose_cfg(*_imagenet(latents, inception_weights, tmp_path / "cache"))
    (rec,) = train(cfg, tmp_path / "run")
    assert rec["status"] == "completed" and rec["task"] == "latent_dit" and rec["dataset"] == "imagenet_latents"
    assert rec["steps"] == 4 and rec["dim"] == 4 * 16 * 16 and rec["alpha"] == 0.5
    assert np.isfinite(rec["metrics"]["fid"]) and rec["metrics"]["fid"] > 0
    assert rec["metrics"]["fid_se"] is None and "splits" not in rec["eval"] and rec["eval"]["jackknife_blocks"] == 1
    assert rec["metrics"]["grad_var"] > 0 and rec["eval"]["n_samples"] == 2
    assert "Inception" in rec["eval"]["fid_features"]
    cell = next((tmp_path / "run").rglob("result.json")).parent
    assert read_record(cell) is not None
    s = np.load(cell / "samples.npz")  # decoded images, as FID saw them
    assert s["generated"].shape == s["reference"].shape == (2, 32, 32, 3) and s["generated"].dtype == np.uint8
    assert len(list((tmp_path / "cache").glob("fid_reference-*.npz"))) == 1
    # With eval.fid_samples = 2, samples.npz holds exactly what FID scored: recompute it independently with
    # torch-fidelity's own extractor and the closed form for two-sample covariances, S = d d^T / 2 (d the
    # difference of the two feature vectors), so tr sqrt(S1 S2) = |d1 . d2| / 2.
    assert rec["metrics"]["fid"] == pytest.approx(_two_sample_fid(s["generated"], s["reference"], inception_weights),
                                                  rel=1e-3)


def _two_sample_fid(generated: np.ndarray, reference: np.ndarray, weights: Path) -> float:
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(weights))
    net.eval()
    with torch.no_grad():
        f1, f2 = (net(torch.from_numpy(a).permute(0, 3, 1, 2).contiguous())[0].double().numpy()
                  for a in (generated, reference))
    d1, d2 = f1[0] - f1[1], f2[0] - f2[1]
    return float(((f1.mean(0) - f2.mean(0)) ** 2).sum() + d1 @ d1 / 2 + d2 @ d2 / 2 - abs(d1 @ d2))


def test_latents_decode_through_the_vae_that_encoded_them(latents):
    from diffusers import AutoencoderKL

    data = LatentImages(latents)
    z, y = data.fetch(torch.tensor([0, 5, 7]))
    assert z.shape == (3, 4, 16, 16) and y.tolist() == [0, 0, 1]  # rows 2i, 2i + 1: image i and its flip
    vae = AutoencoderKL.from_pretrained(json.loads((latents / "meta.json").read_text())["vae"])
    with torch.no_grad():
        direct = vae.decode(z / data.scaling_factor + data.shift_factor).sample
    torch.testing.assert_close(data.to_images(z), ((direct + 1) / 2).clamp(0, 1))


DIGITS_CELLS = ((0.5, 0), (0.5, 1), (0.0, 0), (0.0, 1))  # (alpha, seed): the first is the demo's own alpha


@pytest.fixture(scope="module")
def digits_sweep(tmp_path_factory) -> Path:
    """The CPU demo at 6 steps for alpha 0 and 0.5 and seeds 0 and 1, in one folder (bf16 forwards, fp32 JVP,
    through Lightning); FID over 200 samples with its jackknife over the default 10 blocks."""
    root = tmp_path_factory.mktemp("digits")
    for alpha, seed in DIGITS_CELLS:
        train(compose_cfg(*DIGITS_RUN, f"metrics.fid.cache_dir={root / 'cache'}", f"alpha.value={alpha}", f"seed={seed}"),
              root / "run")
    return root


DIGITS_RUN = ("experiment=digits_dit", "trainer.max_steps=6", "trainer.progress=false", "model.depth=1", "eval.every=3",
              "eval.every_n_samples=50", "eval.fid_samples=200", "eval.n_samples=16", "diagnostics.every=3",
              "diagnostics.batch_size=16", "trainer.precision=bf16-mixed")


def _digits_cell(root: Path, alpha: float, seed: int) -> Path:
    return next(p.parent for p in (root / "run").rglob("result.json") if p.parent.name == f"alpha={alpha:g},seed={seed}")


def test_digits_demo_at_a_tiny_step_count_writes_a_record_with_fid(digits_sweep):
    cell = _digits_cell(digits_sweep, 0.5, 0)
    rec = read_record(cell)
    assert rec["status"] == "completed" and rec["dataset"] == "digits" and rec["dim"] == 256
    assert np.isfinite(rec["metrics"]["fid"]) and rec["metrics"]["fid"] > 0
    assert rec["eval"]["fid_reference"].startswith("200 training samples")
    assert rec["diagnostics"]["kappa"] is not None  # docs/method.md 4's ingredients measured on the DiT
    assert np.load(cell / "samples.npz")["generated"].shape == (16, 16, 16, 3)
    header, *rows = (cell / "history.csv").read_text().splitlines()
    fid_col = header.split(",").index("eval/fid")
    assert [r.split(",")[0] for r in rows if r.split(",")[fid_col]] == ["3", "6"]  # FID every eval.every steps
    # The classifier and the reference statistics were computed once and cached: another cell reuses both.
    cache = digits_sweep / "cache"
    assert len(list(cache.glob("classifier-*.pt"))) == 1
    other = build_task(compose_cfg(*DIGITS_RUN, f"metrics.fid.cache_dir={cache}"), [0.0], [1], cls=LatentDiTTask)
    with mock.patch.object(LatentDiTTask, "_images", _never), \
            mock.patch("mfsweep.metrics.classifier.train_classifier", side_effect=AssertionError("retrained")):
        assert other.fid().reference_n == 200


def test_the_record_has_fids_jackknife_and_the_report_its_evaluation_se(digits_sweep):
    """`fid_se` is SD / sqrt(10) of the 10 pseudo-values kept in eval.splits; the report's verdict gives the paired
    difference's evaluation SE, sqrt(sum over seeds of var(p_0.5 - p_0) / 10) / 2 from the records."""
    records = {(a, s): read_record(_digits_cell(digits_sweep, a, s)) for a, s in DIGITS_CELLS}
    for rec in records.values():
        p = np.array(rec["eval"]["splits"]["fid"])
        assert rec["eval"]["jackknife_blocks"] == len(p) == 10 and rec["eval"]["draw"] == 0
        assert rec["metrics"]["fid_se"] == pytest.approx(np.std(p, ddof=1) / np.sqrt(10), rel=1e-12)
        assert 0 < rec["metrics"]["fid_se"] < rec["metrics"]["fid"]
    var = [np.var(np.subtract(records[0.5, s]["eval"]["splits"]["fid"], records[0.0, s]["eval"]["splits"]["fid"]),
                  ddof=1) / 10 for s in (0, 1)]
    expected = np.sqrt(sum(var)) / 2
    (v,) = build_report(digits_sweep / "run").verdicts
    assert v.metric == "fid" and v.eval_se == pytest.approx(expected, rel=1e-12)
    assert f"evaluation SE {expected:.2g})" in v.sentence()


def test_re_evaluation_carries_the_jackknife_and_blocks_leave_fid_unchanged(digits_sweep, tmp_path, capsys):
    """mfsweep-evaluate at the training settings reproduces fid, fid_se and the pseudo-values; another draw gives
    another FID; one block gives the same FID with no SE, and a report of it (or of records mixing it with the
    10-block evaluation) has no evaluation SE and refuses nothing."""
    root = shutil.copytree(digits_sweep / "run", tmp_path / "run", ignore=shutil.ignore_patterns("*seed=1"))
    cells = {(a, 0): _digits_cell(tmp_path, a, 0) for a in (0.0, 0.5)}  # seed 0's pair is enough
    assert evaluate([str(root)]) == evaluate([str(root), "eval.draw=1"]) == evaluate([str(root), "eval.n_splits=1"]) == 0
    for c in cells.values():
        rec, same, other, one = read_record(c), *(json.loads((c / "evaluations" / f"{n}.json").read_text())
                                                  for n in ("training", "eval.draw=1", "eval.n_splits=1"))
        for k in ("fid", "fid_se"):
            assert same["metrics"][k] == pytest.approx(rec["metrics"][k], rel=1e-9)
        np.testing.assert_allclose(same["eval"]["splits"]["fid"], rec["eval"]["splits"]["fid"], rtol=1e-9)
        assert other["eval"]["draw"] == 1 and other["metrics"]["fid"] != pytest.approx(rec["metrics"]["fid"], rel=1e-3)
        assert len(other["eval"]["splits"]["fid"]) == 10 and other["metrics"]["fid_se"] > 0
        assert one["metrics"]["fid"] == pytest.approx(rec["metrics"]["fid"], rel=1e-9)
        assert one["metrics"]["fid_se"] is None and "splits" not in one["eval"]
    victim = cells[0.0, 0] / "evaluations"
    (victim / "eval.n_splits=1.json").write_text((victim / "training.json").read_text())
    (v,) = build_report(root, evaluation="eval.n_splits=1").verdicts
    assert v.eval_se is None and "evaluation SE" not in v.sentence()
    # another draw is another evaluation: refused in one line, as for SW
    (victim / "training.json").write_text((victim / "eval.draw=1.json").read_text())
    capsys.readouterr()
    assert report([str(root), "--evaluation", "training"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "evaluated differently" in err and "draw=" in err and "mfsweep-evaluate" in err


def _never(self, index):
    raise AssertionError("reference images recomputed")
    yield


def test_reference_stats_file_stands_in_for_the_reference_set(tmp_path):
    """An .npz of mu and sigma alone (ADM's layout) becomes the reference; no reference image is read."""
    base = ["experiment=digits_dit", "model.depth=1", "eval.fid_samples=100", f"metrics.fid.cache_dir={tmp_path}"]
    mu, sigma, _ = build_task(compose_cfg(*base), [0.0], [0], cls=LatentDiTTask).fid().reference_stats()
    np.savez(tmp_path / "stats.npz", mu=mu, sigma=sigma)
    other = build_task(compose_cfg(*base, f"metrics.fid.reference_stats={tmp_path / 'stats.npz'}"),
                                      [0.0], [0], cls=LatentDiTTask)
    with mock.patch.object(LatentDiTTask, "_images", _never):
        mu2, sigma2, _ = other.fid().reference_stats()
    np.testing.assert_allclose(mu2, mu, rtol=1e-12)
    np.testing.assert_allclose(sigma2, sigma, rtol=1e-9, atol=1e-12)


def test_streams_resume_exactly_and_the_global_batch_splits_into_rank_slices():
    task = build_task(compose_cfg("experiment=digits_dit", "model.depth=1", "trainer.batch_size=8"),
                                     [0.0], [2], cls=LatentDiTTask)
    task.draw_batch()
    state = task.stream_state()
    a = task.draw_batch()
    task.load_stream_state(state)
    b = task.draw_batch()
    for k in ("x", "e", "t", "r", "y"):
        assert torch.equal(getattr(a, k), getattr(b, k))
    task.load_stream_state(state)
    with mock.patch.object(LatentDiTTask, "_world", lambda self: (1, 2)):
        half = task.draw_batch()
    assert torch.equal(half.e, a.e[4:]) and torch.equal(half.x, a.x[4:])
    with mock.patch.object(LatentDiTTask, "_world", lambda self: (0, 3)), \
            pytest.raises(ValueError, match="trainer.batch_size 8 must be divisible by the number of processes 3"):
        task.draw_batch()


def test_tile_places_each_image_in_row_major_order():
    images = np.stack([np.full((2, 3, 3), 10 * i, np.uint8) for i in range(5)])
    mosaic = tile(images, ncols=3, pad=1)
    assert mosaic.shape == (2 * 3 - 1, 3 * 4 - 1, 3)
    assert mosaic[0, 0, 0] == 0 and mosaic[0, 4, 0] == 10 and mosaic[3, 0, 0] == 30 and mosaic[3, 4, 0] == 40
    assert mosaic[3, 8, 0] == 255 and mosaic[2, 0, 0] == 255  # the empty cell and the padding
    with pytest.raises(ValueError, match="uint8"):
        tile(images.astype(np.float32))


DIGITS_BAD = [
    (["model.name=MLP"], "model.name"),
    (["model.patch_size=3"], "model.patch_size"),
    (["model.hidden_size=30"], "model.hidden_size"),
    (["model.depth=0"], "model.depth"),
    (["guidance.label_dropout=1.5"], "guidance.label_dropout"),
    (["guidance.t_max=-0.1"], "guidance.t_max"),
    (["guidance.t_min=0.9", "guidance.t_max=0.5"], "guidance.t_min"),  # an empty interval
    (["alpha.value=[0.0,0.5]"], "alpha.value"),
    (["seed=[0,1]"], "seed"),
    (["sweep.mode=packed"], "sweep.mode"),
    (["trainer.precision=16-mixed"], "trainer.precision"),
    (["trainer.strategy=ddp_spawn"], "trainer.strategy"),
    (["trainer.threads=0"], "trainer.threads"),
    (["eval.fid_samples=1"], "eval.fid_samples"),
    (["eval.n_splits=0"], "eval.n_splits"),
    (["eval.n_splits=201"], "eval.n_splits"),  # 2,000 samples hold 200 rounds of the 10 classes
    (["eval.fid_samples=19", "eval.n_splits=2"], "eval.n_splits"),  # one whole round
    (["eval.draw=-1"], "eval.draw"),
    (["dataset.image_size=4"], "dataset.image_size"),
    (["metrics.fid.features=clip"], "metrics.fid.features"),
    (["metrics.fid.reference_stats=/no/such/stats.npz"], "metrics.fid.reference_stats"),
    (["metrics.fid.features=inception"], "metrics.fid.inception_weights"),  # none given
]


@pytest.mark.parametrize("overrides,key", DIGITS_BAD)
def test_bad_digits_input_fails_before_training_naming_the_key(tmp_path, overrides, key):
    with pytest.raises(ConfigValueError, match=rf"^{re.escape(key)}\b"):
        train(compose_cfg("experiment=digits_dit", *overrides), tmp_path)
    assert not any(tmp_path.iterdir())


def test_bad_latent_inputs_name_the_key_and_the_path(tmp_path, latents, inception_weights):
    def fails(key: str, *overrides: str, weights: Path | str = inception_weights, match: str = "") -> None:
        with pytest.raises(ConfigValueError, match=rf"^{re.escape(key)}\b.*{re.escape(match)}"):
            train(compose_cfg(*_imagenet(latents, weights, tmp_path / "cache"), *overrides), tmp_path / "run")

    fails("dataset.path", "dataset.path=null", match="mfsweep-encode output folder")
    fails("dataset.path", f"dataset.path={tmp_path / 'nowhere'}", match=str(tmp_path / "nowhere"))
    fails("dataset.num_classes", "dataset.num_classes=1000", match="2 classes")
    fails("metrics.fid.inception_weights", weights=tmp_path / "missing.pth", match=str(tmp_path / "missing.pth"))
    fails("metrics.fid.inception_weights", weights="null", match="not set")
    fails("metrics.fid.features", "metrics.fid.features=classifier", match="digits only")
    fails("model.patch_size", "model.patch_size=5", match="sample size 16")
    assert not (tmp_path / "run").exists()


def test_digit_classifier_is_accurate_and_deterministic_from_its_seed():
    from mfsweep.data.digits import load_digits_tensor
    from mfsweep.metrics.classifier import train_classifier

    x, y = load_digits_tensor(16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        net = train_classifier(x, y, 10, seed=0)
        one, again = (train_classifier(x[:256], y[:256], 10, seed=3, epochs=1) for _ in range(2))
    finally:
        torch.set_num_threads(threads)
    with torch.no_grad():
        accuracy = (net(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.95  # features that know the digits, so the Frechet distance sees digit quality
    for a, b in zip(one.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


HEAD_DIT = ["tangent=velocity_head_dit", "tangent.head.hidden_size=32", "tangent.head.depth=1",
            "tangent.head.num_heads=2"]


def test_velocity_head_on_the_dit_is_a_small_separate_dit_that_learns_and_feeds_the_tangent():
    """tangent=velocity_head_dit: a DiT of its own size beside the trained one (same latent shape, patch and
    classes), initialised from the cell's proxy stream, trained with the network, its prediction the tangent."""
    base = ["experiment=digits_dit", "model.depth=1", "trainer.batch_size=16", "alpha.value=1.0", *HEAD_DIT]
    cfg = compose_cfg(*base)
    task = build_task(cfg, [1.0], [0], cls=LatentDiTTask)
    head = task.proxy.head
    assert type(head) is type(task.model) and head.io_kwargs() == task.model.io_kwargs()
    assert (len(head.blocks), head.pos_embed.shape[-1]) == (1, 32)
    assert task.proxy.spec(0)["head"]["target"] == "mfsweep.models.dit.DiT"
    # its parameters are trained with the network's; the same seed draws the same head, another seed another
    trained = {id(p) for p in task.trained_parameters()}
    assert all(id(p) in trained for p in head.parameters())
    again, other = (build_task(cfg, [1.0], [s], cls=LatentDiTTask).proxy.head for s in (0, 1))
    w = lambda h: h.blocks[0].attn.qkv.weight  # noqa: E731
    assert torch.equal(w(head), w(again)) and not torch.equal(w(head), w(other))
    # the flow-matching loss of the head falls under plain Adam on it alone (a fixed batch, 30 steps) ...
    torch.manual_seed(0)
    batch = task.draw_batch()
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss = task.losses(batch, torch.ones(1))["proxy"].sum()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    # ... and at alpha = 1 the tangent is the head's prediction at r = t, with the batch's labels
    t = task._bcast_time(batch.t)
    z = (1 - t) * batch.x + t * batch.e
    with torch.no_grad():
        assert torch.equal(task.proxy_velocity(batch, z), head(z, batch.t, batch.t, batch.y))
