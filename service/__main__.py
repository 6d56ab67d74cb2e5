"""Entry point: read the environment, then serve (service.server.serve) until SIGTERM or SIGINT.

Exit codes: 0 after a graceful shutdown, 1 when the environment or the catalog is invalid, or the catalog
cannot be read within CATALOG_READ_TIMEOUT_SECONDS (nothing served).
"""

from __future__ import annotations

import logging
import os
import sys

import uvloop

from service.config import ConfigError, Settings
from service.logs import configure_logging
from service.server import serve
from service.store import CatalogError

_log = logging.getLogger("service")


def main() -> int:
    """Run the server; return the process exit code."""
    configure_logging(logging.INFO)
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as error:
        _log.critical("invalid environment: %s", error)
        return 1
    logging.getLogger().setLevel(settings.log_level_number)
    try:
        # uvloop: the loop's own work per call (callbacks, futures, polling) is in C, not Python.
        uvloop.run(serve(settings))
    except CatalogError:  # CatalogUnreadableError too: serve() has logged why, before its shutdown lines
        return 1
    except (OSError, RuntimeError) as error:  # gRPC reports a port it cannot bind as RuntimeError
        _log.critical("cannot start: %s", error)
        return 1
    _log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
