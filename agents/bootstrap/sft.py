"""TRL SFT pieces shared by the warm start and the fixture build: one ``SFTConfig`` and a labels-only loss.

Example:
    >>> import torch
    >>> from igpo_env.scoring.tiny import tiny_causal_lm
    >>> model = tiny_causal_lm()
    >>> ids = torch.tensor([[5, 6, 7, 8]])
    >>> loss, _ = logits_at_labels_loss(model, {"input_ids": ids, "labels": torch.tensor([[-100, -100, 7, 8]])})
    >>> bool(loss > 0)
    True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agents.bootstrap.common import IGNORE_INDEX, resolve_device
from igpo_env._hardware import effective_dtype

__all__ = ["sft_config", "logits_at_labels_loss", "labels_only_sft_trainer"]


def sft_config(
    work_dir: Path,
    spec: Any,
    *,
    max_steps: int,
    packing: bool,
    seed: int,
    device: str,
    verbose: bool,
    logging_steps: int,
) -> Any:
    """Return the ``trl.SFTConfig`` of a bootstrap or warm-start SFT run.

    ``spec`` is a :class:`~agents.bootstrap.fixture.BootstrapSpec` or
    :class:`~agents.bootstrap.warm_start.WarmStartSpec` (both have
    ``batch_size``, ``learning_rate``, ``warmup_ratio``, ``weight_decay``, ``max_length`` and ``bf16``). One sequence
    goes through each forward and ``batch_size`` of them are accumulated per optimizer step: padding-free packing
    flattens a batch into one long sequence whose attention costs (batch * max_length)^2 (4 x 1024 ran 2.6x slower),
    and an unpadded single sequence takes SDPA's causal fast path.
    """
    from trl import SFTConfig

    device = resolve_device(device)
    return SFTConfig(
        output_dir=str(work_dir / "trainer"),
        max_steps=max_steps,
        per_device_train_batch_size=1,
        gradient_accumulation_steps=spec.batch_size,
        learning_rate=spec.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=spec.warmup_ratio,
        weight_decay=spec.weight_decay,
        max_length=spec.max_length,
        packing=packing,
        **({"packing_strategy": "bfd"} if packing else {}),
        seed=seed,
        data_seed=seed,
        logging_steps=logging_steps,
        save_strategy="no",
        report_to="none",
        use_cpu=device == "cpu",
        # bf16 autocast only where it is native (an AVX2-only CPU emulates it, ~100x slower than float32)
        bf16=spec.bf16 and effective_dtype("bfloat16", device) == "bfloat16",
        fp16=False,
        disable_tqdm=not verbose,
        dataloader_num_workers=0,
        # TRL turns gradient checkpointing on by default; these models fit anyway, and recomputing the forward
        # costs ~27% of the step time on CPU.
        gradient_checkpointing=False,
    )


def logits_at_labels_loss(model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> tuple[Any, Any]:
    """Causal-LM loss with the LM head applied only where a label is set (``logits_to_keep`` = those positions).

    Gives the model's own token-mean cross-entropy (sum over labelled tokens / ``num_items_in_batch`` when given, as
    the HF Trainer's gradient accumulation expects), without the full ``batch x length x vocab`` logits.

    Returns:
        ``(loss, outputs)``.
    """
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    shifted = labels[:, 1:]
    keep = (shifted != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
    if keep.numel() == 0:  # nothing to learn in this batch: a zero loss that still has a graph
        keep = torch.zeros(1, dtype=torch.long, device=labels.device)
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    outputs = model(**model_inputs, logits_to_keep=keep, use_cache=False)
    logits = outputs.logits.float()
    target = shifted[:, keep]
    total = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    if num_items_in_batch is not None:
        denom = num_items_in_batch.to(total.device) if torch.is_tensor(num_items_in_batch) else num_items_in_batch
    else:
        denom = (target != IGNORE_INDEX).sum().clamp(min=1)
    return total / denom, outputs


def labels_only_sft_trainer() -> type:
    """Return an ``SFTTrainer`` subclass whose loss is :func:`logits_at_labels_loss` (the same token-mean NLL).

    TRL's default runs a fused, chunked LM head that also computes entropy and top-1 accuracy for its logs; on CPU
    under bf16 autocast its backward runs in fp32, so a step took twice as long as with the model's own loss (measured
    on a 5.5M-parameter shape, 1 x 1024 tokens: 3.0k vs 6.3k tokens/s). Only those two logged metrics are lost. Used
    by the warm start and by the from-scratch fixture build (packed rows work too: one row, labels -100 at each
    sequence start).
    """
    from trl import SFTTrainer

    class LabelsOnlySFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: D102
            loss, outputs = logits_at_labels_loss(model, inputs, num_items_in_batch)
            return (loss, outputs) if return_outputs else loss

    return LabelsOnlySFTTrainer
