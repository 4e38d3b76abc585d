"""docs/design.md's layer diagram is a contract (import-linter, `[tool.importlinter]` in pyproject.toml): the
package keeps it, the diagram in the document is the one the contract checks, and an upward import fails it."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the package found first on the path from `root`, with `root`'s pyproject.toml."""
    env = os.environ | {"PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--no-cache", "--no-logo"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=60)


def test_the_package_keeps_its_layers():
    out = lint(REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "BROKEN" not in out.stdout


def test_the_diagram_in_design_md_is_the_contract():
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in contracts if c["type"] == "layers"]
    diagram = re.search(r"```\nlayers \(top to bottom\):\n(.*?)```", (REPO / "docs/design.md").read_text(), re.S)
    assert diagram, "docs/design.md has no layer diagram"
    drawn = [line.split("#")[0].strip() for line in diagram.group(1).splitlines()]
    assert [line for line in drawn if line] == layers


def lint_with(tmp_path, module: str, lines: str):
    """lint-imports on a copy of the package whose `module` (a path below it) ends with `lines`."""
    for part in ("mfsweep", "hydra_plugins"):
        shutil.copytree(REPO / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    path = tmp_path / module
    path.write_text(path.read_text() + lines)
    return lint(tmp_path)


def test_an_upward_import_breaks_the_contract_naming_it(tmp_path):
    out = lint_with(tmp_path, "mfsweep/tasks/streams.py", "\nfrom mfsweep.sweep.record import RECORD  # noqa: E402\n")
    assert out.returncode == 1
    assert "mfsweep.tasks is not allowed to import mfsweep.sweep" in out.stdout
    assert "mfsweep.tasks.streams -> mfsweep.sweep.record" in out.stdout


def test_method_importing_the_package_or_a_framework_breaks_the_contract(tmp_path):
    out = lint_with(tmp_path, "mfsweep/method/loss.py",
                    "\nimport omegaconf  # noqa: E402\nfrom mfsweep.data import toy  # noqa: E402\n")
    assert out.returncode == 1
    assert "mfsweep.method.loss -> omegaconf" in out.stdout
    assert "mfsweep.method.loss -> mfsweep.data.toy" in out.stdout


def _layout() -> dict[str, str]:
    """docs/design.md's layout block, below `mfsweep/`: entry name -> its description (continuation lines joined)."""
    block = re.search(r"```\nconf/ .*?\nmfsweep/\n(.*?)\nhydra_plugins/", (REPO / "docs/design.md").read_text(), re.S)
    assert block, "docs/design.md has no layout block"
    entries: dict[str, str] = {}
    for line in block.group(1).splitlines():
        name, _, text = line.strip().partition(" ")
        if line.startswith("  ") and not line.startswith("   "):
            entries[name] = text
        else:
            entries[list(entries)[-1]] += " " + line.strip()
    return entries


def test_the_layout_in_design_md_lists_every_package_and_module():
    package = REPO / "mfsweep"
    actual = {f"{p.name}/" for p in package.iterdir() if (p / "__init__.py").exists()}
    actual |= {p.name for p in package.glob("*.py") if p.name != "__init__.py"}
    assert set(_layout()) == actual


def test_the_modules_design_md_names_exist():
    """Every module the layout names in parentheses (`training them (runner)`), and every path or dotted module
    the document cites."""
    text = (REPO / "docs/design.md").read_text()
    named = [f"mfsweep/{folder}{module}.py" for folder, description in _layout().items() if folder.endswith("/")
             for module in re.findall(r"\((\w+)(?:[:)])", description)]
    named += re.findall(r"`(mfsweep/[\w/]+\.py)`", text)
    named += [m.replace(".", "/") + ".py" for m in re.findall(r"`(mfsweep(?:\.\w+)+)`", text)]
    assert len(named) > 15
    assert [n for n in named if not (REPO / n).is_file() and not (REPO / n.removesuffix(".py")).is_dir()] == []
