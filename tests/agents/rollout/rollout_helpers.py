"""Helpers shared by the rollout tests: teacher-forced actions and an engine callable that replays them.

(Plain names, not fixtures: a nested ``conftest.py`` would clash with ``tests/conftest.py`` under
``--doctest-modules``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ACTIONS = {
    "tq0": ["<think>find it</think>\n<search> Ostrand capital </search>", "<answer> Karsel </answer>"],
    "tq1": ["<search> Ilka Maren </search>", "no tags here", "<answer> Maren </answer>"],
    "tq3": ["<search> river length </search>", "<search> kilometres </search>"],
}
"""Teacher-forced assistant turns per toy question (tq1 has an invalid turn, tq3 never answers)."""


def forced_engine(tok: Any, reference: Sequence[Any], qids: Sequence[str]) -> Any:
    """Return an engine callable ``fn(prompts, max_tokens)`` that replays :data:`ACTIONS`.

    An episode is recognised by the prompt of its reference rollout; junk after the end-of-turn token is returned
    too, for the loop to cut.
    """
    prompt_of = {tuple(r.prompt_ids): q for r, q in zip(reference, qids, strict=True)}
    calls = dict.fromkeys(qids, 0)

    def engine(prompts, max_tokens):
        outs = []
        for p in prompts:
            q = next(q for pre, q in prompt_of.items() if tuple(p[: len(pre)]) == pre)
            outs.append(tok.encode(ACTIONS[q][calls[q]], add_special_tokens=False) + [tok.eos_token_id, 7, 7])
            calls[q] += 1
        return outs, None

    return engine
