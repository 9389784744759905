"""The IGPO scoring template as data, and rendering of transcripts into scoring prefixes.

IGPO scores the gold answer as if the agent answered right after turn t. The scored text is::

    chat_template(transcript, add_generation_prompt=True)            # e.g. ...<|im_start|>assistant\\n
    + "<think>" + "\\nNow there's enough information to answer\\n</think>\\n<answer>\\n"   # prefix ends here
    + GT                                                               # scored tokens
    + "\\n</answer>" + end_of_turn                                      # suffix (never affects the scores)

Tokenization convention (used by every backend and by the trainer's fused path): ``ids = tok(prefix) + tok(GT)``
with each part tokenized separately and ``add_special_tokens=False``. Only the GT tokens are scored.

Chat formats: pass a tokenizer (its ``chat_template`` is used when set), a :class:`ChatFormat`, or ``None``
(ChatML, as Qwen and the embedded policy LM: ``<|im_start|>{role}\\n{content}<|im_end|>\\n``).

Example:
    >>> msgs = [{"role": "user", "content": "Q?"}]
    >>> print(render_scoring_prefix(msgs))
    <|im_start|>user
    Q?<|im_end|>
    <|im_start|>assistant
    <think>
    Now there's enough information to answer
    </think>
    <answer>
    <BLANKLINE>
    >>> render_suffix()
    '\\n</answer><|im_end|>'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from igpo_env.types import Message

__all__ = [
    "ChatFormat",
    "CHATML",
    "CHATML_JINJA",
    "IGTemplate",
    "IGPO_TEMPLATE",
    "render_transcript",
    "render_scoring_prefix",
    "render_suffix",
    "render_scoring_text",
    "end_of_turn",
]


@dataclass(frozen=True)
class ChatFormat:
    """A simple chat format: one string per message and a generation prompt.

    Attributes:
        message: Per-message format with ``{role}`` and ``{content}`` fields.
        generation_prompt: Appended when ``add_generation_prompt=True``.
        end_of_turn: The token that closes a turn.

    Example:
        >>> CHATML.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
        '<|im_start|>user\\nHi<|im_end|>\\n<|im_start|>assistant\\n'
    """

    message: str = "<|im_start|>{role}\n{content}<|im_end|>\n"
    generation_prompt: str = "<|im_start|>assistant\n"
    end_of_turn: str = "<|im_end|>"

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        """Render messages (and the generation prompt) to text."""
        text = "".join(self.message.format(role=m["role"], content=m["content"]) for m in messages)
        return text + (self.generation_prompt if add_generation_prompt else "")

    def jinja(self) -> str:
        """Return this format as a Jinja chat template (``tokenizer.chat_template``) that renders like :meth:`render`.

        Raises:
            ValueError: If the format holds braces besides its ``{role}`` / ``{content}`` fields (Jinja would read
                them as syntax).

        Example:
            >>> import jinja2
            >>> fmt = ChatFormat(message="[{role}] {content}\\n", generation_prompt="[assistant] ")
            >>> msgs = [{"role": "user", "content": "Hi"}]
            >>> jinja2.Template(fmt.jinja()).render(messages=msgs, add_generation_prompt=True) == fmt.render(msgs)
            True
        """
        for name, text in (("message", self.message), ("generation_prompt", self.generation_prompt)):
            bare = text.replace("{role}", "").replace("{content}", "")
            if any(mark in bare for mark in ("{", "}")):
                raise ValueError(f"`{name}` = {text!r} holds braces besides {{role}} / {{content}}; write it in Jinja")
        message = self.message.replace("{role}", "{{ m['role'] }}").replace("{content}", "{{ m['content'] }}")
        return (
            f"{{% for m in messages %}}{message}{{% endfor %}}"
            f"{{% if add_generation_prompt %}}{self.generation_prompt}{{% endif %}}"
        )


CHATML = ChatFormat()
"""ChatML (Qwen, the embedded policy LM): the default when no chat template is available."""

CHATML_JINJA = CHATML.jinja()
"""ChatML as a Jinja chat template (``tokenizer.chat_template``); renders exactly like :data:`CHATML`."""


@dataclass(frozen=True)
class IGTemplate:
    """The IGPO pseudo-response around the scored gold answer.

    Attributes:
        think: Opens the pseudo-response right after the generation prompt.
        pseudo_response: Text between ``think`` and the gold answer.
        answer_close: Text right after the gold answer (before the end-of-turn token).
        end_of_turn: End-of-turn token; ``None`` takes it from the chat format / tokenizer.

    Example:
        >>> IGPO_TEMPLATE.prefix("T")
        "T<think>\\nNow there's enough information to answer\\n</think>\\n<answer>\\n"
    """

    think: str = "<think>"
    pseudo_response: str = "\nNow there's enough information to answer\n</think>\n<answer>\n"
    answer_close: str = "\n</answer>"
    end_of_turn: str | None = None

    def prefix(self, transcript: str) -> str:
        """Return the scoring prefix: transcript (with generation prompt) + ``think`` + ``pseudo_response``."""
        return transcript + self.think + self.pseudo_response


IGPO_TEMPLATE = IGTemplate()
"""IGPO's template (``gen_ground_truth_text`` in the reference): the default everywhere."""

_PROBE = "\x00IGPO_PROBE\x00"


def _has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None)) and hasattr(tokenizer, "apply_chat_template")


def render_transcript(
    messages: Sequence[Message], chat_template: Any = None, add_generation_prompt: bool = True
) -> str:
    """Render a chat transcript to text.

    Args:
        messages: ``[{"role": ..., "content": ...}, ...]``.
        chat_template: A tokenizer (its ``chat_template`` is used when set, else ChatML), a :class:`ChatFormat`,
            or ``None`` (ChatML).
        add_generation_prompt: Append the assistant generation prompt.

    Returns:
        The rendered text (special tokens as text, e.g. ``<|im_start|>``).

    Example:
        >>> render_transcript([{"role": "user", "content": "Hi"}], add_generation_prompt=False)
        '<|im_start|>user\\nHi<|im_end|>\\n'
    """
    if chat_template is None:
        return CHATML.render(messages, add_generation_prompt)
    if isinstance(chat_template, ChatFormat):
        return chat_template.render(messages, add_generation_prompt)
    if _has_chat_template(chat_template):
        text = chat_template.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
        if not isinstance(text, str):
            raise TypeError(f"`apply_chat_template(tokenize=False)` returned {type(text).__name__}, expected str")
        return text
    if hasattr(chat_template, "encode") or hasattr(chat_template, "apply_chat_template"):
        return CHATML.render(messages, add_generation_prompt)  # a tokenizer without a chat template
    raise TypeError(f"`chat_template` must be a tokenizer, a ChatFormat or None, got {type(chat_template).__name__}")


def end_of_turn(chat_template: Any = None) -> str:
    """Return the end-of-turn token of a chat format or tokenizer (``<|im_end|>`` for ChatML / Qwen).

    For a tokenizer with a chat template, it is the text that the template puts right after an assistant message's
    content (trailing whitespace stripped); for others, ChatML's.

    Example:
        >>> end_of_turn()
        '<|im_end|>'
    """
    if isinstance(chat_template, ChatFormat):
        return chat_template.end_of_turn
    if chat_template is None or not _has_chat_template(chat_template):
        return CHATML.end_of_turn
    probe = [{"role": "user", "content": "q"}, {"role": "assistant", "content": _PROBE}]
    text = render_transcript(probe, chat_template, add_generation_prompt=False)
    _, found, after = text.rpartition(_PROBE)
    eot = after.strip() if found else ""
    return eot or (getattr(chat_template, "eos_token", None) or CHATML.end_of_turn)


def render_scoring_prefix(
    context: Sequence[Message] | str, chat_template: Any = None, template: IGTemplate = IGPO_TEMPLATE
) -> str:
    """Render a scoring context to the text that precedes the scored gold answer.

    A message list is rendered with the chat template and the generation prompt, then ``template.prefix``; a string
    is returned unchanged (it is already a rendered prefix).

    Example:
        >>> render_scoring_prefix("already rendered ")
        'already rendered '
    """
    if isinstance(context, str):
        return context
    return template.prefix(render_transcript(context, chat_template, add_generation_prompt=True))


def render_suffix(chat_template: Any = None, template: IGTemplate = IGPO_TEMPLATE) -> str:
    """Return the text after the gold answer: ``answer_close`` + end-of-turn (never affects a causal LM's scores).

    Example:
        >>> render_suffix(template=IGTemplate(end_of_turn="</s>"))
        '\\n</answer></s>'
    """
    eot = template.end_of_turn if template.end_of_turn is not None else end_of_turn(chat_template)
    return template.answer_close + eot


def render_scoring_text(
    context: Sequence[Message] | str,
    target: str,
    chat_template: Any = None,
    template: IGTemplate = IGPO_TEMPLATE,
) -> tuple[str, str, str]:
    """Return the three pieces ``(prefix, target, suffix)`` of a scored sequence; only ``target`` is scored.

    Example:
        >>> p, t, s = render_scoring_text([{"role": "user", "content": "Q?"}], "Karsel")
        >>> (p + t + s).endswith("<answer>\\nKarsel\\n</answer><|im_end|>")
        True
    """
    return render_scoring_prefix(context, chat_template, template), target, render_suffix(chat_template, template)
