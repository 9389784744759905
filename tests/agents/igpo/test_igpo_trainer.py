"""IGPOTrainer on a tiny random model: GRPO equivalence, env-token masking, grouping, train step, checkpoints."""

from __future__ import annotations

import pytest
import torch
from testing_utils import one_torch_thread, tiny_igpo_args

from agents.igpo.advantages import paper_turn_advantages
from agents.igpo.igpo_config import IGPOConfig
from agents.igpo.igpo_trainer import IGPOTrainer, make_train_dataset, outcome_reward
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.retrieval import BM25Retriever
from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer

G = 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def retriever():
    return BM25Retriever.from_docs(toy_corpus())


def make_trainer(tmp_path, retriever, reward_funcs=None, model=None, **overrides):
    args = tiny_igpo_args(tmp_path / "out", **overrides)  # G = 4 rollouts of 2 prompts
    return IGPOTrainer(
        model if model is not None else tiny_causal_lm(seed=1),
        args,
        processing_class=tiny_tokenizer(),
        reward_funcs=reward_funcs,
        env_kwargs={"dataset": toy_qa(), "retriever": retriever},
    )


def varied_reward(completion_ids, outcome, **kwargs):
    """A reward with variance inside groups (a random tiny model rarely answers): outcome + a token-id checksum."""
    return [o + float(sum(c) % 3) for c, o in zip(completion_ids, outcome, strict=True)]


def _inputs(trainer, qids):
    rows = {r["question_id"]: r for r in trainer.train_dataset}
    return [dict(rows[q]) for q in qids for _ in range(G)]


def test_ig_coef_zero_per_token_advantages_equal_trl_grpo(tmp_path, retriever):
    trainer = make_trainer(tmp_path, retriever, reward_funcs=[varied_reward], ig_coef=0.0)
    trainer.model.train()
    out = trainer._generate_and_score_completions(_inputs(trainer, ["tq0", "tq1"]))
    rewards = torch.tensor(trainer._outcomes)
    grouped = rewards.view(-1, G)
    # TRL's GRPO sequence advantage: (r - group mean) / (group std (Bessel) + 1e-4)
    expected = (rewards - grouped.mean(1).repeat_interleave(G)) / (grouped.std(1).repeat_interleave(G) + 1e-4)
    assert expected.abs().max() > 0.1  # the check is not vacuous
    mask = (out["completion_mask"] * out["tool_mask"]).bool()
    adv = out["advantages"]
    assert adv.shape == out["completion_ids"].shape
    for i in range(adv.shape[0]):
        assert torch.allclose(adv[i][mask[i]], expected[i].expand(int(mask[i].sum())), atol=1e-5)
        assert (adv[i][~mask[i]] == 0).all()


def test_paper_advantages_use_ig_and_group_by_prompt(tmp_path, retriever):
    trainer = make_trainer(tmp_path, retriever, reward_funcs=[varied_reward], ig_coef=1.0, normalization="separate")
    trainer.model.train()
    inputs = _inputs(trainer, ["tq0", "tq2"])
    out = trainer._generate_and_score_completions(inputs)
    rollouts = trainer._last_rollouts
    assert [r.question_id for r in rollouts] == [x["question_id"] for x in inputs]
    expected = paper_turn_advantages(
        [r.ig_rewards for r in rollouts], trainer._outcomes, [i // G for i in range(len(rollouts))], "separate"
    )
    for i, r in enumerate(rollouts):
        assert len(r.ig_rewards) == r.num_turns - 1
        for t, (s, e) in enumerate(r.turn_spans):
            assert torch.allclose(out["advantages"][i, s:e], torch.tensor(expected[i][t]), atol=1e-5)
    # a batch whose groups mix prompts is refused
    mixed = inputs[:2] + inputs[G : G + 2] + inputs[2:G] + inputs[G + 2 :]
    with pytest.raises(RuntimeError, match="mixes prompts"):
        trainer._generate_and_score_completions(mixed)


def test_released_advantage_runs(tmp_path, retriever):
    trainer = make_trainer(tmp_path, retriever, advantage="released")
    trainer.model.train()
    out = trainer._generate_and_score_completions(_inputs(trainer, ["tq1", "tq3"]))
    assert torch.isfinite(out["advantages"]).all()


def test_observation_tokens_get_zero_gradient(tmp_path, retriever):
    trainer = make_trainer(tmp_path, retriever, reward_funcs=[varied_reward], ig_coef=1.0)
    trainer.model.train()
    out = trainer._generate_and_score_completions(_inputs(trainer, ["tq0", "tq3"]))
    captured = {}
    original = trainer._get_per_token_logps_and_entropies

    def keep(*args, **kwargs):  # TRL's fused LM head returns per-token log-probs of the completion: keep their grad
        logps, entropies, aux = original(*args, **kwargs)
        logps.retain_grad()
        captured["logps"] = logps
        return logps, entropies, aux

    trainer._get_per_token_logps_and_entropies = keep
    trainer.current_gradient_accumulation_steps = 1  # set by train(); needed by the DAPO loss normalizer
    loss = trainer.compute_loss(trainer.model, out)
    loss.backward()
    per_pos = captured["logps"].grad.abs()  # (B, C): d loss / d log pi(completion token k)
    env = (out["tool_mask"] == 0) & (out["completion_mask"] == 1)
    assert env.any()
    assert (per_pos[env] == 0).all()
    assert per_pos[out["tool_mask"].bool() & out["completion_mask"].bool()].sum() > 0


def test_train_step_changes_weights_and_checkpoint_resume(tmp_path, retriever):
    model = tiny_causal_lm(seed=1)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trainer = make_trainer(tmp_path, retriever, model=model, max_steps=2, save_strategy="steps", save_steps=1)
    seen = []
    original = trainer._generate_and_score_completions

    def spy(inputs):
        seen.append([x["question_id"] for x in inputs])
        return original(inputs)

    trainer._generate_and_score_completions = spy
    trainer.train()
    assert trainer.state.global_step == 2
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    for batch in seen:  # every group of G consecutive rollouts holds one prompt
        assert all(len(set(batch[g : g + G])) == 1 for g in range(0, len(batch), G))
    assert any("rollout/ig_share" in h for h in trainer.state.log_history)
    ckpt = tmp_path / "out" / "checkpoint-2"
    assert (ckpt / "trainer_state.json").exists()
    resumed = make_trainer(tmp_path, retriever, model=tiny_causal_lm(seed=1), max_steps=3)
    resumed.train(resume_from_checkpoint=str(ckpt))
    assert resumed.state.global_step == 3


def test_helpers_and_errors(tmp_path, retriever):
    assert outcome_reward([[]], outcome=[0.5]) == [0.5]
    ds = make_train_dataset(toy_qa())
    assert ds.column_names == ["prompt", "question_id"] and len(ds) == len(toy_qa())
    with pytest.raises(ValueError, match="is empty"):
        make_train_dataset([])
    with pytest.raises(TypeError, match="must be JSON-serializable"):
        IGPOConfig(output_dir=str(tmp_path), report_to="none", env_kwargs={"retriever": retriever})
    with pytest.raises(TypeError, match="must be an IGPOConfig"):
        IGPOTrainer(tiny_causal_lm(), args=None)


class FakeVLLMGeneration:
    """Stands in for TRL's VLLMGeneration: answers every turn with a fixed action (and junk after the stop)."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self.max_completion_length = 256
        self.generation_kwargs = {}
        self.calls = []

    def generate(self, prompts, images, num_generations):
        self.calls.append((len(prompts), self.max_completion_length, dict(self.generation_kwargs)))
        ids = self.tok.encode("<search> Ostrand </search> junk", add_special_tokens=False)
        return prompts, [ids for _ in prompts], [[[-0.5] for _ in ids] for _ in prompts], None


def test_vllm_rollout_adapter(tmp_path, retriever):
    trainer = make_trainer(tmp_path, retriever, max_turns=2, max_turn_tokens=32)
    trainer.vllm_generation = FakeVLLMGeneration(trainer.processing_class)
    rollouts, stats = trainer._vllm_rollouts(["tq0", "tq1"], trainer._get_envs(2), ig=None)
    assert [r.num_turns for r in rollouts] == [2, 2] and all(r.truncated for r in rollouts)
    n, max_tokens, kwargs = trainer.vllm_generation.calls[0]
    assert n == 2 and max_tokens == trainer.args.max_turn_tokens and kwargs["stop"] == ["</search>", "</answer>"]
    assert trainer.vllm_generation.generation_kwargs == {}  # restored
    text = trainer.processing_class.decode(rollouts[0].completion_ids[slice(*rollouts[0].turn_spans[0])])
    assert text.endswith("</search>")  # tokens after the stop string are cut
    from agents.rollout import IGSpec

    rollouts, _ = trainer._vllm_rollouts(["tq0"], trainer._get_envs(1), ig=IGSpec())  # IG via HFScorer on the policy
    assert len(rollouts[0].ig_rewards) == 1
