"""IGPOTrainer with ``use_vllm=True``: server mode against a loopback vLLM stand-in, colocate-mode checks, rounds.

vLLM does not install here (no GPU), so:

- server mode runs against ``tests/vllm_standin.py``, a FastAPI app serving the HTTP protocol of TRL 1.16's
  ``VLLMClient`` (``/health``, ``/v1/models``, ``/server_info``, ``/get_world_size``, ``/v1/completions``,
  ``/init_weight_transfer_engine``, ``/start_weight_update``, ``/update_weights``, ``/finish_weight_update``,
  ``/reset_prefix_cache``) with a tiny HF model generating. TRL's real ``VLLMGeneration`` and ``VLLMClient`` make
  every HTTP call. Patched (``patch_trl_for_standin``): ``is_vllm_available`` (TRL refuses ``use_vllm`` without vllm
  importable), and, at the communicator boundary, the NCCL group: ``VLLMClient.init_communicator`` makes the real
  one's HTTP calls but joins an in-process queue, and the NCCL broadcast inside TRL's ``update_named_params`` puts
  the tensors on that queue, from which the stand-in's ``/update_weights`` loads them. So the weight sync is tested
  up to, not including, NCCL: which tensors, names, dtypes and shapes, in which order, around which HTTP calls, and
  that the server then generates with the trainer's weights;
- colocate mode (a vLLM engine in the training process) cannot run; its checks are tested: the config is accepted,
  and the trainer names the fix when vllm or a CUDA GPU is missing;
- the multi-process rounds of :class:`agents.igpo.vllm_rollouts.VLLMTurnEngine` run TRL's real server-mode
  ``VLLMGeneration.generate`` in two threads standing in for two processes, its ``gather_object`` /
  ``broadcast_object_list`` collectives replaced by thread barriers.
"""

from __future__ import annotations

import importlib
import threading
from types import SimpleNamespace

import pytest
import torch
from testing_utils import one_torch_thread, tiny_igpo_args
from transformers import TrainerCallback
from vllm_standin import VLLMStandIn, patch_trl_for_standin

from agents.igpo.igpo_trainer import IGPOTrainer
from agents.igpo.vllm_rollouts import VLLMTurnEngine, check_vllm_setup
from igpo_env._http import ServerThread
from igpo_env.data.toy import toy_corpus, toy_qa
from igpo_env.error import DependencyNotInstalled
from igpo_env.retrieval import BM25Retriever
from igpo_env.scoring.hf import HFScorer
from igpo_env.scoring.openai_compat import OpenAICompatScorer
from igpo_env.scoring.tiny import tiny_causal_lm, tiny_tokenizer

G = 2
MAX_TURN_TOKENS = 6
LOGP_TOL = 1e-4
SYNC_PATHS = ["/start_weight_update", "/update_weights", "/finish_weight_update", "/reset_prefix_cache"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def env_kwargs():
    return {"dataset": toy_qa(), "retriever": BM25Retriever.from_docs(toy_corpus())}


@pytest.fixture
def standin(monkeypatch):
    """The stand-in server (its model differs from the trainer's until the first weight sync), TRL patched for it."""
    server = VLLMStandIn(tiny_causal_lm(seed=2), tiny_tokenizer())
    patch_trl_for_standin(monkeypatch, server)
    with ServerThread(server.app) as thread:
        server.url = thread.url
        yield server


def config(tmp_path, **overrides):
    """Two steps of 2 prompts x 2 rollouts."""
    return tiny_igpo_args(
        tmp_path / "out", **{"max_steps": 2, "num_generations": G, "per_device_train_batch_size": 2 * G, **overrides}
    )


class WeightsAt(TrainerCallback):
    """Keeps a copy of the model's weights at the end of each step."""

    def __init__(self):
        self.steps = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.steps[state.global_step] = {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_server_mode_trains_against_standin(tmp_path, standin, env_kwargs):
    args = config(tmp_path, use_vllm=True, vllm_mode="server", vllm_server_base_url=standin.url, vllm_server_timeout=5)
    weights = WeightsAt()
    trainer = IGPOTrainer(
        tiny_causal_lm(seed=1),
        args,
        processing_class=tiny_tokenizer(),
        env_kwargs=env_kwargs,
        callbacks=[weights],
    )
    paths = standin.paths()
    assert paths[:5] == ["/health", "/v1/models", "/server_info", "/get_world_size", "/init_weight_transfer_engine"]
    assert paths[5] == "/server_info"  # GRPOTrainer reads the server's logprobs_mode
    trainer.train()
    assert trainer.state.global_step == 2

    # one weight sync before each step's rollouts (the parent's, before rollout_func), then that step's turns
    paths = standin.paths()
    syncs = [i for i, p in enumerate(paths) if p == "/start_weight_update"]
    assert len(syncs) == 2 and all(paths[i : i + 4] == SYNC_PATHS for i in syncs)
    names = [n for n, _ in trainer.model.named_parameters()]
    assert standin.weight_updates == [names, names]
    # the second sync pushed the weights of step 1: the server generated step 2 with the trainer's policy
    served = standin.model.state_dict()
    assert all(torch.equal(served[k], v) for k, v in weights.steps[1].items())
    assert any(not torch.equal(served[k], v) for k, v in weights.steps[2].items())

    # one /v1/completions call per turn of the generation batch: token-id prompts, the turn limit, the stop strings
    last = [body for p, body in standin.requests[syncs[1] :] if p == "/v1/completions"]
    rollouts = trainer._last_rollouts
    assert len(last) == max(r.num_turns for r in rollouts)
    assert last[0]["prompt"] == [r.prompt_ids for r in rollouts]
    for body in last:
        assert body["n"] == 1 and body["max_tokens"] == MAX_TURN_TOKENS and body["logprobs"] == 0
        assert body["stop"] == list(args.stop_strings) and body["include_stop_str_in_output"] is True
        assert body["return_token_ids"] and body["temperature"] == args.temperature
        for prompt in body["prompt"]:  # every later turn continues a rollout's own token sequence
            assert any((r.prompt_ids + r.completion_ids)[: len(prompt)] == prompt for r in rollouts)

    # the trainer's log-probs of the sampled tokens equal the server's (observation tokens masked by env_mask)
    logs = [h for h in trainer.state.log_history if "sampling/sampling_logp_difference/max" in h]
    assert len(logs) == 2 and all(h["sampling/sampling_logp_difference/max"] < LOGP_TOL for h in logs)
    assert all(abs(h["sampling/importance_sampling_ratio/mean"] - 1) < LOGP_TOL for h in logs)
    assert any("rollout/ig_mean" in h for h in trainer.state.log_history)


def test_server_without_weight_transfer_is_a_clear_error(tmp_path, standin, env_kwargs):
    standin.weight_transfer = False
    args = config(tmp_path, use_vllm=True, vllm_mode="server", vllm_server_base_url=standin.url, vllm_server_timeout=5)
    with pytest.raises(RuntimeError, match="no weight-transfer engine"):
        IGPOTrainer(tiny_causal_lm(), args, processing_class=tiny_tokenizer(), env_kwargs=env_kwargs)


# ---------------------------------------------------------------- OpenAICompatScorer against the same server

CONTEXTS = [
    [{"role": "user", "content": "Who founded Karsel?"}],
    [
        {"role": "user", "content": "Who founded Karsel?"},
        {"role": "assistant", "content": "<search>Karsel founder</search>"},
        {"role": "user", "content": "\n\n<information>Doc 1(Title: Karsel) Karsel is a city.</information>\n\n"},
    ],
]


def test_openai_compat_scorer_against_standin(standin):
    tok = standin.tokenizer
    expected = HFScorer(standin.model, tok).score(CONTEXTS, ["Ilka Maren", "Ilka Maren"])
    with OpenAICompatScorer(f"{standin.url}/v1", standin.model_name, tokenizer=tok, retries=0) as scorer:
        got = scorer.score(CONTEXTS, ["Ilka Maren", "Ilka Maren"])
    for a, b in zip(got, expected, strict=True):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-5)
    body = standin.requests[-1][1]
    assert body["echo"] is True and body["max_tokens"] == 0 and body["logprobs"] == 1 and body["temperature"] == 1.0
    assert scorer.max_tokens == 0  # vLLM's echo without generation is accepted: no fallback


def test_trainer_scores_ig_on_an_openai_compat_server(tmp_path, standin, env_kwargs):
    """``scorer="openai:URL#MODEL"``: the trainer's IG comes from the server, equal to an in-process HFScorer's."""

    def play(scorer_spec, scorer=None):
        args = config(tmp_path / str(scorer is None), max_steps=1, scorer=scorer_spec)
        trainer = IGPOTrainer(
            tiny_causal_lm(seed=1), args, processing_class=tiny_tokenizer(), env_kwargs=env_kwargs, scorer=scorer
        )
        trainer.train()
        return trainer

    spec = f"openai:{standin.url}/v1#{standin.model_name}"
    remote = play(spec)
    assert isinstance(remote.ig_scorer, OpenAICompatScorer)
    assert (remote.ig_scorer.base_url, remote.ig_scorer.model) == (f"{standin.url}/v1", standin.model_name)
    echoes = [body for path, body in standin.requests if path == "/v1/completions"]
    assert echoes and all(body["echo"] is True and body["max_tokens"] == 0 for body in echoes)
    local = play("policy", scorer=HFScorer(standin.model, standin.tokenizer))
    got = [r.mean_logprobs for r in remote._last_rollouts]
    expected = [r.mean_logprobs for r in local._last_rollouts]
    assert [len(m) for m in got] == [len(m) for m in expected] and sum(map(len, got)) > len(got)
    for a, b in zip(got, expected, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("openai:http://127.0.0.1:8000/v1", "lacks the served model name.*openai:http://127.0.0.1:8000/v1#MODEL"),
        ("openai:127.0.0.1:8000/v1#m", "must be an http\\(s\\) URL such as 'openai:http://127.0.0.1:8000/v1#MODEL'"),
    ],
)
def test_malformed_openai_scorer_spec_fails_in_the_config(tmp_path, spec, match):
    with pytest.raises(ValueError, match=match):
        config(tmp_path, scorer=spec)


# ---------------------------------------------------------------- colocate mode and missing dependencies


@pytest.mark.parametrize("mode", ["colocate", "server"])
def test_missing_vllm_names_the_fix(tmp_path, monkeypatch, mode, env_kwargs):
    monkeypatch.setattr(importlib.import_module("trl.import_utils"), "is_vllm_available", lambda **_: False)
    args = config(tmp_path, use_vllm=True, vllm_mode=mode)  # the config itself is accepted (e.g. to run on a GPU)
    assert (args.use_vllm, args.vllm_mode) == (True, mode)
    with pytest.raises(DependencyNotInstalled, match=rf"vllm_mode='{mode}'.*pip install igpo-env\[gpu\]"):
        IGPOTrainer(tiny_causal_lm(), args, processing_class=tiny_tokenizer(), env_kwargs=env_kwargs)


def test_colocate_needs_cuda_and_a_known_mode(monkeypatch):
    monkeypatch.setattr(importlib.import_module("trl.import_utils"), "is_vllm_available", lambda **_: True)
    with pytest.raises(ValueError, match="no CUDA device is visible.*vllm_mode='server'"):
        check_vllm_setup(SimpleNamespace(use_vllm=True, vllm_mode="colocate"), cuda_available=False)
    check_vllm_setup(SimpleNamespace(use_vllm=True, vllm_mode="colocate"), cuda_available=True)
    check_vllm_setup(SimpleNamespace(use_vllm=True, vllm_mode="server"), cuda_available=False)
    with pytest.raises(ValueError, match="`vllm_mode` must be 'colocate' or 'server', got 'remote'"):
        check_vllm_setup(SimpleNamespace(use_vllm=True, vllm_mode="remote"))


def test_train_command_takes_the_vllm_flags():
    from agents.igpo.cli import parse_train_args

    url = "http://127.0.0.1:8000"
    cfg, _, _ = parse_train_args(["--use-vllm", "true", "--vllm-mode", "server", "--vllm-server-base-url", url])
    assert (cfg.use_vllm, cfg.vllm_mode, cfg.vllm_server_base_url) == (True, "server", url)
    cfg, _, _ = parse_train_args(
        ["--use_vllm", "true", "--vllm_mode", "colocate", "--vllm_gpu_memory_utilization", "0.3"]
    )
    assert (cfg.vllm_mode, cfg.vllm_gpu_memory_utilization) == ("colocate", 0.3)


# ---------------------------------------------------------------- rounds across processes (server mode)


class ThreadGroup:
    """Two threads standing in for two processes: accelerate's object collectives over a barrier."""

    def __init__(self, size: int, timeout: float):
        self.size, self.slots, self.local = size, [None] * size, threading.local()
        self.barrier = threading.Barrier(size, timeout=timeout)

    def gather_object(self, obj):
        self.slots[self.local.rank] = list(obj)
        self.barrier.wait()
        out = [x for slot in self.slots for x in slot]
        self.barrier.wait()
        return out

    def broadcast_object_list(self, obj_list, from_process=0):
        if self.local.rank == from_process:
            self.slots[from_process] = list(obj_list)
        self.barrier.wait()
        obj_list[:] = self.slots[from_process]
        self.barrier.wait()
        return obj_list

    def run(self, work):
        """Run ``work(rank)`` in one thread per rank; return the results (re-raising a thread's error)."""
        results, errors = [None] * self.size, []

        def target(rank):
            self.local.rank = rank
            try:
                results[rank] = work(rank)
            except Exception as e:  # noqa: BLE001 - handed to the test thread
                errors.append(e)
                self.barrier.abort()

        threads = [threading.Thread(target=target, args=(r,)) for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results


def server_mode_generation(rank: int, client):
    """TRL's real VLLMGeneration, in server mode, without its constructor (which would connect and sync)."""
    from trl.generation.vllm_generation import VLLMGeneration

    engine = VLLMGeneration.__new__(VLLMGeneration)
    settings = dict(mode="server", temperature=0.0, top_p=1.0, top_k=0, min_p=0.0, repetition_penalty=1.0)
    settings.update(max_completion_length=16, logprobs=0, structured_outputs_regex=None, generation_kwargs={})
    vars(engine).update(settings, enable_sleep_mode=False, vllm_client=client if rank == 0 else None)
    engine.accelerator = SimpleNamespace(process_index=rank, is_main_process=rank == 0)
    return engine


@pytest.fixture
def two_processes(monkeypatch, standin):
    from trl.generation import vllm_generation
    from trl.generation.vllm_client import VLLMClient

    group = ThreadGroup(2, timeout=20)
    monkeypatch.setattr(vllm_generation, "gather_object", group.gather_object)
    monkeypatch.setattr(vllm_generation, "broadcast_object_list", group.broadcast_object_list)
    client = VLLMClient(base_url=standin.url, connection_timeout=5)
    return group, [server_mode_generation(r, client) for r in range(2)], client


def test_turn_engine_keeps_processes_in_step(two_processes, standin):
    group, engines, client = two_processes
    tok = standin.tokenizer
    prompts = [tok.encode(q, add_special_tokens=False) for q in ("Who founded Karsel?", "Where is Ostrand?", "When")]
    # rank 0 plays three turns (3, 2, then 1 active rollouts, asking 4 tokens); rank 1 one turn (2 rollouts, 6 tokens)
    schedule = {0: [(prompts, 4), (prompts[:2], 4), (prompts[2:], 4)], 1: [(prompts[1:], 6)]}

    def work(rank):
        engine = VLLMTurnEngine(engines[rank], ["</search>"], collective=True, gather=group.gather_object)
        outs = [engine(p, m) for p, m in schedule[rank]]
        engine.finish()
        return outs, engine.rounds, engines[rank].max_completion_length

    results = group.run(work)
    reference = client.generate(prompts, temperature=0.0, max_tokens=6)["completion_ids"]
    greedy = dict(zip(map(tuple, prompts), reference, strict=True))
    for rank, (outs, rounds, restored) in enumerate(results):
        assert rounds == 3 and restored == 16  # one round per turn of the longest process; settings restored
        for (turn_prompts, _), (ids, lps) in zip(schedule[rank], outs, strict=True):
            # each process gets its own prompts' completions, at the largest turn limit asked in that round
            assert ids == [greedy[tuple(p)][: len(ids[j])] for j, p in enumerate(turn_prompts)]
            assert len(lps) == len(ids) and all(len(lp) == len(i) for lp, i in zip(lps, ids, strict=True))
    assert [len(i) for i in results[0][0][0][0]] == [len(greedy[tuple(p)]) for p in prompts]  # 6, not 4 tokens


def test_trl_server_generate_needs_equal_prompt_counts(two_processes):
    """Why VLLMTurnEngine pads: TRL slices each process's completions as if every process sent as many prompts."""
    group, engines, client = two_processes
    prompts = [[5, 6, 7], [8, 9], [10, 11, 12], [13]]
    local = {0: prompts[:3], 1: prompts[3:]}
    results = group.run(lambda rank: engines[rank].generate(local[rank], images=None, num_generations=1)[1])
    greedy = client.generate(prompts, temperature=0.0, max_tokens=16)["completion_ids"]
    assert results[1] == [greedy[1]] != [greedy[3]]  # rank 1 got rank 0's second completion, not its own


def test_turn_engine_validates():
    with pytest.raises(ValueError, match="needs `gather`"):
        VLLMTurnEngine(object(), [], collective=True)
    with pytest.raises(ValueError, match="`filler`"):
        VLLMTurnEngine(object(), [], filler=[])
    with pytest.raises(ValueError, match="`prompts` is empty"):
        VLLMTurnEngine(object(), [])([], 4)


def test_gpu_extra_pins_the_vllm_range_trl_supports():
    import re
    from importlib.metadata import requires
    from pathlib import Path

    from packaging.requirements import Requirement

    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    (line,) = re.findall(r"^gpu = \[(.*)\]$", pyproject.read_text(), flags=re.MULTILINE)
    ours = {r.name: r for r in map(Requirement, re.findall(r'"([^"]+)"', line))}
    trls = [Requirement(r) for r in requires("trl") if 'extra == "vllm"' in r]
    trl_vllm = next(r for r in trls if r.name == "vllm")
    assert ours["vllm"].specifier == trl_vllm.specifier, (
        f"pyproject's gpu extra pins {ours['vllm']}, TRL's vllm extra {trl_vllm}: align them"
    )
    assert "requests" in ours  # TRL's VLLMClient (server mode) talks to the server with requests
