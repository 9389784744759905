"""Configuration of :class:`~agents.igpo.igpo_trainer.IGPOTrainer`: TRL's ``GRPOConfig`` plus the IGPO fields.

Every field has a ``help`` string, so ``igpo-env train --help`` (built by ``trl.TrlParser`` from this class, see
:mod:`agents.igpo.cli`) lists it with its default.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from agents.igpo.advantages import ADVANTAGE_NORMALIZATIONS, DEFAULT_EPS
from agents.igpo.turn_rewards import TURN_REWARDS, check_turn_reward
from igpo_env._validation import check_choice, check_fraction, check_int, check_number
from igpo_env.actions import STOP_STRINGS
from igpo_env.scoring.math import ALIAS_MODES, MODES
from igpo_env.scoring.openai_compat import SPEC_PREFIX as OPENAI_SCORER_PREFIX
from igpo_env.scoring.openai_compat import parse_spec as parse_openai_spec
from igpo_env.wrappers.shaping_registry import SHAPING_SCHEMES

__all__ = ["IGPOConfig", "ADVANTAGES", "PER_TOKEN_LOSS_TYPES"]

ADVANTAGES = ("paper", "released")
"""Advantage semantics: the IGPO paper's or IGPO's released code's (see ``agents.igpo.advantages``)."""

PER_TOKEN_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo")
"""TRL ``loss_type`` values whose loss takes per-token advantages (the ones IGPOTrainer can use)."""

IGPO_BETA = 0.001
"""IGPO's KL coefficient."""

DEFAULT_MAX_TURNS = 10
"""IGPO's turn limit."""

DEFAULT_MAX_TURN_TOKENS = 128
"""New tokens per assistant turn."""

GIGPO_STEP_WEIGHT = 1.0
"""GiGPO's weight omega of the step advantage (``step_advantage_w`` in its released configs)."""

_TURN_REWARD_HELP = (
    "Where the per-turn rewards come from: "
    + "; ".join(
        f"'{name}' ({SHAPING_SCHEMES[name].summary if name in SHAPING_SCHEMES else 'GiGPO anchor-state advantage'})"
        for name in TURN_REWARDS
    )
    + ". 'ig' scores IG off the rollout's KV cache (ig_mode); 'log_ig' sets ig_mode='log_prob_diff'; 'outcome' sets "
    "ig_coef=0 (GRPO); the env schemes wrap each rollout env with igpo_env.wrappers.make_shaping(name, env, "
    "**turn_reward_kwargs); 'gigpo_anchor' adds step_advantage_weight * the anchor-state step advantage to GRPO's "
    "episode advantage. 'mc_value' and 'potential' are refused (they need a policy / a Python potential function)."
)


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def _launched_processes() -> int:
    """Return the number of processes of this launch (``WORLD_SIZE``, set by torchrun / ``accelerate launch``)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass
class IGPOConfig(GRPOConfig):
    r"""Configuration for :class:`~agents.igpo.igpo_trainer.IGPOTrainer`.

    Only the new or changed fields are listed; the rest are TRL's ``GRPOConfig`` (``num_generations``,
    ``temperature``, ``epsilon`` (clip, 0.2), ``learning_rate``, ``report_to``, ``use_vllm``, ...).

    Attributes:
        ig_coef (`float`, defaults to `1.0`): Weight of the turn rewards (information gain, or the terms of the
            `turn_reward` scheme). `0` is plain outcome-only GRPO: the advantage is then TRL's GRPO sequence
            advantage (its `scale_rewards`, std and eps) on every assistant token.
        ig_mode (`str`, defaults to `"prob_diff"`): `"prob_diff"` (r_t = p_t - p_{t-1}, IGPO) or `"log_prob_diff"`.
        ig_alias (`str`, defaults to `"first"`): Gold alias used for IG: `"first"` (IGPO), `"max"` or `"mean"`.
        normalization (`str`, defaults to `"joint"`): Group z-scoring of turn rewards: `"joint"` or `"separate"`.
        gamma (`float`, defaults to `1.0`): Turn-level discount in A_t = r~_t + gamma * A_{t+1}.
        advantage (`str`, defaults to `"paper"`): `"paper"` or `"released"` (IGPO's code: raw returns per token,
            per-position group-mean baseline, no std; needs `gamma=1`).
        advantage_eps (`float`, defaults to `1e-6`): Added to the population std when z-scoring.
        prompts_per_step (`int` or `None`, defaults to `None`): Prompts per device and optimizer step; when set,
            `per_device_train_batch_size` becomes `prompts_per_step * num_generations`.
        max_turns (`int`, defaults to `10`): Turn limit of an episode.
        max_turn_tokens (`int`, defaults to `128`): New tokens per assistant turn.
        max_completion_length (`int`, defaults to `2048`, changed): Budget of completion tokens per rollout,
            observations included; a rollout that reaches it is truncated.
        env_id (`str`, defaults to `"SearchQA-v0"`): Gymnasium id of the environment.
        env_kwargs (`dict`, defaults to `{}`): JSON-serializable keyword arguments of the environment (`dataset` /
            `retriever` as paths or URLs, `top_k`, `reward`, ...): checkpoints save the config. Pass live objects (a
            retriever, a list of QAExample) through `IGPOTrainer(env_kwargs=...)` instead. A string is parsed as a
            JSON object (the command line's form).
        turn_reward (`str`, defaults to `"ig"`): Source of the per-turn rewards, by name
            (:data:`agents.igpo.turn_rewards.TURN_REWARDS`; details in :mod:`agents.igpo.turn_rewards`): `"ig"`
            (IGPO), `"log_ig"` (sets `ig_mode="log_prob_diff"`), `"outcome"` (sets `ig_coef=0`: GRPO),
            `"answer_in_context"` / `"evidence_recall"` / `"search_cost"` (each rollout env wrapped with
            `igpo_env.wrappers.make_shaping`; `ig_coef` weights their terms) or `"gigpo_anchor"` (GiGPO: needs
            `advantage="paper"`; `ig_coef` unused). `"mc_value"` and `"potential"` are refused, saying why.
        turn_reward_kwargs (`dict`, defaults to `{}`): Arguments of the scheme: the wrapper's for an env scheme
            (e.g. `{"cost": 0.1}` for `"search_cost"`, `{"bonus": 0.2}`, `{"redundancy_coef": 0.5}`),
            `{"normalize_std": true}` for `"gigpo_anchor"`; none for the others. A string is parsed as a JSON object.
        step_advantage_weight (`float`, defaults to `1.0`): `"gigpo_anchor"` only: the weight omega in
            `A_t = A_episode + omega * A_step,t` (GiGPO's `step_advantage_w`; 0 gives GRPO).
        scorer (`str`, defaults to `"policy"`): IG scorer: `"policy"` (the current policy, scored as a branch off
            the rollout's KV cache, as IGPO), a local model path or registered name (`HFScorer`), an `http(s)://`
            URL of `igpo-env serve scorer` (`RemoteScorer`), or `openai:BASE_URL#MODEL` for an OpenAI-compatible
            completions server such as `vllm serve` (`OpenAICompatScorer`; contexts are rendered with the policy's
            tokenizer, so the served model must share it).
        beta (`float`, defaults to `0.001`, changed): KL coefficient (IGPO's value).
        stop_strings (`list[str]`, defaults to `igpo_env.actions.STOP_STRINGS`): An assistant turn ends at the
            first of these (or at the end-of-turn token).
        log_completions (`bool`, defaults to `False`): TRL's completions table (off: multi-turn rollouts are long).
        bf16 (`bool`, changed): defaults to `False` on a machine without a GPU (TRL's `True` fails there).
        use_cpu (`bool`, changed): set to `True` when several processes are launched (``WORLD_SIZE`` > 1) on a
            machine without a GPU, so that they form one gloo process group (accelerate's MULTI_CPU) instead of
            each training alone on the whole batch.
        loss_type (`str`, changed): only the values of :data:`PER_TOKEN_LOSS_TYPES` (losses of per-token advantages).

    Example:
        >>> cfg = IGPOConfig(output_dir="/tmp/igpo-doc", num_generations=4, per_device_train_batch_size=4,
        ...                  report_to="none")
        >>> cfg.ig_coef, cfg.normalization, cfg.advantage, cfg.beta
        (1.0, 'joint', 'paper', 0.001)
        >>> IGPOConfig(output_dir="/tmp/igpo-doc", num_generations=4, prompts_per_step=3,
        ...            report_to="none").per_device_train_batch_size
        12
        >>> IGPOConfig(output_dir="/tmp/igpo-doc", normalization="both", report_to="none")
        Traceback (most recent call last):
        ...
        ValueError: `normalization` must be one of ('joint', 'separate'), got 'both'
    """

    ig_coef: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the turn rewards (information gain, or the turn_reward scheme's terms); 0 = plain "
            "outcome-only GRPO."
        },
    )
    ig_mode: str = field(
        default="prob_diff",
        metadata={"help": "Information gain: 'prob_diff' (p_t - p_{t-1}, IGPO) or 'log_prob_diff'.", "choices": MODES},
    )
    ig_alias: str = field(
        default="first",
        metadata={"help": "Gold alias used for IG: 'first' (IGPO), 'max' or 'mean'.", "choices": ALIAS_MODES},
    )
    normalization: str = field(
        default="joint",
        metadata={
            "help": "Group z-scoring of turn rewards (paper advantage): 'joint' or 'separate'.",
            "choices": ADVANTAGE_NORMALIZATIONS,
        },
    )
    gamma: float = field(
        default=1.0,
        metadata={"help": "Turn-level discount: A_t = r~_t + gamma * A_{t+1}."},
    )
    advantage: str = field(
        default="paper",
        metadata={
            "help": "'paper' (group z-scored turn rewards) or 'released' (IGPO code: per-token returns).",
            "choices": ADVANTAGES,
        },
    )
    advantage_eps: float = field(
        default=DEFAULT_EPS,
        metadata={"help": "Added to the population std when z-scoring turn rewards."},
    )
    prompts_per_step: int | None = field(
        default=None,
        metadata={
            "help": "Prompts per device and optimizer step; when set, per_device_train_batch_size = prompts_per_step "
            "* num_generations (None: use per_device_train_batch_size)."
        },
    )
    max_turns: int = field(
        default=DEFAULT_MAX_TURNS,
        metadata={"help": "Turn limit of an episode."},
    )
    max_turn_tokens: int = field(
        default=DEFAULT_MAX_TURN_TOKENS,
        metadata={"help": "New tokens per assistant turn."},
    )
    max_completion_length: int | None = field(
        default=2048,
        metadata={"help": "Completion tokens per rollout (observations included); longer rollouts are truncated."},
    )
    env_id: str = field(
        default="SearchQA-v0",
        metadata={"help": "Gymnasium id of the environment."},
    )
    env_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Keyword arguments of the environment (dataset, retriever, top_k, reward, ...); a JSON object on "
            "the command line."
        },
    )
    turn_reward: str = field(
        default="ig",
        metadata={"help": _TURN_REWARD_HELP},
    )
    turn_reward_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": 'Arguments of the turn_reward scheme (the wrapper\'s, e.g. {"cost": 0.1} for search_cost; '
            '{"normalize_std": true} for gigpo_anchor); a JSON object on the command line.'
        },
    )
    step_advantage_weight: float = field(
        default=GIGPO_STEP_WEIGHT,
        metadata={"help": "gigpo_anchor: weight omega in A = A_episode + omega * A_step (GiGPO: 1.0)."},
    )
    scorer: str = field(
        default="policy",
        metadata={
            "help": "IG scorer: 'policy' (the current policy, KV-cache branch), a model path or name, the URL of "
            "`igpo-env serve scorer`, or openai:BASE_URL#MODEL (an OpenAI-compatible server such as vllm serve)."
        },
    )
    stop_strings: list[str] | None = field(
        default=None,
        metadata={"help": "An assistant turn ends at the first of these strings (default: </search>, </answer>)."},
    )
    beta: float = field(
        default=IGPO_BETA,
        metadata={"help": "KL coefficient (IGPO: 0.001; 0 skips the reference model)."},
    )
    log_completions: bool = field(
        default=False,
        metadata={"help": "Log TRL's completions table (multi-turn rollouts are long)."},
    )

    def __post_init__(self):
        if self.bf16 is None and not self.fp16 and not _has_accelerator():
            self.bf16 = False  # TRL defaults to bf16, which transformers rejects on a CPU-only machine
        if not self.use_cpu and _launched_processes() > 1 and not _has_accelerator():
            # accelerate makes a gloo group of CPU processes only when told to use the CPU (else: DistributedType.NO)
            self.use_cpu = True
        if check_int("prompts_per_step", self.prompts_per_step, minimum=1, optional=True) is not None:
            self.per_device_train_batch_size = self.prompts_per_step * self.num_generations
        super().__post_init__()
        check_number("ig_coef", self.ig_coef, minimum=0)
        self.turn_reward_kwargs = check_turn_reward(
            self.turn_reward, _json_object("turn_reward_kwargs", self.turn_reward_kwargs, '{"cost": 0.1}')
        )
        if self.turn_reward == "log_ig":
            self.ig_mode = "log_prob_diff"
        elif self.turn_reward == "outcome":
            self.ig_coef = 0.0
        elif self.turn_reward == "gigpo_anchor" and self.advantage != "paper":
            raise ValueError(
                f"`turn_reward='gigpo_anchor'` adds per-turn step advantages to the episode one; it needs "
                f"`advantage='paper'`, got {self.advantage!r}"
            )
        check_number("step_advantage_weight", self.step_advantage_weight, minimum=0)
        check_choice("ig_mode", self.ig_mode, MODES)
        check_choice("ig_alias", self.ig_alias, ALIAS_MODES)
        check_choice("normalization", self.normalization, ADVANTAGE_NORMALIZATIONS)
        check_fraction("gamma", self.gamma)
        check_choice("advantage", self.advantage, ADVANTAGES)
        if self.advantage == "released" and self.gamma != 1.0:
            raise ValueError(
                f"`advantage='released'` uses IGPO's undiscounted returns; set `gamma=1.0`, got {self.gamma}"
            )
        check_number("advantage_eps", self.advantage_eps, minimum=0, strict=True)
        check_int("max_turns", self.max_turns, minimum=1)
        check_int("max_turn_tokens", self.max_turn_tokens, minimum=1)
        check_int("max_completion_length", self.max_completion_length, minimum=1, optional=True)
        if self.max_completion_length is not None and self.max_completion_length < self.max_turn_tokens:
            raise ValueError(
                f"`max_completion_length` ({self.max_completion_length}) must be >= `max_turn_tokens` "
                f"({self.max_turn_tokens})"
            )
        if not isinstance(self.scorer, str) or not self.scorer:
            raise ValueError(f"`scorer` must be 'policy', a model path or a URL, got {self.scorer!r}")
        if self.scorer.startswith(OPENAI_SCORER_PREFIX):
            parse_openai_spec(self.scorer)  # a malformed spec fails here, not after the model loads
        self.env_kwargs = _json_object("env_kwargs", self.env_kwargs, '{"top_k": 3}')
        if self.stop_strings is None:
            self.stop_strings = list(STOP_STRINGS)
        check_choice("loss_type", self.loss_type, PER_TOKEN_LOSS_TYPES)


def _json_object(name: str, value: Any, example: str) -> dict[str, Any]:
    """Return the field ``name`` as a JSON-serializable dict (``None``: ``{}``; a string: parsed as a JSON object)."""
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"`{name}` must be a JSON object such as '{example}', got {value!r}") from e
    if not isinstance(value, dict):
        raise TypeError(f"`{name}` must be a dict, got {type(value).__name__}")
    try:
        json.dumps(value)
    except TypeError as e:
        raise TypeError(
            f"`{name}` must be JSON-serializable (checkpoints save the config): {e}. Pass objects such as a "
            "retriever or a list of QAExample through IGPOTrainer(env_kwargs=...) instead"
        ) from e
    return value
