"""vLLM generation for IGPOTrainer's multi-turn rollouts: one TRL ``VLLMGeneration.generate`` call per turn.

:class:`VLLMTurnEngine` adapts TRL's ``VLLMGeneration`` (colocate or server mode, built and weight-synced by
``GRPOTrainer``) to :data:`agents.rollout.EngineFn`, the per-turn engine of
:func:`agents.rollout.generate_rollouts_with`. :func:`check_vllm_setup` fails early, naming the fix, when
``use_vllm=True`` cannot work in this process.

Several processes (``accelerate launch``): in server mode ``VLLMGeneration.generate`` is a collective (every process
gathers its prompts to the main one, which calls the server, then takes back the slice ``process_index *
len(prompts)``), as it is in colocate mode with ``vllm_tensor_parallel_size > 1`` within each TP group. A multi-turn
rollout loop breaks both assumptions: processes finish their episodes after different numbers of turns, and have
different numbers of active episodes per turn. :class:`VLLMTurnEngine` therefore runs each call as a round: the
processes first exchange ``(active prompts, max tokens)``, every one pads its prompts to the largest count (with a
prompt the engine has seen, so prefix caching makes it cheap) and asks for the largest turn limit, and drops the
padding afterwards; a process whose episodes are over keeps joining rounds (:meth:`VLLMTurnEngine.finish`) until
every process is done.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

from igpo_env.error import DependencyNotInstalled

__all__ = ["VLLM_MODES", "INSTALL_HINT", "check_vllm_setup", "VLLMTurnEngine"]

logger = logging.getLogger(__name__)

VLLM_MODES = ("colocate", "server")
"""TRL's ``vllm_mode`` values."""
INSTALL_HINT = "pip install igpo-env[gpu]"
"""The extra that installs vllm (TRL 1.16 supports vLLM 0.22 to 0.31)."""

Gather = Callable[[list[Any]], list[Any]]
"""``gather(local_items) -> all processes' items, in process order`` (``accelerate.utils.gather_object``)."""


def check_vllm_setup(args: Any, cuda_available: bool | None = None) -> None:
    """Raise, naming the fix, when ``args.use_vllm`` is set but vLLM cannot run here; do nothing otherwise.

    Both modes need vllm importable in the *training* process: colocate runs the engine there, and server mode's
    ``VLLMClient`` imports vllm's NCCL helpers to push the weights to the server (which also needs a CUDA device on
    the trainer; TRL raises its own clear error for that). Colocate mode also needs a CUDA GPU here.

    Args:
        args: A ``GRPOConfig`` (``use_vllm``, ``vllm_mode``).
        cuda_available: Whether a CUDA device is visible (default: ``torch.cuda.is_available()``).

    Raises:
        ValueError: ``vllm_mode`` is not ``"colocate"`` or ``"server"``, or colocate mode without a CUDA GPU.
        DependencyNotInstalled: vllm is not installed.

    Example:
        >>> from types import SimpleNamespace
        >>> check_vllm_setup(SimpleNamespace(use_vllm=False, vllm_mode="colocate"))  # nothing to check
        >>> check_vllm_setup(SimpleNamespace(use_vllm=True, vllm_mode="remote"))
        Traceback (most recent call last):
        ...
        ValueError: `vllm_mode` must be 'colocate' or 'server', got 'remote'
    """
    if not args.use_vllm:
        return
    mode = args.vllm_mode
    if mode not in VLLM_MODES:
        raise ValueError(f"`vllm_mode` must be 'colocate' or 'server', got {mode!r}")
    from trl.import_utils import is_vllm_available

    if not is_vllm_available():
        where = (
            "runs a vLLM engine in this process"
            if mode == "colocate"
            else "pushes the weights to the `trl vllm-serve` server with vllm's NCCL helpers, imported here"
        )
        raise DependencyNotInstalled(
            f"`use_vllm=True` with `vllm_mode={mode!r}` {where}, but vllm is not installed: {INSTALL_HINT} "
            "(needs a CUDA GPU), or set `use_vllm=False` to generate with transformers"
        )
    if mode == "colocate":
        if cuda_available is None:
            import torch

            cuda_available = torch.cuda.is_available()
        if not cuda_available:
            raise ValueError(
                "`vllm_mode='colocate'` runs vLLM on this process's GPU, but no CUDA device is visible: run on a "
                "GPU, or use `vllm_mode='server'` with a `trl vllm-serve` server on a GPU machine, or "
                "`use_vllm=False`"
            )


class VLLMTurnEngine:
    """An :data:`agents.rollout.EngineFn` over TRL's ``VLLMGeneration``: one ``generate`` call per turn.

    Each call sets the engine's ``max_completion_length`` to the turn limit and adds the stop strings
    (``include_stop_str_in_output``) to its ``generation_kwargs`` for the call only, and returns the sampled tokens'
    log-probs (vLLM's ``processed_logprobs``: TRL's importance-sampling correction compares them with the trainer's).
    With ``collective=True`` each call is a round of all processes (module docstring); call :meth:`finish` once this
    process's episodes are over.

    Args:
        engine: TRL's ``VLLMGeneration`` (``generate``, ``max_completion_length``, ``generation_kwargs``).
        stop_strings: A turn ends at the first of these.
        collective: Whether ``engine.generate`` is a collective of all processes (server mode or TP > 1, with more
            than one process).
        gather: All-gather of Python objects (``accelerate.utils.gather_object``), used when ``collective``.
        filler: The prompt used to pad before this process has sent one (any valid token ids).

    Example:
        >>> class Engine:  # stands in for VLLMGeneration
        ...     max_completion_length, generation_kwargs = 16, {}
        ...     def generate(self, prompts, images, num_generations):
        ...         n = self.max_completion_length
        ...         return prompts, [[7] * n for _ in prompts], [[[-0.5]] * n for _ in prompts], None
        >>> engine = Engine()
        >>> VLLMTurnEngine(engine, ["</search>"])([[1, 2], [3]], 2)
        ([[7, 7], [7, 7]], [[-0.5, -0.5], [-0.5, -0.5]])
        >>> engine.max_completion_length, engine.generation_kwargs  # restored
        (16, {})
    """

    def __init__(
        self,
        engine: Any,
        stop_strings: Sequence[str],
        *,
        collective: bool = False,
        gather: Gather | None = None,
        filler: Sequence[int] = (0,),
    ) -> None:
        if collective and gather is None:
            raise ValueError("`collective=True` needs `gather` (e.g. accelerate.utils.gather_object)")
        if not filler:
            raise ValueError("`filler` must hold at least one token id")
        self.engine = engine
        self.stop_strings = list(stop_strings)
        self.collective = collective
        self.gather = gather
        self._filler = list(filler)
        self.rounds = 0
        """Calls of ``engine.generate`` made by this process (its own turns plus, when collective, padding rounds)."""

    def __call__(self, prompts: list[list[int]], max_tokens: int) -> tuple[list[list[int]], list[list[float]]]:
        """Generate one turn for ``prompts`` (full token sequences so far), at most ``max_tokens`` tokens each."""
        if not prompts:
            raise ValueError("`prompts` is empty: a turn needs at least one active rollout (use finish() to wait)")
        out = self._round(prompts, max_tokens)
        if out is None:  # unreachable: this process has prompts, so the round is not empty
            raise RuntimeError("a generation round with prompts came back empty")
        return out

    def finish(self) -> None:
        """Take part in the other processes' rounds until all are done (no-op unless ``collective``)."""
        if self.collective:
            while self._round([], 0) is not None:
                pass

    def _round(self, prompts: list[list[int]], max_tokens: int) -> tuple[list[list[int]], list[list[float]]] | None:
        n_local = len(prompts)
        if self.collective:
            sizes = self.gather([(n_local, max_tokens)])
            n_all = max(n for n, _ in sizes)
            if n_all == 0:
                return None
            max_tokens = max(m for n, m in sizes if n)
            batch = list(prompts) + [list(prompts[0]) if prompts else self._filler] * (n_all - n_local)
        else:
            batch = list(prompts)
        if prompts:
            self._filler = list(prompts[0])
        engine = self.engine
        saved = (engine.max_completion_length, engine.generation_kwargs)
        engine.max_completion_length = max_tokens
        engine.generation_kwargs = {**(saved[1] or {}), "stop": self.stop_strings, "include_stop_str_in_output": True}
        try:
            _, completion_ids, logprobs, _ = engine.generate(batch, images=None, num_generations=1)
        finally:
            engine.max_completion_length, engine.generation_kwargs = saved
        self.rounds += 1
        if len(completion_ids) != len(batch):
            raise RuntimeError(f"vLLM returned {len(completion_ids)} completions for {len(batch)} prompts")
        completion_ids = [list(ids) for ids in completion_ids[:n_local]]
        if logprobs is None:
            lps = [[math.nan] * len(ids) for ids in completion_ids]
        else:  # top-1 entry of each position = the sampled token's; None (NaN from vLLM) stays NaN
            lps = [[math.nan if lp[0] is None else float(lp[0]) for lp in row] for row in logprobs[:n_local]]
        return completion_ids, lps
