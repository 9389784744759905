import itertools
import random

import pytest

from igpo_env.data.synthwiki.names import NameGenerator
from igpo_env.data.synthwiki.passages import PassageRenderer, value_forms
from igpo_env.data.synthwiki.questions import QuestionGenerator, chain_signatures
from igpo_env.data.synthwiki.splits import assign_splits
from igpo_env.data.synthwiki.world import ENTITY_RELATIONS, ENTITY_TYPES, MIN_PASSAGES, generate_world


@pytest.fixture(scope="module")
def world():
    w = generate_world(2000, seed=0)
    assign_splits(w)
    return w


def test_generate_world_validates_args():
    with pytest.raises(ValueError, match="`passages` must be an int >= 50, got 10"):
        generate_world(10)
    with pytest.raises(ValueError, match="`passages`"):
        generate_world(1000.0)
    with pytest.raises(ValueError, match="`seed` must be an int"):
        generate_world(100, seed="a")
    assert len(generate_world(MIN_PASSAGES).slots) == MIN_PASSAGES


def test_types_and_typed_relations(world):
    assert len(ENTITY_TYPES) >= 6
    assert all(world.counts()[t] >= 2 for t in ENTITY_TYPES)
    for (src, rel), dst in ENTITY_RELATIONS.items():
        for i in world.by_type[src]:
            v = world.entities[i].attrs[rel]
            if v is not None:
                assert world.entities[v].etype == dst, (src, rel)
    for c in world.by_type["country"]:
        assert world.entities[world.entities[c].attrs["capital"]].attrs["country"] == c


def test_corpus_layout_covers_every_position_once(world):
    assert sorted(world.slots) == sorted(set(world.slots))
    docs = [e.doc for e in world.entities] + [e.doc2 for e in world.entities if e.doc2 >= 0]
    assert len(docs) + len(world.distractors) == world.n_passages
    assert sorted(docs) == sorted(set(docs))


def test_names_unique_pronounceable_with_near_duplicates(world):
    names = [e.name for e in world.entities]
    assert len(set(names)) == len(names)
    roots = [e.name for e in world.entities if e.etype in ("city", "country")]
    assert all(n.replace(" ", "").isalpha() for n in roots)
    # deliberate near-duplicates: same length, one letter apart
    by_len = {}
    for n in roots + [t for t, *_ in world.distractors]:
        by_len.setdefault(len(n), []).append(n)
    near = sum(
        1
        for group in by_len.values()
        for a, b in itertools.combinations(group[:300], 2)
        if sum(x != y for x, y in zip(a, b, strict=True)) == 1
    )
    assert near >= 3


def test_name_generator_unique_and_validates():
    gen = NameGenerator(random.Random(0))
    names = [gen.root() for _ in range(3000)]
    assert len({n.lower() for n in names}) == len(names)
    with pytest.raises(ValueError, match="near_duplicate_rate"):
        NameGenerator(random.Random(0), near_duplicate_rate=1.5)


def test_aliases(world):
    people = [world.entities[i] for i in world.by_type["person"]]
    assert all(p.aliases[0] == p.name.split()[-1] for p in people)
    assert any(len(p.aliases) > 1 for p in people)  # nicknames
    river = world.entities[world.by_type["river"][0]]
    forms = value_forms(world, river, "length_km")
    assert {f.split()[-1] for f in forms} >= {"km", "kilometres"}
    assert river.aliases == (river.name.removesuffix(" River"),)


def test_passages_are_two_to_six_sentences(world):
    r = PassageRenderer(world)
    for pos in range(300):
        title, text = r.render(pos)
        assert title and text.startswith(title) or title in text
        n = sum(text.count(p) for p in (". ", "? ")) + 1
        assert 2 <= n <= 7, text  # a film intro may be two sentences


def test_chain_signatures():
    assert all(len(rels) == 1 for _, rels in chain_signatures(1))
    sig3 = chain_signatures(3)
    assert ("film", ("directed_by", "born_in", "country")) in sig3
    assert not any(("capital", "country") == rels[i : i + 2] for _, rels in sig3 for i in range(2))
    with pytest.raises(ValueError, match="`hops` must be an int >= 1"):
        chain_signatures(0)


def test_question_generator_rejects_unknown_kind(world):
    with pytest.raises(ValueError, match="`kind` must be one of"):
        QuestionGenerator(world, "train").generate("4hop")


def test_question_generator_validates_split(world):
    with pytest.raises(ValueError, match="`split` must be one of"):
        QuestionGenerator(world, "validation")


def test_every_split_gets_every_kind(world):
    by_name = {e.name: e for e in world.entities}
    for split in ("train", "dev", "test"):
        gen = QuestionGenerator(world, split, seed=1)
        for kind in ("1hop", "2hop", "3hop", "comparison"):
            ex = gen.generate(kind)
            assert ex is not None and ex.data_source == f"synthwiki-{kind}"
            assert all(by_name[n].split == split for n in ex.metadata["subject_entities"])


def test_dates_are_consistent(world):
    ents = world.entities
    for p in world.by_type["person"]:
        a = ents[p].attrs
        assert ents[a["born_in"]].attrs["founded_year"] <= a["birth_year"]
        assert a["death_year"] is None or a["death_year"] > a["birth_year"]
    for t in ("city", "company", "university"):
        for i in world.by_type[t]:
            a = ents[i].attrs
            if a["founded_by"] is not None:
                founder = ents[a["founded_by"]].attrs
                assert founder["birth_year"] < a["founded_year"]
                assert founder["death_year"] is None or founder["death_year"] > a["founded_year"]
    for f in world.by_type["film"]:
        director = ents[ents[f].attrs["directed_by"]].attrs
        assert director["birth_year"] < ents[f].attrs["release_year"]
