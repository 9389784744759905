"""IGPOTrainer: TRL's GRPOTrainer with multi-turn SearchQA rollouts and information-gain turn-level advantages."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer

from agents.igpo.advantages import (
    paper_turn_advantages,
    released_token_advantages,
    released_token_rewards,
    turn_to_token_advantages,
)
from agents.igpo.igpo_config import IGPOConfig
from agents.igpo.lockstep import LockstepModel, check_vllm_policy_scorer, needs_lockstep
from agents.igpo.turn_rewards import (
    ENV_TURN_REWARDS,
    IG_TURN_REWARDS,
    gigpo_turn_advantages,
    turn_rewards_of,
    wrap_envs,
)
from agents.igpo.vllm_rollouts import check_vllm_setup
from agents.rollout import IGSpec, Rollout, generate_rollouts, make_envs

__all__ = ["IGPOTrainer", "outcome_reward", "make_train_dataset"]

logger = logging.getLogger(__name__)

SEED_STRIDE = 1_000_003
"""Mixes (seed, rollout call, rollout index) into one sampling seed per rollout, so every generation batch samples
differently and a rollout's tokens do not depend on how the batch is split across processes."""

SEED_MODULUS = 2**63
"""Rollout sampling seeds are taken modulo this (``torch.Generator.manual_seed`` takes a 64-bit integer)."""

ZERO_ADVANTAGE_ATOL = 1e-8
"""A group whose every loss-token advantage is within this of 0 counts as zero-variance (no learning signal)."""

REWARD_EPS = 1e-9
"""A turn reward of at most this magnitude counts as zero in ``rollout/reward_density``."""


def outcome_reward(completions: list, outcome: list[float], **kwargs: Any) -> list[float]:
    """TRL reward function: the episode return of each rollout (passed through from the rollout).

    Example:
        >>> outcome_reward([[], []], outcome=[1.0, -2.0])
        [1.0, -2.0]
    """
    return [float(x) for x in outcome]


def make_train_dataset(examples: Sequence[Any]) -> Any:
    """Build a ``datasets.Dataset`` with one row per question: ``prompt`` and ``question_id``.

    The environment renders the real prompt; ``prompt`` (the question as a user message) is only used for logs.

    Example:
        >>> from igpo_env.data.toy import toy_qa
        >>> ds = make_train_dataset(toy_qa())
        >>> ds[0]["question_id"], ds[0]["prompt"][0]["role"]
        ('tq0', 'user')
    """
    from datasets import Dataset

    rows = [{"prompt": [{"role": "user", "content": ex.question}], "question_id": str(ex.id)} for ex in examples]
    if not rows:
        raise ValueError("`examples` is empty: nothing to train on")
    return Dataset.from_list(rows)


def _load_scorer(spec: str, tokenizer: Any) -> Any:
    """Build the IG scorer ``IGPOConfig.scorer`` names (``openai:`` specs render chats with ``tokenizer``)."""
    from igpo_env.scoring.openai_compat import SPEC_PREFIX, OpenAICompatScorer

    if spec.startswith(SPEC_PREFIX):
        return OpenAICompatScorer.from_spec(spec, tokenizer=tokenizer)
    if spec.startswith(("http://", "https://")):
        from igpo_env.scoring.client import RemoteScorer

        return RemoteScorer(spec)
    from igpo_env.scoring.hf import HFScorer

    return HFScorer.from_pretrained(spec)


class IGPOTrainer(GRPOTrainer):
    """GRPO with multi-turn search rollouts and IGPO's turn-level advantages (information gain per turn).

    Hooks overridden (nothing else of ``GRPOTrainer`` is copied; ``tests/agents/igpo/test_trl_contract.py`` checks
    their signatures against the installed TRL, and ``pyproject.toml`` pins the TRL range they were tested on):

    - ``rollout_func`` (TRL's hook, passed to the parent): plays ``num_generations`` episodes per prompt with
      :func:`agents.rollout.generate_rollouts` (KV cache kept across turns, IG scored as a branch off it when
      ``scorer="policy"``) and returns ``prompt_ids``, ``completion_ids``, ``env_mask`` (observation tokens 0, so they
      carry no loss) and the episode return as ``outcome`` for :func:`outcome_reward`.
    - ``_calculate_rewards``: calls the parent and keeps the weighted reward of each rollout (default: the episode
      return) as the outcome reward ``r_T`` of its final turn.
    - ``_generate_and_score_completions``: calls the parent (rewards, old/ref log-probs, GRPO's sequence advantage),
      then replaces ``advantages`` (B,) by per-token advantages (B, T) computed by :mod:`agents.igpo.advantages`; the
      parent's ``_compute_loss`` (clipped surrogate, KL ``beta``) consumes them unchanged.

    With ``ig_coef=0`` (and ``advantage="paper"``) the per-token advantage of every assistant token is the parent's
    GRPO sequence advantage (discounted by ``gamma`` per remaining turn): the GRPO baseline is TRL's GRPO.

    Several processes (``accelerate launch``, see ``agents/igpo/configs/accelerate/``): every process plays its own
    slice of the generation batch (TRL's ``RepeatSampler`` keeps the ``num_generations`` rollouts of a prompt
    contiguous; a group may span two processes). Each rollout samples from its own seed (``seed``, generation batch,
    global rollout index), so the rollouts, rewards and advantages are those of a one-process run of the same global
    batch; groups are checked and normalized over the gathered batch, and the rollout metrics are global. Under FSDP
    (or ZeRO-3 with ``ds3_gather_for_generation=False``) the policy's forward passes are collectives: the rollout
    loop runs them in lock step across processes (:class:`~agents.igpo.lockstep.LockstepModel`).

    ``args.turn_reward`` picks the per-turn rewards by name (:mod:`agents.igpo.turn_rewards`): IG (default), an env
    shaping scheme (the rollout envs, built or given, are wrapped with ``make_shaping`` and each turn's
    ``info["shaping"]["reward"]`` is its reward), none (``"outcome"``), or GiGPO's anchor-state step advantage
    (``"gigpo_anchor"``: ``A_t = A_GRPO + step_advantage_weight * A_step,t``).

    ``use_vllm=True`` (vllm + a CUDA GPU; :func:`~agents.igpo.vllm_rollouts.check_vllm_setup` says what is missing
    before anything loads): each turn of all active rollouts is one call to TRL's ``VLLMGeneration.generate``
    (``vllm_mode="colocate"``, or ``"server"`` against ``trl vllm-serve``; weights synced by the parent; vLLM's
    prefix caching reuses the transcript) through :func:`agents.rollout.generate_rollouts_with` and
    :class:`~agents.igpo.vllm_rollouts.VLLMTurnEngine` (which keeps the processes of a multi-process run in step),
    stopping at the stop strings; IG is then scored by ``HFScorer`` on the training policy (per-episode prefix cache)
    unless another scorer is configured. Server mode is tested on CPU against a loopback stand-in of the vLLM server
    (``tests/agents/igpo/test_igpo_vllm.py``).

    Args:
        model: Model id/path or a ``PreTrainedModel``.
        args: An :class:`~agents.igpo.igpo_config.IGPOConfig`.
        train_dataset: Rows with ``question_id`` (and ``prompt``); default: every question of the env's dataset.
        processing_class: The tokenizer (default: loaded with the model).
        reward_funcs: Default ``[outcome_reward]``; extra functions may read ``outcome`` / ``final_f1`` columns.
        envs: Pre-built envs (one per rollout of a generation batch); default: built from the env kwargs.
        env_kwargs: Environment keyword arguments merged over ``args.env_kwargs``; may hold live objects (a
            retriever, a list of QAExample), which the config cannot since checkpoints save it.
        scorer: A :class:`~igpo_env.scoring.base.Scorer` overriding ``args.scorer``.
        **kwargs: Passed to ``GRPOTrainer`` (``callbacks``, ``optimizers``, ``peft_config``, ...).

    Example:
        >>> from igpo_env.data.toy import toy_corpus, toy_qa
        >>> from igpo_env.retrieval import BM25Retriever
        >>> from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer
        >>> args = IGPOConfig(output_dir="/tmp/igpo-doc", max_steps=1, num_generations=2,
        ...     per_device_train_batch_size=2, max_turns=2, max_turn_tokens=4, report_to="none",
        ...     gradient_checkpointing=False, use_cpu=True, bf16=False, beta=0.0, save_strategy="no",
        ...     disable_tqdm=True)
        >>> env_kwargs = {"dataset": toy_qa(), "retriever": BM25Retriever.from_docs(toy_corpus())}
        >>> trainer = IGPOTrainer(tiny_causal_lm(), args, processing_class=tiny_tokenizer(),
        ...                       env_kwargs=env_kwargs)  # doctest: +SKIP
        >>> trainer.train().global_step  # doctest: +SKIP
        1
    """

    _tag_names = ["trl", "igpo"]

    def __init__(
        self,
        model: Any,
        args: IGPOConfig,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        reward_funcs: Any = None,
        envs: Sequence[Any] | None = None,
        env_kwargs: dict[str, Any] | None = None,
        scorer: Any = None,
        **kwargs: Any,
    ):
        if not isinstance(args, IGPOConfig):
            raise TypeError(f"`args` must be an IGPOConfig, got {type(args).__name__}")
        if "rollout_func" in kwargs:
            raise TypeError("IGPOTrainer provides its own `rollout_func`; do not pass one")
        check_vllm_setup(args)
        self._envs = list(envs) if envs is not None else None
        self._env_kwargs = {**args.env_kwargs, **(env_kwargs or {})}
        if train_dataset is None:
            probe = self._envs[0] if self._envs else make_envs(1, args.env_id, **self._env_kwargs)[0]
            train_dataset = make_train_dataset(getattr(probe, "unwrapped", probe).examples)
        if "question_id" not in train_dataset.column_names:
            raise ValueError(
                f"`train_dataset` needs a `question_id` column (the env plays that question), got columns "
                f"{train_dataset.column_names}; build one with agents.igpo.igpo_trainer.make_train_dataset"
            )
        self._pending_inputs: list[dict[str, Any]] | None = None
        self._last_rollouts: list[Rollout] = []
        self._rollout_calls = 0
        self._outcomes: list[float] = []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*rollout_func.*experimental.*")
            super().__init__(
                model=model,
                reward_funcs=reward_funcs if reward_funcs is not None else [outcome_reward],
                args=args,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                rollout_func=lambda prompts, trainer: trainer._igpo_rollout(prompts),
                **kwargs,
            )
        if scorer is None and args.scorer != "policy" and self._scores_ig:
            scorer = _load_scorer(args.scorer, self.processing_class)
        self.ig_scorer = scorer
        check_vllm_policy_scorer(self.accelerator, args.use_vllm, self._scores_ig and scorer is None)
        if self._envs is not None:
            self._envs = self._shape(self._envs)

    @property
    def _scores_ig(self) -> bool:
        return self.args.turn_reward in IG_TURN_REWARDS and self.args.ig_coef != 0

    # ------------------------------------------------------------------ rollouts (TRL's rollout_func hook)
    def _shape(self, envs: list[Any], like: Any = None) -> list[Any]:
        """Wrap rollout envs with the env turn-reward scheme, if the config names one (and ``ig_coef`` is not 0)."""
        args = self.args
        if args.turn_reward not in ENV_TURN_REWARDS or args.ig_coef == 0:
            return envs
        return wrap_envs(envs, args.turn_reward, args.turn_reward_kwargs, like=like)

    def _get_envs(self, n: int) -> list[Any]:
        if self._envs is None or len(self._envs) < n:
            have = self._envs or []
            new = make_envs(n - len(have), self.args.env_id, **self._env_kwargs)
            self._envs = have + self._shape(new, like=have[0] if have else None)
        return self._envs

    def _igpo_rollout(self, prompts: list) -> dict[str, Any]:
        inputs = self._pending_inputs
        if inputs is None or len(inputs) != len(prompts):
            raise RuntimeError("IGPOTrainer rollout called without its inputs (use it through train())")
        args = self.args
        qids = [str(x["question_id"]) for x in inputs]
        envs = self._get_envs(len(qids))
        mode = "train" if self.model.training else "eval"
        ig = IGSpec(mode=args.ig_mode, alias=args.ig_alias, scorer=self.ig_scorer) if self._scores_ig else None
        # one sampling stream per rollout, keyed by its index in the global batch (every process plays len(qids))
        base = (args.seed * SEED_STRIDE + self._rollout_calls) * SEED_STRIDE
        base += self.accelerator.process_index * len(qids)
        seeds = [(base + i) % SEED_MODULUS for i in range(len(qids))]
        self._rollout_calls += 1
        from trl.distributed import DistributedBackend
        from trl.models import unwrap_model_for_generation

        if args.use_vllm:
            rollouts, stats = self._vllm_rollouts(qids, envs, ig)
        else:
            # FSDP (or ZeRO-3 without gathering): each forward is a collective, run in lock step across processes
            lockstep = needs_lockstep(self.accelerator, args.ds3_gather_for_generation)
            with (
                unwrap_model_for_generation(
                    self.model_wrapped, self.accelerator, gather_deepspeed3_params=args.ds3_gather_for_generation
                ) as unwrapped,
                DistributedBackend(self.accelerator).summon_full_params(self.model_wrapped, recurse=False),
            ):
                policy = LockstepModel(unwrapped) if lockstep else unwrapped
                rollouts, stats = generate_rollouts(
                    policy,
                    self.processing_class,
                    envs,
                    qids,
                    **self._episode_limits(),
                    temperature=args.temperature,
                    top_k=args.top_k or 0,
                    top_p=args.top_p,
                    ig=ig,
                    seed=seeds,
                )
                if lockstep:
                    policy.finish()
        self._last_rollouts = rollouts
        self._log_rollouts(mode, rollouts, stats, ig is not None)
        return {
            "prompt_ids": [r.prompt_ids for r in rollouts],
            "completion_ids": [r.completion_ids for r in rollouts],
            "logprobs": [r.logprobs for r in rollouts] if args.use_vllm else None,
            "env_mask": [r.env_mask for r in rollouts],
            "outcome": [r.outcome for r in rollouts],
            "final_f1": [r.f1 for r in rollouts],
        }

    def _all(self, items: list[Any]) -> list[Any]:
        """Return every process's ``items``, concatenated in process order (a collective: every process calls it)."""
        return gather_object(list(items)) if self.accelerator.num_processes > 1 else list(items)

    def _log_rollouts(self, mode: str, rollouts: list[Rollout], stats: Any, scored_ig: bool) -> None:
        """Log the rollout metrics of the whole generation batch (every process's rollouts)."""
        args = self.args
        shaped = args.turn_reward in ENV_TURN_REWARDS and args.ig_coef != 0
        records = []
        for r in rollouts:
            rewards, final = turn_rewards_of(r, args.turn_reward, args.ig_coef)
            # share of turns with a non-zero reward (the scheme's for the non-final turns, the outcome of the last)
            nonzero = [abs(x) > REWARD_EPS for x in (*rewards, r.outcome + final)]
            records.append((r.num_turns, r.terminated, r.f1, list(r.ig_rewards), list(r.shaping_rewards), nonzero))
        records = self._all(records)
        # the step waits for the slowest process: its rollout time is the step's; IG share over all processes
        times = self._all([(stats.total_seconds, stats.ig_seconds)])
        m = self._metrics[mode]
        m["rollout/seconds"].append(max(t for t, _ in times))
        m["rollout/ig_seconds"].append(max(ig for _, ig in times))
        total = sum(t for t, _ in times)
        m["rollout/ig_share"].append(sum(ig for _, ig in times) / total if total > 0 else 0.0)
        m["rollout/turns"].append(float(np.mean([rec[0] for rec in records])))
        m["rollout/answered"].append(float(np.mean([rec[1] for rec in records])))
        m["rollout/f1"].append(float(np.mean([rec[2] for rec in records])))
        if scored_ig:
            igs = [x for rec in records for x in rec[3]]
            m["rollout/ig_mean"].append(float(np.mean(igs)) if igs else 0.0)
        if shaped:
            terms = [x for rec in records for x in rec[4]]
            m["rollout/shaping_mean"].append(float(np.mean(terms)) if terms else 0.0)
        m["rollout/reward_density"].append(float(np.mean([x for rec in records for x in rec[5]])))

    def _vllm_rollouts(self, qids: list[str], envs: list[Any], ig: IGSpec | None):
        """Rollouts through TRL's vLLM integration, one ``VLLMGeneration.generate`` call per turn.

        Each call is a round of all processes when it is a collective
        (:class:`~agents.igpo.vllm_rollouts.VLLMTurnEngine`).
        """
        from agents.igpo.vllm_rollouts import VLLMTurnEngine
        from agents.rollout import generate_rollouts_with

        args = self.args
        policy = self.accelerator.unwrap_model(self.model)
        was_training = policy.training
        if ig is not None and ig.scorer is None:
            from igpo_env.scoring.hf import HFScorer

            # HFScorer puts the policy in eval mode (no dropout while scoring); its training mode is restored below
            ig = IGSpec(mode=ig.mode, alias=ig.alias, scorer=HFScorer(policy, self.processing_class))
        engine = self.vllm_generation
        collective = self.accelerator.num_processes > 1 and (
            getattr(engine, "mode", None) == "server" or getattr(engine, "tensor_parallel_size", 1) > 1
        )
        turn_engine = VLLMTurnEngine(engine, args.stop_strings, collective=collective, gather=gather_object)
        try:
            out = generate_rollouts_with(
                turn_engine, self.processing_class, envs, qids, **self._episode_limits(), ig=ig
            )
        finally:
            policy.train(was_training)
        turn_engine.finish()
        return out

    def _episode_limits(self) -> dict[str, Any]:
        args = self.args
        return {
            "max_turns": args.max_turns,
            "max_turn_tokens": args.max_turn_tokens,
            "max_completion_length": args.max_completion_length,
            "stop_strings": args.stop_strings,
        }

    # ------------------------------------------------------------------ rewards and advantages
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        self._outcomes = (rewards_per_func * weights).nansum(dim=1).tolist()  # all processes' rollouts, in order
        return rewards_per_func

    @staticmethod
    def _check_groups(qids: list[str], group_size: int) -> None:
        """Raise unless ``qids`` (the whole generation batch, all processes) is whole groups of one prompt each."""
        if len(qids) % group_size:
            raise RuntimeError(f"generation batch of {len(qids)} is not a whole number of groups of {group_size}")
        for g in range(0, len(qids), group_size):
            ids = set(qids[g : g + group_size])
            if len(ids) != 1:
                raise RuntimeError(f"a group of rollouts mixes prompts {sorted(ids)}; groups must hold one prompt")

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        # a group may span processes (TRL splits the generation batch into equal slices): check the whole batch
        self._check_groups(self._all([str(x["question_id"]) for x in inputs]), group_size)
        self._pending_inputs = inputs
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._pending_inputs = None
        rollouts = self._last_rollouts
        seq_adv = output["advantages"]
        width = output["completion_ids"].shape[1]
        local = self._token_advantages(rollouts, seq_adv, group_size, width)
        output["advantages"] = local.to(seq_adv.device)
        mask = output["completion_mask"] * output.get("tool_mask", torch.ones_like(output["completion_mask"]))
        no_signal = ((local.abs() <= ZERO_ADVANTAGE_ATOL) | (mask.cpu() == 0)).all(dim=1).tolist()
        zero = torch.tensor(self._all(no_signal)).view(-1, group_size).all(dim=1)
        self._metrics[mode]["zero_variance_group_frac"].append(zero.float().mean().item())
        return output

    def _token_advantages(
        self, rollouts: list[Rollout], seq_adv: torch.Tensor, group_size: int, width: int
    ) -> torch.Tensor:
        """Per-token advantages (B, width) of this process's rollouts; groups normalized over all processes."""
        args = self.args
        local_n = len(rollouts)
        records = [
            (
                *turn_rewards_of(r, args.turn_reward, args.ig_coef),
                r.obs_ends,
                len(r.completion_ids),
                r.retrieved_doc_ids,
            )
            for r in rollouts
        ]
        all_records = self._all(records)
        offset = self.accelerator.process_index * local_n
        if len(self._outcomes) != len(all_records):
            raise RuntimeError(f"{len(self._outcomes)} outcome rewards for {len(all_records)} rollouts")
        # r_T: the rollout's reward plus the final turn's term (env shaping schemes; 0 otherwise)
        outcomes = [o + rec[1] if rec[1] else o for o, rec in zip(self._outcomes, all_records, strict=True)]
        group_ids = [i // group_size for i in range(len(all_records))]
        out = torch.zeros(local_n, width, dtype=torch.float32)
        if args.turn_reward == "gigpo_anchor":
            episode = self._all(seq_adv.tolist())
            turn_adv = gigpo_turn_advantages(
                episode,
                [rec[4] for rec in all_records],
                outcomes,
                group_ids,
                weight=args.step_advantage_weight,
                gamma=args.gamma,
                normalize_std=args.turn_reward_kwargs.get("normalize_std", False),
                eps=args.advantage_eps,
            )
            return self._broadcast(rollouts, turn_adv, offset, out)
        if args.advantage == "released":
            token_rewards = [
                released_token_rewards(length, obs_ends, rewards, outcome, ig_coef=args.ig_coef)
                for (rewards, _, obs_ends, length, _), outcome in zip(all_records, outcomes, strict=True)
            ]
            adv = released_token_advantages(token_rewards, group_ids)
            for i in range(local_n):
                a = adv[offset + i]
                out[i, : len(a)] = torch.from_numpy(a).float()
            return out
        if args.ig_coef == 0:
            # plain GRPO: the parent's sequence advantage is the normalized outcome of the final turn
            for i, r in enumerate(rollouts):
                t_final = len(r.turn_spans)
                turn_adv = [float(seq_adv[i]) * args.gamma ** (t_final - 1 - t) for t in range(t_final)]
                out[i, : len(r.completion_ids)] = torch.from_numpy(
                    turn_to_token_advantages(turn_adv, r.turn_spans, len(r.completion_ids))
                ).float()
            return out
        turn_adv = paper_turn_advantages(
            [rec[0] for rec in all_records],
            outcomes,
            group_ids,
            normalization=args.normalization,
            gamma=args.gamma,
            ig_coef=args.ig_coef,
            eps=args.advantage_eps,
        )
        return self._broadcast(rollouts, turn_adv, offset, out)

    @staticmethod
    def _broadcast(
        rollouts: list[Rollout], turn_adv: list[list[float]], offset: int, out: torch.Tensor
    ) -> torch.Tensor:
        """Copy each local rollout's turn advantages to its turns' assistant tokens in ``out``."""
        for i, r in enumerate(rollouts):
            a = turn_to_token_advantages(turn_adv[offset + i], r.turn_spans, len(r.completion_ids))
            out[i, : len(a)] = torch.from_numpy(a).float()
        if not all(math.isfinite(x) for row in turn_adv for x in row):
            raise FloatingPointError("non-finite advantages: check the rewards")
        return out
