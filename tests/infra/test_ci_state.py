"""ciStateBackend: a state bucket and a KMS secrets key for a self-managed backend, used by CI's accounts."""

from __future__ import annotations

import pulumi
import pytest

from tests.infra.harness import PROJECT, Mocks, RecordingMonitor, run_program, stack_config

BUCKET = "gcp:storage/bucket:Bucket"
BUCKET_MEMBER = "gcp:storage/bucketIAMMember:BucketIAMMember"
KEY = "gcp:kms/cryptoKey:CryptoKey"
KEY_MEMBER = "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember"
COMPONENT = "catalog:index:CiState"


def with_state(stack: str = "dev") -> dict[str, object]:
    return {**stack_config(stack), f"{PROJECT}:ciStateBackend": True}


def test_the_bucket_and_key_are_children_of_the_component_with_ci_grants() -> None:
    config = with_state()
    deployment = run_program(config)
    project = str(config["gcp:project"])
    (component,) = [r for r in deployment.all(COMPONENT)]
    bucket = next(r for r in deployment.all(BUCKET) if r.inputs["name"] == f"{project}-pulumi-state")
    assert bucket.parent == component.urn
    assert bucket.inputs["publicAccessPrevention"] == "enforced"
    assert bucket.inputs["uniformBucketLevelAccess"] is True
    assert bucket.inputs["versioning"] == {"enabled": True}
    key = deployment.one(KEY)
    assert key.parent == component.urn
    grants = {
        (r.inputs["role"], r.inputs["member"].split("@")[0], bool(r.inputs.get("condition")))
        for r in deployment.all(BUCKET_MEMBER)
        if r.parent == component.urn
    }
    deployer, previewer = "serviceAccount:catalog-grpc-deployer", "serviceAccount:catalog-grpc-preview"
    pr_deployer = "serviceAccount:catalog-grpc-pr-rev"  # reads dev's release plan (prRevisions)
    assert grants == {
        ("roles/storage.objectUser", deployer, False),
        ("roles/storage.objectViewer", previewer, False),
        ("roles/storage.objectUser", previewer, True),  # Pulumi's lock files only
        ("roles/storage.objectViewer", pr_deployer, False),
    }
    (locks,) = [r for r in deployment.all(BUCKET_MEMBER) if r.inputs.get("condition")]
    assert ".pulumi/locks/" in locks.inputs["condition"]["expression"]
    key_grants = {(r.inputs["role"], r.inputs["member"].split("@")[0]) for r in deployment.all(KEY_MEMBER)}
    assert key_grants == {
        ("roles/cloudkms.cryptoKeyEncrypterDecrypter", deployer),
        ("roles/cloudkms.cryptoKeyDecrypter", previewer),
        ("roles/cloudkms.cryptoKeyDecrypter", pr_deployer),
    }
    assert deployment.outputs["stateBackendUrl"] == f"gs://{project}-pulumi-state"
    assert deployment.outputs["secretsProvider"].startswith("gcpkms://")


def test_off_by_default() -> None:
    deployment = run_program(stack_config("dev"))
    assert deployment.all(COMPONENT) == []
    assert "stateBackendUrl" not in deployment.outputs


def test_it_needs_a_ci_identity() -> None:
    config = {k: v for k, v in with_state().items() if "githubRepository" not in k and "prRevisions" not in k}
    monitor = RecordingMonitor(Mocks())
    with pytest.raises(pulumi.RunError, match="needs githubRepository"):
        run_program(config, monitor=monitor)
    assert monitor.declared == []
