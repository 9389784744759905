"""VLLMScorer: pure span helpers, the class against a fake vllm module, and (GPU + vllm only) the real engine."""

import importlib.util
import sys
import types
from types import SimpleNamespace

import pytest
import torch
from testing_utils import tiny_causal_lm, tiny_tokenizer

from igpo_env.error import DependencyNotInstalled
from igpo_env.scoring.hf import HFScorer
from igpo_env.scoring.vllm import VLLMScorer, target_logprobs

TOL = 1e-5
CONTEXTS = [
    [{"role": "user", "content": "What is the capital of Ostrand?"}],
    [
        {"role": "user", "content": "Who founded Karsel?"},
        {"role": "assistant", "content": "<search>Karsel founder</search>"},
        {"role": "user", "content": "\n\n<information>Doc 1(Title: Karsel) Karsel is a city.</information>\n\n"},
    ],
    "A rendered prefix string\n",
]
TARGETS = ["Karsel", "Ilka Maren", "Ostrand"]


def test_target_logprobs_picks_prompt_tokens():
    entries = [None, {6: SimpleNamespace(logprob=-1.5), 1: SimpleNamespace(logprob=-0.1)}, {7: -0.25}]
    assert target_logprobs([5, 6, 7], entries, start=1) == [-1.5, -0.25]
    assert target_logprobs([5, 6, 7], entries, start=2) == [-0.25]


@pytest.mark.parametrize(
    ("ids", "entries", "start", "match"),
    [
        ([5, 6], [None], 1, "expected 2 prompt_logprobs entries, got 1"),
        ([5, 6], None, 1, "got None"),
        ([5, 6], [None, {9: -1.0}], 1, "lacks the prompt token 6"),
        ([5, 6], [None, None], 1, "no log-prob for prompt token 1"),
        ([5, 6], [None, {6: -1.0}], 0, "not inside"),
    ],
)
def test_target_logprobs_errors(ids, entries, start, match):
    with pytest.raises(ValueError, match=match):
        target_logprobs(ids, entries, start)


def test_missing_vllm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    with pytest.raises(DependencyNotInstalled, match=r"pip install igpo-env\[gpu\]"):
        VLLMScorer("/some/model")


class FakeLLM:
    """Mimics vllm.LLM.generate(prompts, params) -> [RequestOutput] with prompt_logprobs from a tiny HF model."""

    instances = []

    def __init__(self, model=None, tokenizer=None, **kwargs):
        self.kwargs = {"model": model, "tokenizer": tokenizer, **kwargs}
        self.lm, self.tok = tiny_causal_lm(), tiny_tokenizer()
        self.calls = []
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return self.tok

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((len(prompts), params))
        outputs = []
        for prompt in prompts:
            ids = prompt["prompt_token_ids"]
            with torch.inference_mode():
                logp = self.lm(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
            entries = [None]
            for i in range(1, len(ids)):
                top = int(logp[i - 1].argmax())  # vLLM adds the top-k alternatives to the prompt token
                entries.append(
                    {
                        ids[i]: SimpleNamespace(logprob=float(logp[i - 1, ids[i]])),
                        top: SimpleNamespace(logprob=float(logp[i - 1, top])),
                    }
                )
            outputs.append(SimpleNamespace(prompt_token_ids=ids, prompt_logprobs=entries, outputs=[]))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = lambda **kw: SimpleNamespace(**kw)
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.instances.clear()
    return module


def test_vllm_scorer_equals_hf_scorer_with_fake_engine(fake_vllm):
    scorer = VLLMScorer("/models/tiny", dtype="float32", batch_size=2, max_model_len=512)
    llm = FakeLLM.instances[-1]
    assert llm.kwargs["enable_prefix_caching"] is True and llm.kwargs["max_model_len"] == 512
    got = scorer.score(CONTEXTS, TARGETS)
    assert [n for n, _ in llm.calls] == [2, 1]
    params = llm.calls[0][1]
    assert params.max_tokens == 1 and params.prompt_logprobs == 0
    expected = HFScorer(llm.lm, llm.tok).score(CONTEXTS, TARGETS)
    for a, b in zip(got, expected, strict=True):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=TOL)


def test_vllm_scorer_shares_an_existing_engine(fake_vllm):
    engine = FakeLLM()
    scorer = VLLMScorer(engine, prompt_logprobs=1)
    assert scorer.llm is engine and scorer.tokenizer is engine.tok
    assert scorer.score(CONTEXTS[:1], TARGETS[:1])[0].mean_logprob < 0
    with pytest.raises(ValueError, match="llm_kwargs"):
        VLLMScorer(engine, max_model_len=4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gpu_memory_utilization": 0}, "gpu_memory_utilization"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization"),
        ({"prompt_logprobs": -1}, "prompt_logprobs"),
        ({"batch_size": 0}, "batch_size"),
        ({"dtype": 16}, "dtype"),
    ],
)
def test_constructor_validates(fake_vllm, kwargs, match):
    with pytest.raises(ValueError, match=match):
        VLLMScorer("/models/tiny", **kwargs)
    with pytest.raises(TypeError, match="model"):
        VLLMScorer(3.0)


HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (pip install igpo-env[gpu])")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="VLLMScorer needs a CUDA GPU")
def test_real_vllm_engine_matches_hf_scorer(tmp_path):
    lm, tok = tiny_causal_lm(hidden=256, layers=2), tiny_tokenizer()  # head dim 64: supported by vLLM kernels
    lm.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    scorer = VLLMScorer(
        str(tmp_path), dtype="float32", gpu_memory_utilization=0.3, max_model_len=1024, enforce_eager=True
    )
    got = scorer.score(CONTEXTS, TARGETS)
    expected = HFScorer(lm, tok, device="cuda").score(CONTEXTS, TARGETS)
    for a, b in zip(got, expected, strict=True):
        assert a.token_logprobs == pytest.approx(b.token_logprobs, abs=1e-3)
