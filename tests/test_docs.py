"""The repository stands alone: every markdown document a tracked file cites exists in the repository."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# `docs/method.md`, `../README.md`, a bare name; not inside URLs or longer paths (no / . ~ - or word before).
MD_REFERENCE = re.compile(r"(?<![\w/.~-])((?:\.\./|[\w.-]+/)*[\w.-]+\.md)\b")
# Written by `mfsweep-report` into a sweep folder, not documents of the repository.
GENERATED = {"report.md"}


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / name for name in out.split("\0") if name]


def missing_references(files: list[Path]) -> list[str]:
    """`file:line: reference` for each cited markdown path found neither from the root nor beside the file."""
    missing = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError):  # binary files; deletions not yet committed
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for ref in MD_REFERENCE.findall(line):
                if Path(ref).name in GENERATED:
                    continue
                if not ((REPO / ref).is_file() or (path.parent / ref).is_file()):
                    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                    missing.append(f"{where}:{number}: {ref}")
    return missing


def test_every_cited_markdown_document_exists():
    assert missing_references(tracked_files()) == []


def test_the_check_catches_a_document_outside_the_repository(tmp_path):
    notes, outside = "NOTES" + ".md", "../elsewhere/THEORY" + ".md"  # split, so this file cites neither
    cite = tmp_path / "cite.py"
    cite.write_text(f'"""See {notes}, section 3, and docs/method.md 4."""\nx = "{outside}"\n')
    missing = [m.split(": ", 1)[1] for m in missing_references([cite])]
    assert missing == [notes, outside]


def test_the_method_sections_the_code_cites_exist():
    """Code cites `docs/method.md N`; the page keeps its numbered sections 1 to 7."""
    headings = re.findall(r"^## (\d+)\. ", (REPO / "docs/method.md").read_text(), flags=re.M)
    assert headings == ["1", "2", "3", "4", "5", "6", "7"]
    cited = set()
    for path in tracked_files():
        if path.suffix in (".py", ".yaml", ".md", ".ipynb"):
            cited |= set(re.findall(r"docs/method\.md (\d)", path.read_text(encoding="utf-8")))
    assert cited <= set(headings)


def readme_snippet(marker: str) -> str:
    """The README's python block that contains `marker`, exactly as a reader would copy it."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    (block,) = [b for b in blocks if marker in b]
    return block


def test_the_readme_sw_recomputation_runs_as_written_and_matches_the_record(tiny_sweep):
    """Run in a cell folder of a tiny sweep, the snippet recomputes SW1 and SW2 within the tolerance the
    README states (its own assert), and prints figures that match the record."""
    snippet = readme_snippet("get_random_projections")
    assert "a relative 1e-5" in (REPO / "README.md").read_text()
    cell = next(tiny_sweep.rglob("result.json")).parent
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=cell, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((cell / "result.json").read_text())["metrics"]
    printed = dict(re.findall(r"(sw\d): recomputed ([\d.]+)", proc.stdout))
    assert set(printed) == {"sw1", "sw2"}
    for key, value in printed.items():
        assert float(value) == pytest.approx(record[key], rel=1e-5)


def config_table(doc: Path, heading: str) -> dict[str, set[str]]:
    """The options each config group's row of `doc`'s table under `heading` lists (a row with no group continues
    the one above; parenthesised keys and notes left out, `dit_{s,b}_{2,4}` expanded)."""
    text = doc.read_text(encoding="utf-8").split(heading, 1)[1]
    groups: dict[str, set[str]] = {}
    group = None
    for line in text.splitlines()[1:]:
        if not line.startswith("|"):
            if groups:
                break
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in ("group", "---"):
            continue
        group = cells[0].strip("`") or group
        options = re.sub(r"\([^)]*\)", " ", cells[1]).replace("`", " ")
        for name in re.split(r"[\s;]+|,(?![^{]*\})", options):  # a comma inside {...} is the pattern's
            groups.setdefault(group, set()).update(expand(name) if name else ())
    return groups


def expand(name: str) -> list[str]:
    """`dit_{s,b}_{2,4}` -> dit_s_2, dit_s_4, dit_b_2, dit_b_4."""
    match = re.search(r"\{([^}]*)\}", name)
    if not match:
        return [name]
    return [n for part in match.group(1).split(",") for n in expand(name[:match.start()] + part + name[match.end():])]


@pytest.mark.parametrize("doc, heading", [("README.md", "### Config groups (`conf/`)"),
                                          ("docs/design.md", "## Config groups")])
def test_the_config_tables_list_exactly_the_yaml_files_of_conf(doc, heading):
    listed = config_table(REPO / doc, heading)
    assert listed, f"{doc} has no config-group table under {heading!r}"
    for group, names in listed.items():
        on_disk = {p.stem for p in (REPO / "conf" / group).glob("*.yaml")}
        assert names == on_disk, f"{doc}: {group}: lists {sorted(names - on_disk)} not in conf/, misses {sorted(on_disk - names)}"
