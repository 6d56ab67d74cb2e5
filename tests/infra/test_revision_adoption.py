"""Adopting a service deployed before releases (what is kept of its split, what a refusal tells), and names
that stay as earlier versions of the program gave them.

Beside test_revision_edges.py, which keeps every route the program does not own and renames a revision for
every setting on its own.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.harness import infra_module
from tests.infra.test_revision_edges import FIELD_VALUES, TEMPLATE

revisions: Any = infra_module("revisions")
LiveRoute = revisions.LiveRoute
LiveService = revisions.LiveService

SERVING = "catalog-grpc-0ld0ld0ld0"
OLDER = "catalog-grpc-01de401de4"
# The fix a refusal names, and the step after it, as an operator would copy them.
FIX = "`gcloud run services update-traffic SERVICE --set-tags stable=REVISION`, then run `pulumi up`"


def test_adopting_drops_an_untagged_route_without_traffic() -> None:
    # An untagged revision at 0% serves nothing and has no URL: declaring it would only clutter the split.
    live = LiveService(routes=(LiveRoute(SERVING, 100), LiveRoute(OLDER, 0)), latest_ready_revision=SERVING)
    assert revisions.serving_routes(live) == (LiveRoute(SERVING, 100, "stable"),)


def test_a_refused_split_ends_with_the_command_that_fixes_it() -> None:
    live = LiveService(routes=(LiveRoute(SERVING, 50), LiveRoute(OLDER, 50)), latest_ready_revision=SERVING)
    with pytest.raises(revisions.LiveTrafficError) as refused:
        revisions.serving_routes(live)
    assert str(refused.value).endswith(f"e.g. {FIX}")
    assert str(refused.value).startswith(
        f"the service's traffic is split [('{SERVING}', 50, ''), ('{OLDER}', 50, '')] with no revision"
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({}, "catalog-grpc-96dea94087"), (FIELD_VALUES, "catalog-grpc-e0e93f0717")],
    ids=["template only", "every service-level field set"],
)
def test_an_unchanged_template_keeps_the_name_earlier_versions_gave_it(
    fields: dict[str, object], expected: str
) -> None:
    # The live service runs the revision a previous `pulumi up` named. Hashing the same template another way
    # (other JSON separators, say) would name every unchanged stack's revision anew: a new revision on each
    # stack's next deploy, and a release for nothing. These names were computed once and are kept.
    material = revisions.revision_material(TEMPLATE, {**dict.fromkeys(revisions.REVISION_FIELDS), **fields})
    assert revisions.revision_name("catalog-grpc", material) == expected
