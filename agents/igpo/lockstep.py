"""Lock-step forward passes for a policy whose forward pass is a collective (FSDP, ZeRO-3 without gathering).

Under FSDP (and DeepSpeed ZeRO-3 with ``ds3_gather_for_generation=False``) every forward pass all-gathers the
parameter shards: a collective that every process must enter the same number of times. The rollout loop
(:func:`agents.rollout.generate_rollouts`) runs as many forward passes as its own episodes need (one per sampled
token, observation and IG branch), which differs between processes, so they would wait on each other forever.
:class:`LockstepModel` wraps the policy for the loop the way transformers' ``generate(synced_gpus=True)`` does: each
forward pass is one round of all processes (an ``all_reduce`` of "finished" flags, then the forward); a process that
has finished its rollouts calls :meth:`LockstepModel.finish`, which runs one-token dummy forward passes while any
other process is still working, so every process enters the same all-gathers in the same order.

:func:`needs_lockstep` tells whether a trainer's policy needs it; :class:`~agents.igpo.igpo_trainer.IGPOTrainer`
wraps its rollouts in it then, and :func:`agents.igpo.pipeline.run_training` its dev evaluations.
:func:`check_vllm_policy_scorer` refuses the one setup that cannot keep in step: vLLM rollouts scored by a sharded
policy.

Example:
    >>> from igpo_env.scoring.tiny import tiny_causal_lm
    >>> model = LockstepModel(tiny_causal_lm())  # one process: every round is the process's own
    >>> model.config.model_type, model.training
    ('qwen2', False)
    >>> model.finish()
    0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["LockstepModel", "needs_lockstep", "check_vllm_policy_scorer"]

WORKING, FINISHED = 0, 1
"""A process's flag in a round: it runs a real forward pass (0) or has finished its rollouts (1)."""


def _torch_all_reduce(device: Any) -> Callable[[int], int]:
    import torch
    import torch.distributed as dist

    def all_reduce(flag: int) -> int:
        t = torch.tensor([flag], dtype=torch.long, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return int(t.item())

    return all_reduce


class LockstepModel:
    """A causal LM proxy whose forward passes are rounds of all processes (see the module docstring).

    Every attribute but the call is the wrapped model's (``config``, ``parameters``, ``forward``, ``eval``, ...), so
    the rollout loop takes it in place of the model.

    Args:
        model: The policy (its forward pass may be a collective).
        world_size: Processes taking part (default: ``torch.distributed``'s world size, 1 if not initialized).
        all_reduce: The sum of an int flag over all processes (default: ``torch.distributed.all_reduce`` on a
            tensor on the model's device, which NCCL needs).

    Raises:
        ValueError: for a ``world_size`` below 1.

    Example:
        >>> import torch
        >>> from igpo_env.scoring.tiny import tiny_causal_lm
        >>> flags = []
        >>> model = LockstepModel(tiny_causal_lm(), world_size=2,
        ...                       all_reduce=lambda f: flags.append(f) or (f if len(flags) < 4 else 2))
        >>> model(input_ids=torch.tensor([[1, 2]])).logits.shape[:2]  # a round: this process works
        torch.Size([1, 2])
        >>> model.finish()  # 2 rounds with a dummy forward while the other process works, then all are done
        2
        >>> flags
        [0, 1, 1, 1]
    """

    def __init__(
        self, model: Any, *, world_size: int | None = None, all_reduce: Callable[[int], int] | None = None
    ) -> None:
        if world_size is None:
            import torch.distributed as dist

            world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        if world_size < 1:
            raise ValueError(f"`world_size` must be >= 1, got {world_size}")
        self.model = model
        self.world_size = world_size
        self._device = next(model.parameters()).device
        self._all_reduce = all_reduce
        self.rounds = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def _round(self, flag: int) -> int:
        self.rounds += 1
        if self.world_size == 1:
            return flag
        if self._all_reduce is None:
            self._all_reduce = _torch_all_reduce(self._device)
        return self._all_reduce(flag)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run one round: tell the others this process works, then run the real forward pass."""
        self._round(WORKING)
        return self.model(*args, **kwargs)

    def finish(self) -> int:
        """Run dummy one-token forward passes until every process has finished; return how many were run."""
        import torch

        dummies = 0
        while self._round(FINISHED) < self.world_size * FINISHED:
            with torch.no_grad():
                self.model(input_ids=torch.zeros((1, 1), dtype=torch.long, device=self._device), use_cache=False)
            dummies += 1
        return dummies


def needs_lockstep(accelerator: Any, ds3_gather_for_generation: bool = True) -> bool:
    """Whether the policy's forward pass is a collective during rollouts: FSDP, or ZeRO-3 without gathering.

    Under ZeRO-3 TRL's ``unwrap_model_for_generation`` gathers the whole model for generation unless
    ``ds3_gather_for_generation`` is ``False``; FSDP keeps its shards (FSDP1's root parameters are summoned).

    Example:
        >>> from types import SimpleNamespace
        >>> plain = SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=None, fsdp_plugin=None))
        >>> needs_lockstep(plain)
        False
        >>> fsdp2 = SimpleNamespace(fsdp_version=2)
        >>> needs_lockstep(SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=None, fsdp_plugin=fsdp2)))
        True
    """
    from trl.distributed import DistributedBackend

    backend = DistributedBackend(accelerator)
    return backend.is_fsdp or (backend.is_zero3 and not ds3_gather_for_generation)


def check_vllm_policy_scorer(accelerator: Any, use_vllm: bool, policy_scores_ig: bool) -> None:
    """Refuse vLLM rollouts whose IG is scored by a sharded policy (FSDP, ZeRO-3).

    The vLLM rollout loop interleaves its own collectives (one generation round per turn) with the scorer's forward
    passes, which on a sharded policy are collectives too, in a number that differs between processes.

    Raises:
        ValueError: for ``use_vllm`` with the policy as IG scorer under FSDP or ZeRO-3.

    Example:
        >>> from types import SimpleNamespace
        >>> zero3 = SimpleNamespace(state=SimpleNamespace(deepspeed_plugin=SimpleNamespace(zero_stage=3),
        ...                                               fsdp_plugin=None))
        >>> check_vllm_policy_scorer(zero3, use_vllm=True, policy_scores_ig=False)  # another scorer: fine
        >>> check_vllm_policy_scorer(zero3, use_vllm=True, policy_scores_ig=True)
        Traceback (most recent call last):
        ...
        ValueError: use_vllm=True with scorer='policy' cannot run under FSDP / DeepSpeed ZeRO-3: ...
    """
    if use_vllm and policy_scores_ig and needs_lockstep(accelerator, ds3_gather_for_generation=False):
        raise ValueError(
            "use_vllm=True with scorer='policy' cannot run under FSDP / DeepSpeed ZeRO-3: scoring IG on the sharded "
            "policy takes collective forward passes that the vLLM rollout loop does not keep in step; use DDP or "
            "ZeRO-2 (agents/igpo/configs/accelerate/ddp.yaml, zero2.yaml), a separate scorer (--scorer PATH or URL), "
            "or use_vllm=False"
        )
