"""The Pulumi program's own modules, imported the way every part imports them, so their rules are shared.

The program's components (`catalog_infra`, in infra/) are installed with the other packages
(pyproject.toml), so preflight imports them like any other package.
"""

from pathlib import Path

from catalog_infra import ci_identity, config

REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = ["REPO_ROOT", "ci_identity", "config"]
