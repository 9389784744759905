import json

import pytest
import torch

from agents.bootstrap.common import IGNORE_INDEX
from agents.bootstrap.sft import logits_at_labels_loss
from agents.bootstrap.warm_start import WARM_START, WarmStartSpec, encode_chat, sft, warm_start, warm_start_dir
from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer

MSGS = [
    {"role": "user", "content": "Question: Where is Karsel?"},
    {"role": "assistant", "content": "<think>Look.</think>\n<search> Karsel </search>"},
    {"role": "user", "content": "\n\n<information>Doc 1(Title: Karsel) Karsel is in Ostrand.</information>\n\n"},
    {"role": "assistant", "content": "<answer> Ostrand </answer>"},
]


def _labelled_text(tok, row):
    return tok.decode([t for t in row["labels"] if t != IGNORE_INDEX])


def test_encode_chat_labels_only_assistant_turns_and_masks_mistakes():
    tok = tiny_tokenizer()
    row = encode_chat(tok, MSGS)
    assert row["input_ids"] == tok.encode(tok.apply_chat_template(MSGS, tokenize=False), add_special_tokens=False)
    assert _labelled_text(tok, row) == (
        "<think>Look.</think>\n<search> Karsel </search><|im_end|><answer> Ostrand </answer><|im_end|>"
    )
    masked = encode_chat(tok, MSGS, masked=[False, True, False, False])
    assert _labelled_text(tok, masked) == "<answer> Ostrand </answer><|im_end|>"
    assert len(encode_chat(tok, MSGS, max_length=7)["input_ids"]) == 7
    with pytest.raises(ValueError, match="one flag per message"):
        encode_chat(tok, MSGS, masked=[True])


def test_encode_chat_with_a_template_that_adds_a_system_prompt():
    tok = tiny_tokenizer()
    tok.chat_template = (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nBe brief.<|im_end|>\n{% endif %}"
        + tok.chat_template
    )
    row = encode_chat(tok, MSGS)
    assert row["input_ids"] == tok.encode(tok.apply_chat_template(MSGS, tokenize=False), add_special_tokens=False)
    assert _labelled_text(tok, row).endswith("<answer> Ostrand </answer><|im_end|>")


def test_logits_at_labels_loss_equals_the_models_own_loss():
    tok = tiny_tokenizer()
    model = tiny_causal_lm(vocab_size=len(tok))
    row = encode_chat(tok, MSGS)
    inputs = {"input_ids": torch.tensor([row["input_ids"]]), "labels": torch.tensor([row["labels"]])}
    ours, out = logits_at_labels_loss(model, inputs)
    reference = model(**inputs).loss
    assert torch.allclose(ours, reference, atol=1e-6)
    n_labels = sum(t != IGNORE_INDEX for t in row["labels"][1:])
    assert out.logits.shape[1] == n_labels  # the LM head ran only where a label is set
    total, _ = logits_at_labels_loss(model, inputs, num_items_in_batch=torch.tensor(2 * n_labels))
    assert torch.allclose(total, reference / 2, atol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"steps": 0}, "steps"),
        ({"noisy_fraction": 1.5}, "noisy_fraction"),
        ({"lora_rank": -1}, "lora_rank"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"epochs": 3}, "unknown warm-start fields"),
    ],
)
def test_spec_validation(overrides, match):
    with pytest.raises(ValueError, match=match):
        WarmStartSpec.from_overrides(WARM_START, overrides)


def test_cache_dir_names_the_recipe():
    assert warm_start_dir("smollm2-135m-instruct").name == "smollm2-135m-instruct-warm-s0-w1"
    other = warm_start_dir("smollm2-135m-instruct", spec=WarmStartSpec(steps=3))
    assert other.name.startswith("smollm2-135m-instruct-warm-s0-w1-") and other != warm_start_dir("x")


@pytest.mark.parametrize("lora_rank", [0, 4])
def test_sft_trains_only_unfrozen_weights_and_returns_a_plain_model(tmp_path, lora_rank):
    tok = tiny_tokenizer()
    model = tiny_causal_lm(vocab_size=len(tok), layers=2).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    spec = WarmStartSpec(steps=2, batch_size=2, learning_rate=1e-2, freeze_layers=1, bf16=False, lora_rank=lora_rank)
    trained, stats = sft(model, tok, [encode_chat(tok, MSGS)] * 3, spec, seed=0, work_dir=tmp_path)
    after = trained.state_dict()
    assert set(after) == set(before)  # LoRA adapters merged back: the same plain parameter names
    assert torch.equal(after["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"])
    assert not torch.equal(after["model.layers.1.mlp.up_proj.weight"], before["model.layers.1.mlp.up_proj.weight"])
    assert stats["steps"] == 2 and stats["transcripts"] == 4 and stats["tokens"] > 0


def test_warm_start_of_the_tiny_fixture_writes_a_report_and_is_reused(tiny_policy_dir, tmp_path):
    spec = WarmStartSpec(train_episodes=4, steps=1, batch_size=2, freeze_layers=0, bf16=False)
    out = warm_start(str(tiny_policy_dir), spec=spec, out=tmp_path / "w", eval_questions=0, verbose=False)
    report = json.loads((out / "report.json").read_text())
    assert report["sft"]["steps"] == 1 and "dev_f1" not in report
    mtime = (out / "model.safetensors").stat().st_mtime
    # reusing the build adds the quality report it lacked, without training again
    assert warm_start(str(tiny_policy_dir), spec=spec, out=out, eval_questions=2, verbose=False) == out
    report = json.loads((out / "report.json").read_text())
    assert report["eval_questions"] == 2 and 0.0 <= report["dev_f1"] <= 1.0
    assert (out / "model.safetensors").stat().st_mtime == mtime


def test_bootstrap_cli_flags_come_from_the_spec(capsys):
    import argparse

    from agents.bootstrap.cli import SPEC_FLAGS, add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--steps", "7", "--learning-rate", "3e-5", "--lora-rank", "8"])
    assert (args.steps, args.learning_rate, args.lora_rank, args.freeze_layers) == (7, 3e-5, 8, None)
    assert all(hasattr(WARM_START, name) for name in SPEC_FLAGS)
    with pytest.raises(ValueError, match="takes no recipe flags"):
        run(parser.parse_args(["--base", "tiny", "--steps", "3"]))
    with pytest.raises(ValueError, match="`steps` must be an int >= 1"):
        run(parser.parse_args(["--steps", "0"]))


def test_dev_f1_is_one_number_in_the_report_the_eval_cli_and_the_trainer_eval(tiny_policy_dir, tmp_path):
    from agents.bootstrap.eval import quality_report
    from agents.igpo.configs import train_defaults
    from agents.policy import load_policy
    from agents.rollout import evaluate_policy, make_envs
    from igpo_env.cli import main
    from igpo_env.data import load_qa
    from igpo_env.data.synthwiki import default_world
    from igpo_env.retrieval import get_retriever

    defaults = train_defaults()
    world = default_world(0)
    model, tok = load_policy(tiny_policy_dir)
    report = quality_report(model, tok, world, 5, verbose=False)
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(tiny_policy_dir), "--limit", "5", "--out", str(out), "--quiet"]) == 0
    cli = json.loads(out.read_text())["models"][0]
    examples = load_qa(world, "dev")
    envs = make_envs(2, dataset=examples, retriever=get_retriever(str(world / "corpus.jsonl")))
    trainer_eval = evaluate_policy(
        model,
        tok,
        envs,
        [e.id for e in examples[:5]],
        max_turns=defaults["max_turns"],
        max_turn_tokens=defaults["max_turn_tokens"],
        max_completion_length=defaults["max_completion_length"],
    )
    assert report["dev_f1"] == pytest.approx(cli["f1"]) == pytest.approx(trainer_eval["f1"])
    assert report["well_formed_rate"] == pytest.approx(cli["well_formed_rate"])


def test_warm_start_speed_benchmark_on_a_tiny_model(tmp_path):
    from benchmarks.warm_start_speed import VARIANTS, main

    tok = tiny_tokenizer()
    model = tiny_causal_lm("llama", vocab_size=len(tok))
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    argv = ["--quick", "--model", str(tmp_path / "m"), "--out", str(tmp_path), "--length", "64", "--labelled", "8"]
    assert main(argv) == 0
    data = json.loads((tmp_path / "warm_start_speed.json").read_text())
    assert list(data["variants"]) == list(VARIANTS)
    assert data["variants"]["fp32_full_logits"]["speedup"] == 1.0
    assert all(v["tokens_per_second"] > 0 for v in data["variants"].values())
    assert "| bf16_labels_freeze15 |" in (tmp_path / "warm_start_speed.md").read_text()
    with pytest.raises(ValueError, match="--labelled"):
        main([*argv[:-2], "--labelled", "64"])
