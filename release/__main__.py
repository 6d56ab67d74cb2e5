"""`python -m release`: see release/cli.py."""

import sys

from release.cli import main

sys.exit(main())
