"""Run an image's command the way Cloud Run does: PORT in the environment, the image's USER, SIGTERM to stop.

`podman run` does not work on the development and CI machines; `buildah run --isolation chroot` does. It runs
on the host's network and passes the exit code through, but answers SIGTERM by killing its child, so the
signal goes to the server process itself, as Cloud Run's goes to the container's main process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from .images import QUICK_TIMEOUT, run

# Long enough for a cold interpreter on a busy CI machine; Cloud Run's startup probe allows far more.
FIND_PROCESS_TIMEOUT = 20.0
# Cloud Run's SIGTERM-to-SIGKILL window.
STOP_TIMEOUT = 10.0


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def image_command(image: str) -> list[str]:
    """The image's entry point and command, as Cloud Run would start them."""
    config = image_config(image)
    entrypoint, command = config.get("Entrypoint") or [], config.get("Cmd") or []
    assert isinstance(entrypoint, list), entrypoint
    assert isinstance(command, list), command
    return [str(arg) for arg in entrypoint + command]


def image_config(image: str) -> dict[str, object]:
    """The OCI config of an image (User, Env, Cmd, ...)."""
    result = run(["podman", "image", "inspect", "--format", "{{json .Config}}", image], timeout=QUICK_TIMEOUT)
    config = json.loads(result.stdout)
    assert isinstance(config, dict), result.stdout
    return config


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended while we looked
            continue
        # The command name may hold spaces and parentheses: the fields that follow it are after the last ")".
        ppid = int(text.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(stat.parent.name))
    return children


def _descendants(pid: int) -> list[int]:
    children = _children()
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class Container:
    """One working container running the image's command; always call `remove()` (see `started`)."""

    def __init__(self, image: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.image = image
        self.name = f"catalog-test-{uuid.uuid4().hex[:12]}"
        self.env = dict(env)
        self.stdout_path = log_dir / f"{self.name}.stdout"
        self.stderr_path = log_dir / f"{self.name}.stderr"
        self._process: subprocess.Popen[bytes] | None = None
        self._created = False

    def start(self, command: Sequence[str]) -> None:
        """Create the working container and start `command` in it, in the background."""
        run(["buildah", "from", "--pull=never", "--name", self.name, self.image], timeout=QUICK_TIMEOUT)
        self._created = True
        env_args = [arg for key, value in self.env.items() for arg in ("--env", f"{key}={value}")]
        run(["buildah", "config", *env_args, self.name], timeout=QUICK_TIMEOUT)
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self._process = subprocess.Popen(
                ["buildah", "run", "--isolation", "chroot", self.name, "--", *command],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The `buildah run` process; its exit code is the command's."""
        assert self._process is not None, "start() first"
        return self._process

    def server_pid(self) -> int:
        """The host pid of the Python process buildah started (buildah's own helpers are named otherwise)."""
        deadline = time.monotonic() + FIND_PROCESS_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the container exited with {self.process.returncode}\n{self.output()}")
            pythons = [
                pid for pid in _descendants(self.process.pid) if _command_name(pid).startswith("python")
            ]
            if pythons:
                return pythons[0]
            time.sleep(0.1)
        raise AssertionError(f"no python process under buildah run after {FIND_PROCESS_TIMEOUT:g} s")

    def _signal_descendants(self, signum: signal.Signals) -> None:
        for pid in _descendants(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def stdout(self) -> str:
        """What the command wrote to stdout so far."""
        return self.stdout_path.read_text(errors="replace")

    def output(self) -> str:
        """stdout and stderr so far, for failure messages."""
        stderr = self.stderr_path.read_text(errors="replace")
        return f"--- stdout ---\n{self.stdout()[-4000:]}\n--- stderr ---\n{stderr[-4000:]}"

    def remove(self) -> None:
        """Stop whatever still runs and delete the container; safe to call more than once."""
        if self._process is not None and self._process.poll() is None:
            # SIGTERM to the command first: killed, buildah run leaves its run directory behind.
            self._signal_descendants(signal.SIGTERM)
            try:
                self._process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal_descendants(signal.SIGKILL)
                self._process.kill()
                self._process.wait(timeout=QUICK_TIMEOUT)
        if self._created:
            subprocess.run(
                ["buildah", "rm", self.name], capture_output=True, timeout=QUICK_TIMEOUT, check=False
            )
            self._created = False
