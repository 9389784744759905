"""VLLMScorer: gold-answer log-probs from a vLLM engine's ``prompt_logprobs`` (GPU; vllm imported lazily).

Each (context, target) pair becomes the token-id prompt ``tok(prefix) + tok(target)`` (the convention of every scorer,
:func:`~igpo_env.scoring.spans.encode_pair`); one ``LLM.generate`` call over the batch with
``SamplingParams(max_tokens=1, prompt_logprobs=k)`` returns the log-prob of every prompt token, and the last
``len(tok(target))`` are the target's (:func:`target_logprobs`). The engine is built with prefix caching on, as the
transcripts of an episode share their prefix; note that vLLM (V1) does not *read* cached blocks for requests that ask
for prompt log-probs (it recomputes the prompt to produce them), so the cache mainly helps when the same engine also
generates. For exact, cheap scoring inside training, the trainer scores off the rollout's own KV cache instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from igpo_env._validation import check_int, check_number
from igpo_env.error import DependencyNotInstalled
from igpo_env.scoring.base import Context, validate_score_args
from igpo_env.scoring.spans import encode_pair, gather_logprobs, logprob_of
from igpo_env.scoring.templates import IGPO_TEMPLATE, IGTemplate
from igpo_env.types import TargetScore

__all__ = ["VLLMScorer", "target_logprobs", "DEFAULT_GPU_MEMORY_UTILIZATION"]

logger = logging.getLogger(__name__)

DEFAULT_GPU_MEMORY_UTILIZATION = 0.4
"""Share of GPU memory the scorer's engine may take (leave room for a policy model on the same GPU)."""
DEFAULT_BATCH_SIZE = 256
"""Prompts per ``LLM.generate`` call (vLLM schedules within a call itself)."""
MAX_PROMPT_LOGPROBS = 20
INSTALL_HINT = "VLLMScorer needs vllm and a CUDA GPU: pip install igpo-env[gpu]"


def target_logprobs(prompt_token_ids: Sequence[int], prompt_logprobs: Sequence[Any], start: int) -> list[float]:
    """Log-probs of ``prompt_token_ids[start:]`` from a vLLM ``RequestOutput.prompt_logprobs`` list.

    ``prompt_logprobs[i]`` is ``None`` for the first token and otherwise maps token ids (the prompt token and up to
    ``k`` alternatives) to ``Logprob`` objects (or floats).

    Args:
        prompt_token_ids: The prompt ids sent.
        prompt_logprobs: The engine's per-position log-prob dicts (same length).
        start: Index of the first target token (>= 1).

    Returns:
        One float per target token.

    Raises:
        ValueError: The lengths differ, an entry lacks its prompt token, or a target position has no log-prob.

    Example:
        >>> target_logprobs([5, 6, 7], [None, {6: -1.25, 2: -0.5}, {7: -0.75}], start=1)
        [-1.25, -0.75]
    """
    if prompt_logprobs is None or len(prompt_logprobs) != len(prompt_token_ids):
        got = None if prompt_logprobs is None else len(prompt_logprobs)
        raise ValueError(f"expected {len(prompt_token_ids)} prompt_logprobs entries, got {got}")
    positions = [None] * start + [
        logprob_of(prompt_logprobs[i], int(prompt_token_ids[i])) for i in range(start, len(prompt_token_ids))
    ]
    return gather_logprobs(positions, start, len(prompt_token_ids))


class VLLMScorer:
    """A :class:`~igpo_env.scoring.base.Scorer` running a vLLM engine (``prompt_logprobs``); needs a GPU and vllm.

    Args:
        model: A model dir / hub id (an engine is built with prefix caching on), or an existing ``vllm.LLM``
            (e.g. the colocated engine of a trainer) to share.
        tokenizer: Tokenizer object or path; default: the engine's own.
        dtype: Engine dtype (``"auto"``, ``"bfloat16"``, ``"float32"``...), when building one.
        gpu_memory_utilization: Share of GPU memory for a new engine.
        prompt_logprobs: Alternatives per position vLLM returns besides the prompt token (0 is enough).
        batch_size: Prompts per ``generate`` call.
        template: The IGPO pseudo-response template for chat contexts.
        **llm_kwargs: More ``vllm.LLM`` arguments (``max_model_len``, ``tensor_parallel_size``, ``seed``...).

    Raises:
        DependencyNotInstalled: vllm is not installed (``pip install igpo-env[gpu]``).
        ValueError: An argument is invalid.

    Example:
        >>> import importlib.util
        >>> if importlib.util.find_spec("vllm") is None:  # no vllm here: a clear error with the install hint
        ...     try:
        ...         VLLMScorer("/path/to/model")
        ...     except DependencyNotInstalled as e:
        ...         print("pip install igpo-env[gpu]" in str(e))
        ... else:
        ...     print(True)
        True

    Change logs:
        v0.1.0: added.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        dtype: str = "auto",
        gpu_memory_utilization: float = DEFAULT_GPU_MEMORY_UTILIZATION,
        prompt_logprobs: int = 0,
        batch_size: int = DEFAULT_BATCH_SIZE,
        template: IGTemplate = IGPO_TEMPLATE,
        **llm_kwargs: Any,
    ) -> None:
        if not isinstance(dtype, str):
            raise ValueError(f"`dtype` must be a str such as 'auto' or 'bfloat16', got {dtype!r}")
        check_number("gpu_memory_utilization", gpu_memory_utilization, minimum=0, maximum=1, strict="minimum")
        check_int("prompt_logprobs", prompt_logprobs, minimum=0, maximum=MAX_PROMPT_LOGPROBS)
        check_int("batch_size", batch_size, minimum=1)
        if not isinstance(template, IGTemplate):
            raise TypeError(f"`template` must be an IGTemplate, got {type(template).__name__}")
        try:
            import vllm
        except ImportError as e:
            raise DependencyNotInstalled(f"{INSTALL_HINT} ({e})") from e

        if isinstance(model, str):
            llm_kwargs.setdefault("enable_prefix_caching", True)
            self.llm = vllm.LLM(
                model=model,
                tokenizer=tokenizer if isinstance(tokenizer, str) else None,
                dtype=dtype,
                gpu_memory_utilization=gpu_memory_utilization,
                **llm_kwargs,
            )
        elif callable(getattr(model, "generate", None)):
            if llm_kwargs:
                raise ValueError(f"`llm_kwargs` {sorted(llm_kwargs)} only apply when `model` is a path")
            self.llm = model
        else:
            raise TypeError(f"`model` must be a model path or a vllm.LLM, got {type(model).__name__}")
        if tokenizer is None or isinstance(tokenizer, str):
            tokenizer = self.llm.get_tokenizer()
        self.tokenizer = tokenizer
        self.template = template
        self.batch_size = batch_size
        # temperature 1.0: the model's own log-probs even for an engine in `processed_logprobs` mode (TRL's colocate)
        self.sampling_params = vllm.SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=prompt_logprobs)

    def score(self, contexts: Sequence[Context], targets: Sequence[str]) -> list[TargetScore]:
        """Score ``targets[i]`` after ``contexts[i]`` in batched ``generate`` calls; see the Scorer protocol.

        Raises:
            ValueError: Bad arguments, or a context / target that encodes to no tokens.
        """
        validate_score_args(contexts, targets)
        encoded = [encode_pair(self.tokenizer, c, t, self.template) for c, t in zip(contexts, targets, strict=True)]
        out: list[TargetScore] = []
        for begin in range(0, len(encoded), self.batch_size):
            chunk = encoded[begin : begin + self.batch_size]
            prompts = [{"prompt_token_ids": ids} for ids, _ in chunk]
            outputs = self.llm.generate(prompts, self.sampling_params, use_tqdm=False)
            if len(outputs) != len(chunk):
                raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(chunk)} prompts")
            for (ids, start), output in zip(chunk, outputs, strict=True):
                out.append(TargetScore.from_logprobs(target_logprobs(ids, output.prompt_logprobs, start)))
        return out

    def __repr__(self) -> str:
        return f"VLLMScorer(llm={type(self.llm).__name__}, batch_size={self.batch_size})"
