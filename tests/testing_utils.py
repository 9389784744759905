"""Shared test helpers. Append new helpers at the end; several helpers edit this file.

Tiny models and tokenizers (no downloads) live in the package (igpo_env.scoring.tiny) so doctests and benchmarks can
use them too; they are re-exported here.
"""

from __future__ import annotations

from igpo_env.scoring.tiny import CHATML_JINJA, tiny_causal_lm, tiny_tokenizer

__all__ = ["CHATML_JINJA", "tiny_causal_lm", "tiny_tokenizer"]
