"""Benchmarks (not part of the test suite).  Run: ``python -m benchmarks.window``."""
