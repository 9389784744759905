"""The eval report: answers re-scored per normalization as the env scores them; the paper's table layout."""

from __future__ import annotations

import pytest
from testing_utils import one_torch_thread

from agents.igpo.eval_report import markdown_report, paper_tables, rescore, source_order
from agents.rollout import evaluate_policy, generate_rollouts, make_envs
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.retrieval import BM25Retriever
from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer

ACTIONS = {
    "tq0": ["<search> Ostrand </search>", "<answer> the Karsel </answer>"],  # EM under squad only (article)
    "tq1": ["<answer> Maren, Ilka </answer>"],  # the gold's tokens reordered: EM 0, F1 1 under both
    "tq2": ["<answer>Karsel</answer> <search>x</search>"],  # exact
    "tq3": ["<search> Velmora </search>", "<search> river </search>"],  # never answers
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with one_torch_thread():
        yield


@pytest.mark.parametrize("normalization", ["squad", "igpo"])
def test_rescore_under_the_envs_normalization_gives_the_envs_scores(normalization):
    qids = list(ACTIONS)
    envs = make_envs(4, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()), normalization=normalization)
    rollouts, _ = generate_rollouts(
        tiny_causal_lm(), tiny_tokenizer(), envs, qids, max_turns=2, actions=[ACTIONS[q] for q in qids]
    )
    golds = {ex.id: ex.golden_answers for ex in toy_qa()}
    scores = rescore(rollouts, golds)
    own = scores[normalization]
    assert own["em"] == sum(r.em for r in rollouts) / 4 and own["f1"] == sum(r.f1 for r in rollouts) / 4
    for source, agg in own["by_source"].items():
        mine = [r for r in rollouts if r.data_source == source]
        n = len(mine)
        assert agg == {"em": sum(r.em for r in mine) / n, "f1": sum(r.f1 for r in mine) / n, "n": n}
    assert scores["squad"]["em"] == 0.5 and scores["igpo"]["em"] == 0.25  # "the Karsel": squad drops the article
    assert scores["squad"]["f1"] == 0.75 and scores["igpo"]["f1"] == pytest.approx((2 / 3 + 1 + 1) / 4)


def test_evaluate_policy_returns_its_episodes_on_request():
    envs = make_envs(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
    res = evaluate_policy(tiny_causal_lm(), tiny_tokenizer(), envs, limit=3, max_turns=1, return_rollouts=True)
    assert [r.question_id for r in res["rollouts"]] == ["tq0", "tq1", "tq2"] and res["n"] == 3
    assert "rollouts" not in evaluate_policy(tiny_causal_lm(), tiny_tokenizer(), envs, limit=1, max_turns=1)


def test_paper_tables_columns_average_and_markdown():
    def scores(by_source):
        return {"igpo": {"em": 0, "f1": 0, "by_source": by_source}, "squad": {"em": 0, "f1": 0, "by_source": {}}}

    a = {"Bamboogle": {"em": 0.5, "f1": 0.75, "n": 2}, "2wikimultihopqa": {"em": 0.0, "f1": 0.25, "n": 4}}
    b = {"nq": {"em": 1.0, "f1": 1.0, "n": 1}, "synth": {"em": 0.0, "f1": 0.5, "n": 1}}
    tables = paper_tables([("A", scores(a)), ("B", scores(b))])
    f1 = tables["igpo"]["f1"]
    assert f1["columns"] == ["nq", "2wikimultihopqa", "Bamboogle", "synth", "avg"]
    assert f1["rows"]["A"] == {"2wikimultihopqa": 0.25, "Bamboogle": 0.75, "avg": 0.5}
    assert f1["rows"]["B"] == {"nq": 1.0, "synth": 0.5, "avg": 0.75}
    md = markdown_report(tables, title="t").splitlines()
    assert md[:6] == [
        "# t",
        "",
        "## F1 (igpo normalization)",
        "",
        "| Model | nq | 2wikimultihopqa | Bamboogle | synth | Avg. |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    assert md[6:8] == ["| A | - | 25.0 | 75.0 | - | 50.0 |", "| B | 100.0 | - | - | 50.0 | 75.0 |"]
    assert source_order(["musique", "popqa", "tq", "hotpotqa"]) == ["tq", "popqa", "hotpotqa", "musique"]
    with pytest.raises(ValueError, match="no models"):
        paper_tables([])
    with pytest.raises(ValueError, match="no episodes"):
        rescore([], {})
