"""The SynthWiki world model: typed fictional entities, their attributes and the relations between them.

Seven entity types (person, city, country, river, company, university, film) carry typed attributes (years,
counts, lengths, words) and relations to other entities (``born_in``, ``founded_by``, ``capital``, ``directed_by``,
...). :func:`generate_world` draws a world of a given passage budget from a seed; the passage layout (which entity
gets one or two passages, where distractor passages go, every passage's corpus id) is fixed here too, so that the
renderer and the question generator agree on where each fact lives.

Example:
    >>> w = generate_world(200, seed=0)
    >>> w.n_passages, sorted(w.by_type)[:3]
    (200, ['city', 'company', 'country'])
    >>> person = w.entities[w.by_type["person"][0]]
    >>> w.entities[person.attrs["born_in"]].etype
    'city'
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass, field
from typing import Any

from igpo_env._validation import check_int
from igpo_env.data.synthwiki.names import NameGenerator

__all__ = [
    "ENTITY_TYPES",
    "ENTITY_RELATIONS",
    "EXTRA_FACTS",
    "Entity",
    "World",
    "generate_world",
    "MIN_PASSAGES",
    "doc_id",
]

PERSON, CITY, COUNTRY, RIVER, COMPANY, UNIVERSITY, FILM = (
    "person", "city", "country", "river", "company", "university", "film",
)  # fmt: skip
ENTITY_TYPES = (PERSON, CITY, COUNTRY, RIVER, COMPANY, UNIVERSITY, FILM)

TYPE_SHARES = {PERSON: 0.38, CITY: 0.17, COUNTRY: 0.03, RIVER: 0.07, COMPANY: 0.12, UNIVERSITY: 0.05, FILM: 0.18}
"""Share of each type among entities."""

MIN_PER_TYPE = 2
"""Every type gets at least this many entities (comparisons need two)."""

MIN_PASSAGES = 50
"""Smallest world :func:`generate_world` builds."""

DISTRACTOR_SHARE = 0.10
"""Share of passages that are pure distractors (minor places with near-duplicate names, asked about by nobody)."""

EXTRA_PASSAGE_SHARE = 0.25
"""Entities with a second passage, as a share of entities."""

ENTITY_RELATIONS: dict[tuple[str, str], str] = {
    (PERSON, "born_in"): CITY,
    (PERSON, "educated_at"): UNIVERSITY,
    (CITY, "country"): COUNTRY,
    (CITY, "founded_by"): PERSON,
    (COUNTRY, "capital"): CITY,
    (RIVER, "source_country"): COUNTRY,
    (COMPANY, "founded_by"): PERSON,
    (COMPANY, "headquarters"): CITY,
    (UNIVERSITY, "located_in"): CITY,
    (UNIVERSITY, "founded_by"): PERSON,
    (FILM, "directed_by"): PERSON,
}
"""(type, relation) -> type of the related entity. Values of these attributes are entity indices."""

MAIN_FACTS: dict[str, tuple[str, ...]] = {
    PERSON: ("occupation", "born_in", "birth_year"),
    CITY: ("country", "founded_year", "founded_by"),
    COUNTRY: ("capital", "population"),
    RIVER: ("length_km", "source_country"),
    COMPANY: ("industry", "founded_by", "founded_year"),
    UNIVERSITY: ("located_in", "founded_year"),
    FILM: ("genre", "directed_by", "release_year"),
}
"""Facts stated in an entity's first passage."""

EXTRA_FACTS: dict[str, tuple[str, ...]] = {
    PERSON: ("educated_at", "death_year"),
    CITY: ("population", "river"),
    COUNTRY: ("independence_year", "currency"),
    RIVER: ("mouth",),
    COMPANY: ("headquarters", "employees"),
    UNIVERSITY: ("founded_by", "students"),
    FILM: ("runtime_min",),
}
"""Facts stated in an entity's second passage when it has one (else in the first)."""

OCCUPATIONS = (
    "painter", "poet", "physicist", "architect", "composer", "chemist", "sculptor", "novelist", "astronomer",
    "botanist", "mathematician", "cartographer", "historian", "violinist", "photographer", "engineer",
)  # fmt: skip
ROLE_OCCUPATIONS = {
    "director": ("film director",),
    "company": ("industrialist", "entrepreneur", "inventor"),
    "city": ("explorer", "merchant", "settler"),
    "university": ("scholar", "philanthropist", "theologian"),
}
INDUSTRIES = (
    ("shipbuilding", "Shipyards"), ("textiles", "Textiles"), ("mining", "Mining"), ("brewing", "Breweries"),
    ("publishing", "Press"), ("railways", "Railways"), ("steel", "Steelworks"), ("software", "Systems"),
    ("pharmaceuticals", "Pharma"), ("aviation", "Aeronautics"), ("banking", "Bank"), ("glassmaking", "Glassworks"),
)  # fmt: skip
GENRES = ("drama", "comedy", "thriller", "western", "musical", "documentary", "war film", "science fiction film")
CURRENCIES = ("crown", "mark", "florin", "thaler", "ducat", "dinar", "guilder", "shilling")
CITY_SUFFIXES = ("holm", "stad", "burg", "ford", "wick", "haven", "mouth", "dal")
UNIVERSITY_PATTERNS = ("{r} University", "University of {r}", "{r} Institute of Technology", "{r} College")
COUNTRY_FORMS = ("Kingdom of {n}", "Republic of {n}", "Grand Duchy of {n}", "Federation of {n}")
SEA_FORMS = ("{r} Sea", "Gulf of {r}", "{r} Bay")
FILM_ADJECTIVES = (
    "Amber", "Silent", "Crimson", "Hollow", "Broken", "Golden", "Last", "Iron", "Distant", "Pale", "Burning", "Frozen",
    "Velvet", "Hidden", "Wandering", "Bitter", "Glass", "Lonely", "Northern", "Painted", "Sleeping", "Scarlet",
)  # fmt: skip
FILM_NOUNS = (
    "Gate", "Harbour", "Orchard", "Lantern", "Bridge", "Tide", "Crown", "Garden", "Mirror", "Winter", "Road",
    "Tower", "Letter", "Voyage", "Island", "Horizon", "Promise", "Shadow", "Meadow", "Cathedral", "Station", "Sparrow",
)  # fmt: skip
FEMALE_ENDINGS = ("a", "e", "ia", "ina", "ela", "is")
MALE_ENDINGS = ("o", "ek", "an", "or", "en", "us")

YEAR_MIN_BIRTH, YEAR_MAX_BIRTH = 1650, 1990
CURRENT_YEAR = 2024
CITY_FOUNDER_LATEST_BIRTH = 1850
COMPANY_FOUNDER_LATEST_BIRTH = 1960
UNIVERSITY_FOUNDER_LATEST_BIRTH = 1900
DIRECTOR_BIRTH_RANGE = (1870, 1975)
FOUNDING_AGE = (20, 55)
LIFESPAN = (45, 95)
STUDY_AGE = 18
CITY_FOUNDING_RANGE = (800, 1850)
UNI_FOUNDING_RANGE = (1100, 1950)
CITY_FOUNDER_SHARE = 0.6
UNIVERSITY_FOUNDER_SHARE = 0.5
CITY_RIVER_SHARE = 0.5
NICKNAME_SHARE = 0.15
COUNTRY_FORM_SHARE = 0.4
ALIAS_SHORT_SHARE = 0.5


def doc_id(position: int) -> str:
    """Return the corpus id of the passage at ``position`` (stable under the seed).

    Example:
        >>> doc_id(42)
        'sw-0000042'
    """
    return f"sw-{position:07d}"


class Entity:
    """One entity of the world.

    Attributes:
        idx: Index in :attr:`World.entities`.
        etype: One of :data:`ENTITY_TYPES`.
        name: Full unique name (the title of its passages).
        aliases: Other names that count as correct answers (short name, nickname, long form).
        attrs: Attribute and relation values (relations hold entity indices).
        doc: Corpus position of its first passage (the second, if any, is at :attr:`doc2`).
        doc2: Corpus position of its second passage, or -1.
        split: ``"train"``, ``"dev"`` or ``"test"``: the split of questions about it.
        style: A random integer that fixes its rendering choices (unit spelled out or not, ...).

    Example:
        >>> e = Entity(0, "person", "Ilka Maren", ("Maren",), style=0)
        >>> e.doc, e.doc2 = 4, 9
        >>> e.fact_doc("born_in"), e.fact_doc("educated_at")
        (4, 9)
    """

    __slots__ = ("idx", "etype", "name", "aliases", "attrs", "doc", "doc2", "split", "style")

    def __init__(self, idx: int, etype: str, name: str, aliases: tuple[str, ...], style: int) -> None:
        self.idx = idx
        self.etype = etype
        self.name = name
        self.aliases = aliases
        self.attrs: dict[str, Any] = {}
        self.doc = -1
        self.doc2 = -1
        self.split = "train"
        self.style = style

    def fact_doc(self, relation: str) -> int:
        """Corpus position of the passage stating ``relation``."""
        if self.doc2 >= 0 and relation in EXTRA_FACTS[self.etype]:
            return self.doc2
        return self.doc

    def __repr__(self) -> str:
        return f"Entity({self.idx}, {self.etype!r}, {self.name!r})"


@dataclass
class World:
    """A generated world: entities, distractor passages and the corpus layout.

    Attributes:
        seed: The seed it was generated from.
        n_passages: Corpus size.
        entities: All entities, indexed by :attr:`Entity.idx`.
        by_type: Entity indices per type.
        slots: For each corpus position: ``2 * entity_idx`` (first passage), ``2 * entity_idx + 1`` (second) or
            ``-1 - j`` (distractor ``j``).
        distractors: ``(title, kind, anchor_entity_idx, number)`` per distractor passage.
        seas: Names of seas rivers flow into.

    Example:
        >>> w = generate_world(100, seed=0)
        >>> sum(w.counts().values()) == len(w.entities)
        True
    """

    seed: int
    n_passages: int
    entities: list[Entity] = field(default_factory=list)
    by_type: dict[str, list[int]] = field(default_factory=dict)
    slots: list[int] = field(default_factory=list)
    distractors: list[tuple[str, str, int, int]] = field(default_factory=list)
    seas: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Entities per type."""
        return {t: len(self.by_type.get(t, ())) for t in ENTITY_TYPES}


def _type_counts(n_entities: int) -> dict[str, int]:
    counts = {t: max(MIN_PER_TYPE, int(n_entities * s)) for t, s in TYPE_SHARES.items()}
    counts[PERSON] += max(0, n_entities - sum(counts.values()))
    return counts


class _Builder:
    """Draws one world; a class only to share the random source and the name generator between steps."""

    def __init__(self, n_passages: int, seed: int) -> None:
        self.rng = random.Random(f"synthwiki-world:{seed}")
        self.names = NameGenerator(random.Random(f"synthwiki-names:{seed}"))
        self.world = World(seed=seed, n_passages=n_passages)
        n_distract = round(n_passages * DISTRACTOR_SHARE)
        rest = n_passages - n_distract
        n_entities = int(rest / (1 + EXTRA_PASSAGE_SHARE))
        self.counts = _type_counts(n_entities)
        n_entities = sum(self.counts.values())
        self.n_extra = min(n_entities, max(0, rest - n_entities))
        self.n_distract = n_passages - n_entities - self.n_extra
        if self.n_distract < 0:
            raise ValueError(f"`passages` must be >= {MIN_PASSAGES}, got {n_passages}")

    # --- names -------------------------------------------------------------------------------------------------
    def _add(self, etype: str, name: str, aliases: tuple[str, ...] = ()) -> Entity:
        w = self.world
        e = Entity(len(w.entities), etype, name, tuple(a for a in aliases if a != name), self.rng.getrandbits(16))
        w.entities.append(e)
        w.by_type.setdefault(etype, []).append(e.idx)
        return e

    def _person_name_pools(self, n_persons: int) -> tuple[list[str], list[str], list[str]]:
        pool = max(8, int(n_persons**0.5 * 2))
        female, male = [], []
        for i in range(pool):
            stem = self.names.root()
            stem = stem.rstrip("aeiouy") or stem
            endings = FEMALE_ENDINGS if i % 2 == 0 else MALE_ENDINGS
            first = stem + self.rng.choice(endings)
            if self.names.reserve(first):
                (female if i % 2 == 0 else male).append(first)
        surnames = [self.names.root() for _ in range(pool * 2)]
        return female, male, surnames

    def people(self) -> None:
        n = self.counts[PERSON]
        female, male, surnames = self._person_name_pools(n)
        seen: set[str] = set()
        rng = self.rng
        for _ in range(n):
            while True:
                gender = rng.random() < 0.5
                first = rng.choice(female if gender else male)
                last = rng.choice(surnames)
                full = f"{first} {last}"
                if full not in seen:
                    seen.add(full)
                    break
                surnames.append(self.names.root())  # pools too small for this many people: grow them
            aliases = [last]
            nick = None
            if rng.random() < NICKNAME_SHARE:
                nick = first[: rng.randint(3, 4)] + rng.choice(("i", "y", "o"))
                if nick.lower() != first.lower():
                    aliases.append(nick)
                else:
                    nick = None
            e = self._add(PERSON, full, tuple(aliases))
            e.attrs.update(female=gender, first=first, last=last, nickname=nick)
            e.attrs["birth_year"] = rng.randint(YEAR_MIN_BIRTH, YEAR_MAX_BIRTH)

    def places(self) -> None:
        rng, names = self.rng, self.names
        for _ in range(self.counts[COUNTRY]):
            name = names.root()
            aliases = ()
            if rng.random() < COUNTRY_FORM_SHARE:
                aliases = (rng.choice(COUNTRY_FORMS).format(n=name),)
            e = self._add(COUNTRY, name, aliases)
            e.attrs["population"] = rng.randint(3, 900) * 100  # thousands
            e.attrs["independence_year"] = rng.randint(1100, 1990)
            e.attrs["currency"] = rng.choice(CURRENCIES)
        for _ in range(self.counts[CITY]):
            root = names.root()
            name = root + rng.choice(CITY_SUFFIXES) if rng.random() < 0.3 else root
            if name != root and not names.reserve(name):
                name = root
            e = self._add(CITY, name)
            e.attrs["population"] = rng.randint(2_000, 2_500_000)
        self.world.seas = [
            rng.choice(SEA_FORMS).format(r=names.root()) for _ in range(max(3, self.counts[RIVER] // 20))
        ]
        for _ in range(self.counts[RIVER]):
            root = names.root()
            e = self._add(RIVER, f"{root} River", (root,))
            e.attrs["length_km"] = rng.randint(40, 4000)
            e.attrs["mouth"] = rng.choice(self.world.seas)

    def institutions(self) -> None:
        rng, names = self.rng, self.names
        for _ in range(self.counts[COMPANY]):
            root = names.root()
            industry, suffix = rng.choice(INDUSTRIES)
            e = self._add(COMPANY, f"{root} {suffix}", (root,))
            e.attrs["industry"] = industry
            e.attrs["employees"] = rng.randint(20, 400) * rng.choice((10, 100))
        for _ in range(self.counts[UNIVERSITY]):
            root = names.root()
            pattern = rng.choice(UNIVERSITY_PATTERNS)
            name = pattern.format(r=root)
            aliases = (f"{root[0]}IT",) if "Technology" in pattern else ()
            e = self._add(UNIVERSITY, name, aliases)
            e.attrs["students"] = rng.randint(8, 600) * 100
        titles: set[str] = set()
        for _ in range(self.counts[FILM]):
            for _try in range(8):
                kind = rng.random()
                adj, noun = rng.choice(FILM_ADJECTIVES), rng.choice(FILM_NOUNS)
                if kind < 0.45:
                    title = f"The {adj} {noun}"
                elif kind < 0.7:
                    title = f"{noun} of {names.root()}"
                else:
                    title = f"The {adj} {noun} of {names.root()}"
                if title.lower() not in titles:
                    break
            else:
                title = f"{adj} {names.root()}"  # fresh root: always unique
            titles.add(title.lower())
            e = self._add(FILM, title)
            e.attrs["genre"] = rng.choice(GENRES)
            e.attrs["runtime_min"] = rng.randint(70, 190)

    # --- relations -----------------------------------------------------------------------------------------------
    def relations(self) -> None:
        rng, w = self.rng, self.world
        ents = w.entities
        persons = sorted(w.by_type[PERSON], key=lambda i: ents[i].attrs["birth_year"])
        births = [ents[i].attrs["birth_year"] for i in persons]
        roles: dict[int, str] = {}
        last_event: dict[int, int] = {}  # person -> year of the last thing they founded or directed

        def person_born(lo: int, hi: int) -> int:
            a, b = bisect.bisect_left(births, lo), bisect.bisect_right(births, hi)
            return persons[rng.randrange(a, b)] if b > a else rng.choice(persons)

        def found(e: Entity, role: str, share: float, latest_birth: int, years: tuple[int, int] | None) -> None:
            """Give ``e`` a founder born by ``latest_birth`` (with probability ``share``) and a founding year."""
            if years is None or rng.random() < share:
                p = person_born(YEAR_MIN_BIRTH, latest_birth)
                e.attrs["founded_by"] = p
                e.attrs["founded_year"] = min(CURRENT_YEAR, ents[p].attrs["birth_year"] + rng.randint(*FOUNDING_AGE))
                roles.setdefault(p, role)
                last_event[p] = max(last_event.get(p, 0), e.attrs["founded_year"])
            else:
                e.attrs["founded_by"] = None
                e.attrs["founded_year"] = rng.randint(*years)

        cities, countries = w.by_type[CITY], w.by_type[COUNTRY]
        rivers, unis = w.by_type[RIVER], w.by_type[UNIVERSITY]
        for k, c in enumerate(cities):
            country = countries[k] if k < len(countries) else rng.choice(countries)
            ents[c].attrs["country"] = country
            if k < len(countries):
                ents[country].attrs["capital"] = c
            ents[c].attrs["river"] = rng.choice(rivers) if rng.random() < CITY_RIVER_SHARE else None
            found(ents[c], "city", CITY_FOUNDER_SHARE, CITY_FOUNDER_LATEST_BIRTH, CITY_FOUNDING_RANGE)
        for r in rivers:
            ents[r].attrs["source_country"] = rng.choice(countries)
        for co in w.by_type[COMPANY]:
            found(ents[co], "company", 1.0, COMPANY_FOUNDER_LATEST_BIRTH, None)
            ents[co].attrs["headquarters"] = rng.choice(cities)
        for u in unis:
            ents[u].attrs["located_in"] = rng.choice(cities)
            found(ents[u], "university", UNIVERSITY_FOUNDER_SHARE, UNIVERSITY_FOUNDER_LATEST_BIRTH, UNI_FOUNDING_RANGE)
        for f in w.by_type[FILM]:
            p = person_born(*DIRECTOR_BIRTH_RANGE)
            ents[f].attrs["directed_by"] = p
            ents[f].attrs["release_year"] = min(CURRENT_YEAR, ents[p].attrs["birth_year"] + rng.randint(25, 45))
            roles[p] = "director"
            last_event[p] = max(last_event.get(p, 0), ents[f].attrs["release_year"])

        def by_founding(idxs: list[int]) -> tuple[list[int], list[int]]:
            """``idxs`` sorted by founding year, and those years (to pick places that existed at a given date)."""
            order = sorted(idxs, key=lambda i: ents[i].attrs["founded_year"])
            return order, [ents[i].attrs["founded_year"] for i in order]

        city_order, city_years = by_founding(cities)
        uni_order, uni_years = by_founding(unis)
        for p in w.by_type[PERSON]:
            a = ents[p].attrs
            role = roles.get(p)
            a["occupation"] = rng.choice(ROLE_OCCUPATIONS[role]) if role else rng.choice(OCCUPATIONS)
            n = bisect.bisect_right(city_years, a["birth_year"])
            a["born_in"] = city_order[rng.randrange(n)] if n else rng.choice(cities)
            n = bisect.bisect_right(uni_years, a["birth_year"] + STUDY_AGE)
            a["educated_at"] = uni_order[rng.randrange(n)] if n else rng.choice(unis)
            death = max(a["birth_year"] + rng.randint(*LIFESPAN), last_event.get(p, 0) + rng.randint(1, 20))
            a["death_year"] = death if death < CURRENT_YEAR else None

    # --- corpus layout ---------------------------------------------------------------------------------------------
    def layout(self) -> None:
        rng, w = self.rng, self.world
        ents = w.entities
        extra = set(rng.sample(range(len(ents)), self.n_extra))
        slots = []
        for e in ents:
            slots.append(2 * e.idx)
            if e.idx in extra:
                slots.append(2 * e.idx + 1)
        for j in range(self.n_distract):
            slots.append(-1 - j)
            anchor = rng.choice(w.by_type[CITY])
            w.distractors.append((self.names.root(), rng.choice(("hill", "lake", "village", "festival", "manor")),
                                  anchor, rng.randint(40, 2400)))  # fmt: skip
        rng.shuffle(slots)
        for pos, s in enumerate(slots):
            if s >= 0:
                e = ents[s // 2]
                if s % 2:
                    e.doc2 = pos
                else:
                    e.doc = pos
        w.slots = slots


def generate_world(passages: int, seed: int = 0) -> World:
    """Draw a world whose corpus has exactly ``passages`` passages.

    Args:
        passages: Corpus size (>= :data:`MIN_PASSAGES`).
        seed: Random seed; the same seed gives the same world.

    Returns:
        The :class:`World` (entities, relations, corpus layout); :mod:`.passages` renders its text.

    Raises:
        ValueError: if ``passages`` is too small or not an int.

    Example:
        >>> w = generate_world(100, seed=1)
        >>> len(w.slots), sum(1 for s in w.slots if s < 0) == len(w.distractors)
        (100, True)
    """
    b = _Builder(check_int("passages", passages, minimum=MIN_PASSAGES), check_int("seed", seed))
    b.people()
    b.places()
    b.institutions()
    b.relations()
    b.layout()
    return b.world
