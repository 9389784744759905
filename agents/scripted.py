"""Scripted agents for SearchQA-v0: random, oracle and noisy oracle, plus episode runners.

- :class:`RandomAgent`: random searches / answers / malformed text built from words it has seen (F1 ~0).
- :class:`OracleAgent`: reads the hidden hop structure of the current question (``env.unwrapped.question``), searches
  each hop's entity in order, then answers with the gold answer (F1 ~1.0). For tests, baselines and SFT data.
- :class:`NoisyOracleAgent`: the oracle with mistakes drawn per episode: a wrong query before the right one, redundant
  repeat searches, and early wrong answers. Mistaken actions are flagged (:attr:`ScriptedAction.mistake`) so SFT can
  leave them out of the loss.

Every agent has ``reset(seed=None)``, ``act(observation, info) -> str`` (single env) and
``act_batch(observations, infos) -> list[str]`` (vector env). Actions look like what a model should write::

    <think>I need the founder of Zekek.</think>
    <search> Zekek founder </search>

:func:`run_episode` plays one episode in a single env; :func:`run_vector_episodes` plays many in a vector env.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from igpo_env.actions import format_answer, format_search
from igpo_env.types import Message, QAExample

__all__ = [
    "ScriptedAction",
    "RandomAgent",
    "OracleAgent",
    "NoisyOracleAgent",
    "Episode",
    "run_episode",
    "run_vector_episodes",
    "format_search",
    "format_answer",
    "RELATION_PHRASES",
    "oracle_plan",
]

RELATION_PHRASES: dict[str, str] = {
    "founded_year": "founding year",
    "founded_by": "founder",
    "population": "population",
    "born_in": "birthplace",
    "educated_at": "university",
    "birth_year": "birth year",
    "death_year": "death year",
    "country": "country",
    "length_km": "length",
    "release_year": "release year",
    "located_in": "location",
    "headquarters": "headquarters",
    "directed_by": "director",
    "capital": "capital",
    "source_country": "source country",
    "occupation": "occupation",
    "independence_year": "independence year",
    "currency": "currency",
    "students": "number of students",
    "genre": "genre",
    "employees": "number of employees",
    "industry": "industry",
    "runtime_min": "runtime",
    "mouth": "mouth",
}
"""Readable SynthWiki relation names for the oracle's thoughts and queries (unknown ones: ``a_b`` -> ``a b``)."""

_WORD_RE = re.compile(r"\w+", flags=re.UNICODE)
_MAX_RANDOM_WORDS = 4


class ScriptedAction(NamedTuple):
    """One planned action: its text and whether it is a deliberate mistake (wrong query / redundant / wrong answer)."""

    text: str
    mistake: bool = False


def _phrase(relation: str) -> str:
    return RELATION_PHRASES.get(relation, relation.replace("_", " "))


def _hops(question: QAExample, titles: dict[str, str] | None) -> list[dict[str, str]]:
    """Hop structure of a question: SynthWiki ``metadata["hops"]``, else supporting doc titles, else the question."""
    hops = question.metadata.get("hops") if isinstance(question.metadata, dict) else None
    if hops:
        return [dict(h) for h in hops]
    if titles and question.supporting_doc_ids:
        return [
            {"entity": titles[d], "relation": "", "answer": ""} for d in question.supporting_doc_ids if d in titles
        ]
    return [{"entity": question.question, "relation": "", "answer": ""}]


def _hop_query(hop: dict[str, str]) -> str:
    rel = hop.get("relation", "")
    return f"{hop['entity']} {_phrase(rel)}" if rel else hop["entity"]


def _need(hop: dict[str, str]) -> str:
    rel = hop.get("relation", "")
    return f"I need the {_phrase(rel)} of {hop['entity']}." if rel else f"I need to look up {hop['entity']}."


def _found(hop: dict[str, str]) -> str:
    rel, ans = hop.get("relation", ""), hop.get("answer", "")
    if rel and ans:
        return f"The {_phrase(rel)} of {hop['entity']} is {ans}."
    return f"I found the passage about {hop['entity']}."


def _hop_think(hops: list[dict[str, str]], i: int) -> str:
    """Thought before hop ``i``'s search: what the previous hop found, then what is needed now."""
    return _need(hops[i]) if i == 0 else f"{_found(hops[i - 1])} {_need(hops[i])}"


def _final_think(question: QAExample, hops: list[dict[str, str]]) -> str:
    """Thought before the answer: the last fact found (comparisons: both facts), then the answer."""
    found = " ".join(_found(h) for h in hops) if question.data_source.endswith("comparison") else _found(hops[-1])
    return f"{found} So the answer is {question.golden_answers[0]}."


def oracle_plan(
    question: QAExample, protocol: str = "tags", titles: dict[str, str] | None = None
) -> list[ScriptedAction]:
    """Plan the oracle's actions for a question: one search per hop, then the gold answer.

    Example:
        >>> from igpo_env.data.toy import toy_qa
        >>> plan = oracle_plan(toy_qa()[1], titles={"t1": "Ostrand", "t2": "Karsel"})
        >>> [a.text.splitlines()[-1] for a in plan]
        ['<search> Ostrand </search>', '<search> Karsel </search>', '<answer> Ilka Maren </answer>']
    """
    hops = _hops(question, titles)
    actions = []
    for i, hop in enumerate(hops):
        actions.append(ScriptedAction(format_search(_hop_query(hop), _hop_think(hops, i), protocol)))
    actions.append(ScriptedAction(format_answer(question.golden_answers[0], _final_think(question, hops))))
    return actions


class _EnvAgent:
    """Shared plumbing: reads hidden questions from a single or vector env and replays per-episode plans."""

    def __init__(self, env: Any, titles: dict[str, str] | None = None) -> None:
        base = getattr(env, "unwrapped", env)
        self._subenvs = list(base.envs) if hasattr(base, "envs") else [base]
        if not all(hasattr(e, "question") for e in self._subenvs):
            raise TypeError(f"`env` must be a SearchQA-v0 env or vector env, got {type(base).__name__}")
        self.protocol = getattr(self._subenvs[0], "protocol", "tags")
        self.titles = titles
        self._plans: list[list[ScriptedAction]] = [[] for _ in self._subenvs]
        self._episode_keys: list[tuple[str, int] | None] = [None] * len(self._subenvs)
        self.last_mistakes: list[bool] = [False] * len(self._subenvs)
        """Whether the last action each slot produced was a deliberate mistake."""

    def reset(self, seed: int | None = None) -> None:
        """Forget all plans (a new plan is also made whenever an episode starts, at ``info["turn"] == 0``)."""
        self._episode_keys = [None] * len(self._subenvs)

    def _plan(self, question: QAExample, slot: int) -> list[ScriptedAction]:
        return oracle_plan(question, self.protocol, self.titles)

    def _act_slot(self, slot: int, turn: int) -> str:
        question = self._subenvs[slot].question
        if question is None:
            raise RuntimeError("reset the env before asking the agent to act")
        if turn == 0 or self._episode_keys[slot] is None or self._episode_keys[slot][0] != question.id:
            self._plans[slot] = self._plan(question, slot)
            self._episode_keys[slot] = (question.id, turn)
        start = self._episode_keys[slot][1]
        plan = self._plans[slot]
        action = plan[min(turn - start, len(plan) - 1)]
        self.last_mistakes[slot] = action.mistake
        return action.text

    @property
    def last_mistake(self) -> bool:
        """Whether the last single-env action was a deliberate mistake."""
        return self.last_mistakes[0]

    def act(self, observation: str, info: dict[str, Any]) -> str:
        """Return the next action of the (single-env) episode; ``info["turn"]`` tells where it is."""
        return self._act_slot(0, int(info["turn"]))

    def act_batch(self, observations: Sequence[str], infos: dict[str, Any]) -> list[str]:
        """Return one action per sub-env of the vector env this agent was built with."""
        if len(observations) != len(self._subenvs):
            raise ValueError(f"got {len(observations)} observations for {len(self._subenvs)} sub-envs")
        return [self._act_slot(i, int(infos["turn"][i])) for i in range(len(self._subenvs))]


class OracleAgent(_EnvAgent):
    """Searches each hop's entity (from the hidden ``metadata["hops"]``) in order, then answers with the gold answer.

    Uses hidden labels: for tests, baselines and SFT data only. Without SynthWiki hops it searches the titles of the
    supporting docs (when ``titles`` maps doc ids to titles) or else the question itself.

    Args:
        env: The SearchQA-v0 env (single, wrapped or vector) whose questions it reads.
        titles: Optional ``{doc_id: title}`` for datasets without hop metadata.

    Example:
        >>> import gymnasium as gym, igpo_env
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> docs = toy_corpus()
        >>> env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(docs))
        >>> agent = OracleAgent(env, titles={d.id: d.title for d in docs})
        >>> ep = run_episode(env, agent, options={"question_id": "tq1"})  # 2 hops: Ostrand -> Karsel
        >>> ep.final_info["f1"], ep.turns
        (1.0, 3)

    Change logs:
        v0.1.0: added.
    """


class NoisyOracleAgent(_EnvAgent):
    """The oracle with mistakes drawn per episode, for imperfect SFT data and credit-assignment tests.

    Per hop: with ``p_wrong_query`` it first searches a wrong query (the relation alone, or another hop's entity),
    then corrects itself; with ``p_redundant`` it repeats the hop's search. Per hop after the first search, with
    ``p_wrong_answer`` it answers early with a wrong answer (the bridge entity found so far, or a guess), ending the
    episode. Mistaken actions set :attr:`last_mistake` / :attr:`last_mistakes`.

    Args:
        env: The SearchQA-v0 env (single, wrapped or vector).
        p_wrong_query: Probability of a wrong query before each hop's correct one.
        p_redundant: Probability of repeating each hop's search.
        p_wrong_answer: Probability, at each hop, of answering early with a wrong answer.
        seed: Seed of the agent's RNG (also settable through :meth:`reset`).
        titles: Optional ``{doc_id: title}`` for datasets without hop metadata.

    Example:
        >>> from igpo_env.data.toy import toy_qa
        >>> from igpo_env.envs.search_qa import SearchQAEnv
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.data.toy import toy_corpus
        >>> env = SearchQAEnv(dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> agent = NoisyOracleAgent(env, p_wrong_query=1.0, p_redundant=0.0, p_wrong_answer=0.0, seed=0)
        >>> plan = agent.plan(toy_qa()[0])
        >>> [a.mistake for a in plan]
        [True, False, False]

    Change logs:
        v0.1.0: added.
    """

    def __init__(
        self,
        env: Any,
        p_wrong_query: float = 0.2,
        p_redundant: float = 0.1,
        p_wrong_answer: float = 0.1,
        seed: int | None = None,
        titles: dict[str, str] | None = None,
    ) -> None:
        for name, p in (
            ("p_wrong_query", p_wrong_query),
            ("p_redundant", p_redundant),
            ("p_wrong_answer", p_wrong_answer),
        ):
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"`{name}` must be a probability in [0, 1], got {p!r}")
        super().__init__(env, titles)
        self.p_wrong_query = float(p_wrong_query)
        self.p_redundant = float(p_redundant)
        self.p_wrong_answer = float(p_wrong_answer)
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        """Forget plans; reseed the RNG when ``seed`` is given."""
        super().reset(seed)
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def _wrong_query(self, hops: list[dict[str, str]], i: int) -> str:
        others = [h["entity"] for j, h in enumerate(hops) if j != i and h["entity"] != hops[i]["entity"]]
        rel = hops[i].get("relation", "")
        if others and self.rng.random() < 0.5:
            return f"{others[int(self.rng.integers(len(others)))]} {_phrase(rel)}".strip()
        return _phrase(rel) if rel else " ".join(hops[i]["entity"].split()[:1]) + " history"

    def plan(self, question: QAExample) -> list[ScriptedAction]:
        """Draw this episode's actions (mistakes flagged)."""
        hops = _hops(question, self.titles)
        gold = question.golden_answers[0]
        p = self.protocol
        out: list[ScriptedAction] = []
        for i, hop in enumerate(hops):
            need = _need(hop)
            if self.rng.random() < self.p_wrong_answer:
                wrong = hops[i - 1].get("answer") if i > 0 else None
                if not wrong or wrong in question.golden_answers:
                    wrong = "unknown"
                think = f"{_found(hops[i - 1])} So the answer is {wrong}." if i > 0 else "I think I already know this."
                out.append(ScriptedAction(format_answer(wrong, think), mistake=True))
                return out
            if self.rng.random() < self.p_wrong_query:
                out.append(
                    ScriptedAction(format_search(self._wrong_query(hops, i), _hop_think(hops, i), p), mistake=True)
                )
                out.append(ScriptedAction(format_search(_hop_query(hop), f"That did not help. {need}", p)))
            else:
                out.append(ScriptedAction(format_search(_hop_query(hop), _hop_think(hops, i), p)))
            if self.rng.random() < self.p_redundant:
                think = (
                    f"Let me double-check the {_phrase(hop['relation'])} of {hop['entity']}."
                    if hop.get("relation")
                    else f"Let me look up {hop['entity']} again."
                )
                out.append(ScriptedAction(format_search(_hop_query(hop), think, p), mistake=True))
        out.append(ScriptedAction(format_answer(gold, _final_think(question, hops))))
        return out

    def _plan(self, question: QAExample, slot: int) -> list[ScriptedAction]:
        return self.plan(question)


class RandomAgent:
    """Random actions: searches of words seen so far, answers of a random seen word, or malformed text.

    Args:
        p_search: Probability of a search action.
        p_answer: Probability of an answer action (the rest are malformed).
        seed: Seed of the agent's RNG.
        protocol: ``"tags"`` or ``"tool_call"`` (how searches are written).

    Example:
        >>> agent = RandomAgent(seed=0)
        >>> isinstance(agent.act("Question: Who founded Karsel?", {"turn": 0}), str)
        True

    Change logs:
        v0.1.0: added.
    """

    def __init__(self, p_search: float = 0.5, p_answer: float = 0.3, seed: int | None = None, protocol: str = "tags"):
        for name, p in (("p_search", p_search), ("p_answer", p_answer)):
            if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"`{name}` must be a probability in [0, 1], got {p!r}")
        if p_search + p_answer > 1.0:
            raise ValueError(f"`p_search + p_answer` must be <= 1, got {p_search} + {p_answer}")
        self.p_search, self.p_answer, self.protocol = float(p_search), float(p_answer), protocol
        self.rng = np.random.default_rng(seed)
        self.last_mistake = False

    def reset(self, seed: int | None = None) -> None:
        """Reseed the RNG when ``seed`` is given."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def _words(self, observation: str, n: int) -> str:
        words = _WORD_RE.findall(observation) or ["nothing"]
        return " ".join(words[int(i)] for i in self.rng.integers(len(words), size=n))

    def act(self, observation: str, info: dict[str, Any] | None = None) -> str:
        """Return a random action built from the observation's words."""
        u = self.rng.random()
        if u < self.p_search:
            return format_search(
                self._words(observation, int(self.rng.integers(1, _MAX_RANDOM_WORDS + 1))), None, self.protocol
            )
        if u < self.p_search + self.p_answer:
            return format_answer(self._words(observation, 1))
        return self._words(observation, int(self.rng.integers(1, _MAX_RANDOM_WORDS + 1)))

    def act_batch(self, observations: Sequence[str], infos: dict[str, Any] | None = None) -> list[str]:
        """One random action per observation."""
        return [self.act(o) for o in observations]


@dataclass
class Episode:
    """One finished episode: the transcript, per-turn rewards and how it ended."""

    question_id: str
    messages: list[Message]
    rewards: list[float] = field(default_factory=list)
    mistakes: list[bool] = field(default_factory=list)
    terminated: bool = False
    truncated: bool = False
    final_info: dict[str, Any] = field(default_factory=dict)

    @property
    def turns(self) -> int:
        """Number of actions taken."""
        return len(self.rewards)

    @property
    def total_reward(self) -> float:
        """Sum of the rewards."""
        return float(sum(self.rewards))


def run_episode(env: Any, agent: Any, seed: int | None = None, options: dict[str, Any] | None = None) -> Episode:
    """Play one episode of ``env`` (a ``gym.make("SearchQA-v0")`` env) with ``agent``.

    Returns:
        The :class:`Episode` (``final_info`` holds ``em``/``f1`` when the agent answered).

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.envs.search_qa import SearchQAEnv
        >>> from igpo_env.retrieval import BM25Retriever
        >>> env = SearchQAEnv(dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()), max_turns=5)
        >>> run_episode(env, RandomAgent(seed=0), seed=0).turns <= 5
        True
    """
    agent.reset(seed)
    obs, info = env.reset(seed=seed, options=options)
    ep = Episode(question_id=info["question_id"], messages=info["messages"])
    while True:
        action = agent.act(obs, info)
        ep.mistakes.append(bool(getattr(agent, "last_mistake", False)))
        obs, reward, terminated, truncated, info = env.step(action)
        ep.rewards.append(float(reward))
        if terminated or truncated:
            ep.terminated, ep.truncated, ep.final_info, ep.messages = terminated, truncated, info, info["messages"]
            return ep


def run_vector_episodes(envs: Any, agent: Any, num_episodes: int, seed: int | None = None) -> list[Episode]:
    """Play ``num_episodes`` episodes in a SearchQA vector env (NEXT_STEP autoreset), batching the agent's actions.

    Episodes are returned in the order they finish (the first ``num_episodes`` to finish).

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.envs.vector import SearchQAVectorEnv
        >>> from igpo_env.retrieval import BM25Retriever
        >>> docs = toy_corpus()
        >>> envs = SearchQAVectorEnv(4, dataset=toy_qa(), retriever=BM25Retriever.from_docs(docs))
        >>> eps = run_vector_episodes(envs, OracleAgent(envs, titles={d.id: d.title for d in docs}), 6, seed=0)
        >>> len(eps), {e.final_info["f1"] for e in eps}
        (6, {1.0})
    """
    if isinstance(num_episodes, bool) or not isinstance(num_episodes, int) or num_episodes < 1:
        raise ValueError(f"`num_episodes` must be an int >= 1, got {num_episodes!r}")
    agent.reset(seed)
    obs, infos = envs.reset(seed=seed)
    n = len(obs)
    episodes: list[Episode] = []
    current = [Episode(question_id=infos["question_id"][i], messages=[]) for i in range(n)]
    needs_reset = np.zeros(n, dtype=bool)
    while len(episodes) < num_episodes:
        actions = agent.act_batch(obs, infos)
        mistakes = list(getattr(agent, "last_mistakes", [False] * n))
        obs, rewards, terminated, truncated, infos = envs.step(actions)
        for i in range(n):
            if needs_reset[i]:  # this step was the autoreset of env i: a new episode starts
                current[i] = Episode(question_id=infos["question_id"][i], messages=[])
                continue
            ep = current[i]
            ep.rewards.append(float(rewards[i]))
            ep.mistakes.append(bool(mistakes[i]))
            if terminated[i] or truncated[i]:
                ep.terminated, ep.truncated = bool(terminated[i]), bool(truncated[i])
                ep.final_info = {
                    k: v[i].item() if isinstance(v[i], np.generic) else v[i]
                    for k, v in infos.items()
                    if not k.startswith("_") and infos[f"_{k}"][i]
                }
                ep.messages = ep.final_info["messages"]
                episodes.append(ep)
        needs_reset = terminated | truncated
    return episodes[:num_episodes]
