"""The Pulumi program imports the API's names from `catalog`, which the stack's virtualenv installs."""

import subprocess
import sys
from pathlib import Path

import catalog

PROGRAM = Path(__file__).resolve().parents[2] / "infra"


def test_the_program_imports_catalog_from_its_own_directory() -> None:
    # Pulumi runs the program from infra/ with infra/ on sys.path, never the repository root: only the
    # editable install (`-e .` in requirements.txt) can make `catalog` importable there. -P keeps the
    # working directory off sys.path too, so the answer comes from site-packages alone.
    found = subprocess.run(
        [sys.executable, "-P", "-c", "import catalog; print(catalog.__file__, catalog.SERVICE_NAME)"],
        cwd=PROGRAM,
        capture_output=True,
        text=True,
        check=False,
    )
    assert found.returncode == 0, found.stderr
    assert found.stdout.split() == [catalog.__file__, "catalog.ProductCatalog"]
