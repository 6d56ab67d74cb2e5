"""Tests of the API contract and its generated code."""
