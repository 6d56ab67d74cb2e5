"""Pull-request revisions: a build of a pull request as a no-traffic revision of the dev service, tagged pr-N.

Cloud Run makes revisions only from a service's template, so deploying one changes the template; this puts
the program's template back right after (its revision exists with the same configuration, so Cloud Run
makes no new one). The split, the stable and candidate tags, and Pulumi's state are left as they were.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from contract.release import pr_tag
from release import traffic
from release.cloudrun import CloudRun, copy_template, routes_of, tag_uri
from release.gates import Candidate, Gate
from release.rollout import Log, Outcome


def pr_revision_name(service: str, number: int, image: str) -> str:
    """`SERVICE-prN-HASH`: the service's name and a dash first (Cloud Run's rule); a hash per build."""
    digest = hashlib.sha256(image.encode()).hexdigest()[:8]
    return f"{service}-pr{number}-{digest}"


def deploy(run: CloudRun, number: int, image: str, gates: Sequence[Gate], *, log: Log = print) -> Outcome:
    """Deploy `image` as revision tagged pr-N with no traffic, restore the template, check it."""
    if "@sha256:" not in image:
        raise ValueError(f"image {image!r}: pass it by digest (REGISTRY/PATH@sha256:...)")
    tag = pr_tag(number)
    service = run.get()
    program_template = service.template
    template = copy_template(program_template)
    template.revision = pr_revision_name(run.ref.service, number, image)
    template.containers[0].image = image
    log(f"deploying {image} as {template.revision}, tag {tag}, no traffic")
    try:
        run.set_template(service, template, traffic.with_tag(routes_of(service), template.revision, tag))
    finally:
        # Even when the revision failed: the service's template is the program's again.
        service = run.set_template(run.get(), program_template)
    uri = tag_uri(service, tag)
    candidate = Candidate(service=run.ref.service, revision=template.revision, uri=uri, region=run.ref.region)
    for gate in gates:
        verdict = gate.check(candidate)
        if not verdict.passed:
            return Outcome(False, f"pull request {number}: check {gate.name} failed on {uri}: {verdict.line}")
        log(f"  {gate.name}: ok")
    return Outcome(True, uri)


def remove(run: CloudRun, number: int) -> Outcome:
    """Drop the pr-N tag (idempotent); the untagged revision serves nothing and costs nothing."""
    tag = pr_tag(number)
    service = run.get()
    routes = routes_of(service)
    if traffic.tagged(routes, tag) is None:
        return Outcome(True, f"no tag {tag} on {run.ref.service}: nothing to remove")
    run.set_traffic(service, traffic.without_tag(routes, tag))
    return Outcome(True, f"removed tag {tag} from {run.ref.service}")
