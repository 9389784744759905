"""Pytest configuration for the test suite.

Its presence puts ``tests/`` on ``sys.path`` (pytest's default ``prepend`` import mode), so every test module can
``from testing_utils import ...``.
"""

import pytest


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory):
    """The `tiny` embedded policy LM (agents.bootstrap), built once per test session in a tmp dir.

    Set IGPO_ENV_TINY_POLICY to an existing model dir to skip the build (local iteration only).
    """
    import os
    from pathlib import Path

    from agents.bootstrap import REPORT_FILE, bootstrap

    given = os.environ.get("IGPO_ENV_TINY_POLICY")
    if given and (Path(given) / REPORT_FILE).exists():
        return Path(given)
    return bootstrap(size="tiny", seed=0, verbose=False, out=tmp_path_factory.mktemp("tiny_policy") / "model")
