"""Default instructions shown to the agent (Search-R1 / IGPO style) for both action protocols."""

from __future__ import annotations

__all__ = ["DEFAULT_PROMPT_TEMPLATE", "TOOL_CALL_PROMPT_TEMPLATE"]

DEFAULT_PROMPT_TEMPLATE = (
    "Answer the given question. Think inside <think> and </think> whenever you get new information. "
    "If you lack some knowledge, search by writing <search> query </search>; the top results come back between "
    "<information> and </information>. You may search several times. When no more knowledge is needed, give the "
    "short final answer inside <answer> and </answer>, for example <answer> Beijing </answer>. "
    "Question: {question}\n"
)
"""Instruction for ``protocol="tags"``; ``{question}`` is filled in."""

TOOL_CALL_PROMPT_TEMPLATE = (
    "Answer the given question. Think inside <think> and </think> whenever you get new information. "
    "If you lack some knowledge, call the web_search tool as "
    '<tool_call>{{"name": "web_search", "arguments": {{"query": ["your query"]}}}}</tool_call>; '
    "the results come back as a tool message. When no more knowledge is needed, give the short final answer inside "
    "<answer> and </answer>, for example <answer> Beijing </answer>. "
    "Question: {question}\n"
)
"""Instruction for ``protocol="tool_call"`` (IGPO's release, Qwen function calling)."""
