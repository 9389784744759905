"""SearchQA-v0: a multi-turn search question-answering environment with text actions and observations.

The README's "Usage" shows it at work; the action protocols are :data:`igpo_env.actions.PROTOCOLS` (parsed by
:func:`igpo_env.actions.parse_action`). The vector twin is :class:`igpo_env.envs.vector.SearchQAVectorEnv`.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym

from igpo_env._validation import check_choice, check_int
from igpo_env.actions import (
    PROTOCOLS,
    WEB_SEARCH_TOOL,
    ParsedAction,
    format_hint,
    format_observation,
    parse_action,
    truncate_text,
)
from igpo_env.data import load_qa
from igpo_env.envs.spaces import UnicodeText
from igpo_env.metrics import ANSWER_NORMALIZATIONS, METRICS, Normalization, score_answer
from igpo_env.prompts import DEFAULT_PROMPT_TEMPLATE, TOOL_CALL_PROMPT_TEMPLATE
from igpo_env.retrieval.base import Retriever, RetrieverSpec
from igpo_env.types import Doc, Message, QAExample

__all__ = [
    "SearchQAEnv",
    "DEFAULT_TOP_K",
    "DEFAULT_FORMAT_PENALTY",
    "DEFAULT_MAX_ACTION_CHARS",
    "DEFAULT_MAX_OBSERVATION_CHARS",
    "OBSERVATION_ROLES",
    "resolve_dataset",
    "resolve_retriever",
]

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 3
"""Passages returned per search query (Search-R1 / IGPO use 3)."""

DEFAULT_FORMAT_PENALTY = -2.0
"""Reward of an invalid action (IGPO's penalty for malformed responses)."""

DEFAULT_MAX_ACTION_CHARS = 4096
"""Longest action text kept; longer actions are cut (with the truncation marker) before parsing."""

DEFAULT_MAX_OBSERVATION_CHARS = 8192
"""Longest observation; longer prompts, passage lists and hints are cut with the truncation marker."""

OBSERVATION_ROLES = ("user", "tool")
_DEFAULT_ROLE = {"tags": "user", "tool_call": "tool"}
_DEFAULT_TEMPLATE = {"tags": DEFAULT_PROMPT_TEMPLATE, "tool_call": TOOL_CALL_PROMPT_TEMPLATE}
CORPUS_FILE = "corpus.jsonl"


class PendingStep(NamedTuple):
    """The first half of a step: the parsed action, waiting for its search results (used by the vector env)."""

    parsed: ParsedAction
    queries: tuple[str, ...]


def resolve_dataset(dataset: Any, split: str) -> tuple[list[QAExample], Path | None]:
    """Load the QA examples of ``dataset`` and find the corpus that goes with them, if any.

    Args:
        dataset: ``None`` (the default SynthWiki world), a world / FlashRAG directory, a QA file, a
            ``datasets.Dataset`` / ``DatasetDict`` or an iterable of :class:`QAExample`.
        split: The split to take from a directory or a ``DatasetDict``.

    Returns:
        The examples and the ``corpus.jsonl`` next to them (``None`` when the data is not a directory holding one).

    Raises:
        ValueError: if the dataset is empty.

    Example:
        >>> from igpo_env.data.toy import toy_qa
        >>> examples, corpus = resolve_dataset(toy_qa(), "train")
        >>> len(examples), corpus
        (4, None)
    """
    corpus: Path | None = None
    if dataset is None:
        from igpo_env.data.synthwiki import default_world

        dataset = default_world()
    if isinstance(dataset, (str, os.PathLike)):
        path = Path(dataset)
        if path.is_dir() and (path / CORPUS_FILE).is_file():
            corpus = path / CORPUS_FILE
        examples = load_qa(path, split)
    else:
        examples = load_qa(dataset, split)
    if not examples:
        raise ValueError(f"`dataset` holds no questions (split {split!r}); pass a non-empty QA set")
    return list(examples), corpus


def resolve_retriever(retriever: RetrieverSpec | None, corpus: Path | None) -> Retriever:
    """Return a retriever object from ``retriever`` (object, URL, index dir or corpus path) or the dataset's corpus.

    Raises:
        ValueError: when no retriever is given and the dataset has no corpus next to it.
        TypeError: when ``retriever`` has no ``search`` method.

    Example:
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.data.toy import toy_corpus
        >>> r = BM25Retriever.from_docs(toy_corpus())
        >>> resolve_retriever(r, None) is r
        True
    """
    if retriever is None:
        if corpus is None:
            raise ValueError(
                "`retriever` is None and `dataset` is not a directory holding corpus.jsonl: pass `retriever` "
                "(a Retriever object, an http(s) URL, an index directory or a corpus .jsonl path)"
            )
        retriever = str(corpus)
    if isinstance(retriever, (str, os.PathLike)):
        from igpo_env.retrieval import get_retriever

        return get_retriever(str(retriever))
    if not callable(getattr(retriever, "search", None)):
        raise TypeError(
            f"`retriever` must have a search(queries, k) method or be a URL / path, got {type(retriever).__name__}"
        )
    return retriever


def _check_args(
    top_k: Any,
    max_turns: Any,
    reward: Any,
    normalization: Any,
    format_penalty: Any,
    prompt_template: Any,
    protocol: Any,
    observation_role: Any,
    system_prompt: Any,
    max_action_chars: Any,
    max_observation_chars: Any,
    render_mode: Any,
) -> None:
    check_int("top_k", top_k, minimum=1)
    check_int("max_turns", max_turns, minimum=1, optional=True)
    check_int("max_action_chars", max_action_chars, minimum=1)
    check_int("max_observation_chars", max_observation_chars, minimum=1)
    check_choice("reward", reward, tuple(METRICS))
    check_choice("normalization", normalization, ANSWER_NORMALIZATIONS)
    if isinstance(format_penalty, bool) or not isinstance(format_penalty, (int, float)):  # stays a TypeError
        raise TypeError(f"`format_penalty` must be a number, got {format_penalty!r}")
    check_choice("protocol", protocol, PROTOCOLS)
    check_choice("observation_role", observation_role, (*OBSERVATION_ROLES, None))
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise TypeError(f"`system_prompt` must be a str or None, got {type(system_prompt).__name__}")
    check_choice("render_mode", render_mode, (None, *SearchQAEnv.metadata["render_modes"]))
    if prompt_template is not None:
        if not isinstance(prompt_template, str):
            raise TypeError(f"`prompt_template` must be a str, got {type(prompt_template).__name__}")
        try:
            prompt_template.format(question="?")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"`prompt_template` must be a str.format template whose only field is {{question}} "
                f"(double other braces), got {prompt_template!r}: {e!r}"
            ) from e
        if "{question}" not in prompt_template:
            raise ValueError(f"`prompt_template` must contain '{{question}}', got {prompt_template!r}")


class SearchQAEnv(gym.Env[str, str]):
    """Multi-turn search QA: the agent searches a corpus with text queries, then answers.

    Each episode is one question. Actions and observations are text (:class:`~igpo_env.envs.spaces.UnicodeText`).

    - ``reset`` returns the user prompt (``prompt_template`` filled with the question).
    - ``step(action)``: the first complete tag pair decides (see :func:`igpo_env.actions.parse_action`).
      A search returns ``"\\n\\n<information>Doc 1(Title: T) text\\nDoc 2(Title: T) text</information>\\n\\n"``
      (retrieved text escaped, cut at ``max_observation_chars``) and reward 0; an answer terminates with the
      outcome reward (``reward`` metric, max over the gold aliases) and an empty observation; anything else returns a
      short format hint and ``format_penalty``, and still uses a turn.
    - ``terminated`` means the agent answered. Truncation comes from ``gymnasium.wrappers.TimeLimit``:
      ``gym.make("SearchQA-v0")`` truncates after 10 turns; change it with
      ``gym.make("SearchQA-v0", max_episode_steps=N)``. ``max_turns=N`` additionally makes the raw env itself report
      ``truncated=True`` at turn ``N`` (a safety cap for use without ``gym.make``; leave it ``None`` under TimeLimit).

    ``info`` keys (every step; the gold answer is never in an observation or ``info``):
        ``question_id`` (str), ``data_source`` (str), ``turn`` (int, turns taken, 0 after reset),
        ``messages`` (list of ``{"role", "content"}``: the chat transcript so far, a fresh copy each call:
        ``[system?], user prompt, assistant action_1, observation_1, ...``; observations use ``observation_role``),
        ``retrieved_doc_ids`` (list of str: ids this turn's search returned, all queries in order; else empty),
        ``action_type`` (``"search"`` | ``"answer"`` | ``"invalid"``; not after reset).
        On termination also ``em``, ``f1``, ``cover_em`` (floats) and ``outcome`` (the reward given).

    Hidden labels for wrappers and benchmarks: :attr:`ground_truth`, :attr:`supporting_doc_ids`, :attr:`question`.

    Args:
        dataset: ``None`` (the default SynthWiki world, built and cached on first use), a directory with
            ``{split}.jsonl``/``.parquet`` (and ``corpus.jsonl``), a FlashRAG ``.jsonl`` / verl ``.parquet`` file, a
            ``datasets.Dataset``/``DatasetDict`` or an iterable of :class:`~igpo_env.types.QAExample`.
        split: Split to use from a directory or ``DatasetDict``.
        retriever: An object with ``search(queries, k) -> list[list[Doc]]``, or a spec for
            :func:`igpo_env.retrieval.get_retriever` (URL, index dir, corpus ``.jsonl``). ``None``: BM25 over the
            dataset directory's ``corpus.jsonl`` (index cached on disk).
        top_k: Passages per query.
        max_turns: Optional in-env turn cap (see above); ``None`` leaves truncation to TimeLimit.
        reward: Outcome metric: ``"f1"`` | ``"em"`` | ``"cover_em"``.
        normalization: Answer normalization, ``"squad"`` | ``"igpo"`` (see :mod:`igpo_env.metrics`).
        format_penalty: Reward of an invalid action.
        prompt_template: ``str.format`` template with ``{question}``; default depends on ``protocol``.
        protocol: ``"tags"`` (``<search>``) or ``"tool_call"`` (``<tool_call>`` JSON, see :attr:`tool_schema`).
        observation_role: Role of observation messages; default ``"user"`` for tags, ``"tool"`` for tool_call.
        system_prompt: Optional system message placed first in ``messages`` (not part of any observation).
        max_action_chars: Actions longer than this are cut (with the truncation marker) before parsing.
        max_observation_chars: Longest observation (the observation space's ``max_length``).
        render_mode: ``None`` or ``"ansi"`` (``render()`` returns the transcript as text).

    Example:
        >>> import gymnasium as gym, igpo_env
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> env = gym.make("SearchQA-v0", dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> obs, info = env.reset(options={"question_id": "tq0"})
        >>> obs.endswith("Question: What is the capital of Ostrand?\\n"), info["turn"]
        (True, 0)
        >>> obs, reward, terminated, truncated, info = env.step("<think>Look.</think>\\n<search> Ostrand </search>")
        >>> obs.startswith("\\n\\n<information>Doc 1(Title: Ostrand)"), reward, info["retrieved_doc_ids"][0]
        (True, 0.0, 't1')
        >>> obs, reward, terminated, truncated, info = env.step("<answer> Karsel </answer>")
        >>> reward, terminated, info["em"], [m["role"] for m in info["messages"]]
        (1.0, True, 1.0, ['user', 'assistant', 'user', 'assistant'])

    Change logs:
        v0.1.0: initial version (SearchQA-v0).
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 1}  # fps: nominal (text), declared for gymnasium checks

    def __init__(
        self,
        dataset: Any = None,
        split: str = "train",
        retriever: RetrieverSpec | None = None,
        top_k: int = DEFAULT_TOP_K,
        max_turns: int | None = None,
        reward: str = "f1",
        normalization: Normalization = "squad",
        format_penalty: float = DEFAULT_FORMAT_PENALTY,
        prompt_template: str | None = None,
        protocol: str = "tags",
        observation_role: str | None = None,
        system_prompt: str | None = None,
        max_action_chars: int = DEFAULT_MAX_ACTION_CHARS,
        max_observation_chars: int = DEFAULT_MAX_OBSERVATION_CHARS,
        render_mode: str | None = None,
    ) -> None:
        _check_args(
            top_k,
            max_turns,
            reward,
            normalization,
            format_penalty,
            prompt_template,
            protocol,
            observation_role,
            system_prompt,
            max_action_chars,
            max_observation_chars,
            render_mode,
        )
        self.top_k = top_k
        self.max_turns = max_turns
        self.reward_metric = reward
        self.normalization = normalization
        self.format_penalty = float(format_penalty)
        self.protocol = protocol
        self.prompt_template = prompt_template if prompt_template is not None else _DEFAULT_TEMPLATE[protocol]
        self.observation_role = observation_role or _DEFAULT_ROLE[protocol]
        self.system_prompt = system_prompt
        self.max_action_chars = max_action_chars
        self.max_observation_chars = max_observation_chars
        self.render_mode = render_mode

        self._examples, corpus = resolve_dataset(dataset, split)
        self._retriever = resolve_retriever(retriever, corpus)
        self._index_of_id = {ex.id: i for i, ex in enumerate(self._examples)}

        self.observation_space = UnicodeText(max_observation_chars)
        self.action_space = UnicodeText(max_action_chars)

        self.question: QAExample | None = None
        """The current question (hidden label holder; ``None`` before the first reset)."""
        self.messages: list[Message] = []
        """The live chat transcript of the current episode (``info["messages"]`` holds copies)."""
        self._turn = 0
        self._done = False

    # ------------------------------------------------------------------ hidden labels and helpers
    @property
    def examples(self) -> Sequence[QAExample]:
        """The questions this env draws from (read-only view)."""
        return tuple(self._examples)

    @property
    def retriever(self) -> Retriever:
        """The retriever answering searches."""
        return self._retriever

    @property
    def ground_truth(self) -> tuple[str, ...]:
        """Gold answer aliases of the current question (first = canonical). Hidden from the agent."""
        return tuple(self._require_question().golden_answers)

    @property
    def supporting_doc_ids(self) -> tuple[str, ...]:
        """Corpus ids of the current question's supporting passages, in hop order (may be empty)."""
        return tuple(self._require_question().supporting_doc_ids)

    @property
    def turn(self) -> int:
        """Turns taken in the current episode."""
        return self._turn

    @property
    def tool_schema(self) -> dict[str, Any]:
        """OpenAI function schema of the ``web_search`` tool (pass it as ``tools=[...]`` to a chat template)."""
        return copy.deepcopy(WEB_SEARCH_TOOL)

    def _require_question(self) -> QAExample:
        if self.question is None:
            raise gym.error.ResetNeeded("call reset() before reading the current question's labels")
        return self.question

    def _pick_index(self, options: dict[str, Any] | None) -> int:
        options = options or {}
        if "index" in options and "question_id" in options:
            raise ValueError(f"pass either options['index'] or options['question_id'], not both: {options}")
        if "question_id" in options:
            qid = str(options["question_id"])
            if qid not in self._index_of_id:
                n = len(self._examples)
                raise KeyError(f"options['question_id']={qid!r} is not in the dataset ({n} questions)")
            return self._index_of_id[qid]
        if "index" in options:
            index = options["index"]
            n = len(self._examples)
            if isinstance(index, bool) or not hasattr(index, "__index__") or not -n <= int(index) < n:
                raise ValueError(f"options['index'] must be an int in [0, {n}), got {index!r}")
            return int(index) % n
        return int(self.np_random.integers(len(self._examples)))

    def _info(self, **extra: Any) -> dict[str, Any]:
        q = self._require_question()
        return {
            "question_id": q.id,
            "data_source": q.data_source,
            "turn": self._turn,
            "messages": [dict(m) for m in self.messages],
            **extra,
        }

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode on a question chosen by ``options`` or drawn with the env's seeded RNG.

        Args:
            seed: Seeds ``self.np_random``; the same seed picks the same question.
            options: ``{"index": i}`` or ``{"question_id": id}`` picks a question directly.

        Returns:
            The user prompt and the info dict (``turn`` 0, ``retrieved_doc_ids`` empty).
        """
        super().reset(seed=seed)
        self.question = self._examples[self._pick_index(options)]
        prompt = self.prompt_template.format(question=self.question.question)
        prompt = truncate_text(prompt, self.max_observation_chars)
        self.messages = []
        if self.system_prompt is not None:
            self.messages.append({"role": "system", "content": self.system_prompt})
        self.messages.append({"role": "user", "content": prompt})
        self._turn = 0
        self._done = False
        return prompt, self._info(retrieved_doc_ids=[])

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Take one turn: parse ``action``, search or score the answer, return the observation.

        Raises:
            gymnasium.error.ResetNeeded: if called before ``reset`` or after the episode terminated.
            TypeError: if ``action`` is not a ``str``.
        """
        pending = self.begin_step(action)
        results = self._retriever.search(list(pending.queries), self.top_k) if pending.queries else []
        return self.finish_step(pending, results)

    def begin_step(self, action: str) -> PendingStep:
        """First half of :meth:`step`: record and parse the action (no retrieval).

        The vector env calls this on every sub-env, runs one batched search for all pending queries, then calls
        :meth:`finish_step`. ``step(a)`` is exactly ``finish_step(p, retriever.search(p.queries, top_k))``.
        """
        if self.question is None or self._done:
            raise gym.error.ResetNeeded("the episode is over (or never started): call reset()")
        if not isinstance(action, str):
            raise TypeError(f"`action` must be a str (the agent's text), got {type(action).__name__}")
        text = truncate_text(str(action), self.max_action_chars)
        self.messages.append({"role": "assistant", "content": text})
        self._turn += 1
        parsed = parse_action(text, self.protocol)  # type: ignore[arg-type]
        return PendingStep(parsed, parsed.queries if parsed.kind == "search" else ())

    def finish_step(
        self, pending: PendingStep, results: Sequence[Sequence[Doc]]
    ) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Second half of :meth:`step`: build the observation, reward and info from the search results."""
        parsed = pending.parsed
        terminated = False
        extra: dict[str, Any] = {"retrieved_doc_ids": [], "action_type": parsed.kind}
        if parsed.kind == "search":
            if len(results) != len(pending.queries):
                raise ValueError(f"retriever returned {len(results)} result lists for {len(pending.queries)} queries")
            obs = format_observation(pending.queries, results, self.protocol, self.max_observation_chars)  # type: ignore[arg-type]
            reward = 0.0
            extra["retrieved_doc_ids"] = [d.id for docs in results for d in docs]
        elif parsed.kind == "answer":
            golds = self.ground_truth
            scores = {m: score_answer(parsed.answer or "", golds, m, self.normalization) for m in METRICS}  # type: ignore[arg-type]
            reward = scores[self.reward_metric]
            terminated = True
            obs = ""
            extra.update(em=scores["em"], f1=scores["f1"], cover_em=scores["cover_em"], outcome=reward)
        else:
            obs = truncate_text(format_hint(parsed.error, self.protocol), self.max_observation_chars)  # type: ignore[arg-type]
            reward = self.format_penalty
        if not terminated:
            self.messages.append({"role": self.observation_role, "content": obs})
        self._done = terminated
        truncated = self.max_turns is not None and self._turn >= self.max_turns
        return obs, float(reward), terminated, truncated, self._info(**extra)

    def render(self) -> str | None:
        """Return the transcript as ``[role] content`` blocks when ``render_mode="ansi"``."""
        if self.render_mode != "ansi":
            return None
        return "\n".join(f"[{m['role']}] {m['content']}" for m in self.messages) + "\n"
