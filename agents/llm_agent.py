"""An agent that plays SearchQA-v0 with any Hugging Face causal LM and its tokenizer.

:meth:`LLMAgent.play` plays whole episodes through the one rollout loop (:func:`agents.rollout.run_episodes` with the
KV-cached generator): the transcript is rendered with the tokenizer's chat template once, each turn stops at
``</search>``, ``</answer>`` (:data:`igpo_env.actions.STOP_STRINGS`) or the end-of-turn token, and many episodes play
in lock step. :meth:`LLMAgent.act` / :meth:`LLMAgent.generate` continue rendered prompts by one turn with
``model.generate`` (single-turn helpers, e.g. the question-only answers of the quality report).

Example:
    >>> from agents.llm_agent import truncate_at_stop
    >>> truncate_at_stop("<search> Karsel </search> junk", ("</search>", "</answer>"))
    '<search> Karsel </search>'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from igpo_env._validation import check_int, check_number
from igpo_env.actions import STOP_STRINGS
from igpo_env.types import Message

__all__ = ["LLMAgent", "EpisodeRecord", "truncate_at_stop"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 64
"""Longest assistant turn generated (tokens)."""

DEFAULT_BATCH_SIZE = 32
"""Transcripts per generation call."""


def truncate_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """Cut ``text`` right after the earliest stop string it contains (unchanged when it has none).

    Example:
        >>> truncate_at_stop("<answer> 1204 </answer> and more", ["</answer>"])
        '<answer> 1204 </answer>'
        >>> truncate_at_stop("no stop here", ["</answer>"])
        'no stop here'
    """
    cut = len(text)
    for s in stop_strings:
        i = text.find(s)
        if i >= 0:
            cut = min(cut, i + len(s))
    return text[:cut]


@dataclass
class EpisodeRecord:
    """One played episode.

    Attributes:
        messages: The final chat transcript (prompt, assistant turns, observations).
        actions: The assistant turns in order.
        action_types: ``info["action_type"]`` of each turn (``"search"``, ``"answer"`` or ``"invalid"``).
        reward: Sum of the env rewards.
        info: The last ``info`` dict returned by the env (``"f1"``/``"em"`` when the agent answered).
        terminated: Whether the agent answered (False when the turn limit cut it off).
    """

    messages: list[Message] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    action_types: list[str] = field(default_factory=list)
    reward: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    terminated: bool = False

    @property
    def f1(self) -> float:
        """Outcome F1 (0.0 when the episode ended without an answer)."""
        return float(self.info.get("f1", 0.0)) if self.terminated else 0.0


class LLMAgent:
    """Plays SearchQA-v0 with a causal LM: chat template over ``info["messages"]``, stop at the closing tags.

    Args:
        model: A ``transformers`` causal LM (any size; moved to nothing, it is used where it is).
        tokenizer: Its tokenizer; must have a chat template.
        max_new_tokens: Longest generated turn, in tokens.
        do_sample: Sample (True) or greedy decoding (False).
        temperature: Sampling temperature (only with ``do_sample``).
        top_p: Nucleus sampling threshold (only with ``do_sample``).
        seed: Seed of the sampling RNG; the same seed replays the same episodes. :meth:`generate` leaves the global
            torch RNG as found; :meth:`play` without a seed draws its generator's seed from it.
        stop_strings: A turn ends after the first of these.
        batch_size: Transcripts per generation call; episodes played in lock step by :meth:`play`.

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer
        >>> from agents.rollout import make_envs
        >>> envs = make_envs(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> agent = LLMAgent(tiny_causal_lm(), tiny_tokenizer(), max_new_tokens=4)  # or LLMAgent.from_pretrained(dir)
        >>> records = agent.play(envs, options=[{"index": 0}, {"index": 1}], max_turns=1)
        >>> [len(r.actions) for r in records], records[0].messages[0]["role"]
        ([1, 1], 'user')

    Change logs:
        v0.1.0 - Initial version.
        v0.2.0 - ``play`` runs through the rollout loop (KV cache kept across turns; actions are the decoded turns as
            the env received them, not stripped).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop_strings: Sequence[str] = STOP_STRINGS,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        check_int("max_new_tokens", max_new_tokens, minimum=1)
        check_int("batch_size", batch_size, minimum=1)
        check_number("temperature", temperature, minimum=0, strict=True)
        check_number("top_p", top_p, minimum=0, maximum=1, strict="minimum")
        if seed is not None:
            check_int("seed", seed)
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("`tokenizer` has no chat template; set tokenizer.chat_template first")
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.do_sample = do_sample
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed
        self.stop_strings = tuple(stop_strings)
        self.batch_size = batch_size
        self._calls = 0
        self._stop_ids, self._needs_stop_strings = self._resolve_stops()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], **kwargs: Any) -> LLMAgent:
        """Load a model directory (``AutoModelForCausalLM`` + ``AutoTokenizer``) and wrap it.

        Args:
            path: A local HF model directory (e.g. the result of ``agents.bootstrap.bootstrap``).
            **kwargs: Passed to :class:`LLMAgent`.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path)
        model.eval()
        return cls(model, tokenizer, **kwargs)

    def _resolve_stops(self) -> tuple[list[int], bool]:
        """Token ids that end a turn (eos, the chat template's end of turn); single-token stop strings (fast path)."""
        from igpo_env.scoring.templates import end_of_turn

        tok = self.tokenizer
        ids: list[int] = []
        for t in (tok.eos_token, end_of_turn(tok)):
            if t is not None:
                tid = tok.convert_tokens_to_ids(t)
                if isinstance(tid, int) and tid != tok.unk_token_id and tid not in ids:
                    ids.append(tid)
        needs_strings = False
        for s in self.stop_strings:
            enc = tok.encode(s, add_special_tokens=False)
            if len(enc) == 1:
                ids.append(enc[0])
            else:
                needs_strings = True
        return ids, needs_strings

    def render(self, messages: Sequence[Message]) -> str:
        """Render the generation prompt for a transcript (chat template, ``add_generation_prompt=True``)."""
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)

    def generate(self, prompts: Sequence[str]) -> list[str]:
        """Continue each rendered prompt with one assistant turn, cut at the first stop string.

        Args:
            prompts: Rendered prompt strings (see :meth:`render`), possibly with an assistant prefix appended.

        Returns:
            The generated texts, without the end-of-turn token.
        """
        import torch

        tok = self.tokenizer
        out: list[str] = []
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else self._stop_ids[0]
        device = next(self.model.parameters()).device
        for start in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[start : start + self.batch_size])
            encoded = [tok.encode(p, add_special_tokens=False) for p in chunk]
            width = max(len(e) for e in encoded)
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, e in enumerate(encoded):
                input_ids[i, width - len(e) :] = torch.tensor(e, dtype=torch.long)
                attention[i, width - len(e) :] = 1
            kwargs: dict[str, Any] = {
                "max_new_tokens": self.max_new_tokens,
                "do_sample": self.do_sample,
                "eos_token_id": self._stop_ids,
                "pad_token_id": pad_id,
            }
            if self.do_sample:
                kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=0)
            if self._needs_stop_strings:
                kwargs.update(stop_strings=list(self.stop_strings), tokenizer=tok)
            with torch.random.fork_rng(devices=[]), torch.inference_mode():
                if self.seed is not None:
                    torch.manual_seed(self.seed + self._calls)
                self._calls += 1
                generated = self.model.generate(
                    input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs
                )
            for row in generated[:, width:].tolist():
                text = tok.decode(row, skip_special_tokens=True)
                out.append(truncate_at_stop(text, self.stop_strings).strip())
        return out

    def act(self, transcripts: Sequence[Sequence[Message]]) -> list[str]:
        """Next assistant turn for each chat transcript (batched)."""
        return self.generate([self.render(m) for m in transcripts])

    def play(
        self,
        envs: Any,
        options: Sequence[dict[str, Any] | None] | None = None,
        seeds: Sequence[int | None] | None = None,
        max_turns: int | None = None,
    ) -> list[EpisodeRecord]:
        """Play one episode in each env through the rollout loop (:func:`agents.rollout.run_episodes`).

        ``batch_size`` envs play in lock step at a time with the KV-cached generator
        (:class:`~agents.rollout.kv_cache.KVCacheGenerator`: greedy, or sampled with ``temperature`` / ``top_p``
        from a generator seeded with ``seed``); a turn ends at a stop string, the end-of-turn token or
        ``max_new_tokens``. Greedy play gives the episodes of :func:`agents.rollout.evaluate_policy`.

        Args:
            envs: A list of SearchQA-v0 envs (``gym.make`` or ``SearchQAEnv``), or a vector env
                (:class:`~igpo_env.envs.vector.SearchQAVectorEnv`): its sub-envs are reset and stepped directly (one
                batched retriever call per turn), so reset the vector env before stepping it yourself afterwards.
            options: Per-env reset options, e.g. ``{"index": i}`` to pick question ``i``.
            seeds: Per-env reset seeds.
            max_turns: Stop after this many turns (default: the vector env's ``max_episode_steps``, else
                :data:`igpo_env.MAX_TURNS`; single envs made with ``gym.make`` also truncate themselves).

        Returns:
            One :class:`EpisodeRecord` per env, in order.
        """
        from agents.rollout import KVCacheGenerator, run_episodes
        from igpo_env import MAX_TURNS

        vector = not isinstance(envs, (list, tuple)) and hasattr(envs, "num_envs")
        subenvs = list(envs.envs) if vector else list(envs)
        n = len(subenvs)
        if options is not None and len(options) != n:
            raise ValueError(f"`options` must have one entry per env ({n}), got {len(options)}")
        if seeds is not None and len(seeds) != n:
            raise ValueError(f"`seeds` must have one entry per env ({n}), got {len(seeds)}")
        limit = max_turns or (getattr(envs, "max_episode_steps", None) if vector else None) or MAX_TURNS
        opts = list(options) if options is not None else [None] * n
        records = []
        for start in range(0, n, self.batch_size):
            end = min(n, start + self.batch_size)
            generator = KVCacheGenerator(
                self.model,
                temperature=self.temperature if self.do_sample else 0.0,
                top_p=self.top_p,
                seed=None if self.seed is None else self.seed + self._calls,
            )
            self._calls += 1
            rollouts, _ = run_episodes(
                generator,
                self.tokenizer,
                subenvs[start:end],
                options=opts[start:end],
                seeds=None if seeds is None else seeds[start:end],
                max_turns=limit,
                max_turn_tokens=self.max_new_tokens,
                stop_strings=self.stop_strings,
            )
            records.extend(self._record(r) for r in rollouts)
        return records

    def _record(self, rollout: Any) -> EpisodeRecord:
        """Convert a :class:`~agents.rollout.Rollout` into an :class:`EpisodeRecord`."""
        decode = self.tokenizer.decode
        return EpisodeRecord(
            messages=rollout.messages,
            actions=[decode(rollout.completion_ids[a:b], skip_special_tokens=True) for a, b in rollout.turn_spans],
            action_types=list(rollout.action_types),
            reward=rollout.outcome,
            info={**rollout.final_info, "messages": rollout.messages},
            terminated=rollout.terminated,
        )
