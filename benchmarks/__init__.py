"""Benchmarks: one script per question, ``python -m benchmarks.NAME [--quick] [--out DIR]``."""
