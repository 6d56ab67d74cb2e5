"""The Pulumi program's own modules, imported the way the program imports them, so their rules are shared.

The program imports its components as `catalog_infra` from its `main` directory (infra/), which Pulumi puts
on the path when it runs it; preflight puts the same directory on the path, once, here.
"""

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROGRAM_DIR = REPO_ROOT / "infra"
if str(PROGRAM_DIR) not in sys.path:
    sys.path.append(str(PROGRAM_DIR))

from catalog_infra import ci_identity, config  # noqa: E402  (needs the path above)

__all__ = ["REPO_ROOT", "ci_identity", "config"]
