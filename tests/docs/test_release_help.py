"""The help of `python -m release` that docs/releases-notes.md shows is what the parser prints, word for word.

The help is regenerated from `build_parser()` at a fixed terminal width, so argparse wraps it the same on
every machine; a changed help text, metavar, group or command then fails here until the page is updated.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from release import cli
from tests.docs.markdown import REPO_ROOT, Page

PAGE = REPO_ROOT / "docs" / "releases-notes.md"
PROMPT = "$ python -m release --help"
# The width the page says it was printed at; argparse reads it from $COLUMNS (shutil.get_terminal_size).
COLUMNS = 110


def shown_help(page: Page) -> list[str]:
    """The lines under the page's `$ python -m release --help` prompt."""
    blocks = [
        block for block in page.code_blocks if block.language == "console" and block.lines[:1] == (PROMPT,)
    ]
    assert len(blocks) == 1, f"{page.name}: expected one console block opening with {PROMPT!r}"
    return list(blocks[0].lines[1:])


def printed_help(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(COLUMNS))
    return cli.build_parser().format_help().splitlines()


def differences(shown: list[str], printed: list[str]) -> list[str]:
    """The lines that differ, as a diff from the page's copy to the parser's."""
    return [
        line
        for line in difflib.unified_diff(shown, printed, "the page", "the parser", n=0, lineterm="")
        if not line.startswith("@@")
    ]


def test_the_page_shows_the_help_the_parser_prints(monkeypatch: pytest.MonkeyPatch) -> None:
    assert differences(shown_help(Page.read(PAGE)), printed_help(monkeypatch)) == []


def test_the_page_says_the_width_it_was_printed_at() -> None:
    assert f"{COLUMNS} columns wide" in PAGE.read_text(encoding="utf-8")


def test_a_word_changed_on_the_page_is_caught(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text = PAGE.read_text(encoding="utf-8")
    drifted = "wait for SERVING (default 60)"
    path = tmp_path / "releases-notes.md"
    path.write_text(text.replace("wait for SERVING (default 120)", drifted), encoding="utf-8")
    found = differences(shown_help(Page.read(path)), printed_help(monkeypatch))
    help_column = " " * 24  # where argparse starts an option's help on a line of its own
    assert found == [
        "--- the page",
        "+++ the parser",
        f"-{help_column}{drifted}",
        f"+{help_column}wait for SERVING (default 120)",
    ]


def test_another_width_wraps_differently(monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the width is fixed: at another one the same parser prints other lines."""
    at_width = printed_help(monkeypatch)
    monkeypatch.setenv("COLUMNS", "80")
    assert cli.build_parser().format_help().splitlines() != at_width
