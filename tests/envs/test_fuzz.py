"""Seeded fuzz: 10k random actions never raise, observations stay in their space, episodes end within max turns."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

import igpo_env  # noqa: F401
from igpo_env.actions import parse_action
from igpo_env.envs.vector import SearchQAVectorEnv

TOTAL_ACTIONS = 10_000
MAX_TURNS = 10
BIG = 100_000

FRAGMENTS = [
    "<search>",
    "</search>",
    "<answer>",
    "</answer>",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<information>",
    "</information>",
    "<|im_end|>",
    "<|im_start|>assistant\n",
    "<search><search>",
    "</answer></answer>",
    '{"name": "web_search", "arguments": {"query": ',
    '["Karsel", "Ostrand"]',
    '"Velmora"',
    "}}",
    "{",
    "[",
    "]",
    '"',
    "Karsel",
    "Ilka Maren",
    "412 km",
    " ",
    "\n",
    "\x00",
    "\ud800",
    "é",
    "中文",
    "🙂",
    "\u202e",
    "\\",
    "null",
    "[" * 50,
]


def _random_unicode(rng: np.random.Generator, n: int) -> str:
    return "".join(chr(int(c)) for c in rng.integers(0, 0x10FFFF, size=n))


def _random_action(rng: np.random.Generator) -> str:
    u = rng.random()
    if u < 0.05:
        return ""
    if u < 0.06:  # 100 KB strings, with and without tags
        body = "x" * BIG if rng.random() < 0.5 else _random_unicode(rng, 1000) * (BIG // 1000)
        return rng.choice(["", "<search>", "<answer>"]) + body + rng.choice(["", "</search>", "</answer>"])
    if u < 0.25:
        return _random_unicode(rng, int(rng.integers(1, 200)))
    if u < 0.35:  # well-formed actions keep episodes going through every branch
        return str(rng.choice(["<search> Karsel </search>", "<answer> Karsel </answer>", "<think>hm</think>"]))
    if u < 0.45:
        q = [_random_unicode(rng, 5) for _ in range(int(rng.integers(0, 7)))]
        return "<tool_call>" + json.dumps({"name": "web_search", "arguments": {"query": q}}) + "</tool_call>"
    k = int(rng.integers(1, 12))
    return "".join(str(FRAGMENTS[int(i)]) for i in rng.integers(len(FRAGMENTS), size=k))


@pytest.mark.parametrize("protocol", ["tags", "tool_call"])
def test_fuzz_single_env(toy_kwargs, protocol):
    rng = np.random.default_rng(0 if protocol == "tags" else 1)
    env = gym.make("SearchQA-v0", protocol=protocol, **toy_kwargs)
    obs_space = env.observation_space
    obs, info = env.reset(seed=0)
    turns = episodes = 0
    for _ in range(TOTAL_ACTIONS // 2):
        action = _random_action(rng)
        assert parse_action(action, protocol).kind in {"search", "answer", "invalid"}
        obs, reward, terminated, truncated, info = env.step(action)
        turns += 1
        assert obs_space.contains(obs)
        assert np.isfinite(reward) and info["turn"] == turns <= MAX_TURNS
        assert info["action_type"] in {"search", "answer", "invalid"}
        if terminated or truncated:
            assert terminated or turns == MAX_TURNS
            episodes += 1
            obs, info = env.reset()
            assert obs_space.contains(obs)
            turns = 0
    assert episodes > 100


def test_fuzz_vector_env(toy_kwargs):
    rng = np.random.default_rng(2)
    envs = SearchQAVectorEnv(8, **toy_kwargs)
    obs, infos = envs.reset(seed=0)
    for _ in range(100):
        obs, rewards, terminated, truncated, infos = envs.step([_random_action(rng) for _ in range(8)])
        assert envs.observation_space.contains(obs)
        assert (infos["turn"] <= MAX_TURNS).all() and np.isfinite(rewards).all()
