"""A tiny in-package corpus and QA set for doctests, examples and unit tests (no files, no downloads).

Example:
    >>> docs, qa = toy_corpus(), toy_qa()
    >>> len(docs) >= 6 and qa[0].supporting_doc_ids[0] in {d.id for d in docs}
    True
"""

from __future__ import annotations

from igpo_env.types import Doc, QAExample

__all__ = ["toy_corpus", "toy_qa"]

_DOCS = [
    (
        "t0",
        "Velmora",
        "Velmora is a river in Ostrand. The Velmora is 412 kilometres long and flows into the Grey Sea.",
    ),
    ("t1", "Ostrand", "Ostrand is a country. Its capital is Karsel. Ostrand has about four million inhabitants."),
    ("t2", "Karsel", "Karsel is the capital city of Ostrand. Karsel was founded in 1204 by Ilka Maren."),
    ("t3", "Ilka Maren", "Ilka Maren was a merchant born in Dovia in 1170. She founded the city of Karsel."),
    ("t4", "Dovia", "Dovia is a small town on the Velmora river in Ostrand."),
    ("t5", "Tessa Brun", "Tessa Brun is a film director born in Karsel in 1961. She directed The Amber Gate."),
    ("t6", "The Amber Gate", "The Amber Gate is a 1994 film directed by Tessa Brun."),
    ("t7", "Velmoor", "Velmoor is a hill in Dovia, not to be confused with the Velmora river."),
]

_QA = [
    ("tq0", "What is the capital of Ostrand?", ["Karsel"], "synthwiki-1hop", ["t1"]),
    ("tq1", "Who founded the capital of Ostrand?", ["Ilka Maren", "Maren"], "synthwiki-2hop", ["t1", "t2"]),
    ("tq2", "Where was the director of The Amber Gate born?", ["Karsel"], "synthwiki-2hop", ["t6", "t5"]),
    ("tq3", "How long is the Velmora?", ["412 kilometres", "412 km"], "synthwiki-1hop", ["t0"]),
]


def toy_corpus() -> list[Doc]:
    """Return the 8-document toy corpus."""
    return [Doc(i, t, x) for i, t, x in _DOCS]


def toy_qa() -> list[QAExample]:
    """Return the 4-question toy QA set (with supporting document ids)."""
    return [QAExample(i, q, a, s, sup) for i, q, a, s, sup in _QA]
