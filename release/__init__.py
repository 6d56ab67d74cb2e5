"""Safe releases on Cloud Run: a new revision earns its traffic in checked steps (docs/releases.md)."""
