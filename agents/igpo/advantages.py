"""Pure advantage math for IGPO: turn rewards in, per-turn or per-token advantages out. No models, no I/O.

Two semantics, chosen by ``IGPOConfig.advantage``:

- :func:`paper_turn_advantages` (``advantage="paper"``, default): per rollout, turn rewards ``r_1..r_{T-1}``
  (information gain) and ``r_T`` (outcome) are z-scored within the group of rollouts of the same prompt, either
  ``"joint"`` (all IG and outcome rewards of the group together) or ``"separate"`` (IG and outcome each on its own),
  with the population std and ``eps``; then ``A_t = r~_t + gamma * A_{t+1}``. The trainer copies ``A_t`` to every
  token of turn t's assistant text.
- :func:`released_token_advantages` (``advantage="released"``, IGPO's released code): raw per-token rewards (IG on
  the last token of each search turn's observation, outcome on the last token), per-token return = reverse cumulative
  sum, baseline = group mean of the returns at the same token position (over the rollouts that reach it), no std.

``ig_coef`` scales the IG rewards: before z-scoring in ``"joint"`` mode, after it in ``"separate"`` mode (z-scoring
would cancel it). With ``ig_coef=0`` the IG entries are left out entirely, so the advantage is the outcome's group
z-score on every turn (with ``gamma=1``): outcome-only GRPO.

Example:
    >>> adv = paper_turn_advantages([[0.2], [0.0]], [1.0, 0.0], group_ids=[0, 0])
    >>> [[round(a, 3) for a in row] for row in adv]
    [[1.455, 1.698], [-1.455, -0.728]]
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from igpo_env._validation import check_choice, check_fraction, check_int, check_number

__all__ = [
    "ADVANTAGE_NORMALIZATIONS",
    "DEFAULT_EPS",
    "group_indices",
    "paper_turn_advantages",
    "released_token_advantages",
    "released_token_rewards",
    "turn_to_token_advantages",
]

ADVANTAGE_NORMALIZATIONS = ("joint", "separate")
"""How turn rewards are z-scored within a group (``IGPOConfig.normalization``; not the answer normalizations of
:data:`igpo_env.metrics.ANSWER_NORMALIZATIONS`)."""

DEFAULT_EPS = 1e-6
"""Added to the population std before dividing (a constant group gives advantages 0, not NaN)."""


def group_indices(group_ids: Sequence[Hashable]) -> list[list[int]]:
    """Return the rollout indices of each group, in order of first appearance.

    Example:
        >>> group_indices(["a", "b", "a"])
        [[0, 2], [1]]
    """
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, g in enumerate(group_ids):
        groups[g].append(i)
    return list(groups.values())


def _zscore(values: np.ndarray, eps: float) -> np.ndarray:
    if values.size == 0:
        return values
    return (values - values.mean()) / (values.std() + eps)  # numpy std: population (ddof=0)


def _check_common(ig_rewards, outcomes, group_ids, gamma, eps) -> None:
    if len(ig_rewards) != len(outcomes) or len(outcomes) != len(group_ids):
        raise ValueError(
            f"`ig_rewards`, `outcomes` and `group_ids` must have one entry per rollout, got lengths "
            f"{len(ig_rewards)}, {len(outcomes)}, {len(group_ids)}"
        )
    check_fraction("gamma", gamma)
    check_number("eps", eps, minimum=0, strict=True)


def paper_turn_advantages(
    ig_rewards: Sequence[Sequence[float]],
    outcomes: Sequence[float],
    group_ids: Sequence[Hashable],
    normalization: str = "joint",
    gamma: float = 1.0,
    ig_coef: float = 1.0,
    eps: float = DEFAULT_EPS,
) -> list[list[float]]:
    """Per-turn advantages of the IGPO paper.

    Args:
        ig_rewards: Per rollout, the IG rewards of turns ``1..T-1`` (empty for a one-turn rollout).
        outcomes: Per rollout, the outcome reward of the final turn ``T``.
        group_ids: Per rollout, its group (rollouts of the same prompt share a group id).
        normalization: ``"joint"`` or ``"separate"`` (see the module docstring).
        gamma: Turn-level discount in ``A_t = r~_t + gamma * A_{t+1}``.
        ig_coef: Weight of the IG rewards; 0 drops them (outcome-only GRPO).
        eps: Added to the population std.

    Returns:
        Per rollout, ``T`` advantages ``[A_1, ..., A_T]``.

    Raises:
        ValueError: On mismatched lengths or an invalid ``normalization`` / ``gamma`` / ``eps`` / ``ig_coef``.

    Example:
        >>> adv = paper_turn_advantages([[0.5], []], [1.0, 0.0], group_ids=[0, 0], normalization="separate")
        >>> [[round(a, 3) for a in row] for row in adv]
        [[1.0, 1.0], [-1.0]]
    """
    _check_common(ig_rewards, outcomes, group_ids, gamma, eps)
    check_choice("normalization", normalization, ADVANTAGE_NORMALIZATIONS)
    check_number("ig_coef", ig_coef, minimum=0)
    use_ig = ig_coef != 0.0
    normed: list[list[float]] = [[] for _ in outcomes]
    for idx in group_indices(group_ids):
        ig = [np.asarray(ig_rewards[i], dtype=np.float64) for i in idx]
        out = np.asarray([outcomes[i] for i in idx], dtype=np.float64)
        if not use_ig:
            z_out = _zscore(out, eps)
            z_ig = [np.zeros_like(x) for x in ig]
        elif normalization == "joint":
            flat = _zscore(np.concatenate([*(ig_coef * x for x in ig), out]), eps)
            sizes = np.cumsum([len(x) for x in ig])
            z_ig = np.split(flat[: sizes[-1] if len(sizes) else 0], sizes[:-1])
            z_out = flat[len(flat) - len(out) :]
        else:
            flat_ig = np.concatenate(ig) if ig else np.zeros(0)
            z_flat = ig_coef * _zscore(flat_ig, eps)
            sizes = np.cumsum([len(x) for x in ig])
            z_ig = np.split(z_flat, sizes[:-1])
            z_out = _zscore(out, eps)
        for j, i in enumerate(idx):
            normed[i] = [*z_ig[j].tolist(), float(z_out[j])]
    advantages = []
    for rewards in normed:
        adv = [0.0] * len(rewards)
        running = 0.0
        for t in range(len(rewards) - 1, -1, -1):
            running = rewards[t] + gamma * running
            adv[t] = running
        advantages.append(adv)
    return advantages


def released_token_rewards(
    length: int, ig_positions: Sequence[int], ig_rewards: Sequence[float], outcome: float, ig_coef: float = 1.0
) -> np.ndarray:
    """Place raw rewards on a rollout's completion tokens as IGPO's released code does.

    Args:
        length: Number of completion tokens (assistant and observation tokens).
        ig_positions: Token index of the last observation token of each non-final turn.
        ig_rewards: The IG reward of each of those turns.
        outcome: Outcome reward, placed on the last token.
        ig_coef: Weight of the IG rewards.

    Returns:
        A float array of shape ``(length,)``.

    Example:
        >>> released_token_rewards(5, [2], [0.5], 1.0).tolist()
        [0.0, 0.0, 0.5, 0.0, 1.0]
    """
    check_int("length", length, minimum=1)
    if len(ig_positions) != len(ig_rewards):
        raise ValueError(f"`ig_positions` and `ig_rewards` differ in length: {len(ig_positions)} != {len(ig_rewards)}")
    rewards = np.zeros(length, dtype=np.float64)
    for pos, r in zip(ig_positions, ig_rewards, strict=True):
        if not 0 <= pos < length:
            raise ValueError(f"IG position {pos} is outside the completion of length {length}")
        rewards[pos] += ig_coef * r
    rewards[-1] += outcome
    return rewards


def released_token_advantages(
    token_rewards: Sequence[Sequence[float]], group_ids: Sequence[Hashable]
) -> list[np.ndarray]:
    """Per-token advantages of IGPO's released code: return minus the group mean return at the same position.

    Args:
        token_rewards: Per rollout, raw rewards on its completion tokens (see :func:`released_token_rewards`).
        group_ids: Per rollout, its group.

    Returns:
        Per rollout, an array of advantages with the rollout's length. The baseline at position j is the mean of the
        returns at j over the group's rollouts whose completion reaches j.

    Example:
        >>> adv = released_token_advantages([[0, 0.5, 1.0], [0.0, 0.0]], group_ids=[0, 0])
        >>> [a.tolist() for a in adv]
        [[0.75, 0.75, 0.0], [-0.75, -0.75]]
    """
    if len(token_rewards) != len(group_ids):
        raise ValueError(
            f"`token_rewards` and `group_ids` must have one entry per rollout, got {len(token_rewards)} and "
            f"{len(group_ids)}"
        )
    returns = [np.cumsum(np.asarray(r, dtype=np.float64)[::-1])[::-1] for r in token_rewards]
    advantages: list[np.ndarray] = [np.zeros(0)] * len(returns)
    for idx in group_indices(group_ids):
        width = max(len(returns[i]) for i in idx)
        padded = np.zeros((len(idx), width))
        covered = np.zeros((len(idx), width))
        for j, i in enumerate(idx):
            padded[j, : len(returns[i])] = returns[i]
            covered[j, : len(returns[i])] = 1.0
        baseline = padded.sum(0) / np.maximum(covered.sum(0), 1.0)
        for i in idx:
            advantages[i] = returns[i] - baseline[: len(returns[i])]
    return advantages


def turn_to_token_advantages(
    turn_advantages: Sequence[float], turn_spans: Sequence[tuple[int, int]], length: int
) -> np.ndarray:
    """Broadcast per-turn advantages to the tokens of each turn's assistant text (other tokens get 0).

    Args:
        turn_advantages: ``A_1..A_T``.
        turn_spans: Per turn, the ``[start, end)`` token span of the assistant text in the completion.
        length: Completion length in tokens.

    Example:
        >>> turn_to_token_advantages([2.0, 1.0], [(0, 2), (4, 5)], 6).tolist()
        [2.0, 2.0, 0.0, 0.0, 1.0, 0.0]
    """
    if len(turn_advantages) != len(turn_spans):
        raise ValueError(f"{len(turn_advantages)} turn advantages for {len(turn_spans)} turn spans")
    out = np.zeros(length, dtype=np.float64)
    for a, (start, end) in zip(turn_advantages, turn_spans, strict=True):
        if not 0 <= start <= end <= length:
            raise ValueError(f"turn span ({start}, {end}) is outside the completion of length {length}")
        out[start:end] = a
    return out
