"""The catalog as data: the file checked by the server's own loader, then a bucket and the uploaded objects.

`check_catalog` runs before any resource is declared and refuses a file the server would refuse (with the
server's message) or a `memory` setting that cannot hold it. `CatalogData` is the bucket (one per stack,
in the home region), the catalog object in it and the catalog saved ready to serve beside it; every
region's GrpcService mounts it (`mount`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_gcp as gcp

from catalog_infra.config import ConfigError
from catalog_infra.grpc_service import CatalogMount
from contract.cloudrun import parse_memory
from service.catalog import CatalogSummary, load_checked
from service.catalog_file import CatalogError
from service.saved_catalog import SAVED_SUFFIX

REQUIRED_APIS = ("storage.googleapis.com",)
# Cloud Storage volumes run in Cloud Run's second generation execution environment (network file systems),
# whose smallest memory is 512 MiB (cloud.google.com/run/docs/about-execution-environments).
GEN2_MIN_MEMORY = 512 * 2**20


@dataclass(frozen=True)
class CatalogFiles:
    """A checked catalog file's summary, and where it is saved ready to serve: what CatalogData uploads."""

    summary: CatalogSummary
    saved: Path


def check_catalog(repo_root: Path, path: str, memory: str, build_dir: Path) -> CatalogFiles:
    """Check `path` (relative to `repo_root`) with the server's checker; raise ConfigError if it refuses.

    The checker is the one people and CI run (`python -m service.catalog check`), the server's own loader:
    a file the program ships is one the server starts with. Its errors name `path` as configured. The
    checked catalog is then saved ready to serve under `build_dir` (kept there: an unchanged catalog is not
    saved again by the next preview), from the same parse, and let go: at a million products it is
    hundreds of megabytes the rest of the program has no use for.
    """
    try:
        checked = load_checked(path, root=repo_root)
    except CatalogError as error:
        raise ConfigError(
            pulumi.Config().full_key("catalogFile"), path, f"the server would refuse it: {error}"
        ) from None
    _check_memory(checked.summary, memory)
    saved = checked.save(build_dir / "saved-catalogs" / f"{checked.summary.sha256}{SAVED_SUFFIX}")
    return CatalogFiles(checked.summary, Path(saved))


def _check_memory(catalog: CatalogSummary, memory: str) -> None:
    configured = parse_memory(memory)
    assert configured is not None, "config.load() has validated memory"
    needed = max(catalog.memory_needed, GEN2_MIN_MEMORY)
    if configured < needed:
        mib = 2**20
        raise ConfigError(
            pulumi.Config().full_key("memory"),
            memory,
            f"{catalog.path} ({catalog.products} products, {catalog.bytes} bytes) needs at least "
            f"{-(-needed // mib)}Mi, and {memory} is {configured // mib}Mi: set memory to at least "
            f"{-(-needed // mib)}Mi (measured cost per product with a margin, and Cloud Storage volumes "
            "need Cloud Run's second generation environment, 512Mi or more: docs/catalog.md)",
        )


@dataclass(frozen=True)
class CatalogDataArgs:
    """Where the catalog bucket lives and which checked file goes into it.

    `source` is the file as the program's working directory (infra/) reaches it, relative like the image's
    build context, so the state holds the same path in every checkout; `saved` likewise, the catalog saved
    ready to serve (`check_catalog`).
    """

    project: str
    region: str
    bucket_name: str
    catalog: CatalogSummary
    source: Path
    saved: Path
    deletion_protection: bool
    depends_on: Sequence[pulumi.Resource] = ()


class CatalogData(pulumi.ComponentResource):
    """The stack's catalog bucket (private, versioned), the catalog named by its SHA-256, and its index."""

    mount: CatalogMount
    bucket_name: pulumi.Output[str]
    object_name: pulumi.Output[str]
    saved_object_name: pulumi.Output[str]

    def __init__(self, name: str, args: CatalogDataArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("catalog:index:CatalogData", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            name=args.bucket_name,
            project=args.project,
            # Cloud Storage reports locations in upper case: given so, the state matches what it reads back.
            location=args.region.upper(),
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            # A catalog deleted or overwritten by hand can be restored from its noncurrent version.
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            # Where the stack may be deleted, its bucket goes too, with every catalog in it.
            force_destroy=not args.deletion_protection,
            opts=child,
        )
        # Named by content: a new file is a new object (and a new revision reads it), the same bytes are the
        # same object, whatever the file is called. Kept when replaced (retain_on_delete): the revision
        # before still reads its own catalog, so rolling traffic back to it works, also on new instances.
        sha256 = args.catalog.sha256
        object_name = f"catalogs/{sha256}.json"
        catalog_object = gcp.storage.BucketObject(
            f"{name}-object",
            bucket=bucket.name,
            name=object_name,
            source=pulumi.FileAsset(str(args.source)),
            content_type="application/json",
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        # The catalog saved ready to serve (its arrays and search index), where the server looks for it:
        # beside the file, under the same name with SAVED_SUFFIX. Each instance reads it as it starts (0.5 s
        # at a million products) instead of parsing the file and building the index (about 7 s of CPU, on
        # every start). A server that finds none, or one that is not its file's, loads the file itself: the
        # two objects need not change together.
        saved_object = gcp.storage.BucketObject(
            f"{name}-saved",
            bucket=bucket.name,
            name=object_name + SAVED_SUFFIX,
            source=pulumi.FileAsset(str(args.saved)),
            content_type="application/octet-stream",
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        self.bucket_name = bucket.name
        self.object_name = catalog_object.name
        self.saved_object_name = saved_object.name
        # Plain names, not outputs: they name the revision before anything exists. A service that mounts
        # this waits for the bucket and the object by depending on this component.
        self.mount = CatalogMount(bucket=args.bucket_name, object_name=object_name, sha256=sha256)
        self.register_outputs(
            {"bucket": self.bucket_name, "object": self.object_name, "savedCatalog": self.saved_object_name}
        )
