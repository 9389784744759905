import pytest
from testing_utils import tiny_tokenizer

from igpo_env.scoring.templates import (
    CHATML,
    IGPO_TEMPLATE,
    ChatFormat,
    IGTemplate,
    end_of_turn,
    render_scoring_prefix,
    render_scoring_text,
    render_suffix,
    render_transcript,
)

MSGS = [
    {"role": "user", "content": "Q?"},
    {"role": "assistant", "content": "<search>q</search>"},
    {"role": "user", "content": "\n\n<information>Doc 1(Title: T) x</information>\n\n"},
]
LLAMA3_LIKE = (
    "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def test_igpo_pseudo_response_exact_text():
    prefix, target, suffix = render_scoring_text(MSGS, "Karsel")
    assert prefix.endswith(
        "<|im_start|>assistant\n<think>\nNow there's enough information to answer\n</think>\n<answer>\n"
    )
    assert prefix + target + suffix == (
        CHATML.render(MSGS, add_generation_prompt=True)
        + "<think>\nNow there's enough information to answer\n</think>\n<answer>\nKarsel\n</answer><|im_end|>"
    )


def test_tokenizer_chat_template_equals_chatml_default():
    tok = tiny_tokenizer()
    assert render_transcript(MSGS, tok) == render_transcript(MSGS)
    assert render_transcript(MSGS, tiny_tokenizer(chat_template=False)) == render_transcript(MSGS)  # fallback
    assert end_of_turn(tok) == "<|im_end|>"


def test_other_chat_template_and_end_of_turn():
    tok = tiny_tokenizer()
    tok.chat_template = LLAMA3_LIKE
    prefix = render_scoring_prefix(MSGS, tok)
    assert prefix.startswith("<|start_header_id|>user<|end_header_id|>\n\nQ?<|eot_id|>")
    assert prefix.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n" + IGPO_TEMPLATE.think
                           + IGPO_TEMPLATE.pseudo_response)  # fmt: skip
    assert end_of_turn(tok) == "<|eot_id|>"
    assert render_suffix(tok) == "\n</answer><|eot_id|>"


def test_custom_formats_and_templates():
    fmt = ChatFormat(message="[{role}] {content}\n", generation_prompt="[assistant] ", end_of_turn="</s>")
    assert (
        render_scoring_prefix(MSGS[:1], fmt, IGTemplate(think="", pseudo_response="A: "))
        == "[user] Q?\n[assistant] A: "
    )
    assert render_suffix(fmt) == "\n</answer></s>"
    assert render_scoring_prefix("verbatim", fmt) == "verbatim"
    with pytest.raises(TypeError, match="`chat_template` must be a tokenizer, a ChatFormat or None"):
        render_transcript(MSGS, 3)
