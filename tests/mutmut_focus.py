"""Run mutmut's generated mutants against a few named test files, one forked child per mutant (not collected
by pytest). For a quick, focused pass when a full `make mutation` over a module does not fit the time: it uses
the trampolines mutmut wrote under `mutants/` (run `mutmut run` once first to generate them) and the test
files given, copied fresh into `mutants/tests/`.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python tests/mutmut_focus.py OUT.json 'mfsweep.metrics.fid.' \
        tests/metrics/test_fid.py [--only-unresolved]

A mutant counts as killed when pytest exits non-zero with it active (first failure stops the run, `-x`).
The unmutated code must pass and the 'fail' mutant must fail first, else nothing is reported.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"


def main() -> None:
    out, prefix, *rest = sys.argv[1:]
    only_unresolved = "--only-unresolved" in rest
    files = [f for f in rest if not f.startswith("--")]
    for f in files:
        shutil.copy(ROOT / f, MUTANTS / f)
    os.chdir(MUTANTS)
    sys.path.insert(0, str(MUTANTS))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    import pytest  # noqa: F401  (imported before forking: children only collect and run)
    import torch  # noqa: F401
    import mfsweep.cli.train  # noqa: F401  (conftest imports it)

    names = []
    for meta in (MUTANTS / "mfsweep").rglob("*.meta"):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        names += [k for k, v in codes.items() if k.startswith(prefix) and (not only_unresolved or v in (None, 0, -24))]
    # earlier survivors first (exit code 0), then mutants never run
    order = {}
    for meta in (MUTANTS / "mfsweep").rglob("*.meta"):
        order.update(json.loads(meta.read_text())["exit_code_by_key"])
    names.sort(key=lambda k: order.get(k) != 0)

    def run(name: str) -> int:
        pid = os.fork()
        if pid == 0:
            os.environ["MUTANT_UNDER_TEST"] = name
            import pytest as pt
            code = pt.main([*files, "-x", "-q", "-p", "no:cacheprovider", "--timeout=120", "--no-header", "-p", "no:warnings"])
            os._exit(int(code))
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    assert run("") == 0, "the unmutated code fails these tests"
    assert run("fail") != 0, "the trampolines are not hit"
    results = {}
    for i, name in enumerate(names):
        t0 = time.time()
        results[name] = run(name)
        print(f"{i + 1}/{len(names)} {name} {'killed' if results[name] else 'SURVIVED'} {time.time() - t0:.1f}s", flush=True)
        Path(out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
