"""ContainerImage: the Artifact Registry repository and the one image every region's service runs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_docker_build as docker_build
import pulumi_gcp as gcp

REQUIRED_APIS = ("artifactregistry.googleapis.com",)
# Pull-request builds (pr-revision.yml) go to a package of their own, pr-REPO, beside the deployed builds in
# REPO: in one package they would count toward keep_images and push out the images that dev's stable and
# previous revisions run (a rollback or a scale from zero then finds no image). Not REPO-pr: cleanup
# policies match packages by name prefix, and REPO would match REPO-pr.
PR_PACKAGE_PREFIX = "pr-"
# A pull request's build is kept for a week after its push; older ones go, even while the pull request is
# open (its next push builds again). Keep policies win over the delete policy.
PR_IMAGE_RETENTION = f"{7 * 24 * 3600}s"

# Until the program served several regions, GrpcService (of the same name as this component) owned the
# repository and the image. The aliases name that old parent, so a stack deployed then keeps both: Pulumi
# moves them in its state instead of deleting the registry with its images and building anew.
FORMER_PARENT_TYPE = "catalog:index:GrpcService"


@dataclass(frozen=True)
class ImageBuild:
    """What to build when no prebuilt image is given: a Docker context and Dockerfile, pushed with a tag.

    pulumi-docker-build keeps both paths in the state and diffs them, and resolves relative ones against its
    working directory, which Pulumi sets to the program's (`main`). Pass them relative to that directory:
    absolute ones differ between checkouts, so every machine would see a changed image and roll a revision.
    """

    context: Path
    dockerfile: Path
    tag: str = "latest"


@dataclass(frozen=True)
class ContainerImageArgs:
    """Where the images live and which one to deploy.

    `image` is a prebuilt image pinned by digest (deployed as is, nothing built) or an ImageBuild, built and
    pushed to the repository. Cloud Run pulls from Artifact Registry across regions, so one repository and
    one build serve every region.
    """

    project: str
    region: str
    repository_id: str
    image: str | ImageBuild
    keep_images: int = 10
    depends_on: Sequence[pulumi.Resource] = ()


class ContainerImage(pulumi.ComponentResource):
    """The repository (with its cleanup policy) and, unless one is given, the image built into it."""

    image: pulumi.Output[str]
    # The repository's id, for grants on it that must wait for it (CiIdentity).
    repository_id: pulumi.Output[str]
    # Where builds go, REGION-docker.pkg.dev/PROJECT/REPO/REPO.
    image_repository: pulumi.Output[str]
    # Where pull-request builds go, REGION-docker.pkg.dev/PROJECT/REPO/pr-REPO (a package of their own).
    pr_image_repository: pulumi.Output[str]

    def __init__(
        self, name: str, args: ContainerImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("catalog:index:ContainerImage", name, None, opts)
        former_parent = pulumi.Alias(parent=pulumi.create_urn(name, FORMER_PARENT_TYPE))
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on), aliases=[former_parent])

        pr_package = f"{PR_PACKAGE_PREFIX}{args.repository_id}"
        repository = gcp.artifactregistry.Repository(
            f"{name}-repo",
            project=args.project,
            location=args.region,
            repository_id=args.repository_id,
            format="DOCKER",
            description=f"Images of the {args.repository_id} Cloud Run service",
            # Keep policies win over delete policies: everything goes but the newest keep_images versions of
            # the deployed package and the pull-request builds of the last week.
            cleanup_policy_dry_run=False,
            cleanup_policies=[
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-recent",
                    action="KEEP",
                    most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                        package_name_prefixes=[args.repository_id],
                        keep_count=args.keep_images,
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="keep-pull-requests",
                    action="KEEP",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(
                        package_name_prefixes=[pr_package],
                        newer_than=PR_IMAGE_RETENTION,
                    ),
                ),
                gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                    id="delete-older",
                    action="DELETE",
                    condition=gcp.artifactregistry.RepositoryCleanupPolicyConditionArgs(tag_state="ANY"),
                ),
            ],
            opts=child,
        )

        self.repository_id = repository.repository_id
        self.image_repository = repository.registry_uri.apply(lambda uri: f"{uri}/{args.repository_id}")
        self.pr_image_repository = repository.registry_uri.apply(lambda uri: f"{uri}/{pr_package}")
        if isinstance(args.image, ImageBuild):
            self.image = self._build(name, args, args.image, repository, child)
        else:
            self.image = pulumi.Output.from_input(args.image)
        self.register_outputs(
            {
                "image": self.image,
                "imageRepository": self.image_repository,
                "prImageRepository": self.pr_image_repository,
            }
        )

    def _build(
        self,
        name: str,
        args: ContainerImageArgs,
        build: ImageBuild,
        repository: gcp.artifactregistry.Repository,
        opts: pulumi.ResourceOptions,
    ) -> pulumi.Output[str]:
        """Build the image for Cloud Run's platform, push it, and return its reference with the digest."""
        access_token = gcp.organizations.get_client_config_output(
            opts=pulumi.InvokeOutputOptions(parent=self)
        ).access_token
        image = docker_build.Image(
            f"{name}-image",
            context=docker_build.BuildContextArgs(location=str(build.context)),
            dockerfile=docker_build.DockerfileArgs(location=str(build.dockerfile)),
            platforms=[docker_build.Platform.LINUX_AMD64],
            tags=[repository.registry_uri.apply(lambda uri: f"{uri}/{args.repository_id}:{build.tag}")],
            push=True,
            # No build on preview. pulumi-docker-build would build (without pushing) on every preview whose
            # inputs are known, i.e. on any stack after its first `up`, so each pull request would build the
            # image twice more (dev's preview and prod's) on top of test.yml's `image` job, which already
            # builds it on the real pinned base and starts it. Previews stay fast and show the plan; the
            # Dockerfile is checked once, by that job. `up` always builds.
            build_on_preview=False,
            registries=[
                docker_build.RegistryArgs(
                    address=f"{args.region}-docker.pkg.dev",
                    username="oauth2accesstoken",
                    password=pulumi.Output.secret(access_token),
                )
            ],
            opts=opts,
        )
        # `ref` is the pushed tag with its digest: a new build is a new revision, an unchanged one is not.
        return image.ref
