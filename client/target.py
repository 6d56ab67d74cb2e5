"""Where the client connects: `host:port` from the command line, or the `target` output of a Pulumi stack."""

import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

# Pulumi.yaml sits at the root of the checkout (or in infra/); `pulumi stack output` must run beside it to
# find the project's stacks, whatever directory the user runs the client from.
_CHECKOUT = Path(__file__).resolve().parent.parent
_STACK_LOOKUP_TIMEOUT_SECONDS = 60.0


class TargetError(Exception):
    """A target that cannot be used or found; the message is meant for the user."""


@dataclass(frozen=True)
class Target:
    """An address gRPC can dial, and the host that names the service (the ID token's audience)."""

    address: str
    host: str

    @property
    def is_loopback(self) -> bool:
        """Whether the host is this machine (where a token may travel in cleartext)."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def audience(self) -> str:
        """The audience Cloud Run expects in an ID token: the service's https URL."""
        return f"https://{self.host}"


def parse_target(text: str) -> Target:
    """Parse `host:port` (`[v6]:port` for IPv6); a Cloud Run URL `https://host` means `host:443`."""
    text = text.strip()
    if text.startswith("https://"):
        # The stack's `uri` output or a URL copied from the console: the edge serves gRPC on 443.
        parts = urlsplit(text)
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise TargetError(f"target {text!r}: a URL target must be just https://HOST")
        return Target(address=f"{_bracketed(parts.hostname)}:{parts.port or 443}", host=parts.hostname)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"target {text!r} is not host:port (like localhost:8080 or HOST.run.app:443)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise TargetError(f"target {text!r}: write an IPv6 address in brackets, as [::1]:8080")
    return Target(address=text, host=host)


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _project_dir() -> Path | None:
    for candidate in (_CHECKOUT, _CHECKOUT / "infra"):
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    return None


def target_from_stack(stack: str) -> Target:
    """Read the stack's `target` output with the pulumi CLI (`pulumi stack output target --stack NAME`)."""
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise TargetError(
            "--stack needs the pulumi CLI on PATH (https://www.pulumi.com/docs/install/); "
            "or pass the target as host:port"
        )
    command = [pulumi, "stack", "output", "target", "--stack", stack]
    shown = f"pulumi stack output target --stack {stack}"
    try:
        result = subprocess.run(
            command,
            cwd=_project_dir(),
            env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"},
            capture_output=True,
            text=True,
            timeout=_STACK_LOOKUP_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise TargetError(f"`{shown}` did not answer within {error.timeout:.0f} s") from error
    except OSError as error:
        raise TargetError(f"`{shown}` could not run: {error}") from error
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        raise TargetError(f"`{shown}` failed: {reason}")
    value = result.stdout.strip()
    if not value:
        raise TargetError(f"stack {stack!r} has no `target` output (`{shown}` printed nothing)")
    try:
        return parse_target(value)
    except TargetError as error:
        raise TargetError(f"stack {stack!r}: {error}") from error
