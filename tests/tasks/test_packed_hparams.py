"""Per-member hyperparameters in packed mode (issue 10): any shape-free key packs into one process, each member
reproduces the single run of its cell, folders and records name the cell's own values, and reports group by them."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import TINY, compose_cfg

from mfsweep.cli.train import train
from mfsweep.cli.validate import ConfigError, validate
from mfsweep.report.aggregate import collect, alpha_rows, varying_keys
from mfsweep.sweep.cells import MEMBER_KEYS, member_cells, member_keys, packs
from mfsweep.tasks.optim import MemberAdamW, lr_factor

FAST = [a for a in TINY if not a.startswith(("trainer.max_steps", "grad_var.every"))] + [
    "trainer.max_steps=20", "grad_var.every=0", "diagnostics.every=0", "eval.n_samples=200", "tangent=ema",
    "loss.anchor_weight=0.05",
]

# key -> (the packed list, the member checked against its single run): each pair differs in that key only.
PER_KEY = {
    "trainer.lr": ("[0.001,0.003]", "0.003"),
    "trainer.betas": ("[[0.9,0.999],[0.8,0.99]]", "[0.8,0.99]"),
    "trainer.weight_decay": ("[0.0,0.1]", "0.1"),
    "trainer.grad_clip": ("[1.0,0.0]", "0.0"),
    "trainer.ema_decay": ("[0.999,0.9]", "0.9"),
    "trainer.lr_schedule": ("[constant,cosine]", "cosine"),
    "trainer.warmup_steps": ("[0,10]", "10"),
    "tangent.ema_decay": ("[0.99,0.5]", "0.5"),
    "time.mu": ("[-0.4,0.5]", "0.5"),
    "time.sigma": ("[1.0,0.5]", "0.5"),
    "time.ratio": ("[0.25,0.75]", "0.75"),
    "time.dist": ("[logit_normal,uniform]", "uniform"),
    "loss.adaptive_p": ("[0.0,1.0]", "1.0"),
    "loss.adaptive_eps": ("[0.001,0.5]", "0.5"),
    "loss.anchor_weight": ("[0.05,0.0]", "0.0"),
    "loss.offset": ("[0.02,0.2]", "0.2"),
}
# The eps of the adaptive weight acts only where the weight is on; mu and sigma only for logit-normal times
# (the toy recipe's are uniform).
EXTRA = {"loss.adaptive_eps": ["loss.adaptive_p=1.0"], "time.mu": ["time.dist=logit_normal"],
         "time.sigma": ["time.dist=logit_normal"]}


def test_every_per_member_key_is_covered_and_is_the_default_packed_set():
    cfg = compose_cfg()
    # the engine's keys and the default proxy's own (tangent.ema_decay, which EMAProxy declares)
    assert set(PER_KEY) == set(member_keys(cfg)) - {"alpha.value", "seed"}
    assert set(MEMBER_KEYS) < set(member_keys(cfg))
    assert all(packs(key, list(cfg.sweep.packed_keys)) for key in member_keys(cfg))
    # every schedule's and proxy's declared keys pack by default, through alpha.* and tangent.*
    for group, options in (("alpha", ("linear", "sigmoid", "adaptive")), ("tangent", ("velocity_head",))):
        for option in options:
            other = compose_cfg(f"{group}={option}")
            keys = [k for k in member_keys(other) if k.startswith(f"{group}.")]
            assert keys and all(packs(k, list(other.sweep.packed_keys)) for k in keys)


def _comparable(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("wall_s", "execution", "metrics", "diagnostics")}


@pytest.mark.parametrize("key", sorted(PER_KEY))
def test_a_member_reproduces_the_single_run_of_its_cell(tmp_path, key):
    packed, single = PER_KEY[key]
    extra = EXTRA.get(key, [])
    cfg = compose_cfg(*FAST, *extra, "alpha.value=[0.5]", "seed=[1]", f"{key}={packed}")
    records = train(cfg, tmp_path, "", [f"{key}={packed}"])
    assert len(records) == 2 and {r["execution"]["members_in_job"] for r in records} == {2}
    twin = records[1]
    (alone,) = train(compose_cfg(*FAST, *extra, "alpha.value=0.5", "seed=1", f"{key}={single}"), tmp_path / "single", "",
                     [f"{key}={single}"])
    assert twin["setting"] == alone["setting"] == {key: yaml.safe_load(single)}
    assert _comparable(twin) == _comparable(alone)
    for m in ("sw1", "sw2", "loss_mse", "loss_weighted"):
        assert twin["metrics"][m] == pytest.approx(alone["metrics"][m], rel=1e-4, abs=1e-7), m
    # The other member really trained or evaluated differently (the key is not ignored).
    assert records[0]["metrics"] != twin["metrics"]
    # Each member's config.yaml carries its own value; folders differ by the setting.
    for rec, value in zip(records, yaml.safe_load(packed)):
        cells = [p for p in tmp_path.rglob("result.json") if json.loads(p.read_text())["setting"][key] == value
                 and "single" not in p.parts]
        (cell,) = cells
        own = yaml.safe_load((cell.parent / "config.yaml").read_text())
        node = own
        for part in key.split("."):
            node = node[part]
        assert node == value


def test_the_issue_example_trains_16_cells_in_one_process_and_reports_one_row_per_setting(tmp_path):
    args = [a for a in FAST if a != "loss.anchor_weight=0.05"]
    cmd = [sys.executable, "-m", "mfsweep.cli.train", "-m", "sweep.mode=packed", "dataset=two_moons",
           "alpha.value=0.0,1.0", "seed=0,1", "trainer.lr=1e-3,3e-3", "time.ratio=0.25,0.75", *args,
           f"hydra.sweep.dir={tmp_path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [p.name for p in (tmp_path / "jobs").iterdir()] == ["0"]  # one job
    records = [json.loads(p.read_text()) for p in tmp_path.rglob("result.json")]
    assert len(records) == 16 and all(r["status"] == "completed" for r in records)
    assert {r["execution"]["members_in_job"] for r in records} == {16}
    assert {(r["setting"]["trainer.lr"], r["setting"]["time.ratio"], r["alpha"], r["seed"]) for r in records} == {
        (lr, ratio, a, s) for lr in (1e-3, 3e-3) for ratio in (0.25, 0.75) for a in (0.0, 1.0) for s in (0, 1)}
    dirs = {p.parent.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("result.json")}
    assert "time.ratio=0.25,trainer.lr=0.003/alpha=1,seed=0" in {d.split("/", 1)[1] for d in dirs}
    rows = alpha_rows(collect(tmp_path))
    assert len(rows) == 8 and all(len(r.seeds) == 2 and r.complete for r in rows)
    assert {"trainer.lr", "time.ratio"} <= set(varying_keys(rows))


def test_cell_folders_are_the_same_in_both_modes():
    packed = compose_cfg("trainer.lr=[1e-3,3e-3]", "alpha.value=[0.0,1.0]", "seed=[0]")
    single = compose_cfg("trainer.lr=3e-3", "alpha.value=1.0", "seed=0")
    dirs = {c.dir for c in member_cells("root", "dataset=x", packed, ["trainer.lr"])}
    (cell,) = member_cells("root", "dataset=x", single, ["trainer.lr"])
    assert cell.dir in dirs and len(dirs) == 4
    assert cell.dir.as_posix() == "root/dataset=x/trainer.lr=0.003/alpha=1,seed=0"


@pytest.mark.parametrize("override, key", [
    ("sweep.packed_keys=[alpha.value,seed,model.width]", "sweep.packed_keys"),
    ("sweep.packed_keys=[alpha.value,seed,trainer.max_steps]", "sweep.packed_keys"),
    ("model.width=[32,64]", "model.width"),
    ("trainer.batch_size=[32,64]", "trainer.batch_size"),
    ("trainer.betas=[[0.9,1.5]]", "trainer.betas"),
    ("time.dist=[uniform,bogus]", "time.dist"),
    ("trainer.warmup_steps=-1", "trainer.warmup_steps"),
])
def test_bad_packing_fails_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"config key '{key}'"):
        validate(compose_cfg(override))


def test_lr_factor_is_warmup_times_schedule():
    warm = torch.tensor([0.0, 4.0, 4.0], dtype=torch.float64)
    for step in (0, 2, 3, 10, 20):
        got = lr_factor(step, 20, ["constant", "constant", "cosine"], warm).tolist()
        ramp = min(1.0, (step + 1) / 4)
        cosine = 0.5 * (1 + torch.cos(torch.tensor(torch.pi * step / 20, dtype=torch.float64)).item())
        assert got == pytest.approx([1.0, ramp, ramp * cosine], rel=1e-12)


def test_member_adamw_equals_torch_adamw_per_member():
    g = torch.Generator().manual_seed(0)
    stacked = torch.nn.Parameter(torch.randn(2, 3, 4, generator=g))
    alone = [torch.nn.Parameter(stacked.detach()[i].clone()) for i in range(2)]
    hp = dict(lr=[1e-2, 3e-3], betas=[[0.9, 0.999], [0.8, 0.99]], weight_decay=[0.0, 0.1])
    opt = MemberAdamW([stacked], torch.tensor(hp["lr"], dtype=torch.float64),
                      torch.tensor(hp["betas"], dtype=torch.float64), torch.tensor(hp["weight_decay"], dtype=torch.float64))
    refs = [torch.optim.AdamW([p], lr=hp["lr"][i], betas=tuple(hp["betas"][i]), weight_decay=hp["weight_decay"][i])
            for i, p in enumerate(alone)]
    for _ in range(5):
        grad = torch.randn(2, 3, 4, generator=g)
        stacked.grad = grad.clone()
        opt.step()
        for i, (p, ref) in enumerate(zip(alone, refs)):
            p.grad = grad[i].clone()
            ref.step()
            torch.testing.assert_close(stacked.detach()[i], p.detach(), rtol=1e-6, atol=1e-7)


def test_compiled_step_matches_eager_and_repeats_bitwise(tmp_path):
    """trainer.compile=true: the members' records equal the eager ones within float tolerance, and a second
    compiled run reproduces the first exactly (CPU)."""
    args = [*FAST, "alpha.value=[0.0,1.0]", "seed=[0]", "trainer.lr=[0.001,0.003]"]
    eager = train(compose_cfg(*args, "trainer.compile=false"), tmp_path / "eager", "", ["trainer.lr=[0.001,0.003]"])
    compiled = [train(compose_cfg(*args, "trainer.compile=true"), tmp_path / f"compiled{i}", "",
                      ["trainer.lr=[0.001,0.003]"]) for i in range(2)]
    assert len(eager) == 4
    for e, c0, c1 in zip(eager, *compiled):
        assert (e["alpha"], e["setting"]) == (c0["alpha"], c0["setting"])
        assert c0["metrics"] == c1["metrics"]
        for m in ("sw1", "sw2", "loss_mse", "loss_weighted"):
            assert c0["metrics"][m] == pytest.approx(e["metrics"][m], rel=1e-3), m
