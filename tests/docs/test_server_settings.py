"""The server settings table lists exactly the variables `Settings.from_env` reads, with the same defaults.

The variables are found in the code (service/config.py's syntax tree), not in a list kept beside it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from service.config import Settings
from tests.docs.markdown import REPO_ROOT, Page, Table, first_code, pages

PAGES = pages()
CONFIG_MODULE = REPO_ROOT / "service" / "config.py"
HEADING = "Server settings (environment)"


def environment_reads(module: Path = CONFIG_MODULE) -> dict[str, str]:
    """Each variable `Settings.from_env` reads -> the Settings field it sets.

    A read is `env.get("NAME", ...)` or `_read(env, "NAME", ...)`, found in the keyword argument of the
    returned `cls(...)` that it feeds, directly or through a local variable.
    """
    tree = ast.parse(module.read_text(encoding="utf-8"))
    settings = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Settings")
    from_env = next(
        node for node in settings.body if isinstance(node, ast.FunctionDef) and node.name == "from_env"
    )
    assigned = {
        target.id: statement.value
        for statement in from_env.body
        if isinstance(statement, ast.Assign)
        for target in statement.targets
        if isinstance(target, ast.Name)
    }
    returned = next(statement.value for statement in from_env.body if isinstance(statement, ast.Return))
    assert isinstance(returned, ast.Call), "from_env should return cls(...)"
    reads: dict[str, str] = {}
    for keyword in returned.keywords:
        assert keyword.arg is not None
        expressions = [keyword.value]
        expressions += [
            assigned[node.id]
            for node in ast.walk(keyword.value)
            if isinstance(node, ast.Name) and node.id in assigned
        ]
        names = {name for expression in expressions for name in _names_read(expression)}
        assert len(names) <= 1, f"{keyword.arg} reads several variables: {names}"
        reads.update({name: keyword.arg for name in names})
    return reads


def _names_read(expression: ast.expr) -> list[str]:
    names: list[str] = []
    for node in ast.walk(expression):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        function = node.func
        is_get = isinstance(function, ast.Attribute) and function.attr == "get"
        is_read = isinstance(function, ast.Name) and function.id == "_read"
        name_argument = node.args[0] if is_get else node.args[1] if is_read and len(node.args) > 1 else None
        if isinstance(name_argument, ast.Constant) and isinstance(name_argument.value, str):
            names.append(name_argument.value)
    return names


def shown_default(value: object) -> str | None:
    """A Settings default as the table writes it in backticks; None when it has no value (unset)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def settings_tables(page: Page) -> list[Table]:
    """Tables of environment variables: a `variable` column first and a `default` column."""
    return [t for t in page.tables() if t.header[0].lower() == "variable" and t.column("default") is not None]


def _rows(table: Table) -> dict[str, str]:
    column = table.column("default")
    assert column is not None
    return {first_code(row[0]) or row[0]: row[column] for row in table.rows}


def _mismatches(table: Table) -> list[str]:
    reads = environment_reads()
    defaults = Settings()
    problems: list[str] = []
    for name, cell in _rows(table).items():
        if name not in reads:
            problems.append(f"{name}: Settings.from_env does not read it")
            continue
        expected = shown_default(getattr(defaults, reads[name]))
        written = first_code(cell)
        if expected is None and written is not None:
            problems.append(f"{name}: default {cell!r}, but the server's default is no value")
        elif expected is not None and written != expected:
            problems.append(f"{name}: default {cell!r}, the server's is {expected}")
    return problems


def test_the_server_settings_table_lists_exactly_what_the_server_reads() -> None:
    tables = [table for page in PAGES for table in settings_tables(page) if table.heading == HEADING]
    assert len(tables) == 1, f"one table under a {HEADING!r} heading, found {len(tables)}"
    assert sorted(_rows(tables[0])) == sorted(environment_reads())
    assert _mismatches(tables[0]) == []


def test_every_settings_table_agrees_with_the_server() -> None:
    tables = [table for page in PAGES for table in settings_tables(page)]
    assert [problem for table in tables for problem in _mismatches(table)] == []


def test_the_reads_are_found_in_the_code() -> None:
    reads = environment_reads()
    assert reads["PORT"] == "port"
    assert reads["CATALOG_PATH"] == "catalog_path"  # through a local variable
    assert reads["GOOGLE_CLOUD_PROJECT"] == "project_id"  # env.get, not _read
