"""Shared fixtures of the rollout tests: one torch thread, the toy retriever, the tiny tokenizer, forced actions."""

from __future__ import annotations

import pytest
from testing_utils import one_torch_thread

from igpo_env.data.toy import toy_corpus
from igpo_env.retrieval import BM25Retriever
from igpo_env.scoring.tiny import tiny_tokenizer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def retriever():
    return BM25Retriever.from_docs(toy_corpus())


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def actions():
    """Teacher-forced assistant turns per toy question (tq1 has an invalid turn, tq3 never answers)."""
    return {
        "tq0": ["<think>find it</think>\n<search> Ostrand capital </search>", "<answer> Karsel </answer>"],
        "tq1": ["<search> Ilka Maren </search>", "no tags here", "<answer> Maren </answer>"],
        "tq3": ["<search> river length </search>", "<search> kilometres </search>"],
    }


@pytest.fixture
def forced_engine(tok, actions):
    """Factory of engine callables that replay ``actions``: ``make(reference_rollouts, question_ids) -> fn``.

    An episode is recognised by its prompt (that of its reference rollout); junk after the end-of-turn token is
    returned too, for the loop to cut.
    """

    def make(reference, qids):
        prompt_of = {tuple(r.prompt_ids): q for r, q in zip(reference, qids, strict=True)}
        calls = dict.fromkeys(qids, 0)

        def engine(prompts, max_tokens):
            outs = []
            for p in prompts:
                q = next(q for pre, q in prompt_of.items() if tuple(p[: len(pre)]) == pre)
                outs.append(tok.encode(actions[q][calls[q]], add_special_tokens=False) + [tok.eos_token_id, 7, 7])
                calls[q] += 1
            return outs, None

        return engine

    return make
