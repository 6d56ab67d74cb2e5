"""docs/your-own-service.md lists each file importing the API: to edit, to delete, or following on its own."""

from __future__ import annotations

import ast
import shlex
import subprocess
from pathlib import PurePosixPath

from tests.docs.markdown import REPO_ROOT, Page

PAGE = Page.read(REPO_ROOT / "docs" / "your-own-service.md")
HEADING = "Every file that names the API"
# Names catalog/__init__.py derives from the service's descriptor: a file importing only these follows a new
# API without an edit.
DERIVED = {
    "SERVICE_NAME",
    "HEALTH_NAMES",
    "HEALTH_SERVICE_NAME",
    "HEALTH_CHECK_METHOD",
    "CATALOG_METHOD_PREFIX",
    "UNARY_METHODS",
}


def imports_of_the_api() -> dict[str, set[str]]:
    """Each hand-written file outside the tests that imports from `catalog`, and the names it imports."""
    listed = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    found: dict[str, set[str]] = {}
    for name in listed:
        if name.startswith(("tests/", "policy/tests/")) or "_pb2" in name or not (REPO_ROOT / name).exists():
            continue
        names: set[str] = set()
        for node in ast.walk(ast.parse((REPO_ROOT / name).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "catalog":
                names |= {alias.name for alias in node.names}
        if names:
            found[name] = names
    return found


def deleted_paths() -> list[str]:
    """The paths the page's `rm -r` command deletes (step 6)."""
    (command,) = [line for line in PAGE.shell_commands() if line.startswith("rm -r ")]
    return shlex.split(command)[2:]


def is_deleted(name: str) -> bool:
    return any(PurePosixPath(name).is_relative_to(path) for path in deleted_paths())


def listed(column: str) -> set[str]:
    """The files of the table, under HEADING, whose second column is headed `column`."""
    (table,) = [t for t in PAGE.tables() if t.heading == HEADING and t.header[1].lower() == column]
    return {row[0].strip("`") for row in table.rows}


def test_the_files_to_edit_are_those_kept_that_import_more_than_the_derived_names() -> None:
    expected = {
        name for name, names in imports_of_the_api().items() if names - DERIVED and not is_deleted(name)
    }
    assert listed("what names the catalog api") == expected


def test_the_files_to_delete_are_those_the_command_deletes() -> None:
    expected = {name for name in imports_of_the_api() if is_deleted(name)}
    assert listed("what it is") == expected


def test_the_files_that_follow_import_only_derived_names() -> None:
    expected = {
        name for name, names in imports_of_the_api().items() if not names - DERIVED and not is_deleted(name)
    }
    assert listed("uses") == expected


def test_the_deleted_paths_exist() -> None:
    assert [path for path in deleted_paths() if not (REPO_ROOT / path).exists()] == []


def test_the_page_counts_the_files_it_lists() -> None:
    edits = len(listed("what names the catalog api"))
    deletes = len(listed("what it is"))
    assert f"another API means editing {edits} files and deleting {deletes}" in PAGE.text
