"""An agent that plays SearchQA-v0 with any Hugging Face causal LM and its tokenizer.

The transcript in ``info["messages"]`` is rendered with the tokenizer's chat template (generation prompt on), the model
generates the next assistant turn, and generation stops at ``</search>``, ``</answer>`` or the end-of-turn token.
Many episodes are played in lock step so that each generation call is one left-padded batch.

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

from igpo_env.types import Message

__all__ = ["LLMAgent", "EpisodeRecord", "truncate_at_stop", "DEFAULT_STOP_STRINGS"]

logger = logging.getLogger(__name__)

DEFAULT_STOP_STRINGS = ("</search>", "</answer>")
"""Generation of a turn ends after the first of these (or the end-of-turn / eos token)."""

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
        seed: Seed of the sampling RNG; the same seed replays the same episodes. The global torch RNG is left as found.
        stop_strings: A turn ends after the first of these.
        batch_size: Transcripts per generation call.

    Example:
        >>> agent = LLMAgent.__new__(LLMAgent)  # real use: LLMAgent.from_pretrained(bootstrap("tiny"))
        >>> LLMAgent.__name__
        'LLMAgent'

    Change logs:
        v0.1.0 - Initial version.
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
        stop_strings: Sequence[str] = DEFAULT_STOP_STRINGS,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"`max_new_tokens` must be >= 1, got {max_new_tokens}")
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        if temperature <= 0:
            raise ValueError(f"`temperature` must be > 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"`top_p` must be in (0, 1], got {top_p}")
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
        """Token ids that end a turn; stop strings that are single tokens become ids (fast path)."""
        tok = self.tokenizer
        ids: list[int] = []
        for t in (tok.eos_token, "<|im_end|>"):
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
        """Play one episode in each env, all in lock step (one generation batch per turn).

        Args:
            envs: A list of SearchQA-v0 envs (``gym.make`` or ``SearchQAEnv``), or a vector env
                (:class:`~igpo_env.envs.vector.SearchQAVectorEnv`: one batched retriever call per turn; each sub-env
                plays one episode, later autoresets are ignored).
            options: Per-env reset options, e.g. ``{"index": i}`` to pick question ``i``.
            seeds: Per-env reset seeds.
            max_turns: Stop after this many turns (default: the vector env's ``max_episode_steps``, else 10; single
                envs made with ``gym.make`` also truncate themselves).

        Returns:
            One :class:`EpisodeRecord` per env, in order.
        """
        vector = not isinstance(envs, (list, tuple)) and hasattr(envs, "num_envs")
        n = envs.num_envs if vector else len(envs)
        if options is not None and len(options) != n:
            raise ValueError(f"`options` must have one entry per env ({n}), got {len(options)}")
        if seeds is not None and len(seeds) != n:
            raise ValueError(f"`seeds` must have one entry per env ({n}), got {len(seeds)}")
        from igpo_env import MAX_TURNS

        limit = max_turns or (getattr(envs, "max_episode_steps", None) if vector else None) or MAX_TURNS
        records = [EpisodeRecord() for _ in range(n)]
        if vector:
            step_all, transcripts = self._vector_stepper(envs, options, seeds)
        else:
            step_all, transcripts = self._list_stepper(list(envs), options, seeds)
        active = list(range(n))
        for _ in range(limit):
            if not active:
                break
            actions = self.act([transcripts[i] for i in active])
            still = []
            for i, action, (reward, terminated, truncated, info) in zip(
                active, actions, step_all(active, actions), strict=True
            ):
                rec = records[i]
                rec.actions.append(action)
                rec.action_types.append(info.get("action_type", "invalid"))
                rec.reward += float(reward)
                rec.info = info
                transcripts[i] = list(info["messages"])
                if terminated:
                    rec.terminated = True
                elif not truncated:
                    still.append(i)
            active = still
        for i, rec in enumerate(records):
            rec.messages = transcripts[i]
        return records

    @staticmethod
    def _list_stepper(envs: list[Any], options: Any, seeds: Any) -> tuple[Any, list[list[Message]]]:
        transcripts = []
        for i, env in enumerate(envs):
            _, info = env.reset(
                seed=None if seeds is None else seeds[i], options=None if options is None else options[i]
            )
            transcripts.append(list(info["messages"]))

        def step_all(idx: list[int], actions: list[str]) -> list[tuple[float, bool, bool, dict[str, Any]]]:
            out = []
            for i, action in zip(idx, actions, strict=True):
                _, reward, terminated, truncated, info = envs[i].step(action)
                out.append((reward, terminated, truncated, info))
            return out

        return step_all, transcripts

    @staticmethod
    def _vector_stepper(venv: Any, options: Any, seeds: Any) -> tuple[Any, list[list[Message]]]:
        n = venv.num_envs
        batched: dict[str, list[Any]] | None = None
        if options is not None:
            keys = sorted({k for o in options for k in (o or {})})
            if any(set(o or {}) != set(keys) for o in options):
                raise ValueError("with a vector env, every entry of `options` must have the same keys")
            batched = {k: [o[k] for o in options] for k in keys}
        _, infos = venv.reset(seed=None if seeds is None else list(seeds), options=batched)
        transcripts = [list(infos["messages"][i]) for i in range(n)]

        def step_all(idx: list[int], actions: list[str]) -> list[tuple[float, bool, bool, dict[str, Any]]]:
            full = [""] * n  # finished sub-envs autoreset, then get an empty (invalid, search-free) action
            for i, action in zip(idx, actions, strict=True):
                full[i] = action
            _, rewards, terminated, truncated, infos = venv.step(full)
            out = []
            for i in idx:
                info = {
                    k: v[i]
                    for k, v in infos.items()
                    if not k.startswith("_") and bool(infos.get(f"_{k}", [True] * n)[i])
                }
                out.append((float(rewards[i]), bool(terminated[i]), bool(truncated[i]), info))
            return out

        return step_all, transcripts
