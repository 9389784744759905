"""SynthWiki questions: 1-hop, 2-hop bridge, 3-hop compositional and comparison, each with its hop structure.

A *chain* question starts at an entity named in the question and follows relations ("the founder of Karvex" ->
"the birthplace of the founder of Karvex"); the last relation is the one asked about. Each hop records the entity
to search for, the passage that states the hop's fact and the hop's answer, so a scripted oracle can search hop by
hop and credit assignment can be checked against ground truth::

    metadata["hops"] = [{"entity": "Karvex Mining", "entity_type": "company", "doc_id": "sw-0000012",
                         "relation": "founded_by", "answer": "Ilka Maren"}, ...]

Example:
    >>> from igpo_env.data.synthwiki.world import generate_world
    >>> w = generate_world(300, seed=0)
    >>> gen = QuestionGenerator(w, "train", seed=0)
    >>> ex = gen.generate("2hop")
    >>> ex.data_source, len(ex.supporting_doc_ids), len(ex.metadata["hops"])
    ('synthwiki-2hop', 2, 2)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from igpo_env._validation import check_choice, check_int
from igpo_env.data.synthwiki.passages import subject_name, value_forms
from igpo_env.data.synthwiki.splits import SPLITS
from igpo_env.data.synthwiki.world import ENTITY_RELATIONS, Entity, World, doc_id
from igpo_env.types import QAExample

__all__ = ["QuestionGenerator", "QUESTION_KINDS", "KIND_WEIGHTS", "chain_signatures", "hop_pairs", "source_of"]

QUESTION_KINDS = ("1hop", "2hop", "3hop", "comparison")
KIND_WEIGHTS = {"1hop": 0.4, "2hop": 0.25, "3hop": 0.15, "comparison": 0.2}
"""Share of each kind among generated questions."""

NOUN_PHRASES: dict[str, tuple[str, ...]] = {
    "born_in": ("the birthplace of {s}", "the city where {s} was born"),
    "educated_at": ("the university {s} attended", "the alma mater of {s}"),
    "country": ("the country where {s} is located", "the country {s} lies in"),
    "founded_by": ("the founder of {s}", "the person who founded {s}"),
    "capital": ("the capital of {s}", "the capital city of {s}"),
    "source_country": ("the country where {s} rises", "the source country of {s}"),
    "headquarters": ("the city where {s} is headquartered", "the headquarters city of {s}"),
    "located_in": ("the city where {s} is located", "the home city of {s}"),
    "directed_by": ("the director of {s}", "the person who directed {s}"),
}
"""Phrasings of "the entity that ``relation`` of {s} points to", used to build multi-hop subjects."""

QUESTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("person", "born_in"): ("Where was {s} born?", "In which city was {s} born?", "What is the birthplace of {s}?"),
    ("person", "birth_year"): ("When was {s} born?", "In which year was {s} born?", "What is the birth year of {s}?"),
    ("person", "occupation"): ("What was the occupation of {s}?", "What did {s} do for a living?"),
    ("person", "educated_at"): ("Which university did {s} attend?", "Where did {s} study?"),
    ("person", "death_year"): ("When did {s} die?", "In which year did {s} die?"),
    ("city", "country"): ("In which country is {s}?", "Which country is {s} located in?"),
    ("city", "founded_year"): ("When was {s} founded?", "In which year was {s} founded?"),
    ("city", "founded_by"): ("Who founded {s}?", "Who was the founder of {s}?"),
    ("city", "population"): ("What is the population of {s}?", "How many people live in {s}?"),
    ("country", "capital"): ("What is the capital of {s}?", "Which city is the capital of {s}?"),
    ("country", "population"): ("What is the population of {s}?", "How many inhabitants does {s} have?"),
    ("country", "independence_year"): ("When did {s} become independent?", "In which year did {s} gain independence?"),
    ("country", "currency"): ("What is the currency of {s}?", "Which currency is used in {s}?"),
    ("river", "length_km"): ("How long is {s}?", "What is the length of {s}?"),
    ("river", "source_country"): ("In which country does {s} rise?", "Where is the source of {s}?"),
    ("river", "mouth"): ("Into which sea does {s} flow?", "Where does {s} empty?"),
    ("company", "founded_by"): ("Who founded {s}?", "Who was the founder of {s}?"),
    ("company", "founded_year"): ("When was {s} founded?", "In which year was {s} founded?"),
    ("company", "industry"): ("In which industry is {s}?", "What industry does {s} work in?"),
    ("company", "headquarters"): ("Where is {s} headquartered?", "In which city are the headquarters of {s}?"),
    ("company", "employees"): ("How many employees does {s} have?", "How many people does {s} employ?"),
    ("university", "located_in"): ("In which city is {s}?", "Where is {s} located?"),
    ("university", "founded_year"): ("When was {s} founded?", "In which year was {s} established?"),
    ("university", "founded_by"): ("Who founded {s}?", "Who was the founder of {s}?"),
    ("university", "students"): ("How many students does {s} have?", "How many students are enrolled at {s}?"),
    ("film", "directed_by"): ("Who directed {s}?", "Who was the director of {s}?"),
    ("film", "release_year"): ("When was {s} released?", "In which year was {s} released?"),
    ("film", "genre"): ("What genre is {s}?", "What kind of film is {s}?"),
    ("film", "runtime_min"): ("How long is {s}?", "What is the running time of {s}?"),
}
"""Question templates per (subject type, asked relation); ``{s}`` is a name or a multi-hop noun phrase."""

COMPARISONS: dict[tuple[str, str], tuple[tuple[str, bool], ...]] = {
    ("river", "length_km"): (("Which is longer, {a} or {b}?", True), ("Which river is shorter, {a} or {b}?", False)),
    ("person", "birth_year"): (("Who was born first, {a} or {b}?", False), ("Who was born later, {a} or {b}?", True)),
    ("company", "founded_year"): (
        ("Which company was founded earlier, {a} or {b}?", False),
        ("Which company is younger, {a} or {b}?", True),
    ),
    ("film", "release_year"): (
        ("Which film came out first, {a} or {b}?", False),
        ("Which film was released later, {a} or {b}?", True),
    ),
    ("city", "population"): (
        ("Which city has more inhabitants, {a} or {b}?", True),
        ("Which city is smaller, {a} or {b}?", False),
    ),
    ("university", "founded_year"): (("Which university is older, {a} or {b}?", False),),
}
"""(type, numeric attribute) -> ((template, True if the larger value wins), ...)."""

INVERSE_PAIRS = {("capital", "country"), ("country", "capital")}
"""Consecutive relations that lead back to where they started ("the country of the capital of X" = X)."""

MAX_ATTEMPTS = 50
"""Draws per question before giving up (a small split may not have a fresh question of every kind)."""


def source_of(kind: str) -> str:
    """Return the ``data_source`` of SynthWiki questions of one kind.

    Example:
        >>> source_of("2hop")
        'synthwiki-2hop'
    """
    return f"synthwiki-{kind}"


def chain_signatures(hops: int) -> list[tuple[str, tuple[str, ...]]]:
    """All ``(start_type, relations)`` chains with ``hops`` relations (the last one is asked about).

    Example:
        >>> ("film", ("directed_by", "born_in")) in chain_signatures(2)
        True
    """
    check_int("hops", hops, minimum=1)
    finals: dict[str, list[str]] = {}
    for t, rel in QUESTIONS:
        finals.setdefault(t, []).append(rel)
    out = []

    def walk(start: str, t: str, rels: tuple[str, ...]) -> None:
        if len(rels) == hops - 1:
            for rel in finals[t]:
                if not rels or (rels[-1], rel) not in INVERSE_PAIRS:
                    out.append((start, (*rels, rel)))
            return
        for (src, rel), dst in ENTITY_RELATIONS.items():
            if src == t and (not rels or (rels[-1], rel) not in INVERSE_PAIRS):
                walk(start, dst, (*rels, rel))

    for t in sorted(finals):
        walk(t, t, ())
    return out


def hop_pairs(examples: Sequence[QAExample], seed: int = 0) -> list[QAExample]:
    """Order questions as contrast pairs for learning *when to stop searching*: 1-hop, then a chain question.

    Each chain question comes right after a 1-hop question asking its first hop ("Where is Ninak Breweries
    headquartered?", then "What was the occupation of the founder of the city where Ninak Breweries is
    headquartered?").

    Both questions start with the same search and the same document; one should be answered from it, the other needs
    more searches. With two prompts per optimizer step and the order kept (no shuffling), each update sees both sides
    of that decision. Pairs are formed in ``examples`` order (a 1-hop question may open several pairs; comparisons and
    chains without a matching 1-hop question are left out) and shuffled by ``seed``.

    Args:
        examples: SynthWiki questions (``metadata["hops"]`` and ``data_source`` as the generator writes them).
        seed: Seed of the pair order.

    Returns:
        The pairs flattened: ``[one_hop_1, chain_1, one_hop_2, chain_2, ...]``.

    Example:
        >>> from igpo_env.data.synthwiki.world import generate_world
        >>> gen = QuestionGenerator(generate_world(300, seed=0), "train", seed=0)
        >>> qs = [gen.generate(k) for k in ("1hop",) * 40 + ("2hop",) * 40]
        >>> flat = hop_pairs(qs)
        >>> one, chain = flat[0].metadata["hops"], flat[1].metadata["hops"]
        >>> len(one), len(chain) > 1, one[0] == chain[0]
        (1, True, True)
    """

    def first_hop(ex: QAExample) -> tuple[str, str]:
        hop = ex.metadata["hops"][0]
        return hop["entity"], hop["relation"]

    one_hop: dict[tuple[str, str], QAExample] = {}
    for ex in examples:
        if ex.data_source == source_of("1hop"):
            one_hop.setdefault(first_hop(ex), ex)
    pairs = [
        (one_hop[first_hop(ex)], ex)
        for ex in examples
        if ex.data_source in (source_of("2hop"), source_of("3hop")) and first_hop(ex) in one_hop
    ]
    random.Random(seed).shuffle(pairs)
    return [ex for pair in pairs for ex in pair]


def _capitalize(text: str) -> str:
    return text[:1].upper() + text[1:]


class QuestionGenerator:
    """Draws questions whose subject entities all belong to one split.

    Args:
        world: The world (its passages' corpus positions must be set, as :func:`generate_world` does).
        split: ``"train"``, ``"dev"`` or ``"test"``; subject entities are taken from this split only.
        seed: Random seed.

    Example:
        >>> from igpo_env.data.synthwiki.world import generate_world
        >>> gen = QuestionGenerator(generate_world(300, seed=0), "train", seed=0)
        >>> ex = gen.generate("comparison")
        >>> ex.golden_answers[0] in ex.question
        True
    """

    def __init__(self, world: World, split: str, seed: int = 0) -> None:
        check_choice("split", split, SPLITS)
        self.world = world
        self.split = split
        self.rng = random.Random(f"synthwiki-questions:{seed}:{split}")
        self.pool: dict[str, list[int]] = {
            t: [i for i in idxs if world.entities[i].split == split] for t, idxs in world.by_type.items()
        }
        self.signatures = {k: chain_signatures(k) for k in (1, 2, 3)}
        self.comparisons = [key for key in COMPARISONS if len(self.pool.get(key[0], ())) >= 2]
        self.seen: set[tuple[Any, ...]] = set()
        self.count = 0

    def generate(self, kind: str) -> QAExample | None:
        """One fresh question of ``kind`` (see :data:`QUESTION_KINDS`), or None if none was found."""
        check_choice("kind", kind, QUESTION_KINDS)
        for _ in range(MAX_ATTEMPTS):
            ex = self._comparison() if kind == "comparison" else self._chain(int(kind[0]))
            if ex is not None:
                self.count += 1
                return ex
        return None

    def _hop(self, e: Entity, relation: str) -> dict[str, Any]:
        return {
            "entity": e.name,
            "entity_type": e.etype,
            "doc_id": doc_id(e.fact_doc(relation)),
            "relation": relation,
            "answer": value_forms(self.world, e, relation)[0],
        }

    def _example(self, kind: str, question: str, answers: tuple[str, ...], hops: list[dict], **meta) -> QAExample:
        return QAExample(
            id=f"synthwiki-{self.split}-{self.count:07d}",
            question=question,
            golden_answers=tuple(dict.fromkeys(answers)),
            data_source=source_of(kind),
            supporting_doc_ids=tuple(h["doc_id"] for h in hops),
            metadata={"hops": hops, **meta},
        )

    def _chain(self, n_hops: int) -> QAExample | None:
        rng, ents = self.rng, self.world.entities
        start_type, rels = rng.choice(self.signatures[n_hops])
        pool = self.pool.get(start_type)
        if not pool:
            return None
        e = ents[rng.choice(pool)]
        key = (rels, e.idx)
        if key in self.seen:
            return None
        path = [e]
        for rel in rels[:-1]:
            nxt = e.attrs.get(rel)
            if nxt is None or ents[nxt] in path:
                return None
            e = ents[nxt]
            path.append(e)
        if e.attrs.get(rels[-1]) is None:
            return None
        self.seen.add(key)
        subject = subject_name(path[0])
        for rel in rels[:-1]:
            subject = rng.choice(NOUN_PHRASES[rel]).format(s=subject)
        question = _capitalize(rng.choice(QUESTIONS[(e.etype, rels[-1])]).format(s=subject))
        hops = [self._hop(ent, rel) for ent, rel in zip(path, rels, strict=True)]
        answers = value_forms(self.world, e, rels[-1])
        return self._example(f"{n_hops}hop", question, answers, hops, subject_entities=[path[0].name])

    def _comparison(self) -> QAExample | None:
        if not self.comparisons:
            return None
        rng, ents = self.rng, self.world.entities
        etype, attr = rng.choice(self.comparisons)
        i, j = rng.sample(self.pool[etype], 2)
        a, b = ents[i], ents[j]
        if a.attrs[attr] == b.attrs[attr]:
            return None
        template, larger = rng.choice(COMPARISONS[(etype, attr)])
        key = ("cmp", attr, larger, min(i, j), max(i, j))
        if key in self.seen:
            return None
        self.seen.add(key)
        winner = a if (a.attrs[attr] > b.attrs[attr]) == larger else b
        question = _capitalize(template.format(a=subject_name(a), b=subject_name(b)))
        hops = [self._hop(a, attr), self._hop(b, attr)]
        return self._example(
            "comparison", question, (winner.name, *winner.aliases), hops, subject_entities=[a.name, b.name]
        )
