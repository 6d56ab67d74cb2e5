"""The commands the pages show work: every `make` target exists, each client call parses."""

from __future__ import annotations

import re

import pytest

from client.cli import parse_invocation
from tests.docs.markdown import REPO_ROOT, SHELL_OPERATORS, Page, pages, split_command

PAGES = pages()
_PYTHONS = {"python", "python3", ".venv/bin/python"}


def makefile_targets() -> set[str]:
    """The targets the Makefile defines (rules, not variable assignments or pattern rules)."""
    text = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    return {
        match[1]
        for match in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)\s*:(?!=)", text, re.MULTILINE)
        if not match[1].startswith(".")
    }


def _commands(page: Page) -> list[list[str]]:
    """Each simple command of the page's shell blocks and of its code spans, as shell words."""
    lines = [line for line in page.shell_commands() if "make" in line or "client" in line]
    spans = [span for span in page.code_spans() if span.startswith(("make ", "python -m client "))]
    commands: list[list[str]] = []
    for line in lines + spans:
        words: list[str] = []
        for word in split_command(line):
            if word in SHELL_OPERATORS:
                commands.append(words)
                words = []
            else:
                words.append(word)
        commands.append(words)
    return [command for command in commands if command]


def make_invocations(page: Page) -> list[list[str]]:
    """The targets of each `make ...` the page shows (variables such as PORT=9090 left out).

    Commands in shell blocks and code spans, and a backticked `make X` anywhere else (a tree's comments).
    """
    invocations = [
        [word for word in command[1:] if "=" not in word and not word.startswith("-")]
        for command in _commands(page)
        if command[0] == "make"
    ]
    invocations += [[match[1]] for match in re.finditer(r"`make ([a-z][\w-]*)", page.text)]
    return invocations


def client_invocations(page: Page) -> list[list[str]]:
    """The arguments of each `python -m client ...` the page shows; synopses (`[options]`, `...`) left out."""
    found: list[list[str]] = []
    for command in _commands(page):
        for index in range(len(command) - 2):
            if command[index] in _PYTHONS and command[index + 1 : index + 3] == ["-m", "client"]:
                argv = command[index + 3 :]
                if not any("[" in word or word == "..." or word.endswith("...") for word in argv):
                    found.append(argv)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_make_target_a_page_names_exists(page: Page) -> None:
    targets = makefile_targets()
    named = {target for invocation in make_invocations(page) for target in invocation}
    assert sorted(named - targets) == []


def test_the_pages_show_make_targets_at_all() -> None:
    assert ["run"] in make_invocations(PAGES[0])
    assert {"run", "test", "setup", "help"} <= makefile_targets()


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_client_example_parses_with_the_clients_parser(
    page: Page, capsys: pytest.CaptureFixture[str]
) -> None:
    refused: list[str] = []
    for argv in client_invocations(page):
        try:
            parse_invocation(argv, environ={})
        except SystemExit as exit_:
            if exit_.code != 0:  # --help exits 0
                refused.append(f"python -m client {' '.join(argv)}: {capsys.readouterr().err.strip()}")
    assert refused == []


def test_client_examples_are_found_in_blocks_spans_and_prompts() -> None:
    client_page = next(page for page in PAGES if page.name == "docs/client.md")
    invocations = client_invocations(client_page)
    assert ["--plaintext", "localhost:8080", "smoke"] in invocations  # a `$ ` line of a text block
    assert ["--stack", "dev", "health"] in invocations
    # the synopsis in the first line is not an example
    assert not any(argv[:1] == ["[options]"] for argv in invocations)
