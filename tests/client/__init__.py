"""Tests of the command-line client (client/), against real servers started by the tests."""
