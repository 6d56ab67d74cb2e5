"""ProjectApis: the Google Cloud APIs a stack needs, enabled once for every component that uses them."""

from __future__ import annotations

from collections.abc import Iterable

import pulumi
import pulumi_gcp as gcp
import pulumiverse_time

# Enabling the others goes through this API, so it is always in the list (new projects have it on; the
# resource keeps it from being turned off under the stack).
SERVICE_USAGE_API = "serviceusage.googleapis.com"
# An API reports enabled before every Google endpoint serves it: resources created right after can fail with
# "API has not been used in project ... or it is disabled" (terraform-provider-google issues 1393 and 11020).
# The provider's guide waits with a time_sleep; a minute covers the usual propagation. The Sleep waits only
# when it is created, so only the first `up` (and one that adds an API) pays for it.
PROPAGATION_DELAY = "60s"


class ProjectApis(pulumi.ComponentResource):
    """Enables each API once, then waits for them to propagate; depend on this component to wait for both."""

    services: dict[str, gcp.projects.Service]
    propagated: pulumiverse_time.Sleep

    def __init__(
        self, name: str, project: str, apis: Iterable[str], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("catalog:index:ProjectApis", name, None, opts)
        names = sorted({SERVICE_USAGE_API, *apis})
        self.services = {
            api: gcp.projects.Service(
                f"{name}-{api.removesuffix('.googleapis.com')}",
                project=project,
                service=api,
                # Other workloads in the project may use the same APIs: destroying this stack leaves them on.
                disable_on_destroy=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in names
        }
        self.propagated = pulumiverse_time.Sleep(
            f"{name}-propagation",
            create_duration=PROPAGATION_DELAY,
            # A new API in the list replaces the Sleep, so that API gets its wait too.
            triggers={"project": project, "apis": ",".join(names)},
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(self.services.values())),
        )
        self.register_outputs({"services": names})
