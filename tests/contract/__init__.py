"""Tests of the rules several parts of the project share (contract/)."""
