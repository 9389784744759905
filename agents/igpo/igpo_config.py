"""Configuration of :class:`~agents.igpo.igpo_trainer.IGPOTrainer`: TRL's ``GRPOConfig`` plus the IGPO fields."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from agents.igpo.advantages import DEFAULT_EPS, NORMALIZATIONS

__all__ = ["IGPOConfig", "ADVANTAGES", "IG_MODES", "IG_ALIASES"]

ADVANTAGES = ("paper", "released")
"""Advantage semantics: the IGPO paper's or IGPO's released code's (see ``agents.igpo.advantages``)."""

IG_MODES = ("prob_diff", "log_prob_diff")
"""Information-gain modes (``igpo_env.scoring.math``)."""

IG_ALIASES = ("first", "max", "mean")
"""How gold aliases are combined into one score."""

IGPO_BETA = 0.001
"""IGPO's KL coefficient."""

DEFAULT_MAX_TURNS = 10
"""IGPO's turn limit."""

DEFAULT_MAX_TURN_TOKENS = 128
"""New tokens per assistant turn."""


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


@dataclass
class IGPOConfig(GRPOConfig):
    r"""Configuration for :class:`~agents.igpo.igpo_trainer.IGPOTrainer`.

    Only the new or changed fields are listed; the rest are TRL's ``GRPOConfig`` (``num_generations``,
    ``temperature``, ``epsilon`` (clip, 0.2), ``learning_rate``, ``report_to``, ``use_vllm``, ...).

    Attributes:
        ig_coef (`float`, defaults to `1.0`): Weight of the information-gain turn rewards. `0` is plain outcome-only
            GRPO: the advantage is then TRL's GRPO sequence advantage (its `scale_rewards`, std and eps) on every
            assistant token.
        ig_mode (`str`, defaults to `"prob_diff"`): `"prob_diff"` (r_t = p_t - p_{t-1}, IGPO) or `"log_prob_diff"`.
        ig_alias (`str`, defaults to `"first"`): Gold alias used for IG: `"first"` (IGPO), `"max"` or `"mean"`.
        normalization (`str`, defaults to `"joint"`): Group z-scoring of turn rewards: `"joint"` or `"separate"`.
        gamma (`float`, defaults to `1.0`): Turn-level discount in A_t = r~_t + gamma * A_{t+1}.
        advantage (`str`, defaults to `"paper"`): `"paper"` or `"released"` (IGPO's code: raw returns per token,
            per-position group-mean baseline, no std; needs `gamma=1`).
        advantage_eps (`float`, defaults to `1e-6`): Added to the population std when z-scoring.
        max_turns (`int`, defaults to `10`): Turn limit of an episode.
        max_turn_tokens (`int`, defaults to `128`): New tokens per assistant turn.
        max_completion_length (`int`, defaults to `2048`, changed): Budget of completion tokens per rollout,
            observations included; a rollout that reaches it is truncated.
        env_id (`str`, defaults to `"SearchQA-v0"`): Gymnasium id of the environment.
        env_kwargs (`dict`, defaults to `{}`): JSON-serializable keyword arguments of the environment (`dataset` /
            `retriever` as paths or URLs, `top_k`, `reward`, ...): checkpoints save the config. Pass live objects (a
            retriever, a list of QAExample) through `IGPOTrainer(env_kwargs=...)` instead.
        scorer (`str`, defaults to `"policy"`): IG scorer: `"policy"` (the current policy, scored as a branch off
            the rollout's KV cache, as IGPO), a local model path (`HFScorer`) or an `http(s)://` scorer URL.
        beta (`float`, defaults to `0.001`, changed): KL coefficient (IGPO's value).
        stop_strings (`list[str]`, defaults to `["</search>", "</answer>"]`): An assistant turn ends at the first of
            these (or at the end-of-turn token).
        log_completions (`bool`, defaults to `False`): TRL's completions table (off: multi-turn rollouts are long).
        bf16 (`bool`, changed): defaults to `False` on a machine without a GPU (TRL's `True` fails there).

    Example:
        >>> cfg = IGPOConfig(output_dir="/tmp/igpo-doc", num_generations=4, per_device_train_batch_size=4,
        ...                  report_to="none")
        >>> cfg.ig_coef, cfg.normalization, cfg.advantage, cfg.beta
        (1.0, 'joint', 'paper', 0.001)
        >>> IGPOConfig(output_dir="/tmp/igpo-doc", normalization="both", report_to="none")
        Traceback (most recent call last):
        ...
        ValueError: `normalization` must be one of ('joint', 'separate'), got 'both'
    """

    ig_coef: float = field(
        default=1.0,
        metadata={"help": "Weight of the information-gain turn rewards; 0 = plain outcome-only GRPO."},
    )
    ig_mode: str = field(
        default="prob_diff",
        metadata={"help": "Information gain: 'prob_diff' (p_t - p_{t-1}, IGPO) or 'log_prob_diff'."},
    )
    ig_alias: str = field(
        default="first",
        metadata={"help": "Gold alias used for IG: 'first' (IGPO), 'max' or 'mean'."},
    )
    normalization: str = field(
        default="joint",
        metadata={"help": "Group z-scoring of turn rewards (paper advantage): 'joint' or 'separate'."},
    )
    gamma: float = field(
        default=1.0,
        metadata={"help": "Turn-level discount: A_t = r~_t + gamma * A_{t+1}."},
    )
    advantage: str = field(
        default="paper",
        metadata={"help": "'paper' (group z-scored turn rewards) or 'released' (IGPO code: per-token returns)."},
    )
    advantage_eps: float = field(
        default=DEFAULT_EPS,
        metadata={"help": "Added to the population std when z-scoring turn rewards."},
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
    env_kwargs: dict[str, Any] | None = field(
        default=None,
        metadata={"help": "Keyword arguments of the environment (dataset, retriever, top_k, reward, ...)."},
    )
    scorer: str = field(
        default="policy",
        metadata={"help": "IG scorer: 'policy' (the current policy, KV-cache branch), a model path or a scorer URL."},
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
        super().__post_init__()
        if self.ig_coef < 0:
            raise ValueError(f"`ig_coef` must be >= 0, got {self.ig_coef}")
        if self.ig_mode not in IG_MODES:
            raise ValueError(f"`ig_mode` must be one of {IG_MODES}, got {self.ig_mode!r}")
        if self.ig_alias not in IG_ALIASES:
            raise ValueError(f"`ig_alias` must be one of {IG_ALIASES}, got {self.ig_alias!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"`normalization` must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"`gamma` must be in [0, 1], got {self.gamma}")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"`advantage` must be one of {ADVANTAGES}, got {self.advantage!r}")
        if self.advantage == "released" and self.gamma != 1.0:
            raise ValueError(
                f"`advantage='released'` uses IGPO's undiscounted returns; set `gamma=1.0`, got {self.gamma}"
            )
        if self.advantage_eps <= 0:
            raise ValueError(f"`advantage_eps` must be > 0, got {self.advantage_eps}")
        if self.max_turns < 1:
            raise ValueError(f"`max_turns` must be >= 1, got {self.max_turns}")
        if self.max_turn_tokens < 1:
            raise ValueError(f"`max_turn_tokens` must be >= 1, got {self.max_turn_tokens}")
        if self.max_completion_length is not None and self.max_completion_length < self.max_turn_tokens:
            raise ValueError(
                f"`max_completion_length` ({self.max_completion_length}) must be >= `max_turn_tokens` "
                f"({self.max_turn_tokens})"
            )
        if not isinstance(self.scorer, str) or not self.scorer:
            raise ValueError(f"`scorer` must be 'policy', a model path or a URL, got {self.scorer!r}")
        if self.env_kwargs is None:
            self.env_kwargs = {}
        if not isinstance(self.env_kwargs, dict):
            raise TypeError(f"`env_kwargs` must be a dict, got {type(self.env_kwargs).__name__}")
        try:
            json.dumps(self.env_kwargs)
        except TypeError as e:
            raise TypeError(
                f"`env_kwargs` must be JSON-serializable (checkpoints save the config): {e}. Pass objects such as a "
                "retriever or a list of QAExample through IGPOTrainer(env_kwargs=...) instead"
            ) from e
        if self.stop_strings is None:
            self.stop_strings = ["</search>", "</answer>"]
        if self.loss_type not in ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "luspo"):
            raise ValueError(f"`loss_type={self.loss_type!r}` does not support per-token advantages in IGPOTrainer")
