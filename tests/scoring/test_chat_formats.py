"""One home for the chat formats: the Jinja ChatML is derived from CHATML and renders the same text."""

from __future__ import annotations

import pytest

from igpo_env.scoring import tiny
from igpo_env.scoring.templates import CHATML, CHATML_JINJA, ChatFormat, render_transcript
from igpo_env.scoring.tiny import tiny_tokenizer

MSGS = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Q? {not a field}"},
    {"role": "assistant", "content": "<search> q </search>"},
]


@pytest.mark.parametrize("gen", [True, False])
def test_jinja_chatml_renders_like_chatml(gen):
    tok = tiny_tokenizer()
    assert tok.chat_template == CHATML_JINJA and tiny.CHATML_JINJA is CHATML_JINJA
    assert render_transcript(MSGS, tok, add_generation_prompt=gen) == CHATML.render(MSGS, add_generation_prompt=gen)


def test_jinja_rejects_stray_braces():
    with pytest.raises(ValueError, match="`message` = .* holds braces besides"):
        ChatFormat(message="{{role}} {content}").jinja()
