"""The analysis notebooks: stored without outputs, and executed (nbmake) against the session's tiny sweep."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbmake.nb_run import NotebookRun

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_both_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == ["alpha_comparison.ipynb", "theory.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    stale = [i for i, cell in enumerate(nb.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
    assert not stale, f"{path.name}: code cells {stale} hold outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_tiny_sweep(path, tiny_sweep, monkeypatch):
    monkeypatch.setenv("MFSWEEP_SWEEP_DIR", str(tiny_sweep))  # the kernel inherits this process's environment
    result = NotebookRun(path, default_timeout=120).execute()
    assert result.error is None, f"{path.name}, cell {result.error.failing_cell_index}:\n{result.error.trace}"
    if path.stem == "alpha_comparison":  # it read the tiny sweep: 3 alphas x 2 seeds, all completed
        printed = "".join(o.get("text", "") for o in result.nb.cells[1].outputs)
        assert "6 completed" in printed and "alphas [0.0, 0.5, 1.0], seeds [0, 1]" in printed
