"""Tiny random-init causal LMs and a tiny byte-level BPE chat tokenizer, for docs, tests and benchmarks.

Nothing is downloaded: the tokenizer is trained in well under a second on the in-package toy corpus and the models
are built from a config. Scores from these models are meaningless but exact, which is what exactness tests need.

Example:
    >>> tok = tiny_tokenizer()
    >>> tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
    >>> sum(p.numel() for p in tiny_causal_lm().parameters()) < 100_000
    True
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from igpo_env.scoring.templates import CHATML_JINJA

__all__ = ["CHATML_JINJA", "tiny_tokenizer", "tiny_causal_lm", "ARCHS"]

SPECIAL_TOKENS = ("<pad>", "<|endoftext|>", "<|im_start|>", "<|im_end|>")
"""Special tokens of the tiny tokenizer (ids 0..3)."""

ARCHS = ("qwen2", "llama")
"""Architectures :func:`tiny_causal_lm` builds."""

DEFAULT_VOCAB_SIZE = 400
"""Vocabulary size of the tiny tokenizer and models."""

_TRAIN_REPEATS = 3


def _train_json(texts: tuple[str, ...], vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok.to_str()


@functools.cache
def _toy_json(vocab_size: int) -> str:
    from igpo_env.data.toy import toy_corpus, toy_qa
    from igpo_env.scoring.templates import IGPO_TEMPLATE

    texts = [d.contents for d in toy_corpus()] + [q.question for q in toy_qa()]
    texts += [IGPO_TEMPLATE.pseudo_response, "<search>query</search> <answer>a</answer> <information>Doc 1(Title: T)"]
    return _train_json(tuple(texts * _TRAIN_REPEATS), vocab_size)


def tiny_tokenizer(
    vocab_size: int = DEFAULT_VOCAB_SIZE, chat_template: bool = True, texts: Sequence[str] | None = None
) -> Any:
    """Build a byte-level BPE ``PreTrainedTokenizerFast`` (ChatML special tokens; ChatML chat template if asked).

    Args:
        vocab_size: Largest vocabulary size (>= 260: 256 bytes + 4 special tokens); a small training text may
            yield fewer tokens.
        chat_template: Set :data:`CHATML_JINJA` as the chat template (``False``: a tokenizer without one).
        texts: Training texts (default: the in-package toy corpus, cached).

    Example:
        >>> tiny_tokenizer(chat_template=False).chat_template is None
        True
        >>> len(tiny_tokenizer(vocab_size=300, texts=["a b c"])) <= 300
        True
    """
    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"`vocab_size` must be >= {len(SPECIAL_TOKENS) + 256}, got {vocab_size}")
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    data = _toy_json(vocab_size) if texts is None else _train_json(tuple(texts), vocab_size)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(data),
        pad_token="<pad>",
        eos_token="<|im_end|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    if chat_template:
        tok.chat_template = CHATML_JINJA
    return tok


def tiny_causal_lm(
    arch: str = "qwen2", vocab_size: int = DEFAULT_VOCAB_SIZE, seed: int = 0, hidden: int = 32, layers: int = 2
) -> Any:
    """Build a tiny random-init causal LM in eval mode (float32, GQA with 4 query / 2 KV heads).

    Args:
        arch: ``"qwen2"`` or ``"llama"``.
        vocab_size: Vocabulary size (match the tokenizer's).
        seed: Seed of the weight initialization (``torch.manual_seed``).
        hidden: Hidden size (a multiple of 4).
        layers: Number of decoder layers.

    Example:
        >>> tiny_causal_lm("llama", layers=1).config.num_hidden_layers
        1
    """
    if arch not in ARCHS:
        raise ValueError(f"`arch` must be one of {ARCHS}, got {arch!r}")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    kwargs = dict(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    if arch == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**kwargs)).eval()
    return LlamaForCausalLM(LlamaConfig(**kwargs)).eval()
