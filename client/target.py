"""Where the client connects: `host:port` from the command line, or the `target` output of a Pulumi stack."""

import dataclasses
import ipaddress
import json
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
    """An address gRPC can dial, the host that names the service, and the audience its ID tokens need."""

    address: str
    host: str
    # The stack's `audience` output: a Cloud Run custom audience (a front door's https://DOMAIN, say).
    custom_audience: str | None = None

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
        """The audience Cloud Run expects in an ID token: the custom one, else the service's https URL."""
        return self.custom_audience or f"https://{self.host}"


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
    """Read the stack's `target` output, and its `audience` output if it has one, with the pulumi CLI.

    One `pulumi stack output --json --stack NAME` reads both (each call of the CLI takes a second or more).
    """
    pulumi = shutil.which("pulumi")
    if pulumi is None:
        raise TargetError(
            "--stack needs the pulumi CLI on PATH (https://www.pulumi.com/docs/install/); "
            "or pass the target as host:port"
        )
    command = [pulumi, "stack", "output", "--json", "--stack", stack]
    shown = f"pulumi stack output --json --stack {stack}"
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
    try:
        outputs = json.loads(result.stdout)
    except json.JSONDecodeError as error:
        raise TargetError(f"`{shown}` printed no JSON object: {error}") from error
    if not isinstance(outputs, dict):
        raise TargetError(f"`{shown}` printed no JSON object of outputs")
    value = outputs.get("target")
    if not isinstance(value, str) or not value.strip():
        raise TargetError(
            f"stack {stack!r} has no `target` output (a non-empty string); run `pulumi up` first"
        )
    audience = outputs.get("audience")
    if audience is not None and (not isinstance(audience, str) or not audience.strip()):
        raise TargetError(f"stack {stack!r}: its `audience` output {audience!r} is not a non-empty string")
    try:
        target = parse_target(value)
    except TargetError as error:
        raise TargetError(f"stack {stack!r}: {error}") from error
    return dataclasses.replace(target, custom_audience=None if audience is None else audience.strip())
