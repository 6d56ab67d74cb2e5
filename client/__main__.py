"""Entry point of `python -m client`: parse the command line, make the calls, exit with their status."""

import os

# gRPC's C core logs to stderr below ERROR (each failed TLS handshake, for one) unless told otherwise; the
# client reports a failure as one status line instead. GRPC_VERBOSITY=INFO brings the core's lines back.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")

from client.cli import main  # after the variable: gRPC reads it when it loads

raise SystemExit(main())
