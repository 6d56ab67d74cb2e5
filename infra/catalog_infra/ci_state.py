"""Pulumi state in a bucket of the project, with a Cloud KMS key as the secrets provider (ciStateBackend).

CI on any Pulumi plan, reached through the CI identity's accounts, with no stored key. The deployer reads and
writes the bucket and encrypts with the key; the previewer reads the bucket, may write only Pulumi's lock
files, and may only decrypt. docs/ci-cd.md says how a stack moves its state there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_gcp as gcp

REQUIRED_APIS = ("storage.googleapis.com", "cloudkms.googleapis.com")
# Where a self-managed backend keeps its lock files: the previewer writes only there.
LOCKS_PREFIX = ".pulumi/locks/"


@dataclass(frozen=True)
class CiStateArgs:
    """The bucket's and the key's place, and the CI accounts (emails) that use them."""

    project: str
    location: str
    bucket_name: str
    key_ring_name: str
    deployer_email: pulumi.Input[str]
    previewer_email: pulumi.Input[str]
    # Accounts that only read the stack's outputs (the pull-request deployer reads dev's release plan).
    reader_emails: Sequence[pulumi.Input[str]] = field(default_factory=tuple)
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class CiState(pulumi.ComponentResource):
    """A versioned, private state bucket and a secrets key, with the CI accounts' least grants on each."""

    backend_url: pulumi.Output[str]
    secrets_provider: pulumi.Output[str]

    def __init__(self, name: str, args: CiStateArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("catalog:index:CiState", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        bucket = gcp.storage.Bucket(
            f"{name}-bucket",
            name=args.bucket_name,
            project=args.project,
            location=args.location,
            uniform_bucket_level_access=True,
            public_access_prevention="enforced",
            # Every state file's history: a bad update can be rolled back from an older generation.
            versioning=gcp.storage.BucketVersioningArgs(enabled=True),
            force_destroy=False,
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=True)),
        )
        ring = gcp.kms.KeyRing(
            f"{name}-keyring",
            name=args.key_ring_name,
            project=args.project,
            location=args.location,
            opts=child,
        )
        key = gcp.kms.CryptoKey(
            f"{name}-key",
            name="pulumi-secrets",
            key_ring=ring.id,
            rotation_period="7776000s",  # 90 days; older versions stay able to decrypt
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(protect=True)),
        )
        deployer = pulumi.Output.concat("serviceAccount:", args.deployer_email)
        previewer = pulumi.Output.concat("serviceAccount:", args.previewer_email)
        gcp.storage.BucketIAMMember(
            f"{name}-deployer-objects",
            bucket=bucket.name,
            role="roles/storage.objectUser",
            member=deployer,
            opts=child,
        )
        gcp.storage.BucketIAMMember(
            f"{name}-previewer-objects",
            bucket=bucket.name,
            role="roles/storage.objectViewer",
            member=previewer,
            opts=child,
        )
        gcp.storage.BucketIAMMember(
            f"{name}-previewer-locks",
            bucket=bucket.name,
            role="roles/storage.objectUser",
            member=previewer,
            condition=gcp.storage.BucketIAMMemberConditionArgs(
                title="pulumi-locks-only",
                description="Previews take Pulumi's stack lock; they write nothing else.",
                expression=bucket.name.apply(
                    lambda name: (
                        f'resource.name.startsWith("projects/_/buckets/{name}/objects/{LOCKS_PREFIX}")'
                    )
                ),
            ),
            opts=child,
        )
        gcp.kms.CryptoKeyIAMMember(
            f"{name}-deployer-key",
            crypto_key_id=key.id,
            role="roles/cloudkms.cryptoKeyEncrypterDecrypter",
            member=deployer,
            opts=child,
        )
        gcp.kms.CryptoKeyIAMMember(
            f"{name}-previewer-key",
            crypto_key_id=key.id,
            role="roles/cloudkms.cryptoKeyDecrypter",
            member=previewer,
            opts=child,
        )
        for index, email in enumerate(args.reader_emails):
            reader = pulumi.Output.concat("serviceAccount:", email)
            gcp.storage.BucketIAMMember(
                f"{name}-reader-{index}-objects",
                bucket=bucket.name,
                role="roles/storage.objectViewer",
                member=reader,
                opts=child,
            )
            gcp.kms.CryptoKeyIAMMember(
                f"{name}-reader-{index}-key",
                crypto_key_id=key.id,
                role="roles/cloudkms.cryptoKeyDecrypter",
                member=reader,
                opts=child,
            )
        self.backend_url = pulumi.Output.concat("gs://", bucket.name)
        self.secrets_provider = pulumi.Output.concat("gcpkms://", key.id)
        self.register_outputs({"backendUrl": self.backend_url, "secretsProvider": self.secrets_provider})
