"""GiGPO's step-level advantages over anchor states (the ``"gigpo_anchor"`` scheme). Pure math: no models, no I/O.

GiGPO (Feng et al., 2025, "Group-in-Group Policy Optimization") adds to the episode-level group advantage a
step-level one: the turns of a group's rollouts (rollouts of the same prompt) that act from the *same* environment
state form an anchor group, and a turn's step advantage is its return minus the anchor group's mean return (optionally
divided by the group's std). In SearchQA the state key of a turn is the set of passages retrieved before that turn's
action (:func:`doc_set_states`); the bare prompt (nothing retrieved) is one shared anchor state of every rollout.
A state seen by one turn only gets 0 (no comparison). The trainer combines ``A = A_episode + w * A_step`` (GiGPO).

Functions: :func:`anchor_advantages`, :func:`doc_set_states`, :func:`discounted_returns`.

Example:
    >>> keys = [doc_set_states([["d1"], []]), doc_set_states([["d2"], ["d1"]])]
    >>> keys[0]
    [frozenset(), frozenset({'d1'})]
    >>> anchor_advantages(keys, [[1.0, 1.0], [0.0, 0.0]])  # both start from the bare prompt; the rest differ
    [[0.5, 0.0], [-0.5, 0.0]]
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from agents.igpo.advantages import DEFAULT_EPS
from igpo_env._validation import check_number

__all__ = ["anchor_advantages", "doc_set_states", "discounted_returns"]


def doc_set_states(retrieved_doc_ids: Sequence[Sequence[str]]) -> list[frozenset[str]]:
    """Return a rollout's per-turn state keys: the passages retrieved *before* each turn's action.

    Args:
        retrieved_doc_ids: Per turn, the env's ``info["retrieved_doc_ids"]`` (empty for non-search turns).

    Returns:
        One ``frozenset`` per turn; the first is always empty (the bare prompt).

    Example:
        >>> [sorted(state) for state in doc_set_states([["a", "b"], [], ["b", "c"]])]
        [[], ['a', 'b'], ['a', 'b']]
    """
    states: list[frozenset[str]] = []
    seen: frozenset[str] = frozenset()
    for ids in retrieved_doc_ids:
        if isinstance(ids, str):
            raise TypeError(f"each turn's retrieved ids must be a list of str, got the str {ids!r}")
        states.append(seen)
        seen = seen | frozenset(ids)
    return states


def discounted_returns(rewards: Sequence[float], gamma: float = 1.0) -> list[float]:
    """Return ``R_t = sum_k gamma^k r_{t+k}`` for each turn of one rollout.

    Example:
        >>> discounted_returns([0.5, 0.0, 1.0], gamma=0.5)
        [0.75, 0.5, 1.0]
    """
    gamma = check_number("gamma", gamma, minimum=0.0, maximum=1.0)
    out = [0.0] * len(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = float(rewards[t]) + gamma * running
        out[t] = running
    return out


def anchor_advantages(
    state_keys: Sequence[Sequence[Hashable]],
    returns: Sequence[Sequence[float]],
    normalize_std: bool = False,
    eps: float = DEFAULT_EPS,
) -> list[list[float]]:
    """Return GiGPO step advantages for one group of rollouts of the same prompt.

    Turns are grouped by identical state key across the whole group (a rollout revisiting a state adds another member);
    each turn gets ``R - mean(anchor group)``, divided by ``std(anchor group) + eps`` (population std) when
    ``normalize_std``. Anchor groups of one turn give 0.

    Args:
        state_keys: Per rollout, one hashable key per turn (e.g. :func:`doc_set_states`).
        returns: Per rollout, one return per turn (e.g. :func:`discounted_returns` of its turn rewards).
        normalize_std: Divide by the anchor group's std (GiGPO's ``norm`` variant).
        eps: Added to the std before dividing (> 0).

    Returns:
        Per rollout, one step advantage per turn.

    Raises:
        ValueError: if the rollout counts or per-rollout turn counts differ, or a return is not finite.

    Example:
        >>> keys = [["s0", "s1"], ["s0", "s1"], ["s0", "s2"]]
        >>> rets = [[1.0, 1.0], [0.0, 0.0], [0.5, 2.0]]
        >>> anchor_advantages(keys, rets)
        [[0.5, 0.5], [-0.5, -0.5], [0.0, 0.0]]
        >>> [[round(a, 3) for a in row] for row in anchor_advantages(keys, rets, normalize_std=True)]
        [[1.225, 1.0], [-1.225, -1.0], [0.0, 0.0]]
    """
    eps = check_number("eps", eps, minimum=0.0, strict=True)
    if len(state_keys) != len(returns):
        raise ValueError(f"got state keys for {len(state_keys)} rollouts but returns for {len(returns)}")
    members: dict[Hashable, list[tuple[int, int]]] = defaultdict(list)
    for i, (keys, rets) in enumerate(zip(state_keys, returns, strict=True)):
        if len(keys) != len(rets):
            raise ValueError(f"rollout {i} has {len(keys)} state keys but {len(rets)} returns; give one per turn")
        for t, (key, ret) in enumerate(zip(keys, rets, strict=True)):
            if not math.isfinite(float(ret)):
                raise ValueError(f"returns[{i}][{t}] must be finite, got {ret!r}")
            members[key].append((i, t))
    out = [[0.0] * len(rets) for rets in returns]
    for turns in members.values():
        if len(turns) < 2:
            continue
        values = np.array([float(returns[i][t]) for i, t in turns])
        centered = values - values.mean()
        if normalize_std:
            centered = centered / (values.std() + eps)
        for (i, t), a in zip(turns, centered, strict=True):
            out[i][t] = float(a)
    return out
