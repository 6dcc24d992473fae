"""Benchmarks: their figures are asserted nowhere (the suite runs only ``python -m benchmarks.window --smoke``).

Run: ``python -m benchmarks.window``."""
