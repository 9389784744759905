"""Render SynthWiki passages: Wikipedia-like paragraphs (title + 2-6 sentences) from varied sentence templates.

Each fact has several phrasings, so the words of a question are not simply copied from its passage; the entity's
full name always opens the passage text, so searching for the name finds it. :func:`value_forms` gives the answer
strings of a fact; its first form is the one the passage prints (verbatim), the rest are aliases.

Example:
    >>> from igpo_env.data.synthwiki.world import generate_world
    >>> w = generate_world(100, seed=0)
    >>> r = PassageRenderer(w)
    >>> title, text = r.render(0)
    >>> isinstance(title, str) and 2 <= text.count(". ") + 1 <= 8
    True
"""

from __future__ import annotations

import random

from igpo_env.data.synthwiki.world import EXTRA_FACTS, MAIN_FACTS, Entity, World

__all__ = ["PassageRenderer", "value_forms", "short_name", "subject_name"]

CONNECTED_TYPES = ("river", "company")
"""Types whose short name is the root of the full name ("Velmora River" -> "Velmora")."""

FILLERS = {
    "person": (
        "{s} is remembered for {pos} {adj} style.",
        "Much of {pos} later life was spent travelling.",
        "{s} corresponded with many scholars of the time.",
        "{Pron} kept detailed diaries throughout {pos} life.",
    ),
    "city": (
        "{s} is known for its {thing}.",
        "The old town of {s} has many narrow streets.",
        "A weekly market is held in the main square of {s}.",
    ),
    "country": ("{s} is divided into several provinces.", "The landscape of {s} is mostly {land}."),
    "river": ("The valley of the {s} is known for its {thing}.", "Several bridges cross the {s}."),
    "company": ("{s} has offices in several countries.", "The company went through several reorganisations."),
    "university": ("The university is known for its {thing}.", "Its library holds many rare manuscripts."),
    "film": ("The film received mixed reviews.", "The score was widely praised.", "It was shot in {season}."),
}
ADJECTIVES = ("careful", "restless", "bold", "quiet", "precise", "ornate", "spare", "playful")
THINGS = ("vineyards", "stone bridges", "textile mills", "spring fair", "old harbour", "clock tower", "gardens")
LANDS = ("hilly", "flat", "forested", "mountainous", "marshy")
SEASONS = ("winter", "spring", "summer", "autumn")
DISTRACTOR_TEMPLATES = {
    "hill": "{t} is a hill near {c}. It rises to {n} metres above the plain.",
    "lake": "{t} is a lake close to {c}. It covers {n} hectares and is popular with anglers.",
    "village": "{t} is a small village in the district of {c}. About {n} people live in {t}.",
    "festival": "{t} is a music festival held every summer near {c}. It draws about {n} visitors.",
    "manor": "{t} is a manor house outside {c}. The estate covers {n} acres of parkland.",
}
FACT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "educated_at": ("{s} studied at {f}.", "{pron} was educated at {f}.", "{s} attended {f}."),
    "death_year": ("{pron} died in {f}.", "{s} died in {f}."),
    "country": (),  # stated by the intro
    "founded_year": ("{n} was founded in {f}.", "The history of {n} begins in {f}, when it was founded."),
    "founded_by+year": (
        "{n} was founded by {f} in {fy}.",
        "{f} founded {n} in {fy}.",
        "It was established in {fy} by {f}.",
    ),
    "founded_by": ("{n} was founded by {f}.", "Its founder was {f}."),
    "capital": ("Its capital is {f}.", "The capital of {n} is {f}.", "{f} is the capital of {n}."),
    "country_population": ("{n} has about {f} inhabitants.", "The population of {n} is about {f}."),
    "population": ("{n} has a population of {f}.", "{f} people live in {n}."),
    "independence_year": ("{n} became independent in {f}.", "{n} gained independence in {f}."),
    "currency": ("The currency of {n} is the {f}.", "{n} uses the {f} as its currency."),
    "length_km": ("It is {f} long.", "The {s} has a length of {f}.", "The river is {f} long."),
    "source_country": ("The {s} rises in {f}.", "It has its source in {f}."),
    "mouth": ("The {s} flows into the {f}.", "It empties into the {f}."),
    "headquarters": ("{s} is headquartered in {f}.", "Its headquarters are in {f}."),
    "employees": ("{s} employs {f} people.", "The company has {f} employees."),
    "students": ("{n} has {f} students.", "About {f} students are enrolled at {n}."),
    "runtime_min": ("The film runs for {f}.", "It has a running time of {f}."),
    "river": ("{n} lies on the {f}.", "The {f} flows through {n}."),
}
"""Phrasings per fact: ``{n}`` full name, ``{s}`` short name, ``{pron}`` pronoun, ``{f}`` the value, ``{fy}`` year."""
FILLER_SHARE = 0.5
MAX_SENTENCES = 6


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _int(n: int) -> str:
    return f"{n:,}"


def short_name(e: Entity) -> str:
    """Return the name used after the first mention: surname for people, root for rivers and companies.

    Example:
        >>> from igpo_env.data.synthwiki.world import Entity
        >>> short_name(Entity(0, "person", "Ilka Maren", ("Maren",), 0))
        'Maren'
    """
    if e.etype == "person" or e.etype in CONNECTED_TYPES:
        return e.aliases[0] if e.aliases else e.name
    return e.name


def subject_name(e: Entity) -> str:
    """How a question names the entity (rivers take an article: "the Velmora River").

    Example:
        >>> from igpo_env.data.synthwiki.world import Entity
        >>> subject_name(Entity(0, "river", "Velmora River", ("Velmora",), 0))
        'the Velmora River'
    """
    return f"the {e.name}" if e.etype == "river" else e.name


def _count_forms(n: int, unit: str | None = None) -> tuple[str, ...]:
    forms = [_int(n), str(n)]
    if unit:
        forms += [f"{_int(n)} {unit}", f"{n} {unit}"]
    return tuple(dict.fromkeys(forms))


def value_forms(world: World, e: Entity, relation: str) -> tuple[str, ...]:
    """Answer strings for ``relation`` of ``e``: the first is printed verbatim in the passage, the rest are aliases.

    Example:
        >>> from igpo_env.data.synthwiki.world import generate_world
        >>> w = generate_world(100, seed=0)
        >>> river = w.entities[w.by_type["river"][0]]
        >>> forms = value_forms(w, river, "length_km")
        >>> any(f.endswith(" km") for f in forms) and any(f.endswith(" kilometres") for f in forms)
        True
    """
    v = e.attrs[relation]
    if relation in ("born_in", "educated_at", "country", "founded_by", "capital", "source_country", "headquarters",
                    "located_in", "directed_by", "river"):  # fmt: skip
        other = world.entities[v]
        return (other.name, *other.aliases)
    if relation == "length_km":
        km, kms = f"{_int(v)} km", f"{_int(v)} kilometres"
        head = (km, kms) if e.style % 2 == 0 else (kms, km)
        return tuple(dict.fromkeys((*head, f"{v} km", f"{v} kilometres", f"{_int(v)} kilometers")))
    if relation == "runtime_min":
        return (f"{v} minutes", f"{v} min")
    if relation == "population" and e.etype == "country":
        people = v * 1000
        if v >= 1000:
            return (f"{v / 1000:.1f} million", _int(people), str(people))
        return (_int(people), str(people))
    if relation == "population":
        return _count_forms(v)
    if relation == "employees":
        return _count_forms(v, "employees")
    if relation == "students":
        return _count_forms(v, "students")
    return (str(v),)


class PassageRenderer:
    """Turns corpus positions of a :class:`World` into ``(title, text)`` passages, in corpus order.

    Rendering choices come from one seeded random source, so render positions in increasing order (as
    :func:`~igpo_env.data.synthwiki.build.build_world` does) to get the same text every time.

    Args:
        world: The world to render.

    Example:
        >>> from igpo_env.data.synthwiki.world import generate_world
        >>> w = generate_world(100, seed=0)
        >>> e = w.entities[w.by_type["country"][0]]
        >>> title, text = PassageRenderer(w).render(e.doc)
        >>> title == e.name and text.startswith(e.name)
        True
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.rng = random.Random(f"synthwiki-text:{world.seed}")

    def render(self, position: int) -> tuple[str, str]:
        """Title and text of the passage at corpus ``position``."""
        slot = self.world.slots[position]
        if slot < 0:
            return self._distractor(-1 - slot)
        e = self.world.entities[slot // 2]
        second = slot % 2 == 1
        if second:
            facts = EXTRA_FACTS[e.etype]
        elif e.doc2 >= 0:
            facts = MAIN_FACTS[e.etype]
        else:
            facts = MAIN_FACTS[e.etype] + EXTRA_FACTS[e.etype]
        return e.name, " ".join(self._sentences(e, facts, second))

    def _distractor(self, j: int) -> tuple[str, str]:
        title, kind, anchor, n = self.world.distractors[j]
        city = self.world.entities[anchor].name
        return title, DISTRACTOR_TEMPLATES[kind].format(t=title, c=city, n=_int(n))

    def _sentences(self, e: Entity, facts: tuple[str, ...], second: bool) -> list[str]:
        rng, w = self.rng, self.world
        ents = w.entities
        a = e.attrs
        s = short_name(e)
        female = a.get("female", False)
        ctx = {
            "n": e.name, "s": s, "Pron": "She" if female else "He", "pos": "her" if female else "his",
            "adj": rng.choice(ADJECTIVES), "thing": rng.choice(THINGS), "land": rng.choice(LANDS),
            "season": rng.choice(SEASONS),
        }  # fmt: skip
        if e.etype != "person":
            ctx["Pron"] = "It"
        out: list[str] = []
        if second:
            out.append(self._second_intro(e, ctx))
        else:
            out.append(self._intro(e, ctx))
        for fact in facts:
            if fact in ("occupation", "industry", "genre"):
                continue  # stated by the intro
            sentence = self._fact(e, fact, ctx)
            if sentence:
                out.append(sentence)
        if e.etype == "city" and not second and ents[a["country"]].attrs.get("capital") == e.idx:
            out.append(f"It is the capital of {ents[a['country']].name}.")
        if len(out) < MAX_SENTENCES and (len(out) < 2 or rng.random() < FILLER_SHARE):
            out.append(rng.choice(FILLERS[e.etype]).format(**ctx))
        return out

    def _intro(self, e: Entity, ctx: dict[str, str]) -> str:
        rng, a, w = self.rng, e.attrs, self.world
        t = e.etype
        n = e.name
        if t == "person":
            verb = "was" if a["death_year"] is not None else "is"
            nick = f", known as {a['nickname']}," if a["nickname"] else ""
            return rng.choice(
                (f"{n}{nick} {verb} {_a(a['occupation'])}.", f"{n}{nick} {verb} a noted {a['occupation']}.")
            )
        if t == "city":
            country = w.entities[a["country"]].name
            return rng.choice((f"{n} is a city in {country}.", f"{n} is a city located in {country}."))
        if t == "country":
            if e.aliases:
                return f"{n}, officially the {e.aliases[0]}, is a country."
            return rng.choice((f"{n} is a country.", f"{n} is a sovereign country."))
        if t == "river":
            return rng.choice((f"The {n} is a river.", f"The {n} is a long river."))
        if t == "company":
            return rng.choice(
                (f"{n} is {_a(a['industry'])} company.", f"{n} is a company in the {a['industry']} industry.")
            )
        if t == "university":
            city = w.entities[a["located_in"]].name
            return rng.choice((f"{n} is a university in {city}.", f"{n} is a university located in {city}."))
        director = w.entities[a["directed_by"]].name
        year = a["release_year"]
        return rng.choice((
            f"{n} is a {year} {a['genre']} directed by {director}.",
            f"{n} is a {a['genre']} released in {year}. It was directed by {director}.",
        ))  # fmt: skip

    def _second_intro(self, e: Entity, ctx: dict[str, str]) -> str:
        if e.etype == "person":
            return self.rng.choice(
                (f"{e.name} had a long career.", f"This article covers the later life of {e.name}.")
            )
        return self.rng.choice((f"{e.name} has a long history.", f"This section covers {e.name} in more detail."))

    def _fact(self, e: Entity, fact: str, ctx: dict[str, str]) -> str | None:
        rng, a, w = self.rng, e.attrs, self.world
        n, s, pron = e.name, ctx["s"], ctx["Pron"]
        v = a[fact]
        if fact in ("release_year", "directed_by", "located_in"):
            return None  # stated by the intro
        if v is None:
            return None
        if fact == "born_in":
            city, year = w.entities[v].name, a["birth_year"]
            return rng.choice((
                f"{pron} was born in {city} in {year}.",
                f"{s} was born in {year} in the city of {city}.",
                f"{s}'s birthplace is {city}, where {pron.lower()} was born in {year}.",
            ))  # fmt: skip
        if fact == "birth_year":
            return None  # stated with born_in
        together = e.fact_doc("founded_by") == e.fact_doc("founded_year") and a.get("founded_by") is not None
        if fact == "founded_year" and together:
            return None  # stated with founded_by
        key = fact
        if fact == "founded_by":
            key = "founded_by+year" if together else "founded_by"
        elif fact == "population" and e.etype == "country":
            key = "country_population"
        templates = FACT_TEMPLATES[key]
        if not templates:
            return None
        fy = a.get("founded_year")
        form = value_forms(w, e, fact)[0]
        if form.startswith("University of "):
            form = f"the {form}"
        return rng.choice(templates).format(n=n, s=s, pron=pron, f=form, fy=fy)
