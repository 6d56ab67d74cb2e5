"""Just enough Markdown for the docs checks: fenced code, headings and their GitHub anchors, links, tables.

Not a renderer: it reads the constructs these pages use (ATX headings, fenced code, pipe tables, inline
links), the way GitHub does for each of them, and nothing else.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^ {0,3}(?P<level>#{1,6})\s+(?P<text>.*?)\s*#*\s*$")
_CODE_SPAN = re.compile(r"(?P<ticks>`+)(?P<code>.+?)(?P=ticks)")
_LINK = re.compile(r"!?\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_SHELL_LANGUAGES = {"bash", "sh", "shell", "zsh"}  # an unlabelled block is a tree, a log, a filter
_PROMPT_LANGUAGES = {"console", "text"}  # only their `$ ` lines are commands
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "(", ")"}


@dataclass(frozen=True)
class CodeBlock:
    language: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    heading: str  # the text of the nearest heading above it
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def column(self, name: str) -> int | None:
        """The index of the column whose header is `name` (case-insensitive), if any."""
        lowered = [cell.lower() for cell in self.header]
        return lowered.index(name) if name in lowered else None


@dataclass
class Page:
    path: Path
    text: str
    code_blocks: list[CodeBlock] = field(default_factory=list)
    prose: list[str] = field(default_factory=list)  # every line outside fenced code, code lines blanked
    headings: list[tuple[int, str]] = field(default_factory=list)  # (level, rendered text)

    @classmethod
    def read(cls, path: Path) -> Page:
        page = cls(path, path.read_text(encoding="utf-8"))
        fence: str | None = None
        language = ""
        block: list[str] = []
        for line in page.text.splitlines():
            match = _FENCE.match(line)
            if fence is None and match:
                fence, language, block = match["fence"], match["info"].strip().split(" ")[0], []
                page.prose.append("")
            elif fence is not None:
                if match and match["fence"].startswith(fence) and not match["info"].strip():
                    page.code_blocks.append(CodeBlock(language.lower(), tuple(block)))
                    fence = None
                else:
                    block.append(line)
                page.prose.append("")
            else:
                page.prose.append(line)
                heading = _HEADING.match(line)
                if heading:
                    page.headings.append((len(heading["level"]), render_inline(heading["text"])))
        return page

    @property
    def name(self) -> str:
        return self.path.relative_to(REPO_ROOT).as_posix()

    @cached_property
    def anchors(self) -> set[str]:
        """The `#fragment`s GitHub gives this page's headings, duplicates numbered as it numbers them."""
        seen: dict[str, int] = {}
        anchors: set[str] = set()
        for _level, text in self.headings:
            slug = github_slug(text)
            count = seen.get(slug, 0)
            seen[slug] = count + 1
            anchors.add(slug if count == 0 else f"{slug}-{count}")
        return anchors

    def links(self) -> list[str]:
        """Every inline link target in the page's prose (not in code spans or code blocks)."""
        targets: list[str] = []
        for line in self.prose:
            targets.extend(match["target"] for match in _LINK.finditer(_CODE_SPAN.sub("", line)))
        return targets

    def code_spans(self) -> list[str]:
        """Every inline code span of the prose, tables included."""
        return [match["code"].strip() for line in self.prose for match in _CODE_SPAN.finditer(line)]

    def shell_commands(self) -> list[str]:
        """Each command line of the shell blocks (continuations joined), and `$ ` lines of console blocks."""
        commands: list[str] = []
        for block in self.code_blocks:
            if block.language in _SHELL_LANGUAGES:
                pending = ""
                for line in block.lines:
                    if line.rstrip().endswith("\\"):
                        pending += line.rstrip()[:-1] + " "
                        continue
                    commands.append(pending + line)
                    pending = ""
                if pending:
                    commands.append(pending)
            elif block.language in _PROMPT_LANGUAGES:
                commands.extend(line[2:] for line in block.lines if line.startswith("$ "))
        return commands

    def tables(self) -> list[Table]:
        """Every pipe table in the prose, with the heading it stands under."""
        tables: list[Table] = []
        heading = ""
        lines = [*self.prose, ""]
        index = 0
        while index < len(lines):
            line = lines[index].strip()
            match = _HEADING.match(lines[index])
            if match:
                heading = render_inline(match["text"])
            is_table = (
                line.startswith("|")
                and index + 1 < len(lines)
                and re.fullmatch(r"\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?", lines[index + 1].strip())
            )
            if not is_table:
                index += 1
                continue
            header = _cells(line)
            rows: list[tuple[str, ...]] = []
            index += 2
            while index < len(lines) and lines[index].strip().startswith("|"):
                rows.append(_cells(lines[index].strip()))
                index += 1
            tables.append(Table(heading, header, tuple(rows)))
        return tables

    def sentences(self) -> list[str]:
        """The prose outside tables, each paragraph on one line, split into sentences and `;` clauses."""
        paragraphs: list[str] = []
        current: list[str] = []
        for line in self.prose:
            if not line.strip() or line.strip().startswith("|") or _HEADING.match(line):
                if current:
                    paragraphs.append(" ".join(current))
                current = []
            else:
                current.append(line.strip())
        if current:
            paragraphs.append(" ".join(current))
        return [part for paragraph in paragraphs for part in re.split(r"(?<=[.;])\s+", paragraph)]


def _cells(line: str) -> tuple[str, ...]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return tuple(cell.strip().replace("\\|", "|") for cell in _CELL_SPLIT.split(inner))


def render_inline(text: str) -> str:
    """A heading's text as GitHub shows it: code spans and links reduced to their text, emphasis dropped."""
    text = _CODE_SPAN.sub(lambda match: match["code"], text)
    text = _LINK.sub(lambda match: match["text"], text)
    return re.sub(r"(\*\*|__|\*)", "", text)


def github_slug(text: str) -> str:
    """GitHub's heading anchor (github-slugger): lower case, punctuation dropped, each space a hyphen."""
    lowered = text.strip().lower()
    kept = "".join(char for char in lowered if char.isalnum() or char in " -_" or _is_mark(char))
    return kept.replace(" ", "-")


def _is_mark(char: str) -> bool:
    return unicodedata.category(char).startswith("M")


def first_code(cell: str) -> str | None:
    """The first code span of a table cell, which is where the tables put a literal value."""
    match = _CODE_SPAN.search(cell)
    return match["code"].strip() if match else None


def split_command(command: str) -> list[str]:
    """Shell words of one command line, comments dropped and operators as words of their own."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def pages() -> list[Page]:
    """The README and every page of docs/, as they are on disk when the tests run."""
    paths = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    return [Page.read(path) for path in paths]
