"""The config layer's claim (docs/extending.md, "A per-member key"): a new per-member engine key is one field of
a per-member section plus its default in conf/. The test adds one, `loss.extra_weight`, exactly that way (a
subclass of LossConfig with the field, a copy of conf/ with the default) in a fresh process, and follows it
through everything that used to need an edit: MEMBER_KEYS, the default sweep.packed_keys, validation, the
job's cells and folders, the module's per-member values and the records."""
from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from mfsweep.config import CONF_DIR
from mfsweep.config.members import DEFAULT_PACKED_KEYS, LIST_VALUED, MEMBER_KEYS
from mfsweep.config.sections import PER_MEMBER

SCRIPT = textwrap.dedent('''
    import dataclasses, json, sys
    from pathlib import Path
    from mfsweep.config import sections
    from mfsweep.config.checks import Number, checked

    # The one code change: a field of a per-member section (here a subclass, to leave the real one alone).
    @dataclasses.dataclass(frozen=True)
    class LossConfig(sections.LossConfig):
        extra_weight: float = checked(Number(low=0.0))

    sections.LossConfig = LossConfig
    swap = lambda classes: tuple(LossConfig if c is sections.LossConfig.__base__ else c for c in classes)
    sections.PER_MEMBER, sections.SECTIONS = swap(sections.PER_MEMBER), swap(sections.SECTIONS)

    from hydra import compose, initialize_config_dir
    from mfsweep.cli.train import train
    from mfsweep.config.members import DEFAULT_PACKED_KEYS, MEMBER_KEYS
    from mfsweep.method.errors import ConfigValueError
    from mfsweep.tasks import build_task

    conf, root = sys.argv[1], Path(sys.argv[2])
    tiny = ["trainer.max_steps=20", "trainer.batch_size=32", "trainer.log_every=10", "trainer.progress=false",
            "model.width=16", "eval.n_samples=100", "eval.n_projections=10", "eval.every=0", "logger=csv",
            "grad_var.every=0", "diagnostics.every=0", "alpha.value=[0.0,1.0]", "seed=[0]"]
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = compose("config", overrides=tiny + ["loss.extra_weight=[0.0,0.5]"])
        bad = compose("config", overrides=tiny + ["loss.extra_weight=[0.5,-1.0]"])
    out = {"member_key": "loss.extra_weight" in MEMBER_KEYS, "packed_by_default": "loss.extra_weight" in DEFAULT_PACKED_KEYS}
    try:
        train(bad, root / "bad")
    except ConfigValueError as err:
        out["error"] = str(err)
    task = build_task(cfg, [0.0, 0.0, 1.0, 1.0], [0, 0, 0, 0], [{"loss.extra_weight": w} for w in (0.0, 0.5, 0.0, 0.5)])
    out["hp"] = task.hp["loss.extra_weight"].tolist()
    records = train(cfg, root / "run", "dataset=swiss_roll", ["loss.extra_weight=[0.0,0.5]"])
    out["records"] = sorted([r["alpha"], r["setting"]["loss.extra_weight"], r["status"]] for r in records)
    print(json.dumps(out))
''')


def test_member_keys_are_the_per_member_sections_fields():
    fields = [f"{s.group}.{f.name}" for s in PER_MEMBER for f in dataclasses.fields(s)]
    assert MEMBER_KEYS == ("alpha.value", "seed", *fields)
    assert "trainer.lr_schedule" in MEMBER_KEYS and "loss.offset" in MEMBER_KEYS and LIST_VALUED == ("trainer.betas",)
    assert DEFAULT_PACKED_KEYS[:4] == ("alpha.value", "seed", "alpha.*", "tangent.*")
    assert set(DEFAULT_PACKED_KEYS[4:]) == set(fields)


def test_a_new_per_member_key_is_one_field_and_its_yaml_default(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    text = (conf / "config.yaml").read_text()
    (conf / "config.yaml").write_text(text.replace("loss:", "loss:\n  extra_weight: 0.0", 1))  # the YAML default
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(conf), str(tmp_path)], capture_output=True, text=True,
                         timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["member_key"] and got["packed_by_default"]
    assert got["error"] == "loss.extra_weight must be >= 0.0, got -1.0"
    assert got["hp"] == [0.0, 0.5, 0.0, 0.5]
    assert got["records"] == [[a, w, "completed"] for a in (0.0, 1.0) for w in (0.0, 0.5)]
