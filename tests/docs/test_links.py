"""Every relative link and `#anchor` between the pages resolves; the README is a front page to all of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.markdown import REPO_ROOT, Page, github_slug, pages, render_inline

PAGES = pages()
BY_PATH = {page.path: page for page in PAGES}
_EXTERNAL = re.compile(r"^([a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)


def _broken_links(page: Page) -> list[str]:
    broken: list[str] = []
    for target in page.links():
        if _EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.path.parent / path_part).resolve() if path_part else page.path
        if not resolved.exists():
            broken.append(f"{target}: no such file")
            continue
        if not anchor:
            continue
        linked = BY_PATH.get(resolved)
        if linked is None:
            linked = Page.read(resolved) if resolved.suffix == ".md" else None
        if linked is None:
            broken.append(f"{target}: an anchor into a file that is not Markdown")
        elif anchor not in linked.anchors:
            broken.append(f"{target}: no heading with anchor #{anchor} in {linked.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_relative_link_and_anchor_resolves(page: Page) -> None:
    assert _broken_links(page) == []


def test_the_readme_links_every_page_of_docs() -> None:
    readme = BY_PATH[REPO_ROOT / "README.md"]
    linked = {(REPO_ROOT / target.partition("#")[0]).resolve() for target in readme.links()}
    on_disk = {page.path for page in PAGES if page.path.parent == REPO_ROOT / "docs"}
    assert sorted(str(path) for path in on_disk - linked) == []


def test_the_readme_is_a_front_page() -> None:
    readme = BY_PATH[REPO_ROOT / "README.md"]
    lines = readme.text.splitlines()
    assert len(lines) < 150
    first_block = readme.code_blocks[0].lines
    # The first block is the first run alone (the tour test runs it); `make test` follows in prose.
    assert [line.split("#")[0].strip() for line in first_block] == ["make run"]
    assert "`make test`" in readme.text


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_every_page_opens_with_one_title(page: Page) -> None:
    assert page.text.startswith("# ")
    assert [level for level, _text in page.headings].count(1) == 1


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Server settings (environment)", "server-settings-environment"),
        ("CI/CD: what runs, how to set it up", "cicd-what-runs-how-to-set-it-up"),
        ("`make test` and `.ci/run`", "make-test-and-cirun"),
        ("Pagination (AIP-158)", "pagination-aip-158"),
        ("What `--json` prints", "what---json-prints"),
        ("snake_case names", "snake_case-names"),
        ("Größe", "größe"),
    ],
)
def test_anchors_follow_githubs_rules(heading: str, anchor: str) -> None:
    assert github_slug(render_inline(heading)) == anchor


def test_a_repeated_heading_gets_a_numbered_anchor(tmp_path: Path) -> None:
    path = tmp_path / "page.md"
    path.write_text("# Title\n\n## Config\n\n```bash\n# not a heading\n```\n\n## Config\n", encoding="utf-8")
    assert Page.read(path).anchors == {"title", "config", "config-1"}
