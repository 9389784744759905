"""Turn-reward schemes of :class:`~agents.igpo.igpo_trainer.IGPOTrainer` (``IGPOConfig.turn_reward``), by name.

Each name of :data:`TURN_REWARDS` says where a rollout's per-turn rewards ``r_1..r_{T-1}`` come from (the final turn's
``r_T`` is always the rollout's reward, by default the episode return); the advantage is then computed as
``IGPOConfig.advantage`` says (:mod:`agents.igpo.advantages`), with ``ig_coef`` weighting ``r_1..r_{T-1}``:

- ``"ig"`` (default): IGPO's information gain, scored as a branch off the rollout's KV cache (or by
  ``IGPOConfig.scorer``), with ``IGPOConfig.ig_mode``.
- ``"log_ig"``: the same with ``ig_mode="log_prob_diff"`` (gain in mean log p(gold)).
- ``"outcome"``: no turn reward: GRPO (the trainer's ``ig_coef=0`` path, TRL's sequence advantage on every turn).
- ``"answer_in_context"``, ``"evidence_recall"``, ``"search_cost"`` (:data:`ENV_TURN_REWARDS`): each rollout env is
  wrapped with :func:`igpo_env.wrappers.make_shaping` (``IGPOConfig.turn_reward_kwargs`` are the wrapper's
  arguments) and turn t's reward is the wrapper's term ``info["shaping"]["reward"]``
  (:attr:`agents.rollout.Rollout.shaping_rewards`). The final turn's term is added to the rollout's reward:
  ``r_T = outcome + ig_coef * term_T``. So the rewards equal the wrapper's own rewards on the same transcript,
  except that an invalid turn's format penalty counts in ``r_T`` (inside the episode return), as under ``"ig"``.
- ``"gigpo_anchor"``: an advantage scheme (GiGPO): ``A_t = A_episode + step_advantage_weight * A_step,t``, with
  ``A_episode`` the GRPO sequence advantage and ``A_step`` from :func:`agents.igpo.anchor_advantages.anchor_advantages`
  over each group of ``num_generations`` rollouts (:func:`gigpo_turn_advantages`).

``"mc_value"`` and ``"potential"`` are registered shaping schemes that a config cannot select
(:data:`REFUSED_TURN_REWARDS` says why and what to use instead).

Example:
    >>> check_turn_reward("search_cost", {"cost": 0.1})
    {'cost': 0.1}
    >>> check_turn_reward("mc_value", {})
    Traceback (most recent call last):
    ...
    ValueError: `turn_reward='mc_value'` cannot be trained with: it needs a policy to play k continuations ...
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from igpo_env._validation import check_choice
from igpo_env.wrappers.shaping_registry import ADVANTAGE_SCHEMES, SHAPING_SCHEMES, shaping_class

__all__ = [
    "TURN_REWARDS",
    "IG_TURN_REWARDS",
    "ENV_TURN_REWARDS",
    "REFUSED_TURN_REWARDS",
    "GIGPO_OPTIONS",
    "check_turn_reward",
    "wrap_envs",
    "turn_rewards_of",
    "gigpo_turn_advantages",
]

IG_TURN_REWARDS: Mapping[str, str | None] = {"ig": None, "log_ig": "log_prob_diff"}
"""Information-gain schemes scored by the trainer -> the ``ig_mode`` they fix (``None``: ``IGPOConfig.ig_mode``)."""

REFUSED_TURN_REWARDS: Mapping[str, str] = {
    "mc_value": "it needs a policy to play k continuations after every turn (MCValueWrapper(policy=...)), k x the "
    "remaining turns of generation per turn: a reference for credit-assignment studies (benchmarks/credit_assignment"
    ".py), not a training reward. Use 'ig' (the policy's own estimate of p(gold), scored off the KV cache) or "
    "'gigpo_anchor' (turn values from the group's own rollouts)",
    "potential": "it needs a Python potential_fn(messages, ground_truth), which a config (saved as JSON with every "
    "checkpoint) cannot hold. 'ig' is potential-based shaping with Phi = p(gold | transcript); for another potential "
    "compute it in a registered wrapper and select that scheme by name",
}
"""Registered shaping schemes the trainer refuses -> why, and what to use instead."""

ENV_TURN_REWARDS: tuple[str, ...] = tuple(
    name for name in SHAPING_SCHEMES if name not in ("outcome", *IG_TURN_REWARDS, *REFUSED_TURN_REWARDS)
)
"""Schemes whose per-turn term comes from wrapping each rollout env (``make_shaping``)."""

TURN_REWARDS: tuple[str, ...] = (*IG_TURN_REWARDS, "outcome", *ENV_TURN_REWARDS, *ADVANTAGE_SCHEMES)
"""The values of ``IGPOConfig.turn_reward``."""

GIGPO_OPTIONS = ("normalize_std",)
"""``turn_reward_kwargs`` of ``"gigpo_anchor"``: ``normalize_std`` (divide by the anchor group's std; default off)."""


def check_turn_reward(name: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a scheme name and its keyword arguments; return the arguments as a dict.

    For an env scheme the argument names are checked against its wrapper's constructor (their values when the trainer
    wraps the envs, by the wrapper itself).

    Raises:
        ValueError: for an unknown or refused name (saying why and what to use instead), or arguments the scheme
            does not take.

    Example:
        >>> check_turn_reward("ig", {"alias": "max"})
        Traceback (most recent call last):
        ...
        ValueError: `turn_reward='ig'` takes no `turn_reward_kwargs` (got ['alias']); IG is set by the config ...
    """
    if name in REFUSED_TURN_REWARDS:
        raise ValueError(f"`turn_reward={name!r}` cannot be trained with: {REFUSED_TURN_REWARDS[name]}")
    check_choice("turn_reward", name, TURN_REWARDS)
    kwargs = dict(kwargs)
    if name in ("outcome", *IG_TURN_REWARDS) and kwargs:
        hint = (
            "IG is set by the config fields ig_alias, ig_mode and scorer"
            if name in IG_TURN_REWARDS
            else "the outcome metric is the env's `reward` (env_kwargs)"
        )
        raise ValueError(f"`turn_reward={name!r}` takes no `turn_reward_kwargs` (got {sorted(kwargs)}); {hint}")
    if name in ENV_TURN_REWARDS:
        params = inspect.signature(shaping_class(name).__init__).parameters
        takes = [p for p in params if p not in ("self", "env") and p not in SHAPING_SCHEMES[name].fixed]
        unknown = sorted(set(kwargs) - set(takes))
        if unknown:
            raise ValueError(f"`turn_reward={name!r}` takes {takes} as `turn_reward_kwargs`, got unknown {unknown}")
    if name in ADVANTAGE_SCHEMES:
        unknown = sorted(set(kwargs) - set(GIGPO_OPTIONS))
        if unknown:
            raise ValueError(f"`turn_reward={name!r}` takes only {list(GIGPO_OPTIONS)} as kwargs, got {unknown}")
        if not isinstance(kwargs.get("normalize_std", False), bool):
            raise TypeError(f"`normalize_std` must be a bool, got {kwargs['normalize_std']!r}")
    return kwargs


def wrap_envs(envs: Sequence[Any], name: str, kwargs: Mapping[str, Any], like: Any = None) -> list[Any]:
    """Wrap each env with the env scheme ``name`` (:func:`igpo_env.wrappers.make_shaping`, ``kwargs`` its arguments).

    The ``evidence_recall`` wrappers share one fitted TF-IDF index: the first wrapper's (or ``like``'s, a wrapper
    made earlier by this function), instead of fitting one per env.

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from agents.rollout import make_envs
        >>> envs = make_envs(2, dataset=toy_qa(), retriever=BM25Retriever.from_docs(toy_corpus()))
        >>> wrapped = wrap_envs(envs, "evidence_recall", {})
        >>> wrapped[0].scheme, wrapped[0].index is wrapped[1].index
        ('evidence_recall', True)
    """
    from igpo_env.wrappers import make_shaping

    if name not in ENV_TURN_REWARDS:
        raise ValueError(f"{name!r} is not an env turn-reward scheme; choose one of {ENV_TURN_REWARDS}")
    out: list[Any] = []
    for env in envs:
        index = getattr(like if like is not None else (out[0] if out else None), "index", None)
        extra = {"corpus": index} if name == "evidence_recall" and index is not None else {}
        out.append(make_shaping(name, env, **{**kwargs, **extra}))
    return out


def turn_rewards_of(rollout: Any, name: str, ig_coef: float = 1.0) -> tuple[list[float], float]:
    """Return a rollout's non-final turn rewards and the term added to its reward on the final turn.

    Args:
        rollout: An :class:`agents.rollout.Rollout`.
        name: The scheme (:data:`TURN_REWARDS`).
        ig_coef: Weight of the final turn's term (env schemes; the advantage functions weight the others).

    Returns:
        ``(r_1..r_{T-1}, final_term)``: the IG rewards and 0 for ``"ig"`` / ``"log_ig"``; the wrapper's terms
        and ``ig_coef * term_T`` for an env scheme; zeros and 0 otherwise (and where no IG was scored, or the env
        was not wrapped because ``ig_coef`` is 0).

    Raises:
        RuntimeError: for an env scheme (with ``ig_coef`` not 0) when the rollout's env was not wrapped with it.

    Example:
        >>> from agents.rollout import Rollout
        >>> r = Rollout("q", "s", [1], turn_spans=[(0, 1), (1, 2)], shaping_rewards=[-0.1, 0.0])
        >>> turn_rewards_of(r, "search_cost")
        ([-0.1], 0.0)
    """
    n = len(rollout.turn_spans)
    if name in IG_TURN_REWARDS and len(rollout.ig_rewards) == n - 1:
        return list(rollout.ig_rewards), 0.0
    if name not in ENV_TURN_REWARDS or (ig_coef == 0 and not rollout.shaping_rewards):
        return [0.0] * max(n - 1, 0), 0.0
    terms = rollout.shaping_rewards
    if len(terms) != n:
        raise RuntimeError(
            f"rollout {rollout.question_id!r} has {len(terms)} shaping terms for {n} turns: its env is not wrapped "
            f"with the {name!r} scheme"
        )
    return list(terms[:-1]), ig_coef * terms[-1]


def gigpo_turn_advantages(
    episode_advantages: Sequence[float],
    retrieved_doc_ids: Sequence[Sequence[Sequence[str]]],
    rewards: Sequence[float],
    group_ids: Sequence[Hashable],
    weight: float = 1.0,
    gamma: float = 1.0,
    normalize_std: bool = False,
    eps: float = 1e-6,
) -> list[list[float]]:
    """GiGPO's per-turn advantages: ``A_t = A_episode + weight * A_step,t`` (Feng et al., 2025).

    ``A_step`` is :func:`~agents.igpo.anchor_advantages.anchor_advantages` within each group of rollouts of one
    prompt: the anchor state of a turn is the set of passages retrieved before it
    (:func:`~agents.igpo.anchor_advantages.doc_set_states`), and the turn returns are the discounted returns of the
    turn rewards ``(0, ..., 0, reward)`` (the rollout's reward on its final turn, as the trainer's other schemes
    place it).

    Args:
        episode_advantages: Per rollout, the episode-level advantage (the trainer passes TRL's GRPO one).
        retrieved_doc_ids: Per rollout, per turn, the ids that turn retrieved.
        rewards: Per rollout, its reward (the final turn's).
        group_ids: Per rollout, its group.
        weight: GiGPO's step-advantage weight (omega; ``IGPOConfig.step_advantage_weight``).
        gamma: Discount of the turn returns.
        normalize_std: Divide the step advantages by the anchor group's std (GiGPO's ``mean_std_norm``).
        eps: Added to that std.

    Returns:
        Per rollout, one advantage per turn.

    Example:
        >>> adv = gigpo_turn_advantages([0.5, -0.5], [[["d1"], []], [["d2"], []]], [1.0, 0.0], [0, 0])
        >>> adv  # both start from the bare prompt (step advantage +-0.5); after that, different states (0)
        [[1.0, 0.5], [-1.0, -0.5]]
    """
    from agents.igpo.advantages import group_indices
    from agents.igpo.anchor_advantages import anchor_advantages, discounted_returns, doc_set_states

    n = len(episode_advantages)
    if not len(retrieved_doc_ids) == len(rewards) == len(group_ids) == n:
        raise ValueError(
            f"need one entry per rollout: {n} episode advantages, {len(retrieved_doc_ids)} retrieval records, "
            f"{len(rewards)} rewards, {len(group_ids)} group ids"
        )
    out: list[list[float]] = [[] for _ in range(n)]
    for idx in group_indices(group_ids):
        keys = [doc_set_states(retrieved_doc_ids[i]) for i in idx]
        returns = [
            discounted_returns([0.0] * (len(keys[j]) - 1) + [float(rewards[i])], gamma) for j, i in enumerate(idx)
        ]
        step = anchor_advantages(keys, returns, normalize_std=normalize_std, eps=eps)
        for j, i in enumerate(idx):
            out[i] = [float(episode_advantages[i]) + weight * a for a in step[j]]
    return out
