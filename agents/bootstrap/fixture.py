"""A tiny search agent trained here from scratch on SynthWiki: the fast test fixture.

The default policy is the warm-started pretrained LM of :mod:`agents.warm_start`.

``bootstrap(size, seed)`` builds (or reuses) a standard Hugging Face model directory under
``cache_dir("models", f"synthwiki-s{seed}-{size}-{CONFIG_VERSION}")``: the world's train questions are played by the
scripted oracle and noisy-oracle agents in SearchQA-v0, a byte-level BPE tokenizer is trained on the corpus and the
transcripts (optionally with every corpus word boosted so that each entity name is a single token), and a random-init
Qwen2 causal LM is trained with TRL's ``SFTTrainer`` on the ChatML-rendered
transcripts. The LM loss covers every token (instruction, question, passages, actions) except the noisy agent's
mistaken actions (label -100): with the loss on assistant tokens only, a model this small never learns to copy an
answer out of a passage.

The build is deterministic under the seed: the training budget is a number of tokens, not a wall-clock time.

Example:
    >>> tok = train_tokenizer(["Karsel is the capital of Ostrand."] * 4, vocab_size=300)
    >>> tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
    >>> len(tok.encode("<search>", add_special_tokens=False)), tok.eos_token
    (1, '<|im_end|>')
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from igpo_env.types import Message

__all__ = [
    "CONFIG_VERSION",
    "SIZES",
    "BootstrapSpec",
    "CHAT_TEMPLATE",
    "TAG_TOKENS",
    "bootstrap",
    "default_model_dir",
    "resolve_device",
    "train_tokenizer",
    "make_model",
    "encode_transcript",
]

logger = logging.getLogger(__name__)

CONFIG_VERSION = "v3"
"""Bumped whenever the recipe changes, so stale cached models are not reused."""

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = (PAD_TOKEN, IM_START, IM_END)
"""Special tokens of the chat format (same spelling as Qwen's, so the default IG template works unchanged)."""

TAG_TOKENS = (
    "<think>",
    "</think>",
    "<search>",
    "</search>",
    "<information>",
    "</information>",
    "<answer>",
    "</answer>",
)
"""SearchQA-v0's tags; each is a single (non-special) token so it decodes as text."""

CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""ChatML: ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` per message, then ``<|im_start|>assistant\\n``."""

REPORT_FILE = "report.json"
"""Quality report written into the model directory (its presence marks a finished build)."""

IGNORE_INDEX = -100
"""Label of tokens excluded from the loss."""

TOKENIZER_MIN_FREQUENCY = 2
"""BPE merges need at least this many occurrences."""

PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
"""Qwen2's pre-tokenization split (digits one by one, words with their leading space)."""


@dataclass(frozen=True)
class BootstrapSpec:
    """Architecture and training budget of one model size.

    Attributes:
        vocab_size: BPE vocabulary size (special and tag tokens included).
        hidden_size: Model width.
        num_layers: Transformer blocks.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads (grouped-query attention).
        intermediate_size: MLP width.
        max_length: Longest training / generation context (tokens); longer transcripts are cut at the end.
        train_episodes: Scripted episodes played on the train split to build the SFT set.
        noisy_fraction: Share of those episodes played by the noisy oracle (the rest by the oracle).
        ig_answer_share: Share of answer turns written in the IG pseudo-response form (the rest as the agents write).
        train_tokens: Training budget in token slots: ``steps = train_tokens / (batch_size * max_length)``, so runs are
            deterministic under a seed (packing leaves some slots empty: ~85% hold real tokens).
        batch_size: Packed sequences of ``max_length`` tokens per optimizer step.
        learning_rate: Peak learning rate (cosine schedule after warmup).
        warmup_ratio: Share of steps with linear warmup.
        weight_decay: AdamW weight decay.
        eval_questions: Dev questions used for the quality report.
        word_repeats: Times the corpus's distinct words are added to the tokenizer's training text (0: never); with a
            vocabulary larger than the corpus's word count this makes every entity name a single token.
        split_capitalized: Tokenizer option (see :func:`train_tokenizer`): a capitalized word is the same tokens
            after a space as after a newline, so the IG template's gold answer matches the name in the passages.
        reading_rows: Short reading transcripts added to the SFT set (see
            :func:`agents.bootstrap_build.reading_transcripts`): a one-hop question, its search result, the facts
            read from it and the answer.
        rename_share: Share of scripted episodes given fresh names and numbers (see
            :class:`agents.bootstrap_build.EpisodeRenamer`), so their facts cannot be recalled from other episodes and
            the model has to read them out of the passages.
        bf16: Train under bfloat16 autocast (fp32 master weights): ~2.5x the fp32 SFT throughput on CPUs with
            AVX512-BF16 or AMX (measured on a 5.5M-parameter shape), slower on CPUs without them.
    """

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    max_length: int
    train_episodes: int
    noisy_fraction: float
    train_tokens: int
    batch_size: int
    learning_rate: float
    ig_answer_share: float = 0.5
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    eval_questions: int = 200
    word_repeats: int = 0
    split_capitalized: bool = False
    reading_rows: int = 0
    rename_share: float = 0.0
    bf16: bool = False


SIZES: dict[str, BootstrapSpec] = {
    "tiny": BootstrapSpec(
        vocab_size=1024,
        hidden_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        intermediate_size=384,
        max_length=1024,
        train_episodes=400,
        noisy_fraction=0.3,
        train_tokens=600_000,
        batch_size=2,
        learning_rate=3e-3,
        eval_questions=32,
    ),
}
"""Model sizes: ``tiny`` (< 1M parameters), a fast test fixture; the useful policy is the warm-started pretrained LM
(:mod:`agents.warm_start`)."""


def _check_size(size: str) -> BootstrapSpec:
    if size not in SIZES:
        raise ValueError(f"`size` must be one of {sorted(SIZES)}, got {size!r}")
    return SIZES[size]


DEVICES = ("auto", "cpu", "cuda")
"""Devices the bootstrap can train on; ``auto`` is CUDA when torch sees a GPU, else the CPU."""


def resolve_device(device: str = "auto") -> str:
    """Return the device a bootstrap build trains and evaluates on: ``"cpu"`` or ``"cuda"``.

    A GPU runs the same recipe (the budget is in tokens, so a CUDA build follows the same schedule; its weights differ
    from a CPU build's only by floating-point rounding), and makes budgets far beyond the CPU's ten minutes practical
    (``--train-tokens``).

    Raises:
        ValueError: for a device not in :data:`DEVICES`, or ``"cuda"`` on a machine where torch sees no GPU.

    Example:
        >>> resolve_device("cpu")
        'cpu'
    """
    if device not in DEVICES:
        raise ValueError(f"`device` must be one of {DEVICES}, got {device!r}")
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("`device` 'cuda' was asked for but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return device


def default_model_dir(size: str = "tiny", seed: int = 0) -> Path:
    """Cache directory of the bootstrapped model of this size and world seed (it may not exist yet).

    Example:
        >>> default_model_dir("tiny", seed=3).name
        'synthwiki-s3-tiny-v3'
    """
    _check_size(size)
    from igpo_env.cache import cache_dir

    return cache_dir("models") / f"synthwiki-s{seed}-{size}-{CONFIG_VERSION}"


def train_tokenizer(texts: Iterable[str], vocab_size: int, split_capitalized: bool = False) -> Any:
    """Train a byte-level BPE tokenizer and wrap it as a ``PreTrainedTokenizerFast`` with the ChatML template.

    Args:
        texts: Training text (corpus passages, rendered transcripts).
        vocab_size: Vocabulary size including the special and tag tokens (>= 300: 256 bytes plus merges).
        split_capitalized: Learn no merge of a space with a following capital letter, so a capitalized word is the
            same tokens wherever it stands: ``" Karsel"`` encodes as ``" "`` + ``"Karsel"``, exactly the tokens of
            ``"Karsel"`` after a newline or at the start of a string (where the IG template puts the gold answer).
            Without it a name read in a passage (``" Karsel"``) and the same name as a scored answer (``"Karsel"``)
            are unrelated token ids, and a small model cannot copy one into the other for names it never saw.

    Returns:
        A ``transformers.PreTrainedTokenizerFast``; eos = ``<|im_end|>``, pad = ``<|endoftext|>``.
    """
    min_vocab = 256 + len(SPECIAL_TOKENS) + len(TAG_TOKENS)
    if vocab_size < min_vocab:
        raise ValueError(f"`vocab_size` must be >= {min_vocab} (bytes + special tokens), got {vocab_size}")
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # Qwen2's normalizer and pre-tokenizer: AutoTokenizer rebuilds a qwen2 model dir's tokenizer with these, so the
    # ids are the same whichever tokenizer class loads the directory.
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    qwen2_split = tok.pre_tokenizer
    if split_capitalized:
        # Only while learning the merges: a space before a capital letter is its own piece, so no merge joins them.
        # Encoding uses Qwen2's split; " Karsel" is then one piece whose merges stop at " " + "Karsel".
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(r" (?=\p{Lu})"), behavior="isolated", invert=False), qwen2_split]
        )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TAG_TOKENS),
        min_frequency=TOKENIZER_MIN_FREQUENCY,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.pre_tokenizer = qwen2_split
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        extra_special_tokens=[IM_START],
        chat_template=CHAT_TEMPLATE,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def make_model(spec: BootstrapSpec, tokenizer: Any, seed: int = 0) -> Any:
    """Build a randomly initialized Qwen2 causal LM for ``spec`` (deterministic under ``seed``).

    Example:
        >>> tok = train_tokenizer(["a b c"] * 4, vocab_size=300)
        >>> make_model(SIZES["tiny"], tok).num_parameters() < 1_000_000
        True
    """
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_length * 2,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=eos_id, pad_token_id=pad_id, do_sample=False)
    return model


def encode_transcript(
    tokenizer: Any, messages: Sequence[Message], masked: Sequence[bool] | None = None, max_length: int | None = None
) -> dict[str, list[int]]:
    """Tokenize a ChatML transcript into ``input_ids`` + ``labels``; masked messages get label -100.

    Each rendered message starts with ``<|im_start|>`` and ends before the next one, so encoding message by message
    gives the same ids as encoding the whole rendered transcript.

    Args:
        tokenizer: A tokenizer from :func:`train_tokenizer`.
        messages: The transcript.
        masked: Per message, True to exclude it from the loss (e.g. a mistaken action).
        max_length: Cut the transcript to this many tokens.

    Example:
        >>> tok = train_tokenizer(["Karsel is the capital of Ostrand."] * 4, vocab_size=300)
        >>> msgs = [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<answer> x </answer>"}]
        >>> enc = encode_transcript(tok, msgs, masked=[False, True])
        >>> enc["input_ids"] == tok.encode(tok.apply_chat_template(msgs, tokenize=False), add_special_tokens=False)
        True
        >>> enc["labels"][-1]
        -100
    """
    if masked is not None and len(masked) != len(messages):
        raise ValueError(f"`masked` must have one flag per message ({len(messages)}), got {len(masked)}")
    ids: list[int] = []
    labels: list[int] = []
    for i, m in enumerate(messages):
        piece = tokenizer.encode(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n", add_special_tokens=False)
        ids.extend(piece)
        labels.extend([IGNORE_INDEX] * len(piece) if masked is not None and masked[i] else piece)
    if max_length is not None:
        ids, labels = ids[:max_length], labels[:max_length]
    return {"input_ids": ids, "labels": labels}


def bootstrap(
    size: str = "tiny",
    seed: int = 0,
    force: bool = False,
    verbose: bool = True,
    out: str | Path | None = None,
    train_tokens: int | None = None,
    device: str = "auto",
) -> Path:
    """Build (or reuse) the embedded policy LM and return its HF model directory.

    Args:
        size: ``"tiny"`` (< 1M parameters; the fast test fixture).
        seed: Seed of the SynthWiki world and of training.
        force: Rebuild even if the directory already holds a finished build.
        verbose: Show progress bars.
        out: Directory to write to instead of the cache (``default_model_dir(size, seed)``).
        train_tokens: Override the size's training budget in tokens (the cache key then records it).
        device: Where to train and evaluate: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"``; a reused
            build is returned whatever device it was built on.

    Returns:
        The model directory (loads with ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained``); its
        ``report.json`` holds the quality report.

    Raises:
        ValueError: for an unknown ``size`` or ``device``, ``"cuda"`` without a GPU, or a non-positive
            ``train_tokens``.
    """
    spec = _check_size(size)
    device = resolve_device(device)
    if train_tokens is not None:
        if isinstance(train_tokens, bool) or not isinstance(train_tokens, int) or train_tokens < 1:
            raise ValueError(f"`train_tokens` must be a positive int, got {train_tokens!r}")
        spec = replace(spec, train_tokens=train_tokens)
    if out is not None:
        target = Path(out)
    else:
        target = default_model_dir(size, seed)
        if spec.train_tokens != SIZES[size].train_tokens:
            target = target.with_name(f"{target.name}-t{spec.train_tokens}")
    if (target / REPORT_FILE).exists() and not force:
        logger.info("reusing the bootstrapped model at %s", target)
        return target
    from agents.bootstrap_build import build

    build(target, size=size, spec=spec, seed=seed, verbose=verbose, device=device)
    return target


def spec_dict(size: str) -> dict[str, Any]:
    """Return the spec of ``size`` as a plain dict (written to the model directory)."""
    return asdict(_check_size(size))
