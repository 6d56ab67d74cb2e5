"""The config tables say what the program's table declares (config.py) and Pulumi.yaml's defaults.

docs/deploying-notes.md lists every key, other pages theirs: each with its type from the table, its default
from Pulumi.yaml, and (for a key with choices) every choice.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from catalog_infra.config import KEYS

from tests.docs.markdown import REPO_ROOT, Page, Table, first_code, pages

PAGES = pages()
DEPLOYING = REPO_ROOT / "docs" / "deploying-notes.md"
# Pulumi.yaml can give a provider key a value but not declare it; the program requires this one.
REQUIRED_PROVIDER_KEYS = {"gcp:project"}
# How a page may spell Pulumi.yaml's types.
_TYPE_NAMES = {"list of strings": "array", "string list": "array"}


def declared() -> dict[str, tuple[str | None, str | None]]:
    """Each key the program reads -> its type from the table (None for a provider key) and Pulumi.yaml's
    default as tables write it (None: no default)."""
    config: dict[str, Any] = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())["config"]
    keys: dict[str, tuple[str | None, str | None]] = {}
    for key in KEYS:
        declaration = config.get(key.name)
        if ":" in key.name:  # a provider key: a bare value in Pulumi.yaml, or none
            keys[key.name] = (None, shown(declaration) if declaration is not None else None)
        else:
            keys[key.name] = (key.type, shown((declaration or {}).get("default")))
    return keys


def shown(value: object) -> str | None:
    """A YAML value as the tables write it inside backticks."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value or '""'
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def config_tables(page: Page) -> list[Table]:
    """Tables of Pulumi config: a `key` column first and a `default` column."""
    return [table for table in page.tables() if table.header[0].lower() == "key" and table.column("default")]


def rows(table: Table) -> dict[str, tuple[str | None, str | None, str]]:
    """key -> (type as written, default in backticks, the default cell) for each row."""
    type_column = table.column("type")
    default_column = table.column("default")
    assert default_column is not None
    found: dict[str, tuple[str | None, str | None, str]] = {}
    for row in table.rows:
        key = first_code(row[0])
        assert key, f"a row of the table under {table.heading!r} names no key in backticks: {row}"
        type_ = row[type_column].lower() if type_column is not None else None
        type_ = _TYPE_NAMES.get(type_, type_) if type_ else None
        found[key] = (type_, first_code(row[default_column]), row[default_column])
    return found


def _mismatches(table_rows: dict[str, tuple[str | None, str | None, str]]) -> list[str]:
    keys = declared()
    problems: list[str] = []
    for key, (type_, default, cell) in table_rows.items():
        if key not in keys:
            problems.append(f"{key}: not declared in Pulumi.yaml")
            continue
        declared_type, declared_default = keys[key]
        if declared_type is not None and type_ is not None and type_ != declared_type:
            problems.append(f"{key}: type {type_}, Pulumi.yaml says {declared_type}")
        if declared_type is None and type_ not in (None, "string"):
            problems.append(f"{key}: a provider key is a string, not {type_}")
        if declared_default is None:
            if "required" not in cell:
                problems.append(f"{key}: has no default in Pulumi.yaml, so the table must say it is required")
        elif default is None or default.strip('"') != declared_default.strip('"'):
            problems.append(f"{key}: default {cell!r}, Pulumi.yaml says {declared_default}")
    return problems


def test_deploying_md_lists_exactly_the_keys_pulumi_yaml_declares_with_their_types_and_defaults() -> None:
    page = Page.read(DEPLOYING)
    tables = [table for table in config_tables(page) if table.heading == "Config"]
    assert tables, "docs/deploying-notes.md has no config table under its Config heading"
    listed: dict[str, tuple[str | None, str | None, str]] = {}
    for table in tables:
        listed.update(rows(table))
    assert sorted(listed) == sorted(declared())
    assert _mismatches(listed) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_config_table_agrees_with_pulumi_yaml(page: Page) -> None:
    problems = [problem for table in config_tables(page) for problem in _mismatches(rows(table))]
    assert problems == []


@pytest.mark.parametrize("key", [key for key in KEYS if key.choices], ids=lambda key: key.name)
def test_the_deploying_page_names_every_choice_of_a_key_that_has_choices(key: Any) -> None:
    (row,) = [
        row
        for table in config_tables(Page.read(DEPLOYING))
        for row in table.rows
        if first_code(row[0]) == key.name
    ]
    assert [choice for choice in key.choices if str(choice) and str(choice) not in row[-1]] == []


def test_the_tables_are_found_on_the_pages_that_have_them() -> None:
    names = {page.name for page in PAGES if config_tables(page)}
    assert {"docs/deploying-notes.md", "docs/front-door.md", "docs/observability.md"} <= names
