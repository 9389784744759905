import json
import re
from dataclasses import replace

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from agents.bootstrap import (
    CONFIG_VERSION,
    REPORT_FILE,
    SIZES,
    TAG_TOKENS,
    bootstrap,
    default_model_dir,
    encode_transcript,
    make_model,
    resolve_device,
    train_tokenizer,
)
from agents.bootstrap.build import sft_train
from agents.bootstrap.trajectories import AnswerFormatMix, Trajectory, collect_trajectories, mistake_flags
from agents.llm_agent import LLMAgent
from agents.scripted import RELATION_PHRASES
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.prompts import DEFAULT_PROMPT_TEMPLATE

REPORT_KEYS = (
    "well_formed_rate",
    "dev_f1",
    "question_only_f1",
    "ig_sanity_share",
    "median_p_oracle",
    "median_p_question_only",
    "minutes",
)


@pytest.fixture(scope="module")
def toy_tokenizer():
    return train_tokenizer([d.contents for d in toy_corpus()] * 5, vocab_size=400)


def _toy_transcript(q):
    doc = next(d for d in toy_corpus() if d.id == q.supporting_doc_ids[-1])
    return [
        {"role": "user", "content": DEFAULT_PROMPT_TEMPLATE.format(question=q.question)},
        {"role": "assistant", "content": f"<think>Look it up.</think>\n<search> {doc.title} </search>"},
        {"role": "user", "content": f"\n\n<information>Doc 1(Title: {doc.title}) {doc.text}</information>\n\n"},
        {"role": "assistant", "content": f"<answer> {q.golden_answers[0]} </answer>"},
    ]


def test_tokenizer_special_and_tag_tokens(toy_tokenizer):
    tok = toy_tokenizer
    for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", *TAG_TOKENS):
        assert len(tok.encode(t, add_special_tokens=False)) == 1, t
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    text = "<search> Karsel 1204 </search>"
    assert tok.decode(tok.encode(text, add_special_tokens=False), skip_special_tokens=True) == text


def test_tokenizer_bad_vocab_size():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["a"], vocab_size=10)


def test_saved_dir_loads_with_auto_classes(toy_tokenizer, tmp_path):
    model = make_model(SIZES["tiny"], toy_tokenizer)
    model.save_pretrained(tmp_path)
    toy_tokenizer.save_pretrained(tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    text = tok.apply_chat_template(_toy_transcript(toy_qa()[1]), tokenize=False)
    assert tok.encode(text, add_special_tokens=False) == toy_tokenizer.encode(text, add_special_tokens=False)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    assert loaded.generation_config.pad_token_id == tok.pad_token_id


def test_model_sizes(toy_tokenizer):
    assert make_model(SIZES["tiny"], toy_tokenizer).num_parameters() < 1_000_000
    assert sorted(SIZES) == ["tiny"]  # the from-scratch LM is a test fixture only; the policy is warm-started


def test_encode_transcript_masks_only_flagged_messages(toy_tokenizer):
    msgs = _toy_transcript(toy_qa()[0])
    enc = encode_transcript(toy_tokenizer, msgs, mistake_flags(msgs, [True, False]))
    ids, labels = enc["input_ids"], enc["labels"]
    assert ids == toy_tokenizer.encode(
        toy_tokenizer.apply_chat_template(msgs, tokenize=False), add_special_tokens=False
    )
    first_len = len(encode_transcript(toy_tokenizer, msgs[:1])["input_ids"])
    second_len = len(encode_transcript(toy_tokenizer, msgs[:2])["input_ids"])
    assert labels[:first_len] == ids[:first_len]  # the question is trained on
    assert set(labels[first_len:second_len]) == {-100}  # the mistaken search is not
    assert labels[second_len:] == ids[second_len:]  # the passage and the answer are
    with pytest.raises(ValueError, match="masked"):
        encode_transcript(toy_tokenizer, msgs, [False])
    assert len(encode_transcript(toy_tokenizer, msgs, max_length=7)["input_ids"]) == 7


def test_sft_is_deterministic_under_seed(toy_tokenizer, tmp_path):
    spec = replace(SIZES["tiny"], train_tokens=2 * 2 * 256, batch_size=2, max_length=256)
    rows = [encode_transcript(toy_tokenizer, _toy_transcript(q), max_length=256) for q in toy_qa()]
    weights = []
    for run in range(2):
        model = make_model(spec, toy_tokenizer, seed=1)
        stats = sft_train(model, toy_tokenizer, rows, spec, seed=1, work_dir=tmp_path / str(run), verbose=False)
        assert stats["steps"] == 2
        weights.append({k: v.clone() for k, v in model.state_dict().items()})
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])
    assert any((weights[0][k] != make_model(spec, toy_tokenizer, seed=1).state_dict()[k]).any() for k in weights[0])


def test_answer_format_mix_keeps_mistake_flag():
    class Agent:
        last_mistake = True

        def reset(self, seed=None):
            pass

        def act(self, obs, info):
            return "<answer> x </answer>"

    mix = AnswerFormatMix(Agent(), share=0.0)
    assert mix.act("", {}) == "<answer> x </answer>" and mix.last_mistake
    with pytest.raises(ValueError, match="share"):
        AnswerFormatMix(Agent(), share=2.0)


def test_collect_trajectories_flags_noisy_mistakes():
    from igpo_env.data.synthwiki import default_world

    trajs = collect_trajectories(default_world(0), 30, noisy_fraction=1.0, seed=0, verbose=False)
    assert len(trajs) == 30 and all(isinstance(t, Trajectory) and t.agent == "noisy" for t in trajs)
    for t in trajs:
        assert len(t.mistakes) == sum(m["role"] == "assistant" for m in t.messages)
    assert any(any(t.mistakes) for t in trajs)
    assert any(t.f1 == 1.0 for t in trajs)
    assert collect_trajectories(default_world(0), 5, 0.5, seed=0, verbose=False)[3].messages == (
        collect_trajectories(default_world(0), 5, 0.5, seed=0, verbose=False)[3].messages
    )


def test_bootstrap_argument_checks():
    with pytest.raises(ValueError, match="size"):
        bootstrap(size="huge")
    with pytest.raises(ValueError, match="train_tokens"):
        bootstrap(size="tiny", train_tokens=0)
    with pytest.raises(ValueError, match="'tpu'"):
        bootstrap(size="tiny", device="tpu")
    assert default_model_dir("tiny", 2).name == f"synthwiki-s2-tiny-{CONFIG_VERSION}"


def test_resolve_device_names_the_bad_value_and_the_fix():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="must be one of"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU; use 'cpu' or 'auto'"):
            resolve_device("cuda")


def _needs_cuda():
    import torch

    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@_needs_cuda()
def test_sft_train_and_eval_on_cuda(toy_tokenizer, tmp_path):
    from agents.bootstrap.eval import _score_gold_naive, repeat_copy_gain

    spec = replace(SIZES["tiny"], train_tokens=3 * 512, batch_size=2, max_length=256, bf16=True)
    rows = [encode_transcript(toy_tokenizer, _toy_transcript(q), max_length=256) for q in toy_qa()]
    model = make_model(spec, toy_tokenizer, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sft_train(model, toy_tokenizer, rows, spec, seed=1, work_dir=tmp_path, verbose=False, device="cuda")
    assert next(model.parameters()).device.type == "cuda"
    assert any((before[k] != v.cpu()).any() for k, v in model.state_dict().items())
    model.eval()
    contexts = [[{"role": "user", "content": f"Question: {q.question}"}] for q in toy_qa()[:2]]
    golds = [q.golden_answers[0] for q in toy_qa()[:2]]
    on_gpu = _score_gold_naive(model, toy_tokenizer, contexts, golds, 2)
    on_cpu = _score_gold_naive(model.cpu(), toy_tokenizer, contexts, golds, 2)
    assert on_gpu == pytest.approx(on_cpu, rel=1e-3)
    gain = repeat_copy_gain(model.cuda(), toy_tokenizer)
    assert gain == pytest.approx(repeat_copy_gain(model.cpu(), toy_tokenizer), abs=1e-3)


def test_tiny_policy_dir_is_a_standard_hf_dir(tiny_policy_dir):
    for name in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", REPORT_FILE):
        assert (tiny_policy_dir / name).exists(), name
    report = json.loads((tiny_policy_dir / REPORT_FILE).read_text())
    for key in REPORT_KEYS:
        assert isinstance(report[key], float), key
    assert report["device"] == resolve_device("auto")
    model = AutoModelForCausalLM.from_pretrained(tiny_policy_dir)
    assert model.num_parameters() < 1_000_000
    tok = AutoTokenizer.from_pretrained(tiny_policy_dir)
    assert tok.eos_token == "<|im_end|>"


@pytest.mark.slow
def test_tiny_policy_plays_the_env(tiny_policy_dir):
    import gymnasium as gym

    from igpo_env.data import load_qa
    from igpo_env.data.synthwiki import default_world
    from igpo_env.retrieval import get_retriever

    world = default_world(0)
    dev = load_qa(world, "dev")[:8]
    retriever = get_retriever(str(world / "corpus.jsonl"))
    agent = LLMAgent.from_pretrained(tiny_policy_dir)
    envs = [gym.make("SearchQA-v0", dataset=dev, retriever=retriever, max_episode_steps=4) for _ in dev]
    records = agent.play(envs, options=[{"index": i} for i in range(len(dev))])
    types = [t for r in records for t in r.action_types]
    # loose floor; the report has the real rate. The build is bit-reproducible (the BM25 term ids behind the scripted
    # trajectories no longer follow PYTHONHASHSEED): this build measured 0.90 here and 0.59 in its report.
    assert sum(t != "invalid" for t in types) / len(types) >= 0.25
    assert any(t == "search" for t in types)
    again = agent.play(envs, options=[{"index": i} for i in range(len(dev))])
    assert [r.actions for r in again] == [r.actions for r in records]  # greedy: same outputs


def test_cli_reuses_existing_build(tiny_policy_dir, capsys):
    import argparse

    from agents.bootstrap.cli import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    mtime = (tiny_policy_dir / "model.safetensors").stat().st_mtime
    assert run(parser.parse_args(["--base", "tiny", "--out", str(tiny_policy_dir), "--quiet"])) == 0
    assert (tiny_policy_dir / "model.safetensors").stat().st_mtime == mtime
    assert "well_formed_rate=" in capsys.readouterr().out


def test_word_repeats_make_every_corpus_word_one_token(tmp_path):
    from agents.bootstrap.build import _iter_tokenizer_text, corpus_words
    from igpo_env.data import load_corpus
    from igpo_env.data.synthwiki import build_world

    world = build_world(tmp_path / "w", passages=100, seed=0, verbose=False)
    words = corpus_words(d.contents for d in load_corpus(world / "corpus.jsonl"))
    assert len(words) > 50
    plain = train_tokenizer(_iter_tokenizer_text(world, [], word_repeats=0), vocab_size=400)
    boosted = train_tokenizer(_iter_tokenizer_text(world, [], word_repeats=5), vocab_size=4 * len(words) + 300)
    assert any(len(plain.tokenize(w)) > 1 for w in words)
    assert all(len(boosted.tokenize(w)) == 1 for w in words)


def test_split_capitalized_makes_a_name_the_same_tokens_after_a_space_or_a_newline(tmp_path):
    texts = ["Karsel is the capital of Ostrand. The capital of Ostrand is Karsel.\nKarsel lies north."] * 20
    plain = train_tokenizer(texts, vocab_size=400)
    split = train_tokenizer(texts, vocab_size=400, split_capitalized=True)
    # Without the option the passage form " Karsel" and the IG-answer form "\nKarsel" share no token.
    assert plain.tokenize(" Karsel") == ["ĠKarsel"] and plain.tokenize("\nKarsel")[-1] != "ĠKarsel"
    assert split.tokenize(" Karsel") == ["Ġ", "Karsel"]
    assert split.tokenize("\nKarsel") == ["Ċ", "Karsel"] and split.tokenize("Karsel") == ["Karsel"]
    assert split.tokenize(" capital")[0] == "Ġcapital"  # lower-case words keep their leading space
    # The rule lives in the merges, so a directory loaded with AutoTokenizer (Qwen2's pre-tokenizer) agrees.
    model = make_model(SIZES["tiny"], split)
    model.save_pretrained(tmp_path)
    split.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "<answer>\nKarsel\n</answer> The capital of Ostrand is Karsel."
    assert loaded.encode(text, add_special_tokens=False) == split.encode(text, add_special_tokens=False)
    assert loaded.decode(loaded.encode(text, add_special_tokens=False)) == text


def test_reading_transcripts_ask_and_state_only_train_entity_facts_found_in_their_observation(tmp_path):
    from agents.bootstrap.trajectories import reading_transcripts
    from igpo_env.data import load_qa
    from igpo_env.data.synthwiki import build_world

    world = build_world(tmp_path / "w", passages=200, seed=1, verbose=False)
    rows = reading_transcripts(world, 40, seed=0, verbose=False)
    assert len(rows) == 40 and rows == reading_transcripts(world, 40, seed=0, verbose=False)
    held_out = {e for split in ("dev", "test") for q in load_qa(world, split) for e in q.metadata["subject_entities"]}
    phrases = "|".join(re.escape(v) for v in sorted(set(RELATION_PHRASES.values()), key=len, reverse=True))
    fact = re.compile(rf"The (?:{phrases}|[a-z ]+?) of (.+?) is (.+?)\.(?= The | So the answer is )")
    stated = 0
    for user, assistant in rows:
        question, _, obs = user["content"].partition("\n\n<information>")
        assert question.startswith("Question: ") and question.endswith("?") and obs.startswith("Doc 1(Title: ")
        turn = r"<think>(.+) So the answer is (.+)\.</think>\n<answer> (.+) </answer>"
        think = re.fullmatch(turn, assistant["content"])
        assert think is not None and think[2] == think[3], assistant["content"]
        found = fact.findall(think[1] + " So the answer is ")
        assert len(found) == think[1].count(". The ") + 1, think[1]
        assert found[-1][1] == think[2]  # the asked fact comes last
        assert found[-1][0] in question or found[-1][0].removeprefix("the ") in question
        for entity, value in found:
            assert entity not in held_out
            assert entity in obs and value in obs, (entity, value)
        stated += len(found)
    assert stated > 80


def test_model_loss_trainer_computes_trls_loss(toy_tokenizer, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from agents.bootstrap.sft import labels_only_sft_trainer

    rows = [encode_transcript(toy_tokenizer, _toy_transcript(q), max_length=256) for q in toy_qa()]
    model = make_model(SIZES["tiny"], toy_tokenizer, seed=0)
    args = SFTConfig(
        output_dir=str(tmp_path), max_length=256, packing=True, packing_strategy="bfd", per_device_train_batch_size=1,
        report_to="none", use_cpu=True, bf16=False, gradient_checkpointing=False, save_strategy="no",
    )  # fmt: skip
    losses = []
    for cls in (SFTTrainer, labels_only_sft_trainer()):
        trainer = cls(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=toy_tokenizer)
        batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
        n = int((batch["labels"][:, 1:] != -100).sum())
        losses.append(float(trainer.compute_loss(model, dict(batch), num_items_in_batch=n)))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_sft_train_bf16_runs_and_changes_the_weights(toy_tokenizer, tmp_path):
    # 3 steps: the first is warm-up (lr 0)
    spec = replace(SIZES["tiny"], train_tokens=3 * 512, batch_size=2, max_length=256, bf16=True)
    rows = [encode_transcript(toy_tokenizer, _toy_transcript(q), max_length=256) for q in toy_qa()]
    model = make_model(spec, toy_tokenizer, seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = sft_train(model, toy_tokenizer, rows, spec, seed=1, work_dir=tmp_path, verbose=False)
    assert stats["steps"] == 3 and stats["tokens_per_step"] == 512
    assert any((before[k] != v).any() for k, v in model.state_dict().items())
    assert all(v.dtype == before[k].dtype for k, v in model.state_dict().items())  # fp32 master weights


def test_episode_renamer_gives_fresh_train_names_and_order_preserving_numbers(tmp_path):
    from agents.bootstrap.trajectories import EpisodeRenamer
    from igpo_env.data import load_qa
    from igpo_env.data.synthwiki import build_world
    from igpo_env.metrics import extract_answer

    world = build_world(tmp_path / "w", passages=300, seed=2, verbose=False)
    renamer = EpisodeRenamer(world, seed=0)
    held_out_words = {
        w for e in renamer.entities if e.split != "train" for n in (e.name, *e.aliases) for w in n.split()
    }
    assert renamer.pool and not set(renamer.pool) & held_out_words
    assert {"Press", "University", "River", "Doc", "Title"}.isdisjoint(renamer.roots)
    plain = collect_trajectories(world, 40, 0.3, seed=0, verbose=False)
    renamed = collect_trajectories(world, 40, 0.3, seed=0, verbose=False, rename_share=1.0)
    assert [t.mistakes for t in plain] == [t.mistakes for t in renamed]
    golds = {q.question: q for q in load_qa(world, "train")}
    changed_answers = 0
    for p, r in zip(plain, renamed, strict=True):
        assert [m["role"] for m in p.messages] == [m["role"] for m in r.messages]
        p_text, r_text = "\n".join(m["content"] for m in p.messages), "\n".join(m["content"] for m in r.messages)
        assert p_text != r_text
        # Template words survive; every renamed name root is a train-only root and one root maps to one root.
        assert p_text.count("<information>") == r_text.count("<information>")
        assert p_text.count(" is a ") == r_text.count(" is a ")
        mapping: dict[str, str] = {}
        shifts: set[int] = set()
        word = r"[^\W\d_]+|[\d,]*\d"
        for a, b in zip(re.findall(word, p_text), re.findall(word, r_text), strict=True):
            if a in renamer.roots:
                assert b in renamer.pool and mapping.setdefault(a, b) == b
            elif re.fullmatch(r"1\d{3}", a):
                shifts.add(int(b) - int(a))  # a year
            elif "," in a:
                assert "," in b and int(b.replace(",", "")) > int(a.replace(",", ""))
            else:
                assert a == b
        assert len(set(mapping.values())) == len(mapping)
        # One offset per episode for years and one factor for grouped numbers, so comparisons keep their winner.
        assert len(shifts) <= 1
        question = p.messages[0]["content"].rpartition("Question: ")[2].strip()
        last = extract_answer(r.messages[-1]["content"])
        if question in golds and last is not None:
            old = extract_answer(p.messages[-1]["content"])
            changed_answers += last.strip() != old.strip()
    assert changed_answers > 10
    with pytest.raises(ValueError, match="rename_share"):
        collect_trajectories(world, 2, 0.3, seed=0, verbose=False, rename_share=1.5)


def test_repeat_copy_gain_separates_a_copier_from_a_random_model(toy_tokenizer):
    import math
    from types import SimpleNamespace

    import torch

    from agents.bootstrap.eval import repeat_copy_gain

    length, vocab = 12, len(toy_tokenizer)

    class Copier(torch.nn.Module):
        """Predicts the token that followed the same position one period earlier (uniform on the first pass)."""

        def forward(self, input_ids):
            logits = torch.zeros(*input_ids.shape, vocab)
            nxt = input_ids[:, :length]
            logits[:, length - 1 : 2 * length - 1].scatter_(2, nxt[..., None], 30.0)
            return SimpleNamespace(logits=logits)

    gain = repeat_copy_gain(Copier(), toy_tokenizer, length=length, rows=4)
    assert gain > 0.9 * math.log(vocab)
    assert abs(repeat_copy_gain(make_model(SIZES["tiny"], toy_tokenizer), toy_tokenizer, length=length)) < 1.0
    with pytest.raises(ValueError, match="length"):
        repeat_copy_gain(Copier(), toy_tokenizer, length=1)
