"""OpenAICompatScorer: gold-answer log-probs from an OpenAI-compatible completions server (vLLM, ``trl vllm-serve``).

Each (context, target) pair is sent to ``POST {base_url}/completions`` as one prompt of a batched request with
``echo=True, logprobs=k, max_tokens=0`` (servers that refuse 0 get 1; the generated token is ignored), and the
target's tokens are cut out of ``choices[i].logprobs.token_logprobs``:

- with a ``tokenizer`` (exact; needed for chat-message contexts), the prompt is the token ids
  ``tok(prefix) + tok(target)`` (the convention of every scorer, :func:`~igpo_env.scoring.spans.encode_pair`) and the
  target is the last ``len(tok(target))`` prompt positions;
- without one, the prompt is the text ``context + target`` (contexts must be rendered strings) and the target is the
  tokens whose ``text_offset`` is at or after ``len(context)``
  (:func:`~igpo_env.scoring.spans.target_span_from_offsets`).
  The server then tokenizes the joined text, which equals the separate tokenization whenever the context ends on a
  token boundary (the IGPO prefix ends with a newline, so it does for the usual BPE tokenizers).

Errors (unreachable server, HTTP errors, malformed answers) raise :class:`~igpo_env.error.RemoteError` with the
server's explanation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from igpo_env._http import DEFAULT_RETRIES, MAX_ERROR_CHARS, check_client_args, check_url, http_request
from igpo_env._validation import check_int
from igpo_env.error import RemoteError
from igpo_env.scoring.base import Context, validate_score_args
from igpo_env.scoring.client import DEFAULT_TIMEOUT_S
from igpo_env.scoring.spans import encode_pair, gather_logprobs, target_span_from_offsets
from igpo_env.scoring.templates import IGPO_TEMPLATE, IGTemplate
from igpo_env.types import TargetScore

__all__ = ["OpenAICompatScorer", "DEFAULT_BATCH_SIZE", "SPEC_PREFIX", "parse_spec"]

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
"""Prompts per completions request."""
MAX_LOGPROBS = 20
"""Largest ``logprobs`` (top-k alternatives per position) we ask for; 0 or 1 is all we need."""
REJECTED_STATUS = frozenset({400, 422})
"""Statuses with which a server refuses ``max_tokens=0`` (we then retry with 1)."""
SPEC_PREFIX = "openai:"
"""A scorer given as one string (``IGPOConfig.scorer``, ``igpo-env train --scorer``): ``openai:BASE_URL#MODEL``."""


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a scorer spec ``openai:BASE_URL#MODEL`` into ``(base_url, model)``.

    ``MODEL`` is the served model name (vLLM's ``--served-model-name``, by default the path or hub id it serves).

    Example:
        >>> parse_spec("openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B-Instruct")
        ('http://127.0.0.1:8000/v1', 'Qwen/Qwen2.5-7B-Instruct')
        >>> parse_spec("openai:http://h:8000/v1")
        Traceback (most recent call last):
        ...
        ValueError: scorer 'openai:http://h:8000/v1' lacks the served model name (GET /v1/models): openai:http://h:8000/v1#MODEL
    """
    if not isinstance(spec, str) or not spec.startswith(SPEC_PREFIX):
        raise ValueError(f"an OpenAI-compatible scorer spec starts with {SPEC_PREFIX!r}, got {spec!r}")
    base_url, sep, model = spec[len(SPEC_PREFIX) :].partition("#")
    check_url("scorer", base_url, example="openai:http://127.0.0.1:8000/v1#MODEL")
    if not sep or not model:
        raise ValueError(
            f"scorer {spec!r} lacks the served model name (GET /v1/models): {SPEC_PREFIX}{base_url}#MODEL"
        )
    return base_url, model


class OpenAICompatScorer:
    """A :class:`~igpo_env.scoring.base.Scorer` backed by an OpenAI-compatible ``/completions`` endpoint.

    Works with vLLM's OpenAI server (``vllm serve MODEL``; ``trl vllm-serve`` runs the same server) and other servers
    that echo prompt log-probs. Start one with e.g. ``vllm serve Qwen/Qwen2.5-7B-Instruct --port 8000`` and pass
    ``base_url="http://127.0.0.1:8000/v1"``.

    Args:
        base_url: Server base URL including the API prefix, e.g. ``"http://127.0.0.1:8000/v1"``.
        model: Model name the server knows (its ``--served-model-name`` or path).
        tokenizer: The model's tokenizer (object or local path), to send exact token ids and to render chat
            contexts; ``None`` sends text and accepts only string contexts.
        timeout: Seconds to wait for one request.
        retries: Extra tries after a connection error, timeout or 502/503/504.
        api_key: Sent as ``Authorization: Bearer ...`` when given.
        batch_size: Prompts per request.
        logprobs: Top-k alternatives per position the server returns (0 or 1 is enough; the prompt token's own
            log-prob always comes back).
        template: The IGPO pseudo-response template for chat contexts.

    Raises:
        ValueError: An argument is invalid.

    Example:
        >>> scorer = OpenAICompatScorer("http://127.0.0.1:8000/v1", model="Qwen/Qwen2.5-7B-Instruct")
        >>> scorer.completions_url
        'http://127.0.0.1:8000/v1/completions'
        >>> scorer.score([[{"role": "user", "content": "Q?"}]], ["A"])
        Traceback (most recent call last):
        ...
        ValueError: chat-message contexts need `tokenizer=` (to apply the chat template); got contexts[0] as messages

    Change logs:
        v0.1.0: added.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        tokenizer: Any = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        api_key: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        logprobs: int = 1,
        template: IGTemplate = IGPO_TEMPLATE,
    ) -> None:
        self.base_url = check_url("base_url", base_url, example="http://127.0.0.1:8000/v1").rstrip("/")
        if not isinstance(model, str) or not model:
            raise ValueError(f"`model` must be the served model name (non-empty str), got {model!r}")
        self.timeout, self.retries = check_client_args(timeout, retries)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.logprobs = check_int("logprobs", logprobs, minimum=0, maximum=MAX_LOGPROBS)
        if api_key is not None and not isinstance(api_key, str):
            raise ValueError(f"`api_key` must be a str or None, got {type(api_key).__name__}")
        if not isinstance(template, IGTemplate):
            raise TypeError(f"`template` must be an IGTemplate, got {type(template).__name__}")
        if isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer)
        elif tokenizer is not None and not hasattr(tokenizer, "encode"):
            raise TypeError(f"`tokenizer` must be a tokenizer, a path or None, got {type(tokenizer).__name__}")
        import httpx

        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.max_tokens = 0
        """0 until the server refuses it, then 1 (the generated token is ignored)."""
        self._api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=self.timeout, headers=headers)

    @property
    def completions_url(self) -> str:
        """The endpoint the scorer posts to."""
        return f"{self.base_url}/completions"

    def score(self, contexts: Sequence[Context], targets: Sequence[str]) -> list[TargetScore]:
        """Score ``targets[i]`` after ``contexts[i]``; see :class:`~igpo_env.scoring.base.Scorer`.

        Raises:
            ValueError: Bad arguments, a chat context without a tokenizer, or a target that cannot be separated from
                its context in the server's tokenization.
            RemoteError: The server is unreachable, answered an HTTP error or something malformed.
        """
        validate_score_args(contexts, targets)
        if self.tokenizer is None:
            for i, c in enumerate(contexts):
                if not isinstance(c, str):
                    raise ValueError(
                        "chat-message contexts need `tokenizer=` (to apply the chat template); "
                        f"got contexts[{i}] as messages"
                    )
        out: list[TargetScore] = []
        for start in range(0, len(targets), self.batch_size):
            out.extend(
                self._score_batch(contexts[start : start + self.batch_size], targets[start : start + self.batch_size])
            )
        return out

    def _score_batch(self, contexts: Sequence[Context], targets: Sequence[str]) -> list[TargetScore]:
        if self.tokenizer is not None:
            encoded = [
                encode_pair(self.tokenizer, c, t, self.template) for c, t in zip(contexts, targets, strict=True)
            ]
            prompts: list[Any] = [ids for ids, _ in encoded]
        else:
            prompts = [c + t for c, t in zip(contexts, targets, strict=True)]
        choices = self._complete(prompts)
        out = []
        for i, choice in enumerate(choices):
            token_logprobs = _choice_logprobs(choice, i, self.completions_url)
            n_prompt = len(token_logprobs) - self.max_tokens
            if self.tokenizer is not None:
                ids, target_start = encoded[i]
                if n_prompt != len(ids):
                    raise RemoteError(
                        f"{self.completions_url} echoed {n_prompt} prompt tokens for prompt {i}; {len(ids)} were sent"
                    )
                span = (target_start, len(ids))
            else:
                offsets, tokens = _choice_offsets(choice, i, len(token_logprobs), self.completions_url)
                try:
                    span = target_span_from_offsets(offsets, tokens, n_prompt, len(prompts[i]), len(contexts[i]))
                except ValueError as e:
                    raise ValueError(f"pair {i} (target {targets[i][:40]!r}): {e}") from e
            try:
                out.append(TargetScore.from_logprobs(gather_logprobs(token_logprobs, *span)))
            except ValueError as e:
                raise RemoteError(f"{self.completions_url} answered unusable log-probs for prompt {i}: {e}") from e
        return out

    def _complete(self, prompts: list[Any]) -> list[dict[str, Any]]:
        """POST one completions request; return its choices ordered by index (one per prompt)."""
        body = {
            "model": self.model,
            "prompt": prompts,
            "echo": True,
            "logprobs": self.logprobs,
            "max_tokens": self.max_tokens,
            # 1.0: the log-probs are the model's own even where the server reports processed (temperature-scaled)
            # log-probs (`trl vllm-serve` starts vLLM with --logprobs-mode processed_logprobs)
            "temperature": 1.0,
        }
        try:
            answer = http_request(self._client, "POST", self.completions_url, self.retries, json=body)
        except RemoteError as e:
            if self.max_tokens != 0 or getattr(e, "status", None) not in REJECTED_STATUS:
                raise
            logger.info("%s refused max_tokens=0 (%s); using max_tokens=1", self.completions_url, e)
            self.max_tokens = 1
            body["max_tokens"] = 1
            answer = http_request(self._client, "POST", self.completions_url, self.retries, json=body)
        choices = answer.get("choices") if isinstance(answer, dict) else None
        if not isinstance(choices, list) or len(choices) != len(prompts):
            got = len(choices) if isinstance(choices, list) else str(answer)[:MAX_ERROR_CHARS]
            raise RemoteError(f"{self.completions_url} answered {got} choices for {len(prompts)} prompts")
        if all(isinstance(c, dict) and isinstance(c.get("index"), int) for c in choices):
            choices = sorted(choices, key=lambda c: c["index"])
        return choices

    @classmethod
    def from_spec(cls, spec: str, tokenizer: Any = None, **kwargs: Any) -> OpenAICompatScorer:
        """Build the scorer of a spec string ``openai:BASE_URL#MODEL`` (see :func:`parse_spec`).

        Example:
            >>> OpenAICompatScorer.from_spec("openai:http://127.0.0.1:8000/v1#m").completions_url
            'http://127.0.0.1:8000/v1/completions'
        """
        base_url, model = parse_spec(spec)
        return cls(base_url, model, tokenizer=tokenizer, **kwargs)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the settings (and the tokenizer) only; the copy opens its own connection pool."""
        args = ("base_url", "model", "tokenizer", "timeout", "retries", "batch_size", "logprobs", "template")
        return {
            "args": {**{a: getattr(self, a) for a in args}, "api_key": self._api_key},
            "max_tokens": self.max_tokens,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["args"])
        self.max_tokens = state["max_tokens"]

    def __enter__(self) -> OpenAICompatScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OpenAICompatScorer({self.base_url!r}, model={self.model!r}, tokenizer={self.tokenizer is not None})"


def _choice_logprobs(choice: Any, i: int, where: str) -> list[Any]:
    """``logprobs.token_logprobs`` of one choice, checked; RemoteError naming the problem if not."""
    logprobs = choice.get("logprobs") if isinstance(choice, dict) else None
    if not isinstance(logprobs, dict):
        raise RemoteError(f"{where} answered choice {i} without `logprobs` (does the server support echo=True?)")
    token_logprobs = logprobs.get("token_logprobs")
    if not isinstance(token_logprobs, list) or not token_logprobs:
        raise RemoteError(f"{where} answered choice {i} without `logprobs.token_logprobs`")
    return token_logprobs


def _choice_offsets(choice: dict[str, Any], i: int, n_tokens: int, where: str) -> tuple[list[int], list[str]]:
    """``(logprobs.text_offset, logprobs.tokens)`` of one choice, checked against ``n_tokens``."""
    offsets = choice["logprobs"].get("text_offset")
    tokens = choice["logprobs"].get("tokens")
    if not (isinstance(offsets, list) and isinstance(tokens, list) and len(offsets) == len(tokens) == n_tokens):
        raise RemoteError(
            f"{where} answered choice {i} with {n_tokens} token_logprobs but malformed text_offset/tokens: "
            f"{str(offsets)[:80]} / {str(tokens)[:80]}"
        )
    if not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets):
        raise RemoteError(f"{where} answered choice {i} with non-integer text_offset values")
    return offsets, [str(t) for t in tokens]
