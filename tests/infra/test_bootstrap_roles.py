"""docs/deploying-notes.md's roles for the first `up` cover every kind of resource the program can declare.

A person holding exactly the listed roles must not fail midway: the stack with every optional part on
(domain, catalog file, CI identity, alert emails; pull-request revisions in a second run, as a domain
refuses them) is run, each resource type it declares is mapped to the
predefined role that creates it, and each such role must be in the page's table.
"""

from __future__ import annotations

import re

from preflight import permissions
from tests.docs.markdown import REPO_ROOT
from tests.infra.harness import PROJECT, reset_pulumi, run_program, stack_config

# The roles that create (or grant on) each resource type, from preflight's table of what `up` declares
# (the one definition `make preflight` checks a caller's permissions with); None: no Google API is called.
CREATED_BY: dict[str, tuple[str, ...] | None] = {row.type: row.roles or None for row in permissions.RESOURCES}


def documented_roles() -> set[str]:
    """The roles in the table of docs/deploying-notes.md's "Who runs the first `up`" section."""
    text = (REPO_ROOT / "docs" / "deploying-notes.md").read_text(encoding="utf-8")
    section = text.split("### Who runs the first `up`", 1)[1].split("\n#", 1)[0]
    return {match[1] for match in re.finditer(r"^\| `(roles/[A-Za-z.]+)`", section, re.MULTILINE)}


def test_the_first_up_roles_cover_every_resource_of_a_full_stack() -> None:
    config = {**stack_config("dev"), f"{PROJECT}:alertEmails": ["oncall@example.com"]}
    assert config[f"{PROJECT}:catalogFile"]
    assert config[f"{PROJECT}:githubRepository"]
    assert config[f"{PROJECT}:prRevisions"]
    # Pull-request revisions cannot be combined with a domain: the front door is a second run.
    behind_domain = {**config, f"{PROJECT}:domain": "catalog.example.com", f"{PROJECT}:prRevisions": False}
    declared = {resource.type for resource in run_program(config, stack="dev").declared}
    reset_pulumi()
    declared |= {resource.type for resource in run_program(behind_domain, stack="dev").declared}
    custom = {type_ for type_ in declared if not type_.startswith("catalog:")}
    unmapped = custom - CREATED_BY.keys()
    assert not unmapped, f"map these resource types to the role that creates them: {sorted(unmapped)}"
    needed = {role for type_ in custom for role in CREATED_BY[type_] or ()}
    missing = needed - documented_roles()
    assert not missing, f"docs/deploying-notes.md's first-up roles lack {sorted(missing)}"
