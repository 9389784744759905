"""Shared fixtures of the IGPO tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


def _save_tiny_policy(directory: Path) -> Path:
    from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer

    tok, model = tiny_tokenizer(), tiny_causal_lm(seed=1)
    model.config.eos_token_id, model.config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def save_tiny_policy() -> Callable[[Path], Path]:
    """Save the from-scratch tiny policy (tokenizer + LM, eos / pad set) as an HF model directory; return it."""
    return _save_tiny_policy
