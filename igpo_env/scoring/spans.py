"""Which prompt tokens are the target: pure helpers shared by the engine-backed scorers (vLLM, OpenAI-compatible).

Engines score a whole prompt (``prompt_logprobs`` / ``echo=True``) and return one log-prob per prompt token, the
first one being ``None`` (nothing precedes it). The scorers send ``prefix + target`` and keep the target's log-probs:

- With a tokenizer (exact, the convention of :mod:`igpo_env.scoring.base`): the prompt is the token ids
  ``tok(prefix) + tok(target)`` (:func:`encode_pair`), so the target is the last ``len(tok(target))`` positions.
- With text only (an OpenAI-compatible server that tokenizes for us): the target tokens are those whose character
  offset is at or after the end of the context (:func:`target_span_from_offsets`).

:func:`gather_logprobs` then cuts the span out of the per-position log-probs, checking it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from igpo_env._validation import check_int
from igpo_env.scoring.templates import IGPO_TEMPLATE, IGTemplate, render_scoring_prefix
from igpo_env.types import Message

__all__ = ["encode_pair", "target_span_from_offsets", "gather_logprobs", "logprob_of"]


def encode_pair(
    tokenizer: Any,
    context: Sequence[Message] | str,
    target: str,
    template: IGTemplate = IGPO_TEMPLATE,
) -> tuple[list[int], int]:
    """Token ids of a scored pair and where the target starts: ``(tok(prefix) + tok(target), len(tok(prefix)))``.

    The prefix is :func:`~igpo_env.scoring.templates.render_scoring_prefix` of ``context`` (the chat template of
    ``tokenizer`` and the IGPO pseudo-response for a message list; a string verbatim); prefix and target are tokenized
    separately with ``add_special_tokens=False``.

    Args:
        tokenizer: A Hugging Face tokenizer (anything with ``encode(text, add_special_tokens=False)``).
        context: Chat transcript or rendered prefix string.
        target: The gold answer text.
        template: The IGPO pseudo-response template.

    Returns:
        ``(ids, start)``: the prompt ids, and the index of the first target token (>= 1).

    Raises:
        ValueError: The prefix or the target encodes to no tokens (the first prompt token has no log-prob, so a
            target needs at least one token before it).

    Example:
        >>> class CharTokenizer:  # one id per character
        ...     def encode(self, text, add_special_tokens=True):
        ...         return [ord(c) for c in text]
        >>> encode_pair(CharTokenizer(), "Q:", "ab")
        ([81, 58, 97, 98], 2)
    """
    prefix = render_scoring_prefix(context, tokenizer, template)
    prefix_ids = list(tokenizer.encode(prefix, add_special_tokens=False))
    target_ids = list(tokenizer.encode(target, add_special_tokens=False))
    if not prefix_ids:
        raise ValueError(f"context {prefix[:80]!r} encodes to no tokens; the first target token needs a prefix")
    if not target_ids:
        raise ValueError(f"target {target[:80]!r} encodes to no tokens")
    return prefix_ids + target_ids, len(prefix_ids)


def target_span_from_offsets(
    text_offsets: Sequence[int],
    tokens: Sequence[str],
    n_prompt_tokens: int,
    prompt_chars: int,
    context_chars: int,
) -> tuple[int, int]:
    """Return ``[start, end)``: the prompt tokens that start at or after the context's end (the target's tokens).

    Offsets come from an OpenAI-compatible ``echo=True`` answer (``logprobs.text_offset``, ``logprobs.tokens``). A
    server may add text that is not in the prompt before it (a BOS token such as ``<s>``): the offsets are shifted
    by the excess of the last prompt token's end over ``prompt_chars``. A token must start exactly at the context's
    end: if the server's tokenizer merged the context's last characters with the target's first ones, the target's
    log-probs cannot be separated, and a ValueError says so.

    Args:
        text_offsets: Character offset of each token (prompt tokens first, then any generated ones).
        tokens: Text of each token (same length).
        n_prompt_tokens: How many of the tokens are the prompt (the rest were generated).
        prompt_chars: ``len(context + target)``.
        context_chars: ``len(context)``.

    Returns:
        ``(start, n_prompt_tokens)``.

    Raises:
        ValueError: The lists disagree, or no prompt token starts at ``context_chars``, or the target would start at
            the first prompt token (which has no log-prob).

    Example:
        >>> # prompt "Q: x\\nParis" tokenized as ["Q", ":", " x", "\\n", "Par", "is"] plus one generated token "."
        >>> target_span_from_offsets([0, 1, 2, 4, 5, 8, 10], ["Q", ":", " x", "\\n", "Par", "is", "."], 6, 10, 5)
        (4, 6)
        >>> # the same with a BOS token "<s>" the server put in front
        >>> target_span_from_offsets([0, 3, 4, 5, 7, 8, 11], ["<s>", "Q", ":", " x", "\\n", "Par", "is"], 7, 10, 5)
        (5, 7)
    """
    if len(text_offsets) != len(tokens):
        raise ValueError(f"{len(text_offsets)} text offsets for {len(tokens)} tokens")
    check_int("n_prompt_tokens", n_prompt_tokens, minimum=1, maximum=len(tokens))
    check_int("context_chars", context_chars, minimum=0, maximum=prompt_chars - 1)
    last = n_prompt_tokens - 1
    shift = max(0, int(text_offsets[last]) + len(tokens[last]) - prompt_chars)
    for i in range(n_prompt_tokens):
        offset = int(text_offsets[i]) - shift
        if offset == context_chars:
            if i == 0:
                raise ValueError("the target starts at the first prompt token, which has no log-prob; add a context")
            return i, n_prompt_tokens
        if offset > context_chars:
            break
    raise ValueError(
        f"no prompt token starts at character {context_chars} (the end of the context): the server's tokenizer "
        "merged the context's end with the target; pass a tokenizer so that token ids are sent instead of text"
    )


def gather_logprobs(position_logprobs: Sequence[float | None], start: int, end: int) -> list[float]:
    """Return ``position_logprobs[start:end]`` as floats, checking that the span exists and has no ``None``.

    Example:
        >>> gather_logprobs([None, -1.5, -0.25, -3.0], 1, 3)
        [-1.5, -0.25]
    """
    if not 0 < start < end <= len(position_logprobs):
        raise ValueError(f"target span [{start}, {end}) is not inside the {len(position_logprobs)} prompt positions")
    out = []
    for i in range(start, end):
        value = position_logprobs[i]
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"no log-prob for prompt token {i}: got {value!r}")
        out.append(float(value))
    return out


def logprob_of(entry: Any, token_id: int) -> float | None:
    """Log-prob of ``token_id`` in one vLLM ``prompt_logprobs`` entry (``None`` or ``{token_id: Logprob | float}``).

    Example:
        >>> logprob_of({7: -0.5, 3: -2.0}, 7), logprob_of(None, 7)
        (-0.5, None)
    """
    if entry is None:
        return None
    try:
        value = entry[token_id]
    except KeyError as e:
        raise ValueError(f"prompt_logprobs entry lacks the prompt token {token_id}: {list(entry)[:5]}") from e
    return float(getattr(value, "logprob", value))
