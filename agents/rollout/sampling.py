"""Token sampling and the end of an assistant turn (end-of-turn token or stop string) for the rollout loop.

:class:`TurnStops` decides where a turn ends, the same way for every per-turn generator: at the end-of-turn token of
the chat template (or the tokenizer's eos), or at the token that completes a stop string
(:data:`igpo_env.actions.STOP_STRINGS` by default), looked for in the last :data:`STOP_WINDOW_TOKENS` decoded tokens.
:func:`sample_tokens` draws one token per row (greedy at temperature 0, else top-k / nucleus filtered).

Example:
    >>> from igpo_env.scoring.tiny import tiny_tokenizer
    >>> tok = tiny_tokenizer()
    >>> stops = TurnStops(tok)
    >>> ids = tok.encode("<search> q </search> junk", add_special_tokens=False)
    >>> tok.decode(stops.cut(ids))
    '<search> q </search>'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from igpo_env.actions import STOP_STRINGS

__all__ = ["STOP_WINDOW_TOKENS", "TurnStops", "sample_tokens"]

STOP_WINDOW_TOKENS = 8
"""Tokens decoded at the end of a turn to look for a stop string."""


class TurnStops:
    """Where an assistant turn ends: an end-of-turn token id or a completed stop string.

    Args:
        tokenizer: The policy's tokenizer (its chat template gives the end-of-turn token, ChatML's when it has none).
        stop_strings: A turn ends right after the first of these.

    Attributes:
        eot: The end-of-turn token text (``<|im_end|>`` for ChatML).
        eot_ids: Token ids that end a turn (the end-of-turn token when it is one token, and eos).
    """

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str] = STOP_STRINGS) -> None:
        from igpo_env.scoring.templates import end_of_turn

        if isinstance(stop_strings, str):
            raise TypeError(f"`stop_strings` must be a sequence of strings, got the str {stop_strings!r}")
        self.tokenizer = tokenizer
        self.stop_strings = tuple(stop_strings)
        self.eot = end_of_turn(tokenizer)
        self.eot_ids: set[int] = (
            {tokenizer.convert_tokens_to_ids(self.eot)} if self.eot in tokenizer.get_vocab() else set()
        )
        if tokenizer.eos_token_id is not None:
            self.eot_ids.add(int(tokenizer.eos_token_id))

    @property
    def close_id(self) -> int | None:
        """The token appended to close a turn that ended without one (``None``: the tokenizer has none)."""
        return next(iter(self.eot_ids)) if self.eot_ids else None

    @property
    def pad_id(self) -> int:
        """Padding id of batched model calls: the tokenizer's pad token, else :attr:`close_id`."""
        pad = self.tokenizer.pad_token_id
        return pad if pad is not None else next(iter(self.eot_ids))

    def has_stop(self, ids: Sequence[int], end: int | None = None) -> bool:
        """Whether the last :data:`STOP_WINDOW_TOKENS` tokens of ``ids[:end]`` decode to text holding a stop string."""
        end = len(ids) if end is None else end
        window = list(ids[max(0, end - STOP_WINDOW_TOKENS) : end])
        tail = self.tokenizer.decode(window, skip_special_tokens=True)
        return any(s in tail for s in self.stop_strings)

    def cut(self, ids: Sequence[int]) -> list[int]:
        """Keep tokens up to the first end-of-turn token or the token that completes a stop string."""
        ids = list(ids)
        for k, t in enumerate(ids):
            if t in self.eot_ids or self.has_stop(ids, k + 1):
                return ids[: k + 1]
        return ids

    def ends_with_eot(self, ids: Sequence[int]) -> bool:
        """Whether ``ids`` is non-empty and closed by an end-of-turn token."""
        return bool(ids) and ids[-1] in self.eot_ids


def sample_tokens(logits: Any, temperature: float, top_k: int, top_p: float, generator: Any) -> tuple[Any, Any]:
    """Draw one token per row of ``logits`` (B, V); return ``(tokens, their log-probs)``, both (B,).

    Args:
        logits: Next-token logits (float).
        temperature: 0 (or less) is greedy; else logits are divided by it.
        top_k: Keep the ``top_k`` best tokens (0: off).
        top_p: Keep the smallest set of tokens whose probability reaches ``top_p`` (1.0: off).
        generator: The ``torch.Generator`` to draw from, or a list of one per row: each row then draws from its own
            generator (a ``None`` entry takes the row's most likely token and draws nothing), so a row's tokens do
            not depend on the other rows of the batch (per-rollout sampling streams).

    Returns:
        The tokens and their log-probs under the (filtered, tempered) sampling distribution.

    Raises:
        ValueError: for a list of generators whose length is not the number of rows.

    Example:
        >>> import torch
        >>> tokens, logps = sample_tokens(torch.tensor([[0.0, 2.0, 1.0]]), 0.0, 0, 1.0, None)
        >>> tokens.tolist()
        [1]
        >>> logits = torch.tensor([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]])
        >>> a = sample_tokens(logits, 1.0, 0, 1.0, [torch.Generator().manual_seed(7), None])[0]
        >>> b = sample_tokens(logits[:1], 1.0, 0, 1.0, [torch.Generator().manual_seed(7)])[0]
        >>> (a[0] == b[0]).item(), a[1].item()
        (True, 0)
    """
    import torch

    if temperature <= 0:
        tokens = logits.argmax(-1)
        return tokens, torch.log_softmax(logits, -1).gather(1, tokens[:, None]).squeeze(1)
    logits = logits / temperature
    if top_k and top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, -1)
        drop = probs.cumsum(-1) - probs > top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(1, order, sorted_logits)
    logp = torch.log_softmax(logits, -1)
    if isinstance(generator, (list, tuple)):
        if len(generator) != logits.shape[0]:
            raise ValueError(f"`generator` must hold one generator per row ({logits.shape[0]}), got {len(generator)}")
        probs = logp.exp()
        tokens = logp.argmax(-1)
        for j, gen in enumerate(generator):
            if gen is not None:
                tokens[j] = torch.multinomial(probs[j], 1, generator=gen)[0]
    else:
        tokens = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
    return tokens, logp.gather(1, tokens[:, None]).squeeze(1)
