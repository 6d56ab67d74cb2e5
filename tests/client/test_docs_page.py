"""docs/client.md's tables of options and commands say what the client's own tables declare."""

from __future__ import annotations

from client.cli import global_args
from client.commands import COMMANDS
from tests.docs.markdown import REPO_ROOT, Page, Table, first_code

PAGE = Page.read(REPO_ROOT / "docs" / "client.md")


def _table(heading: str) -> Table:
    (table,) = [table for table in PAGE.tables() if table.heading == heading]
    return table


def _first_cells(table: Table) -> list[str]:
    return [code for row in table.rows if (code := first_code(row[0])) is not None]


def test_the_pages_tables_list_every_global_option() -> None:
    documented = _first_cells(_table("Global options")) + _first_cells(_table("Where it connects"))
    options = [cell for cell in documented if cell.startswith("-")]
    assert sorted(options) == sorted(item.usage for item in global_args())


def test_each_documented_command_is_a_command_with_that_synopsis() -> None:
    # A command the page leaves out still has its --help; a row the client does not know is wrong.
    documented = _first_cells(_table("Commands"))
    assert documented
    assert sorted(set(documented) - {command.synopsis for command in COMMANDS}) == []
