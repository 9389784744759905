"""IG sanity with a trained model (issue 7 item 5): the oracle's cumulative information gain is positive on most
SynthWiki dev questions when the embedded policy LM (the session's `tiny` build) is the scorer."""

import gymnasium as gym
import pytest

import igpo_env  # noqa: F401
from agents.scripted import OracleAgent, run_episode
from igpo_env.data import load_qa
from igpo_env.data.synthwiki import default_world
from igpo_env.retrieval import get_retriever
from igpo_env.scoring.hf import HFScorer
from igpo_env.wrappers.information_gain import InformationGainWrapper

N_QUESTIONS = 32
MIN_POSITIVE_SHARE = 0.5  # "most" (issue 7): a strict majority; the tiny build varied 0.69-0.97 between runs


@pytest.mark.slow
def test_oracle_cumulative_ig_positive_on_most_dev_questions(tiny_policy_dir):
    world = default_world(0)
    dev = load_qa(world, "dev")[:N_QUESTIONS]
    env = gym.make("SearchQA-v0", dataset=dev, retriever=get_retriever(str(world / "corpus.jsonl")))
    env = InformationGainWrapper(env, HFScorer(str(tiny_policy_dir)))
    agent = OracleAgent(env)
    positive = 0
    for i in range(len(dev)):
        ep = run_episode(env, agent, options={"index": i})
        assert ep.terminated and ep.final_info["f1"] == 1.0
        cumulative_ig = sum(ep.rewards[:-1])  # search turns; the answering turn carries the outcome
        positive += cumulative_ig > 0
    assert positive / len(dev) > MIN_POSITIVE_SHARE
