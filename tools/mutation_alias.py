"""Under `make mutation`, import the program's and the policy pack's packages from their mutated copies.

Tests import the Pulumi program's package as `catalog_infra` (installed from infra/, on Pulumi's path) and
the pack's as `catalog_policy` (the pack runs from policy/). mutmut names a mutant after the file's path from
the repository root (`infra.catalog_infra.revisions....`) and activates it only in a module of that name, so
each top-level name is served as the module found under its folder: one module object, named as mutmut
expects. Loaded with `-p tools.mutation_alias`, before any test imports either package.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

# Import name -> the folder that holds it, from the repository root.
FOLDERS = {"catalog_infra": "infra", "catalog_policy": "policy"}


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
