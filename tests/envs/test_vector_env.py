from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import igpo_env  # noqa: F401
from igpo_env.envs.vector import SearchQAVectorEnv

N = 4
ACTION_CYCLE = [
    "<search>Ostrand capital</search>",
    "garbage",
    "<think>x</think><search>Karsel founded</search>",
    "<answer>Karsel</answer>",
    "<search>Velmora</search>",
    "<answer>Ilka Maren</answer>",
]


class CountingRetriever:
    def __init__(self, inner):
        self.inner, self.calls, self.queries = inner, 0, []

    def search(self, queries, k):
        self.calls += 1
        self.queries.append(list(queries))
        return self.inner.search(queries, k)


def _actions(step: int) -> list[str]:
    # env i plays a different, deterministic action sequence
    return [ACTION_CYCLE[(step * (i + 1) + i) % len(ACTION_CYCLE)] for i in range(N)]


def test_make_vec_uses_vector_entry_point(toy_kwargs):
    envs = gym.make_vec("SearchQA-v0", num_envs=N, **toy_kwargs)
    assert isinstance(envs.unwrapped, SearchQAVectorEnv)
    assert envs.num_envs == N and envs.unwrapped.max_episode_steps == 10
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, infos = envs.reset(seed=0)
    assert isinstance(obs, tuple) and len(obs) == N and all(envs.single_observation_space.contains(o) for o in obs)
    assert envs.observation_space.contains(obs)


def test_one_batched_search_per_step(toy_kwargs):
    r = CountingRetriever(toy_kwargs["retriever"])
    envs = SearchQAVectorEnv(N, dataset=toy_kwargs["dataset"], retriever=r)
    envs.reset(seed=0)
    envs.step(["<search>a</search>", "bad", "<search>b</search>", "<search>c</search>"])
    assert r.calls == 1 and r.queries == [["a", "b", "c"]]
    envs.step(["bad"] * N)
    assert r.calls == 1  # nobody searched: no call
    obs, *_ = envs.step(["<search>Karsel</search>", "<search>Velmora</search>", "<search>Karsel</search>", "x"])
    assert r.calls == 2 and r.queries[-1] == ["Karsel", "Velmora"]  # duplicates are sent once
    assert obs[0] == obs[2] and obs[0] != obs[1]


def test_tool_call_multi_query_batched(toy_kwargs):
    r = CountingRetriever(toy_kwargs["retriever"])
    envs = SearchQAVectorEnv(2, dataset=toy_kwargs["dataset"], retriever=r, protocol="tool_call")
    envs.reset(seed=0)
    call = '<tool_call>{"name": "web_search", "arguments": {"query": ["q1", "q2"]}}</tool_call>'
    one = '<tool_call>{"name": "web_search", "arguments": {"query": "q3"}}</tool_call>'
    obs, *_, infos = envs.step([call, one])
    assert r.queries == [["q1", "q2", "q3"]]
    assert len(infos["retrieved_doc_ids"][0]) == 6 and len(infos["retrieved_doc_ids"][1]) == 3
    assert 'Results for "q2"' in obs[0]


@pytest.mark.parametrize("protocol", ["tags", "tool_call"])
def test_vector_matches_single_envs(toy_kwargs, protocol):
    """Sub-env i == gym.make single env seeded seed+i, given the same actions, across autoresets."""
    seed, steps = 7, 40
    envs = gym.make_vec("SearchQA-v0", num_envs=N, protocol=protocol, max_episode_steps=5, **toy_kwargs)
    singles = [gym.make("SearchQA-v0", protocol=protocol, max_episode_steps=5, **toy_kwargs) for _ in range(N)]
    v_obs, v_infos = envs.reset(seed=seed)
    s_out = [s.reset(seed=seed + i) for i, s in enumerate(singles)]
    for i in range(N):
        assert v_obs[i] == s_out[i][0]
        assert v_infos["question_id"][i] == s_out[i][1]["question_id"]
    done = [False] * N
    for t in range(steps):
        acts = _actions(t)
        v_obs, v_rew, v_term, v_trunc, v_infos = envs.step(acts)
        for i, s in enumerate(singles):
            if done[i]:  # NEXT_STEP autoreset: this step resets env i, its action is ignored
                obs, info = s.reset()
                rew, term, trunc = 0.0, False, False
            else:
                obs, rew, term, trunc, info = s.step(acts[i])
            assert v_obs[i] == obs, (t, i)
            assert v_rew[i] == rew and v_term[i] == term and v_trunc[i] == trunc, (t, i)
            assert v_infos["question_id"][i] == info["question_id"]
            assert v_infos["messages"][i] == info["messages"]
            assert v_infos["turn"][i] == info["turn"]
            for key in ("em", "f1", "outcome"):
                assert bool(v_infos.get(f"_{key}", np.zeros(N, bool))[i]) == (key in info)
                if key in info:
                    assert v_infos[key][i] == info[key]
            done[i] = term or trunc
    assert any(v_infos["_turn"])


def test_autoreset_next_step(toy_kwargs):
    envs = SearchQAVectorEnv(2, dataset=toy_kwargs["dataset"], retriever=toy_kwargs["retriever"], max_episode_steps=3)
    envs.reset(seed=0)
    obs, rew, term, trunc, infos = envs.step(["<answer>x</answer>", "<search>a</search>"])
    assert term.tolist() == [True, False] and obs[0] == "" and infos["_em"].tolist() == [True, False]
    assert infos["action_type"][0] == "answer"
    obs, rew, term, trunc, infos = envs.step(["IGNORED", "<search>b</search>"])
    assert infos["turn"].tolist() == [0, 2] and rew[0] == 0.0 and not term[0] and not trunc[0]
    assert obs[0].startswith("Answer the given question")
    assert not infos["_action_type"][0] and infos["_action_type"][1]  # reset info has no action_type
    assert len(infos["messages"][0]) == 1
    obs, rew, term, trunc, infos = envs.step(["<search>c</search>", "<search>d</search>"])
    assert trunc.tolist() == [False, True]  # env 1 reached max_episode_steps=3
    obs, rew, term, trunc, infos = envs.step(["<search>e</search>", "IGNORED"])
    assert infos["turn"].tolist() == [2, 0]


def test_reset_options_per_env_and_mask(toy_kwargs):
    envs = SearchQAVectorEnv(N, **toy_kwargs)
    _, infos = envs.reset(seed=0, options={"index": [0, 0, 1, 1]})
    assert infos["question_id"].tolist() == ["tq0", "tq0", "tq1", "tq1"]
    _, infos = envs.reset(options={"question_id": "tq3"})
    assert set(infos["question_id"]) == {"tq3"}
    assert envs.ground_truths[0] == ("412 kilometres", "412 km")
    envs.step(["<search>a</search>"] * N)
    obs, infos = envs.reset(options={"reset_mask": np.array([True, False, False, False]), "index": 2})
    assert infos["_question_id"].tolist() == [True, False, False, False] and infos["question_id"][0] == "tq2"
    assert envs.envs[1].turn == 1 and obs[1].startswith("\n\n<information>")
    with pytest.raises(ValueError, match="must be a scalar or hold 4 values"):
        envs.reset(options={"index": [0, 1]})


def test_seed_reproducible(toy_kwargs):
    envs = SearchQAVectorEnv(N, **toy_kwargs)
    a = envs.reset(seed=3)[1]["question_id"].tolist()
    assert envs.reset(seed=3)[1]["question_id"].tolist() == a
    assert envs.reset(seed=[3, 4, 5, 6])[1]["question_id"].tolist() == a


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_envs": 0}, "`num_envs` must be an int >= 1"),
        ({"num_envs": 2, "max_episode_steps": 0}, "`max_episode_steps` must be an int >= 1"),
        ({"num_envs": 2, "render_mode": "ansi"}, "`render_mode` is not supported"),
        ({"num_envs": 2, "top_k": 0}, "`top_k` must be an int >= 1"),
    ],
)
def test_vector_validation(toy_kwargs, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SearchQAVectorEnv(**kwargs, **toy_kwargs)


def test_step_guards(toy_kwargs):
    envs = SearchQAVectorEnv(2, **toy_kwargs)
    with pytest.raises(gym.error.ResetNeeded):
        envs.step(["a", "b"])
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="sequence of 2 strings"):
        envs.step(["a"])
    with pytest.raises(ValueError, match="sequence of 2 strings"):
        envs.step("ab")


def test_max_turns_caps_vector(toy_kwargs):
    envs = SearchQAVectorEnv(2, max_turns=2, **toy_kwargs)
    assert envs.max_episode_steps == 2
    envs.reset(seed=0)
    envs.step(["x", "y"])
    assert envs.step(["x", "y"])[3].tolist() == [True, True]
