"""`python -m preflight --stack dev`: check a stack's project before `pulumi up` (docs/deploying.md)."""

import sys

from preflight.cli import main

sys.exit(main(sys.argv[1:]))
