"""The pieces of the tiny search agent trained here from scratch on SynthWiki: the fast test fixture.

The default policy is the warm-started pretrained LM of :mod:`agents.bootstrap.warm_start`; this model is only a
fixture (``--model tiny`` / ``--base tiny``). This module holds its spec, tokenizer, model and transcript encoding;
:func:`agents.bootstrap.build.bootstrap` builds it.

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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agents.bootstrap.common import IGNORE_INDEX
from igpo_env._validation import check_choice, check_int
from igpo_env.types import Message

__all__ = [
    "CONFIG_VERSION",
    "FIXTURE_POLICY",
    "SIZES",
    "BootstrapSpec",
    "CHAT_TEMPLATE",
    "TAG_TOKENS",
    "check_size",
    "default_model_dir",
    "train_tokenizer",
    "make_model",
    "encode_transcript",
]

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
            :func:`agents.bootstrap.trajectories.reading_transcripts`): a one-hop question, its search result, the
            facts read from it and the answer.
        rename_share: Share of scripted episodes given fresh names and numbers (see
            :class:`agents.bootstrap.trajectories.EpisodeRenamer`), so their facts cannot be recalled from other
            episodes and the model has to read them out of the passages.
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


FIXTURE_POLICY = "tiny"
"""Name of the from-scratch test fixture: its :data:`SIZES` key, ``--base tiny`` of ``igpo-env bootstrap`` and
``--model tiny`` of ``igpo-env train`` / ``eval``."""

SIZES: dict[str, BootstrapSpec] = {
    FIXTURE_POLICY: BootstrapSpec(
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
"""Model sizes: :data:`FIXTURE_POLICY` (< 1M parameters), a fast test fixture; the useful policy is the warm-started
pretrained LM (:mod:`agents.bootstrap.warm_start`)."""


def check_size(size: str) -> BootstrapSpec:
    """Return the spec of ``size``; raise ``ValueError`` listing the known sizes otherwise.

    Example:
        >>> check_size(FIXTURE_POLICY).num_layers
        2
    """
    return SIZES[check_choice("size", size, tuple(SIZES))]


def default_model_dir(size: str = FIXTURE_POLICY, seed: int = 0) -> Path:
    """Cache directory of the bootstrapped model of this size and world seed (it may not exist yet).

    Example:
        >>> default_model_dir("tiny", seed=3).name
        'synthwiki-s3-tiny-v3'
    """
    check_size(size)
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
    check_int("vocab_size", vocab_size, minimum=256 + len(SPECIAL_TOKENS) + len(TAG_TOKENS))  # bytes + special tokens
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
        >>> make_model(SIZES[FIXTURE_POLICY], tok).num_parameters() < 1_000_000
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
