"""docs/your-own-service.md lists each file that imports the API: to edit, or following on its own."""

from __future__ import annotations

import ast
import subprocess

from tests.docs.markdown import REPO_ROOT, Page

PAGE = Page.read(REPO_ROOT / "docs" / "your-own-service.md")
# Names catalog/__init__.py derives from the service's descriptor: a file importing only these follows a new
# API without an edit.
DERIVED = {
    "SERVICE_NAME",
    "HEALTH_NAMES",
    "HEALTH_SERVICE_NAME",
    "HEALTH_CHECK_METHOD",
    "CATALOG_METHOD_PREFIX",
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


def listed(heading_prefix: str) -> set[str]:
    tables = [table for table in PAGE.tables() if table.heading == "Every file that names the API"]
    column = {"Files to edit": "what names the catalog api", "Files that follow": "uses"}[heading_prefix]
    (table,) = [table for table in tables if table.header[1].lower() == column]
    return {row[0].strip("`") for row in table.rows}


def test_the_files_to_edit_are_those_that_import_more_than_the_derived_names() -> None:
    expected = {name for name, names in imports_of_the_api().items() if names - DERIVED}
    assert listed("Files to edit") == expected


def test_the_files_that_follow_import_only_derived_names() -> None:
    expected = {name for name, names in imports_of_the_api().items() if not names - DERIVED}
    assert listed("Files that follow") == expected


def test_the_page_counts_the_files_it_lists() -> None:
    edits = listed("Files to edit")
    without_bench = {name for name in edits if not name.startswith("bench/")}
    assert f"editing {len(without_bench)} files ({len(edits)} with the benchmark)" in PAGE.text
