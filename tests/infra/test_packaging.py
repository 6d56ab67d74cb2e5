"""The Pulumi program imports the other parts (pyproject.toml's packages), which the stack's venv installs."""

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = ROOT / "infra"
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


@pytest.mark.parametrize("package", PACKAGES)
def test_the_program_imports_each_package_from_its_own_directory(package: str) -> None:
    # Pulumi runs the program from infra/ with infra/ on sys.path, never the repository root: only the
    # editable install (`-e .` in requirements.txt) can make the packages importable there. -P keeps the
    # working directory off sys.path too, so the answer comes from site-packages alone.
    found = subprocess.run(
        [sys.executable, "-P", "-c", f"import {package}; print({package}.__file__)"],
        cwd=PROGRAM,
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == importlib.import_module(package).__file__
