"""Shared test helpers. Append new helpers at the end; several helpers edit this file.

Tiny models and tokenizers (no downloads) live in the package (igpo_env.scoring.tiny) so doctests and benchmarks can
use them too; they are re-exported here.
"""

from __future__ import annotations

from igpo_env.scoring.tiny import CHATML_JINJA, tiny_causal_lm, tiny_tokenizer

__all__ = ["CHATML_JINJA", "tiny_causal_lm", "tiny_tokenizer"]


def one_torch_thread():
    """Context manager: run torch on one thread (much faster than 2 on the shared 2-core CI box), then restore."""
    import contextlib

    import torch

    @contextlib.contextmanager
    def _ctx():
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    return _ctx()
