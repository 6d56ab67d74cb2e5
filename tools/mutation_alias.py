"""Under `make mutation`, import the program's and the policy pack's packages from their mutated copies.

Tests import the Pulumi program's package as `catalog_infra` (installed from infra/, on Pulumi's path) and
the pack's as `catalog_policy` (the pack runs from policy/). mutmut names a mutant after the file's path from
the repository root (`infra.catalog_infra.revisions....`) and activates it only in a module of that name, so
each top-level name is served as the module found under its folder: one module object, named as mutmut
expects. Loaded with `-p tools.mutation_alias`, before any test imports either package.

Both packages run code when they are imported (config keys declared with `integer(...)`, tables built from
them), so two more things keep each mutant judged on its own code. A mutant's run imports them afresh (mutmut
forks it from a process that imported them unmutated), with the tests and preflight that import them. And
mutmut's first run, which finds the tests that reach each function, credits what ran at import to every
test, since every test depends on it (mutmut alone credits it to the first test).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

# Import name -> the folder that holds it, from the repository root.
FOLDERS = {"catalog_infra": "infra", "catalog_policy": "policy"}
# The top-level packages a mutant's run imports afresh: the mutated ones and those that import them.
FRESH = {*FOLDERS, *FOLDERS.values(), "tests", "preflight"}
# What ran while the tests were imported, in the run that finds each function's tests.
_imported: set[str] = set()


class _Existing(importlib.abc.Loader):
    """Hands back a module that is already imported under its folder's name."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        """The module ran when it was imported under its folder's name."""


class _FolderAlias(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        top = fullname.partition(".")[0]
        if top not in FOLDERS:
            return None
        module = importlib.import_module(f"{FOLDERS[top]}.{fullname}")
        return importlib.util.spec_from_loader(fullname, _Existing(module))


sys.meta_path.insert(0, _FolderAlias())


def _mutant() -> str:
    """The mutant mutmut runs now: a mutant's name, "stats" while it finds each function's tests, or ""."""
    return os.environ.get("MUTANT_UNDER_TEST", "")


def _aliased(name: str) -> bool:
    """Whether a mutant or function name (`infra.catalog_infra....`) is of a package served here."""
    return name.partition(".")[0] in FOLDERS.values()


def pytest_load_initial_conftests(early_config: Any, parser: Any, args: list[str]) -> None:
    """In a mutant's run, forget the modules imported unmutated, before conftest.py imports them again."""
    if "__mutmut_" not in _mutant() or not _aliased(_mutant()):
        return
    for name in [name for name in sys.modules if name.partition(".")[0] in FRESH]:
        del sys.modules[name]


def pytest_collection_finish(session: Any) -> None:
    """While mutmut finds each function's tests: keep what ran at import (collection imported the tests)."""
    if _mutant() == "stats":
        from mutmut.state import state  # noqa: PLC0415  (only under mutmut)

        _imported.update(name for name in state()._stats if _aliased(name))


def pytest_runtest_setup(item: Any) -> None:
    """Credit what ran at import to each test, as what ran during it (mutmut's per-test record)."""
    if _imported and _mutant() == "stats":
        from mutmut.state import state  # noqa: PLC0415

        state()._stats.update(_imported)
