"""evidence_recall: TF-IDF cosines and rewards worked by hand on a 4-passage corpus."""

import math

import gymnasium as gym
import numpy as np
import pytest

import igpo_env  # noqa: F401  (registers SearchQA-v0)
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.retrieval import BM25Retriever
from igpo_env.retrieval.base import DocStore
from igpo_env.types import Doc, QAExample
from igpo_env.wrappers import EvidenceRecallWrapper
from igpo_env.wrappers.shaping_evidence import TfidfIndex

# n = 4 passages (empty titles). Document frequencies: alpha 2, gamma 2, delta 2, beta 1, epsilon 1.
DOCS = [
    Doc("g", "", "alpha beta"),
    Doc("a", "", "alpha gamma"),
    Doc("b", "", "delta epsilon"),
    Doc("c", "", "gamma delta"),
]
IDF2 = math.log(5 / 3) + 1  # smoothed idf: ln((1 + n) / (1 + df)) + 1
IDF1 = math.log(5 / 2) + 1
COS_AG = IDF2 * (1 / math.sqrt(2)) / math.hypot(IDF2, IDF1)  # a = (alpha, gamma) with equal weights; g = (alpha, beta)
COS_CB = IDF2 * (1 / math.sqrt(2)) / math.hypot(IDF2, IDF1)  # c = (gamma, delta), b = (delta, epsilon): same shape


class TableRetriever:
    """Returns the passages listed for a query (ids separated by spaces); holds a doc store like BM25Retriever."""

    def __init__(self, docs, with_store=True):
        self.by_id = {d.id: d for d in docs}
        if with_store:
            self.store = DocStore.from_docs(docs)

    def search(self, queries, k):
        return [[self.by_id[i] for i in q.split()] for q in queries]


def make(supporting=("g",), with_store=True, **kw):
    qa = [QAExample("q0", "Which?", ["alpha"], "synthwiki-1hop", supporting)]
    env = gym.make("SearchQA-v0", dataset=qa, retriever=TableRetriever(DOCS, with_store), top_k=3)
    return EvidenceRecallWrapper(env, **kw)


def test_tfidf_cosines_by_hand():
    index = TfidfIndex(DocStore.from_docs(DOCS))
    sims = index.cosine(["g", "a", "b", "c"], ["g", "b"])
    expected = [[1.0, 0.0], [COS_AG, 0.0], [0.0, 1.0], [0.0, COS_CB]]
    np.testing.assert_allclose(sims, expected, atol=1e-12)
    assert COS_AG == pytest.approx(0.437791, abs=1e-6)
    with pytest.raises(KeyError, match="passage id 'zz' is not in the corpus"):
        index.vectors(["zz"])


def test_rewards_by_hand():
    env = make(redundancy_coef=0.5)
    _, info = env.reset()
    assert info["shaping"] == {
        "scheme": "evidence_recall",
        "reward": 0.0,
        "parts": {"recall_prev": 0.0, "recall": 0.0, "gain": 0.0, "redundancy": 0.0, "per_doc": {"g": 0.0}},
    }
    _, r, *_, info = env.step("<search>a</search>")  # best cos to g: COS_AG; nothing seen before
    assert r == pytest.approx(COS_AG) and info["shaping"]["parts"]["per_doc"] == {"g": pytest.approx(COS_AG)}
    _, r, *_, info = env.step("<search>a b</search>")  # no gain; a already seen: redundancy 1/2
    assert r == pytest.approx(-0.5 * 0.5)
    assert info["shaping"]["parts"]["redundancy"] == 0.5 and info["shaping"]["parts"]["gain"] == pytest.approx(0.0)
    _, r, *_, info = env.step("bad action")  # not a search: the env's format penalty only
    assert (
        r == -2.0 and info["shaping"]["reward"] == 0.0 and info["shaping"]["parts"]["recall"] == pytest.approx(COS_AG)
    )
    _, r, *_, info = env.step("<search>g c g</search>")  # distinct {g, c}, none seen: gain 1 - COS_AG
    parts = info["shaping"]["parts"]
    assert (
        r == pytest.approx(1.0 - COS_AG) and parts["recall_prev"] == pytest.approx(COS_AG) and parts["recall"] == 1.0
    )
    _, r, terminated, _, info = env.step("<answer>alpha</answer>")
    assert terminated and r == 1.0 and info["shaping"]["reward"] == 0.0


def test_two_gold_passages_average():
    env = make(supporting=("g", "b"), redundancy_coef=0.0)
    env.reset()
    _, r, *_, info = env.step("<search>a c</search>")  # g: COS_AG (from a), b: COS_CB (from c)
    assert r == pytest.approx((COS_AG + COS_CB) / 2)
    assert info["shaping"]["parts"]["per_doc"] == {"g": pytest.approx(COS_AG), "b": pytest.approx(COS_CB)}
    _, r, *_, info = env.step("<search>b</search>")  # b: COS_CB -> 1
    assert r == pytest.approx((1 - COS_CB) / 2)


def test_corpus_argument_and_missing_texts():
    with pytest.raises(ValueError, match="holds no doc store: pass `corpus=`"):
        make(with_store=False)
    env = make(with_store=False, corpus=DOCS)
    env.reset()
    assert env.step("<search>g</search>")[1] == pytest.approx(1.0)
    shared = TfidfIndex(DocStore.from_docs(DOCS))
    assert make(corpus=shared).index is shared


def test_question_without_supporting_docs():
    env = make(supporting=())
    with pytest.raises(ValueError, match="lists no supporting_doc_ids"):
        env.reset()
    with pytest.raises(KeyError, match="'nope' is not in the corpus"):
        make(supporting=("nope",)).reset()


def test_env_without_labels():
    class Bare(gym.Env):
        pass

    with pytest.raises(ValueError, match="needs gold `supporting_doc_ids`"):
        EvidenceRecallWrapper(Bare())


def test_validation():
    with pytest.raises(ValueError, match="`redundancy_coef` must be a finite number >= 0"):
        make(redundancy_coef=-1.0)


def test_toy_bm25_env():
    env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()), top_k=1)
    env = EvidenceRecallWrapper(env)
    env.reset(options={"question_id": "tq1"})  # gold: t1 (Ostrand), t2 (Karsel)
    _, r, *_, info = env.step("<search>Ostrand country inhabitants</search>")
    per_doc = info["shaping"]["parts"]["per_doc"]
    assert info["retrieved_doc_ids"] == ["t1"] and per_doc["t1"] == pytest.approx(1.0) and 0 < per_doc["t2"] < 1
    assert r == pytest.approx((1.0 + per_doc["t2"]) / 2)
