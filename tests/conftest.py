"""Pytest configuration for the test suite.

Its presence puts ``tests/`` on ``sys.path`` (pytest's default ``prepend`` import mode), so every test module can
``from testing_utils import ...``.
"""
