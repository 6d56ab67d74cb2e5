"""Revision names and the traffic the program declares, so that `pulumi up` never moves traffic itself.

Cloud Run holds the truth about traffic: which revision is tagged `stable` and serves callers, which is the
`candidate` earning its share, which pull requests have `pr-N` revisions. `python -m release` changes it
through the Admin API. The program reads it (live.py) before declaring the service and declares it as it
is, adding only the tag `candidate` on the revision it deploys, at 0%. So a later `pulumi up` neither
reverts a completed promotion nor brings back a rolled-back revision, and one with nothing changed
declares what is already there. The tag names are the release tool's too (contract/release.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi._types import input_type_to_dict, is_input_type

from contract.release import CANDIDATE, STABLE

# Hex digits of the hash in a revision name: 40 bits, so two different builds sharing a name (which Cloud
# Run would refuse) is a one-in-a-trillion event, and "<serviceName>-<hash>" stays far under 63 characters.
HASH_LENGTH = 10


class LiveTrafficError(pulumi.RunError):
    """A live split the program will not declare over; the message says how to fix it."""


@dataclass(frozen=True)
class LiveRoute:
    """One traffic target as Cloud Run serves it: a revision, its percent, its tag ("" for none)."""

    revision: str
    percent: int
    tag: str = ""


@dataclass(frozen=True)
class LiveService:
    """What the program needs of the service as it runs now."""

    routes: tuple[LiveRoute, ...]
    latest_ready_revision: str
    # The release's own annotations (contract.release.DECISION_ANNOTATIONS) as they are live: declared as
    # found, so that the provider's update, which sends the whole annotation map it knows, keeps them.
    annotations: tuple[tuple[str, str], ...] = ()


def wire_form(value: Any) -> Any:
    """`value` as the engine receives it: input types as dicts of their Pulumi (camelCase) names.

    Unset (None) properties are left out and Outputs left in place. The SDK's own conversion
    (pulumi._types.input_type_to_dict), which the resource's serialization uses: the document is the very
    template the program sends.
    """
    if is_input_type(type(value)):
        return {key: wire_form(item) for key, item in input_type_to_dict(value).items()}
    if isinstance(value, Mapping):
        return {key: wire_form(item) for key, item in value.items() if item is not None}
    if isinstance(value, list | tuple):
        return [wire_form(item) for item in value]
    return value


# The service-level fields (wire names) whose change makes Cloud Run create a revision, or may: custom
# audiences do by Cloud Run's docs, the launch stage decides which template fields are taken; for ingress and
# the invoker check the docs do not say, and a new name costs at most one more revision.
REVISION_FIELDS = ("customAudiences", "ingress", "invokerIamDisabled", "launchStage")


def revision_material(template: Mapping[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """What names a revision: the template as sent (without the name itself) and REVISION_FIELDS.

    Unset fields (None) are left out; a field outside REVISION_FIELDS, or one missing, is a ValueError.
    """
    if set(fields) != set(REVISION_FIELDS):
        raise ValueError(f"revision fields {sorted(fields)}: expected {sorted(REVISION_FIELDS)}")
    return {
        "template": {key: value for key, value in template.items() if key != "revision"},
        **{key: value for key, value in fields.items() if value is not None},
    }


def _canonical(value: Any) -> Any:
    # Numbers cross the engine as doubles: 2 and 2.0 are the same setting.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: _canonical(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value


def revision_name(service_name: str, material: Mapping[str, Any]) -> str:
    """`<serviceName>-<hash>` of a revision_material: the same template and fields, the same name.

    An unchanged `pulumi up` declares the revision that already exists; any other template gets a new name,
    which Cloud Run requires of a new revision (409 "revision named ... with different configuration already
    exists" otherwise).
    """
    text = json.dumps(_canonical(material), sort_keys=True, separators=(",", ":"))
    return f"{service_name}-{hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]}"


def declared_revision(service_name: str, template: Any, fields: Mapping[str, Any]) -> pulumi.Output[str]:
    """The revision_name of `template` (a ServiceTemplateArgs, revision unset) and `fields`, once known."""
    material = revision_material(wire_form(template), fields)
    return pulumi.Output.from_input(material).apply(lambda known: revision_name(service_name, known))


def _tagged(routes: Sequence[LiveRoute], tag: str) -> LiveRoute | None:
    return next((route for route in routes if route.tag == tag), None)


def serving_routes(live: LiveService | None) -> tuple[LiveRoute, ...] | None:
    """The live split to build on (None for a first deploy); raises LiveTrafficError on one it cannot.

    A service deployed before releases existed (all traffic on one untagged revision) is adopted: that
    revision is tagged stable, keeping its traffic.
    """
    if live is None:
        return None
    if _tagged(live.routes, STABLE) is None:
        return tuple(_adopt(live))
    return live.routes


def declared_traffic(serving: Sequence[LiveRoute] | None, revision: str) -> list[LiveRoute]:
    """The split to declare with `revision` as the template's revision, over `serving_routes(...)`.

    First deploy: `revision` is stable with all traffic, and the candidate too (nothing else could
    serve). Later: the live split as it is, with the candidate tag on `revision` (at the share it already
    has if it is the candidate already, else at 0%); a replaced candidate that still has a share keeps it,
    untagged, until the release moves it.
    """
    if serving is None:
        return [LiveRoute(revision, 100, STABLE), LiveRoute(revision, 0, CANDIDATE)]
    routes = list(serving)
    candidate = _tagged(routes, CANDIDATE)
    if candidate is not None and candidate.revision == revision:
        return routes
    kept = [route for route in routes if route.tag != CANDIDATE]
    if candidate is not None and candidate.percent:
        kept.append(LiveRoute(candidate.revision, candidate.percent))
    return [*kept, LiveRoute(revision, 0, CANDIDATE)]


def _adopt(live: LiveService) -> list[LiveRoute]:
    """A service deployed before releases (all traffic on one revision, untagged): tag that one stable."""
    serving = [route for route in live.routes if route.percent]
    if len(serving) != 1 or not serving[0].revision:
        raise LiveTrafficError(
            f"the service's traffic is split {[(r.revision, r.percent, r.tag) for r in live.routes]} "
            f"with no revision tagged {STABLE!r}: tag the one callers should stay on, e.g. "
            "`gcloud run services update-traffic SERVICE --set-tags stable=REVISION`, then run `pulumi up`"
        )
    others = [route for route in live.routes if route.tag and not route.percent]
    return [LiveRoute(serving[0].revision, 100, STABLE), *others]
