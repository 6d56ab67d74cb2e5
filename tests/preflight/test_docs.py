"""docs/deploying.md starts with preflight, and its section names every constraint the table checks."""

from __future__ import annotations

import re

from preflight.policies import CONSTRAINTS
from tests.docs.markdown import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "deploying.md"


def preflight_section() -> str:
    sections = re.split(r"^## ", PAGE.read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert sections[1].startswith("Preflight: `make preflight`"), "the page's first section must be preflight"
    return sections[1]


def test_the_first_section_of_deploying_md_is_make_preflight() -> None:
    assert "make preflight STACK=dev" in preflight_section()


def test_the_section_names_every_constraint_preflight_checks_and_no_other() -> None:
    named = set(re.findall(r"`((?:iam|run|gcp)\.[A-Za-z.]+)`", preflight_section()))
    assert named == {constraint.name for constraint in CONSTRAINTS}
