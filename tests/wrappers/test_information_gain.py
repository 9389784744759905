import math

import gymnasium as gym
import pytest
from testing_utils import one_torch_thread, tiny_causal_lm, tiny_tokenizer

import igpo_env  # noqa: F401  (registers SearchQA-v0)
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.retrieval import BM25Retriever
from igpo_env.scoring import IGPO_TEMPLATE, OverlapScorer
from igpo_env.scoring.hf import HFScorer
from igpo_env.scoring.templates import IGTemplate
from igpo_env.types import TargetScore
from igpo_env.wrappers import InformationGainWrapper

# p of each alias as a function of the number of messages in the transcript (1 after reset, +2 per turn)
P = {
    "Karsel": {1: 0.1, 3: 0.3, 5: 0.2, 7: 0.6, 8: 0.9},
    "Ilka Maren": {1: 0.05, 3: 0.4, 5: 0.5, 7: 0.7, 8: 0.8},
    "Maren": {1: 0.2, 3: 0.1, 5: 0.6, 7: 0.9, 8: 0.95},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_torch_thread():
        yield


class TableScorer:
    """p(target | transcript) read from P by transcript length; records the calls."""

    def __init__(self):
        self.calls = []

    def score(self, contexts, targets):
        self.calls.append((list(contexts), list(targets)))
        pairs = zip(contexts, targets, strict=True)
        return [TargetScore.from_logprobs([math.log(P[t][len(c)])] * 2) for c, t in pairs]


def make_env(scorer, max_episode_steps=10, **kwargs):
    env = gym.make(
        "SearchQA-v0",
        dataset=toy_qa(),
        retriever=BM25Retriever.from_docs(toy_corpus()),
        max_episode_steps=max_episode_steps,
    )
    return InformationGainWrapper(env, scorer, **kwargs)


ACTIONS = ["<search>Ostrand capital</search>", "no tags here", "<search>Karsel</search>", "<answer>Karsel</answer>"]


def run(env, qid="tq0", actions=ACTIONS):
    _, info = env.reset(options={"question_id": qid})
    out = [info]
    for a in actions:
        _, r, term, trunc, info = env.step(a)
        out.append((r, term, trunc, info))
        if term or trunc:
            break
    return out


def test_prob_diff_rewards_hand_computed():
    env = make_env(TableScorer())
    reset_info, *steps = run(env)
    p = P["Karsel"]
    assert reset_info["information_gain"] == {
        "p_prev": pytest.approx(0.1),
        "p": pytest.approx(0.1),
        "mean_logprob": pytest.approx(math.log(0.1)),
        "reward": 0.0,
    }
    rewards = [s[0] for s in steps]
    assert rewards[0] == pytest.approx(p[3] - p[1])
    assert rewards[1] == pytest.approx(-2.0 + p[5] - p[3])  # invalid turn keeps the format penalty
    assert rewards[2] == pytest.approx(p[7] - p[5])
    assert rewards[3] == 1.0  # outcome only
    last = steps[3][3]
    assert last["outcome"] == 1.0
    assert last["information_gain"]["reward"] == 0.0 and math.isnan(last["information_gain"]["p"])
    assert last["information_gain"]["p_prev"] == pytest.approx(p[7])
    ig = [s[3]["information_gain"] for s in steps[:3]]
    assert [x["p_prev"] for x in ig] == pytest.approx([p[1], p[3], p[5]])
    assert [x["p"] for x in ig] == pytest.approx([p[3], p[5], p[7]])
    assert sum(x["reward"] for x in ig) == pytest.approx(p[7] - p[1])  # telescopes


def test_outcome_plus_ig_log_prob_diff_and_coef():
    env = make_env(TableScorer(), final="outcome+ig", mode="log_prob_diff", ig_coef=0.5)
    _, *steps = run(env)
    p = P["Karsel"]
    assert steps[0][0] == pytest.approx(0.5 * (math.log(p[3]) - math.log(p[1])))
    assert steps[3][0] == pytest.approx(1.0 + 0.5 * (math.log(p[8]) - math.log(p[7])))
    assert steps[3][3]["information_gain"]["p"] == pytest.approx(p[8])


def test_ig_coef_zero_keeps_env_rewards():
    wrapped, plain = make_env(TableScorer(), ig_coef=0.0), make_env(TableScorer()).env
    _, *a = run(wrapped)
    plain.reset(options={"question_id": "tq0"})
    b = [plain.step(x)[1] for x in ACTIONS]
    assert [s[0] for s in a] == b


def test_truncated_turn_gets_ig_and_no_outcome():
    env = make_env(TableScorer(), max_episode_steps=2)
    _, *steps = run(env)
    assert len(steps) == 2 and steps[1][2] and not steps[1][1]
    p = P["Karsel"]
    assert steps[1][0] == pytest.approx(-2.0 + p[5] - p[3])
    assert "outcome" not in steps[1][3]


@pytest.mark.parametrize(
    "alias, mode, expected",
    [
        ("first", "prob_diff", lambda t: P["Ilka Maren"][t]),
        ("max", "prob_diff", lambda t: max(P["Ilka Maren"][t], P["Maren"][t])),
        ("mean", "prob_diff", lambda t: (P["Ilka Maren"][t] + P["Maren"][t]) / 2),
        ("mean", "log_prob_diff", lambda t: (math.log(P["Ilka Maren"][t]) + math.log(P["Maren"][t])) / 2),
    ],
)
def test_alias_aggregation(alias, mode, expected):
    scorer = TableScorer()
    env = make_env(scorer, alias=alias, mode=mode)
    _, *steps = run(env, qid="tq1")  # gold: ("Ilka Maren", "Maren")
    assert steps[0][0] == pytest.approx(expected(3) - expected(1))
    n_alias = 1 if alias == "first" else 2
    assert all(len(targets) == n_alias for _, targets in scorer.calls)


def test_overlap_scorer_oracle_gains():
    env = make_env(OverlapScorer())
    _, *steps = run(env, actions=["<search>capital of Ostrand</search>", "<answer>Karsel</answer>"])
    assert steps[0][0] == pytest.approx(0.9 - 0.05)
    assert steps[1][0] == 1.0


def test_template_renders_strings_for_scorer():
    scorer = TableScorer()

    class StrScorer(TableScorer):
        def score(self, contexts, targets):
            assert all(isinstance(c, str) and c.endswith("ANSWER:") for c in contexts)
            n = {c.count("<|im_start|>") for c in contexts}.pop() - 1  # messages = im_starts minus generation prompt
            return [TargetScore.from_logprobs([math.log(P[t][n])]) for t in targets]

    scorer = StrScorer()
    env = make_env(scorer, template=IGTemplate(pseudo_response=" ANSWER:"))
    _, *steps = run(env)
    assert steps[0][0] == pytest.approx(P["Karsel"][3] - P["Karsel"][1])


def _naive_p(model, tok, messages, gold):
    from igpo_env.scoring.hf import naive_target_logprobs
    from igpo_env.scoring.templates import render_scoring_prefix

    prefix = tok(render_scoring_prefix(messages, tok, IGPO_TEMPLATE), add_special_tokens=False)["input_ids"]
    lp = naive_target_logprobs(model, prefix, tok(gold, add_special_tokens=False)["input_ids"])
    return math.exp(sum(lp) / len(lp))


def test_hf_scorer_with_prefix_cache_matches_naive_and_releases():
    tok, model = tiny_tokenizer(), tiny_causal_lm(seed=11)
    scorer = HFScorer(model, tok)
    env = make_env(scorer, max_episode_steps=3)
    for qid in ("tq0", "tq2"):
        _, info = env.reset(options={"question_id": qid})
        gold = env.unwrapped.ground_truth[0]
        ps = [_naive_p(model, tok, info["messages"], gold)]
        assert info["information_gain"]["p"] == pytest.approx(ps[0], abs=1e-6)
        rewards = []
        for a in ACTIONS:
            _, r, term, trunc, info = env.step(a)
            if not term:
                ps.append(_naive_p(model, tok, info["messages"], gold))
            rewards.append(r)
            assert scorer.num_cached_streams == (0 if term or trunc else 1)
            if term or trunc:
                break
        expected = [ps[1] - ps[0], -2.0 + ps[2] - ps[1], ps[3] - ps[2]]
        assert rewards == pytest.approx(expected, abs=1e-5)


def test_argument_validation():
    base = make_env(TableScorer()).env
    with pytest.raises(TypeError, match="`scorer` must have a score"):
        InformationGainWrapper(base, object())
    with pytest.raises(ValueError, match="`mode` must be one of"):
        InformationGainWrapper(base, TableScorer(), mode="diff")
    with pytest.raises(ValueError, match="`alias` must be one of"):
        InformationGainWrapper(base, TableScorer(), alias="all")
    with pytest.raises(ValueError, match="`final` must be one of"):
        InformationGainWrapper(base, TableScorer(), final="ig")
    with pytest.raises(ValueError, match="`ig_coef` must be a finite number >= 0, got -1"):
        InformationGainWrapper(base, TableScorer(), ig_coef=-1)
    with pytest.raises(ValueError, match="`ig_coef` must be a finite number"):
        InformationGainWrapper(base, TableScorer(), ig_coef=float("nan"))
    with pytest.raises(TypeError, match="`template` must be an IGTemplate or None"):
        InformationGainWrapper(base, TableScorer(), template="x")
    env = InformationGainWrapper(base, TableScorer())
    with pytest.raises(gym.error.ResetNeeded):
        env.step("<search>x</search>")


def test_spec_records_wrapper_args():
    scorer = TableScorer()
    env = make_env(scorer, alias="max", ig_coef=0.3)
    # what env.spec uses to rebuild the stack (the scorer is kept by reference: _disable_deepcopy)
    assert env._saved_kwargs["alias"] == "max" and env._saved_kwargs["ig_coef"] == 0.3
    assert env._saved_kwargs["scorer"] is scorer
