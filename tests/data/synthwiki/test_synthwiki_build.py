import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from igpo_env.data import load_corpus, load_qa
from igpo_env.data.synthwiki import build_world, default_world, load_synthwiki, to_dataset_dict
from igpo_env.metrics import score_answer

KINDS = {"synthwiki-1hop", "synthwiki-2hop", "synthwiki-3hop", "synthwiki-comparison"}
SPLITS = ("train", "dev", "test")


def _docs(world_dir):
    return {d.id: d for d in load_corpus(world_dir / "corpus.jsonl")}


def _qa(world_dir):
    return {s: load_qa(world_dir, split=s) for s in SPLITS}


def test_files_and_loaders(small_world):
    docs = _docs(small_world)
    assert len(docs) == 1000
    meta = json.loads((small_world / "world.json").read_text())
    assert meta["passages"] == 1000 and meta["seed"] == 0
    qa = _qa(small_world)
    assert sum(len(v) for v in qa.values()) == sum(meta["questions"].values()) == 600
    for split, exs in qa.items():
        assert {ex.data_source for ex in exs} == KINDS, split
        for ex in exs:
            assert ex.supporting_doc_ids and all(d in docs for d in ex.supporting_doc_ids)
            assert [h["doc_id"] for h in ex.metadata["hops"]] == list(ex.supporting_doc_ids)


def test_answerable_from_supporting_passages(small_world):
    docs = _docs(small_world)
    for exs in _qa(small_world).values():
        for ex in exs:
            hops = ex.metadata["hops"]
            for h in hops:
                doc = docs[h["doc_id"]]
                assert doc.title == h["entity"]
                assert h["answer"] in doc.text, (ex.question, h, doc.text)
            if ex.data_source == "synthwiki-comparison":
                assert len(hops) == 2
                assert ex.golden_answers[0] in {h["entity"] for h in hops}
                assert all(h["entity"] in ex.question for h in hops)
            else:
                assert hops[0]["entity"] in ex.question
                assert ex.golden_answers[0] == hops[-1]["answer"]
                assert ex.golden_answers[0] in docs[ex.supporting_doc_ids[-1]].text
                for a, b in zip(hops, hops[1:], strict=False):
                    assert a["answer"] == b["entity"]  # bridge entity is the previous hop's answer
                assert len(hops) == int(ex.data_source.split("-")[1][0])


def test_question_entities_are_unambiguous(small_world):
    docs = _docs(small_world)
    by_title = {}
    for d in docs.values():
        by_title.setdefault(d.title, set()).add(d.id)
    for exs in _qa(small_world).values():
        for ex in exs:
            for h in ex.metadata["hops"]:
                # every passage titled with the entity's name is that entity's own (one or two passages)
                same = by_title[h["entity"]]
                assert h["doc_id"] in same and len(same) <= 2


def test_splits_share_no_questions_or_subjects(small_world):
    qa = _qa(small_world)
    ids = [ex.id for exs in qa.values() for ex in exs]
    assert len(ids) == len(set(ids))
    texts = {s: {ex.question for ex in exs} for s, exs in qa.items()}
    assert (
        not texts["train"] & texts["dev"] and not texts["train"] & texts["test"] and not texts["dev"] & texts["test"]
    )
    subjects = {s: {n for ex in exs for n in ex.metadata["subject_entities"]} for s, exs in qa.items()}
    assert not subjects["train"] & subjects["dev"]
    assert not subjects["train"] & subjects["test"]
    assert not subjects["dev"] & subjects["test"]


def test_aliases_score_as_correct(small_world):
    qa = [ex for exs in _qa(small_world).values() for ex in exs]
    lengths = [
        ex
        for ex in qa
        if ex.metadata["hops"][-1]["relation"] == "length_km" and ex.data_source != "synthwiki-comparison"
    ]
    assert lengths
    ex = lengths[0]
    km = next(a for a in ex.golden_answers if a.endswith(" km"))
    spelled = km.replace(" km", " kilometres")
    assert spelled in ex.golden_answers
    assert score_answer(spelled, ex.golden_answers, metric="em") == 1.0
    people = [ex for ex in qa if ex.metadata["hops"][-1]["relation"] in ("founded_by", "directed_by")]
    surname = people[0].golden_answers[0].split()[-1]
    assert surname in people[0].golden_answers


def test_determinism_and_seed_changes_world(tmp_path):
    a = build_world(tmp_path / "a", passages=300, seed=5, verbose=False)
    b = build_world(tmp_path / "b", passages=300, seed=5, verbose=False)
    c = build_world(tmp_path / "c", passages=300, seed=6, verbose=False)
    for name in ("corpus.jsonl", "train.jsonl", "dev.jsonl", "test.jsonl", "world.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "corpus.jsonl").read_bytes() != (c / "corpus.jsonl").read_bytes()
    assert (a / "train.jsonl").read_bytes() != (c / "train.jsonl").read_bytes()


def test_build_world_validates_args(tmp_path):
    with pytest.raises(ValueError, match="`passages` must be an int"):
        build_world(tmp_path, passages="10")
    with pytest.raises(ValueError, match="`seed` must be an int"):
        build_world(tmp_path, passages=100, seed=1.5)
    with pytest.raises(ValueError, match="`questions` must be an int >= 0 or None, got -1"):
        build_world(tmp_path, passages=100, questions=-1)
    with pytest.raises(ValueError, match=">= 50"):
        build_world(tmp_path, passages=3)


def test_questions_argument(tmp_path):
    out = build_world(tmp_path, passages=200, questions=50, verbose=False)
    assert sum(len(load_qa(out, split=s)) for s in SPLITS) == 50


def test_to_dataset_dict(small_world):
    dd = to_dataset_dict(small_world)
    assert set(dd) == set(SPLITS)
    row = dd["train"][0]
    assert row["data_source"] in KINDS and row["supporting_doc_ids"]
    assert json.loads(row["metadata"])["hops"]
    assert len(load_qa(dd, split="dev")) == len(dd["dev"])
    with pytest.raises(FileNotFoundError, match="no train.jsonl"):
        to_dataset_dict(small_world / "missing")


def test_default_world_cached_and_concurrent(tmp_path, monkeypatch):
    monkeypatch.setenv("IGPO_ENV_CACHE", str(tmp_path))
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda s: default_world(s), [0, 0]))
    assert paths[0] == paths[1]
    assert (paths[0] / "world.json").is_file()
    start = time.perf_counter()
    assert default_world(0) == paths[0]
    assert time.perf_counter() - start < 0.5
    assert [p.name for p in (tmp_path / "worlds").iterdir()] == [paths[0].name]  # no temp dirs left behind
    meta = json.loads((paths[0] / "world.json").read_text())
    assert meta["passages"] == 5000 and 2000 <= sum(meta["questions"].values()) <= 5000
    assert load_synthwiki("dev")[0].id.startswith("synthwiki-dev-")
    with pytest.raises(ValueError, match="`split` must be one of"):
        load_synthwiki("valid")


def test_cli_world_build(tmp_path, capsys):
    from igpo_env.cli import main

    assert main(["world", "build", "--passages", "120", "--seed", "2", "--out", str(tmp_path / "w"), "--quiet"]) == 0
    assert "120 passages" in capsys.readouterr().out
    assert len(list(load_corpus(tmp_path / "w" / "corpus.jsonl"))) == 120
    assert main(["world", "build", "--passages", "5", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "passages" in capsys.readouterr().err


def test_bm25_finds_one_hop_passages(small_world):
    bm25s = pytest.importorskip("bm25s")
    docs = list(load_corpus(small_world / "corpus.jsonl"))
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize([d.contents for d in docs], stopwords="en", show_progress=False), show_progress=False
    )
    one_hop = [ex for ex in load_qa(small_world, split="test") if ex.data_source == "synthwiki-1hop"]
    res, _ = retriever.retrieve(
        bm25s.tokenize([ex.question for ex in one_hop], stopwords="en", show_progress=False), k=3, show_progress=False
    )
    hits = sum(ex.supporting_doc_ids[0] in {docs[j].id for j in row} for ex, row in zip(one_hop, res, strict=True))
    assert hits / len(one_hop) >= 0.9


def test_same_files_across_processes(tmp_path):
    """Byte-identical output in a fresh interpreter with another hash seed (no set/dict-order dependence)."""
    import subprocess
    import sys

    here = build_world(tmp_path / "here", passages=300, seed=9, verbose=False)
    code = "import sys; from igpo_env.data.synthwiki import build_world; build_world(sys.argv[1], 300, 9, False)"
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], check=True, env=env)
    for name in ("corpus.jsonl", "train.jsonl", "test.jsonl", "world.json"):
        assert (here / name).read_bytes() == (tmp_path / "there" / name).read_bytes(), name
