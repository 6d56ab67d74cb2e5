"""The stack outputs table of docs/deploying-notes.md lists exactly what infra/__main__.py exports."""

from __future__ import annotations

import ast

from tests.docs.markdown import REPO_ROOT, Page

PROGRAM = REPO_ROOT / "infra" / "__main__.py"


def exported_names() -> set[str]:
    """The first argument of every `pulumi.export(...)` call of the program, wherever it sits."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(PROGRAM.read_text(encoding="utf-8"))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "export"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "pulumi"
        ):
            first = node.args[0]
            assert isinstance(first, ast.Constant), f"line {node.lineno}: export name is not a literal"
            names.add(str(first.value))
    return names


def documented_names() -> list[str]:
    page = Page.read(REPO_ROOT / "docs" / "deploying-notes.md")
    (table,) = [table for table in page.tables() if table.heading == "Stack outputs"]
    column = table.column("output")
    assert column is not None
    return [row[column].strip("`") for row in table.rows]


def test_the_outputs_table_lists_every_export_once() -> None:
    documented = documented_names()
    assert len(documented) == len(set(documented))
    assert sorted(set(documented) ^ exported_names()) == []


def test_the_program_exports_are_found() -> None:
    assert {"target", "release", "workloadIdentityProvider"} <= exported_names()
