"""Tests of the catalog server."""
