"""Hand-made mutants of the functions mutmut does not mutate (decorated with `@torch.no_grad()` or
`@property`, docs/testing.md): each case applies one small source change to a copy of the function, patches
the copy in everywhere the original is bound, and asserts that the named tests fail on it. A no-op "mutant"
of each function checks that the copying itself changes nothing (the same tests pass on it).

A mutant "is detected" when one of its detector tests raises (an assertion or any other error). The unit-test
file of a module declares its functions' mutants, each with detectors from that same file, at its end:

    test_an_unchanged_copy_passes_the_same_tests, test_hand_mutant_is_detected = hand_mutant_tests(MUTANTS)

(once tests/method/test_hand_mutants.py, which imported the other test files for their detectors)."""
from __future__ import annotations

import __future__
import importlib
import inspect
import sys
import textwrap
from pathlib import Path

import pytest

# A mutant: (id, module, qualname, old, new, detectors), where `old` occurs exactly once in the function's source.
Mutant = tuple[str, str, str, str, str, list]


def with_tmp(fn):
    """A detector that takes `tmp_path`, run in a fresh folder below the mutant test's own."""
    def run(tmp_root: Path):
        tmp = tmp_root / fn.__name__
        tmp.mkdir()
        fn(tmp)
    run.needs_tmp, run.__name__ = True, fn.__name__
    return run


def _mutated(module_name: str, qualname: str, old: str, new: str):
    """The original object and a copy compiled from its source with `old` replaced by `new` in the module's
    namespace (decorators included, so a `@torch.no_grad()` or `@property` copy is decorated the same way)."""
    module = importlib.import_module(module_name)
    owner, name = (module, qualname) if "." not in qualname else (getattr(module, qualname.split(".")[0]), qualname.split(".")[1])
    original = inspect.getattr_static(owner, name)
    func = original.fget if isinstance(original, property) else original
    source = textwrap.dedent(inspect.getsource(inspect.unwrap(func)))
    assert source.startswith("@"), f"{qualname} is not decorated"
    assert old == new == "" or source.count(old) == 1, f"{qualname}: {old!r} occurs {source.count(old)} times"
    namespace = dict(vars(module))
    code = compile(source.replace(old, new) if old else source, inspect.getsourcefile(module), "exec",
                   flags=__future__.annotations.compiler_flag, dont_inherit=True)
    exec(code, namespace)
    return owner, name, original, namespace[name]


def _patch_everywhere(monkeypatch: pytest.MonkeyPatch, owner, name: str, original, replacement) -> None:
    monkeypatch.setattr(owner, name, replacement)
    if inspect.ismodule(owner):  # also every module that imported the function by name
        for mod in list(sys.modules.values()):
            if mod is not owner and getattr(mod, name, None) is original:
                monkeypatch.setattr(mod, name, replacement)


def _run(detector, tmp_path: Path) -> None:
    if getattr(detector, "needs_tmp", False):
        detector(tmp_path)
    else:
        detector()


def _source_has_decorator(module_name: str, qualname: str) -> bool:
    module = importlib.import_module(module_name)
    owner = module if "." not in qualname else getattr(module, qualname.split(".")[0])
    obj = inspect.getattr_static(owner, qualname.split(".")[-1])
    func = obj.fget if isinstance(obj, property) else obj
    return textwrap.dedent(inspect.getsource(func)).startswith("@")


def hand_mutant_tests(mutants: list[Mutant]):
    """The two tests over `mutants`: an unchanged copy of each function passes its detectors, and each mutant
    fails at least one."""
    targets = {(module, qualname): detectors for _, module, qualname, _, _, detectors in mutants}

    @pytest.mark.parametrize("module_name, qualname", sorted(targets))
    def test_an_unchanged_copy_passes_the_same_tests(module_name, qualname, tmp_path, monkeypatch):
        """The copy mechanism itself is faithful: the function recompiled without change passes its detectors."""
        assert _source_has_decorator(module_name, qualname)  # still a function mutmut skips
        owner, name, original, copy = _mutated(module_name, qualname, "", "")
        assert copy is not original
        _patch_everywhere(monkeypatch, owner, name, original, copy)
        for detector in targets[(module_name, qualname)]:
            _run(detector, tmp_path)

    @pytest.mark.parametrize("case", mutants, ids=[m[0] for m in mutants])
    def test_hand_mutant_is_detected(case, tmp_path, monkeypatch):
        _, module_name, qualname, old, new, detectors = case
        owner, name, original, mutant = _mutated(module_name, qualname, old, new)
        _patch_everywhere(monkeypatch, owner, name, original, mutant)
        failures = []
        for detector in detectors:
            try:
                _run(detector, tmp_path)
            except (Exception, pytest.fail.Exception) as exc:  # noqa: BLE001  (a failed assert, pytest.raises or any error)
                failures.append(f"{getattr(detector, '__name__', detector)}: {type(exc).__name__}")
        assert failures, f"hand mutant {case[0]} survived {[getattr(d, '__name__', d) for d in detectors]}"

    return test_an_unchanged_copy_passes_the_same_tests, test_hand_mutant_is_detected
