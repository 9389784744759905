"""One entry point for QA data: :func:`load_qa` detects the format and returns :class:`~igpo_env.types.QAExample`s.

Also converts to and from ``datasets.Dataset`` / ``DatasetDict``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from igpo_env.data.formats import example_from_mapping, load_flashrag_qa, load_verl_parquet
from igpo_env.error import DataFormatError
from igpo_env.types import QAExample

__all__ = ["load_qa", "to_dataset", "from_dataset"]

_JSONL_EXT = (".jsonl", ".json")


def from_dataset(dataset: Any, name: str = "dataset") -> list[QAExample]:
    """Convert a ``datasets.Dataset`` (or any sequence of dict rows) with question/answers columns.

    verl-style rows (``prompt`` + ``reward_model``) are recognized too.

    Example:
        >>> import datasets
        >>> ds = datasets.Dataset.from_dict({"question": ["Who?"], "answer": [["Ann", "Annie"]]})
        >>> from_dataset(ds)[0].golden_answers
        ('Ann', 'Annie')
    """
    from igpo_env.data.formats import parse_ground_truth, question_from_prompt

    out = []
    for i, row in enumerate(dataset):
        where = f"{name}: row {i}"
        if not isinstance(row, dict):
            raise DataFormatError(f"{where}: expected a dict row, got {type(row).__name__}")
        if "reward_model" in row and "question" not in row and "prompt" in row:
            rm = row["reward_model"] or {}
            row = {
                "id": row.get("id", f"{name}_{i}"),
                "question": question_from_prompt(row["prompt"], where),
                "golden_answers": parse_ground_truth(rm.get("ground_truth"), where),
                "data_source": row.get("data_source"),
            }
        out.append(example_from_mapping(row, where, f"{name}_{i}"))
    return out


def to_dataset(examples: Iterable[QAExample]) -> Any:
    """Convert examples to a ``datasets.Dataset`` with FlashRAG-like columns.

    Columns: ``id``, ``question``, ``golden_answers``, ``data_source``, ``supporting_doc_ids`` and ``metadata``
    (a JSON string, since metadata is schemaless).

    Example:
        >>> ds = to_dataset([QAExample("q1", "Who?", ["Ann"])])
        >>> ds[0]["golden_answers"], from_dataset(ds)[0] == QAExample("q1", "Who?", ["Ann"])
        (['Ann'], True)
    """
    import datasets

    rows: dict[str, list[Any]] = {k: [] for k in ("id", "question", "golden_answers", "data_source")}
    rows["supporting_doc_ids"], rows["metadata"] = [], []
    for ex in examples:
        rows["id"].append(ex.id)
        rows["question"].append(ex.question)
        rows["golden_answers"].append(list(ex.golden_answers))
        rows["data_source"].append(ex.data_source)
        rows["supporting_doc_ids"].append(list(ex.supporting_doc_ids))
        rows["metadata"].append(json.dumps(ex.metadata, ensure_ascii=False))
    features = datasets.Features(
        {
            "id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "golden_answers": datasets.Sequence(datasets.Value("string")),
            "data_source": datasets.Value("string"),
            "supporting_doc_ids": datasets.Sequence(datasets.Value("string")),
            "metadata": datasets.Value("string"),
        }
    )
    return datasets.Dataset.from_dict(rows, features=features)


def _load_path(path: Path, split: str | None) -> list[QAExample]:
    if path.is_dir():
        if split is None:
            raise ValueError(f"{path} is a directory: pass `split` (e.g. 'train', 'dev' or 'test')")
        for ext in (".jsonl", ".parquet", ".json"):
            candidate = path / f"{split}{ext}"
            if candidate.is_file():
                return _load_path(candidate, None)
        raise FileNotFoundError(f"{path}: no {split}.jsonl or {split}.parquet in this directory")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in _JSONL_EXT:
        return load_flashrag_qa(path)
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except (OSError, ValueError) as e:
            raise DataFormatError(f"{path}: not a readable parquet file ({e})") from e
        if "reward_model" in names:
            return load_verl_parquet(path)
        return from_dataset(pq.read_table(path).to_pylist(), name=str(path))
    raise DataFormatError(f"{path}: unknown QA file type {suffix!r}; expected .jsonl, .json or .parquet")


def load_qa(
    path_or_dataset: str | os.PathLike[str] | Any | Sequence[QAExample], split: str | None = None
) -> list[QAExample]:
    """Load QA examples from a file, a directory, a ``datasets`` object or a list of examples.

    Args:
        path_or_dataset: A FlashRAG ``.jsonl``, a verl ``.parquet``, a directory holding ``{split}.jsonl`` /
            ``{split}.parquet``, a ``datasets.Dataset``, a ``datasets.DatasetDict`` (with ``split``), or an iterable
            of :class:`QAExample`.
        split: Which split to take from a directory or a ``DatasetDict``.

    Returns:
        The examples, in file order.

    Raises:
        FileNotFoundError: for a missing file or split.
        DataFormatError: for a malformed file, naming the file and line or row.

    Example:
        >>> load_qa([QAExample("q1", "Who?", ["Ann"])])[0].id
        'q1'
    """
    if isinstance(path_or_dataset, (str, os.PathLike)):
        return _load_path(Path(path_or_dataset), split)
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        datasets = None
    if datasets is not None and isinstance(path_or_dataset, datasets.DatasetDict):
        if split is None or split not in path_or_dataset:
            raise ValueError(f"DatasetDict has splits {list(path_or_dataset)}: pass one as `split`, got {split!r}")
        path_or_dataset = path_or_dataset[split]
    if datasets is not None and isinstance(path_or_dataset, datasets.Dataset):
        return from_dataset(path_or_dataset)
    items = list(path_or_dataset)
    if all(isinstance(x, QAExample) for x in items):
        return items
    return from_dataset(items)
