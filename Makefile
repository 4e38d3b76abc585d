# `make demo` and `make test` set everything up on a fresh machine (venv included), then run.
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed-stamp
DEMO    ?= demo
PYTEST_ARGS ?=
# Two pytest-xdist workers, one per core of the CI machine; the SLURM tests stay in one (tests/conftest.py).
WORKERS ?= -n 2 --dist loadgroup

.PHONY: setup demo test test-slow faults bench mutation clean chromium notebook

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The main job: the 11-alpha x 3-seed grid on swiss_roll, packed into one CPU process, then its report.
demo: $(STAMP)
	$(VENV)/bin/mfsweep-train -m experiment=demo hydra.sweep.dir=$(DEMO)
	$(VENV)/bin/mfsweep-report $(DEMO)

# The whole test suite (slow-marked tests excluded; `make test-slow` runs them).
test: $(STAMP) chromium
	$(VENV)/bin/pytest $(WORKERS) $(PYTEST_ARGS)

# Debian's chromium for the report's browser test (tests/report/test_browser.py drives it with Playwright; no browser
# download). Installed only where missing and only as root; elsewhere the test says why it skips (fails if CI=true).
chromium:
	@command -v chromium >/dev/null || { test "$$(id -u)" = 0 && apt-get update -q \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } \
		|| echo "chromium not installed (needs root and apt-get): the browser test will skip"

# JupyterLab (a dev dependency) on the analysis notebooks; they read demo/ unless MFSWEEP_SWEEP_DIR says otherwise.
notebook: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

test-slow: $(STAMP)
	$(VENV)/bin/pytest -m slow $(WORKERS) $(PYTEST_ARGS)

# The whole fault-injection suite (tests/faults; its fast part is in `make test`): every file damaged, every
# write refused, the training process killed mid-write; the outcomes are tabled in docs/testing.md ("Faults").
faults: $(STAMP)
	$(VENV)/bin/pytest -m faults tests/faults $(WORKERS) $(PYTEST_ARGS)

# Mutation testing of mfsweep/method, mfsweep/metrics and models/mlp.py with their fast unit tests (config:
# [tool.mutmut] in pyproject.toml; survivors and score: docs/testing.md). Not part of `make test`.
MUTMUT_JOBS ?= 2
MUTANTS ?=
mutation: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 $(VENV)/bin/mutmut run --max-children $(MUTMUT_JOBS) $(MUTANTS)
	$(VENV)/bin/mutmut export-cicd-stats && cat mutants/mutmut-cicd-stats.json
	$(VENV)/bin/mutmut results

bench: $(STAMP)
	$(PY) benchmarks/step_cost.py

clean:
	rm -rf $(DEMO) runs multirun outputs .pytest_cache
