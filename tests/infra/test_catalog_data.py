"""catalogFile: checked by the server's loader before any resource, then a bucket, its object and a mount.

Runs the program of a copied checkout (tests/infra/test_checkouts.py) into which each test writes its
catalog files, since catalogFile is a path inside the repository.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import uuid
import weakref
from pathlib import Path
from typing import Any

import pulumi
import pytest
from catalog_infra.grpc_service import STARTUP_FAILURE_THRESHOLD, STARTUP_PERIOD_SECONDS

from service import catalog as checker
from service.catalog_file import CatalogError, load_catalog
from service.saved_catalog import SAVED_SUFFIX, holds, saved_catalog_path
from tests.catalog_files import GOOD, bad_files
from tests.infra.harness import (
    ACCOUNT,
    API,
    PROJECT,
    SERVICE,
    Deployment,
    Mocks,
    RecordingMonitor,
    recorded,
    run_program,
)
from tests.infra.test_checkouts import checkout

BUCKET = "gcp:storage/bucket:Bucket"
OBJECT = "gcp:storage/bucketObject:BucketObject"
BUCKET_IAM = "gcp:storage/bucketIAMMember:BucketIAMMember"
STORAGE_TYPES = (BUCKET, OBJECT, BUCKET_IAM)
BASE: dict[str, object] = {"gcp:project": "my-gcp-project-dev", "gcp:region": "us-central1"}
BUCKET_NAME = "my-gcp-project-dev-catalog-grpc-catalogs"
PRODUCTS = [GOOD, {**GOOD, "id": "b", "category": "toys"}]
BAD_FILES = bad_files()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout of the project whose data/ the tests write catalogs into."""
    at = checkout(tmp_path_factory.mktemp("checkout") / "catalog-grpc")
    (at / "data").mkdir()
    return at


def write(root: Path, content: bytes, name: str = "") -> str:
    """A catalog file in the checkout; its path relative to the root, as catalogFile takes it."""
    relative = f"data/{name or uuid.uuid4().hex}.json"
    (root / relative).write_bytes(content)
    return relative


def catalog_bytes(products: list[Any]) -> bytes:
    return json.dumps({"products": products}).encode()


def with_config(**overrides: object) -> dict[str, object]:
    return {**BASE, **{f"{PROJECT}:{key}": value for key, value in overrides.items()}}


def template(deployment: Deployment, service: str = "catalog-service") -> dict[str, Any]:
    found = [s for s in deployment.all(SERVICE) if s.name == service]
    assert len(found) == 1
    result: dict[str, Any] = found[0].inputs["template"]
    return result


def env_of(deployment: Deployment, service: str = "catalog-service") -> dict[str, str]:
    return {e["name"]: e["value"] for e in template(deployment, service)["containers"][0]["envs"]}


def catalog_object_of(deployment: Deployment) -> Any:
    """The catalog's object (the other one is the catalog saved ready to serve)."""
    (found,) = [o for o in deployment.all(OBJECT) if not o.inputs["name"].endswith(SAVED_SUFFIX)]
    return found


def test_a_catalog_file_is_a_private_versioned_bucket_an_object_a_grant_and_a_mount(root: Path) -> None:
    content = catalog_bytes(PRODUCTS)
    sha256 = hashlib.sha256(content).hexdigest()
    path = write(root, content)
    deployment = run_program(with_config(catalogFile=path, deletionProtection=False), root=root)

    bucket = deployment.one(BUCKET).inputs
    assert bucket["name"] == BUCKET_NAME
    assert bucket["project"] == "my-gcp-project-dev"
    assert bucket["location"] == "US-CENTRAL1"  # the home region
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["publicAccessPrevention"] == "enforced"
    assert bucket["versioning"] == {"enabled": True}
    assert bucket["forceDestroy"] is True  # deletion protection is off

    objects = {declared.inputs["name"]: declared for declared in deployment.all(OBJECT)}
    assert set(objects) == {f"catalogs/{sha256}.json", f"catalogs/{sha256}.json{SAVED_SUFFIX}"}
    catalog_object = objects[f"catalogs/{sha256}.json"]
    assert catalog_object.inputs["bucket"] == BUCKET_NAME
    assert catalog_object.inputs["name"] == f"catalogs/{sha256}.json"
    assert catalog_object.inputs["contentType"] == "application/json"
    # Replaced by a new catalog but kept in the bucket: the revision before still reads its own.
    assert catalog_object.retain_on_delete is True
    assert deployment.one(BUCKET).retain_on_delete is False
    # The path as the program (in infra/) reaches it, relative like the image's build context.
    source = catalog_object.inputs["source"].path
    assert not Path(source).is_absolute()
    assert (root / "infra" / source).read_bytes() == content

    # Beside it, the catalog saved ready to serve, where the server looks (saved_catalog_path): each
    # instance reads it rather than parsing the file and building its index. Kept when replaced, as the
    # catalog is.
    saved_object = objects[f"catalogs/{sha256}.json{SAVED_SUFFIX}"]
    assert saved_object.inputs["bucket"] == BUCKET_NAME
    assert saved_object.inputs["contentType"] == "application/octet-stream"
    assert saved_object.retain_on_delete is True
    saved_source = saved_object.inputs["source"].path
    assert not Path(saved_source).is_absolute()
    assert Path(saved_source).parts[:2] == ("..", "build")  # kept out of the catalog's own directory
    with (root / "infra" / saved_source).open("rb") as saved:
        assert holds(saved, bytes.fromhex(sha256))

    runtime = next(a for a in deployment.all(ACCOUNT) if a.name == "catalog-sa").inputs
    (grant,) = deployment.all(BUCKET_IAM)
    assert grant.inputs == {
        "bucket": BUCKET_NAME,
        "role": "roles/storage.objectViewer",
        "member": runtime["member"],
    }
    # The account reads that bucket and nothing else: its only other grants write its own telemetry.
    assert sorted(
        r.inputs["role"]
        for r in deployment.declared
        if "iAM" in r.type and r.inputs.get("member") == runtime["member"]
    ) == ["roles/cloudtrace.agent", "roles/monitoring.metricWriter"]

    service = template(deployment)
    assert service["executionEnvironment"] == "EXECUTION_ENVIRONMENT_GEN2"
    assert service["volumes"] == [{"name": "catalog", "gcs": {"bucket": BUCKET_NAME, "readOnly": True}}]
    assert service["containers"][0]["volumeMounts"] == [{"name": "catalog", "mountPath": "/mnt/catalog"}]
    env = env_of(deployment)
    assert env["CATALOG_PATH"] == f"/mnt/catalog/catalogs/{sha256}.json"
    assert env["CATALOG_SHA256"] == sha256
    # The server finds the saved catalog by the catalog's path: the object is where it looks.
    assert saved_catalog_path(env["CATALOG_PATH"]) == f"/mnt/catalog/{saved_object.inputs['name']}"
    # The server gives up on an unreadable catalog, with its reason, before the startup probe gives up.
    assert 0 < float(env["CATALOG_READ_TIMEOUT_SECONDS"]) < STARTUP_PERIOD_SECONDS * STARTUP_FAILURE_THRESHOLD

    # Created in order: the object and the grant exist before an instance mounts the bucket.
    service_urn = next(s for s in deployment.all(SERVICE)).dependencies
    assert catalog_object.urn in service_urn
    assert saved_object.urn in service_urn
    assert grant.urn in service_urn
    assert "storage.googleapis.com" in {api.inputs["service"] for api in deployment.all(API)}
    assert deployment.one(BUCKET).urn.endswith(
        "catalog:index:CatalogData$gcp:storage/bucket:Bucket::catalog-data-bucket"
    )
    assert deployment.outputs["catalogBucket"] == BUCKET_NAME
    assert deployment.outputs["catalogObject"] == f"catalogs/{sha256}.json"


def test_with_deletion_protection_the_bucket_is_not_force_destroyed(root: Path) -> None:
    path = write(root, catalog_bytes(PRODUCTS))
    deployment = run_program(with_config(catalogFile=path, deletionProtection=True), root=root)
    assert deployment.one(BUCKET).inputs["forceDestroy"] is False


def test_every_region_mounts_the_one_bucket_and_the_account_is_granted_once(root: Path) -> None:
    path = write(root, catalog_bytes(PRODUCTS))
    deployment = run_program(
        with_config(catalogFile=path, regions=["us-central1", "europe-west1"], minInstances=1), root=root
    )
    assert len(deployment.all(BUCKET)) == 1
    grant = deployment.one(BUCKET_IAM)
    for name in ("catalog-service", "catalog-europe-west1-service"):
        assert template(deployment, name)["volumes"] == template(deployment)["volumes"]
        assert env_of(deployment, name)["CATALOG_PATH"] == env_of(deployment)["CATALOG_PATH"]
    other = next(s for s in deployment.all(SERVICE) if s.name == "catalog-europe-west1-service")
    assert grant.urn in other.dependencies


def test_without_a_catalog_file_there_is_no_bucket_object_grant_volume_or_catalog_env(root: Path) -> None:
    deployment = run_program(with_config(catalogFile=""), root=root)
    assert [r for r in deployment.declared if r.type in STORAGE_TYPES] == []
    service = template(deployment)
    assert "volumes" not in service
    assert "executionEnvironment" not in service
    assert "volumeMounts" not in service["containers"][0]
    assert not [name for name in env_of(deployment) if name.startswith("CATALOG_")]
    assert "storage.googleapis.com" not in {api.inputs["service"] for api in deployment.all(API)}
    assert "catalogBucket" not in deployment.outputs


def test_the_revision_changes_when_the_files_bytes_do_and_only_then(root: Path) -> None:
    first = write(root, catalog_bytes(PRODUCTS))
    same_bytes = write(root, catalog_bytes(PRODUCTS))  # another name, the same content
    other_bytes = write(root, catalog_bytes([*PRODUCTS, {**GOOD, "id": "c"}]))
    runs = [
        run_program(with_config(catalogFile=path), root=root) for path in (first, same_bytes, other_bytes)
    ]
    templates = [template(run) for run in runs]
    objects = [catalog_object_of(run).inputs["name"] for run in runs]
    assert templates[0] == templates[1]
    assert objects[0] == objects[1]
    assert templates[2] != templates[0]
    # The revision's name is derived from its settings (revisions.py): a new catalog is a new name.
    assert templates[0]["revision"] == templates[1]["revision"] != templates[2]["revision"]
    assert objects[2] != objects[0]
    changed = {name for name, value in env_of(runs[2]).items() if env_of(runs[0]).get(name) != value}
    assert changed == {"CATALOG_PATH", "CATALOG_SHA256"}


def test_a_preview_parses_the_file_once_and_saves_only_a_catalog_not_saved_yet(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checking and saving share one parse; an unchanged catalog's saved file is kept as it is."""
    parsed: list[str] = []
    stores: list[weakref.ref[Any]] = []

    def counting_load(file: str, **options: Any) -> Any:
        parsed.append(os.path.normpath(file))
        store = load_catalog(file, **options)
        stores.append(weakref.ref(store))
        return store

    monkeypatch.setattr(checker, "load_catalog", counting_load)
    path = write(root, catalog_bytes([*PRODUCTS, {**GOOD, "id": "parsed-once"}]))
    first = run_program(with_config(catalogFile=path), root=root, preview=True)
    gc.collect()
    assert [store() for store in stores] == [None]  # saved, then let go: the program keeps no catalog
    (saved_object,) = [o for o in first.all(OBJECT) if o.inputs["name"].endswith(SAVED_SUFFIX)]
    saved = root / "infra" / saved_object.inputs["source"].path
    written = saved.stat().st_mtime_ns
    run_program(with_config(catalogFile=path), root=root, preview=True)
    assert [Path(file).parts[-2:] for file in parsed] == [Path(path).parts] * 2  # once a run
    assert saved.stat().st_mtime_ns == written


def refused(root: Path, **config: object) -> str:
    """The program's error for this config, which must come before any resource."""
    monitor = RecordingMonitor(Mocks())
    with pytest.raises(pulumi.RunError) as failure:
        run_program(with_config(**config), monitor=monitor, root=root)
    assert monitor.declared == []
    return str(failure.value)


@pytest.mark.parametrize(
    ("content", "expected"), [(c, e) for _, c, e in BAD_FILES], ids=[i for i, _, _ in BAD_FILES]
)
def test_a_bad_file_is_refused_with_the_servers_message_before_any_resource(
    root: Path, content: bytes, expected: str
) -> None:
    path = write(root, content)
    with pytest.raises(CatalogError) as loaded:
        load_catalog(root / path)
    servers_message = str(loaded.value).replace(str(root / path), path)
    message = refused(root, catalogFile=path)
    assert (
        message
        == f"invalid config {PROJECT}:catalogFile = {path!r}: the server would refuse it: {servers_message}"
    )
    assert expected in message


def test_a_missing_file_is_refused_naming_it(root: Path) -> None:
    message = refused(root, catalogFile="data/absent.json")
    assert f"{PROJECT}:catalogFile = 'data/absent.json'" in message
    assert "data/absent.json: cannot read: [Errno 2]" in message


@pytest.mark.parametrize(
    "path", ["/etc/catalog.json", "../catalog.json", "data/../../x.json", "data/", "data\\c.json"]
)
def test_a_path_outside_the_repository_is_refused(root: Path, path: str) -> None:
    message = refused(root, catalogFile=path)
    assert f"{PROJECT}:catalogFile = {path!r}" in message
    assert "relative to the repository root" in message


def test_memory_that_cannot_hold_the_catalog_is_refused_naming_both_numbers(root: Path) -> None:
    # 24 products of 5 MB each: few products, but 120 MB of text to hold and index.
    products = [{**GOOD, "id": str(i), "description": "heavy anvil " * 420_000} for i in range(24)]
    path = write(root, catalog_bytes(products))
    message = refused(root, catalogFile=path, memory="512Mi")
    assert f"invalid config {PROJECT}:memory = '512Mi': {path} (24 products, " in message
    needed = int(message.split("needs at least ", 1)[1].split("Mi", 1)[0])
    assert needed > 512
    assert "and 512Mi is 512Mi" in message
    deployment = run_program(with_config(catalogFile=path, memory=f"{needed}Mi"), root=root)
    assert template(deployment)["containers"][0]["resources"]["limits"]["memory"] == f"{needed}Mi"


def test_memory_below_the_second_generations_floor_is_refused_with_a_catalog(root: Path) -> None:
    path = write(root, catalog_bytes(PRODUCTS))
    message = refused(root, catalogFile=path, memory="256Mi")
    assert f"{PROJECT}:memory = '256Mi'" in message
    assert "needs at least 512Mi, and 256Mi is 256Mi" in message
    assert "second generation" in message
    # Without a catalog file the first generation may run with less.
    assert run_program(with_config(memory="256Mi"), root=root).all(BUCKET) == []


def test_dev_ships_the_embedded_catalog_as_data() -> None:
    deployment = recorded("dev")
    embedded = Path(__file__).resolve().parents[2] / "service" / "data" / "products.json"
    sha256 = hashlib.sha256(embedded.read_bytes()).hexdigest()
    assert catalog_object_of(deployment).inputs["name"] == f"catalogs/{sha256}.json"
    assert deployment.one(BUCKET).inputs["forceDestroy"] is True
    assert recorded("prod").all(BUCKET) == []
