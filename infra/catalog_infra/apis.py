"""ProjectApis: the Google Cloud APIs a stack needs, enabled once for every component that uses them."""

from __future__ import annotations

from collections.abc import Iterable

import pulumi
import pulumi_gcp as gcp


class ProjectApis(pulumi.ComponentResource):
    """Enables each API once; depend on this component to wait for all of them."""

    services: dict[str, gcp.projects.Service]

    def __init__(
        self, name: str, project: str, apis: Iterable[str], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("catalog:index:ProjectApis", name, None, opts)
        self.services = {
            api: gcp.projects.Service(
                f"{name}-{api.removesuffix('.googleapis.com')}",
                project=project,
                service=api,
                # Other workloads in the project may use the same APIs: destroying this stack leaves them on.
                disable_on_destroy=False,
                opts=pulumi.ResourceOptions(parent=self),
            )
            for api in sorted(set(apis))
        }
        self.register_outputs({"services": sorted(self.services)})
