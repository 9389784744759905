"""Readers and writers for the QA and corpus formats used by search-agent RL projects.

- FlashRAG QA jsonl: ``{"id", "question", "golden_answers", "metadata"}`` one object per line.
- FlashRAG corpus jsonl: ``{"id", "contents"}`` with ``contents = "Title\\ntext"``.
- Search-R1 / IGPO verl parquet: columns ``data_source``, ``prompt`` (a list of chat messages), ``reward_model``
  (a dict whose ``ground_truth`` is a string, a list, ``{"target": [...]}``, or aliases joined by
  ``<|answer_split|>``) and ``extra_info``.

Every reader raises :class:`~igpo_env.error.DataFormatError` naming the file, the line or row and the problem.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from igpo_env.error import DataFormatError
from igpo_env.types import Doc, QAExample

__all__ = [
    "ANSWER_SPLIT",
    "iter_jsonl",
    "load_flashrag_qa",
    "save_flashrag_qa",
    "load_corpus",
    "save_corpus",
    "load_verl_parquet",
    "save_verl_parquet",
    "parse_ground_truth",
    "question_from_prompt",
    "example_from_mapping",
]

ANSWER_SPLIT = "<|answer_split|>"
"""Separator IGPO uses to join gold aliases inside one ``ground_truth`` string."""

_QUESTION_RE = re.compile(r"Question:\s*(.*)", flags=re.DOTALL | re.IGNORECASE)
_QUESTION_KEYS = ("question", "query", "problem")
_ANSWER_KEYS = ("golden_answers", "answers", "answer", "answer_aliases", "gold_answers")


def _to_python(value: Any) -> Any:
    """Turn numpy arrays / scalars (as pyarrow hands them back) into plain Python values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Mapping):
        return {k: _to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_python(v) for v in value]
    return value


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, object)`` for each non-empty line of a jsonl file.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        DataFormatError: on a line that is not a JSON object (a truncated last line included).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{path}:{lineno}: not valid JSON ({e.msg}); is the line truncated?") from e
            if not isinstance(obj, dict):
                raise DataFormatError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


def parse_ground_truth(value: Any, where: str = "ground_truth") -> list[str]:
    """Turn a verl ``ground_truth`` value into a list of gold aliases.

    Accepts a string (aliases may be joined by ``<|answer_split|>``), a list of strings, or a dict with a
    ``target`` list (Search-R1).

    Example:
        >>> parse_ground_truth("Oslo<|answer_split|>Christiania")
        ['Oslo', 'Christiania']
        >>> parse_ground_truth({"target": ["a", "b"]})
        ['a', 'b']
    """
    value = _to_python(value)
    if isinstance(value, Mapping):
        if "target" not in value:
            raise DataFormatError(f"{where}: dict ground_truth needs a 'target' key, got keys {sorted(value)}")
        value = value["target"]
    if isinstance(value, str):
        answers = [a.strip() for a in value.split(ANSWER_SPLIT)]
    elif isinstance(value, (list, tuple)):
        answers = []
        for v in value:
            if not isinstance(v, (str, int, float)):
                raise DataFormatError(f"{where}: answers must be strings, got {type(v).__name__}")
            answers.extend(a.strip() for a in str(v).split(ANSWER_SPLIT))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        answers = [str(value)]
    else:
        raise DataFormatError(f"{where}: ground_truth must be a string, a list or {{'target': [...]}}, got {value!r}")
    answers = [a for a in answers if a]
    if not answers:
        raise DataFormatError(f"{where}: no non-empty gold answer")
    return answers


def question_from_prompt(prompt: Any, where: str = "prompt") -> str:
    """Recover the bare question from a verl chat prompt (the user message holds ``... Question: <q>``).

    Example:
        >>> question_from_prompt([{"role": "user", "content": "Answer it. Question: Who wrote Emma?\\n"}])
        'Who wrote Emma?'
    """
    prompt = _to_python(prompt)
    if isinstance(prompt, str):
        text = prompt
    elif isinstance(prompt, list) and prompt and all(isinstance(m, Mapping) for m in prompt):
        users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
        if not users:
            raise DataFormatError(f"{where}: no message with role 'user'")
        text = str(users[-1])
    else:
        raise DataFormatError(f"{where}: expected a list of chat messages, got {prompt!r:.80}")
    matches = list(_QUESTION_RE.finditer(text))
    if not matches:
        return text.strip()
    # the last "Question:" is the question; instructions may mention the word earlier
    idx = text.lower().rfind("question:")
    return text[idx + len("question:") :].strip()


def _answers_from(row: Mapping[str, Any], where: str) -> list[str]:
    for key in _ANSWER_KEYS:
        if key in row and row[key] is not None:
            value = _to_python(row[key])
            if isinstance(value, Mapping):
                # TriviaQA {"value", "aliases"}; SQuAD {"text": [...]}
                if "text" in value:
                    value = value["text"]
                else:
                    head = [value["value"]] if value.get("value") else []
                    value = head + [a for a in value.get("aliases", []) if a not in head]
            return parse_ground_truth(value, f"{where}: column {key!r}")
    raise DataFormatError(f"{where}: missing an answers column (one of {_ANSWER_KEYS})")


def example_from_mapping(
    row: Mapping[str, Any], where: str, default_id: str, data_source: str = "unknown"
) -> QAExample:
    """Build a :class:`QAExample` from a FlashRAG-like record or a ``datasets`` row.

    Recognized question columns: ``question``, ``query``, ``problem``; answer columns: ``golden_answers``,
    ``answers``, ``answer``, ``answer_aliases``, ``gold_answers``.
    """
    question = None
    for key in _QUESTION_KEYS:
        if key in row and row[key] is not None:
            question = row[key]
            break
    if question is None:
        raise DataFormatError(f"{where}: missing a question column (one of {_QUESTION_KEYS})")
    if not isinstance(question, str):
        raise DataFormatError(f"{where}: question must be a string, got {type(question).__name__}")
    answers = _answers_from(row, where)
    metadata = _to_python(row.get("metadata") or {})
    if isinstance(metadata, str):  # to_dataset stores schemaless metadata as a JSON string
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{where}: metadata string is not valid JSON ({e.msg})") from e
    if not isinstance(metadata, Mapping):
        raise DataFormatError(f"{where}: metadata must be an object, got {type(metadata).__name__}")
    metadata = dict(metadata)
    supporting = _to_python(row.get("supporting_doc_ids") or metadata.pop("supporting_doc_ids", None) or [])
    source = row.get("data_source") or metadata.pop("data_source", None) or data_source
    return QAExample(
        id=str(row.get("id", default_id)),
        question=question,
        golden_answers=answers,
        data_source=str(source),
        supporting_doc_ids=tuple(str(s) for s in supporting),
        metadata=metadata,
    )


def load_flashrag_qa(path: str | os.PathLike[str]) -> list[QAExample]:
    """Load a FlashRAG QA jsonl file.

    ``data_source`` and ``supporting_doc_ids`` are read from the top level or from ``metadata``.

    Raises:
        DataFormatError: naming the file and line of a malformed record.
    """
    stem = Path(path).stem
    return [
        example_from_mapping(obj, f"{path}:{ln}", f"{stem}_{ln - 1}", data_source=stem) for ln, obj in iter_jsonl(path)
    ]


def save_flashrag_qa(examples: Iterable[QAExample], path: str | os.PathLike[str]) -> int:
    """Write examples as FlashRAG QA jsonl; returns the number written.

    ``data_source`` and ``supporting_doc_ids`` are stored inside ``metadata`` (FlashRAG has no such columns).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for ex in examples:
            meta = dict(ex.metadata)
            meta["data_source"] = ex.data_source
            meta["supporting_doc_ids"] = list(ex.supporting_doc_ids)
            rec = {"id": ex.id, "question": ex.question, "golden_answers": list(ex.golden_answers), "metadata": meta}
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def load_corpus(path: str | os.PathLike[str]) -> Iterator[Doc]:
    """Stream a FlashRAG corpus jsonl (``{"id", "contents"}``) as :class:`Doc` records.

    Also accepts records with separate ``title`` and ``text`` fields.

    Raises:
        FileNotFoundError: if the file is missing.
        DataFormatError: naming the file and line of a malformed record.
    """
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if "id" not in obj:
            raise DataFormatError(f"{where}: missing 'id'")
        if "contents" in obj:
            if not isinstance(obj["contents"], str):
                raise DataFormatError(f"{where}: 'contents' must be a string, got {type(obj['contents']).__name__}")
            yield Doc.from_contents(str(obj["id"]), obj["contents"])
        elif "text" in obj and isinstance(obj["text"], str):
            yield Doc(str(obj["id"]), str(obj.get("title", "")), obj["text"])
        else:
            raise DataFormatError(f"{where}: missing 'contents' (FlashRAG corpus records are {{id, contents}})")


def save_corpus(docs: Iterable[Doc], path: str | os.PathLike[str]) -> int:
    """Write documents as FlashRAG corpus jsonl (``contents = "Title\\ntext"``); returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d.id, "contents": d.contents}, ensure_ascii=False) + "\n")
            n += 1
    return n


_VERL_COLUMNS = ("data_source", "prompt", "reward_model")


def load_verl_parquet(path: str | os.PathLike[str]) -> list[QAExample]:
    """Load a Search-R1 / IGPO verl parquet file.

    The question comes from a ``question`` column when present, else from ``extra_info["question"]``, else from the
    text after the last ``Question:`` of the user prompt.

    Raises:
        DataFormatError: for a missing column or a malformed row (naming the file and row).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as e:
        raise DataFormatError(f"{path}: not a readable parquet file ({e})") from e
    missing = [c for c in _VERL_COLUMNS if c not in table.column_names]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {missing}; verl parquet needs {list(_VERL_COLUMNS)}")
    out = []
    for i, row in enumerate(table.to_pylist()):
        where = f"{path}: row {i}"
        rm = row["reward_model"]
        if not isinstance(rm, Mapping) or "ground_truth" not in rm:
            raise DataFormatError(f"{where}: reward_model must be a dict with 'ground_truth', got {rm!r:.80}")
        extra = row.get("extra_info") or {}
        question = row.get("question") or (extra.get("question") if isinstance(extra, Mapping) else None)
        if not question:
            question = question_from_prompt(row["prompt"], f"{where}: prompt")
        meta = {k: v for k, v in (extra.items() if isinstance(extra, Mapping) else []) if k != "question"}
        if isinstance(meta.get("metadata_json"), str):
            meta.update(json.loads(meta.pop("metadata_json")))
        supporting = meta.pop("supporting_doc_ids", None) or []
        out.append(
            QAExample(
                id=str(row.get("id") or meta.get("id") or f"{path.stem}_{meta.get('index', i)}"),
                question=str(question),
                golden_answers=parse_ground_truth(rm["ground_truth"], f"{where}: reward_model.ground_truth"),
                data_source=str(row["data_source"]),
                supporting_doc_ids=tuple(supporting),
                metadata=meta,
            )
        )
    return out


def save_verl_parquet(
    examples: Iterable[QAExample],
    path: str | os.PathLike[str],
    prompt_template: str | None = None,
    split: str = "train",
    join_aliases: bool = False,
) -> int:
    """Write examples as Search-R1 / IGPO verl parquet; returns the number of rows.

    Args:
        examples: The examples.
        path: Output ``.parquet`` path.
        prompt_template: A ``str.format`` template with ``{question}``; defaults to the env's instruction.
        split: Stored in ``extra_info["split"]``.
        join_aliases: Store ``ground_truth`` as one string joined by ``<|answer_split|>`` (IGPO) instead of
            ``{"target": [...]}`` (Search-R1).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if prompt_template is None:
        from igpo_env.prompts import DEFAULT_PROMPT_TEMPLATE

        prompt_template = DEFAULT_PROMPT_TEMPLATE
    rows = []
    for i, ex in enumerate(examples):
        gt: Any = ANSWER_SPLIT.join(ex.golden_answers) if join_aliases else {"target": list(ex.golden_answers)}
        rows.append(
            {
                "id": ex.id,
                "question": ex.question,
                "golden_answers": list(ex.golden_answers),
                "data_source": ex.data_source,
                "prompt": [{"role": "user", "content": prompt_template.format(question=ex.question)}],
                "ability": "fact-reasoning",
                "reward_model": {"style": "rule", "ground_truth": gt},
                "extra_info": {
                    "split": split,
                    "index": i,
                    "supporting_doc_ids": list(ex.supporting_doc_ids),
                    "metadata_json": json.dumps(ex.metadata, ensure_ascii=False),
                },
            }
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return len(rows)
