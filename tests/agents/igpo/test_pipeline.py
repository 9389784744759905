from __future__ import annotations

import pytest

from agents.igpo.configs import TRAIN_DEFAULTS_FILE, load_config, train_defaults
from agents.igpo.pipeline import (
    RunArguments,
    default_run_arguments,
    default_train_config,
    evaluate_split,
    resolve_data,
    resolve_policy,
)

# The CPU-sized default run of `igpo-env train` before its defaults moved into configs/cpu.yaml: these values must
# not change by accident (edit cpu.yaml and this table together).
CPU_RUN = {
    "max_steps": 20,
    "num_generations": 4,
    "prompts_per_step": 2,
    "learning_rate": 2e-6,
    "lr_scheduler_type": "constant",
    "warmup_steps": 0,
    "beta": 0.0,
    "temperature": 1.0,
    "max_turns": 5,
    "max_turn_tokens": 96,
    "max_completion_length": 1024,
    "logging_steps": 1,
    "save_strategy": "no",
    "report_to": "tensorboard",
    "gradient_checkpointing": False,
    "seed": 0,
    "freeze_layers": 15,
    "eval_split": "dev",
    "eval_limit": 64,
    "eval_every": 0,
    "eval_batch_size": 64,
    "threads": 2,
    "search_top_k": 3,
}


def test_cpu_yaml_holds_the_cpu_run():
    defaults = train_defaults()
    assert {k: defaults[k] for k in CPU_RUN} == CPU_RUN
    assert isinstance(defaults["learning_rate"], float)  # YAML reads 2e-6 (no dot) as a string


def test_default_train_config_and_run_arguments_apply_the_yaml(tmp_path):
    cfg = default_train_config(tmp_path, max_steps=3, report_to="none")
    assert (cfg.max_steps, cfg.learning_rate, cfg.max_turn_tokens, cfg.seed) == (3, 2e-6, 96, 0)
    assert cfg.per_device_train_batch_size == 2 * 4 and cfg.output_dir == str(tmp_path)
    run = default_run_arguments(model="tiny")
    assert (run.model, run.freeze_layers, run.eval_limit, run.eval_batch_size) == ("tiny", 15, 64, 64)
    assert RunArguments().freeze_layers == 0  # the dataclass keeps generic defaults; the CPU run is cpu.yaml's
    with pytest.raises(ValueError, match=r"unknown IGPOConfig fields \['freeze_layers'\]"):
        default_train_config(tmp_path, freeze_layers=3)
    with pytest.raises(ValueError, match=r"unknown run options \['max_steps'\]"):
        default_run_arguments(max_steps=3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"freeze_layers": -1}, "`freeze_layers` must be an int >= 0, got -1"),
        ({"eval_limit": 0}, "`eval_limit` must be an int >= 1 or None, got 0"),
        ({"eval_batch_size": 0}, "`eval_batch_size` must be an int >= 1, got 0"),
        ({"search_top_k": 0}, "`search_top_k` must be an int >= 1, got 0"),
        ({"train_limit": 0}, "`train_limit` must be an int >= 1 or None, got 0"),
        ({"train_order": "pairs"}, r"`train_order` must be one of \('shuffle', 'hop_pairs'\), got 'pairs'"),
    ],
)
def test_run_arguments_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunArguments(**kwargs)


def test_resolve_policy_and_data(tmp_path):
    assert resolve_policy(str(tmp_path)) == tmp_path
    with pytest.raises(FileNotFoundError, match="neither a directory nor a packaged model"):
        resolve_policy(str(tmp_path / "nope"))
    assert resolve_data(tmp_path) == tmp_path
    with pytest.raises(FileNotFoundError, match="data directory .* does not exist"):
        resolve_data(tmp_path / "nope")


def test_load_config_errors(tmp_path):
    assert load_config(TRAIN_DEFAULTS_FILE) == train_defaults()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        load_config(bad)


# ---------------------------------------------------------------- dev evaluation split over processes


@pytest.mark.parametrize("n", [0, 1, 5, 7, 12])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_process_slices_partition_the_questions_in_order(n, world):
    from agents.rollout import process_slice

    shares = [list(range(n))[process_slice(n, world, rank)] for rank in range(world)]
    assert [q for share in shares for q in share] == list(range(n))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_process_slice_validation():
    from agents.rollout import process_slice

    with pytest.raises(ValueError, match="`process_index` must be an int"):
        process_slice(5, 2, 2)
    with pytest.raises(ValueError, match="`num_processes` must be an int >= 1"):
        process_slice(5, 0, 0)


def test_evaluate_split_plays_one_share_per_process_and_summarizes_all():
    """3 simulated processes over 7 questions: each plays only its own share, calls ``finish`` once (lock step), and
    every process gets the summary of all 7 episodes, equal to the 1-process one."""
    from agents.rollout import Rollout, summarize_rollouts

    ids = [f"q{i}" for i in range(7)]
    sources = ["a", "b", "a", "c", "b", "a", "c"]

    def episode(q):
        i = ids.index(q)
        return Rollout(q, sources[i], [], terminated=i % 3 != 0, final_info={"f1": i / 7, "em": float(i % 2)})

    played: dict[int, list[str]] = {}
    finished: list[int] = []
    local: dict[int, list] = {}

    def play_as(rank):
        def play(qs):
            played[rank] = list(qs)
            local[rank] = [episode(q) for q in qs]
            return local[rank]

        return play

    for rank in range(3):  # every process plays before the gather, as under accelerate
        evaluate_split(play_as(rank), ids, 3, rank, gather=lambda mine: mine, finish=lambda r=rank: finished.append(r))
    gathered = [e for rank in range(3) for e in local[rank]]

    def replay(qs):
        return [episode(q) for q in qs]

    results = [evaluate_split(replay, ids, 3, rank, gather=lambda _: gathered) for rank in (0, 2)]
    assert played == {0: ids[:3], 1: ids[3:5], 2: ids[5:]}
    assert finished == [0, 1, 2]
    one = evaluate_split(replay, ids)
    assert one == summarize_rollouts([episode(q) for q in ids])
    assert results == [one, one] and one["n"] == 7 and set(one["by_source"]) == {"a", "b", "c"}


def test_evaluate_split_with_more_processes_than_questions():
    from agents.rollout import Rollout

    calls = []

    def play(qs):
        calls.append(qs)
        return [Rollout(q, "s", [], terminated=True, final_info={"f1": 1.0}) for q in qs]

    res = evaluate_split(play, ["q0"], 2, 1, gather=lambda mine: play(["q0"]) + mine)
    assert res["n"] == 1 and res["f1"] == 1.0
    assert calls == [["q0"]]  # process 1 had no question and did not call play with an empty list


# ---------------------------------------------------------------- training order: contrast pairs


@pytest.fixture(scope="module")
def tiny_model_and_world(tmp_path_factory):
    from testing_utils import save_tiny_policy

    from igpo_env.data.synthwiki import build_world

    root = tmp_path_factory.mktemp("pairs")
    return save_tiny_policy(root / "model"), build_world(root / "world", passages=1000, seed=0, verbose=False)


def _pairs_run(tmp_path, model, world, **overrides):
    from agents.igpo.pipeline import run_training

    settings = dict(max_steps=2, num_generations=2, prompts_per_step=2, max_turns=1, max_turn_tokens=4, seed=3)
    config = default_train_config(tmp_path / "run", report_to="none", disable_tqdm=True, **{**settings, **overrides})
    run = default_run_arguments(model=str(model), data=str(world), train_order="hop_pairs", no_eval=True)
    return config, run_training(config, run, verbose=False)


@pytest.mark.slow
def test_hop_pairs_are_trained_in_order_one_pair_per_step(tiny_model_and_world, tmp_path, monkeypatch):
    """With ``train_order="hop_pairs"`` and 2 prompts per step, step k trains on the k-th contrast pair (TRL's
    shuffling turned off): a 1-hop question and a chain question that starts with the same search."""
    from agents.igpo.igpo_trainer import IGPOTrainer
    from igpo_env.data import load_qa
    from igpo_env.data.synthwiki.questions import hop_pairs

    model, world = tiny_model_and_world
    played: list[list[str]] = []
    original = IGPOTrainer._generate_and_score_completions

    def spy(self, inputs):
        played.append(list(dict.fromkeys(str(x["question_id"]) for x in inputs)))
        return original(self, inputs)

    monkeypatch.setattr(IGPOTrainer, "_generate_and_score_completions", spy)
    config, _ = _pairs_run(tmp_path, model, world)
    assert config.shuffle_dataset is False
    ordered = hop_pairs(load_qa(world, "train"), seed=3)
    assert played == [[e.id for e in ordered[0:2]], [e.id for e in ordered[2:4]]]
    assert ordered[0].data_source == "synthwiki-1hop" and ordered[1].data_source != "synthwiki-1hop"
    assert ordered[0].metadata["hops"][0] == ordered[1].metadata["hops"][0]
    assert [e.id for e in ordered] != [e.id for e in hop_pairs(load_qa(world, "train"), seed=4)]


def test_hop_pairs_need_an_even_number_of_prompts_per_step(tiny_model_and_world, tmp_path):
    model, world = tiny_model_and_world
    with pytest.raises(ValueError, match="even number of prompts per step, got 3: set --prompts_per_step"):
        _pairs_run(tmp_path, model, world, prompts_per_step=3)
