"""Tests of the benchmark: its catalog generator, h2load driver and case checks."""
