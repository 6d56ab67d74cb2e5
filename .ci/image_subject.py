"""The attestation subject of a deploy: the stack output `image` split into registry, name and digest.

Usage: python .ci/image_subject.py IMAGE STACK_FILE, after `pulumi up`; prints GitHub step outputs
(`key=value` lines). `built` is false when the stack deploys a prebuilt `image` from its config: this
workflow did not build that image, so it must not attest that it did.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

# REGISTRY/PATH[:TAG]@sha256:HEX, as pulumi-docker-build's `ref` (and the `image` config) spell it.
REFERENCE = re.compile(r"(?P<name>[a-z0-9][^@\s]*)@(?P<digest>sha256:[0-9a-f]{64})")


def subject(image: str, stack_file: Path) -> dict[str, str]:
    """The step outputs for one deploy; ValueError names what is wrong with `image` or the stack file."""
    match = REFERENCE.fullmatch(image)
    if match is None:
        raise ValueError(f"stack output `image` is {image!r}; expected REGISTRY/PATH@sha256:<64 hex digits>")
    name = match["name"]
    registry, slash, path = name.partition("/")
    if not slash or "." not in registry:
        raise ValueError(f"stack output `image` is {image!r}; its name does not start with a registry host")
    # The tag is on the last path segment; a colon in the host would be a port.
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        name = name[: -len(last)] + last.split(":", 1)[0]
    return {
        "built": "false" if _prebuilt_image(stack_file) else "true",
        "registry": registry,
        "name": name,
        "digest": match["digest"],
    }


def _prebuilt_image(stack_file: Path) -> bool:
    """Whether the stack's config names an image to deploy as is (the program then builds nothing)."""
    project = yaml.safe_load((stack_file.parent / "Pulumi.yaml").read_text())["name"]
    config = (yaml.safe_load(stack_file.read_text()) or {}).get("config") or {}
    return bool(config.get(f"{project}:image"))


def main(argv: list[str]) -> int:
    """Print the outputs, or the reason there are none (exit 2 for usage, 1 for a bad value)."""
    if len(argv) != 2:
        print("usage: image_subject.py IMAGE STACK_FILE", file=sys.stderr)
        return 2
    try:
        outputs = subject(argv[0], Path(argv[1]))
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for key, value in outputs.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
