"""What an evaluated episode did (agents.rollout.episode_type) and the counts in the evaluation summary."""

from __future__ import annotations

import pytest

from agents.rollout import EPISODE_TYPES, Rollout, episode_type, summarize_rollouts
from igpo_env.types import QAExample

TWO_HOP = QAExample("q2", "In which country is X headquartered?", ["Peji"], "synthwiki-2hop", ["d1", "d2"])
NO_LABELS = QAExample("nq1", "Who?", ["Ann"], "nq")


def episode(actions, retrieved, *, em=0.0, terminated=True, qid="q2", source="synthwiki-2hop"):
    return Rollout(
        qid,
        source,
        [],
        terminated=terminated,
        action_types=list(actions),
        retrieved_doc_ids=[list(r) for r in retrieved],
        final_info={"em": em, "f1": em},
    )


@pytest.mark.parametrize(
    ("actions", "retrieved", "kwargs", "expected"),
    [
        (["search", "answer"], [["d1"], []], {"em": 1.0}, "correct"),  # exact match wins over everything
        (["search", "invalid", "answer"], [["d1"], [], []], {}, "invalid_turns"),
        (["search", "search"], [["d1"], ["d2"]], {"terminated": False}, "no_answer"),
        (["search", "search", "search", "answer"], [["d1"], ["d2"], ["d9"], []], {}, "extra_search"),
        (["search", "answer"], [["d1", "d2"], []], {}, "too_few_searches"),  # both documents, but one search
        (["search", "search", "answer"], [["d1"], ["d7"], []], {}, "retrieval_miss"),
        (["search", "search", "answer"], [["d2", "d5"], ["d1"], []], {}, "wrong_answer"),
    ],
)
def test_each_rule(actions, retrieved, kwargs, expected):
    assert episode_type(episode(actions, retrieved, **kwargs), TWO_HOP) == expected


def test_without_support_labels_a_wrong_answer_is_wrong_answer():
    r = episode(["search", "search", "search", "answer"], [["x"], ["y"], ["z"], []], qid="nq1", source="nq")
    assert episode_type(r, NO_LABELS) == episode_type(r) == "wrong_answer"
    assert episode_type(episode(["answer"], [[]], terminated=False), None) == "no_answer"


def test_summary_counts_types_overall_and_per_source():
    rollouts = [
        episode(["search", "search", "answer"], [["d1"], ["d2"], []], em=1.0),
        episode(["search", "answer"], [["d1"], []]),
        episode(["search", "search", "search", "answer"], [["d1"], ["d2"], ["d3"], []]),
        episode(["search", "answer"], [["a"], []], qid="nq1", source="nq"),
    ]
    examples = {"q2": TWO_HOP, "nq1": NO_LABELS}
    res = summarize_rollouts(rollouts, examples)
    assert list(res["episode_types"]) == list(EPISODE_TYPES)
    assert res["episode_types"] == {
        "correct": 1,
        "invalid_turns": 0,
        "no_answer": 0,
        "extra_search": 1,
        "too_few_searches": 1,
        "retrieval_miss": 0,
        "wrong_answer": 1,
    }
    assert res["episode_types_by_source"]["nq"]["wrong_answer"] == 1
    assert sum(res["episode_types_by_source"]["synthwiki-2hop"].values()) == 3
    assert "episode_types" not in summarize_rollouts(rollouts)  # counted only with the examples
