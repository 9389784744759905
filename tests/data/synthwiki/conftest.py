"""Shared fixtures for the SynthWiki tests: one small world built once per session."""

from __future__ import annotations

import pytest

from igpo_env.data.synthwiki import build_world

SMALL_PASSAGES = 1000


@pytest.fixture(scope="session")
def small_world(tmp_path_factory):
    """A 1000-passage world (built in ~0.1 s)."""
    return build_world(tmp_path_factory.mktemp("synthwiki") / "w", passages=SMALL_PASSAGES, seed=0, verbose=False)
