"""The ``igpo-env eval`` report: answers re-scored under each answer normalization, and the IGPO paper's tables.

The IGPO paper (Table 1) reports one row per model and one column per data source, single-hop (NQ, TQ, PopQA)
before multi-hop (HotpotQA, 2Wiki, Musique, Bamboogle), then the average over the sources. :func:`paper_tables`
builds that layout for EM and F1 under both answer normalizations (:data:`igpo_env.metrics.ANSWER_NORMALIZATIONS`;
the paper's numbers use ``"igpo"``), :func:`markdown_report` renders it. The per-question numbers come from
:func:`agents.rollout.evaluate_policy`'s episodes, re-scored by :func:`rescore` exactly as the env scores an answer
(:func:`igpo_env.actions.parse_action` + :func:`igpo_env.metrics.score_answer`), so the column of the env's own
normalization is the evaluation's EM/F1.

Functions: :func:`source_order`, :func:`rescore`, :func:`paper_tables`, :func:`markdown_report`.

Example:
    >>> scores = {"igpo": {"em": 0.5, "f1": 0.6, "by_source": {"nq": {"em": 1.0, "f1": 1.0, "n": 1},
    ...                                                        "hotpotqa": {"em": 0.0, "f1": 0.2, "n": 1}}}}
    >>> tables = paper_tables([("base", scores)])
    >>> tables["igpo"]["f1"]
    {'columns': ['nq', 'hotpotqa', 'avg'], 'rows': {'base': {'nq': 1.0, 'hotpotqa': 0.2, 'avg': 0.6}}}
    >>> print(markdown_report(tables).splitlines()[4])
    | base | 100.0 | 20.0 | 60.0 |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from igpo_env.actions import parse_action
from igpo_env.metrics import ANSWER_NORMALIZATIONS, score_answer

__all__ = [
    "PAPER_SOURCES",
    "SOURCE_ALIASES",
    "AVERAGE",
    "source_order",
    "rescore",
    "paper_tables",
    "markdown_report",
    "episode_type_table",
]

PAPER_SOURCES = ("nq", "tq", "popqa", "hotpotqa", "2wiki", "musique", "bamboogle")
"""The IGPO paper's column order (single-hop, then multi-hop); other sources follow, alphabetically."""

SOURCE_ALIASES = {"triviaqa": "tq", "2wikimultihopqa": "2wiki", "2wikimqa": "2wiki", "natural_questions": "nq"}
"""Other spellings of the paper's sources in released data (Search-R1 / FlashRAG ``data_source`` values)."""

AVERAGE = "avg"
"""Name of the average column: the unweighted mean over the data sources (as the paper's "Avg.")."""

_METRICS = ("em", "f1")


def source_order(sources: Iterable[str]) -> list[str]:
    """Order data sources as the paper's columns (case-insensitive, aliases known), the others after, sorted.

    Example:
        >>> source_order(["synthwiki", "Bamboogle", "hotpotqa", "triviaqa", "nq"])
        ['nq', 'triviaqa', 'hotpotqa', 'Bamboogle', 'synthwiki']
    """

    def key(source: str) -> tuple[int, str]:
        name = SOURCE_ALIASES.get(source.lower(), source.lower())
        return (PAPER_SOURCES.index(name), "") if name in PAPER_SOURCES else (len(PAPER_SOURCES), source)

    return sorted(set(sources), key=key)


def rescore(
    rollouts: Sequence[Any],
    golds: Mapping[str, Sequence[str]],
    protocol: str = "tags",
    normalizations: Sequence[str] = ANSWER_NORMALIZATIONS,
) -> dict[str, dict[str, Any]]:
    """Score each episode's answer under each normalization; EM/F1 overall and per data source.

    Args:
        rollouts: Episodes (:class:`agents.rollout.Rollout`); one that did not answer scores 0.
        golds: Question id -> gold aliases.
        protocol: The env's action protocol (how its last assistant turn is parsed).
        normalizations: Answer normalizations to score with.

    Returns:
        ``{normalization: {"em", "f1", "by_source": {source: {"em", "f1", "n"}}}}``.

    Example:
        >>> from agents.rollout import Rollout
        >>> r = Rollout("q1", "nq", [1], terminated=True,
        ...             messages=[{"role": "assistant", "content": "<answer>the Oslo</answer>"}])
        >>> {n: s["em"] for n, s in rescore([r], {"q1": ["Oslo"]}).items()}
        {'squad': 1.0, 'igpo': 0.0}
    """
    if not rollouts:
        raise ValueError("no episodes to score")
    out: dict[str, dict[str, Any]] = {}
    answers = []
    for r in rollouts:
        text = next((m["content"] for m in reversed(r.messages) if m["role"] == "assistant"), "")
        answers.append(parse_action(text, protocol).answer if r.terminated else None)
    for norm in normalizations:
        by_source: dict[str, dict[str, float]] = {}
        totals = dict.fromkeys(_METRICS, 0.0)
        for r, answer in zip(rollouts, answers, strict=True):
            agg = by_source.setdefault(r.data_source, {"em": 0.0, "f1": 0.0, "n": 0})
            agg["n"] += 1
            for metric in _METRICS:
                value = score_answer(answer, golds[r.question_id], metric, norm) if answer is not None else 0.0
                agg[metric] += value
                totals[metric] += value
        for agg in by_source.values():
            for metric in _METRICS:
                agg[metric] /= agg["n"]
        out[norm] = {m: totals[m] / len(rollouts) for m in _METRICS} | {"by_source": by_source}
    return out


def paper_tables(rows: Sequence[tuple[str, Mapping[str, Mapping[str, Any]]]]) -> dict[str, dict[str, Any]]:
    """Build the paper's tables: per normalization and metric, one row per model, one column per source + average.

    Args:
        rows: ``(model label, rescore(...) result)`` per model.

    Returns:
        ``{normalization: {metric: {"columns": [source, ..., "avg"], "rows": {label: {column: value}}}}}``; a source
        a model was not evaluated on is missing from its row, and its average is over the sources it has.
    """
    if not rows:
        raise ValueError("no models to tabulate")
    out: dict[str, dict[str, Any]] = {}
    for norm in rows[0][1]:
        sources = source_order(s for _, scores in rows for s in scores[norm]["by_source"])
        out[norm] = {}
        for metric in _METRICS:
            table: dict[str, dict[str, float]] = {}
            for label, scores in rows:
                by_source = scores[norm]["by_source"]
                row = {s: float(by_source[s][metric]) for s in sources if s in by_source}
                if row:
                    row[AVERAGE] = sum(row.values()) / len(row)
                table[label] = row
            out[norm][metric] = {"columns": [*sources, AVERAGE], "rows": table}
    return out


def markdown_report(tables: Mapping[str, Mapping[str, Any]], title: str | None = None) -> str:
    """Render :func:`paper_tables` as markdown: an F1 and an EM table per normalization, in percent (1 decimal).

    The ``"igpo"`` normalization (the paper's) comes first.
    """
    norms = sorted(tables, key=lambda n: (n != "igpo", n))
    lines = [f"# {title}", ""] if title else []
    for norm in norms:
        for metric in ("f1", "em"):
            table = tables[norm][metric]
            columns = table["columns"]
            lines += [f"## {metric.upper()} ({norm} normalization)", ""]
            lines.append("| Model | " + " | ".join("Avg." if c == AVERAGE else c for c in columns) + " |")
            lines.append("|---|" + "---:|" * len(columns))
            for label, row in table["rows"].items():
                cells = [f"{100 * row[c]:.1f}" if c in row else "-" for c in columns]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def episode_type_table(rows: Sequence[tuple[str, Mapping[str, int]]]) -> str:
    """Render the episode-type counts of each model (:data:`agents.rollout.EPISODE_TYPES`) as a markdown table.

    Example:
        >>> print(episode_type_table([("warm", {"correct": 3, "extra_search": 1})]).splitlines()[2])
        | warm | 3 | 0 | 0 | 1 | 0 | 0 | 0 |
    """
    from agents.rollout import EPISODE_TYPES

    lines = [
        "| Model | " + " | ".join(EPISODE_TYPES) + " |",
        "|---|" + "---:|" * len(EPISODE_TYPES),
    ]
    for label, counts in rows:
        lines.append(f"| {label} | " + " | ".join(str(counts.get(t, 0)) for t in EPISODE_TYPES) + " |")
    return "\n".join(lines)
