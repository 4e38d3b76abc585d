"""The analysis notebooks: stored without outputs, executed (nbmake) against the session's tiny sweep from their
own folder (where Jupyter starts a kernel), and showing their figures."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbmake.nb_run import NotebookRun

from mfsweep.report.page import build_report, resolve_sweep_dir

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


def _images(nb) -> int:
    """How many outputs carry a rendered image."""
    return sum(1 for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
               if {"image/png", "image/svg+xml"} & set(o.get("data", {})))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_the_tiny_sweep_and_shows_figures(path, tiny_sweep, monkeypatch):
    monkeypatch.setenv("MFSWEEP_SWEEP_DIR", str(tiny_sweep))  # the kernel inherits this process's environment
    result = NotebookRun(path, default_timeout=300).execute()
    assert result.error is None, f"{path.name}, cell {result.error.failing_cell_index}:\n{result.error.trace}"
    outputs = [o for cell in result.nb.cells if cell.cell_type == "code" for o in cell.outputs]
    texts = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    # Every figure reaches the notebook as an image, not only as "<Figure size ...>" text (no backend is forced
    # on import, so the kernel's inline backend renders it).
    figures = [o for o in outputs if str(o.get("data", {}).get("text/plain", "")).startswith("<Figure")]
    assert figures and all({"image/png", "image/svg+xml"} & set(o["data"]) for o in figures)
    assert "<Figure size" not in "".join(o.get("text", "") for o in outputs)
    if path.stem == "alpha_comparison":  # it read the tiny sweep: 3 alphas x 2 seeds, all completed
        assert "6 completed" in texts and "alphas [0.0, 0.5, 1.0], seeds [0, 1]" in texts
        report = build_report(tiny_sweep)
        assert all(v.sentence() in texts for v in report.verdicts)  # the report's verdict API, same sentences
        # paired plot, own SW plot, grad-var plot and curves, one samples figure
        assert _images(result.nb) >= 5
    else:  # MSE curves, alpha* against c, Figure 1
        assert _images(result.nb) == 3


def test_a_relative_sweep_folder_is_found_from_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.chdir(NOTEBOOKS[0].parent)  # a notebook kernel's working folder
    assert resolve_sweep_dir("demo") == NOTEBOOKS[0].parent.parent / "demo"
    assert resolve_sweep_dir(tmp_path) == tmp_path


def test_theory_notebook_curves_equal_the_formula_recomputed_in_numpy():
    """The theory notebook's first two figures, from its own cells run in-process (Agg): every MSE curve and
    alpha* curve against docs/method.md 4 in NumPy, and each marked alpha* at the minimum of a fine NumPy grid
    (issue 15: the notebook was only executed). Figure 1's cell is covered by test_figures' trace-map tests."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    nb = nbformat.read(NOTEBOOKS[[p.stem for p in NOTEBOOKS].index("theory")], as_version=4)
    # IPython magics (`%matplotlib inline`) are the kernel's business, not Python's: left out here.
    code = ["\n".join(line for line in c.source.splitlines() if not line.startswith("%"))
            for c in nb.cells if c.cell_type == "code"]
    plt.close("all")
    scope: dict = {}
    for source in code[:3]:  # imports, MSE against alpha, alpha* against c
        exec(compile(source, "theory.ipynb", "exec"), scope)
    mse_fig, star_fig = (plt.figure(n) for n in plt.get_fignums())
    a = np.linspace(0, 1, 201)
    fine = np.linspace(0, 1, 100001)
    for ax, c in zip(mse_fig.axes, (1.5, 3.0, 10.0)):
        lines = ax.get_lines()
        assert len(lines) == 8  # a curve and its dot for four bias ratios
        for (curve, dot), b2 in zip(zip(lines[::2], lines[1::2]), (0.0, 0.25, 1.0, 4.0)):
            mse = lambda x: ((1 - x) * c - 1) ** 2 + x ** 2 * c ** 2 * b2  # noqa: E731  (sigma^2 = 1)
            np.testing.assert_allclose(curve.get_xdata(), a)
            np.testing.assert_allclose(curve.get_ydata(), mse(a), rtol=1e-12)
            assert dot.get_xdata()[0] == pytest.approx(fine[np.argmin(mse(fine))], abs=2e-5)
    (ax,) = star_fig.axes
    cs = np.logspace(-0.5, 2, 300)
    for line, b2 in zip(ax.get_lines(), (0.0, 0.25, 1.0, 4.0)):
        np.testing.assert_allclose(line.get_xdata(), cs, rtol=1e-12)
        np.testing.assert_allclose(line.get_ydata(), np.clip((1 - 1 / cs) / (1 + b2), 0, 1), rtol=1e-10, atol=1e-15)
    plt.close("all")
