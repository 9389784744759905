import gymnasium as gym
import pytest

import igpo_env  # noqa: F401
from agents.llm_agent import EpisodeRecord, LLMAgent, truncate_at_stop
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.envs.vector import SearchQAVectorEnv
from igpo_env.retrieval import BM25Retriever
from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer


@pytest.fixture(scope="module")
def retriever():
    return BM25Retriever.from_docs(toy_corpus())


@pytest.fixture(scope="module")
def random_lm():
    return tiny_causal_lm(), tiny_tokenizer()


def test_truncate_at_stop_earliest():
    assert truncate_at_stop("<search> a </search> <answer> b </answer>", ["</answer>", "</search>"]) == (
        "<search> a </search>"
    )
    assert truncate_at_stop("", ["</answer>"]) == ""


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"batch_size": 0}, "batch_size"),
        ({"temperature": 0.0}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
    ],
)
def test_validation(random_lm, kwargs, match):
    model, tok = random_lm
    with pytest.raises(ValueError, match=match):
        LLMAgent(model, tok, **kwargs)


def test_requires_chat_template(random_lm):
    model, tok = random_lm
    bare = tiny_tokenizer()
    bare.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        LLMAgent(model, bare)


def test_play_list_of_envs_respects_turn_limit(random_lm, retriever):
    model, tok = random_lm
    agent = LLMAgent(model, tok, max_new_tokens=8, batch_size=2)
    envs = [gym.make("SearchQA-v0", dataset=toy_qa(), retriever=retriever, max_episode_steps=3) for _ in range(3)]
    records = agent.play(envs, options=[{"index": i} for i in range(3)])
    assert len(records) == 3
    for i, rec in enumerate(records):
        assert isinstance(rec, EpisodeRecord)
        assert 1 <= len(rec.actions) <= 3
        assert len(rec.action_types) == len(rec.actions)
        assert rec.messages[0]["role"] == "user" and toy_qa()[i].question in rec.messages[0]["content"]
        assert all(a in ("search", "answer", "invalid") for a in rec.action_types)


def test_play_vector_env_same_as_list(random_lm, retriever):
    model, tok = random_lm
    agent = LLMAgent(model, tok, max_new_tokens=8)
    options = [{"index": i} for i in range(2)]
    venv = SearchQAVectorEnv(2, dataset=toy_qa(), retriever=retriever, max_episode_steps=2)
    envs = [gym.make("SearchQA-v0", dataset=toy_qa(), retriever=retriever, max_episode_steps=2) for _ in range(2)]
    a = agent.play(venv, options=options)
    b = agent.play(envs, options=options)
    assert [r.actions for r in a] == [r.actions for r in b]
    assert [r.messages for r in a] == [r.messages for r in b]


def test_sampling_is_seeded(random_lm):
    model, tok = random_lm
    prompts = [LLMAgent(model, tok).render([{"role": "user", "content": q.question}]) for q in toy_qa()]
    first = LLMAgent(model, tok, do_sample=True, seed=3, max_new_tokens=8).generate(prompts)
    second = LLMAgent(model, tok, do_sample=True, seed=3, max_new_tokens=8).generate(prompts)
    assert first == second
    greedy = LLMAgent(model, tok, max_new_tokens=8)
    assert greedy.generate(prompts) == greedy.generate(prompts)


def test_options_length_checked(random_lm, retriever):
    model, tok = random_lm
    envs = [gym.make("SearchQA-v0", dataset=toy_qa(), retriever=retriever)]
    with pytest.raises(ValueError, match="options"):
        LLMAgent(model, tok).play(envs, options=[None, None])
