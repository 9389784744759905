import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from igpo_env.data import (
    from_dataset,
    load_corpus,
    load_qa,
    save_corpus,
    save_flashrag_qa,
    save_verl_parquet,
    to_dataset,
)
from igpo_env.data.formats import parse_ground_truth, question_from_prompt
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.error import DataFormatError
from igpo_env.types import Doc, QAExample


def test_flashrag_qa_round_trip(tmp_path):
    examples = toy_qa() + [QAExample("u1", "Qui était Zoë?", ["Zoë", "Zoé"], "x", (), {"k": [1, 2]})]
    path = tmp_path / "train.jsonl"
    assert save_flashrag_qa(examples, path) == len(examples)
    back = load_qa(path)
    assert back == examples
    assert back[-1].metadata["k"] == [1, 2]
    assert back[1].supporting_doc_ids == ("t1", "t2")
    assert load_qa(tmp_path, split="train") == examples


def test_corpus_round_trip(tmp_path):
    docs = toy_corpus() + [Doc("u", "Ünïcode", "line one\nline two")]
    path = tmp_path / "corpus.jsonl"
    save_corpus(docs, path)
    assert list(load_corpus(path)) == docs
    rec = json.loads(path.read_text().splitlines()[0])
    assert rec == {"id": "t0", "contents": docs[0].contents}


def test_verl_parquet_round_trip_both_ground_truth_styles(tmp_path):
    ex = toy_qa()
    for join in (False, True):
        path = tmp_path / f"v{join}.parquet"
        save_verl_parquet(ex, path, join_aliases=join)
        back = load_qa(path)
        assert [e.question for e in back] == [e.question for e in ex]
        assert [e.golden_answers for e in back] == [e.golden_answers for e in ex]
        assert [e.supporting_doc_ids for e in back] == [e.supporting_doc_ids for e in ex]
        assert back[0].data_source == "synthwiki-1hop"


def test_verl_parquet_question_from_prompt_only(tmp_path):
    rows = [
        {
            "data_source": "nq",
            "prompt": [
                {"role": "system", "content": "You are helpful."},
                {"role": "user", "content": "Answer the question. Question: who wrote hamlet?\n"},
            ],
            "reward_model": {"style": "rule", "ground_truth": "Shakespeare<|answer_split|>William Shakespeare"},
            "extra_info": {"split": "test", "index": 7},
        }
    ]
    path = tmp_path / "nq.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    (ex,) = load_qa(path)
    assert ex.question == "who wrote hamlet?"
    assert ex.golden_answers == ("Shakespeare", "William Shakespeare")
    assert ex.data_source == "nq"


def test_parse_ground_truth_variants():
    assert parse_ground_truth(["a", "b<|answer_split|>c"]) == ["a", "b", "c"]
    assert parse_ground_truth(1984) == ["1984"]
    with pytest.raises(DataFormatError, match="target"):
        parse_ground_truth({"answers": ["a"]})
    with pytest.raises(DataFormatError, match="no non-empty"):
        parse_ground_truth("")


def test_question_from_prompt_uses_last_question_marker():
    msgs = [{"role": "user", "content": "A Question: is asked below.\nQuestion: What is X?"}]
    assert question_from_prompt(msgs) == "What is X?"
    with pytest.raises(DataFormatError, match="user"):
        question_from_prompt([{"role": "system", "content": "x"}])


def test_bad_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1, "question": "q", "golden_answers": ["a"]}\n{"id": 2, "question": "q2", "gold')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:2: not valid JSON"):
        load_qa(path)
    path.write_text('{"id": 1, "golden_answers": ["a"]}\n')
    with pytest.raises(DataFormatError, match=r"bad\.jsonl:1: missing a question column"):
        load_qa(path)
    path.write_text('{"id": 1, "question": 5, "golden_answers": ["a"]}\n')
    with pytest.raises(DataFormatError, match="question must be a string"):
        load_qa(path)
    path.write_text('{"id": 1, "question": "q"}\n')
    with pytest.raises(DataFormatError, match="answers column"):
        load_qa(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(DataFormatError, match="expected a JSON object"):
        load_qa(path)


def test_bad_corpus(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "contents": "T\\nx"}\n{"id": "b"}\n')
    with pytest.raises(DataFormatError, match=r"c\.jsonl:2: missing 'contents'"):
        list(load_corpus(path))
    with pytest.raises(FileNotFoundError, match="no such file"):
        list(load_corpus(tmp_path / "missing.jsonl"))


def test_bad_parquet(tmp_path):
    path = tmp_path / "x.parquet"
    pq.write_table(pa.Table.from_pylist([{"data_source": "a", "prompt": "x"}]), path)
    with pytest.raises(DataFormatError, match="missing column"):
        from igpo_env.data import load_verl_parquet

        load_verl_parquet(path)
    path.write_bytes(b"not parquet")
    with pytest.raises(DataFormatError, match="parquet"):
        load_qa(path)


def test_load_qa_errors(tmp_path):
    with pytest.raises(ValueError, match="split"):
        load_qa(tmp_path)
    with pytest.raises(FileNotFoundError, match="dev.jsonl"):
        load_qa(tmp_path, split="dev")
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(DataFormatError, match="unknown QA file type"):
        load_qa(tmp_path / "x.csv")


def test_datasets_round_trip_and_hf_columns():
    import datasets

    ds = to_dataset(toy_qa())
    assert from_dataset(ds) == toy_qa()
    dd = datasets.DatasetDict({"dev": ds})
    assert load_qa(dd, split="dev") == toy_qa()
    with pytest.raises(ValueError, match="split"):
        load_qa(dd)
    trivia = datasets.Dataset.from_list(
        [{"question": "q", "answer": {"value": "Oslo", "aliases": ["Oslo", "Christiania"]}}]
    )
    assert load_qa(trivia)[0].golden_answers == ("Oslo", "Christiania")
    squad = [{"id": "s", "question": "q", "answers": {"text": ["a", "b"], "answer_start": [0, 1]}}]
    assert load_qa(squad)[0].golden_answers == ("a", "b")
    verl_rows = [{"prompt": [{"role": "user", "content": "Question: Who?"}], "reward_model": {"ground_truth": "X"}}]
    assert load_qa(verl_rows)[0].question == "Who?"
