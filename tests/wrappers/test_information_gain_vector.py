import gymnasium as gym
import numpy as np
import pytest
from testing_utils import one_torch_thread, tiny_causal_lm, tiny_tokenizer

import igpo_env  # noqa: F401
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.envs.vector import SearchQAVectorEnv
from igpo_env.retrieval import BM25Retriever
from igpo_env.scoring import OverlapScorer
from igpo_env.scoring.hf import HFScorer
from igpo_env.wrappers import InformationGainWrapper
from igpo_env.wrappers.vector import InformationGainVectorWrapper

STEPS = 3
ACTIONS = [
    "<search>capital of Ostrand</search>",
    "<search>Karsel founded</search>",
    "nonsense",
    "<answer>Karsel</answer>",
    "<search>Amber Gate director</search>",
    "<answer>Ilka Maren</answer>",
]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


def action(i, t):
    return ACTIONS[(3 * i + t) % len(ACTIONS)]


def compare(scorer_factory, n=3, steps=8, tol=1e-9, **kwargs):
    retriever = BM25Retriever.from_docs(toy_corpus())
    vec_scorer = scorer_factory()
    venv = InformationGainVectorWrapper(
        SearchQAVectorEnv(n, max_episode_steps=STEPS, dataset=toy_qa(), retriever=retriever), vec_scorer, **kwargs
    )
    singles = [
        InformationGainWrapper(
            gym.make("SearchQA-v0", dataset=toy_qa(), retriever=retriever, max_episode_steps=STEPS),
            scorer_factory(),
            **kwargs,
        )
        for _ in range(n)
    ]
    _, vinfo = venv.reset(seed=5)
    done = [False] * n
    records = []
    for i, env in enumerate(singles):
        _, info = env.reset(seed=5 + i)
        records.append(info["information_gain"])
    for key in ("p_prev", "p", "reward"):
        assert vinfo["information_gain"][key] == pytest.approx([r[key] for r in records], abs=tol)
    saw_autoreset = saw_answer = saw_trunc = False
    for t in range(steps):
        acts = [action(i, t) for i in range(n)]
        _, vr, vterm, vtrunc, vinfo = venv.step(acts)
        for i, env in enumerate(singles):
            if done[i]:
                _, info = env.reset()
                r, term, trunc = 0.0, False, False
                saw_autoreset = True
            else:
                _, r, term, trunc, info = env.step(acts[i])
                saw_answer |= term
                saw_trunc |= trunc and not term
            assert vr[i] == pytest.approx(r, abs=tol), (t, i)
            assert (vterm[i], vtrunc[i]) == (term, trunc)
            for key in ("p_prev", "p", "mean_logprob", "reward"):
                np.testing.assert_allclose(vinfo["information_gain"][key][i], info["information_gain"][key], atol=tol)
            assert vinfo["messages"][i] == info["messages"]
            done[i] = term or trunc
    assert saw_autoreset and saw_answer and saw_trunc
    return venv, vec_scorer


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"final": "outcome+ig", "mode": "log_prob_diff", "alias": "mean"}, {"alias": "max", "ig_coef": 0.5}],
)
def test_vector_matches_single_env_wrapper(kwargs):
    compare(OverlapScorer, **kwargs)


def test_vector_matches_single_with_cached_hf_scorer():
    tok, model = tiny_tokenizer(), tiny_causal_lm(seed=3, layers=1)
    venv, scorer = compare(lambda: HFScorer(model, tok, pad_slack=100.0), n=2, steps=6, tol=1e-5)
    assert scorer.num_cached_streams <= 2
    venv.close()
    assert scorer.num_cached_streams == 0


def test_one_batched_scorer_call_per_step():
    calls = []

    class CountingScorer(OverlapScorer):
        def score(self, contexts, targets):
            calls.append(len(contexts))
            return super().score(contexts, targets)

    envs = SearchQAVectorEnv(4, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
    envs = InformationGainVectorWrapper(envs, CountingScorer(), alias="max")
    envs.reset(seed=0)
    envs.step(["<search>Ostrand</search>"] * 4)
    assert len(calls) == 2 and calls[1] >= 4


def test_reset_mask_only_rescores_masked_envs():
    envs = SearchQAVectorEnv(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
    envs = InformationGainVectorWrapper(envs, OverlapScorer())
    envs.reset(seed=0, options={"question_id": "tq0"})
    envs.step(["<search>capital of Ostrand</search>"] * 2)
    p_before = envs.p
    _, infos = envs.reset(options={"reset_mask": np.array([True, False]), "question_id": "tq0"})
    assert infos["information_gain"]["p"][1] == pytest.approx(p_before[1])
    assert infos["information_gain"]["p"][0] == pytest.approx(0.05)


def test_vector_argument_validation():
    envs = SearchQAVectorEnv(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
    with pytest.raises(TypeError, match="`scorer` must have a score"):
        InformationGainVectorWrapper(envs, object())
    with pytest.raises(ValueError, match="`mode` must be one of"):
        InformationGainVectorWrapper(envs, OverlapScorer(), mode="x")
    with pytest.raises(ValueError, match="`alias` must be one of"):
        InformationGainVectorWrapper(envs, OverlapScorer(), alias="x")
    with pytest.raises(ValueError, match="`final` must be one of"):
        InformationGainVectorWrapper(envs, OverlapScorer(), final="x")
    with pytest.raises(ValueError, match="`ig_coef` must be a finite number >= 0"):
        InformationGainVectorWrapper(envs, OverlapScorer(), ig_coef=-2)
    with pytest.raises(TypeError, match="`env` must be a gymnasium VectorEnv"):
        InformationGainVectorWrapper(gym.make("CartPole-v1"), OverlapScorer())
    wrapped = InformationGainVectorWrapper(envs, OverlapScorer())
    with pytest.raises(gym.error.ResetNeeded):
        wrapped.step(["a", "b"])
