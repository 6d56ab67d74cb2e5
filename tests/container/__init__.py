"""Build the server image with buildah and run it the way Cloud Run does."""
