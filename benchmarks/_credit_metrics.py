"""Metrics of the credit-assignment benchmark (:mod:`benchmarks.credit_assignment`). Pure functions: no models, no I/O.

A scheme gives every turn of a rollout a *value* (the term it adds to the env reward; for ``gigpo_anchor`` the step
advantage). The metrics compare those values across schemes on the same turns:

- :func:`reward_density`: share of turns whose reward, placed as the IGPO trainer places it (:func:`trainer_rewards`),
  is non-zero.
- :func:`zero_variance_rate`: share of groups (rollouts of one question) whose every turn advantage is 0, i.e. groups
  that teach the policy nothing; advantages from :func:`agents.igpo.advantages.paper_turn_advantages` (or GiGPO's
  episode + step advantages, :func:`gigpo_group_advantages`).
- :func:`credit_auroc`: AUROC of the values for "this turn retrieved a supporting document not retrieved before"
  (:func:`new_support_labels`).
- :func:`spearman`: rank correlation of two schemes' values over the same turns.

Functions: :func:`new_support_labels`, :func:`trainer_rewards`, :func:`reward_density`, :func:`group_is_zero_variance`,
:func:`zero_variance_rate`, :func:`gigpo_group_advantages`, :func:`credit_auroc`, :func:`spearman`; per scheme over a
whole replay: :func:`summarize`, :func:`describe`.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from agents.igpo.advantages import group_indices, paper_turn_advantages

__all__ = [
    "GIGPO_GAMMA",
    "new_support_labels",
    "trainer_rewards",
    "reward_density",
    "group_is_zero_variance",
    "zero_variance_rate",
    "paper_advantage_fn",
    "gigpo_advantage_fn",
    "gigpo_group_advantages",
    "credit_auroc",
    "spearman",
    "summarize",
    "describe",
    "rollout_seconds_per_turn",
]

SOURCES = ("policy", "noisy_oracle")
"""Trajectory sources: the policy LM and the noisy scripted oracle."""

GROUP_SIZES = (4, 8, 16)
"""Group sizes of the zero-variance rate."""

GIGPO_GAMMA = 1.0
"""Discount of the returns GiGPO's anchor groups compare (the project's turn-level ``gamma`` default)."""

AdvantageFn = Callable[[Sequence[Any]], list[list[float]]]
"""``rollouts of one group -> per-rollout turn advantages`` (see :func:`zero_variance_rate`)."""


def new_support_labels(retrieved_doc_ids: Sequence[Sequence[str]], supporting_doc_ids: Sequence[str]) -> list[bool]:
    """Label each turn: True when it retrieved a supporting document that no earlier turn of the episode retrieved.

    Example:
        >>> new_support_labels([["d1", "x"], ["d1"], [], ["y", "d2"]], ["d1", "d2"])
        [True, False, False, True]
    """
    gold = set(supporting_doc_ids)
    seen: set[str] = set()
    labels = []
    for ids in retrieved_doc_ids:
        labels.append(bool((set(ids) & gold) - seen))
        seen.update(ids)
    return labels


def trainer_rewards(terms: Sequence[float], env_rewards: Sequence[float]) -> tuple[list[float], float]:
    """Place a rollout's rewards as the IGPO trainer does: scheme terms on turns ``1..T-1``, the rest on turn ``T``.

    The trainer's outcome slot holds the episode's env return (outcome plus any format penalties); the scheme's term
    of the last turn (e.g. the IG of a truncated search) is added to it.

    Returns:
        ``(rewards of turns 1..T-1, reward of turn T)``.

    Example:
        >>> trainer_rewards([0.2, -0.05, 0.0], [0.0, -2.0, 1.0])
        ([0.2, -0.05], -1.0)
    """
    if len(terms) != len(env_rewards) or not terms:
        raise ValueError(
            f"need one term per env reward and at least one turn, got {len(terms)} and {len(env_rewards)}"
        )
    return [float(x) for x in terms[:-1]], float(sum(env_rewards)) + float(terms[-1])


def reward_density(rewards: Sequence[Sequence[float]]) -> float:
    """Share of turns (over all rollouts) whose reward is non-zero.

    Example:
        >>> reward_density([[0.0, 1.0], [0.5, 0.2, 0.0]])
        0.6
    """
    flat = [r for row in rewards for r in row]
    if not flat:
        raise ValueError("`rewards` holds no turns")
    return sum(r != 0.0 for r in flat) / len(flat)


def group_is_zero_variance(advantages: Sequence[Sequence[float]]) -> bool:
    """Whether every turn advantage of a group is 0 (the trainer's ``ZERO_ADVANTAGE_ATOL``): no learning signal.

    Example:
        >>> group_is_zero_variance([[0.0, 0.0], [0.0]]), group_is_zero_variance([[0.0], [0.3]])
        (True, False)
    """
    from agents.igpo.igpo_trainer import ZERO_ADVANTAGE_ATOL

    return all(abs(a) <= ZERO_ADVANTAGE_ATOL for row in advantages for a in row)


def paper_advantage_fn(ig_coef: float) -> AdvantageFn:
    """Return the IGPO trainer's default advantage (``"paper"``, joint normalization) as an :data:`AdvantageFn`.

    Its rollouts are ``(rewards of turns 1..T-1, reward of turn T)`` pairs (:func:`trainer_rewards`); ``ig_coef=0`` is
    outcome-only GRPO (the turn rewards are left out).

    Example:
        >>> paper_advantage_fn(0.0)([([0.3], 1.0), ([0.0], 1.0)])
        [[0.0, 0.0], [0.0, 0.0]]
    """

    def advantages(rollouts: Sequence[tuple[Sequence[float], float]]) -> list[list[float]]:
        ig_rewards = [r[0] for r in rollouts]
        return paper_turn_advantages(ig_rewards, [r[1] for r in rollouts], [0] * len(rollouts), ig_coef=ig_coef)

    return advantages


def zero_variance_rate(
    rollouts: Sequence[Any], group_ids: Sequence[Hashable], group_size: int, advantage_fn: AdvantageFn
) -> float | None:
    """Share of groups whose advantages are all 0, each group cut to its first ``group_size`` rollouts.

    Args:
        rollouts: Per rollout, what ``advantage_fn`` reads (e.g. :func:`trainer_rewards` pairs).
        group_ids: Per rollout, its group; groups with fewer than ``group_size`` rollouts are left out.
        group_size: Rollouts per group.
        advantage_fn: Advantages of one group (:func:`paper_advantage_fn`, :func:`gigpo_advantage_fn`).

    Returns:
        The share, or ``None`` when no group has ``group_size`` rollouts.

    Example:
        >>> rollouts = [([], 1.0), ([], 1.0), ([], 0.0), ([], 1.0)]
        >>> zero_variance_rate(rollouts, ["a", "a", "b", "b"], 2, paper_advantage_fn(0.0))
        0.5
    """
    if len(rollouts) != len(group_ids):
        raise ValueError(f"need one group id per rollout, got {len(rollouts)} rollouts and {len(group_ids)} ids")
    flags = []
    for idx in group_indices(group_ids):
        if len(idx) >= group_size:
            flags.append(group_is_zero_variance(advantage_fn([rollouts[i] for i in idx[:group_size]])))
    return sum(flags) / len(flags) if flags else None


def gigpo_group_advantages(
    state_keys: Sequence[Sequence[Hashable]], env_rewards: Sequence[Sequence[float]], gamma: float = GIGPO_GAMMA
) -> tuple[list[list[float]], list[list[float]]]:
    """GiGPO's advantages of one group: ``(episode, step)``, each per rollout and turn.

    The episode advantage is the outcome-only GRPO one (the group z-score of the env returns, on every turn); the step
    advantage is :func:`agents.igpo.anchor_advantages.anchor_advantages` of the discounted env returns over the
    anchor states ``state_keys`` (e.g. :func:`~agents.igpo.anchor_advantages.doc_set_states`). GiGPO trains on their
    sum.

    Example:
        >>> episode, step = gigpo_group_advantages([["s0", "s1"], ["s0"]], [[0.0, 1.0], [0.0]])
        >>> [[round(a, 3) for a in row] for row in episode], step
        ([[1.0, 1.0], [-1.0]], [[0.5, 0.0], [-0.5]])
    """
    from agents.igpo.anchor_advantages import anchor_advantages, discounted_returns

    returns = [discounted_returns(r, gamma) for r in env_rewards]
    outcomes = [float(sum(r)) for r in env_rewards]
    episode = paper_advantage_fn(0.0)([(r[:-1], o) for r, o in zip(env_rewards, outcomes, strict=True)])
    return episode, anchor_advantages(state_keys, returns)


def gigpo_advantage_fn(gamma: float = GIGPO_GAMMA) -> AdvantageFn:
    """Return GiGPO's trained advantage (episode + step, :func:`gigpo_group_advantages`) as an :data:`AdvantageFn`.

    Its rollouts are ``(state keys, env rewards)`` pairs, one key and one reward per turn.

    Example:
        >>> gigpo_advantage_fn()([(["s0"], [1.0]), (["s0"], [1.0])])
        [[0.0], [0.0]]
    """

    def advantages(rollouts: Sequence[tuple[Sequence[Hashable], Sequence[float]]]) -> list[list[float]]:
        episode, step = gigpo_group_advantages([r[0] for r in rollouts], [r[1] for r in rollouts], gamma)
        return [[e + s for e, s in zip(er, sr, strict=True)] for er, sr in zip(episode, step, strict=True)]

    return advantages


def credit_auroc(values: Sequence[float], labels: Sequence[bool]) -> float | None:
    """AUROC of ``values`` as a ranking of the turns with ``labels`` True above the others (ties count 1/2).

    Returns:
        The AUROC (``sklearn.metrics.roc_auc_score``), or ``None`` when only one class is present.

    Example:
        >>> credit_auroc([0.9, 0.1, 0.5], [True, False, True]), credit_auroc([0.0, 0.0], [True, False])
        (1.0, 0.5)
    """
    from sklearn.metrics import roc_auc_score

    if len(values) != len(labels):
        raise ValueError(f"need one label per value, got {len(values)} values and {len(labels)} labels")
    if len(set(map(bool, labels))) < 2:
        return None
    return float(roc_auc_score([bool(x) for x in labels], [float(v) for v in values]))


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman rank correlation (``scipy.stats.spearmanr``); ``None`` when either side is constant or too short.

    Example:
        >>> spearman([1.0, 2.0, 3.0], [10.0, 30.0, 20.0]), spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
        (0.5, None)
    """
    from scipy.stats import spearmanr

    if len(a) != len(b):
        raise ValueError(f"need paired values, got {len(a)} and {len(b)}")
    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    rho = float(spearmanr(a, b).statistic)
    return None if math.isnan(rho) else rho


# ---------------------------------------------------------------------------------------------- per scheme
def summarize(
    trajectories: Sequence[dict[str, Any]], bare: Sequence[dict[str, Any]], runs: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Return the per-scheme metrics of :mod:`benchmarks.credit_assignment` (layout in its module docstring).

    Args:
        trajectories: The saved trajectories (``source``, ``group``, ``actions``, ``rollout_seconds``).
        bare: Their bare replays (``terms``, ``env_rewards``, ``retrieved``, ``action_types``, ``supporting``).
        runs: Per scheme ``{"values", "env_rewards", "indices", "seconds", "tokens"}``, plus ``"mc_value"`` and
            ``"bare"`` (``{"seconds"}``).
    """
    from agents.igpo.anchor_advantages import doc_set_states

    labels = [new_support_labels(b["retrieved"], b["supporting"]) for b in bare]
    rollout_per_turn = rollout_seconds_per_turn(trajectories)
    bare_per_turn = runs["bare"]["seconds"] / sum(len(b["terms"]) for b in bare)
    mc = runs["mc_value"]
    mc_pos = {i: j for j, i in enumerate(mc["indices"])}
    out = {}
    for name, run in runs.items():
        if name == "bare":
            continue
        idx, values = run["indices"], run["values"]
        if name == "gigpo_anchor":
            density = reward_density(values)
            rollouts = [(doc_set_states(bare[i]["retrieved"]), bare[i]["env_rewards"]) for i in idx]
            adv_fn = gigpo_advantage_fn()
        else:
            rollouts = [trainer_rewards(v, e) for v, e in zip(values, run["env_rewards"], strict=True)]
            density = reward_density([[*ig, last] for ig, last in rollouts])
            adv_fn = paper_advantage_fn(0.0 if name == "outcome" else 1.0)
        groups = [trajectories[i]["group"] for i in idx]
        zero_var = {str(g): zero_variance_rate(rollouts, groups, g, adv_fn) for g in GROUP_SIZES}
        scored, by_source, mine, theirs = [], {s: ([], []) for s in SOURCES}, [], []
        for j, i in enumerate(idx):
            for t, kind in enumerate(bare[i]["action_types"]):
                if kind == "answer":
                    continue
                scored.append((values[j][t], labels[i][t]))
                by_source[trajectories[i]["source"]][0].append(values[j][t])
                by_source[trajectories[i]["source"]][1].append(labels[i][t])
                if i in mc_pos:
                    mine.append(values[j][t])
                    theirs.append(mc["values"][mc_pos[i]][t])
        turns = sum(len(v) for v in values)
        per_turn = run["seconds"] / turns
        out[name] = {
            "density": density,
            "zero_variance_rate": zero_var,
            "auroc": credit_auroc([v for v, _ in scored], [y for _, y in scored]),
            "auroc_by_source": {s: credit_auroc(*by_source[s]) for s in SOURCES},
            "spearman_mc": spearman(mine, theirs),
            "scorer_tokens_per_turn": run["tokens"] / turns,
            "seconds": run["seconds"],
            "seconds_per_turn": per_turn,
            "share_of_rollout": max(0.0, per_turn - bare_per_turn) / rollout_per_turn if rollout_per_turn else None,
            "trajectories": len(idx),
            "turns": turns,
            "auroc_turns": len(scored),
        }
    if "log_ig" in out and "ig" in out:  # log_ig asked the memoized scorer ig's questions: its cost is ig's
        mine = out["log_ig"]
        mine["replay_seconds"], mine["cost_from"] = mine["seconds"], "ig"
        for key in ("scorer_tokens_per_turn", "seconds", "seconds_per_turn", "share_of_rollout"):
            mine[key] = out["ig"][key]
    return out


def rollout_seconds_per_turn(trajectories: Sequence[dict[str, Any]]) -> float | None:
    """Policy rollout seconds per turn (``None`` without policy trajectories)."""
    policy = [t for t in trajectories if t["source"] == "policy"]
    turns = sum(len(t["actions"]) for t in policy)
    return sum(t["rollout_seconds"] for t in policy) / turns if turns else None


def describe(trajectories: Sequence[dict[str, Any]], bare: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per source: trajectories, turns, non-answering turns, share of those retrieving new support, mean outcome."""
    out = {}
    for source in SOURCES:
        mine = [b for t, b in zip(trajectories, bare, strict=True) if t["source"] == source]
        labels = [
            y
            for b in mine
            for y, k in zip(new_support_labels(b["retrieved"], b["supporting"]), b["action_types"], strict=True)
            if k != "answer"
        ]
        kinds = [k for b in mine for k in b["action_types"]]
        out[source] = {
            "trajectories": len(mine),
            "turns": len(kinds),
            "search_turns": kinds.count("search"),
            "invalid_turns": kinds.count("invalid"),
            "non_answer_turns": len(labels),
            "new_support_share": sum(labels) / len(labels) if labels else None,
            "mean_return": statistics.fmean(sum(b["env_rewards"]) for b in mine) if mine else None,
        }
    return out
