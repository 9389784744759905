"""outcome, answer_in_context and search_cost on the toy corpus, with rewards worked by hand."""

import gymnasium as gym
import pytest

import igpo_env  # noqa: F401  (registers SearchQA-v0)
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.retrieval import BM25Retriever
from igpo_env.wrappers import AnswerInContextWrapper, OutcomeWrapper, SearchCostWrapper

RETRIEVER = BM25Retriever.from_docs(toy_corpus())


def base(**kw):
    return gym.make("SearchQA-v0", dataset=toy_qa(), retriever=RETRIEVER, **kw)


@pytest.mark.parametrize(
    ("metric", "expected", "name"),
    [(None, 0.8, "f1"), ("f1", 0.8, "f1"), ("em", 0.0, "em"), ("cover_em", 1.0, "cover_em")],
)
def test_outcome_metric(metric, expected, name):
    # tq1 gold: "Ilka Maren" / "Maren"; answer "Ilka Maren Dovia": F1 = 2 * (2/3 * 1) / (2/3 + 1) = 0.8, EM 0, cover 1
    env = OutcomeWrapper(base(), metric=metric)
    _, info = env.reset(options={"question_id": "tq1"})
    assert info["shaping"] == {"scheme": "outcome", "reward": 0.0, "parts": {}}
    _, r, *_, info = env.step("<search>Karsel founder</search>")
    assert r == 0.0 and info["shaping"]["parts"] == {}
    _, r, *_, info = env.step("no tags")
    assert r == -2.0 and info["shaping"]["reward"] == 0.0  # the env's format penalty is kept
    _, r, terminated, _, info = env.step("<answer>Ilka Maren Dovia</answer>")
    assert terminated and r == pytest.approx(expected) and info["outcome"] == pytest.approx(expected)
    assert info["shaping"] == {"scheme": "outcome", "reward": 0.0, "parts": {"metric": name, "outcome": r}}
    assert info["f1"] == pytest.approx(0.8) and info["em"] == 0.0  # the env's metric keys are untouched


def test_outcome_validation():
    with pytest.raises(ValueError, match="`metric` must be one of"):
        OutcomeWrapper(base(), metric="accuracy")


def test_answer_in_context_pays_once():
    env = AnswerInContextWrapper(base(top_k=1), bonus=0.3)
    _, info = env.reset(options={"question_id": "tq1"})  # gold: Ilka Maren / Maren
    assert info["shaping"]["parts"] == {"hit": False, "paid": False}
    steps = [
        ("<search>Ostrand country</search>", "t1", 0.0, False, False),  # Ostrand: no founder in the text
        ("<search>Karsel founded 1204</search>", "t2", 0.3, True, True),  # "... founded in 1204 by Ilka Maren."
        ("<search>Ilka Maren merchant</search>", "t3", 0.0, True, False),  # again: no second bonus
    ]
    for action, doc, reward, hit, paid in steps:
        _, r, *_, info = env.step(action)
        assert info["retrieved_doc_ids"] == [doc]
        assert r == pytest.approx(reward)
        assert info["shaping"] == {
            "scheme": "answer_in_context",
            "reward": reward,
            "parts": {"hit": hit, "paid": paid},
        }
    _, r, *_, info = env.step("<answer>Ilka Maren</answer>")
    assert r == 1.0 and info["shaping"]["parts"] == {"hit": False, "paid": False}
    env.reset(options={"question_id": "tq1"})  # a new episode pays again
    assert env.step("<search>Karsel founded 1204</search>")[1] == pytest.approx(0.3)


def test_answer_in_context_matches_normalized_aliases_only_in_search_results():
    env = AnswerInContextWrapper(base(top_k=1))
    env.reset(options={"question_id": "tq3"})  # gold: "412 kilometres" / "412 km"
    _, r, *_, info = env.step("412 kilometres")  # an invalid turn: its hint is not retrieved text
    assert r == -2.0 and info["shaping"]["parts"]["hit"] is False
    _, r, *_, info = env.step("<search>Velmora length</search>")  # t0: "The Velmora is 412 kilometres long"
    assert info["retrieved_doc_ids"] == ["t0"] and r == pytest.approx(0.1)


def test_answer_in_context_token_boundaries():
    env = AnswerInContextWrapper(base(top_k=1), normalization="igpo")
    env.reset(options={"question_id": "tq2"})  # gold: Karsel
    _, r, *_, info = env.step("<search>Tessa Brun director</search>")  # t5: "... born in Karsel in 1961"
    assert info["retrieved_doc_ids"] == ["t5"] and r == pytest.approx(0.1)


def test_answer_in_context_validation():
    with pytest.raises(ValueError, match="`bonus` must be a finite number >= 0"):
        AnswerInContextWrapper(base(), bonus=-0.1)
    with pytest.raises(ValueError, match="`normalization` must be one of"):
        AnswerInContextWrapper(base(), normalization="nfkc")


def test_search_cost():
    env = SearchCostWrapper(base(), cost=0.25)
    _, info = env.reset(options={"question_id": "tq0"})
    assert info["shaping"] == {"scheme": "search_cost", "reward": 0.0, "parts": {"searches": 0}}
    expected = [(-0.25, 1), (-2.0, 1), (-0.25, 2), (1.0, 2)]  # search, invalid, search, answer
    actions = ["<search>Ostrand</search>", "oops", "<search>Karsel</search>", "<answer>Karsel</answer>"]
    for action, (reward, searches) in zip(actions, expected, strict=True):
        _, r, *_, info = env.step(action)
        assert r == pytest.approx(reward) and info["shaping"]["parts"] == {"searches": searches}
    assert info["shaping"]["reward"] == 0.0
    env.reset(options={"question_id": "tq0"})
    assert env.step("<search>Ostrand</search>")[4]["shaping"]["parts"] == {"searches": 1}


def test_search_cost_validation():
    with pytest.raises(ValueError, match="`cost` must be a finite number >= 0, got -1"):
        SearchCostWrapper(base(), cost=-1)


def test_spec_rebuilds_the_stack():
    env = SearchCostWrapper(AnswerInContextWrapper(base(), bonus=0.2), cost=0.5)
    again = gym.make(env.spec)
    assert type(again).__name__ == "SearchCostWrapper" and again.cost == 0.5 and again.env.bonus == 0.2


def test_retrieved_text_drops_markup_and_echoed_queries():
    from igpo_env.actions import format_observation
    from igpo_env.metrics import cover_em
    from igpo_env.types import Doc
    from igpo_env.wrappers.shaping_turn import retrieved_text

    obs = format_observation(["Karsel?", "x"], [[Doc("9", "Velmoor", "A hill.")], [Doc("8", "Dovia", "A town.")]])
    assert cover_em(obs, ["Karsel"]) == 1.0  # the echoed query holds the alias...
    assert cover_em(retrieved_text(obs), ["Karsel"]) == 0.0  # ...the passages do not
    glued = format_observation(["q"], [[Doc("2", "Karsel", "Founded by Ilka Maren.")]])  # "Maren.</information>"
    assert cover_em(retrieved_text(glued), ["Ilka Maren"]) == 1.0
