"""Shared records: documents, QA examples and token scores.

Records are frozen dataclasses so they hash, compare and print predictably.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Doc", "QAExample", "TargetScore", "Message"]

Message = dict[str, str]
"""A chat message: ``{"role": "system"|"user"|"assistant"|"tool", "content": str}``."""


@dataclass(frozen=True)
class Doc:
    """A retrievable passage.

    Attributes:
        id: Stable corpus id (string).
        title: Title of the passage (the entity name for SynthWiki).
        text: Body text, without the title.
        score: Retrieval score (higher is better); 0.0 when not retrieved.

    Example:
        >>> Doc("d1", "Paris", "Paris is a city.").contents
        'Paris\\nParis is a city.'
        >>> Doc.from_contents("d1", "Paris\\nParis is a city.").title
        'Paris'
    """

    id: str
    title: str
    text: str
    score: float = 0.0

    @property
    def contents(self) -> str:
        """FlashRAG ``contents`` field: ``"Title\\ntext"``."""
        return f"{self.title}\n{self.text}"

    @classmethod
    def from_contents(cls, id: str, contents: str, score: float = 0.0) -> Doc:
        """Split a FlashRAG ``contents`` string (``"Title\\ntext"``) into a :class:`Doc`."""
        title, sep, text = contents.partition("\n")
        if not sep:
            title, text = "", contents
        return cls(id=str(id), title=title.strip().strip('"'), text=text, score=float(score))


@dataclass(frozen=True)
class QAExample:
    """One question with its gold answers.

    Attributes:
        id: Question id, unique within a dataset.
        question: The question text (no instruction around it).
        golden_answers: Gold answer strings; the first is the canonical one, the rest are aliases.
        data_source: Where the question comes from (e.g. ``"nq"``, ``"synthwiki-2hop"``).
        supporting_doc_ids: Corpus ids needed to answer, in hop order (empty when unknown).
        metadata: Anything else (hop structure, original row fields).

    Example:
        >>> QAExample("q1", "Who?", ["Ann", "Annie"]).golden_answers[1]
        'Annie'
    """

    id: str
    question: str
    golden_answers: tuple[str, ...] | list[str]
    data_source: str = "unknown"
    supporting_doc_ids: tuple[str, ...] | list[str] = ()
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        """Normalize list fields to tuples and validate types."""
        if not isinstance(self.question, str):
            raise TypeError(f"`question` must be a str, got {type(self.question).__name__}")
        answers = self.golden_answers
        if isinstance(answers, str):
            answers = (answers,)
        object.__setattr__(self, "golden_answers", tuple(str(a) for a in answers))
        object.__setattr__(self, "supporting_doc_ids", tuple(str(d) for d in self.supporting_doc_ids))
        object.__setattr__(self, "id", str(self.id))


@dataclass(frozen=True)
class TargetScore:
    """Log-probabilities of a target string given a context, as returned by a :class:`~igpo_env.scoring.base.Scorer`.

    Attributes:
        token_logprobs: log pi(token | prefix) for each target token, in order.
        mean_logprob: Mean of ``token_logprobs`` (0.0 for an empty target).

    Example:
        >>> s = TargetScore.from_logprobs([-1.0, -3.0])
        >>> s.mean_logprob, round(s.prob, 4)
        (-2.0, 0.1353)
    """

    token_logprobs: tuple[float, ...]
    mean_logprob: float

    @classmethod
    def from_logprobs(cls, logprobs: list[float] | tuple[float, ...]) -> TargetScore:
        """Build from per-token log-probs, computing the mean."""
        lp = tuple(float(x) for x in logprobs)
        return cls(lp, sum(lp) / len(lp) if lp else 0.0)

    @property
    def prob(self) -> float:
        """``exp(mean_logprob)``: the IGPO per-token geometric-mean probability p_t."""
        import math

        return math.exp(self.mean_logprob)
