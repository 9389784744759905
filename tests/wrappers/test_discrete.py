import warnings

import gymnasium as gym
import numpy as np
import pytest

import igpo_env  # noqa: F401  (registers SearchQA-v0)
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.envs.search_qa import DEFAULT_FORMAT_PENALTY
from igpo_env.retrieval import BM25Retriever
from igpo_env.scoring import OverlapScorer
from igpo_env.wrappers import CandidateActionWrapper, InformationGainWrapper
from igpo_env.wrappers.candidates import (
    CachedEncoder,
    HashingEncoder,
    extract_phrases,
    parse_passages,
    phrase_key,
    stems,
)
from igpo_env.wrappers.discrete import PHRASE_FEATURES, TURN_FEATURES, CandidateSpace

Q, NO, DIM = 2, 4, 16
M = Q + NO


@pytest.fixture(scope="module")
def retriever():
    return BM25Retriever.from_docs(toy_corpus())


def make_env(retriever, ig=False, **kwargs):
    env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=retriever)
    if ig:
        env = InformationGainWrapper(env, OverlapScorer())
    kwargs = {"encoder": HashingEncoder(DIM), "num_question_phrases": Q, "num_observation_phrases": NO, **kwargs}
    return CandidateActionWrapper(env, **kwargs)


# ------------------------------------------------------------------ phrases
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("What is the capital of the source country of the Dryteimer River?", ["Dryteimer River"]),
        ("Who was the director of Harbour of Haren?", ["Harbour of Haren"]),
        ("Which river is shorter, the Bremek River or the Mymeis River?", ["Bremek River", "Mymeis River"]),
        ("When was The Broken Winter of Lynust released?", ["Broken Winter of Lynust"]),
        ("how long is it?", []),
    ],
)
def test_question_phrases_are_names_only(text, expected):
    assert [p.text for p in extract_phrases(text)] == expected


def test_passage_phrases_names_numbers_units_and_noun_phrases():
    body = (
        "Stebolem Railways is a company in the railways industry. It is 136 kilometres long. "
        "The Iron Orchard is a 1945 musical. 670,618 people live in Vona. Dreiduna Ivol was a noted film director."
    )
    phrases = extract_phrases("", [("Stebolem Railways", body)])
    texts = [p.text for p in phrases]
    assert texts[0] == "Stebolem Railways" and phrases[0].is_title and phrases[0].doc_rank == 1
    for expected in ("company", "railways industry", "railways", "136 kilometres", "Iron Orchard", "1945", "musical"):
        assert expected in texts
    assert "670,618" in texts and "670,618 people" not in texts  # counted nouns are not units
    assert "film director" in texts  # adjectives ("noted") dropped
    assert not {"It", "The"} & set(texts)
    by_text = {p.text: p for p in phrases}
    assert by_text["136 kilometres"].sentence == "It is 136 kilometres long."


def test_parse_passages_and_helpers():
    obs = "\n\n<information>Doc 1(Title: A) one.\nDoc 2(Title: B b) two three.</information>\n\n"
    assert parse_passages(obs) == [("A", "one."), ("B b", "two three.")]
    assert parse_passages("Your answer was not understood.") == []
    assert phrase_key("The Iron Orchard") == phrase_key("iron orchard") == "iron orchard"
    assert "foun" in stems("founder") and "the" not in stems("the founder", drop_stopwords=True)


# ------------------------------------------------------------------ encoders
class CountingEncoder(HashingEncoder):
    def __init__(self, dim):
        super().__init__(dim)
        self.calls = []

    def encode(self, texts, **kwargs):
        self.calls.append(list(texts))
        return super().encode(texts)


def test_cached_encoder_encodes_each_text_once_and_evicts():
    inner = CountingEncoder(8)
    enc = CachedEncoder(inner, max_entries=2)
    assert enc.dim == 8 and len(inner.calls) == 1  # dimension probe
    a = enc(["x y", "z", "x y", ""])
    assert a.shape == (4, 8) and np.allclose(a[0], a[2]) and not a[3].any()
    assert inner.calls[-1] == ["x y", "z"]
    enc(["z", "x y"])
    assert len(inner.calls) == 2  # cached
    enc(["w"])
    assert len(enc) == 2  # LRU: "z" evicted ("x y" was used last)
    enc(["x y"])
    assert len(inner.calls) == 3


def test_cached_encoder_validation():
    with pytest.raises(TypeError, match="`encoder` must have encode"):
        CachedEncoder(object())
    with pytest.raises(ValueError, match="`max_entries` must be an int >= 1"):
        CachedEncoder(HashingEncoder(4), max_entries=0)


def test_default_encoder_is_packaged_minilm(monkeypatch):
    calls = []
    import igpo_env.retrieval.encoder as encoder

    monkeypatch.setattr(encoder, "load_encoder", lambda model=None: calls.append(model) or HashingEncoder(4))
    assert CachedEncoder().dim == 4 and calls == [None]


# ------------------------------------------------------------------ action / observation mapping
def test_spaces_and_layout(retriever):
    env = make_env(retriever)
    assert env.action_space == gym.spaces.Discrete(2 * M)
    n = 2 * DIM + M * DIM + M * len(PHRASE_FEATURES) + len(TURN_FEATURES)
    assert env.observation_space.shape == (n,) and env.observation_space.dtype == np.float32
    obs, info = env.reset(options={"question_id": "tq1"})  # Who founded the capital of Ostrand?
    assert env.observation_space.contains(obs)
    assert env.phrases == ["Ostrand"] + [None] * (M - 1)
    assert env.candidates[0] == "<search> Ostrand </search>" and env.candidates[M] == "<answer> Ostrand </answer>"
    assert env.candidates[1] == "" and info["action_mask"].tolist() == [True] + [False] * (M - 1) + [True] + [
        False
    ] * (M - 1)
    turn = obs[-len(TURN_FEATURES) :]
    assert turn.tolist() == [1, 0, 0, 0, 0, 0]


def test_search_and_answer_slots_reach_the_env(retriever):
    env = make_env(retriever)
    env.reset(options={"question_id": "tq1"})
    obs, reward, terminated, truncated, info = env.step(0)
    assert info["action_text"] == "<search> Ostrand </search>" and info["action_type"] == "search"
    assert reward == 0.0 and not terminated and info["retrieved_doc_ids"][0] == "t1"
    assert "Karsel" in env.phrases[Q:]  # the observation's phrases fill the observation slots
    assert obs[-len(TURN_FEATURES) :].tolist()[:2] == [0, 1]
    obs, reward, *_ = env.step(env.phrases.index("Karsel"))  # search the bridge entity
    assert "Ilka Maren" in env.phrases[Q:]
    obs, reward, terminated, truncated, info = env.step(M + env.phrases.index("Ilka Maren"))
    assert info["action_text"] == "<answer> Ilka Maren </answer>" and terminated and reward == info["f1"] == 1.0


def test_phrase_features(retriever):
    env = make_env(retriever)
    env.reset(options={"question_id": "tq1"})
    obs, *_ = env.step(0)
    start = 2 * DIM + M * DIM
    feats = obs[start : start + M * len(PHRASE_FEATURES)].reshape(M, len(PHRASE_FEATURES))
    col = {name: feats[:, i] for i, name in enumerate(PHRASE_FEATURES)}
    filled = [p is not None for p in env.phrases]
    assert col["valid"].astype(bool).tolist() == filled
    assert col["from_question"].tolist() == [1, 0] + [0] * NO
    assert col["searched"][0] == 1 and not col["searched"][Q:].any()
    assert all(0 < col["doc_rank"][i] <= 1 for i in range(Q, M) if filled[i])
    assert np.all(np.abs(feats) <= 1)


def test_box_equals_flattened_dict(retriever):
    box, dct = make_env(retriever), make_env(retriever, observation_format="dict")
    assert set(dct.observation_space.spaces) == {"question", "observation", "phrases", "phrase_features", "turn"}
    for a in (None, 0, 2, M + 3):
        if a is None:
            ob, _ = box.reset(seed=3)
            od, _ = dct.reset(seed=3)
        else:
            ob, *_ = box.step(a)
            od, *_ = dct.step(a)
        assert dct.observation_space.contains(od)
        assert np.array_equal(ob, np.concatenate([v.ravel() for v in od.values()]))


def test_seeded_determinism(retriever):
    a, b = make_env(retriever), make_env(retriever)
    for seed in (0, 1):
        oa, _ = a.reset(seed=seed)
        ob, _ = b.reset(seed=seed)
        assert np.array_equal(oa, ob)
        for _ in range(2):
            act = int(np.flatnonzero(a.action_masks())[0])
            oa, ra, ta, *_ = a.step(act)
            ob, rb, tb, *_ = b.step(act)
            assert np.array_equal(oa, ob) and ra == rb and ta == tb


# ------------------------------------------------------------------ mask
def test_mask_masks_repeated_searches_and_empty_slots(retriever):
    env = make_env(retriever)
    env.reset(options={"question_id": "tq0"})
    _, _, _, _, info = env.step(0)
    mask = env.action_masks()
    assert np.array_equal(mask, info["action_mask"]) and mask.dtype == np.bool_
    filled = np.array([p is not None for p in env.phrases])
    assert not mask[0] and mask[M]  # Ostrand searched: no repeat search, answering it is still allowed
    assert np.array_equal(mask[M:], filled) and np.array_equal(mask[1:M], filled[1:])
    unmasked = make_env(retriever, mask_repeated_searches=False)
    unmasked.reset(options={"question_id": "tq0"})
    unmasked.step(0)
    assert unmasked.action_masks()[0]


def test_masked_actions_are_still_accepted(retriever):
    env = make_env(retriever)
    env.reset(options={"question_id": "tq0"})
    _, reward, terminated, _, info = env.step(1)  # empty slot: an empty action, the env's format penalty
    assert info["action_text"] == "" and info["action_type"] == "invalid" and reward == DEFAULT_FORMAT_PENALTY
    assert not terminated and env.phrases[0] == "Ostrand"  # the format hint does not replace the phrases
    _, _, _, _, info = env.step(0)
    _, _, _, _, info = env.step(0)  # masked repeat search: sent as is
    assert info["action_text"] == "<search> Ostrand </search>" and info["action_type"] == "search"


@pytest.mark.parametrize("bad", [-1, 2 * M, 1.5, "0"])
def test_out_of_space_action_raises(retriever, bad):
    env = make_env(retriever)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"`action` must be an int in \[0, 12\)"):
        env.step(bad)


# ------------------------------------------------------------------ rewards pass through
def test_information_gain_reward_arrives_unchanged(retriever):
    env = make_env(retriever, ig=True)
    text_env = InformationGainWrapper(gym.make("SearchQA-v0", dataset=toy_qa(), retriever=retriever), OverlapScorer())
    env.reset(options={"question_id": "tq1"})
    _, info_t = text_env.reset(options={"question_id": "tq1"})
    for slot in (0, None, "answer"):
        if slot is None:
            slot = env.phrases.index("Karsel")
        elif slot == "answer":
            slot = M + env.phrases.index("Ilka Maren")
        _, reward, terminated, _, info = env.step(slot)
        _, reward_t, terminated_t, _, info_t = text_env.step(info["action_text"])
        assert reward == reward_t and terminated == terminated_t
        assert info["information_gain"] == info_t["information_gain"] or terminated
    assert reward == 1.0


# ------------------------------------------------------------------ checks
@pytest.mark.parametrize("fmt", ["box", "dict"])
def test_sb3_check_env(retriever, fmt):
    check_env = pytest.importorskip("stable_baselines3.common.env_checker").check_env
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unconventional shape.*")  # dict: (M, D) arrays by design
        check_env(make_env(retriever, observation_format=fmt), warn=True)


def test_gymnasium_check_env(retriever):
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version.*")  # a wrapper, by design
        check_env(make_env(retriever), skip_render_check=True)


def test_constructor_validation(retriever):
    with pytest.raises(ValueError, match="`num_question_phrases` must be an int >= 1, got 0"):
        make_env(retriever, num_question_phrases=0)
    with pytest.raises(ValueError, match="`num_observation_phrases` must be an int >= 0, got -1"):
        make_env(retriever, num_observation_phrases=-1)
    with pytest.raises(ValueError, match="`observation_format` must be one of"):
        make_env(retriever, observation_format="image")
    with pytest.raises(TypeError, match="must be a SearchQA-v0 env"):
        CandidateActionWrapper(gym.make("CartPole-v1"), HashingEncoder(4))
    with pytest.raises(TypeError, match="`encoder` must be a CachedEncoder"):
        CandidateSpace(HashingEncoder(4))


def test_spec_records_arguments(retriever):
    env = make_env(retriever)
    kwargs = env.spec.additional_wrappers[-1].kwargs
    assert kwargs["num_observation_phrases"] == NO and kwargs["observation_format"] == "box"
