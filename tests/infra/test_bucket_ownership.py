"""What the program writes into a bucket leaves every object it did not write as it was.

A release uploads the catalog into the stack's bucket; an operator may keep other files there, earlier
releases left their catalogs (the revisions before still read them), and the CI state bucket holds Pulumi's
state, which the program never writes. These start each bucket from objects the program does not own,
apply what it declares (objects written by name, bucket settings that act on objects), and check them.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pulumi
import pytest

from service.saved_catalog import SAVED_SUFFIX, holds
from tests.infra.harness import INFRA_DIR, PROJECT, Declared, Deployment, recorded, stack_config

BUCKET = "gcp:storage/bucket:Bucket"
OBJECT = "gcp:storage/bucketObject:BucketObject"
# Configurations that declare buckets: dev (its catalog file), dev with the CI state bucket too, prod with a
# catalog file and deletion protection.
CONFIGS: dict[str, tuple[str, dict[str, object]]] = {
    "dev": ("dev", {}),
    "dev-ci-state": ("dev", {"ciStateBackend": True}),
    "prod-catalog-file": ("prod", {"catalogFile": "service/data/products.json"}),
}
# What others keep in a bucket: an earlier release's catalog, an operator's file, Pulumi's state.
OTHERS = {
    "catalogs/" + "0" * 64 + ".json": b'{"products": []}',
    "notes/operator.txt": b"restored by hand on Tuesday",
    ".pulumi/stacks/catalog-grpc/dev.json": b'{"version": 3}',
}


def deploy(name: str) -> Deployment:
    stack, overrides = CONFIGS[name]
    return recorded(
        stack, config={**stack_config(stack), **{f"{PROJECT}:{k}": v for k, v in overrides.items()}}
    )


def content(declared: Declared) -> bytes:
    """The bytes an object resource uploads: its file, as the program (in infra/) names it."""
    source = declared.inputs["source"]
    assert isinstance(source, pulumi.FileAsset)
    return (INFRA_DIR / Path(source.path)).read_bytes()


def written(deployment: Deployment) -> dict[str, dict[str, bytes]]:
    """Each bucket's objects after the program's uploads, each bucket starting with OTHERS."""
    buckets = {bucket.inputs["name"]: dict(OTHERS) for bucket in deployment.all(BUCKET)}
    for declared in deployment.all(OBJECT):
        buckets[declared.inputs["bucket"]][declared.inputs["name"]] = content(declared)
    return buckets


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_objects_the_program_did_not_write_are_still_there_unchanged(name: str) -> None:
    buckets = written(deploy(name))
    assert buckets
    for objects in buckets.values():
        assert {key: objects[key] for key in OTHERS} == OTHERS


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_each_object_is_named_by_its_content_and_kept_when_replaced(name: str) -> None:
    """By SHA-256, an upload can only land on the same bytes; kept, the revision before still reads it."""
    objects = {declared.inputs["name"]: declared for declared in deploy(name).all(OBJECT)}
    assert objects
    for key, declared in objects.items():
        if key.endswith(SAVED_SUFFIX):  # a catalog saved to serve: by that catalog's name and its format
            catalog = content(objects[key.removesuffix(SAVED_SUFFIX)])
            assert holds(io.BytesIO(content(declared)), hashlib.sha256(catalog).digest())
        else:
            assert key == f"catalogs/{hashlib.sha256(content(declared)).hexdigest()}.json"
        assert declared.retain_on_delete


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_no_bucket_setting_deletes_or_rewrites_objects(name: str) -> None:
    """A lifecycle rule would delete objects others wrote; ACLs are off (uniform access), IAM decides."""
    for bucket in deploy(name).all(BUCKET):
        assert "lifecycleRules" not in bucket.inputs, bucket.name
        assert "retentionPolicy" not in bucket.inputs, bucket.name
        assert bucket.inputs["uniformBucketLevelAccess"] is True
        assert bucket.inputs["versioning"] == {"enabled": True}  # an overwritten object can be restored


def test_the_state_bucket_is_never_emptied_by_a_destroy() -> None:
    """It holds Pulumi's state, which the program does not write: a destroy must not take it."""
    (state,) = [b for b in deploy("dev-ci-state").all(BUCKET) if b.inputs["name"].endswith("-pulumi-state")]
    assert state.inputs["forceDestroy"] is False


@pytest.mark.parametrize(("name", "force"), [("dev", True), ("prod-catalog-file", False)])
def test_the_catalog_bucket_goes_with_its_objects_only_where_the_stack_may_be_deleted(
    name: str, force: bool
) -> None:
    (catalogs,) = [b for b in deploy(name).all(BUCKET) if b.inputs["name"].endswith("-catalogs")]
    assert catalogs.inputs["forceDestroy"] is force
