"""Entry point: read the environment, then serve (service.server.serve) until SIGTERM or SIGINT.

With more than one server process (SERVER_PROCESSES, or the container's CPU quota), this process starts
them (`python -m service worker`, each a whole server on the shared port) and waits for them
(service/processes.py).

Exit codes: 0 after a graceful shutdown, 1 when the environment or the catalog is invalid, or the catalog
cannot be read within CATALOG_READ_TIMEOUT_SECONDS (nothing served), 2 when the port is in use.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

import uvloop

from service.config import ConfigError, Settings
from service.logs import configure_logging
from service.processes import WORKER_ARGUMENT, PortInUseError, process_count, run_workers
from service.server import serve
from service.servicer import SERVED

EXIT_PORT_IN_USE = 2

_log = logging.getLogger("service")


def main(argv: list[str] | None = None) -> int:
    """Run the server, or its processes; return the process exit code."""
    arguments = sys.argv[1:] if argv is None else argv
    configure_logging(logging.INFO)
    if arguments not in ([], [WORKER_ARGUMENT]):
        _log.critical("usage: python -m service (the environment configures it: docs/configuration.md)")
        return 1
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as error:
        _log.critical("invalid environment: %s", error)
        return 1
    logging.getLogger().setLevel(settings.log_level_number)
    return _run(settings, worker=arguments == [WORKER_ARGUMENT])


def _run(settings: Settings, *, worker: bool) -> int:
    try:
        count = 1 if worker else process_count(settings)
        if count > 1:
            return run_workers(count, settings, os.environ)
        # uvloop: the loop's own work per call (callbacks, futures, polling) is in C, not Python.
        uvloop.run(serve(dataclasses.replace(settings, reuse_port=worker)))
    except PortInUseError as error:
        _log.critical("%s", error)
        return EXIT_PORT_IN_USE
    except (SERVED.invalid, SERVED.unreadable):  # serve() has logged why, before its shutdown lines
        return 1
    except (OSError, RuntimeError) as error:  # gRPC reports a port it cannot bind as RuntimeError
        _log.critical("cannot start: %s", error)
        return 1
    _log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
