"""Entry point: read the environment, start listening, load the catalog, serve until SIGTERM or SIGINT.

Exit codes: 0 after a graceful shutdown, 1 when the environment or the catalog is invalid (nothing served).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from types import FrameType

from service.config import ConfigError, Settings
from service.logs import configure_logging
from service.server import run_server
from service.store import CatalogError, load_catalog

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
        with run_server(settings) as running:

            def on_signal(signum: int, _frame: FrameType | None) -> None:
                running.shutdown_soon(signal.Signals(signum).name, settings.shutdown_grace_seconds)

            signal.signal(signal.SIGTERM, on_signal)
            signal.signal(signal.SIGINT, on_signal)
            # Listening already, so a probe gets NOT_SERVING rather than a refused connection meanwhile.
            try:
                store = load_catalog(settings.catalog_path)
            except CatalogError as error:
                _log.critical("invalid catalog, not serving: %s", error)
                return 1
            running.serve_catalog(store)
            running.wait_for_termination()
    except (OSError, RuntimeError) as error:  # gRPC reports a port it cannot bind as RuntimeError
        _log.critical("cannot start: %s", error)
        return 1
    _log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
