import json
import math

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
pytest.importorskip("sb3_contrib")

from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported  # noqa: E402

import igpo_env  # noqa: E402,F401  (registers SearchQA-v0)
from agents.sb3 import SB3Config, load_questions, make_model, train  # noqa: E402
from agents.sb3_cli import parse_train_args  # noqa: E402
from agents.sb3_env import (  # noqa: E402
    CandidateExtractor,
    CandidateVecEnv,
    MemoScorer,
    evaluate_candidates,
    random_candidate_policy,
)
from igpo_env.data.toy import toy_corpus, toy_qa  # noqa: E402
from igpo_env.envs.vector import SearchQAVectorEnv  # noqa: E402
from igpo_env.retrieval import BM25Retriever  # noqa: E402
from igpo_env.scoring import OverlapScorer  # noqa: E402
from igpo_env.types import TargetScore  # noqa: E402
from igpo_env.wrappers import CandidateActionWrapper, InformationGainWrapper  # noqa: E402
from igpo_env.wrappers.candidates import CachedEncoder, HashingEncoder  # noqa: E402
from igpo_env.wrappers.vector.information_gain import InformationGainVectorWrapper  # noqa: E402

Q, NO, DIM, STEPS = 2, 3, 16, 3
M = Q + NO


@pytest.fixture(scope="module")
def retriever():
    return BM25Retriever.from_docs(toy_corpus())


@pytest.fixture(scope="module")
def encoder():
    return CachedEncoder(HashingEncoder(DIM))


def vec_env(retriever, encoder, n=3, ig=True, fmt="box"):
    text = SearchQAVectorEnv(n, STEPS, dataset=toy_qa(), retriever=retriever)
    if ig:
        text = InformationGainVectorWrapper(text, OverlapScorer())
    return CandidateVecEnv(text, encoder, Q, NO, fmt)


def single_env(retriever, encoder, ig=True):
    env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=retriever, max_episode_steps=STEPS)
    if ig:
        env = InformationGainWrapper(env, OverlapScorer())
    return CandidateActionWrapper(env, encoder, Q, NO)


# ------------------------------------------------------------------ CandidateVecEnv: the vector twin
def test_vec_env_matches_single_envs(retriever, encoder):
    n, seed = 3, 7
    venv = vec_env(retriever, encoder, n)
    venv.seed(seed)
    obs = venv.reset()
    envs = [single_env(retriever, encoder) for _ in range(n)]
    single = [e.reset(seed=seed + i)[0] for i, e in enumerate(envs)]
    assert np.array_equal(obs, np.stack(single))
    rng = np.random.default_rng(0)
    finished = 0
    for _ in range(12):
        masks = venv.action_masks()
        assert np.array_equal(masks, np.stack([e.action_masks() for e in envs]))
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in masks])
        obs, rewards, dones, infos = venv.step(actions)
        for i, env in enumerate(envs):
            o, r, term, trunc, info = env.step(int(actions[i]))
            assert math.isclose(rewards[i], r, abs_tol=1e-6) and dones[i] == (term or trunc)
            assert infos[i]["action_text"] == info["action_text"]
            if dones[i]:
                finished += 1
                assert np.array_equal(infos[i]["terminal_observation"], o)
                assert infos[i]["TimeLimit.truncated"] == (trunc and not term)
                o, _ = env.reset()  # no seed: the env's own RNG stream, as the vector env's autoreset
            assert np.array_equal(obs[i], o)
    assert finished >= n


def test_vec_env_dict_observations_and_masks_for_maskable_ppo(retriever, encoder):
    venv = vec_env(retriever, encoder, 2, ig=False, fmt="dict")
    obs = venv.reset()
    assert obs["phrases"].shape == (2, M, DIM) and venv.observation_space.contains({k: v[0] for k, v in obs.items()})
    assert is_masking_supported(venv)
    assert np.array_equal(get_action_masks(venv), venv.action_masks())
    assert venv.action_masks().shape == (2, 2 * M)
    with pytest.raises(AttributeError, match="only 'action_masks'"):
        venv.env_method("render")
    assert venv.get_attr("top_k") == [3, 3] and venv.env_is_wrapped(gym.Wrapper) == [False, False]


def test_vec_env_truncates_at_the_turn_limit(retriever, encoder):
    venv = vec_env(retriever, encoder, 1, ig=False)
    venv.reset()
    for _ in range(STEPS):
        mask = venv.action_masks()[0]
        search = [a for a in np.flatnonzero(mask) if a < M]
        _, _, dones, infos = venv.step(np.array([search[0] if search else 1]))  # 1: an empty slot, never answers
    assert dones[0] and infos[0]["TimeLimit.truncated"] and infos[0]["turn"] == STEPS


def test_vec_env_validation(encoder):
    with pytest.raises(TypeError, match="`text_env` must be a gymnasium VectorEnv"):
        CandidateVecEnv(
            gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus())), encoder
        )


# ------------------------------------------------------------------ MemoScorer
class CachingStub:
    """A caching scorer: records keys and releases."""

    def __init__(self):
        self.calls, self.released = [], []

    def score(self, contexts, targets, cache_keys=None):
        self.calls.append((len(contexts), cache_keys))
        return [TargetScore.from_logprobs([-0.1 * len(str(c))]) for c in contexts]

    def release(self, cache_keys):
        self.released.extend(cache_keys)


def _transcript(*observations, query="x"):
    msgs = [{"role": "user", "content": "Question: q?"}]
    for o in observations:
        msgs += [{"role": "assistant", "content": f"<search> {query} </search>"}, {"role": "user", "content": o}]
    return msgs


def test_memo_scorer_transcript_key_is_exact():
    inner = CachingStub()
    memo = MemoScorer(inner, key="transcript")
    a, b = _transcript("obs1", query="x"), _transcript("obs1", query="y")
    memo.score([a, b, a], ["t", "t", "t"], cache_keys=["k1", "k2", "k1"])
    assert inner.calls == [(2, ["k1", "k2"])] and (memo.hits, memo.misses, len(memo)) == (1, 2, 2)
    memo.score([a], ["other target"])
    assert memo.misses == 3
    memo.release(["k1"])
    assert inner.released == ["k1"]


def test_memo_scorer_observations_key_ignores_search_wording_and_order():
    memo = MemoScorer(OverlapScorer(), key="observations")
    first = memo.score([_transcript("A", "B", query="x")], ["t"])
    again = memo.score([_transcript("B", "A", query="y")], ["t"])
    assert again == first and memo.hits == 1
    memo.score([_transcript("A", query="x")], ["t"])
    assert memo.misses == 2


def test_memo_scorer_validation():
    with pytest.raises(TypeError, match="`scorer` must have a score"):
        MemoScorer(object())
    with pytest.raises(ValueError, match="`key` must be one of"):
        MemoScorer(OverlapScorer(), key="doc_ids")


# ------------------------------------------------------------------ evaluation
def test_evaluate_candidates_scores_a_scripted_policy(retriever, encoder):
    env = single_env(retriever, encoder, ig=False)

    def policy(obs, mask):  # search the question's entity, then answer the gold of tq0 when offered
        phrases = env.phrases
        if "Karsel" in phrases[Q:]:
            return M + phrases.index("Karsel")
        return 0 if mask[0] else M

    res = evaluate_candidates(policy, env, ["tq0", "tq3"], max_turns=STEPS)
    assert res["n"] == 2 and res["by_source"]["synthwiki-1hop"]["n"] == 2
    assert res["f1"] == 0.5 and res["answered"] == 1.0  # tq0 right; tq3 answered with a question phrase
    rand = evaluate_candidates(random_candidate_policy(0), env, ["tq0", "tq1", "tq2"], max_turns=STEPS)
    assert 0.0 <= rand["f1"] <= 1.0 and 1 <= rand["mean_turns"] <= STEPS
    with pytest.raises(ValueError, match="`question_ids` is empty"):
        evaluate_candidates(policy, env, [], max_turns=STEPS)


# ------------------------------------------------------------------ policy and training
def test_candidate_extractor_shapes(retriever, encoder):
    torch = pytest.importorskip("torch")
    venv = vec_env(retriever, encoder, 2, ig=False, fmt="dict")
    extractor = CandidateExtractor(venv.observation_space, hidden=8)
    obs = {k: torch.as_tensor(v) for k, v in venv.reset().items()}
    assert extractor(obs).shape == (2, (M + 1) * 8) == (2, extractor.features_dim)
    with pytest.raises(TypeError, match="CandidateExtractor needs the Dict observations"):
        CandidateExtractor(gym.spaces.Box(-1, 1, (4,)))


def _config(tmp_path, **kwargs):
    base = {
        "total_timesteps": 32,
        "n_steps": 8,
        "batch_size": 8,
        "n_epochs": 1,
        "num_envs": 2,
        "max_episode_steps": STEPS,
        "num_question_phrases": Q,
        "num_observation_phrases": NO,
        "eval_freq": 16,
        "progress_bar": False,
        "output_dir": str(tmp_path / "run"),
    }
    return SB3Config(**{**base, **kwargs})


@pytest.mark.parametrize(
    ("reward", "masking", "policy", "vec"),
    [("ig", True, "candidate", "candidate"), ("outcome", False, "mlp", "dummy"), ("ig", True, "mlp", "dummy")],
)
def test_learn_smoke_on_toy_corpus(tmp_path, retriever, encoder, reward, masking, policy, vec):
    config = _config(tmp_path, reward=reward, masking=masking, policy=policy, vec_env=vec)
    scorer = MemoScorer(OverlapScorer())
    result = train(config, scorer=scorer, encoder=encoder, retriever=retriever, dataset=toy_qa())
    assert [p["timesteps"] for p in result.curve][:2] == [0, 16] and result.curve[-1]["timesteps"] >= 32
    assert all(0.0 <= p["f1"] <= 1.0 for p in result.curve)
    assert type(result.model).__name__ == ("MaskablePPO" if masking else "PPO")
    assert (scorer.misses > 0) == (reward == "ig")
    out = tmp_path / "run"
    assert (out / "model.zip").is_file() and json.loads((out / "curve.json").read_text()) == result.curve
    assert json.loads((out / "config.json").read_text())["reward"] == reward
    assert any((out / "tb").rglob("events.out.tfevents.*"))


def test_make_model_is_seeded(tmp_path, retriever, encoder):
    config = _config(tmp_path, tensorboard=False)
    a = make_model(config, vec_env(retriever, encoder, 2, ig=False, fmt="dict"))
    b = make_model(config, vec_env(retriever, encoder, 2, ig=False, fmt="dict"))
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        assert np.array_equal(pa.detach().numpy(), pb.detach().numpy())


def test_load_questions_filters_sources(tmp_path):
    qs, corpus = load_questions(_config(tmp_path, data_sources="synthwiki-2hop"), "train", None, toy_qa())
    assert [q.id for q in qs] == ["tq1", "tq2"] and corpus is None
    assert len(load_questions(_config(tmp_path, data_sources=""), "train", 3, toy_qa())[0]) == 3
    with pytest.raises(ValueError, match="no train question has a data source"):
        load_questions(_config(tmp_path, data_sources="nq"), "train", None, toy_qa())


# ------------------------------------------------------------------ config and command line
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reward": "f1"}, "`reward` must be one of"),
        ({"vec_env": "ray"}, "`vec_env` must be one of"),
        ({"num_envs": 0}, "`num_envs` must be an int >= 1"),
        ({"gamma": 1.5}, r"`gamma` must be a number in \[0, 1\]"),
        ({"ig_coef": -1}, "`ig_coef` must be a finite number >= 0"),
        ({"ig_memo": "disk"}, "`ig_memo` must be one of"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SB3Config(**kwargs)


def test_command_line_flags_come_from_the_config():
    config = parse_train_args(["--reward", "outcome", "--total-timesteps", "64", "--masking", "false", "--seed", "3"])
    assert (config.reward, config.total_timesteps, config.masking) == ("outcome", 64, False)
    assert config.output_dir == "runs/sb3-outcome-seed3"
    with pytest.raises(SystemExit):
        parse_train_args(["--reward", "f1"])
